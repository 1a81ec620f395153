//! HTTP hardening around the routes: the client address, CORS, security headers, the
//! body limit and the request timeout; and HTTPS (rustls with ring, through
//! axum-server) with the same graceful stop as plain HTTP.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum_server::tls_rustls::RustlsConfig;
use futures::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{ServerConfig, ServerTlsConfig};
use crate::telemetry::names;

/// The client's address: the TCP peer, or the first `X-Forwarded-For` entry when
/// `server.trust_forwarded_for` is on. In every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// How long a graceful stop waits for open HTTPS connections.
const TLS_DRAIN: Duration = Duration::from_secs(10);

/// The CSP of every response but the GraphiQL page.
const CSP: &str = "default-src 'none'; frame-ancestors 'none'";
/// The GraphiQL page loads React and GraphiQL from unpkg.com and runs one inline
/// script; it talks to this server only.
const GRAPHIQL_CSP: &str = "default-src 'none'; script-src 'unsafe-inline' https://unpkg.com; \
    style-src 'unsafe-inline' https://unpkg.com; img-src 'self' data: https://graphql.org; \
    font-src 'self' data: https://unpkg.com; connect-src 'self'; frame-ancestors 'none'";
const HSTS: &str = "max-age=31536000";

/// Wraps the routes in the layers. Outermost first: client address, CORS, security
/// headers, request id and metrics (so 413 and 503 answers carry an id too),
/// timeout, body limit.
pub fn harden<S>(routes: Router<S>, server: &ServerConfig, tls: bool) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let limit = server.max_body_bytes;
    let timeout = Duration::from_secs(server.request_timeout_secs);
    let mut router = routes
        .layer(middleware::from_fn_with_state(limit, body_limit))
        .layer(middleware::from_fn_with_state(timeout, request_timeout))
        .layer(middleware::from_fn(super::request_id))
        .layer(middleware::from_fn_with_state(tls, security_headers));
    if let Some(cors) = cors_layer(&server.cors_allowed_origins) {
        router = router.layer(cors);
    }
    router.layer(middleware::from_fn_with_state(
        server.trust_forwarded_for,
        client_addr,
    ))
}

/// A GraphQL-shaped error response (`{"errors":[{message, extensions.code}]}`).
pub fn graphql_error(status: StatusCode, message: &str, code: &str) -> Response {
    let body = serde_json::json!({"errors": [{"message": message, "extensions": {"code": code}}]});
    (status, axum::Json(body)).into_response()
}

async fn client_addr(State(trust): State<bool>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded = trust
        .then(|| first_forwarded(req.headers().get("x-forwarded-for")?))
        .flatten();
    let addr = forwarded
        .or(peer)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    req.extensions_mut().insert(ClientAddr(addr));
    next.run(req).await
}

/// The first entry of `X-Forwarded-For` (`ip`, `ip:port` or `[v6]:port`).
fn first_forwarded(value: &HeaderValue) -> Option<IpAddr> {
    let first = value.to_str().ok()?.split(',').next()?.trim();
    first
        .parse::<IpAddr>()
        .ok()
        .or_else(|| first.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// None when no origin is configured: no CORS headers at all.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Origins were validated with the config; one that still does not fit a
        // header is left out rather than allowing more.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let request_id = HeaderName::from_static("x-request-id");
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                request_id.clone(),
            ])
            .expose_headers([request_id]),
    )
}

async fn security_headers(State(tls): State<bool>, req: Request, next: Next) -> Response {
    let graphql = req.uri().path() == "/graphql";
    let mut resp = next.run(req).await;
    let graphiql = graphql
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if graphiql { GRAPHIQL_CSP } else { CSP }),
    );
    if graphql {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    resp
}

fn too_large() -> Response {
    graphql_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body too large",
        "BAD_USER_INPUT",
    )
}

