//! The live hub: delivers new values to subscribers that registered interest in tags
//! or a device. Ingest never waits for a subscriber: each has a bounded queue, and one
//! that falls behind receives the latest value per tag instead (conflation, counted).
//!
//! The registry of subscribers lives outside the actor (it survives hub restarts, and a
//! subscription's `Drop` removes itself synchronously); the hub actor is the single
//! fan-out path from devices to subscribers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::Notify;

use super::cache::Latest;
use crate::domain::{DeviceId, SampleBatch, TagId};
use crate::telemetry::names;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data that is still consistent
    // enough for delivery: keep serving rather than poisoning every subscriber.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Pending {
    queue: VecDeque<Latest>,
    conflated: HashMap<TagId, Latest>,
}

/// One subscriber's mailbox.
struct Subscriber {
    tags: Vec<TagId>,
    /// Tags of `tags` that still exist (deleted ones are taken out of the index).
    live_tags: AtomicUsize,
    /// Follows a device.
    follows_device: bool,
    /// Nothing it follows exists any more: the reader gets what is pending, then the
    /// end of the stream.
    closed: AtomicBool,
    cap: usize,
    pending: Mutex<Pending>,
    notify: Notify,
}

impl Subscriber {
    /// Returns true when the value replaced an unread one (conflation).
    fn push(&self, value: Latest) -> bool {
        let mut p = lock(&self.pending);
        let replaced = if p.conflated.is_empty() && p.queue.len() < self.cap {
            p.queue.push_back(value);
            false
        } else {
            // Once conflating, keep conflating until the reader drains, so that the
            // order of each tag's values is preserved (queue first, then the map).
            p.conflated.insert(value.tag, value).is_some()
        };
        drop(p);
        self.notify.notify_one();
        replaced
    }

    fn drain(&self) -> Vec<Latest> {
        let mut p = lock(&self.pending);
        let mut out: Vec<Latest> = p.queue.drain(..).collect();
        out.extend(p.conflated.drain().map(|(_, v)| v));
        out
    }
}

#[derive(Default)]
struct Index {
    subs: HashMap<u64, Arc<Subscriber>>,
    by_tag: HashMap<TagId, Vec<u64>>,
    by_device: HashMap<DeviceId, Vec<u64>>,
}

/// Sizes of the registry, for leak tests and `system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegistrySize {
    pub subscribers: usize,
    pub tag_keys: usize,
    pub device_keys: usize,
}

/// The subscribers of one tenant.
pub struct LiveRegistry {
    tenant: String,
    index: Mutex<Index>,
    next_id: AtomicU64,
    delivered: AtomicU64,
    conflated: AtomicU64,
}

impl LiveRegistry {
    pub fn new(tenant: String) -> Self {
        // None yet, said as 0 rather than no data.
        metrics::gauge!(names::LIVE_SUBSCRIBERS, "tenant" => tenant.clone()).set(0.0);
        LiveRegistry {
            tenant,
            index: Mutex::new(Index::default()),
            next_id: AtomicU64::new(1),
            delivered: AtomicU64::new(0),
            conflated: AtomicU64::new(0),
        }
    }

