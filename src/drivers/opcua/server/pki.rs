//! Certificates of the embedded server: its own keypair (made on first start, and made
//! again when it no longer fits the server: another application URI, a listen address
//! missing from its alternative names, or expired), keypairs for clients and users in
//! tests, and trusting a certificate by dropping it where the store looks for it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use opcua::crypto::{CertificateStore, X509, X509Data};

use super::ServerError;

/// Validity of the certificates made here. Long, because the demo keeps its PKI in its
/// data directory between runs and nobody rotates a demo's certificates.
const VALIDITY_DAYS: u32 = 3650;
/// RSA key size: 2048 bits is what every policy from Basic256Sha256 to
/// Aes256Sha256RsaPss accepts.
const KEY_BITS: u32 = 2048;

/// The store's layout under a PKI directory (async-opcua's `CertificateStore`).
pub(super) const OWN_CERT: &str = "own/cert.der";
pub(super) const OWN_KEY: &str = "private/private.pem";
pub(super) const TRUSTED: &str = "trusted";
const REJECTED: &str = "rejected";

/// What a keypair is made for: the certificate's names.
#[derive(Debug, Clone)]
pub struct KeypairSpec {
    /// Common name, organisational unit.
    pub name: String,
    /// The application URI: the first alternative name, which OPC UA peers check
    /// against the application description.
    pub application_uri: String,
    /// DNS names and IP addresses besides `localhost`, `127.0.0.1`, `::1` and this
    /// computer's names and addresses (which are always added).
    pub hosts: Vec<String>,
}

/// Makes a self-signed certificate (DER) and its private key (PKCS#8 PEM) for `spec`,
/// overwriting the files. RSA key generation takes a while: call it off the runtime's
/// worker threads (`spawn_blocking`) in async code.
pub fn generate_keypair(spec: &KeypairSpec, cert: &Path, key: &Path) -> Result<(), ServerError> {
    let alt_host_names = X509Data::alt_host_names(
        &spec.application_uri,
        Some(spec.hosts.clone()),
        true,
        true,
        true,
    );
    let data = X509Data {
        key_size: KEY_BITS,
        common_name: spec.name.clone(),
        organization: "ThermaCore".into(),
        organizational_unit: spec.name.clone(),
        country: "IT".into(),
        state: "Piemonte".into(),
        alt_host_names,
        certificate_duration_days: VALIDITY_DAYS,
    };
    CertificateStore::create_certificate_and_key(&data, true, cert, key)
        .map(|_| ())
        .map_err(|reason| ServerError::Certificate {
            path: cert.to_path_buf(),
            reason,
        })
}

/// Trusts the DER certificate `cert` in the store at `pki_dir`: copies it into
/// `trusted/` under the file name the store looks for (`<CN> [<thumbprint>].der`; a
/// certificate under any other name is not found). Works for a server's and a client's
/// store alike, while they run. Returns the path written.
pub fn trust_certificate(pki_dir: &Path, cert: &Path) -> Result<PathBuf, ServerError> {
    let x509 = CertificateStore::read_cert(cert).map_err(|reason| ServerError::Certificate {
        path: cert.to_path_buf(),
        reason,
    })?;
    let dir = pki_dir.join(TRUSTED);
    std::fs::create_dir_all(&dir).map_err(|source| ServerError::Pki {
        path: dir.clone(),
        source,
    })?;
    let target = dir.join(CertificateStore::cert_file_name(&x509));
    std::fs::copy(cert, &target).map_err(|source| ServerError::Pki {
        path: target.clone(),
        source,
    })?;
    Ok(target)
}

/// Makes the store's folders under `pki_dir` and, unless a fitting one is there, the
/// server's own keypair.
pub(super) async fn prepare(
    pki_dir: &Path,
    spec: KeypairSpec,
    host: IpAddr,
) -> Result<(), ServerError> {
    for sub in ["own", "private", TRUSTED, REJECTED] {
        let dir = pki_dir.join(sub);
        std::fs::create_dir_all(&dir).map_err(|source| ServerError::Pki { path: dir, source })?;
    }
    let cert = pki_dir.join(OWN_CERT);
    let key = pki_dir.join(OWN_KEY);
    if key.exists() {
        match fits(&cert, &spec.application_uri, &host.to_string()) {
            Ok(()) => return Ok(()),
            Err(why) => tracing::info!(
                cert = %cert.display(),
                "making a new server certificate: {why}"
            ),
        }
    }
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || generate_keypair(&spec, &cert, &key))
        .await
        .map_err(|e| ServerError::Certificate {
            path: pki_dir.join(OWN_CERT),
            reason: format!("the key generation task failed: {e}"),
        })??;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "made the OPC UA server's keypair"
    );
    Ok(())
}

/// Whether the certificate at `cert` can serve `application_uri` on `host` now.
fn fits(cert: &Path, application_uri: &str, host: &str) -> Result<(), String> {
    let x509: X509 = CertificateStore::read_cert(cert)?;
    x509.is_application_uri_valid(application_uri)
        .map_err(|e| e.to_string())?;
    x509.is_hostname_valid(host).map_err(|e| e.to_string())?;
    x509.is_time_valid(&chrono::Utc::now())
        .map_err(|e| e.to_string())
}
