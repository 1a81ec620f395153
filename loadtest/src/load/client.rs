//! The API as a client sees it: GraphQL over HTTP with a login that renews itself,
//! and graphql-transport-ws subscriptions. Failures come back as a short kind for
//! the report (`timeout`, `connect`, `http_429`, `graphql_RATE_LIMITED` …).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Who a client signs in as.
#[derive(Debug, Clone)]
pub struct Login {
    pub tenant: String,
    pub username: String,
    pub password: String,
}

/// One signed-in user's GraphQL client. Clones share the connection pool and the
/// token.
#[derive(Clone)]
pub struct Gql {
    http: reqwest::Client,
    url: String,
    login: Arc<Login>,
    token: Arc<RwLock<String>>,
    /// Held while signing in again, so that the tasks of one user that find its
    /// token expired together sign in once.
    renewing: Arc<tokio::sync::Mutex<()>>,
}

const LOGIN: &str = "mutation($t:String!,$u:String!,$p:String!){login(tenant:$t,username:$u,password:$p){accessToken}}";

/// The kind of a failed request.
fn kind_of(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else if let Some(s) = e.status() {
        format!("http_{}", s.as_u16())
    } else if e.is_decode() {
        "decode".into()
    } else {
        "transport".into()
    }
}

impl Gql {
    /// Signs in at `base` (`http://host:port`).
    pub async fn connect(http: reqwest::Client, base: &str, login: Login) -> Result<Gql, String> {
        let gql = Gql {
            http,
            url: format!("{}/graphql", base.trim_end_matches('/')),
            login: Arc::new(login),
            token: Arc::new(RwLock::new(String::new())),
            renewing: Arc::new(tokio::sync::Mutex::new(())),
        };
        gql.sign_in().await?;
        Ok(gql)
    }

