//! Mutation root, merged from nine parts: sessions (login, refresh, logout, password),
//! users of the caller's tenant, tenants (platform administrators), commands
//! (writeTag), OPC UA imports (importOpcUaTags), units and devices (plant), tags,
//! bulk configuration and connection tests (config), and alarm handling (acknowledge,
//! shelve, unshelve: `../alarms.rs`). Every field's
//! access rule is in [`crate::api::permissions::FIELDS`]; every call leaves exactly one
//! audit record (written by the audit extension).

mod config;
mod control;
mod opcua;
mod plant;
mod session;
mod tags;
mod tenants;
mod users;

use async_graphql::{Context, MergedObject};

use super::types::AuthPayload;
use super::{ApiError, api, fail};
use crate::api::auth::{hash_password, run_hashing, verify_password};
use crate::api::tokens;
use crate::domain::{Timestamp, User, UserState};

#[derive(MergedObject, Default)]
pub struct MutationRoot(
    session::SessionMutations,
    users::UserMutations,
    tenants::TenantMutations,
    control::ControlMutations,
    opcua::OpcUaMutations,
    plant::PlantMutations,
    tags::TagMutations,
    config::ConfigMutations,
    super::alarms::AlarmMutations,
);

/// The gate's view of a user.
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

/// Starts a login session for `user` (a new family, or `family` when rotating):
/// an access token and a refresh token.
async fn issue_session(
    ctx: &Context<'_>,
    user: &User,
    tenant_name: &str,
    family: Option<&str>,
) -> async_graphql::Result<AuthPayload> {
    let a = api(ctx);
    let issued = tokens::issue(
        a.store.as_ref(),
        &a.auth,
        user,
        tenant_name,
        family,
        a.config.auth.refresh_token_ttl_secs,
    )
    .await
    .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))?;
    Ok(AuthPayload {
        access_token: issued.access_token,
        expires_in: issued.expires_in,
        token_type: "Bearer".into(),
        role: user.role.into(),
        refresh_token: issued.refresh_token,
        refresh_expires_in: issued.refresh_expires_in,
    })
}

/// Ends every login session of a changed user (new password, disabled) and shows the
/// gate the user's new state.
async fn end_sessions(ctx: &Context<'_>, user: &User) -> async_graphql::Result<()> {
    let a = api(ctx);
    a.store
        .revoke_user_refresh_tokens(user.id, Timestamp::now())
        .await
        .map_err(|e| fail(ctx, e))?;
    a.gate.set_user(state_of(user));
    Ok(())
}

/// Checks a new password against the policy.
fn check_password(ctx: &Context<'_>, password: &str) -> async_graphql::Result<()> {
    let min = api(ctx).config.auth.min_password_len;
    if password.chars().count() < min {
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

/// argon2id off the async threads, a few at a time.
async fn hash(ctx: &Context<'_>, password: String) -> async_graphql::Result<String> {
    run_hashing(move || hash_password(&password))
        .await
        .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))?
        .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))
}

/// Checks a password against a hash, off the async threads, a few at a time.
async fn matches(ctx: &Context<'_>, password: String, hash: String) -> async_graphql::Result<bool> {
    run_hashing(move || verify_password(&password, &hash))
        .await
        .map_err(|e| fail(ctx, ApiError::Internal(e.to_string())))
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
