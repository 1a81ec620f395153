use super::*;
use crate::alarms::{AlarmEvent, AlarmState, StoredAlarm};

const MIN: i64 = MINUTE_US;

fn event(id: i64, rule: i64, at: i64, active: bool, state: AlarmState) -> AlarmEventRecord {
    AlarmEventRecord {
        id,
        event: AlarmEvent {
            rule: RuleId(rule),
            tag: TagId(rule * 10),
            severity: if rule == 1 {
                Severity::High
            } else {
                Severity::Low
            },
            from: AlarmState::Normal,
            alarm: StoredAlarm {
                state,
                condition: if active {
                    Condition::Active
                } else {
                    Condition::Clear
                },
                since: Timestamp(at),
                active_since: None,
                value: None,
                message: String::new(),
                acked_by: None,
            },
            user: None,
            comment: None,
        },
    }
}

fn timeline(events: &[AlarmEventRecord], from: i64, to: i64) -> Vec<Activity> {
    let mut t = Timeline::new(Timestamp(from), Timestamp(to));
    for e in events {
        t.add(e);
    }
    t.finish()
}

#[test]
fn activations_and_active_time_follow_the_condition_not_the_state() {
    let events = [
        // rule 1: active before the range, acknowledged in it, clear at 5 min
        event(1, 1, -10 * MIN, true, AlarmState::Unacked),
        event(2, 1, 2 * MIN, true, AlarmState::Acked),
        event(3, 1, 5 * MIN, false, AlarmState::Normal),
        // again at 8 min, shelved (still active) at 9, clear at 12
        event(4, 1, 8 * MIN, true, AlarmState::Unacked),
        event(5, 1, 9 * MIN, true, AlarmState::Normal),
        event(6, 1, 12 * MIN, false, AlarmState::Normal),
        // rule 2: active at 30 min until the end of the range
        event(7, 2, 30 * MIN, true, AlarmState::Unacked),
        // after the range: ignored
        event(8, 2, 90 * MIN, false, AlarmState::RtnUnacked),
    ];
    let a = timeline(&events, 0, 60 * MIN);
    assert_eq!(a.len(), 2);
    assert_eq!(
        a[0].activations,
        [8 * MIN],
        "the one before the range is not counted"
    );
    assert_eq!(a[0].active_us, 5 * MIN + 4 * MIN);
    assert_eq!(a[0].active_since, None);
    assert_eq!(a[1].activations, [30 * MIN]);
    assert_eq!(a[1].active_us, 30 * MIN);
    assert_eq!(a[1].active_since, Some(30 * MIN));
    let m = metrics(&a, Timestamp(0), Timestamp(60 * MIN));
    assert_eq!(m.activations, 2);
    assert_eq!(m.any_active_us, 9 * MIN + 30 * MIN);
    assert!((m.per_10_minutes - 2.0 / 6.0).abs() < 1e-12);
    let sev: HashMap<Severity, u64> = m.by_severity.iter().copied().collect();
    assert_eq!((sev[&Severity::High], sev[&Severity::Low]), (1, 1));
}

#[test]
fn chattering_floods_top_and_standing_alarms_are_found() {
    let mut events = Vec::new();
    let mut id = 0;
    let mut push = |rule: i64, at: i64, active: bool| {
        id += 1;
        events.push(event(id, rule, at, active, AlarmState::Unacked));
    };
    // rule 3 chatters: on/off every 10 s for 2 minutes from 100 min: 12 activations,
    // 6 in any minute.
    for k in 0..12 {
        push(3, 100 * MIN + k * 10_000_000, true);
        push(3, 100 * MIN + k * 10_000_000 + 5_000_000, false);
    }
    // rule 4: once an hour, never chattering.
    for h in 0..5 {
        push(4, h * 60 * MIN, true);
        push(4, h * 60 * MIN + MIN, false);
    }
    // rule 5: active since 30 hours before the end, never cleared: standing.
    push(5, -25 * 60 * MIN, true);
    events.sort_by_key(|e| e.event.alarm.since);
    let (from, to) = (0, 5 * 60 * MIN);
    let a = timeline(&events, from, to);
    let m = metrics(&a, Timestamp(from), Timestamp(to));
    assert_eq!(m.activations, 17);
    assert_eq!(m.peak_10_minutes, 12);
    assert_eq!(m.flood_intervals, 1, "12 in one 10-minute interval");
    assert!((m.flood_share - 1.0 / 30.0).abs() < 1e-12);
    assert_eq!(
        m.top
            .iter()
            .map(|f| (f.rule.0, f.activations))
            .collect::<Vec<_>>(),
        [(3, 12), (4, 5)]
    );
    assert_eq!(m.chattering.len(), 1);
    assert_eq!(
        (m.chattering[0].rule.0, m.chattering[0].most_in_a_minute),
        (3, 6)
    );
    assert_eq!(m.standing.len(), 1);
    assert_eq!(m.standing[0].rule.0, 5);
    assert_eq!(m.standing[0].active_us, 30 * 60 * MIN);
    assert_eq!(m.any_active_us, to - from, "rule 5 was active throughout");
}

#[test]
fn the_top_list_is_capped_and_the_densest_window_is_exact() {
    let mut events = Vec::new();
    for rule in 1..=15 {
        for k in 0..rule {
            let at = k * 20 * MIN;
            events.push(event(rule * 100 + k, rule, at, true, AlarmState::Unacked));
            events.push(event(
                rule * 100 + k + 50,
                rule,
                at + MIN,
                false,
                AlarmState::Normal,
            ));
        }
    }
    events.sort_by_key(|e| (e.event.alarm.since, e.id));
    let a = timeline(&events, 0, 600 * MIN);
    let m = metrics(&a, Timestamp(0), Timestamp(600 * MIN));
    assert_eq!(m.top.len(), TOP);
    assert_eq!(m.top[0].rule.0, 15);
    assert_eq!(m.top[9].rule.0, 6);
    assert_eq!(densest(&[0, 5, 9, 10, 19], 10), 3);
    assert_eq!(union_us(&mut [(5, 10), (0, 3), (2, 6), (20, 21)]), 11);
}
