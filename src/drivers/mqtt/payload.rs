//! Payload parsers: JSON documents read by JSON pointer, plain payloads (a number,
//! `true` / `false`, or text), source timestamps and qualities. Every failure is a
//! [`Problem`] with a stable reason label, never a panic.

use crate::domain::{DataType, Quality, QualityReason, Timestamp, Value};
use crate::drivers::scaling;

use super::config::TimeUnit;

/// Why a message (or one value of it) could not be used; `reason()` labels metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("payload of {size} bytes is over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("payload is not UTF-8")]
    NotUtf8,
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("no value at `{0}`")]
    MissingValue(String),
    #[error("wrong type: {0}")]
    WrongType(String),
    #[error("unusable timestamp: {0}")]
    BadTime(String),
    #[error("unusable quality: {0}")]
    BadQuality(String),
}

impl Problem {
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::TooLarge { .. } => "too_large",
            Problem::NotUtf8 => "not_utf8",
            Problem::MalformedJson(_) => "malformed_json",
            Problem::MissingValue(_) => "missing_value",
            Problem::WrongType(_) => "wrong_type",
            Problem::BadTime(_) => "bad_time",
            Problem::BadQuality(_) => "bad_quality",
        }
    }

    /// The quality a mapped tag takes when its message had this problem; None when
    /// the tag keeps its value (a field left out of a partial update).
    pub fn quality(&self) -> Option<Quality> {
        match self {
            Problem::MissingValue(_) | Problem::BadTime(_) | Problem::BadQuality(_) => None,
            Problem::WrongType(_) => Some(Quality::Bad(QualityReason::TypeMismatch)),
            _ => Some(Quality::Bad(QualityReason::BadResponse)),
        }
    }
}

/// A payload parsed once per message, read by every tag of the topic.
#[derive(Debug)]
pub enum Parsed<'a> {
    Json(serde_json::Value),
    /// Not JSON: the trimmed text (plain tags only).
    Text(&'a str),
}

/// Parses a payload: JSON when it is JSON, else plain text. `needs_json` (some tag of
/// the topic reads a pointer) makes non-JSON an error.
pub fn parse(payload: &[u8], limit: usize, needs_json: bool) -> Result<Parsed<'_>, Problem> {
    if payload.len() > limit {
        return Err(Problem::TooLarge {
            size: payload.len(),
            limit,
        });
    }
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) => Ok(Parsed::Json(v)),
        Err(e) if needs_json => Err(Problem::MalformedJson(e.to_string())),
        Err(_) => {
            let text = std::str::from_utf8(payload).map_err(|_| Problem::NotUtf8)?;
            Ok(Parsed::Text(text.trim()))
        }
    }
}

/// The JSON value of a tag, by pointer (`None`: the whole payload).
pub fn lookup<'v>(
    parsed: &'v Parsed<'_>,
    pointer: Option<&str>,
) -> Result<JsonOrText<'v>, Problem> {
    match (parsed, pointer) {
        (Parsed::Json(v), None | Some("")) => Ok(JsonOrText::Json(v)),
        (Parsed::Json(v), Some(p)) => v
            .pointer(p)
            .map(JsonOrText::Json)
            .ok_or_else(|| Problem::MissingValue(p.to_string())),
        (Parsed::Text(t), None) => Ok(JsonOrText::Text(t)),
        (Parsed::Text(_), Some(_)) => Err(Problem::MalformedJson("not a JSON document".into())),
    }
}

