//! The HTTP layer end to end: HTTPS with a certificate made here, start-up errors on
//! bad TLS files, CORS, security headers, the body limit and the request timeout.
//! (`X-Forwarded-For` trust is unit-tested beside its middleware in `api::http`.)

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::server::{self, TestServer};
use serde_json::{Value, json};
use thermacore::app::AppError;
use thermacore::config::{Config, ServerTlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PLANT: &str = r#"
[[tenants]]
name = "acme"
"#;

fn config(dir: &Path) -> Config {
    server::config(PLANT, dir)
}

async fn started(config: Config) -> TestServer {
    let s = server::start(config, &[]).await;
    s.wait_ready().await;
    s
}

/// A self-signed certificate for 127.0.0.1 and localhost; returns (cert PEM path, key path).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf, String) {
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).expect("certificate");
    let cert_pem = ck.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    (cert, key, cert_pem)
}

fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::test]
async fn https_end_to_end_with_hsts() {
    install_ring();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_file, key_file, cert_pem) = self_signed(dir.path());
    let mut c = config(dir.path());
    c.server.tls = Some(ServerTlsConfig {
        cert_file,
        key_file,
    });
    let mut s = server::start(c, &[]).await;
    let trusted = reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem");
    s.set_client(
        reqwest::Client::builder()
            .add_root_certificate(trusted)
            .build()
            .expect("client"),
    );
    assert!(s.url("/").starts_with("https://127.0.0.1:"));
    s.wait_ready().await;

    let r = s
        .client()
        .post(s.url("/graphql"))
        .json(&json!({"query": "{__typename}"}))
        .send()
        .await
        .expect("POST over https");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["data"]["__typename"], "QueryRoot", "{body}");

    // The certificate's expiry is published, for the expiry alert.
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).expect("pem");
    let not_after = pem
        .parse_x509()
        .expect("x509")
        .validity()
        .not_after
        .timestamp();
    let expiry = s
        .metric_sum(
            "thermacore_tls_certificate_expiry_timestamp_seconds",
            "use=\"https\"",
        )
        .await;
    assert_eq!(expiry, not_after as f64);

    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::Client::new();
    assert!(untrusting.get(s.url("/healthz")).send().await.is_err());
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", s.addr))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));

    s.stop().await.expect("graceful stop over https");
}

