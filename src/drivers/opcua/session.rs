//! Opening an OPC UA session: the client's application instance (its PKI), the
//! identity, the endpoint matching the configured policy and mode, the first connect
//! with a clear error, and the event loop that keeps the session up afterwards
//! (async-opcua reconnects with backoff and transfers or re-creates subscriptions).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use opcua::client::{
    Client, ClientBuilder, IdentityToken, Session, SessionConnectMode, SessionPollResult,
};
use opcua::types::{EndpointDescription, StatusCode};
use tokio::sync::{mpsc, oneshot};

use super::config::{Identity, OpcuaConfig};
use super::nodelay::{NoDelayConnector, NoDelaySource};
use crate::domain::OpenedSecurity;
use crate::drivers::Error;

/// What the session's event loop reports after the first connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// Reconnected; `new_session` when the server had lost the old one (restart).
    Reconnected {
        new_session: bool,
    },
    Lost(StatusCode),
    ReconnectFailed(StatusCode),
    /// The loop ended (closed by us, or out of retries).
    Ended(StatusCode),
}

/// Client instances are built one at a time: the first build of a PKI directory
/// generates the application key pair, which two devices must not do at once.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The client for `config` (blocking: may generate the application key pair).
pub fn build_client(
    config: &OpcuaConfig,
    session_name: &str,
    chunk: usize,
) -> Result<Client, Error> {
    let _guard = BUILD_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for dir in ["trusted", "rejected", "own", "private"] {
        std::fs::create_dir_all(config.pki_dir.join(dir)).map_err(|e| {
            Error::Config(format!(
                "pki_dir: cannot create {}: {e}",
                config.pki_dir.join(dir).display()
            ))
        })?;
    }
    if let Some(server_cert) = &config.server_certificate {
        super::server::trust_certificate(&config.pki_dir, server_cert)
            .map_err(|e| Error::Config(format!("server_certificate: {e}")))?;
    }
    let mut b = ClientBuilder::new()
        .application_name("ThermaCore")
        .application_uri(config.application_uri.clone())
        .product_uri("urn:thermacore")
        .pki_dir(config.pki_dir.clone())
        .create_sample_keypair(config.certificate.is_none())
        .trust_server_certs(config.trust_unknown_server)
        .session_retry_limit(-1)
        .session_retry_initial(ms(config.reconnect_min_ms))
        .session_retry_max(ms(config.reconnect_max_ms))
        .keep_alive_interval(ms(config.keep_alive_ms))
        .request_timeout(ms(config.request_timeout_ms))
        .session_timeout(config.session_timeout_ms)
        .session_name(session_name.to_string())
        .recreate_monitored_items_chunk(chunk)
        .max_message_size(64 * 1024 * 1024)
        .max_chunk_count(1024)
        .max_array_length(1_000_000);
    if let (Some(cert), Some(key)) = (&config.certificate, &config.private_key) {
        b = b
            .certificate_path(cert.clone())
            .private_key_path(key.clone());
    }
    b.client()
        .map_err(|errors| Error::Config(format!("OPC UA client settings: {}", errors.join("; "))))
}

/// The identity token of the session.
pub fn identity(config: &OpcuaConfig, security: &OpenedSecurity) -> Result<IdentityToken, Error> {
    let creds = security.credentials.as_ref();
    let user = |c: &crate::domain::DeviceCredentials<crate::secrets::Secret>| {
        IdentityToken::new_user_name(
            c.username.clone(),
            c.password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
        )
    };
    Ok(match config.identity {
        Identity::Anonymous => IdentityToken::Anonymous,
        Identity::Auto => creds.map_or(IdentityToken::Anonymous, user),
        Identity::Username => user(creds.ok_or_else(|| {
            Error::Config(
                "identity = \"username\" needs [security.credentials] username and password".into(),
            )
        })?),
        Identity::X509 => {
            let tls = security.tls.as_ref();
            let cert = tls.and_then(|t| t.cert_file.as_ref());
            let key = tls.and_then(|t| t.key_file.as_ref());
            let (Some(cert), Some(key)) = (cert, key) else {
                return Err(Error::Config(
                    "identity = \"x509\" needs [security.tls] cert_file (the user certificate) and key_file (its private key)"
                        .into(),
                ));
            };
            IdentityToken::new_x509_path(cert, key.expose())
                .map_err(|e| Error::Config(format!("user certificate {cert}: {e}")))?
        }
    })
}