/// Reads the whole body up to `limit` bytes before the handler runs, so every
/// extractor (the GraphQL one included, which streams the body itself) sees a
/// bounded body; a declared or actual size beyond it answers 413. GET and HEAD
/// (WebSocket upgrades among them) pass untouched.
async fn body_limit(State(limit): State<usize>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut buffered = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return graphql_error(
                StatusCode::BAD_REQUEST,
                "request body could not be read",
                "BAD_REQUEST",
            );
        };
        if buffered.len() + chunk.len() > limit {
            return too_large();
        }
        buffered.extend_from_slice(&chunk);
    }
    next.run(Request::from_parts(parts, Body::from(buffered)))
        .await
}

/// Answers 503 with code `UNAVAILABLE` when the response is not ready in time
/// (reading the body included). An upgraded WebSocket is not a pending response.
async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => graphql_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "request timed out",
            "UNAVAILABLE",
        ),
    }
}

/// Why HTTPS could not be set up. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls: cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("server.tls.cert_file {}: no PEM certificate in it{reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    /// No detail: the parser's message could quote the key file.
    #[error("server.tls.key_file {}: no usable PEM private key in it", path.display())]
    Key { path: PathBuf },
    #[error(
        "server.tls: certificate {} and key {} are not usable together: {reason}",
        cert.display(),
        key.display()
    )]
    Config {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and checks the PEM files; rustls with the ring provider, HTTP/1.1 and h2.
pub fn load_tls(tls: &ServerTlsConfig) -> Result<RustlsConfig, TlsError> {
    let cert_pem = read(&tls.cert_file)?;
    let key_pem = read(&tls.key_file)?;
    let bad_cert = |reason: String| TlsError::Certificate {
        path: tls.cert_file.clone(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(format!(": {e}")))?;
    if certs.is_empty() {
        return Err(bad_cert(String::new()));
    }
    // For the certificate-expiry alert; rustls checks the certificate itself.
    match x509_parser::parse_x509_certificate(&certs[0]) {
        Ok((_, leaf)) => {
            metrics::gauge!(names::TLS_CERT_EXPIRY, "use" => "https")
                .set(leaf.validity().not_after.timestamp() as f64);
        }
        Err(e) => {
            tracing::warn!(path = %tls.cert_file.display(), error = %e, "cannot read the certificate's expiry")
        }
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Key {
        path: tls.key_file.clone(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config_error = |reason: String| TlsError::Config {
        cert: tls.cert_file.clone(),
        key: tls.key_file.clone(),
        reason,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| config_error(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

/// Serves `router` with the peer address as connect info, over HTTPS when `tls` is
/// set, until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<RustlsConfig>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        return axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await;
    };
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    let watcher = tokio::spawn(async move {
        stop.await;
        stopper.graceful_shutdown(Some(TLS_DRAIN));
    });
    let served = axum_server::from_tcp_rustls(listener.into_std()?, tls)?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await;
    watcher.abort();
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    fn echo(trust: bool) -> Router {
        Router::new()
            .route(
                "/",
                get(
                    |axum::Extension(ClientAddr(ip)): axum::Extension<ClientAddr>| async move {
                        ip.to_string()
                    },
                ),
            )
            .layer(middleware::from_fn_with_state(trust, client_addr))
    }

    async fn seen(trust: bool, forwarded: Option<&str>) -> String {
        let mut req = Request::builder().uri("/");
        if let Some(f) = forwarded {
            req = req.header("x-forwarded-for", f);
        }
        let mut req = req.body(Body::empty()).expect("request");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 4000))));
        let resp = echo(trust).oneshot(req).await.expect("infallible");
        let bytes = axum::body::to_bytes(resp.into_body(), 1024)
            .await
            .expect("body");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn forwarded_for_is_honoured_only_when_trusted() {
        let xff = Some("203.0.113.9, 10.0.0.1");
        assert_eq!(seen(false, xff).await, "10.0.0.7");
        assert_eq!(seen(false, None).await, "10.0.0.7");
        assert_eq!(seen(true, xff).await, "203.0.113.9");
        assert_eq!(seen(true, Some("[2001:db8::1]:443")).await, "2001:db8::1");
        // Garbage falls back to the peer.
        assert_eq!(seen(true, Some("not-an-ip")).await, "10.0.0.7");
        assert_eq!(seen(true, None).await, "10.0.0.7");
    }
}
