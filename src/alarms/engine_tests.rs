use super::*;
use crate::alarms::{LimitKind, RuleKind, RuleSpec};
use crate::domain::{Quality, TenantId, Value};

fn ms(v: i64) -> Timestamp {
    Timestamp(v * 1000)
}

fn rule(id: i64, tag: i64, kind: RuleKind, enabled: bool) -> Rule {
    Rule {
        id: RuleId(id),
        tenant: TenantId(1),
        tag: TagId(tag),
        spec: RuleSpec {
            name: format!("rule{id}"),
            kind,
            severity: Severity::High,
            message: Some("{tag} at {value} {eng_unit}".into()),
            enabled,
            on_delay_ms: 0,
            off_delay_ms: 0,
        },
    }
}

fn high(id: i64, tag: i64, setpoint: f64) -> Rule {
    let kind = RuleKind::Limit {
        limit: LimitKind::High,
        setpoint,
        deadband: 0.0,
    };
    rule(id, tag, kind, true)
}

fn tags(n: i64) -> HashMap<TagId, Arc<TagInfo>> {
    (1..=n)
        .map(|t| {
            let info = TagInfo {
                name: format!("t{t}"),
                eng_unit: "°C".into(),
                device: DeviceId(t),
                unit: None,
            };
            (TagId(t), Arc::new(info))
        })
        .collect()
}

fn sample(tag: i64, v: f64, t: i64) -> Sample {
    Sample {
        tag: TagId(tag),
        value: Value::F64(v),
        quality: Quality::Good,
        source_time: ms(t),
        server_time: ms(t),
    }
}

fn engine(rules: Vec<Rule>) -> Engine {
    let mut out = Vec::new();
    let e = Engine::new(
        rules,
        &tags(3),
        HashMap::new(),
        &HashSet::new(),
        ms(0),
        &mut out,
    );
    assert!(out.is_empty(), "nothing to suppress: {out:?}");
    e
}

fn states(out: &[AlarmEvent]) -> Vec<(i64, AlarmState)> {
    out.iter()
        .map(|e| (e.rule.0, e.alarm.state.clone()))
        .collect()
}

#[test]
fn samples_drive_the_rules_of_their_tag_only() {
    let mut e = engine(vec![high(1, 1, 50.0), high(2, 1, 80.0), high(3, 2, 50.0)]);
    let mut out = Vec::new();
    e.on_samples(
        &[sample(1, 60.0, 1), sample(3, 99.0, 1)],
        &mut out,
        &mut Vec::new(),
    );
    assert_eq!(states(&out), vec![(1, AlarmState::Unacked)]);
    assert_eq!(out[0].alarm.message, "t1 at 60 °C");
    assert_eq!(out[0].alarm.active_since, Some(ms(1)));
    assert_eq!(out[0].from, AlarmState::Normal);
    out.clear();
    e.on_samples(
        &[sample(1, 90.0, 2), sample(1, 10.0, 3)],
        &mut out,
        &mut Vec::new(),
    );
    assert_eq!(
        out[1].alarm.message, "t1 at 60 °C",
        "a clear keeps the message of its activation"
    );
    assert_eq!(out[1].alarm.value, Some(10.0));
    assert_eq!(
        states(&out),
        vec![
            (2, AlarmState::Unacked),
            (1, AlarmState::RtnUnacked),
            (2, AlarmState::RtnUnacked)
        ]
    );
}

