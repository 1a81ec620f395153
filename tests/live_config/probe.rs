//! `testDeviceConnection` against real peers on loopback: a simulated device, a Modbus
//! PLC (rodbus's server side), an MQTT broker (rumqttd, with and without password
//! authentication), and an endpoint nobody answers. Nothing of it is saved.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

const TEST: &str = "mutation($i: DeviceTestInput!) { testDeviceConnection(input: $i) { reachable connected authenticated latencyMs readings { tag value quality qualityReason } error } }";

async fn probe(s: &TestServer, token: &str, input: Value) -> Value {
    let d = s.data(token, TEST, json!({"i": input})).await;
    d["testDeviceConnection"].clone()
}

#[tokio::test]
async fn a_simulated_device_reads_and_nothing_is_saved() {
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    let r = probe(
        &s,
        &token,
        json!({"driver": {"protocol": "sim"}, "tags": [{"name": "c", "address": "counter", "dataType": "i64"}]}),
    )
    .await;
    assert_eq!(r["reachable"], true, "{r}");
    assert_eq!(r["connected"], true, "{r}");
    assert!(r["authenticated"].is_null(), "no credentials: {r}");
    assert_eq!(r["readings"][0]["quality"], "GOOD", "{r}");
    assert!(r["error"].is_null(), "{r}");
    assert_eq!(
        s.data(&token, "{deviceCount}", json!({})).await["deviceCount"],
        1
    );
    // Bad input is refused before anything is tried.
    let r = s
        .gql(
            Some(&token),
            TEST,
            json!({"i": {"driver": {"protocol": "sim"}, "timeoutMs": 5, "tags": [{"name": "c", "address": "noise"}]}}),
        )
        .await;
    assert_eq!(
        paths(&r),
        ["input.timeoutMs", "input.tags[0].address"],
        "{r}"
    );
}

#[cfg(feature = "modbus")]
#[tokio::test]
async fn a_modbus_plc_is_reached_read_and_an_absent_one_is_not() {
    use thermacore::drivers::modbus::plc::{self, Bank, BankHandle};
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut bank = Bank::filled(16);
    bank.set_holding(4, &[1234]);
    let _plc = plc::serve(listener, &[(7, BankHandle::new(bank))]);
    let driver = json!({"protocol": "modbus", "host": "127.0.0.1", "port": port, "unit_id": 7});
    let r = probe(
        &s,
        &token,
        json!({"driver": driver, "tags": [{"name": "sp", "address": "hr:4", "dataType": "u16"}, {"name": "hole", "address": "hr:100", "dataType": "u16"}]}),
    )
    .await;
    assert_eq!(
        (r["reachable"].as_bool(), r["connected"].as_bool()),
        (Some(true), Some(true)),
        "{r}"
    );
    assert!(r["latencyMs"].as_f64().is_some(), "{r}");
    let readings: HashMap<&str, &Value> = r["readings"]
        .as_array()
        .expect("readings")
        .iter()
        .map(|x| (x["tag"].as_str().unwrap_or(""), x))
        .collect();
    assert_eq!(readings["sp"]["value"], 1234, "{r}");
    assert_eq!(readings["hole"]["quality"], "BAD", "{r}");
    assert_eq!(readings["hole"]["qualityReason"], "illegal_address", "{r}");
    assert!(r["error"].as_str().unwrap_or("").contains("BAD"), "{r}");

    // Nobody on the port.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead = closed.local_addr().expect("addr").port();
    drop(closed);
    let r = probe(
        &s,
        &token,
        json!({"driver": {"protocol": "modbus", "host": "127.0.0.1", "port": dead}, "timeoutMs": 2000}),
    )
    .await;
    assert_eq!(r["reachable"], false, "{r}");
    assert_eq!(r["connected"], false, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be reached"),
        "{r}"
    );
}

