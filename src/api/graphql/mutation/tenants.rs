//! Tenants (platform administrators): create with a first administrator, disable and
//! enable (actors stop and start, tokens stop), set quotas, delete.

use async_graphql::{Context, ID, Object};

use super::{check_password, check_username, hash, state_of};
use crate::actors::TenantWorld;
use crate::api::audit::note;
use crate::api::graphql::types::{QuotaInput, TenantInfo};
use crate::api::graphql::{ApiError, api, fail, session};
use crate::api::permissions::{FieldAccess, SYSTEM_TENANT};
use crate::domain::{QuotaOverrides, Role, TenantId, TenantRecord};

#[derive(Default)]
pub struct TenantMutations;

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

#[Object(guard = "FieldAccess(\"Mutation\")")]
impl TenantMutations {
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
        Ok(TenantInfo::new(record, &a.gate.defaults()))
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
        Ok(TenantInfo::new(record, &a.gate.defaults()))
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
        Ok(TenantInfo::new(record, &a.gate.defaults()))
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
