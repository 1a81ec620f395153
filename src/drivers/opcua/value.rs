//! OPC UA values and status codes in ThermaCore's terms: a `DataValue` becomes a
//! [`Sample`] (value checked against the tag's type and scaled, StatusCode as
//! [`Quality`], source and server timestamps kept), and a written engineering value
//! becomes a `Variant` of exactly the node's data type, or a clear refusal.

use std::sync::Arc;

use opcua::types::{
    DataTypeId, DataValue, DateTime, StatusCode, SubStatusCode, UAString, Variant,
    VariantScalarTypeId,
};

use crate::domain::{DataType, Quality, QualityReason, Sample, Tag, Timestamp, Value};
use crate::drivers::scaling;

/// A status code's quality: the severity sets the level, the code the reason.
pub fn quality(status: StatusCode) -> Quality {
    use SubStatusCode as S;
    if status.is_good() {
        return Quality::Good;
    }
    let reason = match status.sub_code() {
        S::BadNodeIdUnknown | S::BadNodeIdInvalid | S::BadAttributeIdInvalid => {
            QualityReason::NodeUnknown
        }
        S::BadNotReadable | S::BadUserAccessDenied | S::BadNotWritable => {
            QualityReason::AccessDenied
        }
        S::BadSensorFailure | S::UncertainSensorNotAccurate => QualityReason::SensorFailure,
        S::BadOutOfService => QualityReason::OutOfService,
        S::BadDeviceFailure => QualityReason::DeviceFailure,
        S::BadConfigurationError | S::BadNotConnected | S::UncertainConfigurationError => {
            QualityReason::ConfigError
        }
        S::BadCommunicationError | S::BadNoCommunication | S::BadConnectionClosed => {
            QualityReason::CommLost
        }
        S::BadOutOfRange | S::UncertainEngineeringUnitsExceeded => QualityReason::OutOfRange,
        S::BadTypeMismatch => QualityReason::TypeMismatch,
        S::UncertainLastUsableValue | S::BadWaitingForInitialData => QualityReason::LastUsable,
        _ => QualityReason::DeviceStatus,
    };
    if status.is_uncertain() {
        Quality::Uncertain(reason)
    } else {
        Quality::Bad(reason)
    }
}

/// Codes that say the node itself is the problem: the node goes into the bad-node
/// cache instead of being asked for again at every cycle.
pub fn is_bad_node(status: StatusCode) -> bool {
    use SubStatusCode as S;
    matches!(
        status.sub_code(),
        S::BadNodeIdUnknown
            | S::BadNodeIdInvalid
            | S::BadAttributeIdInvalid
            | S::BadNotReadable
            | S::BadUserAccessDenied
            | S::BadIndexRangeInvalid
            | S::BadDataEncodingInvalid
    )
}

fn micros(dt: &DateTime) -> Option<Timestamp> {
    (!dt.is_null()).then(|| Timestamp(dt.as_chrono().timestamp_micros()))
}

/// The raw reading of a variant, before the tag's type check and scaling. DateTime
/// reads as milliseconds since the Unix epoch, or RFC 3339 text for string tags.
pub fn raw(v: &Variant, t: DataType) -> Result<Value, String> {
    Ok(match v {
        Variant::Boolean(b) => Value::Bool(*b),
        Variant::SByte(x) => Value::I64(i64::from(*x)),
        Variant::Byte(x) => Value::I64(i64::from(*x)),
        Variant::Int16(x) => Value::I64(i64::from(*x)),
        Variant::UInt16(x) => Value::I64(i64::from(*x)),
        Variant::Int32(x) => Value::I64(i64::from(*x)),
        Variant::UInt32(x) => Value::I64(i64::from(*x)),
        Variant::Int64(x) => Value::I64(*x),
        Variant::UInt64(x) => match i64::try_from(*x) {
            Ok(x) => Value::I64(x),
            // Above i64: as a float (u64 tags take it through from_raw's range check).
            Err(_) => Value::F64(*x as f64),
        },
        Variant::Float(x) => Value::F64(crate::drivers::scaling::widen_f32(*x)),
        Variant::Double(x) => Value::F64(*x),
        Variant::String(s) => Value::Str(Arc::from(s.as_ref())),
        Variant::LocalizedText(t) => Value::Str(Arc::from(t.text.as_ref())),
        Variant::DateTime(dt) if t == DataType::String => {
            Value::Str(Arc::from(dt.as_chrono().to_rfc3339().as_str()))
        }
        Variant::DateTime(dt) => Value::I64(dt.as_chrono().timestamp_millis()),
        Variant::Empty => return Err("the server sent no value".into()),
        Variant::Array(_) => return Err("the node holds an array, not a scalar".into()),
        other => {
            return Err(format!(
                "a {} value has no ThermaCore mapping",
                other
                    .scalar_type_id()
                    .map_or("non-scalar".to_string(), |t| format!("{t:?}"))
            ));
        }
    })
}

