//! How export rows are written: CSV (a header line; fields quoted when they hold a
//! comma, quote or line break; text a spreadsheet would run as a formula defused) or
//! NDJSON (one JSON object per line, `null` for NaN).

use std::fmt::Write as _;

use chrono::SecondsFormat;
use serde_json::json;

use crate::alarms::Condition;
use crate::api::ApiError;
use crate::domain::{Quality, Sample, Timestamp, Value};
use crate::storage::AlarmEventRecord;

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// The `format` parameter; CSV when absent.
    pub(super) fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v.unwrap_or("csv") {
            "csv" => Ok(Format::Csv),
            "ndjson" => Ok(Format::Ndjson),
            other => Err(ApiError::BadRequest(format!(
                "format `{other}`: expected csv or ndjson"
            ))),
        }
    }

    pub(super) fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    pub(super) fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }

    /// What comes before the sample rows.
    pub(super) fn sample_head(self) -> &'static str {
        match self {
            Format::Csv => "tag_id,tag,source_time,server_time,value,quality,quality_reason\n",
            Format::Ndjson => "",
        }
    }

    /// What comes before the alarm transition rows.
    pub(super) fn alarm_head(self) -> &'static str {
        match self {
            Format::Csv => {
                "id,at,rule_id,tag_id,tag,severity,from_state,to_state,active,value,message,user,comment\n"
            }
            Format::Ndjson => "",
        }
    }

    /// Appends one sample of the tag called `name`.
    pub(super) fn sample(self, out: &mut String, s: &Sample, name: &str) {
        match self {
            Format::Csv => sample_csv(out, s, name),
            Format::Ndjson => sample_ndjson(out, s, name),
        }
    }

    /// Appends one alarm transition of the tag called `name`.
    pub(super) fn alarm(self, out: &mut String, r: &AlarmEventRecord, name: &str) {
        match self {
            Format::Csv => alarm_csv(out, r, name),
            Format::Ndjson => alarm_ndjson(out, r, name),
        }
    }
}

fn time(t: Timestamp) -> String {
    t.to_datetime().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn quality_name(q: Quality) -> &'static str {
    match q {
        Quality::Good => "GOOD",
        Quality::Uncertain(_) => "UNCERTAIN",
        Quality::Bad(_) => "BAD",
    }
}

/// A CSV field: quoted (with doubled quotes) when it holds a comma, quote or line
/// break, or starts with a character a spreadsheet would take for a formula.
fn csv_field(out: &mut String, v: &str) {
    let formula = v.starts_with(['=', '+', '-', '@']) && v.parse::<f64>().is_err();
    if formula || v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if formula {
            out.push('\'');
        }
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

fn sample_csv(out: &mut String, s: &Sample, name: &str) {
    let _ = write!(out, "{},", s.tag);
    csv_field(out, name);
    let _ = write!(out, ",{},{},", time(s.source_time), time(s.server_time));
    match &s.value {
        Value::Str(v) => csv_field(out, v),
        v => {
            let _ = write!(out, "{v}");
        }
    }
    let reason = match s.quality {
        Quality::Good => "",
        q => q.reason().as_str(),
    };
    let _ = writeln!(out, ",{},{reason}", quality_name(s.quality));
}

fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Bool(b) => json!(b),
        Value::I64(i) => json!(i),
        // JSON has no NaN or infinity: null, as the GraphQL API shows them
        Value::F64(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Str(s) => json!(s.as_ref()),
    }
}

fn sample_ndjson(out: &mut String, s: &Sample, name: &str) {
    let reason = match s.quality {
        Quality::Good => serde_json::Value::Null,
        q => json!(q.reason().as_str()),
    };
    let row = json!({
        "tagId": s.tag.to_string(),
        "tag": name,
        "sourceTime": time(s.source_time),
        "serverTime": time(s.server_time),
        "value": value_json(&s.value),
        "quality": quality_name(s.quality),
        "qualityReason": reason,
    });
    let _ = writeln!(out, "{row}");
}

fn alarm_csv(out: &mut String, r: &AlarmEventRecord, name: &str) {
    let e = &r.event;
    let _ = write!(
        out,
        "{},{},{},{},",
        r.id,
        time(e.alarm.since),
        e.rule,
        e.tag
    );
    csv_field(out, name);
    let _ = write!(
        out,
        ",{},{},{},{},",
        e.severity.as_str(),
        e.from.name(),
        e.alarm.state.name(),
        e.alarm.condition == Condition::Active
    );
    if let Some(v) = e.alarm.value {
        let _ = write!(out, "{v}");
    }
    out.push(',');
    csv_field(out, &e.alarm.message);
    out.push(',');
    csv_field(out, e.user.as_deref().unwrap_or(""));
    out.push(',');
    csv_field(out, e.comment.as_deref().unwrap_or(""));
    out.push('\n');
}

fn alarm_ndjson(out: &mut String, r: &AlarmEventRecord, name: &str) {
    let e = &r.event;
    let row = json!({
        "id": r.id.to_string(),
        "at": time(e.alarm.since),
        "ruleId": e.rule.to_string(),
        "tagId": e.tag.to_string(),
        "tag": name,
        "severity": e.severity.as_str(),
        "fromState": e.from.name(),
        "toState": e.alarm.state.name(),
        "active": e.alarm.condition == Condition::Active,
        "value": e.alarm.value.and_then(serde_json::Number::from_f64),
        "message": e.alarm.message,
        "user": e.user,
        "comment": e.comment,
    });
    let _ = writeln!(out, "{row}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TagId;

    #[test]
    fn csv_fields_are_quoted_when_needed_and_formulas_defused() {
        let field = |v: &str| {
            let mut s = String::new();
            csv_field(&mut s, v);
            s
        };
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("=cmd()"), "\"'=cmd()\"");
        assert_eq!(field("-12.5"), "-12.5");
    }

    #[test]
    fn samples_render_in_both_formats() {
        let s = Sample {
            tag: TagId(7),
            value: Value::F64(1.5),
            quality: Quality::Bad(crate::domain::QualityReason::CommLost),
            source_time: Timestamp(1_000_000),
            server_time: Timestamp(2_000_001),
        };
        let mut csv = String::new();
        sample_csv(&mut csv, &s, "flow, main");
        assert_eq!(
            csv,
            "7,\"flow, main\",1970-01-01T00:00:01.000000Z,1970-01-01T00:00:02.000001Z,1.5,BAD,comm_lost\n"
        );
        let mut nd = String::new();
        sample_ndjson(&mut nd, &s, "flow");
        let v: serde_json::Value = serde_json::from_str(nd.trim_end()).expect("one json line");
        assert_eq!(v["tagId"], "7");
        assert_eq!(v["value"], 1.5);
        assert_eq!(v["qualityReason"], "comm_lost");
        let nan = Sample {
            value: Value::F64(f64::NAN),
            ..s
        };
        let mut nd = String::new();
        sample_ndjson(&mut nd, &nan, "flow");
        assert!(nd.contains("\"value\":null"), "{nd}");
    }
}
