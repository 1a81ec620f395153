//! The GraphQL schema: queries, mutations and subscriptions, with the request context
//! every resolver reads (store, runtime, the caller's session, the request id).

mod mutation;
mod query;
mod subscription;
mod types;

use std::sync::Arc;

use async_graphql::{Context, Guard, Schema};

pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

use super::auth::{AuthError, AuthKeys, Session};
use super::error::ApiError;
use crate::actors::{Runtime, TenantShared};
use crate::config::Config;
use crate::domain::{Role, TagId};
use crate::storage::Store;
use crate::telemetry::names;

pub type ThermaSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// What every resolver can reach.
pub struct ApiContext {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<Runtime>,
    pub auth: Arc<AuthKeys>,
    pub config: Arc<Config>,
}

/// Per request (or per WebSocket connection): who is calling, and the request id.
pub struct RequestCtx {
    pub request_id: String,
    pub session: Result<Session, AuthError>,
}

/// Builds the executable schema with its depth and complexity limits.
pub fn build_schema(api: Arc<ApiContext>) -> ThermaSchema {
    let (depth, complexity) = (
        api.config.api.max_query_depth,
        api.config.api.max_query_complexity,
    );
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .data(api)
        .limit_depth(depth)
        .limit_complexity(complexity)
        .finish()
}

/// The SDL of the schema (`thermacore schema`, `schema/schema.graphql`).
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
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
pub(crate) fn fail(ctx: &Context<'_>, e: impl Into<ApiError>) -> async_graphql::Error {
    let e = e.into();
    metrics::counter!(names::GRAPHQL_ERRORS, "code" => e.code()).increment(1);
    e.into_graphql(request_id(ctx))
}

/// The caller's session, or UNAUTHENTICATED.
pub(crate) fn session<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Session> {
    match ctx.data_opt::<RequestCtx>().map(|r| &r.session) {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => {
            metrics::counter!(names::AUTH_FAILURES, "reason" => e.reason()).increment(1);
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
    if ids.len() > api(ctx).config.api.max_tag_ids {
        return Err(fail(
            ctx,
            ApiError::BadRequest(format!(
                "at most {} tag ids per call",
                api(ctx).config.api.max_tag_ids
            )),
        ));
    }
    ids.iter()
        .map(|id| match id.parse::<TagId>() {
            Ok(tag) if t.cache.knows(tag) => Ok(tag),
            _ => Err(fail(ctx, ApiError::NotFound("tag"))),
        })
        .collect()
}

/// Requires at least the given role (roles are ordered admin > operator > viewer).
pub struct RoleGuard(pub Role);

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let s = session(ctx)?;
        if s.role >= self.0 {
            Ok(())
        } else {
            Err(fail(ctx, ApiError::Forbidden))
        }
    }
}
