//! Starts a real ThermaCore server in-process on an ephemeral port, and talks to it
//! over HTTP (GraphQL) and WebSocket (graphql-transport-ws), like a client would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use thermacore::app::{self, AppError};
use thermacore::config::{Config, parse_str};
use thermacore::domain::Role;
use thermacore::storage::{self, Store};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const SECRET: &str = "test-secret-test-secret-test-secret!";
pub const PASSWORD: &str = "correct horse battery";

/// A config from plant TOML, on a fresh SQLite file in `dir`, with fast supervision.
pub fn config(plant: &str, dir: &std::path::Path) -> Config {
    let mut c = parse_str(plant, "test plant").expect("test plant must be valid");
    c.storage.url = format!("sqlite:{}", dir.join("t.db").display());
    c.auth.jwt_secret = Some(SECRET.to_string());
    c.supervision.min_backoff_ms = 20;
    c.supervision.max_backoff_ms = 200;
    c.historian.flush_interval_ms = 100;
    c.storage.retry_initial_ms = 50;
    c.storage.retry_max_ms = 200;
    c
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: Option<JoinHandle<Result<(), AppError>>>,
    http: reqwest::Client,
}

/// Migrates, applies the config, creates `users` (tenant, username, role) with
/// [`PASSWORD`], then starts the server.
pub async fn start(config: Config, users: &[(&str, &str, Role)]) -> TestServer {
    let store = storage::connect(&config.storage.url, 2)
        .await
        .expect("store url");
    store.migrate().await.expect("migrate");
    app::apply_config(store.as_ref(), &config)
        .await
        .expect("apply config");
    add_users(store.as_ref(), users).await;
    start_unprepared(config).await
}

pub async fn add_users(store: &dyn Store, users: &[(&str, &str, Role)]) {
    for (tenant, name, role) in users {
        let t = store.upsert_tenant(tenant).await.expect("tenant");
        let hash = thermacore::api::auth::hash_password(PASSWORD).expect("hash");
        store
            .create_user(t.id, name, &hash, *role)
            .await
            .expect("user");
    }
}

/// Starts the server without touching the store first (store-down tests).
pub async fn start_unprepared(config: Config) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let c = config.clone();
    let handle = tokio::spawn(async move {
        app::run(c, listener, async {
            let _ = rx.await;
        })
        .await
    });
    TestServer {
        addr,
        config,
        shutdown: Some(tx),
        handle: Some(handle),
        http: reqwest::Client::new(),
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.config.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{}", self.addr, path)
    }

    /// Replaces the HTTP client (an HTTPS test trusts its own certificate).
    pub fn set_client(&mut self, client: reqwest::Client) {
        self.http = client;
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn wait_ready(&self) {
        eventually(Duration::from_secs(20), "server ready", || async {
            self.get("/readyz").await.status() == 200
        })
        .await;
    }

    /// POSTs a GraphQL request; returns the whole JSON response.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
            .await
            .expect("POST /graphql")
            .json()
            .await
            .expect("json body")
    }

    /// The `data` of a request that must succeed.
    pub async fn data(&self, token: &str, query: &str, variables: Value) -> Value {
        let r = self.gql(Some(token), query, variables).await;
        assert!(r.get("errors").is_none(), "unexpected errors: {r}");
        r["data"].clone()
    }

    pub async fn login(&self, tenant: &str, user: &str) -> String {
        let r = self
            .gql(None, "mutation($t:String!,$u:String!,$p:String!){login(tenant:$t,username:$u,password:$p){accessToken expiresIn}}", json!({"t": tenant, "u": user, "p": PASSWORD}))
            .await;
        r["data"]["login"]["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("login failed: {r}"))
            .to_string()
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .text()
            .await
            .expect("metrics text")
    }

    /// Sum of a metric's samples whose label set contains `labels` (e.g. `tenant="a"`).
    pub async fn metric_sum(&self, name: &str, labels: &str) -> f64 {
        metric_sum(&self.metrics().await, name, labels)
    }

    /// Tag ids by name of a tenant, read through the API.
    pub async fn tag_ids(&self, token: &str) -> std::collections::HashMap<String, String> {
        let d = self.data(token, "{tags{id name}}", json!({})).await;
        d["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap_or("").to_string(),
                    t["id"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The latest reading of every tag, by name (`null` before the first): `fields`
    /// of `TagValue`, e.g. `value quality qualityReason`.
    pub async fn latest(
        &self,
        token: &str,
        fields: &str,
    ) -> std::collections::HashMap<String, Value> {
        let d = self
            .data(
                token,
                &format!("{{tags{{name latest{{{fields}}}}}}}"),
                json!({}),
            )
            .await;
        d["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap_or("").to_string(),
                    t["latest"].clone(),
                )
            })
            .collect()
    }

    /// Stops the server gracefully and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), AppError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("server stops within 30 s")
            .expect("server task")
    }
}

pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name)
                && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        })
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` until it holds, or panics naming `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A graphql-transport-ws client (the protocol of the npm `graphql-ws` client).
pub struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    /// Connects and sends `connection_init` with the token; returns the client and the
    /// server's first answer (`connection_ack`, or an error/close).
    pub async fn connect(addr: SocketAddr, token: &str) -> (WsClient, Value) {
        let mut req = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().expect("header"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("ws connect");
        let mut c = WsClient { ws };
        c.send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}})).await;
        let first = c.next(Duration::from_secs(5)).await;
        (c, first)
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("ws send");
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}})).await;
    }

    /// The next protocol message (pings answered), or `{"type":"closed","code":…}`.
    pub async fn next(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return json!({"type": "timeout"}),
                Ok(None) => return json!({"type": "closed"}),
                Ok(Some(Err(e))) => return json!({"type": "closed", "error": e.to_string()}),
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).expect("json message");
                    if v["type"] == "ping" {
                        self.send(json!({"type": "pong"})).await;
                        continue;
                    }
                    return v;
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return json!({"type": "closed", "code": frame.map(|f| u16::from(f.code))});
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

pub type SharedStore = Arc<dyn Store>;
