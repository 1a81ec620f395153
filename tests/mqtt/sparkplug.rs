//! Sparkplug B: births define metrics and aliases (and create tags when asked), data
//! by alias updates them with the metric's own timestamp, deaths mark them Bad, and a
//! sequence gap, an unknown alias or a payload that is not protobuf is counted and
//! answered with a rebirth request. Commands go out as DCMD / NCMD.

use std::time::Duration;

use prost::Message as _;
use serde_json::json;
use thermacore::drivers::mqtt::sparkplug::proto::{DataType, Metric, MetricValue, Payload};
use thermacore::drivers::mqtt::sparkplug::{self, REBIRTH};

use super::{PublishUntil, WAIT, device, error_code, quality, start, tag, value};
use crate::common::mqtt::{self as broker, Peer};
use crate::common::server::eventually;

const T0: u64 = 1_700_000_000_000;

fn metric(name: Option<&str>, alias: u64, dt: DataType, v: MetricValue) -> Metric {
    Metric {
        name: name.map(str::to_string),
        alias: Some(alias),
        timestamp: Some(T0 + alias),
        datatype: name.map(|_| dt as u32),
        value: Some(v),
        ..Metric::default()
    }
}

fn payload(seq: u64, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(T0),
        seq: Some(seq),
        metrics,
        ..Payload::default()
    }
    .encode_to_vec()
}

/// An edge node `N` of group `G` with device `D`, driven by the test.
struct Edge {
    peer: Peer,
    group: String,
    seq: u64,
}

impl Edge {
    fn topic(&self, kind: &str, device: bool) -> String {
        if device {
            format!("spBv1.0/{}/{kind}/N/D", self.group)
        } else {
            format!("spBv1.0/{}/{kind}/N", self.group)
        }
    }

    async fn send(&mut self, kind: &str, device: bool, metrics: Vec<Metric>) {
        let t = self.topic(kind, device);
        let p = payload(self.seq, metrics);
        self.seq = (self.seq + 1) % 256;
        self.peer.publish(&t, p).await;
    }

    async fn births(&mut self) {
        self.seq = 0;
        let bd = Metric {
            name: Some("bdSeq".into()),
            datatype: Some(DataType::Int64 as u32),
            value: Some(MetricValue::LongValue(1)),
            ..Metric::default()
        };
        self.send("NBIRTH", false, vec![bd]).await;
        self.send(
            "DBIRTH",
            true,
            vec![
                metric(
                    Some("Speed"),
                    1,
                    DataType::Double,
                    MetricValue::DoubleValue(1450.0),
                ),
                metric(
                    Some("Running"),
                    2,
                    DataType::Boolean,
                    MetricValue::BooleanValue(true),
                ),
                metric(
                    Some("Starts"),
                    3,
                    DataType::UInt32,
                    MetricValue::IntValue(12),
                ),
                metric(
                    Some("Setpoint"),
                    4,
                    DataType::Float,
                    MetricValue::FloatValue(50.0),
                ),
            ],
        )
        .await;
    }
}

