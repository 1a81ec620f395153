use super::*;

fn ms(v: i64) -> Timestamp {
    Timestamp(v * 1000)
}

fn high(deadband: f64, on: u64, off: u64) -> LimitCheck {
    LimitCheck::new(Limit {
        kind: LimitKind::High,
        setpoint: 80.0,
        deadband,
        on_delay_ms: on,
        off_delay_ms: off,
    })
    .expect("a valid limit")
}

#[test]
fn a_high_limit_trips_above_and_clears_below_the_deadband() {
    let mut c = high(5.0, 0, 0);
    assert_eq!(
        c.sample(80.0, ms(0)),
        None,
        "at the setpoint is not beyond it"
    );
    assert_eq!(c.sample(80.1, ms(1)), Some(Condition::Active));
    assert_eq!(c.sample(90.0, ms(2)), None);
    // Inside the deadband: still active.
    assert_eq!(c.sample(76.0, ms(3)), None);
    assert_eq!(c.condition(), Condition::Active);
    assert_eq!(c.sample(74.9, ms(4)), Some(Condition::Clear));
    // Back into the deadband from below: still clear.
    assert_eq!(c.sample(79.0, ms(5)), None);
    assert_eq!(c.condition(), Condition::Clear);
}

#[test]
fn low_limits_mirror_high_ones() {
    let mut c = LimitCheck::new(Limit {
        kind: LimitKind::LowLow,
        setpoint: 10.0,
        deadband: 2.0,
        on_delay_ms: 0,
        off_delay_ms: 0,
    })
    .expect("a valid limit");
    assert_eq!(c.sample(9.0, ms(0)), Some(Condition::Active));
    assert_eq!(c.sample(11.5, ms(1)), None);
    assert_eq!(c.sample(12.5, ms(2)), Some(Condition::Clear));
}

#[test]
fn the_on_delay_ignores_a_short_excursion() {
    let mut c = high(0.0, 1000, 0);
    assert_eq!(c.sample(85.0, ms(0)), None);
    assert_eq!(c.deadline(), Some(ms(1000)));
    assert_eq!(c.tick(ms(999)), None);
    // Back before the delay ran out: nothing was raised and nothing is pending.
    assert_eq!(c.sample(70.0, ms(999)), None);
    assert_eq!(c.deadline(), None);
    assert_eq!(c.tick(ms(2000)), None);
    // Held long enough: active when the delay runs out, by tick or by sample.
    assert_eq!(c.sample(85.0, ms(3000)), None);
    assert_eq!(c.tick(ms(4000)), Some(Condition::Active));
    assert_eq!(c.condition(), Condition::Active);
}

#[test]
fn the_off_delay_holds_the_alarm_through_a_short_return() {
    let mut c = high(0.0, 0, 2000);
    assert_eq!(c.sample(85.0, ms(0)), Some(Condition::Active));
    assert_eq!(c.sample(70.0, ms(100)), None);
    assert_eq!(
        c.sample(85.0, ms(1500)),
        None,
        "back in alarm: the clear is off"
    );
    assert_eq!(c.tick(ms(5000)), None);
    assert_eq!(c.sample(70.0, ms(6000)), None);
    assert_eq!(c.sample(70.0, ms(8000)), Some(Condition::Clear));
}

#[test]
fn not_a_number_changes_nothing() {
    let mut c = high(0.0, 0, 0);
    assert_eq!(c.sample(f64::NAN, ms(0)), None);
    assert_eq!(c.sample(90.0, ms(1)), Some(Condition::Active));
    assert_eq!(c.sample(f64::NAN, ms(2)), None);
    assert_eq!(c.condition(), Condition::Active);
}

#[test]
fn settings_that_make_no_limit_are_refused() {
    let l = Limit {
        kind: LimitKind::High,
        setpoint: 1.0,
        deadband: 0.0,
        on_delay_ms: 0,
        off_delay_ms: 0,
    };
    assert!(matches!(
        LimitCheck::new(Limit {
            deadband: -1.0,
            ..l
        }),
        Err(LimitError::Deadband(_))
    ));
    assert!(matches!(
        LimitCheck::new(Limit {
            setpoint: f64::INFINITY,
            ..l
        }),
        Err(LimitError::Setpoint(_))
    ));
}
