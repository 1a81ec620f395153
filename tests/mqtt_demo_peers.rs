//! The embedded MQTT broker and the demo's MQTT peers, seen from a plain MQTT client:
//! the JSON gateway's messages and commands, the Sparkplug B edge node's births, data,
//! rebirth, writes and death, brokers on free ports, and the `thermacore broker`
//! subcommand killed and started again under connected clients.

mod common;

use std::net::SocketAddr;

use common::mqtt::{ChildBroker, Peer};
use rumqttc::Publish;
use thermacore::demo::mqtt::{self as demo, PUMP_METRICS};
use thermacore::drivers::mqtt::broker::EmbeddedBroker;
use thermacore::drivers::mqtt::sparkplug::proto::{DataType, MetricValue, Payload};
use thermacore::drivers::mqtt::sparkplug::{self, MessageType, REBIRTH, topic};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

fn sparkplug_topic(kind: MessageType) -> String {
    let device = matches!(
        kind,
        MessageType::DBirth | MessageType::DData | MessageType::DCmd
    )
    .then_some(demo::SP_DEVICE);
    topic(demo::SP_GROUP, kind, demo::SP_NODE, device)
}

/// The payload of `p` when it is a Sparkplug message of type `kind` from the demo node.
fn sparkplug(p: &Publish, kind: MessageType) -> Option<Payload> {
    (p.topic == sparkplug_topic(kind))
        .then(|| sparkplug::decode(&p.payload).expect("a Sparkplug B payload"))
}

fn boiler(p: &Publish) -> Option<serde_json::Value> {
    (p.topic == demo::BOILER_TOPIC)
        .then(|| serde_json::from_slice(&p.payload).expect("the boiler's JSON"))
}

