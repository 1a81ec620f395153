//! Query root: the caller's world (units, devices, tags), latest values, history and
//! system state. Everything is scoped to the tenant of the caller's token.

use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};

use super::types::{
    ActorInfo, Bucket, CacheInfo, Device, HistorianInfo, Me, SystemInfo, Tag, TagHistory, TagValue,
    Unit,
};
use super::{ApiError, RoleGuard, api, fail, own_tags, session, tenant};
use crate::actors::cache::Lookup;
use crate::domain::{DeviceId, Role, TagId, Timestamp};

pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The caller.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let s = session(ctx)?;
        Ok(Me {
            id: ID(s.user.to_string()),
            username: s.username.clone(),
            role: s.role.into(),
            tenant: s.tenant_name.clone(),
        })
    }

    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn units(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Unit>> {
        let s = session(ctx)?;
        let units = api(ctx)
            .store
            .units(s.tenant)
            .await
            .map_err(|e| fail(ctx, e))?;
        Ok(units.into_iter().map(Unit::from).collect())
    }

    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn devices(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Device>> {
        let s = session(ctx)?;
        let devices = api(ctx)
            .store
            .devices(s.tenant)
            .await
            .map_err(|e| fail(ctx, e))?;
        Ok(devices.into_iter().map(Device::from).collect())
    }

    /// One device; NOT_FOUND when it is not the caller's tenant's.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn device(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Device> {
        let s = session(ctx)?;
        let id: DeviceId = id
            .parse()
            .map_err(|_| fail(ctx, ApiError::NotFound("device")))?;
        match api(ctx)
            .store
            .device(s.tenant, id)
            .await
            .map_err(|e| fail(ctx, e))?
        {
            Some(d) => Ok(d.into()),
            None => Err(fail(ctx, ApiError::NotFound("device"))),
        }
    }

    /// Tags of one device, or of the whole tenant when `deviceId` is omitted.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn tags(
        &self,
        ctx: &Context<'_>,
        device_id: Option<ID>,
    ) -> async_graphql::Result<Vec<Tag>> {
        let s = session(ctx)?;
        let store = &api(ctx).store;
        let device = match device_id {
            None => None,
            Some(id) => {
                let id: DeviceId = id
                    .parse()
                    .map_err(|_| fail(ctx, ApiError::NotFound("device")))?;
                if store
                    .device(s.tenant, id)
                    .await
                    .map_err(|e| fail(ctx, e))?
                    .is_none()
                {
                    return Err(fail(ctx, ApiError::NotFound("device")));
                }
                Some(id)
            }
        };
        let tags = store
            .tags(s.tenant, device)
            .await
            .map_err(|e| fail(ctx, e))?;
        Ok(tags.into_iter().map(Tag::from).collect())
    }

    /// Latest values of the given tags, in the order asked, from the in-memory cache.
    /// Tags without a value yet are left out; an id that is not one of the tenant's
    /// tags is NOT_FOUND.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn latest(
        &self,
        ctx: &Context<'_>,
        tag_ids: Vec<ID>,
    ) -> async_graphql::Result<Vec<TagValue>> {
        let t = tenant(ctx)?;
        let ids = own_tags(ctx, &t, &tag_ids)?;
        let now = Timestamp::now();
        Ok(ids
            .into_iter()
            .filter_map(|id| match t.cache.get(id, now) {
                Lookup::Value(l) => Some(l.into()),
                _ => None,
            })
            .collect())
    }

    /// Stored history in `[from, to)`: raw samples, or avg/min/max/count per bucket of
    /// `bucketSeconds`.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        tag_ids: Vec<ID>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_seconds: Option<i32>,
    ) -> async_graphql::Result<Vec<TagHistory>> {
        let t = tenant(ctx)?;
        let ids = own_tags(ctx, &t, &tag_ids)?;
        if from >= to {
            return Err(fail(
                ctx,
                ApiError::BadRequest("`from` must be before `to`".into()),
            ));
        }
        let (from, to) = (Timestamp::from_datetime(from), Timestamp::from_datetime(to));
        let a = api(ctx);
        let mut out: Vec<TagHistory> = ids
            .iter()
            .map(|id| TagHistory {
                tag_id: ID(id.to_string()),
                samples: Vec::new(),
                buckets: Vec::new(),
            })
            .collect();
        let slot = |tag: TagId| ids.iter().position(|i| *i == tag);
        match bucket_seconds {
            Some(b) if b <= 0 => {
                return Err(fail(
                    ctx,
                    ApiError::BadRequest("`bucketSeconds` must be positive".into()),
                ));
            }
            Some(b) => {
                let buckets = a
                    .store
                    .history_buckets(t.tenant.id, &ids, from, to, i64::from(b))
                    .await
                    .map_err(|e| fail(ctx, e))?;
                for b in buckets {
                    if let Some(i) = slot(b.tag) {
                        out[i].buckets.push(Bucket {
                            start: b.start.to_datetime(),
                            avg: b.avg,
                            min: b.min,
                            max: b.max,
                            count: b.count,
                        });
                    }
                }
            }
            None => {
                let max = a.config.api.max_history_points;
                let samples = a
                    .store
                    .history(t.tenant.id, &ids, from, to, max + 1)
                    .await
                    .map_err(|e| fail(ctx, e))?;
                if samples.len() as i64 > max {
                    return Err(fail(
                        ctx,
                        ApiError::BadRequest(format!(
                            "more than {max} samples: narrow the range or use bucketSeconds"
                        )),
                    ));
                }
                for s in samples {
                    if let Some(i) = slot(s.tag) {
                        out[i].samples.push(s.into());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Version, uptime, actors, restarts, cache and historian figures.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn system(&self, ctx: &Context<'_>) -> async_graphql::Result<SystemInfo> {
        let t = tenant(ctx)?;
        let a = api(ctx);
        let actors = a.runtime.actor_counts();
        let h = a.runtime.historian.stats();
        Ok(SystemInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: a.runtime.started.elapsed().as_secs(),
            store: a.store.backend().to_string(),
            actors: ActorInfo {
                total: actors.total as u64,
                tenants: actors.tenants as u64,
                devices: actors.devices as u64,
            },
            restarts: a.runtime.restarts(),
            cache: CacheInfo {
                entries: t.cache.len() as u64,
                hits: t.cache.hits(),
                misses: t.cache.misses(),
            },
            historian: HistorianInfo {
                buffered: h.buffered,
                written: h.written,
                dropped: h.dropped,
                failed_writes: h.failed_writes,
            },
            live_subscribers: t.live.size().subscribers as u64,
        })
    }
}
