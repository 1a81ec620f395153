//! Sessions: login (with brute-force lockout), refresh-token rotation with replay
//! detection, logout, and the caller's own password.

use async_graphql::{Context, Object};

use super::{check_password, end_sessions, hash, issue_session, matches, now_ms, state_of};
use crate::api::audit::{Actor, note};
use crate::api::auth::dummy_hash;
use crate::api::graphql::types::AuthPayload;
use crate::api::graphql::{ApiError, RequestCtx, api, fail, session};
use crate::api::limits::Failure;
use crate::api::permissions::FieldAccess;
use crate::api::tokens::hash_token;
use crate::domain::{RefreshUse, Timestamp};
use crate::storage::UserChange;
use crate::telemetry::names;

#[derive(Default)]
pub struct SessionMutations;

fn client_addr(ctx: &Context<'_>) -> String {
    ctx.data_opt::<RequestCtx>()
        .and_then(|r| r.client_addr.clone())
        .unwrap_or_else(|| "unknown".into())
}

#[Object(guard = "FieldAccess(\"Mutation\")")]
impl SessionMutations {
    /// Exchanges a tenant, username and password for an access token and a refresh
    /// token. Every failure (unknown tenant or user, wrong password, disabled user or
    /// tenant) answers the same UNAUTHENTICATED error. Repeated failures lock the
    /// account and the client address out for growing periods (RATE_LIMITED with
    /// `retryAfterMs`).
    async fn login(
        &self,
        ctx: &Context<'_>,
        tenant: String,
        username: String,
        password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let a = api(ctx);
        let account = format!("account:{tenant}/{username}");
        let address = format!("address:{}", client_addr(ctx));
        let keys = [account.as_str(), address.as_str()];
        note(ctx, |n| {
            n.actor = Some(Actor {
                tenant: a.gate.tenant_id(&tenant),
                tenant_name: Some(tenant.clone()),
                username: Some(username.clone()),
                user: None,
            });
        });
        if let Some(wait) = a.limits.login.locked(&keys) {
            metrics::counter!(names::RATE_LIMITED, "limit" => "login").increment(1);
            note(ctx, |n| n.reason = Some("locked_out".into()));
            return Err(fail(
                ctx,
                ApiError::RateLimited {
                    retry_after_ms: wait.as_millis() as u64,
                },
            ));
        }
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
        let ok = matches(ctx, password, hash).await?;
        if let Some(t) = &t {
            note(ctx, |n| {
                if let Some(actor) = &mut n.actor {
                    actor.tenant = Some(t.id);
                    actor.user = user.as_ref().map(|u| u.id);
                }
                n.resource_id = user.as_ref().map(|u| u.id.to_string());
            });
        }
        let tenant_disabled = t
            .as_ref()
            .is_some_and(|t| a.gate.tenant(t.id).is_none_or(|s| s.record.disabled));
        let reason = match (&t, &user, ok) {
            (None, _, _) => Some("unknown_tenant"),
            (_, None, _) => Some("unknown_user"),
            (_, _, false) => Some("bad_password"),
            (_, Some(u), true) if u.disabled => Some("user_disabled"),
            _ if tenant_disabled => Some("tenant_disabled"),
            _ => None,
        };
        let (Some(user), Some(t), None) = (user, t, reason) else {
            let reason = reason.unwrap_or("bad_credentials");
            metrics::counter!(names::AUTH_FAILURES, "reason" => reason).increment(1);
            let lock = a.limits.login.failed(&keys);
            note(ctx, |n| {
                n.reason = Some(match lock {
                    Failure::LockedOut(d) => {
                        format!("{reason},lockout_started:{}ms", d.as_millis())
                    }
                    Failure::Counted => reason.to_string(),
                });
            });
            return Err(fail(ctx, ApiError::Unauthenticated));
        };
        a.limits.login.succeeded(&account);
        a.gate.set_user(state_of(&user));
        issue_session(ctx, &user, &t.name, None).await
    }

