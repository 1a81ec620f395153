//! Faults: a node the server does not know goes into the bad-node cache (Bad with
//! the reason, skipped for the grace period, then tried again) while the rest of the
//! device keeps working; a server restart marks the values Bad while it is down,
//! then the session is re-created and the subscriptions restored.

use std::time::{Duration, Instant};

use opcua::types::Variant;
use serde_json::json;
use thermacore::drivers::opcua::server::VariableSpec;

use super::{WAIT, device, node_tag, quality, start, trusting, value};
use crate::common::opcua as peer;
use crate::common::server::{eventually, metric_sum};

#[tokio::test]
async fn unknown_nodes_are_parked_for_the_grace_period_then_retried() {
    let server = peer::test_server(|_| {}).await;
    let pki = trusting(&server);
    let grace_ms = 2_000;
    let tags = [
        node_tag("good", "Int32", "i32", ""),
        node_tag("late", "Late", "f64", ""),
        node_tag("late-polled", "LatePolled|mode=poll", "f64", ""),
    ];
    let driver = format!(", bad_node_grace_ms = {grace_ms}");
    let site = start(
        "ua-badnodes",
        &[device("plc", &server, &pki, &driver, &tags)],
    )
    .await;
    let parked_at = Instant::now();
    eventually(WAIT, "unknown nodes are Bad, the rest Good", || async {
        let l = site.latest().await;
        quality(&l, "late") == ("BAD".into(), "node_unknown".into())
            && quality(&l, "late-polled") == ("BAD".into(), "node_unknown".into())
            && value(&l, "good") == json!(-320000)
    })
    .await;
    assert_eq!(site.state("plc").await, "ONLINE");
    let m = site.s.metrics().await;
    assert_eq!(
        metric_sum(&m, "thermacore_opcua_bad_nodes", "tenant=\"ua-badnodes\""),
        2.0,
        "{m}"
    );

    // The nodes appear; within the grace period they are not asked for again.
    server.add_variables(vec![
        VariableSpec::new("Late", Variant::Double(1.25)).in_folder(peer::FOLDER),
        VariableSpec::new("LatePolled", Variant::Double(2.5)).in_folder(peer::FOLDER),
    ]);
    tokio::time::sleep(Duration::from_millis(grace_ms / 2)).await;
    if parked_at.elapsed() < Duration::from_millis(grace_ms * 9 / 10) {
        let l = site.latest().await;
        assert_eq!(
            quality(&l, "late").0,
            "BAD",
            "retried before the grace period: {l:?}"
        );
    }
    // After it, they are tried again and read.
    eventually(
        WAIT,
        "parked nodes are retried after the grace period",
        || async {
            let l = site.latest().await;
            value(&l, "late") == json!(1.25)
                && quality(&l, "late").0 == "GOOD"
                && value(&l, "late-polled") == json!(2.5)
        },
    )
    .await;
    assert!(parked_at.elapsed() >= Duration::from_millis(grace_ms * 9 / 10));
    let m = site.s.metrics().await;
    assert_eq!(
        metric_sum(&m, "thermacore_opcua_bad_nodes", "tenant=\"ua-badnodes\""),
        0.0,
        "{m}"
    );
    // A node removed while subscribed: its quality says so, the device keeps going.
    server.remove_variable("Late");
    server.set_value("Int32", Variant::Int32(11));
    eventually(WAIT, "the rest keeps working", || async {
        value(&site.latest().await, "good") == json!(11)
    })
    .await;
}

#[tokio::test]
async fn a_server_restart_marks_values_bad_then_restores_the_subscriptions() {
    let server = peer::test_server(|_| {}).await;
    let pki = trusting(&server);
    let tags = [
        node_tag("v", "Int32", "i32", ""),
        node_tag("p", "Double|mode=poll", "f64", ""),
    ];
    let site = start("ua-restart", &[device("plc", &server, &pki, "", &tags)]).await;
    site.wait_state("plc", "ONLINE").await;
    server.set_value("Int32", Variant::Int32(1));
    eventually(WAIT, "values flow", || async {
        value(&site.latest().await, "v") == json!(1)
    })
    .await;

    let stopped = server.stop().await;
    eventually(WAIT, "values go Bad while the server is down", || async {
        let l = site.latest().await;
        quality(&l, "v") == ("BAD".into(), "comm_lost".into())
            && quality(&l, "p") == ("BAD".into(), "comm_lost".into())
    })
    .await;
    let state = site.state("plc").await;
    assert!(state == "CONNECTING" || state == "OFFLINE", "{state}");
    let r = site.write_as(&site.admin, "v", json!(5)).await;
    assert_eq!(super::error_code(&r), "DEVICE_ERROR", "{r}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = stopped
        .start()
        .await
        .expect("the server starts again on its port");
    site.wait_state("plc", "ONLINE").await;
    // A new session: the subscription is re-created and changes flow again.
    eventually(WAIT, "initial values after the restart", || async {
        let l = site.latest().await;
        value(&l, "v") == json!(-320000)
            && quality(&l, "v").0 == "GOOD"
            && quality(&l, "p").0 == "GOOD"
    })
    .await;
    server.set_value("Int32", Variant::Int32(2));
    eventually(WAIT, "changes flow after the restart", || async {
        value(&site.latest().await, "v") == json!(2)
    })
    .await;
    let m = site.s.metrics().await;
    assert!(
        metric_sum(&m, "thermacore_opcua_reconnects_total", "") >= 1.0,
        "{m}"
    );
}
