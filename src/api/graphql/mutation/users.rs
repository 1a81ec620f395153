//! Users of the caller's tenant: create, change role or disable, reset the password,
//! delete. Changes end the user's tokens at once.

use async_graphql::{Context, ID, Object};

use super::{check_password, check_username, end_sessions, hash, now_ms, state_of};
use crate::api::audit::note;
use crate::api::graphql::types::{UserInfo, UserRole};
use crate::api::graphql::{ApiError, api, fail, session};
use crate::api::permissions::FieldAccess;
use crate::domain::UserId;
use crate::storage::UserChange;

#[derive(Default)]
pub struct UserMutations;

fn user_id(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<UserId> {
    id.parse()
        .map_err(|_| fail(ctx, ApiError::NotFound("user")))
}

#[Object(guard = "FieldAccess(\"Mutation\")")]
impl UserMutations {
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
            .create_user(s.tenant, &username, &hash, role.into())
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
        let user = a
            .store
            .update_user(
                s.tenant,
                uid,
                &UserChange {
                    role: role.map(Into::into),
                    disabled,
                    password_hash: None,
                    revoke_tokens_at_ms: Some(now_ms()),
                },
            )
            .await
            .map_err(|e| fail(ctx, e))?
            .ok_or_else(|| fail(ctx, ApiError::NotFound("user")))?;
        if user.disabled {
            end_sessions(ctx, &user).await?;
        } else {
            a.gate.set_user(state_of(&user));
        }
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
        end_sessions(ctx, &user).await?;
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
}
