//! The device actor: one per device. Owns the driver, the read plan, the poll schedule
//! and reconnect backoff, turns readings into `SampleBatch`es and fans them out to the
//! cache, alert stream, live hub and historian. Commands (writes), browsing and
//! importing tags from the device's address space pass through it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

mod deadband;
mod link;
mod plan;
mod requests;

use deadband::Deadbands;
pub use requests::{ImportOutcome, NodeError};

use super::catalog::TagCatalog;
use super::data_path::{bad_samples, fan_out};
use super::historian::HistorianHandle;
use super::shared::{LinkState, TenantShared};
use super::tenant::DeviceWorld;
use crate::config::CacheConfig;
use crate::domain::{
    DeviceId, QualityReason, Sample, SampleBatch, Tag, TagId, TagSpec, Timestamp, Value,
};
use crate::drivers::{self, BrowsedNode, Driver, DriverSink, LinkEvent, WriteReport};
use crate::secrets::SecretKey;
use crate::telemetry::names;

const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// Messages of a device actor.
pub enum DeviceMsg {
    /// Open (or re-open) the link.
    Connect,
    /// Read poll group `group` once; `run` is the polling run it was scheduled in
    /// (a poll of an earlier run, before the link was lost, is dropped).
    Poll { group: usize, run: u64 },
    /// Samples the driver received without polling.
    Pushed(Vec<Sample>),
    /// The driver lost these tags' values (a death certificate, an unusable message).
    Lost(Vec<TagId>, QualityReason),
    /// The device announced tags (a topic template matched, a Sparkplug birth).
    Discovered(Vec<TagSpec>),
    /// The link the driver's protocol crate manages changed.
    Link(LinkEvent),
    /// Write a value to a tag and report the outcome.
    Write {
        tag: TagId,
        value: Value,
        reply: RpcReplyPort<Result<WriteReport, drivers::Error>>,
    },
    /// List the children of a node of the device's address space (`None`: its root).
    Browse {
        node: Option<String>,
        reply: RpcReplyPort<Result<Vec<BrowsedNode>, drivers::Error>>,
    },
    /// Create tags for nodes of the device's address space (nodes imported before
    /// give their existing tags).
    Import {
        nodes: Vec<String>,
        reply: RpcReplyPort<Result<ImportOutcome, drivers::Error>>,
    },
    /// The device's tags changed (its own settings did not): re-plan on the open
    /// link and poll with the new plan at once. Only for drivers that
    /// [re-plan live](crate::drivers::DriverConfig::replans_live). Replies with the
    /// plan's refusal, if any.
    Reconfigure {
        world: Arc<DeviceWorld>,
        reply: RpcReplyPort<Result<(), String>>,
    },
}

pub struct DeviceArgs {
    /// The device and its tags, shared with the tenant (not copied per life).
    pub world: Arc<DeviceWorld>,
    pub shared: Arc<TenantShared>,
    pub historian: Arc<HistorianHandle>,
    /// Opens the device's secrets for its driver (checked at start-up).
    pub secret_key: Option<Arc<SecretKey>>,
    /// Staleness of the cache: tags of slower poll groups are registered with theirs,
    /// and a deadband still reports a steady value before it would turn stale.
    pub cache: CacheConfig,
    /// Creates the tags the device announces or an import asks for; None: announcements
    /// are ignored and imports refused.
    pub catalog: Option<Arc<TagCatalog>>,
}

/// The schedule of one poll group.
struct Group {
    period: Duration,
    next: Instant,
    /// The last read of this group left some tags Bad.
    degraded: bool,
    /// No tag in this group: never polled.
    empty: bool,
}

