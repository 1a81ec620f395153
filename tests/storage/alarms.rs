//! Alarm rules, states, history and anomaly detections: upserted by (tag, name),
//! scoped by tenant, recorded all or nothing, read back as they were written.

use thermacore::alarms::{
    AlarmEvent, AlarmState, Anomaly, Condition, Detection, DetectorSpec, LimitKind, Method,
    RuleKind, RuleSpec, Severity, StoredAlarm,
};
use thermacore::domain::{QualityReason, TagId, Timestamp};
use thermacore::storage::{AlarmHistoryFilter, AnomalyFilter, Error, Store};

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
        .record_alarms(w.a.id, &[raise.clone(), shelve.clone()], &[])
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
    // The export streams the same transitions, oldest first, with the same filter.
    let exported: Vec<_> =
        super::collect(store.export_alarm_history(w.a.id, &AlarmHistoryFilter::default())).await;
    let mut oldest_first = history.clone();
    oldest_first.reverse();
    assert_eq!(exported, oldest_first);
    let one = super::collect(store.export_alarm_history(
        w.a.id,
        &AlarmHistoryFilter {
            rule: Some(r1.id),
            from: Some(Timestamp(1_500)),
            to: None,
        },
    ))
    .await;
    assert_eq!(one, history[..1]);
    assert!(
        super::collect(store.export_alarm_history(w.b.id, &AlarmHistoryFilter::default()))
            .await
            .is_empty()
    );
    assert!(
        store
            .alarm_history(w.b.id, &AlarmHistoryFilter::default(), None, 10)
            .await
            .expect("b")
            .is_empty()
    );
}

fn anomaly(rule: thermacore::domain::RuleId, tag: TagId, at: i64, confidence: f64) -> Anomaly {
    Anomaly {
        rule,
        tag,
        at: Timestamp(at),
        detection: Detection {
            method: Method::Iqr,
            value: 99.5,
            score: 6.0,
            confidence,
            expected: 50.25,
            lower: 40.0,
            upper: 60.0,
        },
    }
}

/// Detections: recorded with the transitions, of the tenant's own tags only, read
/// newest first in pages, filtered by tag, time and confidence, removed with the
/// history they judged.
pub async fn anomalies(store: &dyn Store, w: &World) {
    let kind = RuleKind::Anomaly(DetectorSpec {
        method: Method::Iqr,
        window: 30,
        threshold: 1.5,
    });
    let rule = store
        .upsert_alarm_rule(w.a.id, w.tags[0].id, &spec("odd", kind.clone()))
        .await
        .expect("anomaly rule");
    assert_eq!(
        store
            .alarm_rules(w.a.id)
            .await
            .expect("rules")
            .iter()
            .find(|r| r.id == rule.id)
            .map(|r| &r.spec.kind),
        Some(&kind),
        "the detector's settings round-trip"
    );
    let (t0, t1) = (w.tags[0].id, w.tags[1].id);
    let found = [
        anomaly(rule.id, t0, 10_000, 0.9),
        anomaly(rule.id, t0, 11_000, 0.2),
        anomaly(rule.id, t0, 11_000, 0.6),
        anomaly(rule.id, t1, 12_000, 0.9),
        // Another tenant's tag recorded under tenant A: left out.
        anomaly(rule.id, w.b_tag.id, 12_000, 0.9),
    ];
    store
        .record_alarms(w.a.id, &[], &found)
        .await
        .expect("record detections");
    let filter = |tags: Vec<TagId>, min_confidence| AnomalyFilter {
        tags,
        from: Timestamp(0),
        to: Timestamp(20_000),
        min_confidence,
    };
    let all = store
        .anomalies(w.a.id, &filter(vec![t0, t1, w.b_tag.id], None), None, 10)
        .await
        .expect("read");
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(all[0].anomaly, found[3], "newest first, as written");
    let order: Vec<(i64, f64)> = all
        .iter()
        .map(|r| (r.anomaly.at.0, r.anomaly.detection.confidence))
        .collect();
    assert_eq!(
        order,
        vec![(12_000, 0.9), (11_000, 0.6), (11_000, 0.2), (10_000, 0.9)]
    );
    // Pages: the cursor is (time, id), so equal times split cleanly.
    let first = store
        .anomalies(w.a.id, &filter(vec![t0], None), None, 2)
        .await
        .expect("page 1");
    let last = &first[1];
    let rest = store
        .anomalies(
            w.a.id,
            &filter(vec![t0], None),
            Some((last.anomaly.at, last.id)),
            10,
        )
        .await
        .expect("page 2");
    let ids: Vec<i64> = first.iter().chain(&rest).map(|r| r.id).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        3
    );
    let sure = store
        .anomalies(w.a.id, &filter(vec![t0], Some(0.5)), None, 10)
        .await
        .expect("confident");
    assert_eq!(sure.len(), 2);
    let window = AnomalyFilter {
        from: Timestamp(10_500),
        to: Timestamp(12_000),
        ..filter(vec![t0, t1], None)
    };
    assert_eq!(
        store
            .anomalies(w.a.id, &window, None, 10)
            .await
            .expect("range")
            .len(),
        2
    );
    assert!(
        store
            .anomalies(w.b.id, &filter(vec![w.b_tag.id, t0], None), None, 10)
            .await
            .expect("b")
            .is_empty()
    );
    // Retention takes the detections of the removed history.
    store
        .delete_history_before(w.a.id, Timestamp(11_500))
        .await
        .expect("retention");
    let kept = store
        .anomalies(w.a.id, &filter(vec![t0, t1], None), None, 10)
        .await
        .expect("after retention");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].anomaly.at, Timestamp(12_000));
}
