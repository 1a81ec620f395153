//! The driver's table of tags as OPC UA items (one per tag, its client handle its
//! index + 1, stable for the driver's life), and the bad-node cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use opcua::types::{
    DataChangeFilter, DataChangeTrigger, DeadbandType, ExtensionObject, NodeId, StatusCode,
};

use super::address::{Deadband, Mode, OpcuaAddress};
use super::config::OpcuaConfig;
use crate::domain::Tag;

/// One tag as an OPC UA item.
#[derive(Debug, Clone)]
pub struct Item {
    pub tag: Tag,
    pub address: OpcuaAddress,
    /// The node on the connected server (namespace URIs resolved); `None` until
    /// connected or when the server lacks the namespace.
    pub node: Option<NodeId>,
    pub sampling_ms: u64,
    pub queue: u32,
    pub deadband: Option<Deadband>,
    /// Read by bulk polls instead of a subscription.
    pub poll: bool,
}

impl Item {
    pub fn new(tag: Tag, address: OpcuaAddress, config: &OpcuaConfig, default_ms: u64) -> Self {
        let o = address.options;
        // The tag's own absolute deadband applies at the server too, in raw units.
        let tag_deadband = (tag.spec.deadband > 0.0 && tag.spec.scale != 0.0)
            .then(|| Deadband::Absolute(tag.spec.deadband / tag.spec.scale.abs()));
        Item {
            sampling_ms: o.sampling_ms.unwrap_or(default_ms),
            queue: o.queue.unwrap_or(config.queue_size),
            deadband: o.deadband.or(tag_deadband),
            poll: !config.subscribe || o.mode == Mode::Poll,
            tag,
            address,
            node: None,
        }
    }

    /// The monitored item's filter: a change of value or status, beyond the deadband.
    /// Always explicit: some servers (async-opcua's among them) report only value
    /// changes without one, and a status change alone is news.
    pub fn filter(&self) -> ExtensionObject {
        let (kind, value) = match self.deadband {
            None => (DeadbandType::None, 0.0),
            Some(Deadband::Absolute(v)) => (DeadbandType::Absolute, v),
            Some(Deadband::Percent(v)) => (DeadbandType::Percent, v),
        };
        ExtensionObject::from_message(DataChangeFilter {
            trigger: DataChangeTrigger::StatusValue,
            deadband_type: kind as u32,
            deadband_value: value,
        })
    }
}

/// The items, shared with the notification handler and the poller.
#[derive(Debug, Default, Clone)]
pub struct Items(Arc<RwLock<Vec<Item>>>);

impl Items {
    pub fn read(&self) -> RwLockReadGuard<'_, Vec<Item>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Vec<Item>> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The client handle of item `index`.
pub fn handle(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// The item index of a client handle.
pub fn index(handle: u32) -> Option<usize> {
    (handle as usize).checked_sub(1)
}

/// Nodes the server refused as nodes (unknown, not readable): skipped for a grace
/// period, logged once, then tried again.
#[derive(Debug)]
pub struct BadNodes {
    grace: Duration,
    parked: HashMap<u32, (Instant, StatusCode)>,
    /// Handles logged already: a node that fails again after its retry is not logged
    /// again until it has worked once.
    logged: std::collections::HashSet<u32>,
}

impl BadNodes {
    pub fn new(grace: Duration) -> Self {
        BadNodes {
            grace,
            parked: HashMap::new(),
            logged: std::collections::HashSet::new(),
        }
    }

    /// Parks `handle`; true when this failure should be logged.
    pub fn park(&mut self, handle: u32, code: StatusCode, now: Instant) -> bool {
        self.parked.insert(handle, (now + self.grace, code));
        self.logged.insert(handle)
    }

    pub fn is_parked(&self, handle: u32) -> bool {
        self.parked.contains_key(&handle)
    }

    /// The node worked: it is logged again if it fails later.
    pub fn recovered(&mut self, handle: u32) {
        self.parked.remove(&handle);
        self.logged.remove(&handle);
    }

    /// Takes the handles whose grace period is over.
    pub fn due(&mut self, now: Instant) -> Vec<u32> {
        let due: Vec<u32> = self
            .parked
            .iter()
            .filter(|(_, (until, _))| *until <= now)
            .map(|(h, _)| *h)
            .collect();
        for h in &due {
            self.parked.remove(h);
        }
        due
    }

    /// The earliest end of a grace period.
    pub fn next_due(&self) -> Option<Instant> {
        self.parked.values().map(|(until, _)| *until).min()
    }

    pub fn len(&self) -> usize {
        self.parked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_nodes_wait_their_grace_and_log_once() {
        let t0 = Instant::now();
        let mut b = BadNodes::new(Duration::from_secs(300));
        assert!(b.park(3, StatusCode::BadNodeIdUnknown, t0));
        assert!(b.is_parked(3));
        assert_eq!(b.next_due(), Some(t0 + Duration::from_secs(300)));
        assert!(b.due(t0 + Duration::from_secs(299)).is_empty());
        assert_eq!(b.due(t0 + Duration::from_secs(300)), vec![3]);
        assert!(!b.is_parked(3) && b.len() == 0);
        // Failing again after the retry: parked, not logged again.
        assert!(!b.park(3, StatusCode::BadNodeIdUnknown, t0));
        b.recovered(3);
        assert!(
            b.park(3, StatusCode::BadNodeIdUnknown, t0),
            "logged after working once"
        );
        assert_eq!(handle(0), 1);
        assert_eq!(index(1), Some(0));
        assert_eq!(index(0), None);
    }
}
