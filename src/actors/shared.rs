//! State that outlives actor restarts: the slots through which actors reach each other
//! (re-pointed by supervisors after a restart), and the per-tenant views the API reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use ractor::{ActorRef, Message};

use super::alerts::AlertMsg;
use super::cache::{CacheMsg, CacheView};
use super::device::DeviceMsg;
use super::historian::HistorianHandle;
use super::live::{HubMsg, LiveRegistry};
use super::root::{RootMsg, TenantWorld};
use crate::domain::{DeviceId, Tenant, TenantId, Timestamp};
use crate::secrets::SecretKey;
use crate::telemetry::names;

/// How long a caller waits for the root to start or stop a tenant.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The current `ActorRef` of a restartable actor. Senders load it per message, so a
/// restart re-points every sender at once.
pub struct Slot<M: Message> {
    kind: &'static str,
    current: ArcSwapOption<ActorRef<M>>,
}

impl<M: Message> Slot<M> {
    pub fn new(kind: &'static str) -> Self {
        Slot {
            kind,
            current: ArcSwapOption::empty(),
        }
    }

    pub fn set(&self, actor: Option<ActorRef<M>>) {
        self.current.store(actor.map(Arc::new));
    }

    pub fn get(&self) -> Option<ActorRef<M>> {
        self.current.load_full().map(|a| (*a).clone())
    }

    /// Sends, or counts the message as dropped when the actor is between lives.
    pub fn cast(&self, msg: M) -> bool {
        let delivered = match &*self.current.load() {
            Some(actor) => actor.cast(msg).is_ok(),
            None => false,
        };
        if !delivered {
            metrics::counter!(names::ROUTE_DROPPED_BATCHES, "kind" => self.kind).increment(1);
        }
        delivered
    }
}

/// Link state of a device, as shown in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    Disconnected,
    Restarting,
    Disabled,
}

/// What the API shows of a device actor; written by the actor, read by resolvers.
#[derive(Debug, Clone)]
pub struct DeviceStatus {
    pub state: LinkState,
    pub polls: u64,
    pub poll_errors: u64,
    pub restarts: u64,
    pub last_poll: Option<Timestamp>,
    pub last_error: Option<String>,
    pub requests_per_cycle: u32,
}

impl DeviceStatus {
    pub fn new(state: LinkState) -> Self {
        DeviceStatus {
            state,
            polls: 0,
            poll_errors: 0,
            restarts: 0,
            last_poll: None,
            last_error: None,
            requests_per_cycle: 0,
        }
    }
}

/// Everything of one tenant that must survive restarts of its actors.
pub struct TenantShared {
    pub tenant: Tenant,
    pub cache: Arc<CacheView>,
    pub live: Arc<LiveRegistry>,
    pub cache_actor: Slot<CacheMsg>,
    pub hub_actor: Slot<HubMsg>,
    pub alerts_actor: Slot<AlertMsg>,
    pub devices: DashMap<DeviceId, Slot<DeviceMsg>>,
    pub status: DashMap<DeviceId, DeviceStatus>,
}

impl TenantShared {
    pub fn new(tenant: Tenant) -> Self {
        let name = tenant.name.clone();
        TenantShared {
            cache: Arc::new(CacheView::new(name.clone())),
            live: Arc::new(LiveRegistry::new(name)),
            tenant,
            cache_actor: Slot::new("cache"),
            hub_actor: Slot::new("live_hub"),
            alerts_actor: Slot::new("alert_stream"),
            devices: DashMap::new(),
            status: DashMap::new(),
        }
    }

    pub fn update_status(&self, device: DeviceId, f: impl FnOnce(&mut DeviceStatus)) {
        if let Some(mut s) = self.status.get_mut(&device) {
            f(&mut s);
        }
    }
}

/// The running system as the API sees it.
pub struct Runtime {
    pub started: Instant,
    pub tenants: DashMap<TenantId, Arc<TenantShared>>,
    pub historian: Arc<HistorianHandle>,
    /// The root supervisor, for starting and stopping tenants at run time.
    pub root: Slot<RootMsg>,
    /// Opens device secrets where a driver is built; None when no
    /// `THERMACORE_SECRET_KEY` is set (then no device has secrets).
    pub secret_key: Option<Arc<SecretKey>>,
    restarts: AtomicU64,
}

impl Runtime {
    pub fn new(historian: Arc<HistorianHandle>) -> Self {
        Runtime {
            started: Instant::now(),
            tenants: DashMap::new(),
            historian,
            root: Slot::new("root"),
            secret_key: None,
            restarts: AtomicU64::new(0),
        }
    }

    /// Starts the actors of a tenant (created, or enabled again).
    pub async fn start_tenant(&self, world: TenantWorld) -> Result<(), String> {
        let root = self.root.get().ok_or("the actor tree is not running")?;
        root.call(|reply| RootMsg::AddTenant(world, reply), Some(CALL_TIMEOUT))
            .await
            .map_err(|e| e.to_string())?
            .success_or_else(|| "the root did not answer".to_string())
    }

    /// Stops a tenant's actors (disabled or deleted); false when none were running.
    pub async fn stop_tenant(&self, id: TenantId) -> Result<bool, String> {
        let root = self.root.get().ok_or("the actor tree is not running")?;
        root.call(|reply| RootMsg::RemoveTenant(id, reply), Some(CALL_TIMEOUT))
            .await
            .map_err(|e| e.to_string())?
            .success_or_else(|| "the root did not answer".to_string())
    }

    pub fn with_secret_key(mut self, key: Option<Arc<SecretKey>>) -> Self {
        self.secret_key = key;
        self
    }

    pub fn tenant(&self, id: TenantId) -> Option<Arc<TenantShared>> {
        self.tenants.get(&id).map(|t| t.clone())
    }

    pub fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Live actors: root, historian, and per tenant the tenant, cache, hub, alert stream
    /// and its running devices.
    pub fn actor_counts(&self) -> ActorCounts {
        let mut c = ActorCounts {
            tenants: self.tenants.len(),
            ..ActorCounts::default()
        };
        for t in self.tenants.iter() {
            c.devices += t.devices.iter().filter(|d| d.get().is_some()).count();
            c.tenant_services += [
                t.cache_actor.get().is_some(),
                t.hub_actor.get().is_some(),
                t.alerts_actor.get().is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
        }
        c.total = 1
            + usize::from(self.historian.actor_alive())
            + c.tenants
            + c.devices
            + c.tenant_services;
        c
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActorCounts {
    pub total: usize,
    pub tenants: usize,
    pub devices: usize,
    pub tenant_services: usize,
}
