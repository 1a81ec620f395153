//! Analytics in the API: the anomaly rules' detections, statistics with data
//! quality, correlation, alarm-system analytics and unit KPIs.

use std::collections::{HashMap, HashSet};

use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};

use super::alarms::{first_in, own_unit};
use super::types::{
    AlarmAnalytics, AnomalyPage, Correlation, DeviceAvailability, SeverityActivations,
    TagStatistics, UnitKpis,
};
use super::{ApiError, api, fail, own_tags, tenant};
use crate::actors::TenantShared;
use crate::alarms::Severity;
use crate::analytics::{self, alarms as alarm_metrics, correlation, stats, stats::StatsSpec};
use crate::api::limits::check_raw_range;
use crate::api::permissions::FieldAccess;
use crate::domain::{DeviceId, Tag, TagId, TenantId, Timestamp, UnitId};
use crate::storage::AnomalyFilter;

/// Most tags one `correlation` compares (the matrix grows with the square).
const MAX_CORRELATION_TAGS: usize = 100;
/// Most buckets per tag one `correlation` reads.
const MAX_CORRELATION_BUCKETS: i64 = 100_000;

/// `[from, to)` checked: ordered, and no longer than `api.export_max_days` (the bound
/// of every query that reads raw samples or the whole alarm history of a range).
fn raw_range(
    ctx: &Context<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> async_graphql::Result<(Timestamp, Timestamp)> {
    let (from, to) = (Timestamp::from_datetime(from), Timestamp::from_datetime(to));
    check_raw_range(from, to, api(ctx).config.api.export_max_days).map_err(|e| fail(ctx, e))?;
    Ok((from, to))
}

/// Activations per severity, most severe first.
fn by_severity(counts: &[(Severity, u64)]) -> Vec<SeverityActivations> {
    counts
        .iter()
        .map(|(s, count)| SeverityActivations {
            severity: (*s).into(),
            count: *count,
        })
        .collect()
}

/// The tags of a unit: its own, and those of its devices that name no other unit
/// (as the alarm list counts them).
async fn unit_tags(
    ctx: &Context<'_>,
    tenant: TenantId,
    unit: UnitId,
) -> async_graphql::Result<Vec<Tag>> {
    let store = &api(ctx).store;
    let devices: HashMap<DeviceId, Option<UnitId>> = store
        .devices(tenant)
        .await
        .map_err(|e| fail(ctx, e))?
        .into_iter()
        .map(|d| (d.id, d.spec.unit))
        .collect();
    Ok(store
        .tags(tenant, None)
        .await
        .map_err(|e| fail(ctx, e))?
        .into_iter()
        .filter(|t| t.spec.unit.or(devices.get(&t.device).copied().flatten()) == Some(unit))
        .collect())
}

/// The statistics of the tenant's `tags` (at most `api.export_max_tags`) over
/// `[from, to)`, judged up to now, against each tag's staleness limit.
async fn tag_statistics(
    ctx: &Context<'_>,
    t: &TenantShared,
    tags: &[TagId],
    from: Timestamp,
    to: Timestamp,
    period: Option<i64>,
) -> async_graphql::Result<Vec<(TagId, stats::TagStatistics)>> {
    let a = api(ctx);
    let max = a.config.api.export_max_tags;
    if tags.len() > max {
        return Err(fail(
            ctx,
            ApiError::BadRequest(format!(
                "{} tags: at most {max} (api.export_max_tags)",
                tags.len()
            )),
        ));
    }
    let end = until_now(from, to);
    let spec_of = |tag: TagId| StatsSpec {
        from,
        to: end,
        expected_period_us: period,
        stale_after_us: t.cache.stale_after_us(tag).unwrap_or(i64::MAX),
    };
    analytics::statistics(a.store.as_ref(), t.tenant.id, tags, from, to, spec_of)
        .await
        .map_err(|e| fail(ctx, e))
}

/// The end of a range as far as it has happened: the future is neither a gap, nor
/// stale, nor time in alarm.
fn until_now(from: Timestamp, to: Timestamp) -> Timestamp {
    Timestamp(to.0.min(Timestamp::now().0).max(from.0))
}

/// Most detections one page holds.
const MAX_PAGE: i32 = 1000;

/// The cursor of a detection: its time and id, the page order.
fn cursor(at: Timestamp, id: i64) -> String {
    format!("{}:{id}", at.0)
}

fn parse_cursor(c: &str) -> Option<(Timestamp, i64)> {
    let (at, id) = c.split_once(':')?;
    Some((Timestamp(at.parse().ok()?), id.parse().ok()?))
}

#[derive(Default)]
pub struct AnalyticsQueries;

#[Object(guard = "FieldAccess(\"Query\")")]
impl AnalyticsQueries {
    /// What the anomaly rules' detectors found on the given tags at source times in
    /// `[from, to)`, at least `minConfidence` (0 to 1) sure; newest first, `first`
    /// (at most 1000) after the cursor `after`.
    #[allow(clippy::too_many_arguments)]
    async fn anomalies(
        &self,
        ctx: &Context<'_>,
        tag_ids: Vec<ID>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        min_confidence: Option<f64>,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<AnomalyPage> {
        let t = tenant(ctx)?;
        let tags = own_tags(ctx, &t, &tag_ids)?;
        let first = first_in(ctx, first, MAX_PAGE)?;
        let bad = |m: &str| fail(ctx, ApiError::BadRequest(m.into()));
        if from >= to {
            return Err(bad("`from` must be before `to`"));
        }
        if min_confidence.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
            return Err(bad("`minConfidence` must be within 0..=1"));
        }
        let before = match after {
            None => None,
            Some(c) => Some(parse_cursor(&c).ok_or_else(|| bad("`after` is not a cursor"))?),
        };
        let filter = AnomalyFilter {
            tags,
            from: Timestamp::from_datetime(from),
            to: Timestamp::from_datetime(to),
            min_confidence,
        };
        let mut records = api(ctx)
            .store
            .anomalies(t.tenant.id, &filter, before, first as i64 + 1)
            .await
            .map_err(|e| fail(ctx, e))?;
        let has_next_page = records.len() > first;
        records.truncate(first);
        Ok(AnomalyPage {
            end_cursor: records.last().map(|r| cursor(r.anomaly.at, r.id)),
            has_next_page,
            anomalies: records.into_iter().map(Into::into).collect(),
        })
    }

    /// Statistics of each tag's samples in `[from, to)`: counts by quality, min, max,
    /// mean, standard deviation, p50/p95/p99, the trend per hour and a data-quality
    /// score. Gaps are judged against `expectedPeriodSeconds`, or else against the
    /// median interval between the tag's samples. Reads every sample of the range
    /// (at most `api.export_max_days` long, `api.export_max_tags` tags).
    async fn statistics(
        &self,
        ctx: &Context<'_>,
        tag_ids: Vec<ID>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        expected_period_seconds: Option<f64>,
    ) -> async_graphql::Result<Vec<TagStatistics>> {
        let t = tenant(ctx)?;
        let tags = own_tags(ctx, &t, &tag_ids)?;
        let (from, to) = raw_range(ctx, from, to)?;
        let period = match expected_period_seconds {
            None => None,
            Some(p) if p.is_finite() && p > 0.0 && p <= 86_400.0 * 366.0 => {
                Some((p * 1e6).round().max(1.0) as i64)
            }
            Some(_) => {
                return Err(fail(
                    ctx,
                    ApiError::BadRequest("`expectedPeriodSeconds` must be positive".into()),
                ));
            }
        };
        let stats = tag_statistics(ctx, &t, &tags, from, to, period).await?;
        Ok(stats
            .into_iter()
            .map(|(tag, s)| TagStatistics::new(tag, s))
            .collect())
    }

    /// Pearson correlation of the tags over `[from, to)`, compared bucket by bucket
    /// (averages of `bucketSeconds`, from the rollups on PostgreSQL) where both
    /// have a value. At most 100 tags and 100,000 buckets per tag.
    async fn correlation(
        &self,
        ctx: &Context<'_>,
        tag_ids: Vec<ID>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        #[graphql(default = 60)] bucket_seconds: i32,
    ) -> async_graphql::Result<Correlation> {
        let t = tenant(ctx)?;
        let tags = own_tags(ctx, &t, &tag_ids)?;
        let bad = |m: String| fail(ctx, ApiError::BadRequest(m));
        if tags.len() < 2 || tags.len() > MAX_CORRELATION_TAGS {
            return Err(bad(format!(
                "`tagIds` must name 2 to {MAX_CORRELATION_TAGS} tags"
            )));
        }
        if from >= to {
            return Err(bad("`from` must be before `to`".into()));
        }
        if bucket_seconds <= 0 {
            return Err(bad("`bucketSeconds` must be positive".into()));
        }
        let (from, to) = (Timestamp::from_datetime(from), Timestamp::from_datetime(to));
        let width = i64::from(bucket_seconds) * 1_000_000;
        if to.micros_since(from) / width > MAX_CORRELATION_BUCKETS {
            return Err(bad(format!(
                "more than {MAX_CORRELATION_BUCKETS} buckets per tag: use wider buckets"
            )));
        }
        let buckets = api(ctx)
            .store
            .history_buckets(t.tenant.id, &tags, from, to, i64::from(bucket_seconds))
            .await
            .map_err(|e| fail(ctx, e))?;
        let c = correlation::correlate(&tags, &buckets);
        Ok(Correlation {
            tag_ids: tags.iter().map(|t| ID(t.to_string())).collect(),
            coefficients: c.matrix,
            common_buckets: c.common,
        })
    }

    /// Alarm-system performance over `[from, to)` after ISA-18.2: activations per 10
    /// minutes and the busiest 10 minutes, floods, the 10 most frequent, chattering
    /// (3 or more activations within a minute) and standing (active over 24 h at
    /// `to`) alarms; of the alarms on `unitId`'s tags when it is given.
    async fn alarm_analytics(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        unit_id: Option<ID>,
    ) -> async_graphql::Result<AlarmAnalytics> {
        let t = tenant(ctx)?;
        let unit = own_unit(ctx, unit_id.as_ref()).await?;
        let (from, to) = raw_range(ctx, from, to)?;
        let a = api(ctx);
        let on_unit: Option<HashSet<TagId>> = match unit {
            None => None,
            Some(u) => Some(
                unit_tags(ctx, t.tenant.id, u)
                    .await?
                    .into_iter()
                    .map(|tag| tag.id)
                    .collect(),
            ),
        };
        let include = |tag: TagId| on_unit.as_ref().is_none_or(|s| s.contains(&tag));
        let end = until_now(from, to);
        let activity = analytics::alarm_activity(a.store.as_ref(), t.tenant.id, from, end, include)
            .await
            .map_err(|e| fail(ctx, e))?;
        Ok(alarm_metrics::metrics(&activity, from, end).into())
    }

    /// Key figures of a unit over `[from, to)`: each device's availability (share of
    /// the time its tags in the unit had a value neither lost to communication nor
    /// stale), alarm activations on the unit's tags by severity, and the time with at
    /// least one of them active.
    async fn unit_kpis(
        &self,
        ctx: &Context<'_>,
        unit_id: ID,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> async_graphql::Result<UnitKpis> {
        let t = tenant(ctx)?;
        let Some(unit) = own_unit(ctx, Some(&unit_id)).await? else {
            return Err(fail(ctx, ApiError::NotFound("unit")));
        };
        let (from, to) = raw_range(ctx, from, to)?;
        let a = api(ctx);
        let tags = unit_tags(ctx, t.tenant.id, unit).await?;
        let device_of: HashMap<TagId, _> = tags.iter().map(|tag| (tag.id, tag.device)).collect();
        let mut ids: Vec<TagId> = tags.iter().map(|tag| tag.id).collect();
        ids.sort_unstable();
        let end = until_now(from, to);
        let stats = tag_statistics(ctx, &t, &ids, from, to, None).await?;
        let range = end.micros_since(from).max(1) as f64;
        // Per device: (availability sum, comm lost, stale, tags).
        let mut per_device: HashMap<_, (f64, i64, i64, u32)> = HashMap::new();
        for (tag, s) in &stats {
            let Some(device) = device_of.get(tag) else {
                continue;
            };
            let e = per_device.entry(*device).or_default();
            let q = &s.quality;
            e.0 += (1.0 - q.offline_us as f64 / range).clamp(0.0, 1.0);
            e.1 += q.comm_lost_us;
            e.2 += q.stale_us;
            e.3 += 1;
        }
        let mut devices: Vec<DeviceAvailability> = per_device
            .into_iter()
            .map(|(d, (sum, lost, stale, n))| {
                let n = f64::from(n.max(1));
                DeviceAvailability {
                    device_id: ID(d.to_string()),
                    availability: sum / n,
                    comm_lost_seconds: lost as f64 / 1e6 / n,
                    stale_seconds: stale as f64 / 1e6 / n,
                }
            })
            .collect();
        devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        let availability = (!devices.is_empty())
            .then(|| devices.iter().map(|d| d.availability).sum::<f64>() / devices.len() as f64);
        let on_unit: HashSet<TagId> = ids.iter().copied().collect();
        let activity = analytics::alarm_activity(a.store.as_ref(), t.tenant.id, from, end, |tag| {
            on_unit.contains(&tag)
        })
        .await
        .map_err(|e| fail(ctx, e))?;
        let m = alarm_metrics::metrics(&activity, from, end);
        let in_alarm = m.any_active_us as f64 / 1e6;
        Ok(UnitKpis {
            unit_id,
            availability,
            devices,
            alarm_activations: m.activations,
            alarms_by_severity: by_severity(&m.by_severity),
            time_in_alarm_seconds: in_alarm,
            time_in_alarm_share: (m.any_active_us as f64 / range).clamp(0.0, 1.0),
        })
    }
}
