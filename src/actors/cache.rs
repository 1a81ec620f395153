//! The cache actor: the latest value of every tag of one tenant. It is the only writer
//! of a [`CacheView`] that resolvers read directly, without a mailbox round trip.
//!
//! Invalidation is per device and travels the data path: when a device loses its link
//! or its actor fails, a batch of its last values with a Bad quality (`comm_lost`,
//! `device_restarting`) goes to the cache, the live hub and the historian alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::domain::{Quality, QualityReason, SampleBatch, TagId, Timestamp, Value};
use crate::telemetry::names;

/// The latest reading of a tag, as served to clients.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub tag: TagId,
    pub value: Value,
    pub quality: Quality,
    pub source_time: Timestamp,
    pub server_time: Timestamp,
}

struct Entry {
    /// Beyond this age (µs) a Good value is served as Uncertain/Stale.
    stale_after_us: i64,
    latest: Option<Latest>,
}

/// What a read of one tag found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Not a tag of this tenant.
    Unknown,
    /// A tag of this tenant that has no value yet.
    NoValue,
    Value(Latest),
}

/// Shared read view of the cache: a concurrent map written only by the cache actor.
pub struct CacheView {
    tenant: String,
    entries: DashMap<TagId, Entry>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Samples applied since start (benchmarks, `system`).
    updates: AtomicU64,
}

impl CacheView {
    pub fn new(tenant: String) -> Self {
        CacheView {
            tenant,
            entries: DashMap::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            updates: AtomicU64::new(0),
        }
    }

    /// Whether the tag belongs to this tenant.
    pub fn knows(&self, tag: TagId) -> bool {
        self.entries.contains_key(&tag)
    }

    /// The tag's staleness limit (None: not a tag of this tenant).
    pub fn stale_after_us(&self, tag: TagId) -> Option<i64> {
        self.entries.get(&tag).map(|e| e.stale_after_us)
    }