#[test]
fn an_operator_command_is_planned_then_committed() {
    let mut e = engine(vec![high(1, 1, 50.0)]);
    let mut out = Vec::new();
    e.on_samples(&[sample(1, 60.0, 1)], &mut out, &mut Vec::new());
    let ack = e
        .command(
            RuleId(1),
            &Command::Acknowledge,
            "olga",
            Some("seen".into()),
            ms(2),
        )
        .expect("an active alarm takes an acknowledgement")
        .expect("a transition");
    assert_eq!(ack.alarm.state, AlarmState::Acked);
    assert_eq!(ack.alarm.acked_by.as_deref(), Some("olga"));
    assert_eq!(ack.comment.as_deref(), Some("seen"));
    // Planned, not applied: the engine still says Unacked until committed.
    assert_eq!(
        e.view(RuleId(1)).map(|v| v.alarm.state),
        Some(AlarmState::Unacked)
    );
    e.commit(&ack);
    assert_eq!(
        e.command(RuleId(1), &Command::Acknowledge, "olga", None, ms(3)),
        Err(EngineError::State(StateError::AlreadyAcknowledged))
    );
    assert_eq!(
        e.command(RuleId(9), &Command::Acknowledge, "olga", None, ms(3)),
        Err(EngineError::NotFound(RuleId(9)))
    );
    e.on_samples(&[sample(1, 10.0, 4)], &mut out, &mut Vec::new());
    assert_eq!(
        out.last().map(|e| e.alarm.state.clone()),
        Some(AlarmState::Normal)
    );
}

#[test]
fn a_shelving_ends_at_its_time_and_lands_where_the_condition_is() {
    let mut e = engine(vec![high(1, 1, 50.0)]);
    let mut out = Vec::new();
    let shelve = Command::Shelve {
        until: ms(1000),
        reason: "sensor swap".into(),
    };
    let ev = e
        .command(RuleId(1), &shelve, "olga", None, ms(0))
        .unwrap()
        .unwrap();
    e.commit(&ev);
    e.on_samples(&[sample(1, 60.0, 10)], &mut out, &mut Vec::new());
    assert!(out.is_empty(), "shelved: no transition");
    assert_eq!(e.next_deadline(), Some(ms(1000)));
    e.tick(ms(999), &mut out);
    assert!(out.is_empty());
    e.tick(ms(1000), &mut out);
    assert_eq!(states(&out), vec![(1, AlarmState::Unacked)]);
    assert_eq!(out[0].alarm.active_since, Some(ms(1000)));
}

#[test]
fn disabled_rules_and_devices_out_of_service_are_suppressed_and_come_back() {
    let rules = vec![
        rule(1, 1, RuleKind::Digital { state: true }, false),
        high(2, 2, 50.0),
        high(3, 3, 50.0),
    ];
    let mut out = Vec::new();
    let off: HashSet<DeviceId> = [DeviceId(2)].into();
    let mut e = Engine::new(
        rules.clone(),
        &tags(3),
        HashMap::new(),
        &off,
        ms(0),
        &mut out,
    );
    assert_eq!(
        states(&out),
        vec![
            (
                1,
                AlarmState::Suppressed {
                    reason: "rule disabled".into()
                }
            ),
            (
                2,
                AlarmState::Suppressed {
                    reason: "device out of service".into()
                }
            ),
        ]
    );
    let stored: HashMap<_, _> = e.views().map(|v| (v.rule.id, v.alarm)).collect();
    out.clear();
    e.on_samples(
        &[sample(1, 1.0, 1), sample(2, 99.0, 1)],
        &mut out,
        &mut Vec::new(),
    );
    assert!(out.is_empty(), "suppressed alarms stay quiet");
    // Restarted with the device back in service: rule 2 comes back Normal.
    let e = Engine::new(rules, &tags(3), stored, &HashSet::new(), ms(5), &mut out);
    assert_eq!(states(&out), vec![(2, AlarmState::Normal)]);
    assert_eq!(e.len(), 3);
}

#[test]
fn a_restored_active_alarm_is_not_raised_again() {
    let mut e = engine(vec![high(1, 1, 50.0)]);
    let mut out = Vec::new();
    e.on_samples(&[sample(1, 60.0, 1)], &mut out, &mut Vec::new());
    let stored: HashMap<_, _> = e.views().map(|v| (v.rule.id, v.alarm)).collect();
    out.clear();
    let mut e = Engine::new(
        vec![high(1, 1, 50.0)],
        &tags(1),
        stored,
        &HashSet::new(),
        ms(2),
        &mut out,
    );
    e.on_samples(&[sample(1, 70.0, 3)], &mut out, &mut Vec::new());
    assert!(out.is_empty(), "still the same activation: {out:?}");
    e.on_samples(&[sample(1, 10.0, 4)], &mut out, &mut Vec::new());
    assert_eq!(states(&out), vec![(1, AlarmState::RtnUnacked)]);
}

