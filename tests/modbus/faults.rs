//! Faults: addresses the device does not have (exceptions, the planner's split, the
//! bad-address cache and its retry), and a server that goes away and comes back.

use std::time::Duration;

use serde_json::{Value, json};
use thermacore::drivers::modbus::plc::Bank;

use super::common::server::{WsClient, eventually};
use super::{Plc, WAIT, device, start, tag};

#[tokio::test]
async fn a_missing_address_goes_bad_alone_is_parked_and_retried_after_its_grace() {
    let mut bank = Bank::filled(10);
    bank.holding_registers.remove(&4);
    let plc = Plc::start(bank).await;
    let tags: Vec<String> = (0..10)
        .map(|i| tag(&format!("r{i}"), &format!("hr:{i}"), "u16", ""))
        .collect();
    let driver = ", bad_address_after = 2, bad_address_grace_ms = 400";
    let site = start("mb-bad", &[device("plc", plc.port, driver, &tags)]).await;

    // The whole range is refused; split, only the tag at the hole is Bad.
    site.wait_bad(&["r4"], "illegal_address").await;
    let neighbours: Vec<(String, Value)> = (0..10)
        .filter(|i| *i != 4)
        .map(|i| (format!("r{i}"), json!(i)))
        .collect();
    let refs: Vec<(&str, Value)> = neighbours
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    site.wait_good(&refs).await;
    let l = site.latest().await;
    assert_eq!(
        (&l["r4"]["quality"], &l["r4"]["qualityReason"]),
        (&json!("BAD"), &json!("illegal_address")),
        "still Bad beside its Good neighbours: {}",
        l["r4"]
    );
    site.wait_state("plc", "DEGRADED").await;
    let degraded = format!(
        "tenant=\"{}\",protocol=\"modbus\",state=\"degraded\"",
        site.tenant
    );
    eventually(WAIT, "thermacore_devices degraded = 1", || async {
        site.s.metric_sum("thermacore_devices", &degraded).await == 1.0
    })
    .await;

    // Parked after two failed polls: counted in the status and the metric.
    eventually(WAIT, "one address parked", || async {
        site.status().await["plc"]["badAddresses"] == 1
    })
    .await;
    let labels = format!("tenant=\"{}\"", site.tenant);
    eventually(WAIT, "thermacore_modbus_bad_addresses > 0", || async {
        site.s
            .metric_sum("thermacore_modbus_bad_addresses", &labels)
            .await
            > 0.0
    })
    .await;
    assert!(
        site.s
            .metric_sum(
                "thermacore_modbus_errors_total",
                "code=\"illegal_data_address\""
            )
            .await
            > 0.0
    );

    // The device gains the register: the retry after the grace reads it.
    plc.bank.lock().holding_registers.insert(4, 44);
    site.wait_good(&[("r4", json!(44)), ("r3", json!(3)), ("r5", json!(5))])
        .await;
    site.wait_state("plc", "ONLINE").await;
    eventually(WAIT, "nothing parked", || async {
        site.status().await["plc"]["badAddresses"] == 0
    })
    .await;
}

/// Reads `deviceStatus` messages until one is in `state`.
async fn next_state(ws: &mut WsClient, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "no deviceStatus {state} within {WAIT:?}");
        let m = ws.next(left).await;
        assert!(
            m["type"] == "next" || m["type"] == "timeout",
            "subscription ended: {m}"
        );
        let status = &m["payload"]["data"]["deviceStatus"];
        if status["state"] == state {
            return status.clone();
        }
    }
}

#[tokio::test]
async fn a_lost_server_takes_the_tags_bad_and_its_return_brings_them_back() {
    let mut plc = Plc::start(Bank::filled(4)).await;
    let tags = [
        tag("level", "hr:0", "u16", ""),
        tag("pump", "coil:1", "bool", "writable = true"),
    ];
    let driver = ", reconnect_min_ms = 50, reconnect_max_ms = 200";
    let site = start("mb-link", &[device("plc", plc.port, driver, &tags)]).await;
    site.wait_good(&[("level", json!(0)), ("pump", json!(false))])
        .await;
    site.wait_state("plc", "ONLINE").await;
    let id = site.status().await["plc"]["id"].clone();
    let (mut ws, ack) = WsClient::connect(site.s.addr, &site.admin).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws.subscribe(
        "1",
        "subscription($d:ID){deviceStatus(deviceId:$d){deviceId state lastError}}",
        json!({"d": id}),
    )
    .await;
    let first = next_state(&mut ws, "ONLINE").await;
    assert_eq!(first["deviceId"], id);
    let connected = "event=\"connected\"";
    let before = site
        .s
        .metric_sum("thermacore_modbus_link_events_total", connected)
        .await;

    plc.stop();
    site.wait_bad(&["level", "pump"], "comm_lost").await;
    site.wait_state("plc", "OFFLINE").await;
    let offline = next_state(&mut ws, "OFFLINE").await;
    assert!(offline["lastError"].is_string(), "{offline}");
    {
        let _writes = super::WRITES.lock().await;
        let r = site.write_as(&site.admin, "pump", json!(true)).await;
        assert_eq!(super::error_code(&r), "DEVICE_ERROR", "{r}");
    }
    assert!(
        !plc.bank.lock().coils[&1],
        "nothing written while the link is down"
    );

    // Changed while the link is down: the value after the return is read anew.
    plc.bank.lock().holding_registers.insert(0, 99);
    plc.restart().await;
    next_state(&mut ws, "ONLINE").await;
    site.wait_good(&[("level", json!(99)), ("pump", json!(false))])
        .await;
    site.wait_state("plc", "ONLINE").await;
    eventually(Duration::from_secs(5), "a connected link event", || async {
        site.s
            .metric_sum("thermacore_modbus_link_events_total", connected)
            .await
            > before
    })
    .await;
}