    /// Reads one tag, marking a value older than its staleness limit Uncertain/Stale.
    pub fn get(&self, tag: TagId, now: Timestamp) -> Lookup {
        let Some(entry) = self.entries.get(&tag) else {
            return Lookup::Unknown;
        };
        match &entry.latest {
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Lookup::NoValue
            }
            Some(latest) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let mut latest = latest.clone();
                if latest.quality.is_good()
                    && now.micros_since(latest.server_time) > entry.stale_after_us
                {
                    latest.quality = Quality::Uncertain(QualityReason::Stale);
                }
                Lookup::Value(latest)
            }
        }
    }

    /// Reads one tag as stored, without staleness marking or counting (internal use).
    pub fn peek(&self, tag: TagId) -> Lookup {
        match self.entries.get(&tag) {
            None => Lookup::Unknown,
            Some(e) => e.latest.clone().map_or(Lookup::NoValue, Lookup::Value),
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Publishes the counters (called when `/metrics` is scraped).
    pub fn export_metrics(&self) {
        let t = self.tenant.clone();
        metrics::counter!(names::CACHE_HITS, "tenant" => t.clone()).absolute(self.hits());
        metrics::counter!(names::CACHE_MISSES, "tenant" => t.clone()).absolute(self.misses());
        metrics::gauge!(names::CACHE_ENTRIES, "tenant" => t).set(self.entries.len() as f64);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    fn apply(&self, batch: &SampleBatch) {
        self.updates
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for s in &batch.samples {
            if let Some(mut e) = self.entries.get_mut(&s.tag) {
                e.latest = Some(Latest {
                    tag: s.tag,
                    value: s.value.clone(),
                    quality: s.quality,
                    source_time: s.source_time,
                    server_time: s.server_time,
                });
            }
        }
    }

    /// Makes tags known. Called by the cache actor, and by the tenant before its
    /// children start (so that the API never sees a configured tag as unknown).
    pub(crate) fn register(&self, tags: Vec<TagRegistration>) {
        for t in tags {
            let mut entry = self.entries.entry(t.tag).or_insert_with(|| Entry {
                stale_after_us: t.stale_after_us,
                latest: None,
            });
            entry.stale_after_us = t.stale_after_us;
        }
    }
}

impl CacheView {
    /// Forgets deleted tags: they are no longer the tenant's (reads say unknown, late
    /// samples are not applied). Called by the tenant actor when the configuration
    /// changes, after the tags' device stopped or was re-planned without them.
    pub(crate) fn forget(&self, tags: &[TagId]) {
        for t in tags {
            self.entries.remove(t);
        }
    }
}

/// A tag the cache should know, with its staleness limit.
#[derive(Debug, Clone)]
pub struct TagRegistration {
    pub tag: TagId,
    pub stale_after_us: i64,
}

/// Messages of the cache actor.
pub enum CacheMsg {
    /// New samples from a device.
    Batch(Arc<SampleBatch>),
    /// Tags to know (start-up and configuration changes).
    Register(Vec<TagRegistration>),
}

/// The cache actor; its state is the shared view, which survives restarts.
pub struct CacheActor;

impl Actor for CacheActor {
    type Msg = CacheMsg;
    type State = Arc<CacheView>;
    type Arguments = Arc<CacheView>;

    async fn pre_start(
        &self,
        _me: ActorRef<CacheMsg>,
        view: Arc<CacheView>,
    ) -> Result<Arc<CacheView>, ActorProcessingErr> {
        Ok(view)
    }

    async fn handle(
        &self,
        _me: ActorRef<CacheMsg>,
        msg: CacheMsg,
        view: &mut Arc<CacheView>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CacheMsg::Batch(batch) => view.apply(&batch),
            CacheMsg::Register(tags) => view.register(tags),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeviceId, Sample, TenantId};

    fn batch(device: i64, tag: i64, v: f64, at: i64) -> SampleBatch {
        SampleBatch {
            tenant: TenantId(1),
            device: DeviceId(device),
            samples: vec![Sample {
                tag: TagId(tag),
                value: Value::F64(v),
                quality: Quality::Good,
                source_time: Timestamp(at),
                server_time: Timestamp(at),
            }],
        }
    }

    #[test]
    fn latest_staleness_invalidation_and_counters() {
        let view = CacheView::new("t".into());
        view.register(vec![
            TagRegistration {
                tag: TagId(1),
                stale_after_us: 1_000,
            },
            TagRegistration {
                tag: TagId(2),
                stale_after_us: 1_000,
            },
        ]);
        assert_eq!(view.get(TagId(9), Timestamp(0)), Lookup::Unknown);
        assert_eq!(view.get(TagId(1), Timestamp(0)), Lookup::NoValue);
        view.apply(&batch(1, 1, 5.0, 100));
        view.apply(&batch(2, 2, 6.0, 100));
        view.apply(&batch(1, 99, 1.0, 100)); // unknown tag: ignored
        assert!(!view.knows(TagId(99)));
        match view.get(TagId(1), Timestamp(500)) {
            Lookup::Value(l) => assert_eq!((l.value, l.quality), (Value::F64(5.0), Quality::Good)),
            other => panic!("{other:?}"),
        }
        match view.get(TagId(1), Timestamp(5_000)) {
            Lookup::Value(l) => assert_eq!(l.quality, Quality::Uncertain(QualityReason::Stale)),
            other => panic!("{other:?}"),
        }
        let mut bad = batch(1, 1, 5.0, 600);
        bad.samples[0].quality = Quality::Bad(QualityReason::DeviceRestarting);
        view.apply(&bad);
        match view.get(TagId(1), Timestamp(700)) {
            Lookup::Value(l) => assert_eq!(
                l.quality,
                Quality::Bad(QualityReason::DeviceRestarting),
                "Bad is never masked as stale"
            ),
            other => panic!("{other:?}"),
        }
        match view.get(TagId(2), Timestamp(500)) {
            Lookup::Value(l) => assert_eq!(l.quality, Quality::Good, "other device untouched"),
            other => panic!("{other:?}"),
        }
        assert_eq!((view.hits(), view.misses()), (4, 1));
        assert_eq!(view.updates(), 4);
    }
}
