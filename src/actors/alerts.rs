//! The alert stream of one tenant: every sample passes through it. It owns the
//! tenant's alarm [`Engine`], the single writer of alarm state: sample batches, clock
//! ticks and operators' commands arrive as messages and are handled one at a time, so
//! no two triggers can race into a duplicate or a stuck alarm.
//!
//! Every transition is published at once (to the tenant's alarm view that the API
//! reads and to the `alarmEvents` subscribers) and recorded in the store (history and
//! current state) by the [`AlarmWriter`] task, in order, many per transaction, so that
//! evaluation never waits for the store. On (re)start the
//! actor restores the rules and the last recorded states, so active alarms survive a
//! restart of the actor or of the server.
//!
//! When the store is down, transitions caused by the process stay queued in memory
//! (bounded) and are retried; an operator's command answers only once its transition
//! is recorded, and is refused with the store's error (changing nothing) when it
//! cannot be.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::alarm_writer::AlarmWriter;
use super::shared::TenantShared;
use super::tenant::DeviceWorld;
use crate::alarms::{AlarmEvent, AlarmView, Anomaly, Command, Engine, EngineError, TagInfo};
use crate::domain::{DeviceId, RuleId, SampleBatch, TagId, Timestamp};
use crate::storage::Store;
use crate::telemetry::names;

/// How often delays, stale windows and shelvings are checked.
const TICK: Duration = Duration::from_millis(250);
/// How long a stopping alert stream waits for its transitions to be written.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// Why an operator's command on an alarm did nothing.
#[derive(Debug, thiserror::Error)]
pub enum AlarmCommandError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The transition could not be recorded; nothing changed.
    #[error("the alarm store is unavailable: {0}")]
    Store(String),
}

/// Messages of the alert stream actor.
pub enum AlertMsg {
    /// New samples to evaluate against the tenant's rules.
    Batch(Arc<SampleBatch>),
    /// The clock (sent to self).
    Tick,
    /// An operator's acknowledge, shelve or unshelve; replies with the alarm after it.
    Command {
        rule: RuleId,
        command: Command,
        user: String,
        comment: Option<String>,
        reply: RpcReplyPort<Result<AlarmView, AlarmCommandError>>,
    },
    /// Replies once every transition so far is recorded (or failed to be).
    Flush(RpcReplyPort<Result<(), String>>),
    /// The configuration changed: reload the rules from the store for `devices` (as
    /// configured now). Alarms whose rule stays keep their state; a disabled device's
    /// alarms are suppressed, an enabled one's unsuppressed. Replies with the store's
    /// error, if the rules could not be read (the old ones stay).
    Reconfigure {
        devices: Vec<Arc<DeviceWorld>>,
        reply: RpcReplyPort<Result<(), String>>,
    },
}

pub struct AlertArgs {
    pub shared: Arc<TenantShared>,
    pub store: Arc<dyn Store>,
    pub devices: Vec<Arc<DeviceWorld>>,
}

pub struct AlertState {
    shared: Arc<TenantShared>,
    /// Where the rules are read again when the configuration changes.
    store: Arc<dyn Store>,
    engine: Engine,
    /// Records transitions in order, off the evaluation path.
    writer: Option<AlarmWriter>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

/// What the engine needs of the tenant's tags, and the devices out of service.
fn tag_infos(devices: &[Arc<DeviceWorld>]) -> (HashMap<TagId, Arc<TagInfo>>, HashSet<DeviceId>) {
    let mut tags = HashMap::new();
    let mut out_of_service = HashSet::new();
    for d in devices {
        if !d.device.spec.enabled {
            out_of_service.insert(d.device.id);
        }
        for t in &d.tags {
            let info = TagInfo {
                name: t.spec.name.clone(),
                eng_unit: t.spec.eng_unit.clone().unwrap_or_default(),
                device: t.device,
                unit: t.spec.unit.or(d.device.spec.unit),
            };
            tags.insert(t.id, Arc::new(info));
        }
    }
    (tags, out_of_service)
}

/// The alert stream actor.
pub struct AlertStreamActor;

impl AlertStreamActor {
    /// Publishes the process's transitions and hands them, with the anomaly
    /// detections, to the recorder.
    fn record(st: &AlertState, events: Vec<AlarmEvent>, anomalies: Vec<Anomaly>) {
        if events.is_empty() && anomalies.is_empty() {
            return;
        }
        Self::publish(st, &events);
        for a in &anomalies {
            metrics::counter!(names::ANOMALIES, "tenant" => st.shared.tenant.name.clone(),
                "method" => a.detection.method.as_str())
            .increment(1);
        }
        if let Some(w) = &st.writer {
            w.submit(events, anomalies);
        }
    }