/// Sends births until `check` holds (the device's subscription may still be on its way).
async fn births_until(
    edge: &mut Edge,
    site: &super::Site,
    what: &str,
    check: impl Fn(&std::collections::HashMap<String, serde_json::Value>) -> bool,
) {
    let start = std::time::Instant::now();
    loop {
        edge.births().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if check(&site.latest().await) {
            return;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for: {what}");
    }
}

#[tokio::test]
async fn births_data_by_alias_deaths_and_discovery() {
    let b = broker::broker();
    let group = format!("G{}", uuid::Uuid::new_v4().simple());
    let driver = format!(
        ", sparkplug = {{ group = \"{group}\", node = \"N\", device = \"D\", discover = true, rebirth_min_interval_ms = 50 }}"
    );
    let tags = [tag(
        "pump-speed",
        "metric=Speed",
        "f64",
        "eng_unit = \"rpm\"",
    )];
    let site = start("sparkplug-births", &[device("edge", &b, &driver, &tags)]).await;
    site.wait_state("edge", "ONLINE").await;
    let mut edge = Edge {
        peer: Peer::connect(&b.host, b.port).await,
        group,
        seq: 0,
    };
    births_until(
        &mut edge,
        &site,
        "births map Speed and create the other metrics' tags",
        |l| {
            value(l, "pump-speed") == json!(1450.0)
                && value(l, "Running") == json!(true)
                && value(l, "Starts") == json!(12)
        },
    )
    .await;
    let l = site.latest().await;
    // The metric's own timestamp is the source time.
    assert_eq!(
        l["pump-speed"]["sourceTime"],
        json!("2023-11-14T22:13:20.001+00:00")
    );
    assert!(
        !l.contains_key("Speed"),
        "a mapped metric is not discovered again"
    );
    assert!(!l.contains_key("bdSeq"), "bdSeq is not a tag");

    // DDATA by alias only.
    edge.send(
        "DDATA",
        true,
        vec![
            metric(None, 1, DataType::Double, MetricValue::DoubleValue(1500.5)),
            metric(None, 2, DataType::Boolean, MetricValue::BooleanValue(false)),
        ],
    )
    .await;
    eventually(WAIT, "DDATA by alias", || async {
        let l = site.latest().await;
        value(&l, "pump-speed") == json!(1500.5) && value(&l, "Running") == json!(false)
    })
    .await;

    // DDEATH: the device's tags go Bad/comm_lost, their last values kept.
    edge.send("DDEATH", true, vec![]).await;
    eventually(WAIT, "DDEATH marks the device's tags bad", || async {
        let l = site.latest().await;
        quality(&l, "pump-speed") == ("BAD".into(), "comm_lost".into())
            && quality(&l, "Running") == ("BAD".into(), "comm_lost".into())
    })
    .await;
    assert_eq!(value(&site.latest().await, "pump-speed"), json!(1500.5));

    // A new birth brings them back; NDEATH ends them again.
    births_until(&mut edge, &site, "rebirth brings values back", |l| {
        quality(l, "pump-speed").0 == "GOOD"
    })
    .await;
    edge.peer
        .publish(
            &edge.topic("NDEATH", false),
            payload(
                0,
                vec![Metric {
                    name: Some("bdSeq".into()),
                    datatype: Some(DataType::Int64 as u32),
                    value: Some(MetricValue::LongValue(1)),
                    ..Metric::default()
                }],
            ),
        )
        .await;
    eventually(WAIT, "NDEATH marks the node's tags bad", || async {
        quality(&site.latest().await, "Starts") == ("BAD".into(), "comm_lost".into())
    })
    .await;
}

async fn failures(site: &super::Site, reason: &str) -> f64 {
    site.s
        .metric_sum(
            "thermacore_mqtt_parse_failures_total",
            &format!("reason=\"{reason}\""),
        )
        .await
}

#[tokio::test]
async fn gaps_unknown_aliases_and_bad_protobuf_ask_for_a_rebirth() {
    let b = broker::broker();
    let group = format!("G{}", uuid::Uuid::new_v4().simple());
    let driver = format!(
        ", sparkplug = {{ group = \"{group}\", node = \"N\", device = \"D\", rebirth_min_interval_ms = 50 }}"
    );
    let tags = [tag("speed", "metric=Speed", "f64", "")];
    let site = start("sparkplug-gaps", &[device("edge", &b, &driver, &tags)]).await;
    site.wait_state("edge", "ONLINE").await;
    let mut edge = Edge {
        peer: Peer::connect(&b.host, b.port).await,
        group: group.clone(),
        seq: 0,
    };
    let ncmd = format!("spBv1.0/{group}/NCMD/N");
    edge.peer.subscribe(&ncmd).await;
    births_until(&mut edge, &site, "births", |l| {
        value(l, "speed") == json!(1450.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    edge.peer.drain();

    let is_rebirth = |bytes: &[u8]| {
        let p = sparkplug::decode(bytes).expect("NCMD decodes");
        p.metrics.iter().any(|m| {
            m.name.as_deref() == Some(REBIRTH) && m.value == Some(MetricValue::BooleanValue(true))
        })
    };

    // A gap in seq: the data is used, and a rebirth is requested.
    let gaps = failures(&site, "seq_gap").await;
    edge.seq += 5;
    edge.send(
        "DDATA",
        true,
        vec![metric(
            None,
            1,
            DataType::Double,
            MetricValue::DoubleValue(10.0),
        )],
    )
    .await;
    let cmd = edge.peer.next_on(&ncmd, WAIT).await;
    assert!(is_rebirth(&cmd), "a rebirth request");
    assert!(failures(&site, "seq_gap").await > gaps);
    eventually(WAIT, "data after the gap is used", || async {
        value(&site.latest().await, "speed") == json!(10.0)
    })
    .await;

    // An alias no birth declared.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let unknown = failures(&site, "unknown_alias").await;
    edge.send(
        "DDATA",
        true,
        vec![metric(
            None,
            99,
            DataType::Double,
            MetricValue::DoubleValue(1.0),
        )],
    )
    .await;
    eventually(WAIT, "unknown alias counted", || async {
        failures(&site, "unknown_alias").await > unknown
    })
    .await;

    // Not protobuf: counted, the mapped tags Bad, a rebirth requested.
    tokio::time::sleep(Duration::from_millis(100)).await;
    edge.peer.drain();
    let bad = failures(&site, "bad_protobuf").await;
    edge.peer
        .publish(
            &edge.topic("DDATA", true),
            vec![0xff, 0xff, 0xff, 0x01, 0x02],
        )
        .await;
    let cmd = edge.peer.next_on(&ncmd, WAIT).await;
    assert!(is_rebirth(&cmd));
    assert!(failures(&site, "bad_protobuf").await > bad);
    eventually(WAIT, "bad protobuf marks the tags bad", || async {
        quality(&site.latest().await, "speed") == ("BAD".into(), "bad_response".into())
    })
    .await;

    // DDATA of a device whose birth we never saw asks for a rebirth too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    edge.peer.drain();
    edge.peer
        .publish(
            &format!("spBv1.0/{group}/DDATA/N/Other"),
            payload(edge.seq, vec![]),
        )
        .await;
    let cmd = edge.peer.next_on(&ncmd, WAIT).await;
    assert!(is_rebirth(&cmd));
    assert_eq!(site.state("edge").await, "ONLINE");
}

#[tokio::test]
async fn write_tag_sends_a_dcmd_typed_by_the_birth() {
    let b = broker::broker();
    let group = format!("G{}", uuid::Uuid::new_v4().simple());
    let driver = format!(", sparkplug = {{ group = \"{group}\", node = \"N\", device = \"D\" }}");
    let tags = [
        tag("setpoint", "metric=Setpoint", "f64", "writable = true"),
        tag("starts", "metric=Starts", "u32", "writable = true"),
    ];
    let site = start("sparkplug-cmd", &[device("edge", &b, &driver, &tags)]).await;
    site.wait_state("edge", "ONLINE").await;
    let mut edge = Edge {
        peer: Peer::connect(&b.host, b.port).await,
        group: group.clone(),
        seq: 0,
    };
    let dcmd = format!("spBv1.0/{group}/DCMD/N/D");
    edge.peer.subscribe(&dcmd).await;
    births_until(&mut edge, &site, "births", |l| {
        value(l, "setpoint") == json!(50.0)
    })
    .await;
    let r = site.write_as(&site.admin, "setpoint", json!(55.5)).await;
    assert!(r.get("errors").is_none(), "{r}");
    let p = sparkplug::decode(&edge.peer.next_on(&dcmd, WAIT).await).expect("DCMD decodes");
    assert_eq!(p.metrics.len(), 1);
    assert_eq!(p.metrics[0].name.as_deref(), Some("Setpoint"));
    // The birth declared Setpoint as Float: the command carries a float.
    assert_eq!(p.metrics[0].datatype, Some(DataType::Float as u32));
    assert_eq!(p.metrics[0].value, Some(MetricValue::FloatValue(55.5)));
    // A value out of the tag's range is refused before anything is published.
    let r = site.write_as(&site.admin, "starts", json!(-1)).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
}

#[tokio::test]
async fn sparkplug_values_come_by_exception_and_never_turn_stale() {
    let b = broker::broker();
    let group = format!("G{}", uuid::Uuid::new_v4().simple());
    let p = broker::prefix("stale");
    let sp = format!(", sparkplug = {{ group = \"{group}\", node = \"N\", device = \"D\" }}");
    // Both expect a message every 100 ms; stale after the cache's minimum of 5 s.
    let edge_dev = device("edge", &b, &sp, &[tag("speed", "metric=Speed", "f64", "")])
        .replace("poll_ms = 60000", "poll_ms = 100");
    let json_dev = device(
        "gw",
        &b,
        "",
        &[tag("v", &format!("topic={p}/v;value=/v"), "f64", "")],
    )
    .replace("poll_ms = 60000", "poll_ms = 100");
    let site = start("sparkplug-stale", &[edge_dev, json_dev]).await;
    site.wait_state("edge", "ONLINE").await;
    site.wait_state("gw", "ONLINE").await;
    let mut edge = Edge {
        peer: Peer::connect(&b.host, b.port).await,
        group,
        seq: 0,
    };
    births_until(&mut edge, &site, "births", |l| {
        value(l, "speed") == json!(1450.0)
    })
    .await;
    site.publish_until(
        &edge.peer,
        &format!("{p}/v"),
        br#"{"v": 1}"#,
        "json value",
        |l| value(l, "v") == json!(1.0),
    )
    .await;
    // A JSON tag with no message for its stale time turns stale; a Sparkplug metric
    // that did not change is still good while its node is alive.
    eventually(
        Duration::from_secs(20),
        "the JSON tag turns stale",
        || async { quality(&site.latest().await, "v") == ("UNCERTAIN".into(), "stale".into()) },
    )
    .await;
    assert_eq!(quality(&site.latest().await, "speed").0, "GOOD");
}