async fn start_error(c: Config) -> String {
    let s = server::start_unprepared(c).await;
    match s.stop().await {
        Err(e @ AppError::Tls(_)) => e.to_string(),
        other => panic!("expected a TLS start-up error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_tls_files_are_start_up_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_file, key_file, _) = self_signed(dir.path());
    let mut c = config(dir.path());

    let missing = dir.path().join("nope.pem");
    c.server.tls = Some(ServerTlsConfig {
        cert_file: missing.clone(),
        key_file: key_file.clone(),
    });
    let e = start_error(c.clone()).await;
    assert!(
        e.contains(&missing.display().to_string()) && e.contains("cannot read"),
        "{e}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    c.server.tls = Some(ServerTlsConfig {
        cert_file: garbage.clone(),
        key_file: key_file.clone(),
    });
    let e = start_error(c.clone()).await;
    assert!(e.contains(&garbage.display().to_string()), "{e}");

    c.server.tls = Some(ServerTlsConfig {
        cert_file: cert_file.clone(),
        key_file: cert_file.clone(),
    });
    let e = start_error(c).await;
    assert!(
        e.contains("key_file") && e.contains(&cert_file.display().to_string()),
        "{e}"
    );
}

async fn preflight(s: &TestServer, origin: &str) -> reqwest::Response {
    s.client()
        .request(reqwest::Method::OPTIONS, s.url("/graphql"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .expect("preflight")
}

#[tokio::test]
async fn cors_allows_listed_origins_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.server.cors_allowed_origins = vec!["https://ops.example".into()];
    let s = started(c).await;

    let ok = preflight(&s, "https://ops.example").await;
    assert!(ok.status().is_success(), "{}", ok.status());
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], "https://ops.example");
    let methods = h["access-control-allow-methods"].to_str().expect("ascii");
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let headers = h["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("x-request-id"),
        "{headers}"
    );

    let refused = preflight(&s, "https://evil.example").await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // A simple request from the allowed origin may read x-request-id.
    let r = s
        .client()
        .post(s.url("/graphql"))
        .header("origin", "https://ops.example")
        .json(&json!({"query": "{__typename}"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://ops.example"
    );
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii");
    assert!(exposed.contains("x-request-id"), "{exposed}");
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn cors_is_off_by_default_and_star_allows_any() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = started(config(dir.path())).await;
    let r = preflight(&s, "https://ops.example").await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    s.stop().await.expect("stop");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.server.cors_allowed_origins = vec!["*".into()];
    let s = started(c).await;
    let r = preflight(&s, "https://anywhere.example").await;
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = started(config(dir.path())).await;
    let strict = "default-src 'none'; frame-ancestors 'none'";
    for path in ["/healthz", "/readyz", "/metrics", "/nowhere"] {
        let r = s.get(path).await;
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["content-security-policy"], strict, "{path}");
        assert!(h.get("strict-transport-security").is_none(), "{path}");
        assert!(h.get("x-request-id").is_some(), "{path}");
    }
    let r = s
        .client()
        .post(s.url("/graphql"))
        .json(&json!({"query": "{__typename}"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["content-security-policy"], strict);

    // GraphiQL loads its scripts from unpkg.com: its own policy, still no framing.
    let r = s.get("/graphql").await;
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(
        csp.contains("script-src 'unsafe-inline' https://unpkg.com")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    s.stop().await.expect("stop");
}

fn too_large(body: &Value) {
    assert_eq!(
        body,
        &json!({"errors":[{"message":"request body too large","extensions":{"code":"BAD_USER_INPUT"}}]})
    );
}

/// Sends raw HTTP/1.1 bytes and returns (status, JSON body). `rest` is written after
/// the head while the answer is read; the write side stays open until then.
async fn raw(s: &TestServer, head: &str, rest: &[u8]) -> (u16, Value) {
    let tcp = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let (mut rd, mut wr) = tcp.into_split();
    let mut bytes = head.as_bytes().to_vec();
    bytes.extend_from_slice(rest);
    let writer = tokio::spawn(async move {
        // The server may answer (and close) before everything is written.
        let _ = wr.write_all(&bytes).await;
        std::future::pending::<()>().await;
        drop(wr);
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while parse_response(&out).is_none() {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    writer.abort();
    parse_response(&out).unwrap_or_else(|| panic!("no response: {}", String::from_utf8_lossy(&out)))
}

fn parse_response(bytes: &[u8]) -> Option<(u16, Value)> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = serde_json::from_str(body.trim()).ok()?;
    Some((status, body))
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = started(config(dir.path())).await;
    assert_eq!(s.config.server.max_body_bytes, 1_048_576);

    // 10 MB with a Content-Length.
    let big = format!(
        r#"{{"query":"{{__typename}}","variables":{{"pad":"{}"}}}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let r = s
        .client()
        .post(s.url("/graphql"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 413);
    assert!(r.headers().get("x-request-id").is_some());
    too_large(&r.json().await.expect("json"));

    // 2 MiB chunked, no Content-Length: bounded too.
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        s.addr
    );
    let mut chunks = Vec::new();
    for _ in 0..32 {
        chunks.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
        chunks.extend_from_slice(&[b'x'; 65536]);
        chunks.extend_from_slice(b"\r\n");
    }
    chunks.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw(&s, &head, &chunks).await;
    assert_eq!(status, 413);
    too_large(&body);

    // Below the limit still works.
    let r = s.gql(None, "{__typename}", json!({})).await;
    assert_eq!(r["data"]["__typename"], "QueryRoot");
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn a_request_that_does_not_finish_in_time_gets_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.server.request_timeout_secs = 1;
    let s = started(c).await;
    // Promises 100 bytes, sends 10, then waits: the body is never complete.
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        s.addr
    );
    let (status, body) = raw(&s, &head, b"{\"query\":").await;
    assert_eq!(status, 503);
    assert_eq!(body["errors"][0]["message"], "request timed out");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAVAILABLE");
    s.stop().await.expect("stop");
}