pub struct DeviceState {
    world: Arc<DeviceWorld>,
    driver: Box<dyn Driver>,
    shared: Arc<TenantShared>,
    historian: Arc<HistorianHandle>,
    planned: bool,
    /// The link is up (our own drivers) or handed to the protocol crate (managed).
    connected: bool,
    /// The polling run: bumped whenever polling starts again.
    run: u64,
    groups: Vec<Group>,
    reconnect_backoff: Duration,
    /// Tags with a deadband.
    deadband: Deadbands,
    /// Tags created at run time (announced by the device, imported from it).
    announced: Vec<Tag>,
    /// The driver's values come by exception: tags never turn stale.
    by_exception: bool,
    catalog: Option<Arc<TagCatalog>>,
    cache: CacheConfig,
}

impl DeviceState {
    fn id(&self) -> DeviceId {
        self.world.device.id
    }

    fn initial_backoff(&self) -> Duration {
        match self.driver.reconnect_backoff_ms() {
            Some((min, _)) => Duration::from_millis(min),
            None => Duration::from_millis(self.world.device.spec.poll_ms)
                .clamp(Duration::from_millis(100), MAX_RECONNECT_BACKOFF),
        }
    }

    fn max_backoff(&self) -> Duration {
        self.driver
            .reconnect_backoff_ms()
            .map_or(MAX_RECONNECT_BACKOFF, |(_, max)| Duration::from_millis(max))
    }

    /// Fans a batch out along the data path.
    fn emit(&mut self, mut samples: Vec<Sample>) {
        self.deadband.retain_reportable(&mut samples);
        if samples.is_empty() {
            return;
        }
        let batch = SampleBatch {
            tenant: self.world.device.tenant,
            device: self.world.device.id,
            samples,
        };
        fan_out(
            &self.shared,
            &self.historian,
            batch,
            self.world.device.protocol(),
        );
    }

    /// Re-emits the device's last values with a Bad quality, so that the cache,
    /// subscribers and history all see the loss.
    fn mark_bad(&mut self, reason: QualityReason) {
        let tags = self.world.tags.iter().chain(&self.announced).map(|t| t.id);
        let bad = bad_samples(&self.shared, tags, reason);
        self.emit(bad);
    }

    fn tag(&self, id: TagId) -> Option<&Tag> {
        self.world
            .tags
            .iter()
            .chain(&self.announced)
            .find(|t| t.id == id)
    }

    fn set_state(&self, state: LinkState, error: Option<String>) {
        self.shared.set_state(self.id(), state, error);
    }

    fn state(&self) -> LinkState {
        self.shared
            .status
            .get(&self.id())
            .map_or(LinkState::Connecting, |s| s.state)
    }

    /// Online, or Degraded while a group's last read left tags Bad.
    fn answered_state(&self) -> LinkState {
        if self.groups.iter().any(|g| g.degraded) {
            LinkState::Degraded
        } else {
            LinkState::Online
        }
    }
}

pub struct DeviceActor;

impl DeviceActor {
    /// Starts a new polling run: every group with tags reads now, then on its period.
    fn start_polling(me: &ActorRef<DeviceMsg>, st: &mut DeviceState) {
        st.run += 1;
        let now = Instant::now();
        for (group, g) in st.groups.iter_mut().enumerate() {
            g.next = now;
            if !g.empty {
                let _ = me.cast(DeviceMsg::Poll { group, run: st.run });
            }
        }
    }

