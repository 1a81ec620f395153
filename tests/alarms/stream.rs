//! The tenant's alert-stream actor against SQLite: many concurrent batches and
//! acknowledgements produce exactly one activation and one acknowledgement, and a
//! restarted actor keeps its active alarms.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use thermacore::actors::TenantWorld;
use thermacore::actors::alerts::{AlarmCommandError, AlertArgs, AlertMsg, AlertStreamActor};
use thermacore::alarms::{
    AlarmState, Command, EngineError, LimitKind, RuleKind, RuleSpec, Severity, StateError,
};
use thermacore::domain::{
    DataType, DeviceSpec, Quality, RuleId, Sample, SampleBatch, TagSpec, Timestamp, Value,
};
use thermacore::drivers::DriverConfig;
use thermacore::drivers::sim::SimConfig;
use thermacore::storage::{self, AlarmHistoryFilter, Store};

const CALL: Duration = Duration::from_secs(10);

pub(crate) struct Plant {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) world: TenantWorld,
    /// The high-limit rule on each device's tag.
    pub(crate) rules: Vec<RuleId>,
    _dir: tempfile::TempDir,
}

/// A tenant with `devices` devices of one tag each, a high limit at 80 on every tag,
/// on a fresh SQLite file.
pub(crate) async fn plant(devices: usize) -> Plant {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("t.db").display());
    let store = storage::connect(&url, 4).await.expect("store");
    store.migrate().await.expect("migrate");
    plant_in(store, devices, dir).await
}

async fn plant_in(store: Arc<dyn Store>, devices: usize, dir: tempfile::TempDir) -> Plant {
    let tenant = store.upsert_tenant("plant").await.expect("tenant");
    let mut rules = Vec::new();
    for d in 0..devices {
        let spec = DeviceSpec {
            name: format!("pump-{d}"),
            unit: None,
            enabled: true,
            poll_ms: 1000,
            driver: DriverConfig::Sim(SimConfig::default()),
            security: Default::default(),
        };
        let device = store.upsert_device(tenant.id, &spec).await.expect("device");
        let tag = TagSpec {
            name: format!("temp-{d}"),
            unit: None,
            address: "sine:period=60,amplitude=1,offset=0".into(),
            data_type: DataType::F64,
            scale: 1.0,
            offset: 0.0,
            eng_unit: Some("°C".into()),
            deadband: 0.0,
            writable: false,
        };
        let tag = store
            .upsert_tag(tenant.id, device.id, &tag)
            .await
            .expect("tag");
        let rule = RuleSpec {
            name: "hot".into(),
            kind: RuleKind::Limit {
                limit: LimitKind::High,
                setpoint: 80.0,
                deadband: 5.0,
            },
            severity: Severity::High,
            message: None,
            enabled: true,
            on_delay_ms: 0,
            off_delay_ms: 0,
        };
        let rule = store
            .upsert_alarm_rule(tenant.id, tag.id, &rule)
            .await
            .expect("rule");
        rules.push(rule.id);
    }
    let world = TenantWorld::load(&*store, tenant).await.expect("world");
    Plant {
        store,
        world,
        rules,
        _dir: dir,
    }
}

pub(crate) async fn start(p: &Plant) -> ActorRef<AlertMsg> {
    let args = AlertArgs {
        shared: p.world.shared.clone(),
        store: p.store.clone(),
        devices: p.world.devices.clone(),
    };
    let (actor, _) = Actor::spawn(None, AlertStreamActor, args)
        .await
        .expect("alert stream");
    actor
}

fn batch(p: &Plant, device: usize, value: f64) -> Arc<SampleBatch> {
    let d = &p.world.devices[device];
    let now = Timestamp::now();
    Arc::new(SampleBatch {
        tenant: d.device.tenant,
        device: d.device.id,
        samples: vec![Sample {
            tag: d.tags[0].id,
            value: Value::F64(value),
            quality: Quality::Good,
            source_time: now,
            server_time: now,
        }],
    })
}

async fn command(
    actor: &ActorRef<AlertMsg>,
    rule: RuleId,
    command: Command,
) -> Result<AlarmState, AlarmCommandError> {
    let reply = actor
        .call(
            |reply| AlertMsg::Command {
                rule,
                command,
                user: "olga".into(),
                comment: None,
                reply,
            },
            Some(CALL),
        )
        .await
        .expect("the alert stream answers")
        .success_or("no reply")
        .expect("a reply");
    reply.map(|view| view.alarm.state)
}

