//! Analytics over stored history and alarms: per-tag statistics with a data-quality
//! score, correlation between tags, and alarm-system metrics after ISA-18.2. The
//! functions here read the store through its export cursors, so a range of any size
//! is one pass with bounded buffers (statistics keep each tag's numeric values while
//! that tag is read, for exact percentiles: 16 bytes a sample of the largest tag).

pub mod alarms;
pub mod correlation;
pub mod stats;

use std::collections::HashMap;

use futures::StreamExt;

use crate::domain::{TagId, TenantId, Timestamp};
use crate::storage::{self, AlarmHistoryFilter, Store};
use stats::{Accumulator, StatsSpec, TagStatistics};

/// The statistics of `tags` over `[from, to)`, in the order of `tags`. `spec_of` gives
/// each tag's expected period and staleness limit.
pub async fn statistics(
    store: &dyn Store,
    tenant: TenantId,
    tags: &[TagId],
    from: Timestamp,
    to: Timestamp,
    spec_of: impl Fn(TagId) -> StatsSpec,
) -> storage::Result<Vec<(TagId, TagStatistics)>> {
    let mut done: HashMap<TagId, TagStatistics> = HashMap::with_capacity(tags.len());
    let mut current: Option<(TagId, Accumulator)> = None;
    let mut chunks = store.export_history(tenant, tags, from, to);
    while let Some(chunk) = chunks.next().await {
        for s in chunk? {
            match &mut current {
                Some((tag, acc)) if *tag == s.tag => acc.add(&s),
                _ => {
                    if let Some((tag, acc)) = current.take() {
                        done.insert(tag, acc.finish());
                    }
                    let mut acc = Accumulator::new(spec_of(s.tag));
                    acc.add(&s);
                    current = Some((s.tag, acc));
                }
            }
        }
    }
    if let Some((tag, acc)) = current.take() {
        done.insert(tag, acc.finish());
    }
    Ok(tags
        .iter()
        .map(|t| {
            let st = done
                .remove(t)
                .unwrap_or_else(|| Accumulator::new(spec_of(*t)).finish());
            (*t, st)
        })
        .collect())
}

/// The activity of the tenant's alarms on tags `include` accepts over `[from, to)`,
/// from every transition recorded before `to` (earlier ones say what was active when
/// the range began).
pub async fn alarm_activity(
    store: &dyn Store,
    tenant: TenantId,
    from: Timestamp,
    to: Timestamp,
    include: impl Fn(TagId) -> bool,
) -> storage::Result<Vec<alarms::Activity>> {
    let filter = AlarmHistoryFilter {
        rule: None,
        from: None,
        to: Some(to),
    };
    let mut timeline = alarms::Timeline::new(from, to);
    let mut chunks = store.export_alarm_history(tenant, &filter);
    while let Some(chunk) = chunks.next().await {
        for e in chunk? {
            if include(e.event.tag) {
                timeline.add(&e);
            }
        }
    }
    Ok(timeline.finish())
}
