//! Commands: CROBs and analog outputs, direct and select-before-operate; the
//! outstation's status comes back; values that do not fit are refused before
//! anything is sent.

use dnp3::app::control::CommandStatus;
use serde_json::json;
use thermacore::drivers::dnp3::PointKind;

use super::{error_code, feeder, value};
use crate::common::server::eventually;

#[tokio::test]
async fn outputs_are_commanded_direct_or_select_before_operate() {
    let (o, site) = feeder("dnp3-commands", "").await;
    site.wait_state("rtu", "ONLINE").await;

    // A latch, direct operate (not critical).
    let r = site.write_as(&site.admin, "switch", json!(true)).await;
    assert!(r.get("errors").is_none(), "{r}");
    // A breaker close: trip/close pair, critical, so select-before-operate.
    let r = site.write_as(&site.admin, "breaker-cmd", json!(true)).await;
    assert!(r.get("errors").is_none(), "{r}");
    let r = site
        .write_as(&site.admin, "breaker-cmd", json!(false))
        .await;
    assert!(r.get("errors").is_none(), "{r}");
    // Analog outputs: a float and a 16-bit integer.
    let r = site.write_as(&site.admin, "setpoint", json!(11.5)).await;
    assert!(r.get("errors").is_none(), "{r}");
    let r = site.write_as(&site.admin, "tap", json!(-3)).await;
    assert!(r.get("errors").is_none(), "{r}");

    let got: Vec<_> = o
        .commands()
        .into_iter()
        .map(|c| (c.kind, c.index, c.value, c.selected, c.direct))
        .collect();
    assert_eq!(
        got,
        vec![
            (PointKind::BinaryOutput, 0, 1.0, false, true),
            (PointKind::BinaryOutput, 1, 1.0, true, false),
            (PointKind::BinaryOutput, 1, 0.0, true, false),
            (PointKind::AnalogOutput, 0, 11.5, false, true),
            (PointKind::AnalogOutput, 1, -3.0, false, true),
        ]
    );
    // The outputs' status follows, as events.
    eventually(super::WAIT, "output status events arrive", || async {
        let l = site.latest().await;
        value(&l, "switch") == json!(true)
            && value(&l, "setpoint") == json!(11.5)
            && value(&l, "tap") == json!(-3)
    })
    .await;
    let sbo = site
        .s
        .metric_sum(
            "thermacore_dnp3_commands_total",
            "mode=\"sbo\",outcome=\"success\"",
        )
        .await;
    assert!(sbo >= 2.0, "{sbo}");
}

#[tokio::test]
async fn refused_commands_are_clear_errors() {
    let (o, site) = feeder("dnp3-refused", "").await;
    site.wait_state("rtu", "ONLINE").await;

    // The outstation refuses: its status is the error.
    o.refuse(PointKind::BinaryOutput, 0, Some(CommandStatus::Local));
    let r = site.write_as(&site.admin, "switch", json!(true)).await;
    assert!(r.to_string().contains("LOCAL"), "{r}");
    o.refuse(
        PointKind::BinaryOutput,
        1,
        Some(CommandStatus::NotSupported),
    );
    // The first control of a request failing NOT_SUPPORTED also sets IIN2
    // PARAMETER_ERROR, which rejects the request as a whole.
    let r = site.write_as(&site.admin, "breaker-cmd", json!(true)).await;
    assert_eq!(error_code(&r), "DEVICE_ERROR", "{r}");
    assert!(r.to_string().contains("PARAMETER_ERROR"), "{r}");
    assert!(
        o.commands().is_empty(),
        "nothing operated: {:?}",
        o.commands()
    );

    // Values that do not fit are refused before anything is sent.
    let r = site.write_as(&site.admin, "tap", json!(40000)).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    let r = site.write_as(&site.admin, "tap", json!(1.5)).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    let r = site.write_as(&site.admin, "switch", json!("on")).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    assert!(o.commands().is_empty());

    // Accepted again once the outstation allows it.
    o.refuse(PointKind::BinaryOutput, 0, None);
    let r = site.write_as(&site.admin, "switch", json!(true)).await;
    assert!(r.get("errors").is_none(), "{r}");
    assert_eq!(o.commands().len(), 1);
    let local = site
        .s
        .metric_sum("thermacore_dnp3_commands_total", "outcome=\"local\"")
        .await;
    assert!(local >= 1.0, "{local}");
}