    pub fn token(&self) -> String {
        self.token.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Signs in again after the server refused `stale`, unless another task of
    /// this user already replaced it.
    pub async fn renew(&self, stale: &str) -> Result<(), String> {
        let _one_at_a_time = self.renewing.lock().await;
        if self.token() != stale {
            return Ok(());
        }
        self.sign_in().await
    }

    async fn sign_in(&self) -> Result<(), String> {
        let l = &self.login;
        let data = self
            .post(
                LOGIN,
                json!({"t": l.tenant, "u": l.username, "p": l.password}),
                None,
            )
            .await
            .map_err(|k| format!("login of {}/{}: {k}", l.tenant, l.username))?;
        let token = data["login"]["accessToken"]
            .as_str()
            .ok_or_else(|| format!("login of {}/{}: no accessToken", l.tenant, l.username))?;
        if let Ok(mut t) = self.token.write() {
            *t = token.to_string();
        }
        Ok(())
    }

    async fn post(&self, query: &str, vars: Value, token: Option<&str>) -> Result<Value, String> {
        let mut req = self
            .http
            .post(&self.url)
            .json(&json!({"query": query, "variables": vars}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| kind_of(&e))?;
        let status = resp.status();
        let body: Value = match resp.json().await {
            Ok(b) => b,
            Err(_) if !status.is_success() => return Err(format!("http_{}", status.as_u16())),
            Err(e) => return Err(kind_of(&e)),
        };
        if let Some(first) = body["errors"].as_array().and_then(|e| e.first()) {
            let code = first["extensions"]["code"].as_str().unwrap_or("NO_CODE");
            return Err(format!("graphql_{code}"));
        }
        if !status.is_success() {
            return Err(format!("http_{}", status.as_u16()));
        }
        Ok(body["data"].clone())
    }

    /// Runs an operation; signs in again once when the token has expired.
    pub async fn run(&self, query: &str, vars: Value) -> Result<Value, String> {
        let token = self.token();
        match self.post(query, vars.clone(), Some(&token)).await {
            Err(k) if k == "graphql_UNAUTHENTICATED" || k == "http_401" => {
                self.renew(&token).await.map_err(|_| k)?;
                self.post(query, vars, Some(&self.token())).await
            }
            other => other,
        }
    }

    /// Runs an operation and records it as `op`.
    pub async fn timed(
        &self,
        rec: &super::stats::Recorder,
        op: &'static str,
        query: &str,
        vars: Value,
    ) -> Option<Value> {
        let t0 = Instant::now();
        match self.run(query, vars).await {
            Ok(v) => {
                rec.ok(op, t0.elapsed());
                Some(v)
            }
            Err(k) => {
                rec.err(op, &k);
                None
            }
        }
    }

    /// `ws://…/graphql/ws` of this server.
    pub fn ws_url(&self) -> String {
        let base = self.url.trim_end_matches("/graphql");
        let base = base
            .strip_prefix("https://")
            .map(|r| format!("wss://{r}"))
            .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
            .unwrap_or_else(|| base.to_string());
        format!("{base}/graphql/ws")
    }
}

/// The kind of a subscription ended because its token expired.
pub const TOKEN_EXPIRED: &str = "token_expired";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One graphql-transport-ws connection with one subscription on it.
pub struct Subscription {
    ws: Socket,
}

/// What [`Subscription::next`] got.
pub enum Event {
    /// A `next` payload's `data`.
    Data(Value),
    /// The subscription ended (`complete`, an `error`, a close): why.
    Ended(String),
}

impl Subscription {
    /// Connects, authenticates with `token` and subscribes.
    pub async fn open(
        gql: &Gql,
        token: &str,
        query: &str,
        vars: Value,
        timeout: Duration,
    ) -> Result<Subscription, String> {
        let mut req = gql
            .ws_url()
            .into_client_request()
            .map_err(|_| "ws_url".to_string())?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            http_header("graphql-transport-ws"),
        );
        let (ws, _) = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(req))
            .await
            .map_err(|_| "ws_timeout".to_string())?
            .map_err(|_| "ws_connect".to_string())?;
        let mut s = Subscription { ws };
        s.send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}))
            .await?;
        match tokio::time::timeout(timeout, s.message()).await {
            Err(_) => return Err("ws_ack_timeout".into()),
            Ok(Ok(m)) if m["type"] == "connection_ack" => {}
            Ok(Ok(_)) => return Err("ws_refused".into()),
            Ok(Err(k)) => return Err(k),
        }
        s.send(
            json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": vars}}),
        )
        .await?;
        Ok(s)
    }

    async fn send(&mut self, v: Value) -> Result<(), String> {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .map_err(|_| "ws_send".to_string())
    }

    /// The next protocol message, pings answered.
    async fn message(&mut self) -> Result<Value, String> {
        loop {
            match self.ws.next().await {
                None => return Err("ws_closed".into()),
                Some(Err(_)) => return Err("ws_error".into()),
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).map_err(|_| "ws_decode".to_string())?;
                    if v["type"] == "ping" {
                        self.send(json!({"type": "pong"})).await?;
                        continue;
                    }
                    return Ok(v);
                }
                Some(Ok(Message::Close(f))) => {
                    let code = f.as_ref().map_or(1005, |f| u16::from(f.code));
                    // The server ends a subscription whose token expired (4403,
                    // "expired"): the client signs in again, as a frontend does.
                    if code == 4403 && f.is_some_and(|f| f.reason.contains("expired")) {
                        return Err(TOKEN_EXPIRED.into());
                    }
                    return Err(format!("ws_closed_{code}"));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    pub async fn next(&mut self) -> Event {
        match self.message().await {
            Ok(m) if m["type"] == "next" => {
                if let Some(code) = m["payload"]["errors"][0]["extensions"]["code"].as_str() {
                    return Event::Ended(format!("graphql_{code}"));
                }
                Event::Data(m["payload"]["data"].clone())
            }
            Ok(m) if m["type"] == "error" => Event::Ended(format!(
                "graphql_{}",
                m["payload"][0]["extensions"]["code"]
                    .as_str()
                    .unwrap_or("NO_CODE")
            )),
            Ok(m) if m["type"] == "complete" => Event::Ended("complete".into()),
            Ok(_) => Event::Ended("ws_protocol".into()),
            Err(k) => Event::Ended(k),
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

fn http_header(v: &'static str) -> tokio_tungstenite::tungstenite::http::HeaderValue {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_static(v)
}

/// Milliseconds from an RFC 3339 time to now (0 when the time is in the future or
/// unreadable: `None`).
pub fn age(rfc3339: &str) -> Option<Duration> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    let age = chrono::Utc::now().signed_duration_since(t);
    Some(age.to_std().unwrap_or(Duration::ZERO))
}
