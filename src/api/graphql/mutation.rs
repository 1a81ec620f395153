//! Mutation root: sessions (login, refresh, logout, password), users of the caller's
//! tenant, and tenants (platform administrators). Every field's access rule is in
//! [`crate::api::permissions::FIELDS`]; every call leaves exactly one audit record.

use async_graphql::{Context, ID, Object};

use super::types::{AuthPayload, QuotaInput, TenantInfo, UserInfo, UserRole};
use super::{ApiError, api, fail, session};
use crate::actors::TenantWorld;
use crate::api::audit::{Actor, note};
use crate::api::auth::{dummy_hash, hash_password, verify_password};
use crate::api::limits::Failure;
use crate::api::permissions::{FieldAccess, SYSTEM_TENANT};
use crate::api::tokens::{self, Issued, hash_token};
use crate::domain::{
    QuotaOverrides, RefreshUse, Role, TenantId, TenantRecord, Timestamp, User, UserId, UserState,
};
use crate::storage::UserChange;
use crate::telemetry::names;

pub struct MutationRoot;

fn payload(issued: Issued, role: Role) -> AuthPayload {
    AuthPayload {
        access_token: issued.access_token,
        expires_in: issued.expires_in,
        token_type: "Bearer".into(),
        role: role.into(),
        refresh_token: issued.refresh_token,
        refresh_expires_in: issued.refresh_expires_in,
    }
}

fn state_of(u: &User) -> UserState {
    UserState {
        user: u.id,
        tenant: u.tenant,
        disabled: u.disabled,
        tokens_valid_after_ms: u.tokens_valid_after_ms,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn client_addr(ctx: &Context<'_>) -> String {
    ctx.data_opt::<super::RequestCtx>()
        .and_then(|r| r.client_addr.clone())
        .unwrap_or_else(|| "unknown".into())
}

/// Checks a new password against the policy.
fn check_password(ctx: &Context<'_>, password: &str) -> async_graphql::Result<()> {
    let min = api(ctx).config.auth.min_password_len;
    let len = password.chars().count();
    if len < min {
        return Err(fail(
            ctx,
            ApiError::BadRequest(format!("the password must have at least {min} characters")),
        ));
    }
    if password.len() > 1024 {
        return Err(fail(
            ctx,
            ApiError::BadRequest("the password must have at most 1024 bytes".into()),
        ));
    }
    Ok(())
}

async fn hash(ctx: &Context<'_>, password: String) -> async_graphql::Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))?
        .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))
}

fn user_id(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<UserId> {
    id.parse()
        .map_err(|_| fail(ctx, ApiError::NotFound("user")))
}

/// The tenant named by `id`, or NOT_FOUND.
async fn existing_tenant(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<TenantRecord> {
    let tid: TenantId = id
        .parse()
        .map_err(|_| fail(ctx, ApiError::NotFound("tenant")))?;
    api(ctx)
        .store
        .tenant_record(tid)
        .await
        .map_err(|e| fail(ctx, e))?
        .ok_or_else(|| fail(ctx, ApiError::NotFound("tenant")))
}

/// Loads a tenant's world and starts its actors.
async fn start_tenant(ctx: &Context<'_>, record: &TenantRecord) -> async_graphql::Result<()> {
    let a = api(ctx);
    let world = TenantWorld::load(a.store.as_ref(), record.tenant.clone())
        .await
        .map_err(|e| fail(ctx, e))?;
    a.runtime
        .start_tenant(world)
        .await
        .map_err(|e| fail(ctx, ApiError::Unavailable(e)))
}

fn tenant_info(ctx: &Context<'_>, r: TenantRecord) -> TenantInfo {
    let quotas = r.quotas.over(&api(ctx).gate.defaults());
    TenantInfo {
        id: ID(r.tenant.id.to_string()),
        name: r.tenant.name,
        disabled: r.disabled,
        quotas: quotas.into(),
    }
}

/// Tenant names: 1–64 of `a-z 0-9 - _`.
fn check_tenant_name(ctx: &Context<'_>, name: &str) -> async_graphql::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(fail(
            ctx,
            ApiError::BadRequest("tenant names are 1-64 characters of a-z, 0-9, - and _".into()),
        ))
    }
}

/// Usernames: 1–64 characters, no control characters or surrounding spaces.
fn check_username(ctx: &Context<'_>, name: &str) -> async_graphql::Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name.trim() == name
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(fail(
            ctx,
            ApiError::BadRequest(
                "usernames are 1-64 characters without control characters or surrounding spaces"
                    .into(),
            ),
        ))
    }
}

