//! Faults: the link lost and regained (an outstation restart, seen in its IIN), an
//! outstation that does not answer, a peer that answers garbage, and no outstation
//! at all. Values go Bad with the reason; the device says what happened.

use std::time::Duration;

use serde_json::json;
use thermacore::drivers::dnp3::PointKind;
use tokio::io::AsyncWriteExt;

use super::{
    ONLINE, device, feeder_points, outstation, outstation_with, quality, start, tag, value,
};
use crate::common::server::eventually;

fn voltage() -> Vec<String> {
    vec![tag("voltage", "ai:0", "f64", "")]
}

#[tokio::test]
async fn link_loss_and_restart_are_recovered() {
    let mut o = outstation(feeder_points()).await;
    let addr = o.addr();
    let site = start("dnp3-link", &[device("rtu", &o.endpoint(), "", &voltage())]).await;
    site.wait_state("rtu", "ONLINE").await;
    eventually(super::WAIT, "first value", || async {
        value(&site.latest().await, "voltage") == json!(230.5)
    })
    .await;
    let restarts_before = site
        .s
        .metric_sum("thermacore_dnp3_iin_total", "bit=\"device_restart\"")
        .await;

    o.stop();
    eventually(super::WAIT, "the loss is seen", || async {
        quality(&site.latest().await, "voltage") == ("BAD".into(), "comm_lost".into())
    })
    .await;
    assert_ne!(site.state("rtu").await, "ONLINE");

    // The outstation comes back on the same port, restarted, with a new value.
    let o2 = outstation_with(feeder_points(), |s| s.listen = addr).await;
    o2.update(PointKind::AnalogInput, 0, 229.0, ONLINE);
    site.wait_state("rtu", "ONLINE").await;
    eventually(super::WAIT, "the value is read again", || async {
        let l = site.latest().await;
        value(&l, "voltage") == json!(229.0) && quality(&l, "voltage").0 == "GOOD"
    })
    .await;
    let restarts = site
        .s
        .metric_sum("thermacore_dnp3_iin_total", "bit=\"device_restart\"")
        .await;
    assert!(restarts > restarts_before, "the restart IIN is seen");
}

#[tokio::test]
async fn an_outstation_that_does_not_answer_is_offline() {
    // The link comes up but nobody answers at outstation address 77.
    let o = outstation(feeder_points()).await;
    let driver = ", outstation_address = 77";
    let site = start(
        "dnp3-silent",
        &[device("rtu", &o.endpoint(), driver, &voltage())],
    )
    .await;
    site.wait_state("rtu", "OFFLINE").await;
    let error = site.last_error("rtu").await;
    assert!(error.contains("no response"), "{error}");
    let timeouts = site
        .s
        .metric_sum("thermacore_dnp3_polls_total", "outcome=\"timeout\"")
        .await;
    assert!(timeouts >= 1.0);
}

#[tokio::test]
async fn a_peer_answering_garbage_never_comes_online() {
    // A TCP peer that answers every connection with bytes that are not DNP3 frames.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let peer = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                for _ in 0..50 {
                    if s.write_all(b"\x05\x64\xff\xffgarbage-not-dnp3\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
    });
    let site = start(
        "dnp3-garbage",
        &[device("rtu", &addr.to_string(), "", &voltage())],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_ne!(
        site.state("rtu").await,
        "ONLINE",
        "{}",
        site.last_error("rtu").await
    );
    let l = site.latest().await;
    assert!(
        l["voltage"].is_null() || quality(&l, "voltage").0 == "BAD",
        "{l:?}"
    );
    peer.abort();
}

#[tokio::test]
async fn no_outstation_is_offline_and_retried() {
    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr");
    drop(free);
    let site = start(
        "dnp3-none",
        &[device("rtu", &addr.to_string(), "", &voltage())],
    )
    .await;
    site.wait_state("rtu", "OFFLINE").await;
    assert!(site.last_error("rtu").await.contains("connect failed"));
    // It connects as soon as an outstation appears there.
    let _o = outstation_with(feeder_points(), |s| s.listen = addr).await;
    site.wait_state("rtu", "ONLINE").await;
    eventually(super::WAIT, "the value arrives", || async {
        value(&site.latest().await, "voltage") == json!(230.5)
    })
    .await;
}

#[tokio::test]
async fn an_event_buffer_overflow_is_reported_and_read_again() {
    use crate::common::server::WsClient;
    // Room for two events per type, no unsolicited reporting, a slow class poll.
    let o = outstation_with(feeder_points(), |s| s.event_buffer = 2).await;
    let driver = ", unsolicited = false, class1_poll_ms = 1000";
    let site = start(
        "dnp3-overflow",
        &[device("rtu", &o.endpoint(), driver, &voltage())],
    )
    .await;
    site.wait_state("rtu", "ONLINE").await;
    let d = site
        .s
        .data(&site.admin, "{devices{id name}}", json!({}))
        .await;
    let id = d["devices"][0]["id"].clone();
    let (mut ws, _) = WsClient::connect(site.s.addr, &site.admin).await;
    ws.subscribe(
        "1",
        "subscription($d:ID){deviceStatus(deviceId:$d){state lastError}}",
        json!({"d": id}),
    )
    .await;
    // Ten changes before the next poll: the buffer overflows.
    for v in 0..10 {
        o.update(PointKind::AnalogInput, 0, 300.0 + f64::from(v), ONLINE);
    }
    let mut states = Vec::new();
    let deadline = std::time::Instant::now() + super::WAIT;
    while std::time::Instant::now() < deadline {
        let m = ws.next(Duration::from_millis(500)).await;
        if m["type"] == "next" {
            let s = m["payload"]["data"]["deviceStatus"].clone();
            let back = s["state"] == "ONLINE"
                && states
                    .iter()
                    .any(|s: &serde_json::Value| s["state"] == "DEGRADED");
            states.push(s);
            if back {
                break;
            }
        }
    }
    let degraded = states.iter().find(|s| s["state"] == "DEGRADED");
    let error = degraded.and_then(|s| s["lastError"].as_str()).unwrap_or("");
    assert!(error.contains("event buffer overflowed"), "{states:?}");
    assert_eq!(
        states.last().map(|s| s["state"].clone()),
        Some(json!("ONLINE")),
        "{states:?}"
    );
    // The integrity poll after the overflow read the current value.
    eventually(super::WAIT, "the current value is read", || async {
        value(&site.latest().await, "voltage") == json!(309.0)
    })
    .await;
    assert!(
        site.s
            .metric_sum("thermacore_dnp3_iin_total", "bit=\"event_buffer_overflow\"")
            .await
            >= 1.0
    );
}
