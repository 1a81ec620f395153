//! The device actor: one per device. Owns the driver, the read plan, the poll schedule
//! and reconnect backoff, turns readings into `SampleBatch`es and fans them out to the
//! cache, alert stream, live hub and historian. Commands (writes) pass through it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::alerts::AlertMsg;
use super::cache::{CacheMsg, Lookup};
use super::historian::HistorianHandle;
use super::live::HubMsg;
use super::shared::{LinkState, TenantShared};
use super::tenant::DeviceWorld;
use crate::domain::{Quality, QualityReason, Sample, SampleBatch, TagId, Timestamp, Value};
use crate::drivers::{self, Driver, PushSink};
use crate::secrets::SecretKey;
use crate::telemetry::names;

const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// Messages of a device actor.
pub enum DeviceMsg {
    /// Open (or re-open) the link.
    Connect,
    /// Read the plan once.
    Poll,
    /// Samples the driver received without polling.
    Pushed(Vec<Sample>),
    /// Write a value to a tag and report the outcome.
    Write {
        tag: TagId,
        value: Value,
        reply: RpcReplyPort<Result<(), drivers::Error>>,
    },
}

pub struct DeviceArgs {
    /// The device and its tags, shared with the tenant (not copied per life).
    pub world: Arc<DeviceWorld>,
    pub shared: Arc<TenantShared>,
    pub historian: Arc<HistorianHandle>,
    /// Opens the device's secrets for its driver (checked at start-up).
    pub secret_key: Option<Arc<SecretKey>>,
}

pub struct DeviceState {
    world: Arc<DeviceWorld>,
    driver: Box<dyn Driver>,
    shared: Arc<TenantShared>,
    historian: Arc<HistorianHandle>,
    planned: bool,
    connected: bool,
    reconnect_backoff: Duration,
    next_poll: Instant,
    /// Tags with a deadband: (band, last reported numeric value).
    deadband: HashMap<TagId, (f64, Option<f64>)>,
}

impl DeviceState {
    fn period(&self) -> Duration {
        Duration::from_millis(self.world.device.spec.poll_ms)
    }

    fn initial_backoff(&self) -> Duration {
        self.period()
            .clamp(Duration::from_millis(100), MAX_RECONNECT_BACKOFF)
    }

    /// Fans a batch out along the data path.
    fn emit(&mut self, mut samples: Vec<Sample>) {
        if !self.deadband.is_empty() {
            samples.retain(
                |s| match (self.deadband.get_mut(&s.tag), s.value.as_f64()) {
                    (Some((band, last)), Some(v)) if s.quality.is_good() => {
                        let report = last.is_none_or(|l| (v - l).abs() >= *band);
                        if report {
                            *last = Some(v);
                        }
                        report
                    }
                    _ => true,
                },
            );
        }
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
        let bad = bad_samples(&self.shared, self.world.tags.iter().map(|t| t.id), reason);
        self.emit(bad);
    }

    fn set_link(&self, state: LinkState, error: Option<String>) {
        self.shared.update_status(self.world.device.id, |s| {
            s.state = state;
            if error.is_some() {
                s.last_error = error;
            }
        });
    }
}

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

pub struct DeviceActor;

impl DeviceActor {
    async fn connect(me: &ActorRef<DeviceMsg>, st: &mut DeviceState) {
        if st.connected || !st.planned {
            return;
        }
        st.set_link(LinkState::Connecting, None);
        let push_to = me.clone();
        let push: PushSink = Arc::new(move |samples| {
            let _ = push_to.cast(DeviceMsg::Pushed(samples));
        });
        match st.driver.connect(push).await {
            Ok(()) => {
                st.connected = true;
                st.reconnect_backoff = st.initial_backoff();
                st.set_link(LinkState::Connected, None);
                st.next_poll = Instant::now();
                let _ = me.cast(DeviceMsg::Poll);
            }
            Err(e) => {
                tracing::debug!(device = %st.world.device.spec.name, error = %e, "connect failed");
                st.set_link(LinkState::Disconnected, Some(e.to_string()));
                st.mark_bad(QualityReason::CommLost);
                let wait = st.reconnect_backoff;
                st.reconnect_backoff = (wait * 2).min(MAX_RECONNECT_BACKOFF);
                me.send_after(wait, || DeviceMsg::Connect);
            }
        }
    }

