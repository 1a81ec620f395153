//! Property tests of the Sparkplug B parsers: any bytes on any topic, and any sequence
//! of well-formed but arbitrary messages, are decoded or refused without a panic.

use proptest::prelude::*;
use prost::Message as _;

use super::proto::{Metric, MetricValue, Payload};
use super::{Node, NodeEvent, Topic, metric_value};

fn kinds() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD", "STATE", "XDATA",
    ])
}

fn value() -> impl Strategy<Value = Option<MetricValue>> {
    prop::option::of(prop_oneof![
        any::<u32>().prop_map(MetricValue::IntValue),
        any::<u64>().prop_map(MetricValue::LongValue),
        any::<f32>().prop_map(MetricValue::FloatValue),
        any::<f64>().prop_map(MetricValue::DoubleValue),
        any::<bool>().prop_map(MetricValue::BooleanValue),
        ".{0,8}".prop_map(MetricValue::StringValue),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(MetricValue::BytesValue),
    ])
}

fn metric() -> impl Strategy<Value = Metric> {
    (
        prop::option::of("[a-c]{1,2}"),
        prop::option::of(0u64..6),
        prop::option::of(0u32..25),
        prop::option::of(any::<bool>()),
        value(),
    )
        .prop_map(|(name, alias, datatype, is_null, value)| Metric {
            name,
            alias,
            datatype,
            is_null,
            value,
            ..Metric::default()
        })
}

fn payload() -> impl Strategy<Value = Payload> {
    (
        prop::option::of(0u64..300),
        prop::collection::vec(metric(), 0..6),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(seq, metrics, timestamp)| Payload {
            seq,
            metrics,
            timestamp,
            ..Payload::default()
        })
}

proptest! {
    #[test]
    fn any_bytes_on_any_topic(bytes in prop::collection::vec(any::<u8>(), 0..256),
                              kind in kinds(), device in prop::option::of("[A-Z]{1,2}")) {
        let topic = match &device {
            Some(d) => format!("spBv1.0/G/{kind}/N/{d}"),
            None => format!("spBv1.0/G/{kind}/N"),
        };
        let mut node = Node::default();
        if let (Some(t), Ok(p)) = (Topic::parse(&topic), Payload::decode(bytes.as_slice())) {
            let _ = node.handle(&t, &p);
        }
    }

    #[test]
    fn any_message_sequence(messages in prop::collection::vec((kinds(), any::<bool>(), payload()), 0..30)) {
        let mut node = Node::default();
        for (kind, device, p) in messages {
            let topic = if device {
                format!("spBv1.0/G/{kind}/N/D")
            } else {
                format!("spBv1.0/G/{kind}/N")
            };
            let Some(t) = Topic::parse(&topic) else { continue };
            // Encoded and decoded again: the wire form is what the driver sees.
            let p = Payload::decode(p.encode_to_vec().as_slice()).expect("round trip");
            for ev in node.handle(&t, &p) {
                // Values are only reported for metrics a birth declared, by name.
                if let NodeEvent::Values { device, values } = ev {
                    let declared = node.declared(device.as_deref()).unwrap_or(&[]);
                    for v in values {
                        prop_assert!(declared.iter().any(|d| d.name == v.name), "{}", v.name);
                    }
                }
            }
        }
    }

    #[test]
    fn any_metric_value_converts_or_refuses(m in metric(), datatype in 0u32..40) {
        let _ = metric_value(&m, datatype);
    }

    #[test]
    fn any_topic_parses_or_refuses(topic in "[a-zA-Z0-9./+#]{0,40}") {
        let _ = Topic::parse(&topic);
    }
}