/// The sample of one `DataValue` for `tag`; `now` is the receipt time.
pub fn sample(tag: &Tag, dv: &DataValue, now: Timestamp) -> Sample {
    let status = dv.status.unwrap_or(StatusCode::Good);
    let source_time = dv
        .source_timestamp
        .as_ref()
        .and_then(micros)
        .or_else(|| dv.server_timestamp.as_ref().and_then(micros))
        .unwrap_or(now);
    let mut quality = quality(status);
    let value = match dv.value.as_ref() {
        Some(v) => match raw(v, tag.spec.data_type)
            .and_then(|r| scaling::from_raw(r, tag.spec.data_type, tag.spec.scale, tag.spec.offset))
        {
            Ok(v) => v,
            Err(_) => {
                // A bad status may come without a usable value; a good one must not.
                if quality.is_good() {
                    quality = Quality::Bad(QualityReason::TypeMismatch);
                }
                placeholder(tag.spec.data_type)
            }
        },
        None => {
            if quality.is_good() {
                quality = Quality::Bad(QualityReason::BadResponse);
            }
            placeholder(tag.spec.data_type)
        }
    };
    Sample {
        tag: tag.id,
        value,
        quality,
        source_time,
        server_time: now,
    }
}

/// The value a Bad sample carries when the device sent none.
pub fn placeholder(t: DataType) -> Value {
    match t {
        DataType::Bool => Value::Bool(false),
        DataType::F32 | DataType::F64 => Value::F64(0.0),
        DataType::String => Value::Str(Arc::from("")),
        _ => Value::I64(0),
    }
}

/// A Bad sample of `tag` (a node in the bad-node cache, a read that failed).
pub fn bad(tag: &Tag, reason: QualityReason, now: Timestamp) -> Sample {
    Sample {
        tag: tag.id,
        value: placeholder(tag.spec.data_type),
        quality: Quality::Bad(reason),
        source_time: now,
        server_time: now,
    }
}

/// The scalar type of a node's DataType attribute, for the types a write can produce.
pub fn scalar_type(data_type: &opcua::types::NodeId) -> Option<VariantScalarTypeId> {
    use VariantScalarTypeId as V;
    let id = data_type.as_data_type_id().ok()?;
    Some(match id {
        DataTypeId::Boolean => V::Boolean,
        DataTypeId::SByte => V::SByte,
        DataTypeId::Byte => V::Byte,
        DataTypeId::Int16 => V::Int16,
        DataTypeId::UInt16 => V::UInt16,
        DataTypeId::Int32 => V::Int32,
        DataTypeId::UInt32 => V::UInt32,
        DataTypeId::Int64 => V::Int64,
        DataTypeId::UInt64 => V::UInt64,
        DataTypeId::Float => V::Float,
        DataTypeId::Double => V::Double,
        DataTypeId::String => V::String,
        DataTypeId::DateTime | DataTypeId::UtcTime => V::DateTime,
        _ => return None,
    })
}

/// The ThermaCore data type that reads a node of `scalar` type without loss (import).
pub fn data_type_for(scalar: VariantScalarTypeId) -> Option<DataType> {
    use VariantScalarTypeId as V;
    Some(match scalar {
        V::Boolean => DataType::Bool,
        V::SByte | V::Int16 => DataType::I16,
        V::Byte | V::UInt16 => DataType::U16,
        V::Int32 => DataType::I32,
        V::UInt32 => DataType::U32,
        V::Int64 | V::DateTime => DataType::I64,
        V::UInt64 => DataType::U64,
        V::Float => DataType::F32,
        V::Double => DataType::F64,
        V::String | V::LocalizedText => DataType::String,
        _ => return None,
    })
}

