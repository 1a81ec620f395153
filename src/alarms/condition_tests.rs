use super::*;
use crate::alarms::{LimitKind, Severity};
use crate::domain::{TagId, Value};

fn ms(v: i64) -> Timestamp {
    Timestamp(v * 1000)
}

fn spec(kind: RuleKind, on: u64, off: u64) -> RuleSpec {
    RuleSpec {
        name: "r".into(),
        kind,
        severity: Severity::High,
        message: None,
        enabled: true,
        on_delay_ms: on,
        off_delay_ms: off,
    }
}

fn check(kind: RuleKind, on: u64, off: u64) -> Check {
    Check::new(&spec(kind, on, off), Condition::Clear, ms(0))
}

fn high(deadband: f64, on: u64, off: u64) -> Check {
    check(
        RuleKind::Limit {
            limit: LimitKind::High,
            setpoint: 80.0,
            deadband,
        },
        on,
        off,
    )
}

fn sample_q(value: Value, quality: Quality, t: i64) -> Sample {
    Sample {
        tag: TagId(1),
        value,
        quality,
        source_time: ms(t),
        server_time: ms(t),
    }
}

/// A Good numeric sample at `t` ms.
fn at(c: &mut Check, v: f64, t: i64) -> Option<Condition> {
    c.sample(&sample_q(Value::F64(v), Quality::Good, t))
}

#[test]
fn a_high_limit_trips_above_and_clears_below_the_deadband() {
    let mut c = high(5.0, 0, 0);
    assert_eq!(
        at(&mut c, 80.0, 0),
        None,
        "at the setpoint is not beyond it"
    );
    assert_eq!(at(&mut c, 80.1, 1), Some(Condition::Active));
    assert_eq!(at(&mut c, 90.0, 2), None);
    // Inside the deadband: still active.
    assert_eq!(at(&mut c, 76.0, 3), None);
    assert_eq!(c.condition(), Condition::Active);
    assert_eq!(at(&mut c, 74.9, 4), Some(Condition::Clear));
    // Back into the deadband from below: still clear.
    assert_eq!(at(&mut c, 79.0, 5), None);
    assert_eq!(c.condition(), Condition::Clear);
}

#[test]
fn low_limits_mirror_high_ones() {
    let mut c = check(
        RuleKind::Limit {
            limit: LimitKind::LowLow,
            setpoint: 10.0,
            deadband: 2.0,
        },
        0,
        0,
    );
    assert_eq!(at(&mut c, 9.0, 0), Some(Condition::Active));
    assert_eq!(at(&mut c, 11.5, 1), None);
    assert_eq!(at(&mut c, 12.5, 2), Some(Condition::Clear));
}

#[test]
fn the_on_delay_ignores_a_short_excursion() {
    let mut c = high(0.0, 1000, 0);
    assert_eq!(at(&mut c, 85.0, 0), None);
    assert_eq!(c.deadline(), Some(ms(1000)));
    assert_eq!(c.tick(ms(999)), None);
    // Back before the delay ran out: nothing was raised and nothing is pending.
    assert_eq!(at(&mut c, 70.0, 999), None);
    assert_eq!(c.deadline(), None);
    assert_eq!(c.tick(ms(2000)), None);
    // Held long enough: active when the delay runs out, by tick or by sample.
    assert_eq!(at(&mut c, 85.0, 3000), None);
    assert_eq!(c.tick(ms(4000)), Some(Condition::Active));
    assert_eq!(c.condition(), Condition::Active);
}

#[test]
fn the_off_delay_holds_the_alarm_through_a_short_return() {
    let mut c = high(0.0, 0, 2000);
    assert_eq!(at(&mut c, 85.0, 0), Some(Condition::Active));
    assert_eq!(at(&mut c, 70.0, 100), None);
    assert_eq!(
        at(&mut c, 85.0, 1500),
        None,
        "back in alarm: the clear is off"
    );
    assert_eq!(c.tick(ms(5000)), None);
    assert_eq!(at(&mut c, 70.0, 6000), None);
    assert_eq!(at(&mut c, 70.0, 8000), Some(Condition::Clear));
}

