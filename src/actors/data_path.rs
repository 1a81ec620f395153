//! The data path's entry: every sample batch a device produces (or a supervisor
//! marks Bad for it) goes to the cache, alert stream, live hub and historian here.

use std::sync::Arc;

use super::alerts::AlertMsg;
use super::cache::{CacheMsg, Lookup};
use super::historian::HistorianHandle;
use super::live::HubMsg;
use super::shared::TenantShared;
use crate::domain::{Quality, QualityReason, Sample, SampleBatch, TagId, Timestamp};
use crate::telemetry::names;

/// Sends a batch along the data path: cache, alert stream, live hub, historian.
/// Every sample that enters the system passes here and is counted once.
pub(crate) fn fan_out(
    shared: &TenantShared,
    historian: &HistorianHandle,
    batch: SampleBatch,
    protocol: &'static str,
) {
    let n = batch.len() as u64;
    let batch = Arc::new(batch);
    shared.cache_actor.cast(CacheMsg::Batch(batch.clone()));
    shared.alerts_actor.cast(AlertMsg::Batch(batch.clone()));
    shared.hub_actor.cast(HubMsg::Batch(batch.clone()));
    historian.submit(batch);
    metrics::counter!(names::SAMPLES_INGESTED, "tenant" => shared.tenant.name.clone(), "protocol" => protocol).increment(n);
}

/// Bad-quality copies of the last known values of `tags` (tags without a value are
/// skipped: there is nothing to mark).
pub(crate) fn bad_samples(
    shared: &TenantShared,
    tags: impl Iterator<Item = TagId>,
    reason: QualityReason,
) -> Vec<Sample> {
    let now = Timestamp::now();
    tags.filter_map(|tag| match shared.cache.peek(tag) {
        Lookup::Value(l) if l.quality != Quality::Bad(reason) => Some(Sample {
            tag,
            value: l.value,
            quality: Quality::Bad(reason),
            source_time: now,
            server_time: now,
        }),
        _ => None,
    })
    .collect()
}