#[tokio::test]
async fn an_mqtt_broker_is_tried_with_its_credentials_and_a_published_value_read() {
    use thermacore::drivers::mqtt::broker::{BrokerLimits, BrokerSecurity, EmbeddedBroker};
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;

    // An open broker and a gateway publishing to it.
    let open = EmbeddedBroker::start("127.0.0.1:0".parse().expect("addr")).expect("broker");
    let topic = super::common::mqtt::prefix("probe");
    let publisher = super::common::mqtt::Peer::connect("127.0.0.1", open.port()).await;
    let t = format!("{topic}/state");
    let publishing = tokio::spawn(async move {
        for i in 0..100 {
            publisher.publish(&t, format!("{{\"v\": {i}}}")).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let driver = json!({"protocol": "mqtt", "host": "127.0.0.1", "port": open.port(), "topics": [format!("{topic}/#")]});
    let r = probe(
        &s,
        &token,
        json!({"driver": driver, "tags": [{"name": "v", "address": format!("topic={topic}/state;value=/v")}]}),
    )
    .await;
    publishing.abort();
    assert_eq!(r["connected"], true, "{r}");
    assert_eq!(r["readings"][0]["quality"], "GOOD", "{r}");
    assert!(r["readings"][0]["value"].is_number(), "{r}");

    // A broker that checks passwords.
    let secured = EmbeddedBroker::start_secured(
        "127.0.0.1:0".parse().expect("addr"),
        BrokerLimits::default(),
        BrokerSecurity {
            tls: None,
            users: HashMap::from([("scada".to_string(), "right-password".to_string())]),
        },
    )
    .expect("secured broker");
    let driver =
        json!({"protocol": "mqtt", "host": "127.0.0.1", "port": secured.port(), "topics": ["x/#"]});
    let with = |password: &str| json!({"driver": driver, "security": {"credentials": {"username": "scada", "password": password}}, "timeoutMs": 3000});
    let r = probe(&s, &token, with("right-password")).await;
    assert_eq!(
        (r["connected"].as_bool(), r["authenticated"].as_bool()),
        (Some(true), Some(true)),
        "{r}"
    );
    let r = probe(&s, &token, with("wrong")).await;
    assert_eq!(r["reachable"], true, "{r}");
    assert_eq!(r["connected"], false, "{r}");
    assert!(r["error"].as_str().unwrap_or("").contains("refused"), "{r}");
    // The test leaves nothing in the audit trail but its own record, secrets redacted.
    let log = s
        .data(&token, "{ auditLog(filter: { action: \"Mutation.testDeviceConnection\" }) { records { summary } } }", json!({}))
        .await;
    assert!(!log.to_string().contains("right-password"), "{log}");
}

/// A tag a device creates by itself (an MQTT topic template) between two changes is
/// part of the configuration the next change starts from: it can be changed, and an
/// export holds it.
#[tokio::test]
async fn a_tag_a_device_announces_between_two_changes_is_seen_by_the_next() {
    use thermacore::drivers::mqtt::broker::EmbeddedBroker;
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse().expect("addr")).expect("broker");
    let p = super::common::mqtt::prefix("announced");
    let driver = json!({"protocol": "mqtt", "host": "127.0.0.1", "port": broker.port(),
        "reconnect_min_ms": 100, "reconnect_max_ms": 400,
        "templates": [{"topic": format!("{p}/{{unit}}/t"), "name": "{unit}.t", "data_type": "f64"}]});
    // A change first: the next one may start from what this one left.
    let d = s
        .data(
            &token,
            CREATE_DEVICE,
            json!({"i": {"name": "sites", "pollMs": 5000, "driver": driver}}),
        )
        .await;
    let device = d["createDevice"]["id"]
        .as_str()
        .expect("device")
        .to_string();
    wait_state(&s, &token, &device, "ONLINE").await;
    let peer = super::common::mqtt::Peer::connect("127.0.0.1", broker.port()).await;
    let mut north = None;
    for _ in 0..100 {
        peer.publish(&format!("{p}/north/t"), b"18.5".to_vec())
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        north = s.tag_ids(&token).await.get("north.t").cloned();
        if north.is_some() {
            break;
        }
    }
    let north = north.expect("the template created north.t");
    let r = s
        .data(
            &token,
            "mutation($t: ID!) { updateTag(id: $t, input: { engUnit: \"°C\" }) { name engUnit } }",
            json!({"t": north}),
        )
        .await;
    assert_eq!(r["updateTag"]["engUnit"], "°C", "{r}");
    let export = s.data(&token, "{ exportConfig }", json!({})).await;
    assert!(
        export["exportConfig"]
            .as_str()
            .unwrap_or("")
            .contains("north.t"),
        "{export}"
    );
}
