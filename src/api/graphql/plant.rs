//! The unified device view and the configuration export: `devices` across every
//! protocol with a filter (protocol, state, unit, enabled, name) and paging,
//! `deviceCount` for the same filter, and `exportConfig`.

use async_graphql::{Context, ID, Object};

use super::types::{ConfigFormat, Device, DeviceFilter, DeviceStateGql, tag_counts};
use super::{ApiError, api, fail, session, tenant};
use crate::actors::TenantShared;
use crate::api::permissions::FieldAccess;
use crate::domain::{self, DeviceId, UnitId};
use crate::manage::{Stored, TenantDoc};

/// The most devices one page holds.
const MAX_PAGE: usize = 1000;

#[derive(Default)]
pub struct PlantQueries;

/// The tenant's devices the filter keeps, in id order.
async fn filtered(
    ctx: &Context<'_>,
    t: &TenantShared,
    filter: Option<DeviceFilter>,
) -> async_graphql::Result<Vec<domain::Device>> {
    let devices = api(ctx)
        .store
        .devices(t.tenant.id)
        .await
        .map_err(|e| fail(ctx, e))?;
    let Some(f) = filter else {
        return Ok(devices);
    };
    let unit = match &f.unit_id {
        None => None,
        Some(id) => Some(
            id.parse::<UnitId>()
                .map_err(|_| fail(ctx, ApiError::NotFound("unit")))?,
        ),
    };
    let search = f.search.as_deref().map(str::to_lowercase);
    Ok(devices
        .into_iter()
        .filter(|d| f.protocol.as_deref().is_none_or(|p| d.protocol() == p))
        .filter(|d| f.enabled.is_none_or(|e| d.spec.enabled == e))
        .filter(|d| unit.is_none_or(|u| d.spec.unit == Some(u)))
        .filter(|d| {
            search
                .as_deref()
                .is_none_or(|s| d.spec.name.to_lowercase().contains(s))
        })
        .filter(|d| {
            f.status.is_none_or(|want| {
                t.status
                    .get(&d.id)
                    .is_some_and(|s| DeviceStateGql::from(s.state) == want)
            })
        })
        .collect())
}

#[Object(guard = "FieldAccess(\"Query\")")]
impl PlantQueries {
    /// The tenant's devices of every protocol, in id order, with their status and
    /// tag counts: those `filter` keeps, at most `first` (up to 1000) after the device
    /// `after` (the last id of the previous page). Without `first`, all of them.
    async fn devices(
        &self,
        ctx: &Context<'_>,
        filter: Option<DeviceFilter>,
        first: Option<i32>,
        after: Option<ID>,
    ) -> async_graphql::Result<Vec<Device>> {
        let t = tenant(ctx)?;
        let after: Option<DeviceId> = match &after {
            None => None,
            Some(id) => match id.parse::<DeviceId>() {
                Ok(d) if t.status.contains_key(&d) => Some(d),
                _ => return Err(fail(ctx, ApiError::NotFound("device"))),
            },
        };
        let first = match first {
            None => usize::MAX,
            Some(n) if n >= 1 && n as usize <= MAX_PAGE => n as usize,
            Some(_) => {
                return Err(fail(
                    ctx,
                    ApiError::BadRequest(format!("`first` must be 1 to {MAX_PAGE}")),
                ));
            }
        };
        let devices = filtered(ctx, &t, filter).await?;
        let mut counts = tag_counts(&t, None);
        Ok(devices
            .into_iter()
            .filter(|d| after.is_none_or(|a| d.id > a))
            .take(first)
            .map(|d| {
                let counted = Some(counts.remove(&d.id).unwrap_or_default());
                Device {
                    counted,
                    ..Device::from(d)
                }
            })
            .collect())
    }

    /// How many devices `filter` keeps.
    async fn device_count(
        &self,
        ctx: &Context<'_>,
        filter: Option<DeviceFilter>,
    ) -> async_graphql::Result<i32> {
        let t = tenant(ctx)?;
        Ok(filtered(ctx, &t, filter).await?.len() as i32)
    }

    /// The tenant's configuration as a document `importConfig` takes: units, devices
    /// with their declared tags and alarm rules, in id order; secrets as `***`.
    /// Exported, imported with REPLACE and exported again, it is the same text.
    async fn export_config(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "ConfigFormat::Toml")] format: ConfigFormat,
    ) -> async_graphql::Result<String> {
        let s = session(ctx)?;
        let stored = Stored::load(api(ctx).store.as_ref(), s.tenant)
            .await
            .map_err(|e| fail(ctx, e))?;
        TenantDoc::export(&s.tenant_name, &stored)
            .render(format.into())
            .map_err(|e| fail(ctx, ApiError::Internal(e)))
    }
}