#[test]
fn not_a_number_and_bad_samples_change_no_limit() {
    let mut c = high(0.0, 0, 0);
    assert_eq!(at(&mut c, f64::NAN, 0), None);
    assert_eq!(at(&mut c, 90.0, 1), Some(Condition::Active));
    assert_eq!(at(&mut c, f64::NAN, 2), None);
    let bad_low = sample_q(Value::F64(0.0), Quality::Bad(QualityReason::CommLost), 3);
    assert_eq!(c.sample(&bad_low), None);
    let text = sample_q(Value::Str("x".into()), Quality::Good, 4);
    assert_eq!(c.sample(&text), None);
    assert_eq!(c.condition(), Condition::Active);
}

#[test]
fn a_restored_condition_is_not_reported_again() {
    let s = spec(
        RuleKind::Limit {
            limit: LimitKind::High,
            setpoint: 80.0,
            deadband: 0.0,
        },
        0,
        0,
    );
    let mut c = Check::new(&s, Condition::Active, ms(0));
    assert_eq!(at(&mut c, 90.0, 1), None, "still active: nothing new");
    assert_eq!(at(&mut c, 70.0, 2), Some(Condition::Clear));
}

#[test]
fn rate_of_change_compares_consecutive_samples_by_source_time() {
    let mut c = check(
        RuleKind::RateOfChange {
            max_per_second: 2.0,
        },
        0,
        0,
    );
    assert_eq!(at(&mut c, 10.0, 0), None, "one sample has no rate");
    assert_eq!(at(&mut c, 11.0, 1000), None, "1/s");
    assert_eq!(
        at(&mut c, 8.0, 2000),
        Some(Condition::Active),
        "3/s downwards"
    );
    // The same source time again gives no rate and changes nothing.
    assert_eq!(at(&mut c, 100.0, 2000), None);
    assert_eq!(at(&mut c, 9.0, 3000), Some(Condition::Clear));
}

#[test]
fn digital_state_alarms_on_the_configured_state() {
    let mut c = check(RuleKind::Digital { state: true }, 0, 0);
    let b = |v: bool, t: i64| sample_q(Value::Bool(v), Quality::Good, t);
    assert_eq!(c.sample(&b(false, 0)), None);
    assert_eq!(c.sample(&b(true, 1)), Some(Condition::Active));
    assert_eq!(c.sample(&b(true, 2)), None);
    assert_eq!(c.sample(&b(false, 3)), Some(Condition::Clear));
    let mut inverted = check(RuleKind::Digital { state: false }, 0, 0);
    assert_eq!(inverted.sample(&b(false, 0)), Some(Condition::Active));
}

#[test]
fn quality_rules_follow_bad_quality_and_its_reasons() {
    let mut any = check(RuleKind::Quality { reasons: vec![] }, 0, 0);
    let mut comm = check(
        RuleKind::Quality {
            reasons: vec![QualityReason::CommLost],
        },
        0,
        0,
    );
    let q = |quality: Quality, t: i64| sample_q(Value::F64(1.0), quality, t);
    let flag = q(Quality::Bad(QualityReason::DeviceFlag), 0);
    assert_eq!(any.sample(&flag), Some(Condition::Active));
    assert_eq!(comm.sample(&flag), None, "not a communication loss");
    let lost = q(Quality::Bad(QualityReason::CommLost), 1);
    assert_eq!(comm.sample(&lost), Some(Condition::Active));
    let uncertain = q(Quality::Uncertain(QualityReason::LastUsable), 2);
    assert_eq!(
        any.sample(&uncertain),
        Some(Condition::Clear),
        "uncertain is not bad"
    );
    assert_eq!(comm.sample(&q(Quality::Good, 3)), Some(Condition::Clear));
}

#[test]
fn a_stale_rule_trips_when_no_usable_update_comes_within_the_window() {
    let mut c = check(RuleKind::Stale { after_ms: 5000 }, 0, 0);
    assert_eq!(c.deadline(), Some(ms(5000)), "counted from the start");
    assert_eq!(at(&mut c, 1.0, 3000), None);
    assert_eq!(c.deadline(), Some(ms(8000)));
    assert_eq!(c.tick(ms(7999)), None);
    // A Bad sample is no update.
    let bad = sample_q(Value::F64(1.0), Quality::Bad(QualityReason::CommLost), 7500);
    assert_eq!(c.sample(&bad), None);
    assert_eq!(c.tick(ms(8000)), Some(Condition::Active));
    assert_eq!(at(&mut c, 2.0, 9000), Some(Condition::Clear));
}