    /// Exchanges a refresh token for a new access token and a new refresh token (the
    /// old one stops working). Presenting a refresh token a second time revokes the
    /// whole session: every token of that login.
    async fn refresh(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let a = api(ctx);
        let now = Timestamp::now();
        let found = a
            .store
            .use_refresh_token(&hash_token(&refresh_token), now)
            .await
            .map_err(|e| fail(ctx, e))?;
        let token = match found {
            RefreshUse::Fresh(t) => t,
            RefreshUse::Reused(t) => {
                a.store
                    .revoke_refresh_family(&t.family, now)
                    .await
                    .map_err(|e| fail(ctx, e))?;
                a.gate.revoke_family(&t.family);
                tracing::warn!(user = %t.user, tenant = %t.tenant, "refresh token presented twice: session revoked");
                metrics::counter!(names::AUTH_FAILURES, "reason" => "refresh_reuse").increment(1);
                note(ctx, |n| {
                    n.reason = Some("refresh_token_reuse,session_revoked".into());
                    n.actor = Some(Actor {
                        tenant: Some(t.tenant),
                        tenant_name: a.gate.tenant(t.tenant).map(|s| s.record.tenant.name),
                        user: Some(t.user),
                        username: None,
                    });
                });
                return Err(fail(ctx, ApiError::Unauthenticated));
            }
            RefreshUse::Expired(_) | RefreshUse::Unknown => {
                metrics::counter!(names::AUTH_FAILURES, "reason" => "bad_refresh").increment(1);
                note(ctx, |n| n.reason = Some("unknown_or_expired".into()));
                return Err(fail(ctx, ApiError::Unauthenticated));
            }
        };
        let user = a
            .store
            .user_by_id(token.tenant, token.user)
            .await
            .map_err(|e| fail(ctx, e))?;
        let tenant = a.gate.tenant(token.tenant);
        let (Some(user), Some(tenant)) = (user, tenant) else {
            return Err(fail(ctx, ApiError::Unauthenticated));
        };
        note(ctx, |n| {
            n.actor = Some(Actor {
                tenant: Some(user.tenant),
                tenant_name: Some(tenant.record.tenant.name.clone()),
                user: Some(user.id),
                username: Some(user.username.clone()),
            });
            n.resource_id = Some(user.id.to_string());
        });
        if user.disabled || tenant.record.disabled {
            note(ctx, |n| n.reason = Some("disabled".into()));
            return Err(fail(ctx, ApiError::Unauthenticated));
        }
        issue_session(ctx, &user, &tenant.record.tenant.name, Some(&token.family)).await
    }

    /// Ends the login session of this refresh token: it and every access token of the
    /// session stop working. True when there was a session to end.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<bool> {
        let a = api(ctx);
        let now = Timestamp::now();
        let found = a
            .store
            .use_refresh_token(&hash_token(&refresh_token), now)
            .await
            .map_err(|e| fail(ctx, e))?;
        let token = match found {
            RefreshUse::Fresh(t) | RefreshUse::Reused(t) | RefreshUse::Expired(t) => t,
            RefreshUse::Unknown => return Ok(false),
        };
        a.store
            .revoke_refresh_family(&token.family, now)
            .await
            .map_err(|e| fail(ctx, e))?;
        a.gate.revoke_family(&token.family);
        let username = a
            .store
            .user_by_id(token.tenant, token.user)
            .await
            .ok()
            .flatten()
            .map(|u| u.username);
        note(ctx, |n| {
            n.actor = Some(Actor {
                tenant: Some(token.tenant),
                tenant_name: a.gate.tenant(token.tenant).map(|t| t.record.tenant.name),
                user: Some(token.user),
                username,
            });
            n.resource_id = Some(token.user.to_string());
        });
        Ok(true)
    }

    /// Changes the caller's password. Every other session of the account ends; the
    /// answer is a fresh session.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let a = api(ctx);
        let s = session(ctx)?;
        note(ctx, |n| n.resource_id = Some(s.user.to_string()));
        let user = a
            .store
            .user_by_id(s.tenant, s.user)
            .await
            .map_err(|e| fail(ctx, e))?
            .ok_or_else(|| fail(ctx, ApiError::Unauthenticated))?;
        let ok = matches(ctx, current_password, user.password_hash.clone()).await?;
        if !ok {
            note(ctx, |n| n.reason = Some("bad_current_password".into()));
            return Err(fail(
                ctx,
                ApiError::BadRequest("the current password is wrong".into()),
            ));
        }
        check_password(ctx, &new_password)?;
        let new_hash = hash(ctx, new_password).await?;
        let user = a
            .store
            .update_user(
                s.tenant,
                s.user,
                &UserChange {
                    password_hash: Some(new_hash),
                    revoke_tokens_at_ms: Some(now_ms()),
                    ..UserChange::default()
                },
            )
            .await
            .map_err(|e| fail(ctx, e))?
            .ok_or_else(|| fail(ctx, ApiError::Unauthenticated))?;
        end_sessions(ctx, &user).await?;
        // Issued at or after the revocation instant, so it counts.
        issue_session(ctx, &user, &s.tenant_name, None).await
    }
}