fn describe(e: &EndpointDescription) -> String {
    format!(
        "{} {:?}",
        opcua::crypto::SecurityPolicy::from_uri(e.security_policy_uri.as_ref()).to_str(),
        e.security_mode
    )
}

/// A first connect's failure in words an operator can act on.
pub fn connect_error(config: &OpcuaConfig, code: StatusCode) -> Error {
    use opcua::types::SubStatusCode as S;
    match code.sub_code() {
        S::BadCertificateUntrusted | S::BadSecurityChecksFailed => Error::Config(format!(
            "the server's certificate is not trusted ({code}): move it from {} to {} after checking it, set server_certificate, or (development only) trust_unknown_server = true",
            config.pki_dir.join("rejected").display(),
            config.pki_dir.join("trusted").display()
        )),
        S::BadIdentityTokenInvalid | S::BadIdentityTokenRejected | S::BadUserAccessDenied => {
            Error::Config(format!("the server refused the identity ({code})"))
        }
        S::BadCertificateHostNameInvalid | S::BadCertificateUriInvalid => Error::Config(format!(
            "the server's certificate does not match its endpoint ({code})"
        )),
        S::BadTimeout => Error::Timeout(config.connect_timeout_ms),
        _ => Error::Disconnected(format!("{} ({code})", config.endpoint)),
    }
}

/// A session to the endpoint and its event loop, not yet connected.
pub async fn open(
    client: &mut Client,
    config: &OpcuaConfig,
    identity: IdentityToken,
) -> Result<
    (
        Arc<Session>,
        opcua::client::SessionEventLoop<NoDelayConnector>,
    ),
    Error,
> {
    let endpoints = tokio::time::timeout(
        ms(config.connect_timeout_ms),
        client.get_server_endpoints_from_url(config.endpoint.as_str()),
    )
    .await
    .map_err(|_| Error::Timeout(config.connect_timeout_ms))?
    .map_err(|e| Error::Disconnected(format!("{}: {e}", config.endpoint)))?;
    let policy = config.security_policy.to_opcua();
    let mode = config.security_mode.to_opcua();
    if Client::find_matching_endpoint(&endpoints, &config.endpoint, policy, mode).is_none() {
        let offered: Vec<String> = endpoints.iter().map(describe).collect();
        return Err(Error::Config(format!(
            "the server offers no endpoint at {} with security {} {:?}; it offers: {}",
            config.endpoint,
            policy.to_str(),
            mode,
            offered.join(", ")
        )));
    }
    let want: EndpointDescription = (config.endpoint.as_str(), policy.to_str(), mode).into();
    client
        .session_builder()
        .with_endpoints(endpoints)
        .connect_to_matching_endpoint(want)
        .map_err(|e| Error::Config(format!("endpoint: {e}")))?
        .user_identity_token(identity)
        .with_connector(NoDelaySource)
        .build(client.certificate_store().clone())
        .map_err(|e| Error::Config(format!("session: {e}")))
}

/// Runs the event loop: the first connect's outcome goes to `first`, then every
/// later event to `events`. Returns when the loop ends.
pub async fn drive(
    event_loop: opcua::client::SessionEventLoop<NoDelayConnector>,
    first: oneshot::Sender<Result<(), StatusCode>>,
    events: mpsc::UnboundedSender<SessionEvent>,
) {
    let stream = event_loop.enter();
    tokio::pin!(stream);
    let mut first = Some(first);
    loop {
        let event = match stream.next().await {
            None => SessionEvent::Ended(StatusCode::Good),
            Some(Err(code)) => SessionEvent::Ended(code),
            Some(Ok(SessionPollResult::Reconnected(mode))) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(()));
                    continue;
                }
                SessionEvent::Reconnected {
                    new_session: matches!(mode, SessionConnectMode::NewSession(_)),
                }
            }
            Some(Ok(SessionPollResult::ReconnectFailed(code))) => {
                if let Some(tx) = first.take() {
                    // The first attempt failed: the caller reports it and stops us.
                    let _ = tx.send(Err(code));
                    return;
                }
                SessionEvent::ReconnectFailed(code)
            }
            Some(Ok(SessionPollResult::ConnectionLost(code))) => SessionEvent::Lost(code),
            Some(Ok(_)) => continue,
        };
        let ended = matches!(event, SessionEvent::Ended(_));
        if let Some(tx) = first.take() {
            let code = match event {
                SessionEvent::Ended(c) | SessionEvent::Lost(c) => c,
                _ => StatusCode::BadUnexpectedError,
            };
            let _ = tx.send(Err(code));
            return;
        }
        if events.send(event).is_err() || ended {
            return;
        }
    }
}
