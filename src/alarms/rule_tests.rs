use super::*;

fn limit(name: &str, limit: LimitKind, setpoint: f64) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        kind: RuleKind::Limit {
            limit,
            setpoint,
            deadband: 1.0,
        },
        severity: Severity::Medium,
        message: None,
        enabled: true,
        on_delay_ms: 0,
        off_delay_ms: 0,
    }
}

#[test]
fn limits_of_a_tag_must_be_in_order() {
    let ok = [
        limit("ll", LimitKind::LowLow, 5.0),
        limit("l", LimitKind::Low, 5.0),
        limit("h", LimitKind::High, 80.0),
        limit("hh", LimitKind::HighHigh, 90.0),
    ];
    assert_eq!(check_tag_rules(&ok), Ok(()));
    let crossed = [
        limit("l", LimitKind::Low, 50.0),
        limit("h", LimitKind::High, 50.0),
    ];
    let err = check_tag_rules(&crossed).expect_err("low = high leaves no normal band");
    assert!(
        err.to_string()
            .contains("the low limit `l` (50) must be below the high limit `h` (50)"),
        "{err}"
    );
    let hh_below_h = [
        limit("h", LimitKind::High, 80.0),
        limit("hh", LimitKind::HighHigh, 70.0),
    ];
    assert!(matches!(
        check_tag_rules(&hh_below_h),
        Err(RuleError::LimitOrder { .. })
    ));
    // A disabled limit does not count.
    let mut off = limit("l2", LimitKind::Low, 99.0);
    off.enabled = false;
    assert_eq!(
        check_tag_rules(&[off, limit("h", LimitKind::High, 80.0)]),
        Ok(())
    );
    let dup = [
        limit("a", LimitKind::Low, 1.0),
        limit("a", LimitKind::High, 80.0),
    ];
    assert_eq!(check_tag_rules(&dup), Err(RuleError::Duplicate("a".into())));
}

#[test]
fn settings_that_make_no_rule_are_refused() {
    let base = limit("x", LimitKind::High, 1.0);
    let with = |kind: RuleKind| RuleSpec {
        kind,
        ..base.clone()
    };
    let bad = [
        with(RuleKind::Limit {
            limit: LimitKind::High,
            setpoint: f64::NAN,
            deadband: 0.0,
        }),
        with(RuleKind::Limit {
            limit: LimitKind::High,
            setpoint: 1.0,
            deadband: -1.0,
        }),
        with(RuleKind::RateOfChange {
            max_per_second: 0.0,
        }),
        with(RuleKind::Stale { after_ms: 0 }),
        RuleSpec {
            on_delay_ms: MAX_DELAY_MS + 1,
            ..base.clone()
        },
        RuleSpec {
            name: " ".into(),
            ..base.clone()
        },
        RuleSpec {
            message: Some("x".repeat(MAX_MESSAGE + 1)),
            ..base.clone()
        },
    ];
    for spec in bad {
        assert!(spec.check().is_err(), "{spec:?} passed");
    }
    assert_eq!(base.check(), Ok(()));
}

#[test]
fn messages_fill_their_placeholders() {
    let r = limit("boiler_high", LimitKind::High, 80.0);
    let ctx = MessageContext {
        tag: "boiler/temp",
        eng_unit: "°C",
        value: Some(81.25),
        reason: QualityReason::None,
    };
    assert_eq!(r.render(&ctx), "boiler/temp high: 81.25 °C above 80");
    let custom = RuleSpec {
        message: Some("{rule} [{severity}] {value}{eng_unit} {unknown} {".into()),
        ..r
    };
    assert_eq!(
        custom.render(&ctx),
        "boiler_high [medium] 81.25°C {unknown} {"
    );
    let comm = RuleSpec {
        kind: RuleKind::Quality {
            reasons: vec![QualityReason::CommLost],
        },
        ..custom
    };
    assert_eq!(comm.kind.name(), "comm_loss");
}
