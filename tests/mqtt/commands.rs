//! Commands: `writeTag` on an MQTT tag publishes the rendered payload with QoS 1 and
//! answers once the broker acknowledged it; refusals are clear errors.

use serde_json::json;

use super::{WAIT, device, error_code, start, tag};
use crate::common::mqtt::{self as broker, Peer};

#[tokio::test]
async fn write_tag_publishes_the_command_and_reports_the_broker_ack() {
    let b = broker::broker();
    let p = broker::prefix("cmd");
    let driver = format!(
        ", topics = [\"{p}/state\"], command_topic = \"{p}/cmd/{{tag}}\", command_payload = '{{\"tag\": \"{{tag}}\", \"value\": {{value}}, \"ts\": {{ts}}}}'"
    );
    let tags = [
        tag(
            "setpoint",
            &format!("topic={p}/state;value=/sp"),
            "f64",
            "writable = true\nscale = 0.5",
        ),
        tag(
            "mode",
            &format!("topic={p}/state;value=/mode;command={p}/mode/set"),
            "string",
            "writable = true",
        ),
        tag(
            "small",
            &format!("topic={p}/state;value=/small"),
            "i16",
            "writable = true",
        ),
        tag("reading", &format!("topic={p}/state;value=/r"), "f64", ""),
    ];
    let site = start("mqtt-cmd", &[device("gw", &b, &driver, &tags)]).await;
    site.wait_state("gw", "ONLINE").await;
    let mut peer = Peer::connect(&b.host, b.port).await;
    peer.subscribe(&format!("{p}/#")).await;

    let r = site.write_as(&site.admin, "setpoint", json!(21.0)).await;
    assert!(r.get("errors").is_none(), "{r}");
    assert_eq!(r["data"]["writeTag"]["value"], json!(21.0));
    let body = peer.next_on(&format!("{p}/cmd/setpoint"), WAIT).await;
    let v: serde_json::Value = serde_json::from_slice(&body).expect("command is JSON");
    // Scaling undone: 21.0 engineering units at scale 0.5 is 42 raw.
    assert_eq!(v["value"], json!(42.0));
    assert_eq!(v["tag"], "setpoint");
    assert!(v["ts"].as_i64().is_some_and(|ts| ts > 1_700_000_000_000));

    // The tag's own command topic.
    let r = site.write_as(&site.admin, "mode", json!("manual")).await;
    assert!(r.get("errors").is_none(), "{r}");
    let body = peer.next_on(&format!("{p}/mode/set"), WAIT).await;
    let v: serde_json::Value = serde_json::from_slice(&body).expect("command is JSON");
    assert_eq!(v["value"], "manual");

    // Refusals: out of range, wrong type, not writable, viewer.
    let r = site.write_as(&site.admin, "small", json!(40_000)).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    let r = site.write_as(&site.admin, "setpoint", json!("warm")).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    let r = site.write_as(&site.admin, "reading", json!(1.0)).await;
    assert!(r.get("errors").is_some(), "{r}");
    let viewer = site.s.login(&site.tenant, "viewer").await;
    let r = site.write_as(&viewer, "setpoint", json!(1.0)).await;
    assert_eq!(error_code(&r), "FORBIDDEN", "{r}");
    // None of the refused commands reached the broker.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let acked = site
        .s
        .metric_sum(
            "thermacore_mqtt_command_publishes_total",
            "outcome=\"acked\"",
        )
        .await;
    assert!(acked >= 2.0);
}