/// Waits until the actor handled everything sent before (its mailbox is FIFO) and
/// its recorder wrote every transition.
pub(crate) async fn drain(actor: &ActorRef<AlertMsg>) {
    actor
        .call(AlertMsg::Flush, Some(CALL))
        .await
        .expect("the alert stream answers")
        .success_or("no reply")
        .expect("a reply")
        .expect("recorded");
}

/// The recorded transitions of `rule`, oldest first, as (from, to) names.
pub(crate) async fn history(store: &dyn Store, p: &Plant, rule: RuleId) -> Vec<(String, String)> {
    let filter = AlarmHistoryFilter {
        rule: Some(rule),
        ..AlarmHistoryFilter::default()
    };
    let mut records = store
        .alarm_history(p.world.shared.tenant.id, &filter, None, 10_000)
        .await
        .expect("history");
    records.reverse();
    records
        .into_iter()
        .map(|r| {
            (
                r.event.from.name().to_string(),
                r.event.alarm.state.name().to_string(),
            )
        })
        .collect()
}

fn pair(from: &str, to: &str) -> (String, String) {
    (from.to_string(), to.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_triggers_and_acknowledgements_make_one_alarm_each() {
    let p = plant(4).await;
    let actor = start(&p).await;
    let mut events = p.world.shared.alarm_events.subscribe();
    // 16 senders, 4 per device, each casting 250 batches above the limit (with dips
    // into the deadband that do not clear it), while 16 operators acknowledge.
    let mut tasks = Vec::new();
    for s in 0..16 {
        let actor = actor.clone();
        let batches: Vec<_> = (0..250)
            .map(|i| batch(&p, s % 4, if i % 2 == 0 { 90.0 + i as f64 } else { 76.0 }))
            .collect();
        tasks.push(tokio::spawn(async move {
            for b in batches {
                actor.cast(AlertMsg::Batch(b)).expect("cast");
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut acks = Vec::new();
    for o in 0..16 {
        let actor = actor.clone();
        let rule = p.rules[o % 4];
        acks.push(tokio::spawn(async move {
            // Until the alarm is up, there is nothing to acknowledge.
            loop {
                match command(&actor, rule, Command::Acknowledge).await {
                    Ok(state) => return Ok(state),
                    Err(AlarmCommandError::Engine(EngineError::State(
                        StateError::NothingToAcknowledge,
                    ))) => tokio::task::yield_now().await,
                    Err(e) => return Err(e),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    let mut accepted = 0;
    let mut refused = 0;
    for a in acks {
        match a.await.expect("operator") {
            Ok(AlarmState::Acked) => accepted += 1,
            Err(AlarmCommandError::Engine(EngineError::State(StateError::AlreadyAcknowledged))) => {
                refused += 1
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(
        (accepted, refused),
        (4, 12),
        "one acknowledgement per alarm"
    );
    drain(&actor).await;
    for &rule in &p.rules {
        assert_eq!(
            history(&*p.store, &p, rule).await,
            vec![pair("normal", "unacked"), pair("unacked", "acked")],
            "rule {rule}"
        );
        let view = p
            .world
            .shared
            .alarms
            .get(&rule)
            .map(|v| v.alarm.clone())
            .expect("view");
        assert_eq!(view.state, AlarmState::Acked);
        assert_eq!(view.acked_by.as_deref(), Some("olga"));
    }
    let mut published = 0;
    while events.try_recv().is_ok() {
        published += 1;
    }
    assert_eq!(published, 8, "every transition published once");
    actor.stop(None);
}

#[tokio::test]
async fn a_restarted_alert_stream_keeps_its_active_alarms() {
    let p = plant(2).await;
    let actor = start(&p).await;
    actor
        .cast(AlertMsg::Batch(batch(&p, 0, 95.0)))
        .expect("cast");
    actor
        .cast(AlertMsg::Batch(batch(&p, 1, 95.0)))
        .expect("cast");
    drain(&actor).await;
    assert_eq!(
        command(&actor, p.rules[1], Command::Acknowledge)
            .await
            .expect("ack"),
        AlarmState::Acked
    );
    actor.kill();
    tokio::time::sleep(Duration::from_millis(50)).await;
    p.world.shared.alarms.clear();

    let actor = start(&p).await;
    let state = |rule: RuleId| {
        p.world
            .shared
            .alarms
            .get(&rule)
            .map(|v| v.alarm.state.clone())
    };
    assert_eq!(state(p.rules[0]), Some(AlarmState::Unacked), "restored");
    assert_eq!(
        state(p.rules[1]),
        Some(AlarmState::Acked),
        "restored with its acknowledgement"
    );
    // Still above the limit: the same activation, nothing new.
    actor
        .cast(AlertMsg::Batch(batch(&p, 0, 99.0)))
        .expect("cast");
    // Back to normal: the acknowledged one clears, the other waits for an operator.
    actor
        .cast(AlertMsg::Batch(batch(&p, 1, 10.0)))
        .expect("cast");
    drain(&actor).await;
    assert_eq!(
        history(&*p.store, &p, p.rules[0]).await,
        vec![pair("normal", "unacked")]
    );
    assert_eq!(
        history(&*p.store, &p, p.rules[1]).await,
        vec![
            pair("normal", "unacked"),
            pair("unacked", "acked"),
            pair("acked", "normal")
        ]
    );
    let err = command(&actor, p.rules[1], Command::Acknowledge)
        .await
        .expect_err("normal");
    assert!(
        matches!(
            err,
            AlarmCommandError::Engine(EngineError::State(StateError::NothingToAcknowledge))
        ),
        "{err}"
    );
    actor.stop(None);
}

#[tokio::test]
async fn shelving_into_the_past_and_unknown_alarms_are_refused_and_change_nothing() {
    let p = plant(1).await;
    let actor = start(&p).await;
    let past = Command::Shelve {
        until: Timestamp(Timestamp::now().0 - 1_000_000),
        reason: "oops".into(),
    };
    let err = command(&actor, p.rules[0], past)
        .await
        .expect_err("the past");
    assert!(
        matches!(
            err,
            AlarmCommandError::Engine(EngineError::State(StateError::ShelveInPast))
        ),
        "{err}"
    );
    let err = command(&actor, RuleId(999_999), Command::Acknowledge)
        .await
        .expect_err("unknown");
    assert!(
        matches!(err, AlarmCommandError::Engine(EngineError::NotFound(_))),
        "{err}"
    );
    assert!(history(&*p.store, &p, p.rules[0]).await.is_empty());
    // A shelving that ends soon ends by itself, at a tick.
    let soon = Command::Shelve {
        until: Timestamp(Timestamp::now().0 + 300_000),
        reason: "calibration".into(),
    };
    assert!(matches!(
        command(&actor, p.rules[0], soon).await,
        Ok(AlarmState::Shelved { .. })
    ));
    actor
        .cast(AlertMsg::Batch(batch(&p, 0, 95.0)))
        .expect("cast");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let state = p
            .world
            .shared
            .alarms
            .get(&p.rules[0])
            .map(|v| v.alarm.state.clone());
        if state == Some(AlarmState::Unacked) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        history(&*p.store, &p, p.rules[0]).await,
        vec![pair("normal", "shelved"), pair("shelved", "unacked")]
    );
    actor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_is_away_transitions_queue_and_commands_are_refused() {
    use crate::common::{pg, proxy::TcpProxy};
    let Some((url, db)) = pg::fresh_database().await else {
        return;
    };
    storage::connect(&url, 1)
        .await
        .expect("connect")
        .migrate()
        .await
        .expect("migrate");
    let proxy = TcpProxy::start(pg::server_addr(&url).await).await;
    let store = storage::connect(&pg::with_host_port(&url, proxy.addr()), 2)
        .await
        .expect("through the proxy");
    let p = plant_in(store, 1, tempfile::tempdir().expect("dir")).await;
    let actor = start(&p).await;
    let rule = p.rules[0];
    actor
        .cast(AlertMsg::Batch(batch(&p, 0, 95.0)))
        .expect("cast");
    drain(&actor).await;

    proxy.cut().await;
    actor
        .cast(AlertMsg::Batch(batch(&p, 0, 10.0)))
        .expect("cast");
    let err = command(&actor, rule, Command::Acknowledge)
        .await
        .expect_err("store away");
    assert!(matches!(err, AlarmCommandError::Store(_)), "{err}");
    let state = p
        .world
        .shared
        .alarms
        .get(&rule)
        .map(|v| v.alarm.state.clone());
    assert_eq!(
        state,
        Some(AlarmState::RtnUnacked),
        "the process's transition applies, the refused command does not"
    );

    proxy.restore().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let flushed = actor
            .call(AlertMsg::Flush, Some(CALL))
            .await
            .expect("answer")
            .success_or("no reply")
            .expect("reply");
        if flushed.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "store never came back: {flushed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        history(&*p.store, &p, rule).await,
        vec![pair("normal", "unacked"), pair("unacked", "rtn_unacked")],
        "the queued transition was written, the refused one was not"
    );
    assert_eq!(
        command(&actor, rule, Command::Acknowledge)
            .await
            .expect("ack"),
        AlarmState::Normal
    );
    actor.stop(None);
    drop(p);
    db.drop_database().await;
}