    async fn connect(me: &ActorRef<DeviceMsg>, st: &mut DeviceState) {
        if st.connected || !st.planned {
            return;
        }
        st.set_state(LinkState::Connecting, None);
        let samples_to = me.clone();
        let link_to = me.clone();
        let lost_to = me.clone();
        let discovered_to = me.clone();
        let sink = DriverSink {
            tenant: st.shared.tenant.name.as_str().into(),
            device: st.world.device.spec.name.as_str().into(),
            scope: Arc::as_ptr(&st.shared) as u64,
            samples: Arc::new(move |samples| {
                let _ = samples_to.cast(DeviceMsg::Pushed(samples));
            }),
            link: Arc::new(move |event| {
                let _ = link_to.cast(DeviceMsg::Link(event));
            }),
            lost: Arc::new(move |tags, reason| {
                let _ = lost_to.cast(DeviceMsg::Lost(tags, reason));
            }),
            discovered: Arc::new(move |specs| {
                let _ = discovered_to.cast(DeviceMsg::Discovered(specs));
            }),
        };
        match st.driver.connect(sink).await {
            Ok(()) => {
                st.connected = true;
                st.reconnect_backoff = st.initial_backoff();
                if !st.driver.manages_link() {
                    st.set_state(LinkState::Online, None);
                }
                Self::start_polling(me, st);
            }
            Err(e) => {
                tracing::debug!(device = %st.world.device.spec.name, error = %e, "connect failed");
                st.set_state(LinkState::Offline, Some(e.to_string()));
                st.mark_bad(QualityReason::CommLost);
                let wait = st.reconnect_backoff;
                st.reconnect_backoff = (wait * 2).min(st.max_backoff());
                me.send_after(wait, || DeviceMsg::Connect);
            }
        }
    }

    async fn poll(me: &ActorRef<DeviceMsg>, st: &mut DeviceState, group: usize) {
        let protocol = st.world.device.protocol();
        let started = Instant::now();
        let lag = started.saturating_duration_since(st.groups[group].next);
        metrics::histogram!(names::DEVICE_POLL_LAG, "protocol" => protocol)
            .record(lag.as_secs_f64());
        let now = Timestamp::now();
        let mut out = Vec::with_capacity(st.world.tags.len());
        let result = st.driver.read(group, now, &mut out).await;
        metrics::counter!(names::DEVICE_POLLS, "protocol" => protocol).increment(1);
        metrics::histogram!(names::DEVICE_POLL_SECONDS, "protocol" => protocol)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(report) => {
                st.groups[group].degraded = report.degraded();
                st.shared.update_status(st.id(), |s| {
                    s.polls += 1;
                    s.last_poll = Some(now);
                    s.bad_addresses = report.bad_addresses;
                    // What this group really costs now (refused ranges split, parked
                    // addresses skipped), in place of the configured plan's count.
                    if let Some(g) = s.groups.get_mut(group) {
                        g.requests = report.requests;
                    }
                    s.requests_per_cycle = s.groups.iter().map(|g| g.requests).sum();
                    if report.failed_tags == 0 {
                        s.last_success = Some(now);
                    }
                });
                st.emit(out);
                let state = st.answered_state();
                let error = (state == LinkState::Degraded && report.failed_tags > 0).then(|| {
                    format!(
                        "{} tag(s) refused by the device, {} address(es) in the bad-address cache",
                        report.failed_tags, report.bad_addresses
                    )
                });
                st.set_state(state, error);
            }
            Err(e) => {
                let kind = match &e {
                    drivers::Error::Disconnected(_) => "disconnected",
                    drivers::Error::Timeout(_) => "timeout",
                    _ => "device",
                };
                metrics::counter!(names::DEVICE_POLL_ERRORS, "protocol" => protocol, "kind" => kind).increment(1);
                st.shared.update_status(st.id(), |s| {
                    s.poll_errors += 1;
                    s.last_poll = Some(now);
                });
                match e {
                    drivers::Error::Disconnected(_) | drivers::Error::Timeout(_) => {
                        st.set_state(LinkState::Offline, Some(e.to_string()));
                        st.mark_bad(QualityReason::CommLost);
                        if !st.driver.manages_link() {
                            // Our own link: reconnect with backoff; polling starts
                            // again once it is back.
                            st.connected = false;
                            me.send_after(st.reconnect_backoff, || DeviceMsg::Connect);
                            return;
                        }
                    }
                    other => {
                        st.set_state(LinkState::Degraded, Some(other.to_string()));
                        st.mark_bad(QualityReason::DeviceError);
                    }
                }
            }
        }
        Self::schedule_next(me, st, group);
    }

    fn schedule_next(me: &ActorRef<DeviceMsg>, st: &mut DeviceState, group: usize) {
        let run = st.run;
        let g = &mut st.groups[group];
        if g.period.is_zero() {
            let _ = me.cast(DeviceMsg::Poll { group, run });
            return;
        }
        let now = Instant::now();
        g.next += g.period;
        if g.next <= now {
            // Behind schedule: skip the missed cycles rather than bunching them.
            g.next = now + g.period;
        }
        me.send_after(g.next - now, move || DeviceMsg::Poll { group, run });
    }
}

