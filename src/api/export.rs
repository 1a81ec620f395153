//! `GET /api/export` (raw samples) and `GET /api/export/alarms` (alarm transitions):
//! CSV or NDJSON streamed from the store's cursor, a chunk of rows at a time, so the
//! server holds a few thousand rows whatever the size of the export.
//!
//! The request is checked whole before the first byte: bearer token and the `read`
//! permission, the parameters, the bounds of `[api]` (`export_max_tags`,
//! `export_max_days`) and a free export slot (`max_concurrent_exports`). An error then
//! is the API's JSON error shape with its code; a store failure after the head has gone
//! out aborts the body, so a client never takes a cut export for a whole one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;

use super::auth::Session;
use super::http::graphql_error;
use super::permissions::Permission;
use super::{AppState, ClientAddr, Core, RequestId, checked_session, rate_limit, rate_limited};
use crate::alarms::Condition;
use crate::domain::{Quality, Sample, TagId, Timestamp, Value};
use crate::storage::export::Chunks;
use crate::storage::{AlarmEventRecord, AlarmHistoryFilter};
use crate::telemetry::names;

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Ndjson,
}

impl Format {
    fn parse(v: Option<&str>) -> Result<Self, Refusal> {
        match v.unwrap_or("csv") {
            "csv" => Ok(Format::Csv),
            "ndjson" => Ok(Format::Ndjson),
            other => Err(Refusal::bad(format!(
                "format `{other}`: expected csv or ndjson"
            ))),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

/// An export refused before it started: status, message, code.
#[derive(Debug)]
struct Refusal(StatusCode, String, &'static str);

impl Refusal {
    fn bad(msg: String) -> Self {
        Refusal(StatusCode::BAD_REQUEST, msg, "BAD_USER_INPUT")
    }

    /// The store failed; the details go to the log only.
    fn unavailable() -> Self {
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is unavailable, try again".into(),
            "UNAVAILABLE",
        )
    }

    fn into_response(self) -> Response {
        metrics::counter!(names::EXPORT_REFUSED, "code" => self.2).increment(1);
        graphql_error(self.0, &self.1, self.2)
    }
}

type Params = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

/// Who asks, with a slot: the session is valid, may read, is within its rate and an
/// export slot is free.
async fn admit(
    state: &AppState,
    rid: &str,
    client: Option<ClientAddr>,
    headers: &HeaderMap,
) -> Result<(Arc<Core>, Session, OwnedSemaphorePermit), Response> {
    let Some(core) = state.core.load_full() else {
        return Err(super::unavailable());
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let session = checked_session(&core, auth).await;
    let client = client.map(|c| c.0.to_string());
    if let Err(wait) = rate_limit(&core, &session, client.as_deref()) {
        return Err(rate_limited(rid, wait));
    }
    let Ok(session) = session else {
        let r = Refusal(
            StatusCode::UNAUTHORIZED,
            "authentication required".into(),
            "UNAUTHENTICATED",
        );
        return Err(r.into_response());
    };
    if !session.permits(Permission::Read) {
        let r = Refusal(
            StatusCode::FORBIDDEN,
            "the read permission is required".into(),
            "FORBIDDEN",
        );
        return Err(r.into_response());
    }
    let Ok(permit) = core.api.limits.exports.clone().try_acquire_owned() else {
        let r = Refusal(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} exports are running (api.max_concurrent_exports); try again when one ends",
                core.api.config.api.max_concurrent_exports
            ),
            "RATE_LIMITED",
        );
        return Err(r.into_response());
    };
    Ok((core, session, permit))
}

fn time_param(params: &HashMap<String, String>, name: &str) -> Result<Timestamp, Refusal> {
    let v = params
        .get(name)
        .ok_or_else(|| Refusal::bad(format!("`{name}` is required (RFC 3339)")))?;
    DateTime::parse_from_rfc3339(v)
        .map(|t| Timestamp::from_datetime(t.with_timezone(&Utc)))
        .map_err(|e| Refusal::bad(format!("`{name}` is not an RFC 3339 time: {e}")))
}

/// `from` and `to`, ordered and within `export_max_days`.
fn range(params: &HashMap<String, String>, core: &Core) -> Result<(Timestamp, Timestamp), Refusal> {
    let (from, to) = (time_param(params, "from")?, time_param(params, "to")?);
    if from >= to {
        return Err(Refusal::bad("`from` must be before `to`".into()));
    }
    let days = core.api.config.api.export_max_days;
    if to.micros_since(from) > i64::from(days) * 86_400_000_000 {
        return Err(Refusal::bad(format!(
            "the range is longer than {days} days (api.export_max_days); export it in parts"
        )));
    }
    Ok((from, to))
}

fn unknown_params(params: &HashMap<String, String>, known: &[&str]) -> Result<(), Refusal> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Refusal::bad(format!(
            "unknown parameter `{k}` (expected {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn params_of(params: Params) -> Result<HashMap<String, String>, Refusal> {
    params
        .map(|Query(p)| p)
        .map_err(|e| Refusal::bad(format!("query string: {e}")))
}

/// `GET /api/export?tagIds=1,2&from=…&to=…&format=csv|ndjson`: the raw samples of the
/// tags by tag then source time.
pub async fn export_history(
    State(state): State<AppState>,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let (core, session, permit) = match admit(&state, &rid, client.map(|c| c.0), &headers).await {
        Ok(admitted) => admitted,
        Err(resp) => return resp,
    };
    let checked = async {
        let params = params_of(params)?;
        unknown_params(&params, &["tagIds", "from", "to", "format"])?;
        let format = Format::parse(params.get("format").map(String::as_str))?;
        let (from, to) = range(&params, &core)?;
        let tags = tag_ids(&params, &core, &session)?;
        let names = tag_names(&core, &session, &tags).await?;
        Ok::<_, Refusal>((format, from, to, tags, names))
    };
    let (format, from, to, tags, names) = match checked.await {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let chunks = core
        .api
        .store
        .export_history(session.tenant, &tags, from, to);
    let encode = move |out: &mut String, s: &Sample| {
        let name = names.get(&s.tag).map_or("", String::as_str);
        match format {
            Format::Csv => sample_csv(out, s, name),
            Format::Ndjson => sample_ndjson(out, s, name),
        }
    };
    let head = match format {
        Format::Csv => "tag_id,tag,source_time,server_time,value,quality,quality_reason\n",
        Format::Ndjson => "",
    };
    stream(chunks, format, "history", head, encode, permit).await
}

/// `GET /api/export/alarms?from=…&to=…&ruleId=…&format=csv|ndjson`: the alarm
/// transitions of the tenant in the range, oldest first.
pub async fn export_alarms(
    State(state): State<AppState>,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let (core, session, permit) = match admit(&state, &rid, client.map(|c| c.0), &headers).await {
        Ok(admitted) => admitted,
        Err(resp) => return resp,
    };
    let checked = async {
        let params = params_of(params)?;
        unknown_params(&params, &["ruleId", "from", "to", "format"])?;
        let format = Format::parse(params.get("format").map(String::as_str))?;
        let (from, to) = range(&params, &core)?;
        let rule = match params.get("ruleId") {
            None => None,
            Some(r) => Some(r.parse().map_err(|_| {
                Refusal(
                    StatusCode::NOT_FOUND,
                    "alarm rule not found".into(),
                    "NOT_FOUND",
                )
            })?),
        };
        let names = tag_names(&core, &session, &[]).await?;
        let filter = AlarmHistoryFilter {
            rule,
            from: Some(from),
            to: Some(to),
        };
        Ok::<_, Refusal>((format, filter, names))
    };
    let (format, filter, names) = match checked.await {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let chunks = core.api.store.export_alarm_history(session.tenant, &filter);
    let encode = move |out: &mut String, e: &AlarmEventRecord| {
        let name = names.get(&e.event.tag).map_or("", String::as_str);
        match format {
            Format::Csv => alarm_csv(out, e, name),
            Format::Ndjson => alarm_ndjson(out, e, name),
        }
    };
    let head = match format {
        Format::Csv => {
            "id,at,rule_id,tag_id,tag,severity,from_state,to_state,active,value,message,user,comment\n"
        }
        Format::Ndjson => "",
    };
    stream(chunks, format, "alarm-history", head, encode, permit).await
}

/// The `tagIds` parameter: comma-separated, at most `export_max_tags`, every one the
/// caller's tenant's (else NOT_FOUND).
fn tag_ids(
    params: &HashMap<String, String>,
    core: &Core,
    session: &Session,
) -> Result<Vec<TagId>, Refusal> {
    let raw = params
        .get("tagIds")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    if raw.is_empty() {
        return Err(Refusal::bad(
            "`tagIds` is required: comma-separated tag ids".into(),
        ));
    }
    let max = core.api.config.api.export_max_tags;
    if raw.len() > max {
        return Err(Refusal::bad(format!(
            "{} tag ids: at most {max} per export (api.export_max_tags)",
            raw.len()
        )));
    }
    let tenant = core.api.runtime.tenant(session.tenant).ok_or_else(|| {
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "tenant not running".into(),
            "UNAVAILABLE",
        )
    })?;
    let mut tags: Vec<TagId> = Vec::with_capacity(raw.len());
    for r in raw {
        match r.parse::<TagId>() {
            Ok(tag) if tenant.cache.knows(tag) => tags.push(tag),
            _ => {
                return Err(Refusal(
                    StatusCode::NOT_FOUND,
                    format!("tag `{r}` not found"),
                    "NOT_FOUND",
                ));
            }
        }
    }
    tags.sort_unstable();
    tags.dedup();
    Ok(tags)
}

/// Names of the tenant's tags (of `only` when it is not empty).
async fn tag_names(
    core: &Core,
    session: &Session,
    only: &[TagId],
) -> Result<HashMap<TagId, String>, Refusal> {
    let tags = core
        .api
        .store
        .tags(session.tenant, None)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "export refused: the store did not list the tags");
            Refusal::unavailable()
        })?;
    Ok(tags
        .into_iter()
        .filter(|t| only.is_empty() || only.binary_search(&t.id).is_ok())
        .map(|t| (t.id, t.spec.name))
        .collect())
}

/// Waits for the first chunk (a store that fails at once gets a 503 with a code), then
/// streams the head and the rows. The export slot is held until the body ends.
async fn stream<T, F>(
    mut chunks: Chunks<T>,
    format: Format,
    what: &'static str,
    head: &'static str,
    encode: F,
    permit: OwnedSemaphorePermit,
) -> Response
where
    T: Send + 'static,
    F: Fn(&mut String, &T) + Send + 'static,
{
    let first = match chunks.next().await {
        Some(Err(e)) => {
            tracing::warn!(error = %e, "export failed before its first row");
            return Refusal::unavailable().into_response();
        }
        first => first,
    };
    metrics::counter!(names::EXPORTS, "kind" => what).increment(1);
    let rows = futures::stream::iter(first)
        .chain(chunks)
        .map(move |chunk| {
            let _held = &permit;
            let rows = chunk.inspect_err(|e| {
                tracing::warn!(error = %e, "export aborted: the store failed mid-stream");
            })?;
            let mut out = String::with_capacity(rows.len() * 96);
            for r in &rows {
                encode(&mut out, r);
            }
            metrics::counter!(names::EXPORTED_ROWS, "kind" => what).increment(rows.len() as u64);
            Ok::<_, crate::storage::Error>(Bytes::from(out))
        });
    let body =
        futures::stream::once(async move { Ok(Bytes::from_static(head.as_bytes())) }).chain(rows);
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let disposition = format!("attachment; filename=\"{what}.{}\"", format.extension());
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
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
