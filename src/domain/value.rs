//! Values, qualities, timestamps and the samples that carry them along the data path.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

use super::ids::{DeviceId, TagId, TenantId};

/// Microseconds since the Unix epoch, UTC. Compact (8 bytes) for the hot path;
/// converted to `DateTime<Utc>` at the API edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(chrono::Utc::now().timestamp_micros())
    }

    pub fn from_datetime(dt: chrono::DateTime<chrono::Utc>) -> Self {
        Timestamp(dt.timestamp_micros())
    }

    pub fn to_datetime(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }

    pub fn micros_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A tag's value. Strings are reference-counted so that a sample stays small
/// (24 bytes for the value) and cloning it into the cache and the live hub is cheap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    I64(i64),
    F64(f64),
    Str(Arc<str>),
}

impl Value {
    /// The numeric reading of the value, for aggregation and deadbands.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::F64(v) => Some(*v),
            Value::I64(v) => Some(*v as f64),
            Value::Bool(v) => Some(if *v { 1.0 } else { 0.0 }),
            Value::Str(_) => None,
        }
    }

    /// The JSON form served to API clients: a number, a boolean or a string.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Bool(v) => serde_json::Value::Bool(*v),
            Value::I64(v) => serde_json::Value::from(*v),
            Value::F64(v) => serde_json::Number::from_f64(*v)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
        }
    }

    /// The kind code stored beside the value (see `storage::codec`).
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Bool(_) => ValueKind::Bool,
            Value::I64(_) => ValueKind::I64,
            Value::F64(_) => ValueKind::F64,
            Value::Str(_) => ValueKind::Str,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(v) => v.fmt(f),
            Value::I64(v) => v.fmt(f),
            Value::F64(v) => v.fmt(f),
            Value::Str(s) => s.fmt(f),
        }
    }
}

/// Which variant a [`Value`] is; stored with every historical sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum ValueKind {
    Bool = 0,
    I64 = 1,
    F64 = 2,
    Str = 3,
}

impl ValueKind {
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => ValueKind::Bool,
            1 => ValueKind::I64,
            2 => ValueKind::F64,
            3 => ValueKind::Str,
            _ => return None,
        })
    }
}

/// Why a value is not Good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum QualityReason {
    None = 0,
    CommLost = 1,
    OutOfRange = 2,
    DeviceFlag = 3,
    Stale = 4,
    ConfigError = 5,
    DeviceRestarting = 6,
    DeviceError = 7,
    /// The device refused the address (Modbus exception 2, illegal data address).
    IllegalAddress = 8,
    /// The device does not support the request (Modbus exception 1, illegal function).
    IllegalFunction = 9,
    /// The device refused the request's values or size (Modbus exception 3).
    IllegalValue = 10,
    /// The device is busy (Modbus exceptions 5 and 6): try again later.
    DeviceBusy = 11,
    /// The device failed to perform the request (Modbus exception 4, parity error).
    DeviceFailure = 12,
    /// A gateway found no path or no answer from the device behind it (exceptions 10, 11).
    GatewayError = 13,
    /// The answer could not be used (malformed, too short, wrong length).
    BadResponse = 14,
    /// The device sent a value that does not fit the tag's data type.
    TypeMismatch = 15,
    /// The server does not know the node (OPC UA BadNodeIdUnknown, BadNodeIdInvalid).
    NodeUnknown = 16,
    /// The server refuses access (OPC UA BadNotReadable, BadUserAccessDenied).
    AccessDenied = 17,
    /// The sensor behind the value failed (OPC UA Bad_SensorFailure).
    SensorFailure = 18,
    /// The source is out of service (OPC UA Bad_OutOfService, Bad_NotConnected).
    OutOfService = 19,
    /// The device says the value is the last usable one (OPC UA Uncertain_LastUsableValue).
    LastUsable = 20,
    /// The device's own status code, not one of the above (the driver logs the code).
    DeviceStatus = 21,
    /// The value is substituted at the device, not measured (DNP3 LOCAL_FORCED,
    /// REMOTE_FORCED).
    Forced = 22,
    /// The device suppresses a chattering input (DNP3 CHATTER_FILTER).
    ChatterFilter = 23,
    /// The device's reference for the measurement is off (DNP3 REFERENCE_ERR).
    ReferenceError = 24,
    /// The device's clock was not synchronised when it stamped the value.
    ClockUnsynchronized = 25,
    /// The device is out of service (`enabled = false`, `setDeviceEnabled`): not read.
    Disabled = 26,
}

