//! Sparkplug B: topics (`spBv1.0/GROUP/TYPE/NODE[/DEVICE]`), metric values and the
//! messages ThermaCore sends (rebirth requests, NCMD / DCMD commands).

#[cfg(test)]
mod fuzz_tests;
pub mod proto;
mod session;

pub use session::{Declared, MetricUpdate, Node, NodeEvent};

use prost::Message as _;

use crate::domain::{DataType as TagType, Value};
use proto::{DataType, Metric, MetricValue, Payload};

/// The Sparkplug B topic namespace.
pub const NAMESPACE: &str = "spBv1.0";
/// The node control metric that asks an edge node to publish its births again.
pub const REBIRTH: &str = "Node Control/Rebirth";

/// The message types of a Sparkplug B topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    NBirth,
    NDeath,
    DBirth,
    DDeath,
    NData,
    DData,
    NCmd,
    DCmd,
    State,
}

impl MessageType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NBIRTH" => MessageType::NBirth,
            "NDEATH" => MessageType::NDeath,
            "DBIRTH" => MessageType::DBirth,
            "DDEATH" => MessageType::DDeath,
            "NDATA" => MessageType::NData,
            "DDATA" => MessageType::DData,
            "NCMD" => MessageType::NCmd,
            "DCMD" => MessageType::DCmd,
            "STATE" => MessageType::State,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::NBirth => "NBIRTH",
            MessageType::NDeath => "NDEATH",
            MessageType::DBirth => "DBIRTH",
            MessageType::DDeath => "DDEATH",
            MessageType::NData => "NDATA",
            MessageType::DData => "DDATA",
            MessageType::NCmd => "NCMD",
            MessageType::DCmd => "DCMD",
            MessageType::State => "STATE",
        }
    }
}

/// A parsed Sparkplug B topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic<'a> {
    pub group: &'a str,
    pub kind: MessageType,
    pub node: &'a str,
    pub device: Option<&'a str>,
}

impl<'a> Topic<'a> {
    /// `spBv1.0/GROUP/TYPE/NODE[/DEVICE]`; None for anything else.
    pub fn parse(topic: &'a str) -> Option<Self> {
        let mut parts = topic.split('/');
        if parts.next()? != NAMESPACE {
            return None;
        }
        let group = parts.next()?;
        let kind = MessageType::parse(parts.next()?)?;
        let node = parts.next()?;
        let device = parts.next();
        if parts.next().is_some() || group.is_empty() || node.is_empty() {
            return None;
        }
        let is_device = matches!(
            kind,
            MessageType::DBirth | MessageType::DDeath | MessageType::DData | MessageType::DCmd
        );
        if is_device != device.is_some() || device == Some("") {
            return None;
        }
        Some(Topic {
            group,
            kind,
            node,
            device,
        })
    }
}

/// The topic of a message to a node (`device` None) or to one of its devices.
pub fn topic(group: &str, kind: MessageType, node: &str, device: Option<&str>) -> String {
    match device {
        Some(d) => format!("{NAMESPACE}/{group}/{}/{node}/{d}", kind.as_str()),
        None => format!("{NAMESPACE}/{group}/{}/{node}", kind.as_str()),
    }
}

/// Why a metric value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("metric has no value")]
    Missing,
    #[error("unsupported Sparkplug data type {0}")]
    Unsupported(u32),
    #[error("value does not match its declared data type {0:?}")]
    Mismatch(DataType),
}

