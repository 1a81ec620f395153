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
use super::catalog::TagCatalog;
use super::device::DeviceMsg;
use super::historian::HistorianHandle;
use super::live::{HubMsg, LiveRegistry};
use super::root::{RootMsg, TenantWorld};
use super::tenant::{DeviceWorld, TenantMsg, Touched};
use crate::alarms::{AlarmEvent, AlarmView, Severity};
use crate::domain::{DeviceId, RuleId, TagId, Tenant, TenantId, Timestamp};
use crate::drivers::PlanGroup;
use crate::secrets::SecretKey;
use crate::storage::Snapshot;
use crate::telemetry::names;

/// Status changes buffered for slow `deviceStatus` subscribers.
const STATUS_EVENTS: usize = 1024;
/// Alarm transitions buffered for slow `alarmEvents` subscribers.
const ALARM_EVENTS: usize = 4096;

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

/// State of a device, as shown in the API and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Started, no answer yet (or the link is being opened again).
    Connecting,
    /// Polls answer and every tag reads.
    Online,
    /// The device answers, but some tags do not read (exceptions, bad addresses).
    Degraded,
    /// No link, or the device does not answer: its tags are Bad/comm_lost.
    Offline,
    /// The device actor failed and waits for its restart.
    Restarting,
    /// Out of service: not polled.
    Disabled,
}

impl LinkState {
    pub const ALL: [LinkState; 6] = [
        LinkState::Connecting,
        LinkState::Online,
        LinkState::Degraded,
        LinkState::Offline,
        LinkState::Restarting,
        LinkState::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Online => "online",
            LinkState::Degraded => "degraded",
            LinkState::Offline => "offline",
            LinkState::Restarting => "restarting",
            LinkState::Disabled => "disabled",
        }
    }
}

/// What the API shows of a device actor; written by the actor, read by resolvers.
#[derive(Debug, Clone)]
pub struct DeviceStatus {
    pub protocol: &'static str,
    pub state: LinkState,
    /// When `state` last changed.
    pub since: Timestamp,
    pub polls: u64,
    pub poll_errors: u64,
    pub restarts: u64,
    pub last_poll: Option<Timestamp>,
    /// The last poll in which every request was answered.
    pub last_success: Option<Timestamp>,
    pub last_error: Option<String>,
    /// Protocol requests of one cycle of every poll group, from the read plan.
    pub requests_per_cycle: u32,
    /// The read plan, one entry per poll group.
    pub groups: Vec<PlanGroup>,
    /// Addresses parked in the driver's bad-address cache.
    pub bad_addresses: u32,
    /// Why the driver refused the device's read plan (it reads nothing until its
    /// configuration is fixed); None when the plan was taken.
    pub config_error: Option<String>,
}

impl DeviceStatus {
    pub fn new(protocol: &'static str, state: LinkState) -> Self {
        DeviceStatus {
            protocol,
            state,
            since: Timestamp::now(),
            polls: 0,
            poll_errors: 0,
            restarts: 0,
            last_poll: None,
            last_success: None,
            last_error: None,
            requests_per_cycle: 0,
            groups: Vec::new(),
            bad_addresses: 0,
            config_error: None,
        }
    }
}

