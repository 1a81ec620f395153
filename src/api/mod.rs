//! The HTTP face of ThermaCore (axum): GraphQL over HTTP and WebSocket, GraphiQL,
//! Prometheus metrics, liveness and readiness. Every response carries an
//! `x-request-id` (the client's, or a new one); [`http`] adds the hardening layers.

pub mod audit;
pub mod auth;
pub mod error;
pub mod export;
pub mod gate;
pub mod graphql;
pub mod http;
pub mod limits;
pub mod permissions;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use axum::extract::{Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use auth::{AuthError, Session};
pub use error::ApiError;
use graphql::{ApiContext, RequestCtx, ThermaSchema};
pub use http::ClientAddr;

use crate::config::ServerConfig;
use crate::telemetry::names;

/// The running core the API serves, present once the store answered and the actor
/// tree is up.
pub struct Core {
    pub api: Arc<ApiContext>,
    pub schema: ThermaSchema,
}

/// Shared state of the HTTP server.
#[derive(Clone)]
pub struct AppState {
    pub core: Arc<ArcSwapOption<Core>>,
    pub metrics: PrometheusHandle,
}

/// The request id of this request (from `x-request-id` or generated).
#[derive(Clone)]
pub struct RequestId(pub String);

/// The routes inside the layers of [`http::harden`]; `tls` adds HSTS.
pub fn router(state: AppState, server: &ServerConfig, tls: bool) -> Router {
    let routes = Router::new()
        .route("/graphql", get(graphiql).post(graphql_http))
        .route("/graphql/ws", get(graphql_ws))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/export", get(export::export_history))
        .route("/api/export/alarms", get(export::export_alarms));
    http::harden(routes, server, tls).with_state(state)
}

/// The `path` label values of the HTTP metrics.
pub const PATH_CLASSES: [&str; 8] = [
    "/graphql",
    "/graphql/ws",
    "/metrics",
    "/healthz",
    "/readyz",
    "/api/export",
    "/api/export/alarms",
    "other",
];

async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    // A request path is "/…": it never equals "other".
    let path: &'static str = PATH_CLASSES
        .into_iter()
        .find(|p| *p == req.uri().path())
        .unwrap_or("other");
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    metrics::histogram!(names::HTTP_REQUEST_SECONDS, "path" => path)
        .record(started.elapsed().as_secs_f64());
    let class = match resp.status().as_u16() {
        100..=399 => "ok",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!(names::HTTP_REQUESTS, "path" => path, "status" => class).increment(1);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

fn unavailable() -> Response {
    http::graphql_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "service starting, try again",
        "UNAVAILABLE",
    )
}

async fn graphiql(State(state): State<AppState>) -> Response {
    let enabled = state
        .core
        .load_full()
        .is_some_and(|c| graphql::introspection_enabled(&c.api.config));
    if !enabled {
        return (
            StatusCode::NOT_FOUND,
            "GraphiQL is off (introspection disabled)",
        )
            .into_response();
    }
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
    .into_response()
}

/// The session of a request: the token verified, then checked against the gate
/// (user, tenant and login session still valid).
async fn checked_session(core: &Core, header: Option<&str>) -> Result<Session, AuthError> {
    let session = core.api.auth.verify_header(header)?;
    core.api.gate.check(&session).await?;
    Ok(session)
}

/// Applies the request-rate limits: per user and per tenant with a valid session, per
/// client address without one.
fn rate_limit(
    core: &Core,
    session: &Result<Session, AuthError>,
    client: Option<&str>,
) -> Result<(), Duration> {
    match session {
        Ok(s) => core.api.limits.request(
            s.user,
            s.tenant,
            core.api.gate.quotas(s.tenant).max_requests_per_sec,
        ),
        Err(_) => core.api.limits.anonymous(client.unwrap_or("unknown")),
    }
}

fn rate_limited(request_id: &str, wait: Duration) -> Response {
    let ms = wait.as_millis().max(1) as u64;
    metrics::counter!(names::GRAPHQL_ERRORS, "code" => "RATE_LIMITED").increment(1);
    let body = serde_json::json!({"errors": [{
        "message": format!("rate limited: retry in {ms} ms"),
        "extensions": {"code": "RATE_LIMITED", "retryAfterMs": ms, "requestId": request_id},
    }]});
    let secs = ms.div_ceil(1000).to_string();
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&secs) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

async fn graphql_http(
    State(state): State<AppState>,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    req: GraphQLRequest,
) -> Response {
    let Some(core) = state.core.load_full() else {
        return unavailable();
    };
    let client = client.map(|c| c.0.0.to_string());
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let session = checked_session(&core, auth).await;
    if let Err(wait) = rate_limit(&core, &session, client.as_deref()) {
        return rate_limited(&rid, wait);
    }
    let req = req
        .into_inner()
        .data(RequestCtx::new(rid.clone(), session, client));
    let mut resp = core.schema.execute(req).await;
    // Parse and validation errors of async-graphql carry no code: give them one, and
    // every error the request id.
    for e in &mut resp.errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            metrics::counter!(names::GRAPHQL_ERRORS, "code" => "BAD_USER_INPUT").increment(1);
            ext.set("code", "BAD_USER_INPUT");
        }
        if ext.get("requestId").is_none() {
            ext.set("requestId", rid.clone());
        }
    }
    GraphQLResponse::from(resp).into_response()
}