/// The value of a metric of data type `datatype` (the birth's, as data messages may
/// leave it out). `Ok(None)` for a metric sent with `is_null`.
pub fn metric_value(metric: &Metric, datatype: u32) -> Result<Option<Value>, ValueError> {
    if metric.is_null == Some(true) {
        return Ok(None);
    }
    let dt = DataType::from_code(datatype).ok_or(ValueError::Unsupported(datatype))?;
    let value = metric.value.as_ref().ok_or(ValueError::Missing)?;
    let mismatch = || ValueError::Mismatch(dt);
    Ok(Some(match (dt, value) {
        (DataType::Int8, MetricValue::IntValue(v)) => Value::I64(i64::from(*v as u8 as i8)),
        (DataType::Int16, MetricValue::IntValue(v)) => Value::I64(i64::from(*v as u16 as i16)),
        (DataType::Int32, MetricValue::IntValue(v)) => Value::I64(i64::from(*v as i32)),
        (DataType::UInt8 | DataType::UInt16 | DataType::UInt32, MetricValue::IntValue(v)) => {
            Value::I64(i64::from(*v))
        }
        (DataType::Int64, MetricValue::LongValue(v)) => Value::I64(*v as i64),
        (DataType::UInt64 | DataType::DateTime, MetricValue::LongValue(v)) => {
            Value::I64(i64::try_from(*v).map_err(|_| mismatch())?)
        }
        // The shortest decimal that is this f32 (0.1f32 reads 0.1, not 0.10000000149).
        (DataType::Float, MetricValue::FloatValue(v)) => {
            Value::F64(v.to_string().parse().unwrap_or(f64::from(*v)))
        }
        (DataType::Double, MetricValue::DoubleValue(v)) => Value::F64(*v),
        (DataType::Boolean, MetricValue::BooleanValue(v)) => Value::Bool(*v),
        (DataType::String | DataType::Text, MetricValue::StringValue(s)) => {
            Value::Str(s.as_str().into())
        }
        _ => return Err(mismatch()),
    }))
}

/// The tag data type that holds a metric of data type `datatype` (for discovery).
pub fn tag_type(datatype: u32) -> Option<TagType> {
    Some(match DataType::from_code(datatype)? {
        DataType::Int8 | DataType::Int16 => TagType::I16,
        DataType::UInt8 | DataType::UInt16 => TagType::U16,
        DataType::Int32 => TagType::I32,
        DataType::UInt32 => TagType::U32,
        DataType::Int64 | DataType::DateTime => TagType::I64,
        DataType::UInt64 => TagType::U64,
        DataType::Float => TagType::F32,
        DataType::Double => TagType::F64,
        DataType::Boolean => TagType::Bool,
        DataType::String | DataType::Text => TagType::String,
    })
}