    /// The alarm view and the subscribers learn of the transitions.
    fn publish(st: &AlertState, events: &[AlarmEvent]) {
        let tenant = st.shared.tenant.name.clone();
        for e in events {
            if let Some(view) = st.engine.view(e.rule) {
                st.shared.alarms.insert(e.rule, view);
            }
            metrics::counter!(names::ALARM_TRANSITIONS, "tenant" => tenant.clone(),
                "severity" => e.severity.as_str(), "to" => e.alarm.state.name())
            .increment(1);
            // No subscriber is not an error.
            let _ = st.shared.alarm_events.send(e.clone());
        }
    }

    /// Takes the rules as stored now (see [`AlertMsg::Reconfigure`]).
    async fn reconfigure(
        st: &mut AlertState,
        store: &dyn Store,
        devices: &[Arc<DeviceWorld>],
    ) -> Result<(), String> {
        let rules = store
            .alarm_rules(st.shared.tenant.id)
            .await
            .map_err(|e| e.to_string())?;
        let (tags, out_of_service) = tag_infos(devices);
        let mut events = Vec::new();
        let removed =
            st.engine
                .reconfigure(rules, &tags, &out_of_service, Timestamp::now(), &mut events);
        for rule in removed {
            st.shared.alarms.remove(&rule);
        }
        for view in st.engine.views() {
            st.shared.alarms.insert(view.rule.id, view);
        }
        Self::record(st, events, Vec::new());
        Ok(())
    }

    async fn command(
        st: &mut AlertState,
        rule: RuleId,
        command: Command,
        user: String,
        comment: Option<String>,
    ) -> Result<AlarmView, AlarmCommandError> {
        let now = Timestamp::now();
        let Some(event) = st.engine.command(rule, &command, &user, comment, now)? else {
            return st
                .engine
                .view(rule)
                .ok_or(AlarmCommandError::Engine(EngineError::NotFound(rule)));
        };
        let writer = st
            .writer
            .as_ref()
            .ok_or_else(|| AlarmCommandError::Store("the alarm recorder stopped".into()))?;
        writer
            .record(vec![event.clone()])
            .await
            .map_err(AlarmCommandError::Store)?;
        st.engine.commit(&event);
        Self::publish(st, std::slice::from_ref(&event));
        st.engine
            .view(rule)
            .ok_or(AlarmCommandError::Engine(EngineError::NotFound(rule)))
    }
}

impl Actor for AlertStreamActor {
    type Msg = AlertMsg;
    type State = AlertState;
    type Arguments = AlertArgs;

    async fn pre_start(
        &self,
        me: ActorRef<AlertMsg>,
        args: AlertArgs,
    ) -> Result<AlertState, ActorProcessingErr> {
        let tenant = args.shared.tenant.id;
        // A store that cannot be read fails the start; the tenant actor retries with
        // its backoff.
        let rules = args.store.alarm_rules(tenant).await?;
        let stored = args.store.alarm_states(tenant).await?;
        let (tags, out_of_service) = tag_infos(&args.devices);
        let mut events = Vec::new();
        let engine = Engine::new(
            rules,
            &tags,
            stored,
            &out_of_service,
            Timestamp::now(),
            &mut events,
        );
        args.shared.alarms.clear();
        for view in engine.views() {
            args.shared.alarms.insert(view.rule.id, view);
        }
        let ticker = me.send_interval(TICK, || AlertMsg::Tick);
        let writer =
            AlarmWriter::start(args.store.clone(), tenant, args.shared.tenant.name.clone());
        let st = AlertState {
            store: args.store.clone(),
            shared: args.shared,
            engine,
            writer: Some(writer),
            ticker: Some(ticker),
        };
        Self::record(&st, events, Vec::new());
        Ok(st)
    }

    async fn post_stop(
        &self,
        _me: ActorRef<AlertMsg>,
        st: &mut AlertState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.ticker.take() {
            t.abort();
        }
        if let Some(w) = st.writer.take() {
            w.close(CLOSE_WITHIN).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<AlertMsg>,
        msg: AlertMsg,
        st: &mut AlertState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AlertMsg::Batch(batch) => {
                metrics::counter!(names::ALERT_SAMPLES, "tenant" => st.shared.tenant.name.clone())
                    .increment(batch.len() as u64);
                let (mut events, mut anomalies) = (Vec::new(), Vec::new());
                st.engine
                    .on_samples(&batch.samples, &mut events, &mut anomalies);
                Self::record(st, events, anomalies);
            }
            AlertMsg::Tick => {
                let mut events = Vec::new();
                st.engine.tick(Timestamp::now(), &mut events);
                Self::record(st, events, Vec::new());
            }
            AlertMsg::Command {
                rule,
                command,
                user,
                comment,
                reply,
            } => {
                let result = Self::command(st, rule, command, user, comment).await;
                // The caller may have timed out.
                let _ = reply.send(result);
            }
            AlertMsg::Flush(reply) => {
                let result = match &st.writer {
                    Some(w) => w.record(Vec::new()).await,
                    None => Err("the alarm recorder stopped".into()),
                };
                let _ = reply.send(result);
            }
            AlertMsg::Reconfigure { devices, reply } => {
                let store = st.store.clone();
                let result = Self::reconfigure(st, store.as_ref(), &devices).await;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}