fn bd_seq(p: &Payload) -> Option<MetricValue> {
    let m = p
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some(demo::BD_SEQ))?;
    m.value.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_on_port_zero_get_two_working_ports() {
    let a = EmbeddedBroker::start(any_port()).expect("first broker");
    let b = EmbeddedBroker::start(any_port()).expect("second broker");
    assert_ne!(a.port(), 0);
    assert_ne!(a.port(), b.port());
    assert!(a.is_running() && b.is_running());
    for broker in [&a, &b] {
        let mut o = Peer::observe(broker.port(), "t/#").await;
        o.publish("t/x", format!("hello {}", broker.port())).await;
        let got = o
            .wait_for("our own message back", |p| Some(p.payload.to_vec()))
            .await;
        assert_eq!(got, format!("hello {}", broker.port()).into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_gateway_publishes_its_boiler_and_units_and_takes_a_setpoint() {
    let broker = EmbeddedBroker::start(any_port()).expect("broker");
    let mut o = Peer::observe(broker.port(), "#").await;
    let _peers = demo::start_publishers("127.0.0.1", broker.port())
        .await
        .expect("publishers");

    let first = o.wait_for("a boiler message", boiler).await;
    for field in ["ts", "supply_temp", "return_temp", "pressure", "setpoint"] {
        assert!(first[field].is_number(), "{field} in {first}");
    }
    assert!(first["pump_running"].is_boolean(), "{first}");
    assert_eq!(first["mode"], "auto");
    assert_eq!(first["q"], "good");
    assert_eq!(first["setpoint"], demo::DEFAULT_SETPOINT);

    let mut units: Vec<&str> = demo::UNITS.to_vec();
    while !units.is_empty() {
        let (unit, value) = o
            .wait_for("the unit temperatures", |p| {
                let unit = demo::UNITS
                    .iter()
                    .find(|u| p.topic == demo::unit_topic(u))?;
                let text = std::str::from_utf8(&p.payload).expect("text");
                Some((*unit, text.parse::<f64>().expect("a plain number")))
            })
            .await;
        assert!((0.0..50.0).contains(&value), "{unit}: {value}");
        units.retain(|u| *u != unit);
    }

    o.publish(demo::SETPOINT_CMD_TOPIC, r#"{"value": 65}"#)
        .await;
    o.wait_for("a boiler message with setpoint 65", |p| {
        boiler(p).filter(|j| j["setpoint"] == 65.0)
    })
    .await;
    o.publish(demo::MODE_CMD_TOPIC, r#"{"value": "off"}"#).await;
    let off = o
        .wait_for("a boiler message in mode off", |p| {
            boiler(p).filter(|j| j["mode"] == "off")
        })
        .await;
    assert_eq!(off["pump_running"], false);
    assert_eq!(off["setpoint"], 65.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_node_births_sends_data_by_alias_rebirths_takes_a_setpoint_and_dies() {
    let broker = EmbeddedBroker::start(any_port()).expect("broker");
    let mut o = Peer::observe(broker.port(), "#").await;
    let peers = demo::start_publishers("127.0.0.1", broker.port())
        .await
        .expect("publishers");

    let nbirth = o
        .wait_for("NBIRTH", |p| sparkplug(p, MessageType::NBirth))
        .await;
    assert_eq!(nbirth.seq, Some(0));
    assert_eq!(bd_seq(&nbirth), Some(MetricValue::LongValue(0)));
    let names: Vec<_> = nbirth
        .metrics
        .iter()
        .filter_map(|m| m.name.as_deref())
        .collect();
    assert_eq!(names, [demo::BD_SEQ, REBIRTH, demo::UPTIME]);

    let dbirth = o
        .wait_for("DBIRTH", |p| sparkplug(p, MessageType::DBirth))
        .await;
    assert_eq!(dbirth.seq, Some(1));
    assert_eq!(dbirth.metrics.len(), PUMP_METRICS.len());
    for (m, spec) in dbirth.metrics.iter().zip(PUMP_METRICS.iter()) {
        assert_eq!(m.name.as_deref(), Some(spec.name));
        assert_eq!(m.alias, Some(spec.alias));
        assert_eq!(m.datatype, Some(spec.datatype as u32));
        let value = sparkplug::metric_value(m, spec.datatype as u32);
        assert!(matches!(value, Ok(Some(_))), "{}: {value:?}", spec.name);
    }

    let ddata = o
        .wait_for("DDATA", |p| sparkplug(p, MessageType::DData))
        .await;
    assert!(!ddata.metrics.is_empty());
    for m in &ddata.metrics {
        assert_eq!(m.name, None, "DDATA by alias only");
        assert!(
            PUMP_METRICS.iter().any(|s| Some(s.alias) == m.alias),
            "{m:?}"
        );
    }
    assert!(ddata.seq.is_some_and(|s| (2..256).contains(&s)));

    o.publish(&sparkplug_topic(MessageType::NCmd), sparkplug::rebirth(1))
        .await;
    let reborn = o
        .wait_for("NBIRTH after the rebirth request", |p| {
            sparkplug(p, MessageType::NBirth)
        })
        .await;
    assert_eq!(reborn.seq, Some(0));
    assert_eq!(
        bd_seq(&reborn),
        Some(MetricValue::LongValue(0)),
        "same session"
    );
    let dbirth = o
        .wait_for("DBIRTH after NBIRTH", |p| sparkplug(p, MessageType::DBirth))
        .await;
    assert_eq!(dbirth.seq, Some(1));

    let setpoint = PUMP_METRICS
        .iter()
        .find(|s| s.name == demo::METRIC_SETPOINT)
        .expect("a Setpoint metric");
    assert!(setpoint.writable);
    let cmd = sparkplug::command(
        setpoint.name,
        DataType::Double as u32,
        MetricValue::DoubleValue(55.0),
        2,
    );
    o.publish(&sparkplug_topic(MessageType::DCmd), cmd).await;
    o.wait_for("DDATA with Setpoint 55.0", |p| {
        let d = sparkplug(p, MessageType::DData)?;
        let m = d.metrics.iter().find(|m| m.alias == Some(setpoint.alias))?;
        (m.value == Some(MetricValue::DoubleValue(55.0))).then_some(())
    })
    .await;

    // The connection drops without DISCONNECT: the broker publishes the last will.
    drop(peers);
    let death = o
        .wait_for("NDEATH", |p| sparkplug(p, MessageType::NDeath))
        .await;
    assert_eq!(bd_seq(&death), Some(MetricValue::LongValue(0)));
    assert_eq!(death.seq, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_subcommand_can_be_killed_and_started_again_under_its_clients() {
    let mut broker = ChildBroker::thermacore();
    let port = broker.port;
    let mut o = Peer::observe(port, "#").await;
    let _peers = demo::start_publishers("127.0.0.1", port)
        .await
        .expect("publishers");
    let nbirth = o
        .wait_for("NBIRTH", |p| sparkplug(p, MessageType::NBirth))
        .await;
    assert_eq!(bd_seq(&nbirth), Some(MetricValue::LongValue(0)));

    broker.kill();
    o.wait_down().await;

    broker.restart();
    o.wait_subscribed().await;
    o.publish("t/after-restart", "back").await;
    o.wait_for("a message through the new broker", |p| {
        (p.topic == "t/after-restart").then_some(())
    })
    .await;

    // The edge node's new session has bdSeq 1. Its births may come before our
    // subscription: a rebirth request brings them again.
    o.publish(&sparkplug_topic(MessageType::NCmd), sparkplug::rebirth(3))
        .await;
    let reborn = o
        .wait_for("NBIRTH of the new session", |p| {
            sparkplug(p, MessageType::NBirth)
                .filter(|b| bd_seq(b) == Some(MetricValue::LongValue(1)))
        })
        .await;
    assert_eq!(reborn.seq, Some(0));
    o.wait_for("a boiler message after the restart", boiler)
        .await;
}
