//! The HTTP face of ThermaCore (axum): GraphQL over HTTP and WebSocket, GraphiQL,
//! Prometheus metrics, liveness and readiness. Every response carries an
//! `x-request-id` (the client's, or a new one); [`http`] adds the hardening layers.

pub mod auth;
pub mod error;
pub mod graphql;
pub mod http;

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
        .route("/readyz", get(readyz));
    http::harden(routes, server, tls).with_state(state)
}

async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let path: &'static str = match req.uri().path() {
        "/graphql" => "/graphql",
        "/graphql/ws" => "/graphql/ws",
        "/metrics" => "/metrics",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        _ => "other",
    };
    let mut resp = next.run(req).await;
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

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
}

async fn graphql_http(
    State(state): State<AppState>,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    req: GraphQLRequest,
) -> Response {
    let Some(core) = state.core.load_full() else {
        return unavailable();
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let session = core.api.auth.verify_header(auth);
    let req = req.into_inner().data(RequestCtx {
        request_id: rid,
        session,
    });
    let mut resp = core.schema.execute(req).await;
    // Parse and validation errors of async-graphql carry no code: give them one.
    for e in &mut resp.errors {
        let has_code = e
            .extensions
            .as_ref()
            .is_some_and(|x| x.get("code").is_some());
        if !has_code {
            metrics::counter!(names::GRAPHQL_ERRORS, "code" => "BAD_REQUEST").increment(1);
            e.extensions
                .get_or_insert_with(Default::default)
                .set("code", "BAD_REQUEST");
        }
    }
    GraphQLResponse::from(resp).into_response()
}

async fn graphql_ws(
    State(state): State<AppState>,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    protocol: GraphQLProtocol,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(core) = state.core.load_full() else {
        return unavailable();
    };
    ws.protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_ws(socket, core, protocol, rid))
        .into_response()
}

/// Reads `connection_init` first: a missing or bad token closes the socket with 4403
/// (graphql-ws's "Forbidden"); a good one hands the connection, init message
/// included, to async-graphql with the caller's session.
async fn serve_ws(socket: WebSocket, core: Arc<Core>, protocol: GraphQLProtocol, rid: String) {
    use futures::{SinkExt, StreamExt};
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
        core.api.auth.verify_header(header),
    ) {
        (Some("connection_init"), Ok(session)) => session,
        (_, result) => {
            let reason = result.err().map_or("protocol", |e| e.reason());
            metrics::counter!(names::AUTH_FAILURES, "reason" => reason).increment(1);
            let frame = CloseFrame {
                code: 4403,
                reason: "Forbidden".into(),
            };
            let _ = sink.send(WsMessage::Close(Some(frame))).await;
            return;
        }
    };
    let stream = futures::stream::once(async move { Ok(first) }).chain(stream);
    GraphQLWebSocket::new_with_pair(sink, stream, core.schema.clone(), protocol)
        .on_connection_init(move |_| async move {
            let mut data = async_graphql::Data::default();
            data.insert(RequestCtx {
                request_id: rid,
                session: Ok(session),
            });
            Ok(data)
        })
        .serve()
        .await;
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    if let Some(core) = state.core.load_full() {
        let rt = &core.api.runtime;
        for t in rt.tenants.iter() {
            t.cache.export_metrics();
            t.live.export_metrics();
        }
        rt.historian.export_metrics();
    }
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
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
