//! The rustls client configuration of a broker link: the CA that verifies the broker,
//! optionally a client certificate, and a server name other than the host (a broker
//! reached by IP address whose certificate names it).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::domain::DeviceTls;
use crate::drivers::Error;
use crate::secrets::Secret;

fn read(what: &str, path: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Config(format!("tls.{what} `{path}`: {e}")))
}

fn certs(what: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("tls.{what} `{path}`: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "tls.{what} `{path}`: no PEM certificate in it"
        )));
    }
    Ok(certs)
}

/// Verifies the broker's certificate for a fixed name instead of the host dialled.
#[derive(Debug)]
struct Renamed {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for Renamed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The client configuration for `tls`; `server_name` overrides the host's name.
pub fn client_config(
    tls: &DeviceTls<Secret>,
    server_name: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let ca = tls.ca_file.as_deref().ok_or_else(|| {
        Error::Config(
            "tls.ca_file: an MQTT link over TLS needs the CA that signed the broker's certificate"
                .into(),
        )
    })?;
    if tls.key_password.is_some() {
        return Err(Error::Config(
            "tls.key_password: encrypted private keys are not supported for MQTT; give an unencrypted PEM key (keep the file private)".into(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs("ca_file", ca)? {
        roots
            .add(c)
            .map_err(|e| Error::Config(format!("tls.ca_file `{ca}`: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Config(format!("tls.ca_file `{ca}`: {e}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?;
    let builder = match server_name {
        Some(name) => {
            let name = ServerName::try_from(name.to_string())
                .map_err(|e| Error::Config(format!("tls_server_name `{name}`: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Renamed {
                    inner: verifier,
                    name,
                }))
        }
        None => builder.with_webpki_verifier(verifier),
    };
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certs("cert_file", cert)?;
            let pem = read("key_file", key.expose())?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
                Error::Config(format!(
                    "tls.key_file `{}`: no PEM private key in it",
                    key.expose()
                ))
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| Error::Config(format!("tls.cert_file / key_file: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::Config(
                "tls.cert_file and tls.key_file go together (client certificate and its key)"
                    .into(),
            ));
        }
    };
    Ok(Arc::new(config))
}