#[Object(guard = "FieldAccess(\"Mutation\")")]
impl MutationRoot {
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
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))?;
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
        let issued = tokens::issue(
            a.store.as_ref(),
            &a.auth,
            &user,
            &t.name,
            None,
            a.config.auth.refresh_token_ttl_secs,
        )
        .await
        .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))?;
        a.gate.set_user(state_of(&user));
        Ok(payload(issued, user.role))
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
        let issued = tokens::issue(
            a.store.as_ref(),
            &a.auth,
            &user,
            &tenant.record.tenant.name,
            Some(&token.family),
            a.config.auth.refresh_token_ttl_secs,
        )
        .await
        .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))?;
        Ok(payload(issued, user.role))
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
        let hash_now = user.password_hash.clone();
        let ok = tokio::task::spawn_blocking(move || verify_password(&current_password, &hash_now))
            .await
            .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))?;
        if !ok {
            note(ctx, |n| n.reason = Some("bad_current_password".into()));
            return Err(fail(
                ctx,
                ApiError::BadRequest("the current password is wrong".into()),
            ));
        }
        check_password(ctx, &new_password)?;
        let new_hash = hash(ctx, new_password).await?;
        let now = Timestamp::now();
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
        a.store
            .revoke_user_refresh_tokens(user.id, now)
            .await
            .map_err(|e| fail(ctx, e))?;
        a.gate.set_user(state_of(&user));
        // Issued after the revocation instant, so it counts.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let issued = tokens::issue(
            a.store.as_ref(),
            &a.auth,
            &user,
            &s.tenant_name,
            None,
            a.config.auth.refresh_token_ttl_secs,
        )
        .await
        .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))?;
        Ok(payload(issued, user.role))
    }

    /// Creates a user in the caller's tenant.
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
        role: UserRole,
    ) -> async_graphql::Result<UserInfo> {
        let a = api(ctx);
        let s = session(ctx)?;
        check_username(ctx, &username)?;
        check_password(ctx, &password)?;
        let hash = hash(ctx, password).await?;
        let user = a
            .store
            .create_user(s.tenant, &username, &hash, role.domain())
            .await
            .map_err(|e| fail(ctx, e))?;
        note(ctx, |n| n.resource_id = Some(user.id.to_string()));
        a.gate.set_user(state_of(&user));
        Ok(user.into())
    }

    /// Changes a user's role or disables / enables them. Their current tokens stop
    /// working at once (they sign in again, or refresh, to get the new role); a
    /// disabled user's sessions end.
    async fn update_user(
        &self,
        ctx: &Context<'_>,
        id: ID,
        role: Option<UserRole>,
        disabled: Option<bool>,
    ) -> async_graphql::Result<UserInfo> {
        let a = api(ctx);
        let s = session(ctx)?;
        let uid = user_id(ctx, &id)?;
        if uid == s.user && (disabled == Some(true) || role.is_some_and(|r| r != UserRole::Admin)) {
            return Err(fail(
                ctx,
                ApiError::BadRequest("you cannot disable or demote your own account".into()),
            ));
        }
        let now = Timestamp::now();
        let user = a
            .store
            .update_user(
                s.tenant,
                uid,
                &UserChange {
                    role: role.map(UserRole::domain),
                    disabled,
                    password_hash: None,
                    revoke_tokens_at_ms: Some(now_ms()),
                },
            )
            .await
            .map_err(|e| fail(ctx, e))?
            .ok_or_else(|| fail(ctx, ApiError::NotFound("user")))?;
        if user.disabled {
            a.store
                .revoke_user_refresh_tokens(user.id, now)
                .await
                .map_err(|e| fail(ctx, e))?;
        }
        a.gate.set_user(state_of(&user));
        Ok(user.into())
    }

    /// Sets a new password for a user of the caller's tenant; their sessions end.
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        id: ID,
        new_password: String,
    ) -> async_graphql::Result<bool> {
        let a = api(ctx);
        let s = session(ctx)?;
        let uid = user_id(ctx, &id)?;
        // Existence first: another tenant's id answers NOT_FOUND whatever the input.
        a.store
            .user_by_id(s.tenant, uid)
            .await
            .map_err(|e| fail(ctx, e))?
            .ok_or_else(|| fail(ctx, ApiError::NotFound("user")))?;
        check_password(ctx, &new_password)?;
        let new_hash = hash(ctx, new_password).await?;
        let now = Timestamp::now();
        let user = a
            .store
            .update_user(
                s.tenant,
                uid,
                &UserChange {
                    password_hash: Some(new_hash),
                    revoke_tokens_at_ms: Some(now_ms()),
                    ..UserChange::default()
                },
            )
            .await
            .map_err(|e| fail(ctx, e))?
            .ok_or_else(|| fail(ctx, ApiError::NotFound("user")))?;
        a.store
            .revoke_user_refresh_tokens(user.id, now)
            .await
            .map_err(|e| fail(ctx, e))?;
        a.gate.set_user(state_of(&user));
        Ok(true)
    }

    /// Deletes a user of the caller's tenant; their tokens stop working at once.
    async fn delete_user(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let a = api(ctx);
        let s = session(ctx)?;
        let uid = user_id(ctx, &id)?;
        if uid == s.user {
            return Err(fail(
                ctx,
                ApiError::BadRequest("you cannot delete your own account".into()),
            ));
        }
        if !a
            .store
            .delete_user(s.tenant, uid)
            .await
            .map_err(|e| fail(ctx, e))?
        {
            return Err(fail(ctx, ApiError::NotFound("user")));
        }
        a.gate.remove_user(uid);
        Ok(true)
    }

    /// Creates a tenant with its first administrator, and starts it.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        name: String,
        admin_username: String,
        admin_password: String,
        quotas: Option<QuotaInput>,
    ) -> async_graphql::Result<TenantInfo> {
        let a = api(ctx);
        check_tenant_name(ctx, &name)?;
        check_username(ctx, &admin_username)?;
        check_password(ctx, &admin_password)?;
        let hash = hash(ctx, admin_password).await?;
        let overrides: QuotaOverrides = quotas.map(Into::into).unwrap_or_default();
        let record = a
            .store
            .create_tenant(&name, &overrides)
            .await
            .map_err(|e| fail(ctx, e))?;
        let id = record.tenant.id;
        note(ctx, |n| n.resource_id = Some(id.to_string()));
        let admin = match a
            .store
            .create_user(id, &admin_username, &hash, Role::Admin)
            .await
        {
            Ok(u) => u,
            Err(e) => {
                // Leave nothing half-made behind.
                if let Err(undo) = a.store.delete_tenant(id).await {
                    tracing::error!(error = %undo, tenant = %id, "could not remove a half-created tenant");
                }
                return Err(fail(ctx, e));
            }
        };
        a.gate.set_user(state_of(&admin));
        a.gate.put_tenant(record.clone());
        start_tenant(ctx, &record).await?;
        Ok(tenant_info(ctx, record))
    }

    /// Disables a tenant (its users' tokens stop working, its devices stop) or enables
    /// it again. The platform tenant cannot be disabled.
    async fn set_tenant_disabled(
        &self,
        ctx: &Context<'_>,
        id: ID,
        disabled: bool,
    ) -> async_graphql::Result<TenantInfo> {
        let a = api(ctx);
        let current = existing_tenant(ctx, &id).await?;
        let tid = current.tenant.id;
        if current.tenant.name == SYSTEM_TENANT && disabled {
            return Err(fail(
                ctx,
                ApiError::BadRequest("the platform tenant cannot be disabled".into()),
            ));
        }
        let record = a
            .store
            .set_tenant_disabled(tid, disabled)
            .await
            .map_err(|e| fail(ctx, e))?
            .ok_or_else(|| fail(ctx, ApiError::NotFound("tenant")))?;
        a.gate.put_tenant(record.clone());
        if disabled {
            a.runtime
                .stop_tenant(tid)
                .await
                .map_err(|e| fail(ctx, ApiError::Unavailable(e)))?;
        } else {
            start_tenant(ctx, &record).await?;
        }
        Ok(tenant_info(ctx, record))
    }

    /// Sets some of a tenant's quotas (the others keep their value). Applies at once
    /// to request rates and new subscriptions; device and tag counts are checked when
    /// objects are created.
    async fn set_tenant_quotas(
        &self,
        ctx: &Context<'_>,
        id: ID,
        quotas: QuotaInput,
    ) -> async_graphql::Result<TenantInfo> {
        let a = api(ctx);
        let current = existing_tenant(ctx, &id).await?;
        let tid = current.tenant.id;
        let mut overrides = current.quotas;
        overrides.merge(&quotas.into());
        let record = a
            .store
            .set_tenant_quotas(tid, &overrides)
            .await
            .map_err(|e| fail(ctx, e))?
            .ok_or_else(|| fail(ctx, ApiError::NotFound("tenant")))?;
        a.gate.put_tenant(record.clone());
        Ok(tenant_info(ctx, record))
    }

    /// Deletes a tenant with its users, units, devices, tags and history (its audit
    /// records stay). Neither the platform tenant nor the caller's own can be deleted.
    async fn delete_tenant(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let a = api(ctx);
        let s = session(ctx)?;
        let current = existing_tenant(ctx, &id).await?;
        let tid = current.tenant.id;
        if current.tenant.name == SYSTEM_TENANT || tid == s.tenant {
            return Err(fail(
                ctx,
                ApiError::BadRequest("the platform tenant cannot be deleted".into()),
            ));
        }
        a.runtime
            .stop_tenant(tid)
            .await
            .map_err(|e| fail(ctx, ApiError::Unavailable(e)))?;
        let gone = a.store.delete_tenant(tid).await.map_err(|e| fail(ctx, e))?;
        a.gate.remove_tenant(tid);
        Ok(gone)
    }
}