/// The variant to write for engineering value `value` of `tag` to a node of type
/// `node`: inverse scaling and the tag's own range check first, then the node's type,
/// which must hold the raw value exactly (no silent cast: 70000 into an Int16 node,
/// 1.5 into an integer node or text into a number node are refused).
pub fn to_variant(value: &Value, tag: &Tag, node: VariantScalarTypeId) -> Result<Variant, String> {
    use VariantScalarTypeId as V;
    let raw = scaling::to_raw(value, tag.spec.data_type, tag.spec.scale, tag.spec.offset)?;
    let int = |lo: i128, hi: i128| -> Result<i128, String> {
        let x: i128 = match &raw {
            Value::I64(x) => i128::from(*x),
            Value::F64(x) if x.fract() == 0.0 && x.is_finite() && x.abs() < 1.8e19 => *x as i128,
            Value::F64(x) => return Err(format!("{x} is not a whole number for a {node:?} node")),
            Value::Bool(_) | Value::Str(_) => {
                return Err(format!("{} does not fit a {node:?} node", raw.to_json()));
            }
        };
        if (lo..=hi).contains(&x) {
            Ok(x)
        } else {
            Err(format!(
                "{x} is out of range for a {node:?} node ({lo}..={hi})"
            ))
        }
    };
    let float = || -> Result<f64, String> {
        match &raw {
            Value::F64(x) if x.is_finite() => Ok(*x),
            Value::I64(x) => Ok(*x as f64),
            other => Err(format!("{} does not fit a {node:?} node", other.to_json())),
        }
    };
    // The casts below are exact: each value was range-checked for its type.
    Ok(match node {
        V::Boolean => match &raw {
            Value::Bool(b) => Variant::Boolean(*b),
            other => return Err(format!("{} does not fit a Boolean node", other.to_json())),
        },
        V::SByte => Variant::SByte(int(i8::MIN.into(), i8::MAX.into())? as i8),
        V::Byte => Variant::Byte(int(0, u8::MAX.into())? as u8),
        V::Int16 => Variant::Int16(int(i16::MIN.into(), i16::MAX.into())? as i16),
        V::UInt16 => Variant::UInt16(int(0, u16::MAX.into())? as u16),
        V::Int32 => Variant::Int32(int(i32::MIN.into(), i32::MAX.into())? as i32),
        V::UInt32 => Variant::UInt32(int(0, u32::MAX.into())? as u32),
        V::Int64 => Variant::Int64(int(i64::MIN.into(), i64::MAX.into())? as i64),
        V::UInt64 => Variant::UInt64(int(0, u64::MAX.into())? as u64),
        V::Float => {
            let x = float()?;
            if x.abs() > f64::from(f32::MAX) {
                return Err(format!("{x} is out of range for a Float node"));
            }
            Variant::Float(x as f32)
        }
        V::Double => Variant::Double(float()?),
        V::String => match &raw {
            Value::Str(s) => Variant::String(UAString::from(s.as_ref())),
            other => return Err(format!("{} does not fit a String node", other.to_json())),
        },
        V::DateTime => match &raw {
            Value::I64(ms) => chrono::DateTime::from_timestamp_millis(*ms)
                .map(|t| Variant::DateTime(Box::new(DateTime::from(t))))
                .ok_or_else(|| format!("{ms} ms is not a representable time"))?,
            Value::Str(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| Variant::DateTime(Box::new(DateTime::from(t.to_utc()))))
                .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))?,
            other => return Err(format!("{} does not fit a DateTime node", other.to_json())),
        },
        other => return Err(format!("writing a {other:?} node is not supported")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeviceId, TagId, TagSpec, TenantId};

    fn tag(t: DataType, scale: f64) -> Tag {
        Tag {
            id: TagId(1),
            tenant: TenantId(1),
            device: DeviceId(1),
            spec: TagSpec {
                name: "t".into(),
                unit: None,
                address: "ns=2;s=x".into(),
                data_type: t,
                scale,
                offset: 0.0,
                eng_unit: None,
                deadband: 0.0,
                writable: true,
            },
        }
    }

    #[test]
    fn status_codes_become_qualities() {
        assert_eq!(quality(StatusCode::Good), Quality::Good);
        assert_eq!(
            quality(StatusCode::BadNodeIdUnknown),
            Quality::Bad(QualityReason::NodeUnknown)
        );
        assert_eq!(
            quality(StatusCode::UncertainLastUsableValue),
            Quality::Uncertain(QualityReason::LastUsable)
        );
        assert_eq!(
            quality(StatusCode::BadSensorFailure),
            Quality::Bad(QualityReason::SensorFailure)
        );
        assert_eq!(
            quality(StatusCode::BadInternalError),
            Quality::Bad(QualityReason::DeviceStatus)
        );
        assert!(is_bad_node(StatusCode::BadNodeIdUnknown));
        assert!(!is_bad_node(StatusCode::BadSensorFailure));
    }

    #[test]
    fn data_values_become_samples() {
        let now = Timestamp(5);
        let t = tag(DataType::F64, 10.0);
        let mut dv = DataValue::new_now(Variant::Float(1.5));
        let s = sample(&t, &dv, now);
        assert_eq!((s.value, s.quality), (Value::F64(15.0), Quality::Good));
        assert!(s.source_time.0 > 0 && s.server_time == now);
        dv.value = Some(Variant::String("x".into()));
        assert_eq!(
            sample(&t, &dv, now).quality,
            Quality::Bad(QualityReason::TypeMismatch)
        );
        dv.status = Some(StatusCode::BadSensorFailure);
        assert_eq!(
            sample(&t, &dv, now).quality,
            Quality::Bad(QualityReason::SensorFailure)
        );
        let i = tag(DataType::I16, 1.0);
        let dv = DataValue::new_now(Variant::Int32(70_000));
        assert_eq!(
            sample(&i, &dv, now).quality,
            Quality::Bad(QualityReason::TypeMismatch)
        );
        let d = tag(DataType::I64, 1.0);
        let when = chrono::DateTime::from_timestamp_millis(1_700_000_000_123).expect("time");
        let dv = DataValue::new_now(Variant::DateTime(Box::new(DateTime::from(when))));
        assert_eq!(sample(&d, &dv, now).value, Value::I64(1_700_000_000_123));
    }

    #[test]
    fn writes_fit_the_node_exactly() {
        use VariantScalarTypeId as V;
        let f = tag(DataType::F64, 1.0);
        assert_eq!(
            to_variant(&Value::F64(2.5), &f, V::Float),
            Ok(Variant::Float(2.5))
        );
        assert_eq!(
            to_variant(&Value::F64(3.0), &f, V::Int16),
            Ok(Variant::Int16(3))
        );
        assert!(to_variant(&Value::F64(2.5), &f, V::Int16).is_err());
        assert!(
            to_variant(&Value::F64(70_000.0), &f, V::Int16)
                .expect_err("range")
                .contains("out of range")
        );
        assert!(to_variant(&Value::F64(1.0), &f, V::Boolean).is_err());
        assert!(to_variant(&Value::F64(-1.0), &f, V::UInt32).is_err());
        let b = tag(DataType::Bool, 1.0);
        assert_eq!(
            to_variant(&Value::Bool(true), &b, V::Boolean),
            Ok(Variant::Boolean(true))
        );
        let s = tag(DataType::String, 1.0);
        assert_eq!(
            to_variant(&Value::Str("on".into()), &s, V::String),
            Ok(Variant::String("on".into()))
        );
        assert!(to_variant(&Value::Str("on".into()), &s, V::Double).is_err());
        let i = tag(DataType::I64, 1.0);
        assert_eq!(
            to_variant(&Value::I64(u32::MAX.into()), &i, V::UInt32),
            Ok(Variant::UInt32(u32::MAX))
        );
        assert!(matches!(
            to_variant(&Value::I64(1_700_000_000_000), &i, V::DateTime),
            Ok(Variant::DateTime(_))
        ));
        let scaled = tag(DataType::I16, 0.1);
        assert_eq!(
            to_variant(&Value::F64(2.5), &scaled, V::Int16),
            Ok(Variant::Int16(25))
        );
    }
}