#[derive(Debug, Clone, Copy)]
pub enum JsonOrText<'v> {
    Json(&'v serde_json::Value),
    Text(&'v str),
}

fn wrong(t: DataType, what: impl std::fmt::Display) -> Problem {
    Problem::WrongType(format!("{what} for a {t} tag"))
}

/// A tag's engineering value: the value must fit the tag's type, then scaling applies.
pub fn tag_value(
    v: JsonOrText<'_>,
    t: DataType,
    scale: f64,
    offset: f64,
) -> Result<Value, Problem> {
    let raw = match v {
        JsonOrText::Json(j) => json_raw(j, t)?,
        JsonOrText::Text(s) => text_raw(s, t)?,
    };
    scaling::from_raw(raw, t, scale, offset).map_err(Problem::WrongType)
}

fn json_raw(j: &serde_json::Value, t: DataType) -> Result<Value, Problem> {
    use serde_json::Value as J;
    Ok(match (j, t) {
        (J::String(s), DataType::String) => Value::Str(s.as_str().into()),
        (J::Bool(_) | J::Number(_), DataType::String) => Value::Str(j.to_string().into()),
        (J::Bool(b), DataType::Bool) => Value::Bool(*b),
        (J::Bool(b), _) => Value::I64(i64::from(*b)),
        (J::Number(n), _) => match n.as_i64() {
            Some(i) => Value::I64(i),
            None => match n.as_u64() {
                Some(u) => Value::F64(u as f64),
                None => Value::F64(n.as_f64().ok_or_else(|| wrong(t, n))?),
            },
        },
        (J::String(s), _) => text_raw(s.trim(), t)?,
        (J::Null, _) => return Err(wrong(t, "null")),
        (J::Array(_), _) => return Err(wrong(t, "an array")),
        (J::Object(_), _) => return Err(wrong(t, "an object")),
    })
}

fn text_raw(s: &str, t: DataType) -> Result<Value, Problem> {
    if t == DataType::String {
        return Ok(Value::Str(s.into()));
    }
    match s.to_ascii_lowercase().as_str() {
        "true" | "on" => return Ok(Value::Bool(true)),
        "false" | "off" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Value::I64(i));
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Value::F64(f)),
        _ => Err(wrong(t, format_args!("`{}`", truncate(s)))),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A source timestamp: RFC 3339 text, or a number since the epoch in `unit`.
pub fn timestamp(v: &serde_json::Value, unit: TimeUnit) -> Result<Timestamp, Problem> {
    let bad = || Problem::BadTime(truncate(&v.to_string()).to_string());
    match v {
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|dt| Timestamp::from_datetime(dt.with_timezone(&chrono::Utc)))
            .map_err(|_| bad()),
        serde_json::Value::Number(n) => {
            let x = n
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(bad)?;
            let unit = match unit {
                TimeUnit::Auto if x < 1e11 => TimeUnit::S,
                TimeUnit::Auto if x < 1e14 => TimeUnit::Ms,
                TimeUnit::Auto => TimeUnit::Us,
                u => u,
            };
            let us = match unit {
                TimeUnit::S => x * 1e6,
                TimeUnit::Ms => x * 1e3,
                _ => x,
            };
            // Up to the year 9999.
            if us > 253_402_300_799e6 {
                return Err(bad());
            }
            Ok(Timestamp(us as i64))
        }
        _ => Err(bad()),
    }
}

/// A quality field: `true`/`false`, `good`/`uncertain`/`bad` (any case), or an OPC DA
/// quality code (192 and up good, 64-191 uncertain, below 64 bad).
pub fn quality(v: &serde_json::Value) -> Result<Quality, Problem> {
    let flag = QualityReason::DeviceFlag;
    match v {
        serde_json::Value::Bool(true) => Ok(Quality::Good),
        serde_json::Value::Bool(false) => Ok(Quality::Bad(flag)),
        serde_json::Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "good" | "ok" => Ok(Quality::Good),
            "uncertain" => Ok(Quality::Uncertain(flag)),
            "bad" => Ok(Quality::Bad(flag)),
            _ => Err(Problem::BadQuality(truncate(s).to_string())),
        },
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(c) if c >= 192 => Ok(Quality::Good),
            Some(c) if c >= 64 => Ok(Quality::Uncertain(flag)),
            Some(_) => Ok(Quality::Bad(flag)),
            None => Err(Problem::BadQuality(n.to_string())),
        },
        other => Err(Problem::BadQuality(
            truncate(&other.to_string()).to_string(),
        )),
    }
}