#[test]
fn rules_of_unknown_tags_are_left_out() {
    let e = engine(vec![high(1, 1, 50.0), high(2, 42, 50.0)]);
    assert_eq!(e.len(), 1);
    assert!(e.view(RuleId(2)).is_none());
}

#[test]
fn a_delayed_activation_names_the_latest_value() {
    let mut slow = high(1, 1, 50.0);
    slow.spec.on_delay_ms = 1000;
    let mut e = engine(vec![slow]);
    let mut out = Vec::new();
    e.on_samples(
        &[
            sample(1, 40.0, 0),
            sample(1, 60.0, 10),
            sample(1, 65.0, 500),
        ],
        &mut out,
        &mut Vec::new(),
    );
    assert!(out.is_empty(), "still within the on-delay");
    e.tick(ms(1010), &mut out);
    assert_eq!(states(&out), vec![(1, AlarmState::Unacked)]);
    assert_eq!(out[0].alarm.message, "t1 at 65 °C");
    assert_eq!(out[0].alarm.value, Some(65.0));
}

#[test]
fn an_anomaly_rule_records_each_detection_and_raises_its_alarm() {
    use crate::alarms::{DetectorSpec, Method};
    let kind = RuleKind::Anomaly(DetectorSpec {
        method: Method::MovingAverage,
        window: 4,
        threshold: 5.0,
    });
    let mut anomaly = rule(1, 1, kind, true);
    anomaly.spec.message = None;
    let mut e = engine(vec![anomaly, high(2, 1, 1000.0)]);
    let (mut out, mut found) = (Vec::new(), Vec::new());
    let warm: Vec<Sample> = (0..4).map(|t| sample(1, 10.0, t)).collect();
    e.on_samples(&warm, &mut out, &mut found);
    assert!(out.is_empty() && found.is_empty(), "warming up");
    let mut bad = sample(1, 99.0, 4);
    bad.quality = Quality::Bad(QualityReason::CommLost);
    e.on_samples(&[bad, sample(1, 30.0, 5)], &mut out, &mut found);
    assert_eq!(found.len(), 1, "the Bad sample is not judged: {found:?}");
    assert_eq!(
        (found[0].rule, found[0].tag, found[0].at),
        (RuleId(1), TagId(1), ms(5))
    );
    assert_eq!(found[0].detection.score, 20.0);
    assert_eq!(states(&out), vec![(1, AlarmState::Unacked)]);
    assert_eq!(out[0].alarm.message, "t1 anomalous (moving_average): 30 °C");
    // The next normal value clears it: returned to normal, waiting for its ack.
    e.on_samples(&[sample(1, 12.0, 6)], &mut out, &mut found);
    assert_eq!(found.len(), 1);
    assert_eq!(
        out.last().map(|e| e.alarm.state.clone()),
        Some(AlarmState::RtnUnacked)
    );
}

#[test]
fn a_disabled_anomaly_rule_keeps_no_detections() {
    use crate::alarms::{DetectorSpec, Method};
    let kind = RuleKind::Anomaly(DetectorSpec {
        method: Method::ZScore,
        window: 4,
        threshold: 3.0,
    });
    let mut out = Vec::new();
    let mut e = Engine::new(
        vec![rule(1, 1, kind, false)],
        &tags(1),
        HashMap::new(),
        &HashSet::new(),
        ms(0),
        &mut out,
    );
    assert_eq!(
        states(&out),
        vec![(
            1,
            AlarmState::Suppressed {
                reason: "rule disabled".into()
            }
        )]
    );
    let mut found = Vec::new();
    let series: Vec<Sample> = [1.0, 2.0, 1.0, 2.0, 500.0]
        .iter()
        .enumerate()
        .map(|(t, &v)| sample(1, v, t as i64))
        .collect();
    e.on_samples(&series, &mut out, &mut found);
    assert!(found.is_empty(), "{found:?}");
}
