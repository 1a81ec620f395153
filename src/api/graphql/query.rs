//! Query root: the caller's world (units, devices, tags), latest values, history and
//! system state (alarms are in `alarms.rs`). Everything is scoped to the tenant of the caller's token.

use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};

use super::types::{
    ActorInfo, AuditFilterInput, AuditPage, CacheInfo, Device, Gap, HistorianInfo, Me, OpcUaNode,
    SystemInfo, Tag, TagHistory, TagValue, TenantInfo, TenantUsage, Unit, UserInfo,
};
use super::{ApiError, api, fail, own_tags, session, tenant};
use crate::actors::cache::Lookup;
use crate::api::permissions::{FieldAccess, Permission};
use crate::domain::{AuditFilter, DeviceId, TagId, TenantId, Timestamp};
use crate::storage::rollup::{bucket_gaps, sample_gaps};

/// The query root: the fields here and the alarm queries.
#[derive(async_graphql::MergedObject, Default)]
pub struct QueryRoot(
    CoreQueries,
    super::plant::PlantQueries,
    super::alarms::AlarmQueries,
    super::analytics::AnalyticsQueries,
);

#[derive(Default)]
pub struct CoreQueries;

#[Object(guard = "FieldAccess(\"Query\")")]
impl CoreQueries {
    /// The caller.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let s = session(ctx)?;
        Ok(Me {
            id: ID(s.user.to_string()),
            username: s.username.clone(),
            role: s.role.into(),
            tenant: s.tenant_name.clone(),
        })
    }

    async fn units(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Unit>> {
        let s = session(ctx)?;
        let units = api(ctx)
            .store
            .units(s.tenant)
            .await
            .map_err(|e| fail(ctx, e))?;
        Ok(units.into_iter().map(Unit::from).collect())
    }

    /// One device; NOT_FOUND when it is not the caller's tenant's.
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

    /// The children of a node of an OPC UA device's address space (`nodeId` omitted: the
    /// Objects folder), read from the device now, for choosing nodes to import with
    /// `importOpcUaTags`. A device of another protocol is BAD_USER_INPUT; a device that
    /// is not connected is DEVICE_ERROR.
    async fn browse_opc_ua(
        &self,
        ctx: &Context<'_>,
        device_id: ID,
        node_id: Option<String>,
    ) -> async_graphql::Result<Vec<OpcUaNode>> {
        super::opcua::browse(ctx, &device_id, node_id).await
    }

    /// Latest values of the given tags, in the order asked, from the in-memory cache.
    /// Tags without a value yet are left out; an id that is not one of the tenant's
    /// tags is NOT_FOUND.
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

    /// Stored history in `[from, to)`: raw samples (with their quality), or per bucket
    /// of `bucketSeconds` the count, avg, min, max, first and last of the numeric
    /// samples that are not BAD and the count of BAD ones (PostgreSQL reads whole
    /// minutes and hours from its rollups). `gaps` lists the stretches without any
    /// sample: longer than `gapSeconds` (default 60) for raw samples, runs of empty
    /// buckets for buckets.
    async fn history(
        &self,
        ctx: &Context<'_>,
        tag_ids: Vec<ID>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_seconds: Option<i32>,
        #[graphql(default = 60)] gap_seconds: i32,
    ) -> async_graphql::Result<Vec<TagHistory>> {
        let t = tenant(ctx)?;
        let ids = own_tags(ctx, &t, &tag_ids)?;
        let bad = |m: &str| fail(ctx, ApiError::BadRequest(m.into()));
        if from >= to {
            return Err(bad("`from` must be before `to`"));
        }
        if gap_seconds <= 0 {
            return Err(bad("`gapSeconds` must be positive"));
        }
        let (from, to) = (Timestamp::from_datetime(from), Timestamp::from_datetime(to));
        let a = api(ctx);
        let mut out: Vec<TagHistory> = ids
            .iter()
            .map(|id| TagHistory {
                tag_id: ID(id.to_string()),
                samples: Vec::new(),
                buckets: Vec::new(),
                gaps: Vec::new(),
            })
            .collect();
        let slot = |tag: TagId| ids.iter().position(|i| *i == tag);
        let gap = |(a, b): (i64, i64)| Gap {
            from: Timestamp(a).to_datetime(),
            to: Timestamp(b).to_datetime(),
        };
        match bucket_seconds {
            Some(b) if b <= 0 => return Err(bad("`bucketSeconds` must be positive")),
            Some(b) => {
                let buckets = a
                    .store
                    .history_buckets(t.tenant.id, &ids, from, to, i64::from(b))
                    .await
                    .map_err(|e| fail(ctx, e))?;
                let mut starts: Vec<Vec<i64>> = vec![Vec::new(); ids.len()];
                for b in buckets {
                    if let Some(i) = slot(b.tag) {
                        starts[i].push(b.start.0);
                        out[i].buckets.push(b.into());
                    }
                }
                let width = i64::from(b) * 1_000_000;
                for (h, starts) in out.iter_mut().zip(&starts) {
                    h.gaps = bucket_gaps(starts, from.0, to.0, width)
                        .into_iter()
                        .map(gap)
                        .collect();
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
                    return Err(bad(&format!(
                        "more than {max} samples: narrow the range or use bucketSeconds"
                    )));
                }
                let mut times: Vec<Vec<i64>> = vec![Vec::new(); ids.len()];
                for s in samples {
                    if let Some(i) = slot(s.tag) {
                        times[i].push(s.source_time.0);
                        out[i].samples.push(s.into());
                    }
                }
                let min_gap = i64::from(gap_seconds) * 1_000_000;
                for (h, times) in out.iter_mut().zip(&times) {
                    h.gaps = sample_gaps(times, from.0, to.0, min_gap)
                        .into_iter()
                        .map(gap)
                        .collect();
                }
            }
        }
        Ok(out)
    }

    /// Version, uptime, actors, restarts, cache and historian figures.
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
            alarms: super::types::alarm_counts(&t),
        })
    }

    /// What a tenant uses against its quotas: the caller's own, or (platform
    /// administrators) any tenant's by id.
    async fn tenant_usage(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
    ) -> async_graphql::Result<TenantUsage> {
        let s = session(ctx)?;
        let a = api(ctx);
        let id = match tenant_id {
            None => s.tenant,
            Some(id) => match id.parse::<TenantId>() {
                Ok(t) if t == s.tenant || s.permits(Permission::ManageTenants) => t,
                _ => return Err(fail(ctx, ApiError::NotFound("tenant"))),
            },
        };
        let state = a
            .gate
            .tenant(id)
            .ok_or_else(|| fail(ctx, ApiError::NotFound("tenant")))?;
        let counts = a.store.tenant_counts(id).await.map_err(|e| fail(ctx, e))?;
        Ok(TenantUsage {
            tenant: state.record.tenant.name,
            devices: counts.devices,
            tags: counts.tags,
            users: counts.users,
            subscriptions: a.gate.subscriptions(id) as u64,
            quotas: state.quotas.into(),
        })
    }

    /// Users of the caller's tenant.
    async fn users(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<UserInfo>> {
        let s = session(ctx)?;
        let users = api(ctx)
            .store
            .users(s.tenant)
            .await
            .map_err(|e| fail(ctx, e))?;
        Ok(users.into_iter().map(UserInfo::from).collect())
    }

    /// The audit log of the caller's tenant, newest first, `first` records (at most
    /// 500) after the cursor `after`. Platform administrators may read every tenant's
    /// records (and those of logins naming no existing tenant) with `allTenants`.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditFilterInput>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
        #[graphql(default = false)] all_tenants: bool,
    ) -> async_graphql::Result<AuditPage> {
        let s = session(ctx)?;
        if !(1..=500).contains(&first) {
            return Err(fail(
                ctx,
                ApiError::BadRequest("`first` must be within 1..=500".into()),
            ));
        }
        let before_id =
            match after {
                None => None,
                Some(c) => Some(c.parse::<i64>().map_err(|_| {
                    fail(ctx, ApiError::BadRequest("`after` is not a cursor".into()))
                })?),
            };
        let tenant = if all_tenants && s.permits(Permission::ManageTenants) {
            None
        } else {
            Some(s.tenant)
        };
        let f = filter.unwrap_or_default();
        let filter = AuditFilter {
            action: f.action,
            username: f.username,
            outcome: f.outcome.map(Into::into),
            resource_type: f.resource_type,
            from: f.from.map(Timestamp::from_datetime),
            to: f.to.map(Timestamp::from_datetime),
        };
        let mut records = api(ctx)
            .store
            .audit_log(tenant, &filter, before_id, i64::from(first) + 1)
            .await
            .map_err(|e| fail(ctx, e))?;
        let has_next_page = records.len() > first as usize;
        records.truncate(first as usize);
        Ok(AuditPage {
            end_cursor: records.last().map(|r| r.id.to_string()),
            has_next_page,
            records: records.into_iter().map(Into::into).collect(),
        })
    }

    /// Every tenant (platform administrators).
    async fn tenants(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TenantInfo>> {
        let a = api(ctx);
        let records = a.store.tenant_records().await.map_err(|e| fail(ctx, e))?;
        let defaults = a.gate.defaults();
        Ok(records
            .into_iter()
            .map(|r| TenantInfo::new(r, &defaults))
            .collect())
    }
}