    async fn poll(me: &ActorRef<DeviceMsg>, st: &mut DeviceState) {
        if !st.connected {
            return;
        }
        let started = Instant::now();
        let now = Timestamp::now();
        let mut out = Vec::with_capacity(st.world.tags.len());
        let result = st.driver.read(now, &mut out).await;
        let protocol = st.world.device.protocol();
        metrics::counter!(names::DEVICE_POLLS, "protocol" => protocol).increment(1);
        metrics::histogram!(names::DEVICE_POLL_SECONDS, "protocol" => protocol)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                st.shared.update_status(st.world.device.id, |s| {
                    s.polls += 1;
                    s.last_poll = Some(now);
                });
                st.emit(out);
            }
            Err(e) => {
                let kind = match &e {
                    drivers::Error::Disconnected(_) => "disconnected",
                    drivers::Error::Timeout(_) => "timeout",
                    _ => "device",
                };
                metrics::counter!(names::DEVICE_POLL_ERRORS, "protocol" => protocol, "kind" => kind).increment(1);
                st.shared.update_status(st.world.device.id, |s| {
                    s.poll_errors += 1;
                    s.last_error = Some(e.to_string());
                });
                if let drivers::Error::Disconnected(_) = e {
                    st.connected = false;
                    st.set_link(LinkState::Disconnected, None);
                    st.mark_bad(QualityReason::CommLost);
                    me.send_after(st.reconnect_backoff, || DeviceMsg::Connect);
                    return;
                }
                st.mark_bad(QualityReason::DeviceError);
            }
        }
        Self::schedule_next(me, st);
    }

    fn schedule_next(me: &ActorRef<DeviceMsg>, st: &mut DeviceState) {
        if st.world.device.spec.poll_ms == 0 {
            let _ = me.cast(DeviceMsg::Poll);
            return;
        }
        let now = Instant::now();
        st.next_poll += st.period();
        if st.next_poll <= now {
            // Behind schedule: skip the missed cycles rather than bunching them.
            st.next_poll = now + st.period();
        }
        me.send_after(st.next_poll - now, || DeviceMsg::Poll);
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
        let mut driver = drivers::build(&spec.driver, security);
        let plan = driver.plan(&args.world.tags);
        let planned = plan.is_ok();
        let requests = plan.as_ref().map_or(0, |p| p.requests_per_cycle);
        args.shared.update_status(args.world.device.id, |s| {
            s.requests_per_cycle = requests;
            if let Err(e) = &plan {
                s.state = LinkState::Disconnected;
                s.last_error = Some(e.to_string());
            }
        });
        if let Err(e) = plan {
            tracing::error!(device = %args.world.device.spec.name, error = %e, "read plan refused; device not polled until its configuration is fixed");
        }
        let deadband = args
            .world
            .tags
            .iter()
            .filter(|t| t.spec.deadband > 0.0)
            .map(|t| (t.id, (t.spec.deadband, None)))
            .collect();
        let mut st = DeviceState {
            world: args.world,
            driver,
            shared: args.shared,
            historian: args.historian,
            planned,
            connected: false,
            reconnect_backoff: Duration::ZERO,
            next_poll: Instant::now(),
            deadband,
        };
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
            DeviceMsg::Poll => Box::pin(Self::poll(&me, st)).await,
            DeviceMsg::Pushed(samples) => st.emit(samples),
            DeviceMsg::Write { tag, value, reply } => {
                let result = match st.world.tags.iter().find(|t| t.id == tag) {
                    None => Err(drivers::Error::Config(format!(
                        "tag {tag} is not on this device"
                    ))),
                    Some(_) if !st.connected => {
                        Err(drivers::Error::Disconnected("device not connected".into()))
                    }
                    Some(t) => st.driver.write(t, &value).await,
                };
                let _ = reply.send(result);
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
