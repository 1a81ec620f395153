//! How a sample's value kind and quality are packed into one integer column, shared
//! by both backends: `code = kind | level << 4 | reason << 8`.

use crate::domain::{Quality, Value, ValueKind};

/// Packs value kind and quality.
pub fn encode_code(value: &Value, quality: Quality) -> i32 {
    let (level, reason) = quality.to_code();
    i32::from(value.kind() as u8) | (i32::from(level) << 4) | (i32::from(reason) << 8)
}

/// Splits a stored code into value kind and quality; `None` for an unknown kind.
pub fn decode_code(code: i32) -> Option<(ValueKind, Quality)> {
    let kind = ValueKind::from_code((code & 0x0f) as u8)?;
    let quality = Quality::from_code(((code >> 4) & 0x0f) as u8, ((code >> 8) & 0xff) as u8);
    Some((kind, quality))
}

/// Rebuilds a value from its stored columns.
pub fn decode_value(
    kind: ValueKind,
    num: Option<f64>,
    int: Option<i64>,
    text: Option<String>,
) -> Option<Value> {
    Some(match kind {
        ValueKind::Bool => Value::Bool(int.or(num.map(|n| n as i64))? != 0),
        ValueKind::I64 => Value::I64(int.or(num.map(|n| n as i64))?),
        ValueKind::F64 => Value::F64(num.or(int.map(|i| i as f64))?),
        ValueKind::Str => Value::Str(text?.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::QualityReason;

    #[test]
    fn code_round_trips() {
        for (v, q) in [
            (Value::F64(1.0), Quality::Good),
            (Value::Bool(true), Quality::Bad(QualityReason::CommLost)),
            (
                Value::Str("x".into()),
                Quality::Uncertain(QualityReason::Stale),
            ),
            (Value::I64(7), Quality::Bad(QualityReason::DeviceRestarting)),
        ] {
            let code = encode_code(&v, q);
            assert_eq!(decode_code(code), Some((v.kind(), q)));
        }
        assert_eq!(decode_code(0x0f), None);
    }
}