/// A device's status after a change of state, as the `deviceStatus` subscription
/// streams it.
#[derive(Debug, Clone)]
pub struct StatusEvent {
    pub device: DeviceId,
    pub status: DeviceStatus,
    /// The device was deleted: this is its last event.
    pub removed: bool,
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
    /// The device of every tag, for routing commands.
    pub tag_devices: DashMap<TagId, DeviceId>,
    /// Every change of a device's state (or of its error), for `deviceStatus`.
    pub status_events: tokio::sync::broadcast::Sender<StatusEvent>,
    /// Every alarm of the tenant as its alert stream last published it (the alert
    /// stream is the only writer).
    pub alarms: DashMap<RuleId, AlarmView>,
    /// Every alarm transition, for `alarmEvents`.
    pub alarm_events: tokio::sync::broadcast::Sender<AlarmEvent>,
    /// The tenant actor, for configuration changes.
    pub tenant_actor: Slot<TenantMsg>,
    /// The devices as configured now; None until the tenant actor first starts.
    configured: ArcSwapOption<Vec<Arc<DeviceWorld>>>,
    /// Held while a configuration change of this tenant is planned, stored and
    /// applied: changes happen one after the other, never interleaved.
    pub config_lock: tokio::sync::Mutex<()>,
    /// What stored changes touched that the running tenant has not been told yet (the
    /// tenant actor did not answer in time): the next change hands it over with its
    /// own.
    pub unapplied: std::sync::Mutex<Touched>,
    /// The tenant's configured world as the last change left it, with the
    /// `config_generation` it was read at: the next change starts from it instead of
    /// reading the store again.
    pub config_snapshot: std::sync::Mutex<Option<(u64, Arc<Snapshot>)>>,
    /// Bumped by every write to the tenant's configuration outside the live
    /// configuration (tags devices announce, imports from their address space): a
    /// snapshot of an older generation is read again.
    pub config_generation: AtomicU64,
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
            tag_devices: DashMap::new(),
            status_events: tokio::sync::broadcast::channel(STATUS_EVENTS).0,
            alarms: DashMap::new(),
            alarm_events: tokio::sync::broadcast::channel(ALARM_EVENTS).0,
            tenant_actor: Slot::new("tenant"),
            configured: ArcSwapOption::empty(),
            config_lock: tokio::sync::Mutex::new(()),
            unapplied: std::sync::Mutex::new(Touched::default()),
            config_snapshot: std::sync::Mutex::new(None),
            config_generation: AtomicU64::new(0),
        }
    }

    /// Alarms out of the normal state by severity and state, from the alarm view
    /// (computed at scrape time, like the device gauges).
    pub fn export_alarm_metrics(&self) {
        use std::collections::BTreeMap;
        const STATES: [&str; 5] = ["unacked", "acked", "rtn_unacked", "shelved", "suppressed"];
        let mut counts: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        for severity in Severity::ALL {
            for state in STATES {
                counts.insert((severity.as_str(), state), 0);
            }
        }
        for a in self.alarms.iter() {
            if let Some(n) = counts.get_mut(&(a.rule.spec.severity.as_str(), a.alarm.state.name()))
            {
                *n += 1;
            }
        }
        let tenant = self.tenant.name.clone();
        for ((severity, state), n) in counts {
            metrics::gauge!(names::ALARMS, "tenant" => tenant.clone(), "severity" => severity, "state" => state)
                .set(n as f64);
        }
    }

    /// Device gauges by protocol and state, plan sizes and bad addresses, from the
    /// status map (computed at scrape time, so they cannot drift).
    pub fn export_device_metrics(&self) {
        use std::collections::BTreeMap;
        let mut states: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        let mut requests: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut bad = 0u64;
        for s in self.status.iter() {
            for state in LinkState::ALL {
                states.entry((s.protocol, state.as_str())).or_default();
            }
            *states.entry((s.protocol, s.state.as_str())).or_default() += 1;
            *requests.entry(s.protocol).or_default() += u64::from(s.requests_per_cycle);
            if s.protocol == "modbus" {
                bad += u64::from(s.bad_addresses);
            }
        }
        let tenant = self.tenant.name.clone();
        for ((protocol, state), n) in states {
            metrics::gauge!(names::DEVICES, "tenant" => tenant.clone(), "protocol" => protocol, "state" => state)
                .set(n as f64);
        }
        for (protocol, n) in requests {
            metrics::gauge!(names::DEVICE_PLAN_REQUESTS, "tenant" => tenant.clone(), "protocol" => protocol)
                .set(n as f64);
        }
        metrics::gauge!(names::MODBUS_BAD_ADDRESSES, "tenant" => tenant).set(bad as f64);
    }

    /// Changes counters and details of a device's status (no event).
    pub fn update_status(&self, device: DeviceId, f: impl FnOnce(&mut DeviceStatus)) {
        if let Some(mut s) = self.status.get_mut(&device) {
            f(&mut s);
        }
    }

    /// Sets a device's state (and its error, when given) and tells the `deviceStatus`
    /// subscribers when either changed.
    pub fn set_state(&self, device: DeviceId, state: LinkState, error: Option<String>) {
        let changed = match self.status.get_mut(&device) {
            Some(mut s) => {
                let changed = s.state != state || (error.is_some() && s.last_error != error);
                if s.state != state {
                    s.since = Timestamp::now();
                }
                s.state = state;
                if error.is_some() {
                    s.last_error = error;
                }
                changed.then(|| s.clone())
            }
            None => None,
        };
        if let Some(status) = changed {
            self.announce(device, status, false);
        }
    }

    /// Tells the `deviceStatus` subscribers (no subscriber is not an error).
    fn announce(&self, device: DeviceId, status: DeviceStatus, removed: bool) {
        let _ = self.status_events.send(StatusEvent {
            device,
            status,
            removed,
        });
    }

    /// Tells the `deviceStatus` subscribers a device's current status (a device that
    /// was just created).
    pub fn publish_status(&self, device: DeviceId) {
        let status = self.status.get(&device).map(|s| s.clone());
        if let Some(status) = status {
            self.announce(device, status, false);
        }
    }

    /// Forgets a deleted device's status and tells the `deviceStatus` subscribers, who
    /// get its last status marked removed.
    pub fn remove_status(&self, device: DeviceId) {
        if let Some((_, status)) = self.status.remove(&device) {
            self.announce(device, status, true);
        }
    }

    /// The tenant's devices as configured now (the tenant actor's, and the ones a new
    /// life of the tenant actor starts from); None before the tenant actor first
    /// started.
    pub fn configured(&self) -> Option<Vec<Arc<DeviceWorld>>> {
        self.configured.load_full().map(|c| (*c).clone())
    }

    /// Sets the configured devices (the live configuration does, before it asks the
    /// tenant actor to apply them).
    pub fn set_configured(&self, devices: Vec<Arc<DeviceWorld>>) {
        self.configured.store(Some(Arc::new(devices)));
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
    /// Creates the tags devices announce at run time; None: announced tags are ignored.
    pub catalog: Option<Arc<TagCatalog>>,
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
            catalog: None,
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

    pub fn with_catalog(mut self, catalog: TagCatalog) -> Self {
        self.catalog = Some(Arc::new(catalog));
        self
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
