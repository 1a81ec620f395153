//! Subscriptions: every data type read, data changes with source timestamps kept,
//! StatusCode as quality, a server deadband, operation limits respected (items split
//! over calls and over subscriptions), polled tags read in bulk within
//! MaxNodesPerRead, and a server that refuses subscriptions polled instead.

use opcua::types::{StatusCode, Variant};
use serde_json::json;

use super::{WAIT, device, node_tag, quality, start, trusting, value};
use crate::common::opcua as peer;
use crate::common::server::eventually;

#[tokio::test]
async fn every_type_is_read_and_changes_arrive_with_their_timestamps() {
    let server = peer::test_server(|_| {}).await;
    let pki = trusting(&server);
    let types = [
        ("Bool", "bool", json!(true)),
        ("SByte", "i16", json!(-8)),
        ("Byte", "u16", json!(200)),
        ("Int16", "i16", json!(-1600)),
        ("UInt16", "u16", json!(16000)),
        ("Int32", "i32", json!(-320000)),
        ("UInt32", "u32", json!(3200000)),
        ("Int64", "i64", json!(-6400000000i64)),
        ("UInt64", "u64", json!(6400000000u64)),
        ("Float", "f32", json!(1.5)),
        ("Double", "f64", json!(42.25)),
        ("String", "string", json!("hello")),
        // DateTime as milliseconds since the Unix epoch (2024-03-01T12:00:00Z).
        ("DateTime", "i64", json!(1709294400000i64)),
    ];
    let mut tags: Vec<String> = types
        .iter()
        .map(|(id, t, _)| node_tag(id, id, t, ""))
        .collect();
    tags.push(node_tag("DateTimeText", "DateTime", "string", ""));
    // By namespace index as well as by URI.
    let ns = server.namespace_index();
    tags.push(super::tag(
        "by-index",
        &format!("ns={ns};s=Int32"),
        "i32",
        "",
    ));
    let site = start("ua-types", &[device("plc", &server, &pki, "", &tags)]).await;
    site.wait_state("plc", "ONLINE").await;
    eventually(WAIT, "every type read", || async {
        let l = site.latest().await;
        types.iter().all(|(id, _, v)| value(&l, id) == *v)
            && value(&l, "by-index") == json!(-320000)
            && value(&l, "DateTimeText")
                .as_str()
                .is_some_and(|s| s.starts_with("2024-03-01T12:00:00"))
    })
    .await;

    // A change arrives, with the server's source timestamp.
    server.set_value("Double", Variant::Double(77.5));
    eventually(WAIT, "the change arrives", || async {
        value(&site.latest().await, "Double") == json!(77.5)
    })
    .await;
    let source = server
        .value("Double")
        .and_then(|dv| dv.source_timestamp)
        .expect("a source timestamp")
        .as_chrono();
    let l = site.latest().await;
    let got = chrono::DateTime::parse_from_rfc3339(
        l["Double"]["sourceTime"].as_str().expect("sourceTime"),
    )
    .expect("rfc3339");
    assert!(
        (got.timestamp_micros() - source.timestamp_micros()).abs() < 1_000,
        "source time {got} is the server's {source}"
    );

    // Status codes become qualities, with the code as the reason.
    server.set_status("Int16", StatusCode::BadSensorFailure);
    server.set_status("UInt16", StatusCode::UncertainLastUsableValue);
    eventually(WAIT, "statuses arrive as qualities", || async {
        let l = site.latest().await;
        quality(&l, "Int16") == ("BAD".into(), "sensor_failure".into())
            && quality(&l, "UInt16") == ("UNCERTAIN".into(), "last_usable".into())
    })
    .await;
}