impl QualityReason {
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => QualityReason::CommLost,
            2 => QualityReason::OutOfRange,
            3 => QualityReason::DeviceFlag,
            4 => QualityReason::Stale,
            5 => QualityReason::ConfigError,
            6 => QualityReason::DeviceRestarting,
            7 => QualityReason::DeviceError,
            8 => QualityReason::IllegalAddress,
            9 => QualityReason::IllegalFunction,
            10 => QualityReason::IllegalValue,
            11 => QualityReason::DeviceBusy,
            12 => QualityReason::DeviceFailure,
            13 => QualityReason::GatewayError,
            14 => QualityReason::BadResponse,
            15 => QualityReason::TypeMismatch,
            16 => QualityReason::NodeUnknown,
            17 => QualityReason::AccessDenied,
            18 => QualityReason::SensorFailure,
            19 => QualityReason::OutOfService,
            20 => QualityReason::LastUsable,
            21 => QualityReason::DeviceStatus,
            22 => QualityReason::Forced,
            23 => QualityReason::ChatterFilter,
            24 => QualityReason::ReferenceError,
            25 => QualityReason::ClockUnsynchronized,
            26 => QualityReason::Disabled,
            _ => QualityReason::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QualityReason::None => "none",
            QualityReason::CommLost => "comm_lost",
            QualityReason::OutOfRange => "out_of_range",
            QualityReason::DeviceFlag => "device_flag",
            QualityReason::Stale => "stale",
            QualityReason::ConfigError => "config_error",
            QualityReason::DeviceRestarting => "device_restarting",
            QualityReason::DeviceError => "device_error",
            QualityReason::IllegalAddress => "illegal_address",
            QualityReason::IllegalFunction => "illegal_function",
            QualityReason::IllegalValue => "illegal_value",
            QualityReason::DeviceBusy => "device_busy",
            QualityReason::DeviceFailure => "device_failure",
            QualityReason::GatewayError => "gateway_error",
            QualityReason::BadResponse => "bad_response",
            QualityReason::TypeMismatch => "type_mismatch",
            QualityReason::NodeUnknown => "node_unknown",
            QualityReason::AccessDenied => "access_denied",
            QualityReason::SensorFailure => "sensor_failure",
            QualityReason::OutOfService => "out_of_service",
            QualityReason::LastUsable => "last_usable",
            QualityReason::DeviceStatus => "device_status",
            QualityReason::Forced => "forced",
            QualityReason::ChatterFilter => "chatter_filter",
            QualityReason::ReferenceError => "reference_error",
            QualityReason::ClockUnsynchronized => "clock_unsynchronized",
            QualityReason::Disabled => "disabled",
        }
    }
}

/// OPC-style quality of a value: Good, Uncertain or Bad, with a reason for the latter two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quality {
    Good,
    Uncertain(QualityReason),
    Bad(QualityReason),
}

impl Quality {
    pub fn is_good(self) -> bool {
        matches!(self, Quality::Good)
    }

    pub fn reason(self) -> QualityReason {
        match self {
            Quality::Good => QualityReason::None,
            Quality::Uncertain(r) | Quality::Bad(r) => r,
        }
    }

    /// Packs the quality into one byte pair: level (0 good, 1 uncertain, 2 bad) and reason.
    pub fn to_code(self) -> (u8, u8) {
        match self {
            Quality::Good => (0, 0),
            Quality::Uncertain(r) => (1, r as u8),
            Quality::Bad(r) => (2, r as u8),
        }
    }

    pub fn from_code(level: u8, reason: u8) -> Self {
        let reason = QualityReason::from_code(reason);
        match level {
            0 => Quality::Good,
            1 => Quality::Uncertain(reason),
            _ => Quality::Bad(reason),
        }
    }
}

/// One reading of one tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub tag: TagId,
    pub value: Value,
    pub quality: Quality,
    /// When the device measured it (or when we read it, if the protocol has no time).
    pub source_time: Timestamp,
    /// When ThermaCore received it.
    pub server_time: Timestamp,
}

/// Samples from one device of one tenant, produced by one poll or push.
/// Shared as `Arc<SampleBatch>` between the cache, alert stream, live hub and historian,
/// so fan-out costs one reference count per consumer, not one copy.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleBatch {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub samples: Vec<Sample>,
}

impl SampleBatch {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_code_round_trips() {
        for q in [
            Quality::Good,
            Quality::Uncertain(QualityReason::Stale),
            Quality::Bad(QualityReason::CommLost),
            Quality::Bad(QualityReason::DeviceRestarting),
            Quality::Bad(QualityReason::IllegalAddress),
            Quality::Bad(QualityReason::BadResponse),
        ] {
            let (l, r) = q.to_code();
            assert_eq!(Quality::from_code(l, r), q);
        }
    }

    #[test]
    fn sample_stays_small_for_the_hot_path() {
        assert!(
            std::mem::size_of::<Sample>() <= 64,
            "{}",
            std::mem::size_of::<Sample>()
        );
    }

    #[test]
    fn json_form_of_values() {
        assert_eq!(Value::F64(1.5).to_json(), serde_json::json!(1.5));
        assert_eq!(Value::I64(-3).to_json(), serde_json::json!(-3));
        assert_eq!(Value::Bool(true).to_json(), serde_json::json!(true));
        assert_eq!(Value::Str("on".into()).to_json(), serde_json::json!("on"));
        assert_eq!(Value::F64(f64::NAN).to_json(), serde_json::Value::Null);
    }
}