    /// Registers interest in `tags` and/or every tag of `device`. Values are delivered
    /// from now on; dropping the returned [`Subscription`] unregisters it.
    pub fn subscribe(
        self: &Arc<Self>,
        tags: Vec<TagId>,
        device: Option<DeviceId>,
        cap: usize,
    ) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Subscriber {
            live_tags: AtomicUsize::new(tags.len()),
            follows_device: device.is_some(),
            closed: AtomicBool::new(false),
            tags: tags.clone(),
            cap: cap.max(1),
            pending: Mutex::new(Pending::default()),
            notify: Notify::new(),
        });
        let mut idx = lock(&self.index);
        for t in &tags {
            let ids = idx.by_tag.entry(*t).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if let Some(d) = device {
            idx.by_device.entry(d).or_default().push(id);
        }
        idx.subs.insert(id, sub.clone());
        metrics::gauge!(names::LIVE_SUBSCRIBERS, "tenant" => self.tenant.clone())
            .set(idx.subs.len() as f64);
        Subscription {
            id,
            device,
            registry: self.clone(),
            sub,
        }
    }

    fn unsubscribe(&self, id: u64, device: Option<DeviceId>) {
        let mut idx = lock(&self.index);
        let Some(sub) = idx.subs.remove(&id) else {
            return;
        };
        for t in &sub.tags {
            if let Some(ids) = idx.by_tag.get_mut(t) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    idx.by_tag.remove(t);
                }
            }
        }
        if let Some(d) = device {
            if let Some(ids) = idx.by_device.get_mut(&d) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    idx.by_device.remove(&d);
                }
            }
        }
        metrics::gauge!(names::LIVE_SUBSCRIBERS, "tenant" => self.tenant.clone())
            .set(idx.subs.len() as f64);
    }

    /// Ends what follows deleted objects: subscribers of `device` (when given) and the
    /// interest in `tags`. A subscriber left with nothing to follow is closed: its
    /// stream ends once it has read what was pending.
    pub fn remove(&self, device: Option<DeviceId>, tags: &[TagId]) {
        let mut idx = lock(&self.index);
        let mut ending: Vec<u64> = Vec::new();
        if let Some(d) = device {
            ending.extend(idx.by_device.remove(&d).unwrap_or_default());
        }
        for t in tags {
            for id in idx.by_tag.remove(t).unwrap_or_default() {
                let Some(sub) = idx.subs.get(&id) else {
                    continue;
                };
                let left = sub
                    .live_tags
                    .fetch_sub(1, Ordering::Relaxed)
                    .saturating_sub(1);
                if left == 0 && !sub.follows_device {
                    ending.push(id);
                }
            }
        }
        for id in ending {
            if let Some(sub) = idx.subs.get(&id) {
                sub.closed.store(true, Ordering::Release);
                sub.notify.notify_one();
            }
        }
    }

    /// Hands a batch's samples to the subscribers interested in them.
    pub fn deliver(&self, batch: &SampleBatch) {
        let idx = lock(&self.index);
        if idx.subs.is_empty() {
            return;
        }
        let device_subs = idx.by_device.get(&batch.device);
        let (mut delivered, mut conflated) = (0u64, 0u64);
        for s in &batch.samples {
            let by_tag = idx.by_tag.get(&s.tag);
            let targets = by_tag.into_iter().flatten().chain(
                device_subs
                    .into_iter()
                    .flatten()
                    .filter(|id| !by_tag.is_some_and(|t| t.contains(id))),
            );
            for id in targets {
                if let Some(sub) = idx.subs.get(id) {
                    let value = Latest {
                        tag: s.tag,
                        value: s.value.clone(),
                        quality: s.quality,
                        source_time: s.source_time,
                        server_time: s.server_time,
                    };
                    delivered += 1;
                    conflated += u64::from(sub.push(value));
                }
            }
        }
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
        self.conflated.fetch_add(conflated, Ordering::Relaxed);
    }

    pub fn size(&self) -> RegistrySize {
        let idx = lock(&self.index);
        RegistrySize {
            subscribers: idx.subs.len(),
            tag_keys: idx.by_tag.len(),
            device_keys: idx.by_device.len(),
        }
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub fn conflated(&self) -> u64 {
        self.conflated.load(Ordering::Relaxed)
    }

    /// Publishes the counters (called when `/metrics` is scraped).
    pub fn export_metrics(&self) {
        let t = self.tenant.clone();
        metrics::counter!(names::LIVE_DELIVERED, "tenant" => t.clone()).absolute(self.delivered());
        metrics::counter!(names::LIVE_CONFLATED, "tenant" => t).absolute(self.conflated());
    }
}

/// A registered interest. Receive with [`Subscription::recv`]; drop to unsubscribe.
pub struct Subscription {
    id: u64,
    device: Option<DeviceId>,
    registry: Arc<LiveRegistry>,
    sub: Arc<Subscriber>,
}

impl Subscription {
    /// Waits for and returns the values pending for this subscriber (never empty);
    /// None once what it follows was deleted and everything pending was read.
    pub async fn recv(&self) -> Option<Vec<Latest>> {
        loop {
            let closed = self.sub.closed.load(Ordering::Acquire);
            let values = self.sub.drain();
            if !values.is_empty() {
                return Some(values);
            }
            if closed {
                return None;
            }
            self.sub.notify.notified().await;
        }
    }

    /// Whether what this subscription follows was deleted.
    pub fn is_closed(&self) -> bool {
        self.sub.closed.load(Ordering::Acquire)
    }

    /// Queues a value for this subscriber only (initial values on subscribe).
    pub fn offer(&self, value: Latest) {
        self.sub.push(value);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.registry.unsubscribe(self.id, self.device);
    }
}

/// Messages of the live hub actor.
pub enum HubMsg {
    Batch(Arc<SampleBatch>),
}

/// The live hub actor; its state is the registry, which survives restarts.
pub struct HubActor;

impl Actor for HubActor {
    type Msg = HubMsg;
    type State = Arc<LiveRegistry>;
    type Arguments = Arc<LiveRegistry>;

    async fn pre_start(
        &self,
        _me: ActorRef<HubMsg>,
        registry: Arc<LiveRegistry>,
    ) -> Result<Arc<LiveRegistry>, ActorProcessingErr> {
        Ok(registry)
    }

    async fn handle(
        &self,
        _me: ActorRef<HubMsg>,
        msg: HubMsg,
        registry: &mut Arc<LiveRegistry>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HubMsg::Batch(batch) => registry.deliver(&batch),
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
