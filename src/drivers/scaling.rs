//! Engineering values and the raw values of a data type: scaling
//! (`value = raw * scale + offset`), its inverse for writes, and range checks. Shared
//! by the drivers.

use crate::domain::{DataType, Value};

/// A 32-bit float as the decimal it was written as: the shortest decimal that reads
/// back as the same f32 (123.456f32 is 123.456, not 123.45600128173828).
pub fn widen_f32(x: f32) -> f64 {
    if !x.is_finite() {
        return f64::from(x);
    }
    x.to_string().parse::<f64>().unwrap_or(f64::from(x))
}

/// Applies `raw * scale + offset`; an unscaled value keeps its type.
pub fn scale(raw: Value, scale: f64, offset: f64) -> Value {
    if scale == 1.0 && offset == 0.0 {
        return raw;
    }
    match raw {
        Value::I64(v) => Value::F64(v as f64 * scale + offset),
        Value::F64(v) => Value::F64(v * scale + offset),
        other => other,
    }
}

/// The raw number to write for an engineering value: `(value - offset) / scale`.
pub fn unscale(value: f64, scale: f64, offset: f64) -> f64 {
    (value - offset) / scale
}

pub fn number(v: &Value) -> Result<f64, String> {
    match v {
        Value::F64(x) => Ok(*x),
        Value::I64(x) => Ok(*x as f64),
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        Value::Str(s) => Err(format!("`{s}` is not a number")),
    }
}

/// The whole raw number to write for an integer type, within `lo..=hi`. An unscaled
/// integer stays an integer (no trip through f64, which would round above 2^53).
pub fn integer(
    value: &Value,
    scale: f64,
    offset: f64,
    lo: i128,
    hi: i128,
    t: DataType,
) -> Result<i128, String> {
    let r = match value {
        Value::I64(v) if scale == 1.0 && offset == 0.0 => i128::from(*v),
        other => {
            let x = unscale(number(other)?, scale, offset);
            if !x.is_finite() {
                return Err(format!("{x} is not a finite number"));
            }
            let r = x.round();
            if (r - x).abs() > 1e-9 * x.abs().max(1.0) {
                return Err(format!("{x} is not a whole number, as {t} needs"));
            }
            if r < lo as f64 || r > hi as f64 {
                return Err(format!("{r} is out of range for {t} ({lo}..={hi})"));
            }
            r as i128
        }
    };
    if r < lo || r > hi {
        return Err(format!("{r} is out of range for {t} ({lo}..={hi})"));
    }
    Ok(r)
}

/// The raw value to send for an engineering value of a tag of type `t`: inverse
/// scaling, then a range check (integers stay integers, floats must be finite and fit).
pub fn to_raw(value: &Value, t: DataType, scale: f64, offset: f64) -> Result<Value, String> {
    let int = |lo: i128, hi: i128| integer(value, scale, offset, lo, hi, t);
    Ok(match t {
        DataType::Bool => match value {
            Value::Bool(b) => Value::Bool(*b),
            Value::I64(0) => Value::Bool(false),
            Value::I64(1) => Value::Bool(true),
            other => return Err(format!("{} is not a boolean", other.to_json())),
        },
        DataType::String => match value {
            Value::Str(s) => Value::Str(s.clone()),
            other => return Err(format!("{} is not a string", other.to_json())),
        },
        DataType::U16 => Value::I64(int(0, 65_535)? as i64),
        DataType::I16 => Value::I64(int(-32_768, 32_767)? as i64),
        DataType::U32 => Value::I64(int(0, 4_294_967_295)? as i64),
        DataType::I32 => Value::I64(int(-2_147_483_648, 2_147_483_647)? as i64),
        // Above i64::MAX a u64 is carried as a float (Value has no u64).
        DataType::U64 => {
            let r = int(0, i128::from(u64::MAX))?;
            i64::try_from(r).map_or(Value::F64(r as f64), Value::I64)
        }
        DataType::I64 => Value::I64(int(i128::from(i64::MIN), i128::from(i64::MAX))? as i64),
        DataType::F32 => {
            let x = unscale(number(value)?, scale, offset);
            if !x.is_finite() || x.abs() > f64::from(f32::MAX) {
                return Err(format!("{x} does not fit f32"));
            }
            Value::F64(x)
        }
        DataType::F64 => {
            let x = unscale(number(value)?, scale, offset);
            if !x.is_finite() {
                return Err(format!("{x} is not a finite number"));
            }
            Value::F64(x)
        }
    })
}

/// The engineering value of a raw value a device sent for a tag of type `t`: the
/// value must fit the type (a whole number in range for integer types, a finite
/// number for floats), then scaling applies.
pub fn from_raw(raw: Value, t: DataType, scale_: f64, offset: f64) -> Result<Value, String> {
    let checked = to_raw(&raw, t, 1.0, 0.0)?;
    Ok(scale(checked, scale_, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_values_widen_to_their_decimal() {
        assert_eq!(widen_f32(123.456), 123.456);
        assert_eq!(widen_f32(211.8), 211.8);
        assert_eq!(widen_f32(-0.1), -0.1);
        assert_eq!(widen_f32(16_777_217.0), 16_777_216.0);
        assert!(widen_f32(f32::NAN).is_nan());
        assert_eq!(widen_f32(f32::INFINITY), f64::INFINITY);
    }

    #[test]
    fn raw_values_are_range_checked_and_scaled() {
        assert_eq!(
            from_raw(Value::I64(215), DataType::I16, 0.1, 0.0),
            Ok(Value::F64(21.5))
        );
        assert!(from_raw(Value::I64(40_000), DataType::I16, 1.0, 0.0).is_err());
        assert!(from_raw(Value::F64(1.5), DataType::U16, 1.0, 0.0).is_err());
        assert_eq!(
            from_raw(Value::F64(3.0), DataType::U16, 1.0, 0.0),
            Ok(Value::I64(3))
        );
        assert!(from_raw(Value::Str("x".into()), DataType::F64, 1.0, 0.0).is_err());
        assert!(from_raw(Value::F64(f64::NAN), DataType::F64, 1.0, 0.0).is_err());
        assert_eq!(
            to_raw(&Value::F64(21.5), DataType::I16, 0.1, 0.0),
            Ok(Value::I64(215))
        );
        assert!(to_raw(&Value::F64(1e40), DataType::F32, 1.0, 0.0).is_err());
        assert_eq!(
            to_raw(&Value::I64(1), DataType::Bool, 1.0, 0.0),
            Ok(Value::Bool(true))
        );
        assert!(to_raw(&Value::I64(1), DataType::String, 1.0, 0.0).is_err());
    }
}