#[tokio::test]
async fn a_server_deadband_filters_small_changes() {
    let server = peer::test_server(|_| {}).await;
    let pki = trusting(&server);
    let tags = [
        // 1 % of the EURange 0..100.
        node_tag(
            "pct",
            &format!("{}|deadband=1%", peer::EU_RANGE_VARIABLE),
            "f64",
            "",
        ),
        node_tag("abs", "Float|deadband=0.5", "f64", ""),
    ];
    let site = start("ua-deadband", &[device("plc", &server, &pki, "", &tags)]).await;
    eventually(WAIT, "initial values", || async {
        let l = site.latest().await;
        value(&l, "pct") == json!(42.25) && value(&l, "abs") == json!(1.5)
    })
    .await;
    // Within the deadbands: not reported.
    server.set_value(peer::EU_RANGE_VARIABLE, Variant::Double(42.75));
    server.set_value("Float", Variant::Float(1.75));
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let l = site.latest().await;
    assert_eq!(
        (value(&l, "pct"), value(&l, "abs")),
        (json!(42.25), json!(1.5))
    );
    // Beyond them: reported.
    server.set_value(peer::EU_RANGE_VARIABLE, Variant::Double(44.0));
    server.set_value("Float", Variant::Float(2.5));
    eventually(WAIT, "large changes arrive", || async {
        let l = site.latest().await;
        value(&l, "pct") == json!(44.0) && value(&l, "abs") == json!(2.5)
    })
    .await;
}

/// 40 variables on a server that takes 3 monitored items per call, 7 per
/// subscription and reads 4 nodes per call.
#[tokio::test]
async fn items_are_split_to_the_server_limits() {
    let ids: Vec<String> = (0..40).map(|i| format!("N{i}")).collect();
    let server = peer::test_server(|s| {
        s.limits.max_monitored_items_per_call = 3;
        s.limits.max_monitored_items_per_sub = 7;
        s.limits.max_nodes_per_read = 4;
        for (i, id) in ids.iter().enumerate() {
            s.variables.push(
                thermacore::drivers::opcua::server::VariableSpec::new(id, Variant::Int32(i as i32))
                    .in_folder("Many"),
            );
        }
    })
    .await;
    let pki = trusting(&server);
    let subscribed: Vec<String> = ids[..30]
        .iter()
        .map(|id| node_tag(id, id, "i32", ""))
        .collect();
    let polled: Vec<String> = ids[30..]
        .iter()
        .map(|id| node_tag(id, &format!("{id}|mode=poll"), "i32", ""))
        .collect();
    let site = start(
        "ua-limits",
        &[device(
            "plc",
            &server,
            &pki,
            "",
            &[subscribed, polled].concat(),
        )],
    )
    .await;
    site.wait_state("plc", "ONLINE").await;
    eventually(WAIT, "all 40 values arrive", || async {
        let l = site.latest().await;
        ids.iter()
            .enumerate()
            .all(|(i, id)| value(&l, id) == json!(i))
    })
    .await;
    // Changes on the subscribed and on the polled nodes both arrive.
    server.set_values(&[
        ("N5", Variant::Int32(500)),
        ("N29", Variant::Int32(2900)),
        ("N35", Variant::Int32(3500)),
    ]);
    eventually(WAIT, "changes arrive", || async {
        let l = site.latest().await;
        value(&l, "N5") == json!(500)
            && value(&l, "N29") == json!(2900)
            && value(&l, "N35") == json!(3500)
    })
    .await;
    let m = site.s.metrics().await;
    assert_eq!(
        crate::common::server::metric_sum(
            &m,
            "thermacore_opcua_monitored_items",
            "tenant=\"ua-limits\""
        ),
        30.0,
        "{m}"
    );
    assert_eq!(
        crate::common::server::metric_sum(
            &m,
            "thermacore_opcua_polled_nodes",
            "tenant=\"ua-limits\""
        ),
        10.0
    );
}

#[tokio::test]
async fn a_server_without_subscriptions_is_polled() {
    let server = peer::test_server(|s| s.limits.refuse_subscriptions = true).await;
    let pki = trusting(&server);
    let tags = [node_tag("v", "Int32", "i32", "")];
    let site = start("ua-nosub", &[device("plc", &server, &pki, "", &tags)]).await;
    eventually(WAIT, "the value arrives by polling", || async {
        value(&site.latest().await, "v") == json!(-320000)
    })
    .await;
    server.set_value("Int32", Variant::Int32(7));
    eventually(WAIT, "a change arrives by polling", || async {
        value(&site.latest().await, "v") == json!(7)
    })
    .await;
}
