//! The GraphQL schema: queries, mutations and subscriptions, with the request context
//! every resolver reads (store, runtime, the caller's session, the request id).

mod alarms;
mod analytics;
mod configure;
mod devices;
mod mutation;
mod opcua;
pub mod operations;
mod plant;
mod query;
mod subscription;
mod types;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_graphql::{Context, Guard, Schema};

pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

use super::audit::{self, AuditExtension};
use super::auth::{AuthError, AuthKeys, Session};
use super::error::ApiError;
use super::gate::Gate;
use super::limits::{AliasLimit, Limits};
use super::permissions::Permission;
use crate::actors::{Runtime, TenantShared};
use crate::config::{Config, RunMode};
use crate::domain::TagId;
use crate::storage::Store;
use crate::telemetry::names;

pub type ThermaSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// What every resolver can reach.
pub struct ApiContext {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<Runtime>,
    pub auth: Arc<AuthKeys>,
    pub config: Arc<Config>,
    pub gate: Arc<Gate>,
    pub limits: Arc<Limits>,
}

/// Per request (or per WebSocket connection): who is calling, from where, the request
/// id, and what resolvers add to their audit records.
pub struct RequestCtx {
    pub request_id: String,
    pub session: Result<Session, AuthError>,
    pub client_addr: Option<String>,
    pub notes: audit::Notes,
    /// Subscriptions open on this WebSocket connection (`None` over HTTP).
    pub connection_subs: Option<Arc<AtomicUsize>>,
}

impl RequestCtx {
    pub fn new(
        request_id: String,
        session: Result<Session, AuthError>,
        client_addr: Option<String>,
    ) -> Self {
        RequestCtx {
            request_id,
            session,
            client_addr,
            notes: Default::default(),
            connection_subs: None,
        }
    }
}

/// Whether schema introspection (and GraphiQL) is on: the configured value, else on in
/// development and off in production.
pub fn introspection_enabled(config: &Config) -> bool {
    config
        .api
        .introspection
        .unwrap_or(config.mode == RunMode::Development)
}

/// Builds the executable schema with its limits (depth, complexity, aliases,
/// recursion) and the audit extension.
pub fn build_schema(api: Arc<ApiContext>) -> ThermaSchema {
    let c = &api.config.api;
    let builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .limit_depth(c.max_query_depth)
    .limit_complexity(c.max_query_complexity)
    .limit_recursive_depth(64)
    .limit_directives(20)
    .extension(AliasLimit(c.max_aliases))
    .extension(AuditExtension)
    .extension(operations::OperationMetrics);
    let builder = if introspection_enabled(&api.config) {
        builder
    } else {
        builder.disable_introspection()
    };
    builder.data(api).finish()
}

/// The SDL of the schema (`thermacore schema`, `schema/schema.graphql`).
pub fn sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .finish()
    .sdl()
}

pub(crate) fn api<'a>(ctx: &Context<'a>) -> &'a ApiContext {
    ctx.data_unchecked::<Arc<ApiContext>>()
}

pub(crate) fn request_id<'a>(ctx: &Context<'a>) -> &'a str {
    ctx.data_opt::<RequestCtx>()
        .map_or("-", |r| r.request_id.as_str())
}

/// Turns an [`ApiError`] into a GraphQL error for this request.
pub fn fail(ctx: &Context<'_>, e: impl Into<ApiError>) -> async_graphql::Error {
    let e = e.into();
    metrics::counter!(names::GRAPHQL_ERRORS, "code" => e.code()).increment(1);
    e.into_graphql(request_id(ctx))
}

/// The caller's session, or UNAUTHENTICATED.
pub(crate) fn session<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Session> {
    match ctx.data_opt::<RequestCtx>().map(|r| &r.session) {
        Some(Ok(s)) => Ok(s),
        _ => Err(fail(ctx, ApiError::Unauthenticated)),
    }
}

/// The session for the root guard: UNAUTHENTICATED when there is none, counted, and
/// audited for a query or subscription presenting a tampered, foreign or revoked
/// token (a mutation's record is the audit extension's).
pub(crate) async fn session_for_guard<'a>(
    ctx: &Context<'a>,
    parent: &str,
    field: &str,
) -> async_graphql::Result<&'a Session> {
    match ctx.data_opt::<RequestCtx>().map(|r| &r.session) {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => {
            metrics::counter!(names::AUTH_FAILURES, "reason" => e.reason()).increment(1);
            if parent != "Mutation" && audit::is_suspicious(e) {
                audit::denied(
                    ctx,
                    None,
                    &format!("{parent}.{field}"),
                    &format!("UNAUTHENTICATED:{}", e.reason()),
                )
                .await;
            }
            Err(fail(ctx, ApiError::Unauthenticated))
        }
        None => Err(fail(ctx, ApiError::Unauthenticated)),
    }
}

/// The running tenant of the caller.
pub(crate) fn tenant<'a>(ctx: &Context<'a>) -> async_graphql::Result<Arc<TenantShared>> {
    let s = session(ctx)?;
    api(ctx).runtime.tenant(s.tenant).ok_or_else(|| {
        fail(
            ctx,
            ApiError::Unavailable(format!("tenant {} not running", s.tenant)),
        )
    })
}

/// Parses tag ids and checks each belongs to the caller's tenant (else NOT_FOUND).
pub(crate) fn own_tags(
    ctx: &Context<'_>,
    t: &TenantShared,
    ids: &[async_graphql::ID],
) -> async_graphql::Result<Vec<TagId>> {
    let max = api(ctx).config.api.max_tag_ids;
    tenant_tags(t, ids.iter().map(|id| id.as_str()), max).map_err(|e| fail(ctx, e))
}

/// At most `max` tag ids, each parsed and a tag of the tenant (else NOT_FOUND, whether
/// or not it exists elsewhere); in the order given.
pub(crate) fn tenant_tags<'a>(
    t: &TenantShared,
    ids: impl ExactSizeIterator<Item = &'a str>,
    max: usize,
) -> Result<Vec<TagId>, ApiError> {
    if ids.len() > max {
        return Err(ApiError::BadRequest(format!(
            "{} tag ids: at most {max} per call",
            ids.len()
        )));
    }
    ids.map(|id| match id.parse::<TagId>() {
        Ok(tag) if t.cache.knows(tag) => Ok(tag),
        _ => Err(ApiError::NotFound("tag")),
    })
    .collect()
}

/// Requires a permission on a nested field (the root fields' rules are in
/// [`super::permissions::FIELDS`]; this repeats the check where a type is reachable).
pub struct Need(pub Permission);

impl Guard for Need {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let s = session(ctx)?;
        if s.permits(self.0) {
            Ok(())
        } else {
            Err(fail(ctx, ApiError::Forbidden))
        }
    }
}
