use super::*;

const ACTIVE: Condition = Condition::Active;
const CLEAR: Condition = Condition::Clear;

fn t(s: i64) -> Timestamp {
    Timestamp(s * 1_000_000)
}

fn shelved(until: i64) -> AlarmState {
    AlarmState::Shelved {
        until: t(until),
        reason: "maintenance".into(),
    }
}

fn shelve(until: i64) -> Command {
    Command::Shelve {
        until: t(until),
        reason: "maintenance".into(),
    }
}

/// The state after `command`, or the same state when nothing changed.
fn next(from: &AlarmState, command: Command, c: Condition) -> AlarmState {
    match from.apply(&command, c, t(10)) {
        Ok(Some(tr)) => {
            assert_eq!(&tr.from, from);
            assert_eq!(tr.at, t(10));
            assert_ne!(&tr.to, from, "a transition changes the state");
            tr.to
        }
        Ok(None) => from.clone(),
        Err(e) => panic!("{from:?} {command:?}: {e}"),
    }
}

fn refused(from: &AlarmState, command: Command) -> StateError {
    from.apply(&command, ACTIVE, t(10))
        .expect_err("the command is refused")
}

#[test]
fn the_condition_drives_the_isa_cycle() {
    use AlarmState::*;
    // Acknowledged while active, then clears.
    assert_eq!(next(&Normal, Command::Evaluate(ACTIVE), ACTIVE), Unacked);
    assert_eq!(next(&Unacked, Command::Acknowledge, ACTIVE), Acked);
    assert_eq!(next(&Acked, Command::Evaluate(CLEAR), CLEAR), Normal);
    // Clears first, then acknowledged.
    assert_eq!(next(&Unacked, Command::Evaluate(CLEAR), CLEAR), RtnUnacked);
    assert_eq!(next(&RtnUnacked, Command::Acknowledge, CLEAR), Normal);
    // Comes back before anyone acknowledged it.
    assert_eq!(
        next(&RtnUnacked, Command::Evaluate(ACTIVE), ACTIVE),
        Unacked
    );
}

#[test]
fn a_condition_that_stays_changes_nothing() {
    use AlarmState::*;
    for (s, c) in [
        (Normal, CLEAR),
        (Unacked, ACTIVE),
        (Acked, ACTIVE),
        (RtnUnacked, CLEAR),
        (shelved(20), ACTIVE),
        (shelved(20), CLEAR),
    ] {
        assert_eq!(s.apply(&Command::Evaluate(c), c, t(10)), Ok(None), "{s:?}");
    }
}

#[test]
fn acknowledging_what_needs_no_acknowledgement_is_refused() {
    use AlarmState::*;
    assert_eq!(
        refused(&Acked, Command::Acknowledge),
        StateError::AlreadyAcknowledged
    );
    assert_eq!(
        refused(&Normal, Command::Acknowledge),
        StateError::NothingToAcknowledge
    );
    assert_eq!(
        refused(&shelved(20), Command::Acknowledge),
        StateError::Shelved
    );
    let off = Suppressed {
        reason: "rule disabled".into(),
    };
    assert_eq!(
        refused(&off, Command::Acknowledge),
        StateError::Suppressed("rule disabled".into())
    );
}

#[test]
fn shelving_hides_the_alarm_until_its_end() {
    use AlarmState::*;
    for from in [Normal, Unacked, Acked, RtnUnacked] {
        let s = next(&from, shelve(20), ACTIVE);
        assert_eq!(s, shelved(20));
        assert!(!s.is_annunciated());
    }
    // Before the end the clock changes nothing; at the end the alarm shows as the
    // condition is then.
    assert_eq!(shelved(20).apply(&Command::Tick, ACTIVE, t(19)), Ok(None));
    let at_end = shelved(20)
        .apply(&Command::Tick, ACTIVE, t(20))
        .expect("applies")
        .expect("a transition");
    assert_eq!(at_end.to, Unacked);
    let cleared = shelved(20)
        .apply(&Command::Tick, CLEAR, t(25))
        .expect("applies")
        .expect("a transition");
    assert_eq!(cleared.to, Normal);
    // Unshelved by hand.
    assert_eq!(next(&shelved(20), Command::Unshelve, ACTIVE), Unacked);
    assert_eq!(next(&shelved(20), Command::Unshelve, CLEAR), Normal);
    // A new shelving replaces the old one.
    assert_eq!(next(&shelved(20), shelve(30), ACTIVE), shelved(30));
}

#[test]
fn shelving_into_the_past_or_unshelving_what_is_not_shelved_is_refused() {
    use AlarmState::*;
    assert_eq!(refused(&Unacked, shelve(10)), StateError::ShelveInPast);
    assert_eq!(refused(&Unacked, shelve(5)), StateError::ShelveInPast);
    assert_eq!(refused(&Acked, Command::Unshelve), StateError::NotShelved);
    let off = Suppressed {
        reason: "out of service".into(),
    };
    assert_eq!(
        refused(&off, shelve(20)),
        StateError::Suppressed("out of service".into())
    );
}

#[test]
fn suppression_by_design_overrides_everything_and_resumes_on_the_condition() {
    use AlarmState::*;
    let suppress = || Command::Suppress {
        reason: "device out of service".into(),
    };
    let off = Suppressed {
        reason: "device out of service".into(),
    };
    for from in [Normal, Unacked, Acked, RtnUnacked, shelved(20)] {
        assert_eq!(next(&from, suppress(), ACTIVE), off, "{from:?}");
    }
    // Suppressed twice for the same reason: one transition.
    assert_eq!(off.apply(&suppress(), ACTIVE, t(10)), Ok(None));
    // The condition does not show through, the clock does not unshelve it.
    assert_eq!(next(&off, Command::Evaluate(ACTIVE), ACTIVE), off);
    assert_eq!(next(&off, Command::Tick, ACTIVE), off);
    assert_eq!(next(&off, Command::Unsuppress, ACTIVE), Unacked);
    assert_eq!(next(&off, Command::Unsuppress, CLEAR), Normal);
    assert_eq!(next(&Acked, Command::Unsuppress, ACTIVE), Acked);
}

#[test]
fn only_active_or_unacknowledged_alarms_are_annunciated() {
    use AlarmState::*;
    assert!(Unacked.is_annunciated() && Acked.is_annunciated() && RtnUnacked.is_annunciated());
    assert!(!Normal.is_annunciated());
    assert!(!Suppressed { reason: "x".into() }.is_annunciated());
}