async fn graphql_ws(
    State(state): State<AppState>,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    client: Option<axum::Extension<ClientAddr>>,
    protocol: GraphQLProtocol,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(core) = state.core.load_full() else {
        return unavailable();
    };
    let client = client.map(|c| c.0.0.to_string());
    ws.protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_ws(socket, core, protocol, rid, client))
        .into_response()
}

/// Closes a WebSocket with graphql-ws's "Forbidden" code.
async fn close_forbidden(
    sink: &mut futures::stream::SplitSink<WebSocket, WsMessage>,
    reason: &'static str,
) {
    use futures::SinkExt;
    metrics::counter!(names::AUTH_FAILURES, "reason" => reason).increment(1);
    let frame = CloseFrame {
        code: 4403,
        reason: reason.into(),
    };
    let _ = sink.send(WsMessage::Close(Some(frame))).await;
    let _ = sink.close().await;
}

/// Reads `connection_init` first: a missing, bad or revoked token closes the socket
/// with 4403 (graphql-ws's "Forbidden"); a good one hands the connection, init message
/// included, to async-graphql with the caller's session. While it runs, the session
/// is re-checked: when the token expires, or the user, tenant or login session is
/// revoked, the socket is closed with 4403.
async fn serve_ws(
    socket: WebSocket,
    core: Arc<Core>,
    protocol: GraphQLProtocol,
    rid: String,
    client: Option<String>,
) {
    use futures::StreamExt;
    let (mut sink, mut stream) = socket.split();
    let first = match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(msg))) => msg,
        _ => return,
    };
    let payload: serde_json::Value = match &first {
        WsMessage::Text(t) => serde_json::from_str(t.as_str()).unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    let header = payload["payload"]
        .get("authorization")
        .or_else(|| payload["payload"].get("Authorization"))
        .and_then(|v| v.as_str());
    let session = match (
        payload["type"].as_str(),
        checked_session(&core, header).await,
    ) {
        (Some("connection_init"), Ok(session)) => session,
        (_, result) => {
            let reason = result.err().map_or("protocol", |e| e.reason());
            close_forbidden(&mut sink, reason).await;
            return;
        }
    };
    if let Err(wait) = rate_limit(&core, &Ok(session.clone()), client.as_deref()) {
        tracing::debug!(
            wait_ms = wait.as_millis() as u64,
            "websocket refused: rate limited"
        );
        close_forbidden(&mut sink, "rate_limited").await;
        return;
    }
    let now = chrono::Utc::now().timestamp();
    let lifetime = Duration::from_secs(u64::try_from(session.expires_at - now).unwrap_or(0));
    let (tx, rx) = futures::channel::mpsc::channel::<WsMessage>(64);
    let stream = futures::stream::once(async move { Ok(first) }).chain(stream);
    let mut ctx = RequestCtx::new(rid, Ok(session.clone()), client);
    ctx.connection_subs = Some(Arc::new(std::sync::atomic::AtomicUsize::new(0)));
    let ctx = Arc::new(std::sync::Mutex::new(Some(ctx)));
    let serve = GraphQLWebSocket::new_with_pair(tx, stream, core.schema.clone(), protocol)
        .on_connection_init(move |_| async move {
            let mut data = async_graphql::Data::default();
            if let Some(ctx) = ctx.lock().ok().and_then(|mut c| c.take()) {
                data.insert(ctx);
            }
            Ok(data)
        })
        .serve();
    let gate = core.api.gate.clone();
    let watch = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if gate.check(&session).await.is_err() {
                return "revoked";
            }
        }
    };
    let ended = {
        let run = async {
            let _ = futures::join!(serve, rx.map(Ok).forward(&mut sink));
        };
        tokio::select! {
            _ = run => None,
            _ = tokio::time::sleep(lifetime) => Some("expired"),
            why = watch => Some(why),
        }
    };
    if let Some(reason) = ended {
        close_forbidden(&mut sink, reason).await;
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    if let Some(core) = state.core.load_full() {
        let rt = &core.api.runtime;
        let a = rt.actor_counts();
        let system = a.total - a.tenants - a.devices - a.tenant_services;
        for (kind, n) in [
            ("system", system),
            ("tenant", a.tenants),
            ("device", a.devices),
            ("tenant_service", a.tenant_services),
        ] {
            metrics::gauge!(names::ACTORS, "kind" => kind).set(n as f64);
        }
        for t in rt.tenants.iter() {
            t.cache.export_metrics();
            t.live.export_metrics();
            t.export_device_metrics();
            t.export_alarm_metrics();
        }
        #[cfg(feature = "modbus")]
        metrics::gauge!(names::MODBUS_CHANNELS)
            .set(crate::drivers::modbus::pool::open_channels() as f64);
        export_tenant_metrics(&core);
        rt.historian.export_metrics();
    }
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Usage against quotas per tenant (`thermacore_tenant_usage`, `thermacore_tenant_quota`).
fn export_tenant_metrics(core: &Core) {
    for t in core.api.gate.tenants() {
        let name = t.record.tenant.name.clone();
        let running = core.api.runtime.tenant(t.record.tenant.id);
        let (devices, tags) = running
            .as_ref()
            .map_or((0, 0), |r| (r.status.len(), r.cache.len()));
        let subs = core.api.gate.subscriptions(t.record.tenant.id);
        for (resource, v) in [
            ("devices", devices),
            ("tags", tags),
            ("subscriptions", subs),
        ] {
            metrics::gauge!(names::TENANT_USAGE, "tenant" => name.clone(), "resource" => resource)
                .set(v as f64);
        }
        let q = t.quotas;
        for (limit, v) in [
            ("max_devices", u64::from(q.max_devices)),
            ("max_tags", u64::from(q.max_tags)),
            ("min_poll_ms", q.min_poll_ms),
            (
                "max_subscriptions_per_user",
                u64::from(q.max_subscriptions_per_user),
            ),
            (
                "max_subscriptions_per_tenant",
                u64::from(q.max_subscriptions_per_tenant),
            ),
            ("max_requests_per_sec", u64::from(q.max_requests_per_sec)),
            (
                "history_retention_days",
                u64::from(q.history_retention_days),
            ),
        ] {
            metrics::gauge!(names::TENANT_QUOTA, "tenant" => name.clone(), "limit" => limit)
                .set(v as f64);
        }
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let Some(core) = state.core.load_full() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: store not reached or actor tree not up",
        )
            .into_response();
    };
    match tokio::time::timeout(Duration::from_secs(2), core.api.store.ping()).await {
        Ok(Ok(())) => {
            metrics::gauge!(names::STORE_UP).set(1.0);
            "ready".into_response()
        }
        _ => {
            metrics::gauge!(names::STORE_UP).set(0.0);
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable").into_response()
        }
    }
}