/// Renders a command payload: `{value}` as JSON, `{tag}` as the contents of a JSON
/// string, `{ts}` as milliseconds since the epoch.
pub fn render_command(template: &str, tag: &str, value: &Value, now: Timestamp) -> String {
    let quoted = serde_json::Value::String(tag.to_string()).to_string();
    let inner = &quoted[1..quoted.len() - 1];
    template
        .replace("{value}", &value.to_json().to_string())
        .replace("{tag}", inner)
        .replace("{ts}", &(now.0 / 1000).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value_of(payload: &[u8], pointer: Option<&str>, t: DataType) -> Result<Value, Problem> {
        let parsed = parse(payload, 1024, pointer.is_some())?;
        tag_value(lookup(&parsed, pointer)?, t, 1.0, 0.0)
    }

    #[test]
    fn json_values_by_pointer() {
        let doc = br#"{"a": {"t": 21.5, "n": [1, 2]}, "on": true, "mode": "auto", "big": 70000, "s": "42"}"#;
        assert_eq!(
            value_of(doc, Some("/a/t"), DataType::F64),
            Ok(Value::F64(21.5))
        );
        assert_eq!(
            value_of(doc, Some("/a/n/1"), DataType::U16),
            Ok(Value::I64(2))
        );
        assert_eq!(
            value_of(doc, Some("/on"), DataType::Bool),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            value_of(doc, Some("/mode"), DataType::String),
            Ok(Value::Str("auto".into()))
        );
        assert_eq!(value_of(doc, Some("/s"), DataType::I32), Ok(Value::I64(42)));
        assert_eq!(
            value_of(doc, Some("/a/t"), DataType::String),
            Ok(Value::Str("21.5".into()))
        );
        let e = value_of(doc, Some("/big"), DataType::I16).expect_err("range");
        assert_eq!(e.reason(), "wrong_type");
        let e = value_of(doc, Some("/mode"), DataType::F64).expect_err("text");
        assert_eq!(e.reason(), "wrong_type");
        let e = value_of(doc, Some("/a"), DataType::F64).expect_err("object");
        assert_eq!(e.reason(), "wrong_type");
        let e = value_of(doc, Some("/nope"), DataType::F64).expect_err("missing");
        assert_eq!(e.reason(), "missing_value");
        assert_eq!(e.quality(), None);
        let e = value_of(b"{\"a\": ", Some("/a"), DataType::F64).expect_err("malformed");
        assert_eq!(e.reason(), "malformed_json");
        let e = parse(&[b'1'; 2000], 1024, false).expect_err("large");
        assert_eq!(e.reason(), "too_large");
    }

    #[test]
    fn plain_payloads() {
        assert_eq!(
            value_of(b" 18.4\n", None, DataType::F64),
            Ok(Value::F64(18.4))
        );
        assert_eq!(value_of(b"ON", None, DataType::Bool), Ok(Value::Bool(true)));
        assert_eq!(value_of(b"0", None, DataType::Bool), Ok(Value::Bool(false)));
        assert_eq!(
            value_of(b"running", None, DataType::String),
            Ok(Value::Str("running".into()))
        );
        assert_eq!(
            value_of(b"\"quoted\"", None, DataType::String),
            Ok(Value::Str("quoted".into()))
        );
        assert_eq!(
            value_of(b"running", None, DataType::F64).map_err(|e| e.reason()),
            Err("wrong_type")
        );
        assert_eq!(
            value_of(&[0xff, 0xfe], None, DataType::F64).map_err(|e| e.reason()),
            Err("not_utf8")
        );
        assert_eq!(
            value_of(b"inf", None, DataType::F64).map_err(|e| e.reason()),
            Err("wrong_type")
        );
    }

    #[test]
    fn timestamps_and_qualities() {
        use serde_json::json;
        let t = Timestamp(1_700_000_000_000_000);
        assert_eq!(timestamp(&json!(1_700_000_000), TimeUnit::Auto), Ok(t));
        assert_eq!(
            timestamp(&json!(1_700_000_000_000u64), TimeUnit::Auto),
            Ok(t)
        );
        assert_eq!(
            timestamp(&json!(1_700_000_000_000_000u64), TimeUnit::Auto),
            Ok(t)
        );
        assert_eq!(timestamp(&json!(1_700_000_000), TimeUnit::S), Ok(t));
        assert_eq!(
            timestamp(&json!("2023-11-14T22:13:20Z"), TimeUnit::Auto),
            Ok(t)
        );
        assert_eq!(
            timestamp(&json!("2023-11-14T23:13:20+01:00"), TimeUnit::Auto),
            Ok(t)
        );
        for bad in [json!("yesterday"), json!(-1), json!(true), json!(1e30)] {
            assert!(timestamp(&bad, TimeUnit::Auto).is_err(), "{bad}");
        }
        assert_eq!(quality(&json!("GOOD")), Ok(Quality::Good));
        assert_eq!(
            quality(&json!(false)),
            Ok(Quality::Bad(QualityReason::DeviceFlag))
        );
        assert_eq!(quality(&json!(192)), Ok(Quality::Good));
        assert_eq!(
            quality(&json!(80)),
            Ok(Quality::Uncertain(QualityReason::DeviceFlag))
        );
        assert_eq!(
            quality(&json!(0)),
            Ok(Quality::Bad(QualityReason::DeviceFlag))
        );
        assert!(quality(&json!("meh")).is_err());
        assert!(quality(&json!([1])).is_err());
    }

    #[test]
    fn commands_render() {
        let s = render_command(
            r#"{"tag": "{tag}", "value": {value}, "ts": {ts}}"#,
            "a\"b",
            &Value::F64(1.5),
            Timestamp(2_000_000),
        );
        let v: serde_json::Value = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(v["tag"], "a\"b");
        assert_eq!(v["value"], 1.5);
        assert_eq!(v["ts"], 2000);
    }

    proptest! {
        // The parsers take any bytes without panicking; a value they accept fits the
        // tag's type (a finite number, a string only for string tags).
        #[test]
        fn any_payload_is_parsed_or_refused(payload in proptest::collection::vec(any::<u8>(), 0..512),
                                            pointer in proptest::option::of("(/[a-z0-9]{0,3}){0,3}")) {
            for t in [DataType::Bool, DataType::I16, DataType::U64, DataType::F32, DataType::String] {
                if let Ok(v) = value_of(&payload, pointer.as_deref(), t) {
                    prop_assert_eq!(matches!(v, Value::Str(_)), t == DataType::String);
                    prop_assert!(v.as_f64().is_none_or(f64::is_finite));
                }
            }
            if let Ok(Parsed::Json(v)) = parse(&payload, 1024, false) {
                let _ = timestamp(&v, TimeUnit::Auto);
                let _ = quality(&v);
            }
        }

        #[test]
        fn any_json_text_is_parsed_or_refused(text in "\\PC{0,200}") {
            for t in [DataType::Bool, DataType::I32, DataType::F64, DataType::String] {
                let _ = value_of(text.as_bytes(), None, t);
                let _ = value_of(text.as_bytes(), Some("/a"), t);
            }
        }
    }
}