impl Actor for DeviceActor {
    type Msg = DeviceMsg;
    type State = DeviceState;
    type Arguments = DeviceArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<DeviceMsg>,
        args: DeviceArgs,
    ) -> Result<DeviceState, ActorProcessingErr> {
        let spec = &args.world.device.spec;
        let security = spec
            .security
            .open_for(&spec.name, args.secret_key.as_deref())?;
        let driver = drivers::build(&spec.driver, security);
        let mut st = DeviceState {
            planned: false,
            deadband: Deadbands::new(&[], |_| 0, &args.cache),
            world: args.world,
            driver,
            shared: args.shared,
            historian: args.historian,
            connected: false,
            run: 0,
            groups: Vec::new(),
            reconnect_backoff: Duration::ZERO,
            announced: Vec::new(),
            by_exception: false,
            catalog: args.catalog,
            cache: args.cache,
        };
        if let Err(e) = Self::plan(&mut st) {
            st.set_state(LinkState::Offline, Some(e.clone()));
            tracing::error!(device = %st.world.device.spec.name, error = %e, "read plan refused; device not polled until its configuration is fixed");
        }
        st.reconnect_backoff = st.initial_backoff();
        Ok(st)
    }

    async fn post_start(
        &self,
        me: ActorRef<DeviceMsg>,
        _st: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        let _ = me.cast(DeviceMsg::Connect);
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<DeviceMsg>,
        msg: DeviceMsg,
        st: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // Boxed: the actor's resident task stays small (it would otherwise carry
            // the largest of these futures inline for every idle device).
            DeviceMsg::Connect => Box::pin(Self::connect(&me, st)).await,
            DeviceMsg::Poll { group, run } => {
                let current = run == st.run && st.connected;
                if current && st.groups.get(group).is_some_and(|g| !g.empty) {
                    Box::pin(Self::poll(&me, st, group)).await;
                }
            }
            DeviceMsg::Pushed(samples) => {
                if !samples.is_empty() {
                    // For a device that pushes, "read successfully" is "data arrived".
                    let now = Timestamp::now();
                    st.shared
                        .update_status(st.id(), |s| s.last_success = Some(now));
                }
                st.emit(samples)
            }
            DeviceMsg::Lost(tags, reason) => {
                let bad = bad_samples(&st.shared, tags.into_iter(), reason);
                st.emit(bad);
            }
            DeviceMsg::Discovered(specs) => Box::pin(Self::announced(st, specs)).await,
            DeviceMsg::Link(event) => Self::link(st, event),
            DeviceMsg::Write { tag, value, reply } => {
                let result = Box::pin(Self::write(st, tag, value)).await;
                let _ = reply.send(result);
            }
            DeviceMsg::Browse { node, reply } => {
                let result = Box::pin(Self::browse(st, node)).await;
                let _ = reply.send(result);
            }
            DeviceMsg::Import { nodes, reply } => {
                let result = Box::pin(Self::import(st, nodes)).await;
                let _ = reply.send(result);
            }
            DeviceMsg::Reconfigure { world, reply } => {
                let _ = reply.send(Self::retag(&me, st, world));
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _me: ActorRef<DeviceMsg>,
        st: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        st.driver.disconnect().await;
        Ok(())
    }
}
