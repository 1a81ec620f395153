//! Alarm rules, states and history: upserted by (tag, name), scoped by tenant, recorded
//! all or nothing, read back as they were written.

use thermacore::alarms::{
    AlarmEvent, AlarmState, Condition, LimitKind, RuleKind, RuleSpec, Severity, StoredAlarm,
};
use thermacore::domain::{QualityReason, Timestamp};
use thermacore::storage::{AlarmHistoryFilter, Error, Store};

use super::world::World;

fn spec(name: &str, kind: RuleKind) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        kind,
        severity: Severity::High,
        message: Some("{tag} high".into()),
        enabled: true,
        on_delay_ms: 500,
        off_delay_ms: 0,
    }
}

fn alarm(state: AlarmState, condition: Condition, at: i64) -> StoredAlarm {
    StoredAlarm {
        state,
        condition,
        since: Timestamp(at),
        active_since: Some(Timestamp(1_000)),
        value: Some(81.5),
        message: "boiler high".into(),
        acked_by: None,
    }
}

pub async fn alarms(store: &dyn Store, w: &World) {
    let high = spec(
        "high",
        RuleKind::Limit {
            limit: LimitKind::High,
            setpoint: 80.0,
            deadband: 2.0,
        },
    );
    let comm = spec(
        "comm",
        RuleKind::Quality {
            reasons: vec![QualityReason::CommLost],
        },
    );
    let r1 = store
        .upsert_alarm_rule(w.a.id, w.tags[0].id, &high)
        .await
        .expect("rule");
    let r2 = store
        .upsert_alarm_rule(w.a.id, w.tags[0].id, &comm)
        .await
        .expect("second rule on the tag");
    let changed = RuleSpec {
        severity: Severity::Critical,
        ..high.clone()
    };
    let again = store
        .upsert_alarm_rule(w.a.id, w.tags[0].id, &changed)
        .await
        .expect("update by name");
    assert_eq!(again.id, r1.id);
    let other = store
        .upsert_alarm_rule(w.a.id, w.b_tag.id, &high)
        .await
        .expect_err("tenant B's tag");
    assert!(matches!(other, Error::NotFound(_)), "{other:?}");
    let rules = store.alarm_rules(w.a.id).await.expect("rules");
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].spec, changed);
    assert_eq!(rules[1], r2);
    assert!(store.alarm_rules(w.b.id).await.expect("b").is_empty());

    let raise = AlarmEvent {
        rule: r1.id,
        tag: r1.tag,
        severity: Severity::Critical,
        from: AlarmState::Normal,
        alarm: alarm(AlarmState::Unacked, Condition::Active, 1_000),
        user: None,
        comment: None,
    };
    let until = Timestamp(9_000_000);
    let shelve = AlarmEvent {
        from: AlarmState::Unacked,
        alarm: alarm(
            AlarmState::Shelved {
                until,
                reason: "maintenance".into(),
            },
            Condition::Active,
            2_000,
        ),
        user: Some("olga".into()),
        comment: Some("sensor swap".into()),
        ..raise.clone()
    };
    store
        .record_alarm_events(w.a.id, &[raise.clone(), shelve.clone()])
        .await
        .expect("record");
    let states = store.alarm_states(w.a.id).await.expect("states");
    assert_eq!(states.len(), 1);
    assert_eq!(
        states.get(&r1.id),
        Some(&shelve.alarm),
        "the last state counts"
    );
    assert!(store.alarm_states(w.b.id).await.expect("b").is_empty());

    let history = store
        .alarm_history(w.a.id, &AlarmHistoryFilter::default(), None, 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 2);
    assert!(history[0].id > history[1].id, "newest first");
    let newest = &history[0].event;
    assert_eq!(newest.user.as_deref(), Some("olga"));
    assert_eq!(newest.comment.as_deref(), Some("sensor swap"));
    assert_eq!(newest.alarm.state, shelve.alarm.state);
    assert_eq!(newest.from, AlarmState::Unacked);
    assert_eq!(newest.alarm.since, Timestamp(2_000));
    let page = store
        .alarm_history(
            w.a.id,
            &AlarmHistoryFilter {
                rule: Some(r1.id),
                from: Some(Timestamp(500)),
                to: Some(Timestamp(1_500)),
            },
            None,
            10,
        )
        .await
        .expect("filtered");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].event.alarm.state, AlarmState::Unacked);
    let older = store
        .alarm_history(
            w.a.id,
            &AlarmHistoryFilter::default(),
            Some(history[0].id),
            10,
        )
        .await
        .expect("next page");
    assert_eq!(older.len(), 1);
    assert!(
        store
            .alarm_history(w.b.id, &AlarmHistoryFilter::default(), None, 10)
            .await
            .expect("b")
            .is_empty()
    );
}