/// Encodes `value` as a metric of data type `datatype` (a command); None when the value
/// does not fit the type (a fraction for an integer, out of range, a string for a number).
pub fn encode_value(value: &Value, datatype: u32) -> Option<MetricValue> {
    let dt = DataType::from_code(datatype)?;
    let int = || -> Option<i64> {
        match value {
            Value::I64(v) => Some(*v),
            Value::F64(v) if v.fract() == 0.0 && v.is_finite() => Some(*v as i64),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    };
    Some(match dt {
        DataType::Int8 => MetricValue::IntValue(i8::try_from(int()?).ok()? as u8 as u32),
        DataType::Int16 => MetricValue::IntValue(i16::try_from(int()?).ok()? as u16 as u32),
        DataType::Int32 => MetricValue::IntValue(i32::try_from(int()?).ok()? as u32),
        DataType::UInt8 => MetricValue::IntValue(u32::from(u8::try_from(int()?).ok()?)),
        DataType::UInt16 => MetricValue::IntValue(u32::from(u16::try_from(int()?).ok()?)),
        DataType::UInt32 => MetricValue::IntValue(u32::try_from(int()?).ok()?),
        DataType::Int64 => MetricValue::LongValue(int()? as u64),
        DataType::UInt64 | DataType::DateTime => {
            MetricValue::LongValue(u64::try_from(int()?).ok()?)
        }
        DataType::Float => MetricValue::FloatValue(value.as_f64()? as f32),
        DataType::Double => MetricValue::DoubleValue(value.as_f64()?),
        DataType::Boolean => MetricValue::BooleanValue(match value {
            Value::Bool(b) => *b,
            Value::I64(0) => false,
            Value::I64(1) => true,
            _ => return None,
        }),
        DataType::String | DataType::Text => match value {
            Value::Str(s) => MetricValue::StringValue(s.to_string()),
            _ => return None,
        },
    })
}

/// An NCMD / DCMD payload that sets one metric.
pub fn command(name: &str, datatype: u32, value: MetricValue, now_ms: u64) -> Vec<u8> {
    Payload {
        timestamp: Some(now_ms),
        metrics: vec![Metric {
            name: Some(name.to_string()),
            timestamp: Some(now_ms),
            datatype: Some(datatype),
            value: Some(value),
            ..Metric::default()
        }],
        ..Payload::default()
    }
    .encode_to_vec()
}

/// The NCMD payload that asks a node to publish its births again.
pub fn rebirth(now_ms: u64) -> Vec<u8> {
    command(
        REBIRTH,
        DataType::Boolean as u32,
        MetricValue::BooleanValue(true),
        now_ms,
    )
}

/// Decodes a Sparkplug B payload.
pub fn decode(bytes: &[u8]) -> Result<Payload, prost::DecodeError> {
    Payload::decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_and_refuse() {
        let t = Topic::parse("spBv1.0/Plant/DDATA/Edge1/Boiler").expect("topic");
        assert_eq!(
            (t.group, t.kind, t.node, t.device),
            ("Plant", MessageType::DData, "Edge1", Some("Boiler"))
        );
        assert!(Topic::parse("spBv1.0/Plant/NDATA/Edge1").is_some());
        for bad in [
            "spBv1.0/Plant/NDATA/Edge1/Dev",
            "spBv1.0/Plant/DDATA/Edge1",
            "spBv1.0/Plant/XDATA/Edge1",
            "spAv1.0/Plant/NDATA/Edge1",
            "spBv1.0//NDATA/Edge1",
            "spBv1.0/Plant/DDATA/Edge1/Dev/extra",
        ] {
            assert!(Topic::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(
            topic("G", MessageType::DCmd, "N", Some("D")),
            "spBv1.0/G/DCMD/N/D"
        );
    }

    #[test]
    fn values_round_trip_through_their_types() {
        for (dt, v) in [
            (DataType::Int8, Value::I64(-5)),
            (DataType::Int16, Value::I64(-300)),
            (DataType::Int32, Value::I64(-70_000)),
            (DataType::Int64, Value::I64(-5_000_000_000)),
            (DataType::UInt16, Value::I64(65_535)),
            (DataType::UInt64, Value::I64(5_000_000_000)),
            (DataType::Double, Value::F64(21.5)),
            (DataType::Float, Value::F64(0.5)),
            (DataType::Boolean, Value::Bool(true)),
            (DataType::String, Value::Str("auto".into())),
        ] {
            let encoded = encode_value(&v, dt as u32).expect("fits");
            let m = Metric {
                value: Some(encoded),
                ..Metric::default()
            };
            assert_eq!(metric_value(&m, dt as u32), Ok(Some(v)), "{dt:?}");
        }
        assert_eq!(encode_value(&Value::I64(300), DataType::Int8 as u32), None);
        assert_eq!(encode_value(&Value::F64(1.5), DataType::Int32 as u32), None);
        assert_eq!(
            encode_value(&Value::Str("x".into()), DataType::Double as u32),
            None
        );
        let wrong = Metric {
            value: Some(MetricValue::StringValue("x".into())),
            ..Metric::default()
        };
        assert_eq!(
            metric_value(&wrong, DataType::Double as u32),
            Err(ValueError::Mismatch(DataType::Double))
        );
    }

    #[test]
    fn rebirth_request_decodes() {
        let p = decode(&rebirth(7)).expect("decodes");
        assert_eq!(p.metrics[0].name.as_deref(), Some(REBIRTH));
        assert_eq!(p.metrics[0].value, Some(MetricValue::BooleanValue(true)));
    }
}
