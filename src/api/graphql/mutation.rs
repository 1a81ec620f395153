//! Mutation root: login today; commands and configuration arrive with later issues.

use async_graphql::{Context, Object};

use super::types::AuthPayload;
use super::{ApiError, api, fail};
use crate::api::auth::{dummy_hash, verify_password};
use crate::telemetry::names;

pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Exchanges a tenant, username and password for an access token. Every failure
    /// (unknown tenant, unknown user, wrong password, disabled user) answers the same
    /// UNAUTHENTICATED error.
    async fn login(
        &self,
        ctx: &Context<'_>,
        tenant: String,
        username: String,
        password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let a = api(ctx);
        let t = a
            .store
            .tenant_by_name(&tenant)
            .await
            .map_err(|e| fail(ctx, e))?;
        let user = match &t {
            Some(t) => a
                .store
                .user_by_name(t.id, &username)
                .await
                .map_err(|e| fail(ctx, e))?,
            None => None,
        };
        let hash = user
            .as_ref()
            .map_or_else(|| dummy_hash().to_string(), |u| u.password_hash.clone());
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))?;
        let (Some(user), Some(t), true) = (user, t, ok) else {
            metrics::counter!(names::AUTH_FAILURES, "reason" => "bad_credentials").increment(1);
            return Err(fail(ctx, ApiError::Unauthenticated));
        };
        if user.disabled {
            metrics::counter!(names::AUTH_FAILURES, "reason" => "disabled").increment(1);
            return Err(fail(ctx, ApiError::Unauthenticated));
        }
        let (access_token, expires_in) = a
            .auth
            .issue(&user, &t.name)
            .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))?;
        Ok(AuthPayload {
            access_token,
            expires_in,
            token_type: "Bearer".into(),
            role: user.role.into(),
        })
    }
}
