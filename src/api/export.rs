//! `GET /api/export` (raw samples) and `GET /api/export/alarms` (alarm transitions):
//! CSV or NDJSON streamed from the store's cursor, a chunk of rows at a time, so the
//! server holds a few thousand rows whatever the size of the export.
//!
//! The request is checked whole before the first byte: bearer token and the `read`
//! permission, the parameters, the bounds of `[api]` (`export_max_tags`,
//! `export_max_days`) and a free export slot (`max_concurrent_exports`). An error then
//! is the API's JSON error shape with its code; a store failure after the head has gone
//! out aborts the body, so a client never takes a cut export for a whole one.

mod format;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use super::auth::Session;
use super::graphql::tenant_tags;
use super::limits::check_raw_range;
use super::permissions::Permission;
use super::{
    ApiError, AppState, ClientAddr, Core, RequestId, checked_session, rate_limit, rate_limited,
};
use crate::domain::{AuditOutcome, Sample, TagId, Timestamp};
use crate::storage::export::Chunks;
use crate::storage::{AlarmEventRecord, AlarmHistoryFilter};
use crate::telemetry::names;
use format::Format;

type Params = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

/// A refusal before the first byte, counted and in the API's JSON error shape.
fn refuse(e: ApiError, rid: &str) -> Response {
    metrics::counter!(names::EXPORT_REFUSED, "code" => e.code()).increment(1);
    e.into_http(rid)
}

/// Who asks, with a slot: the session is valid, may read, is within its rate and an
/// export slot is free.
async fn admit(
    state: &AppState,
    rid: &str,
    client: Option<ClientAddr>,
    headers: &HeaderMap,
    params: &Params,
    what: What,
) -> Result<Admitted, Response> {
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
        return Err(refuse(ApiError::Unauthenticated, rid));
    };
    if !session.permits(Permission::Read) {
        let e = ApiError::Forbidden;
        let summary = params_summary(params);
        audit(
            &core,
            &session,
            what,
            rid,
            client.as_deref(),
            &summary,
            Err(&e),
        )
        .await;
        return Err(refuse(e, rid));
    }
    let Ok(permit) = core.api.limits.exports.clone().try_acquire_owned() else {
        tracing::debug!(
            max = core.api.config.api.max_concurrent_exports,
            "export refused: every slot is taken"
        );
        return Err(refuse(
            ApiError::RateLimited {
                retry_after_ms: 1000,
            },
            rid,
        ));
    };
    Ok(Admitted {
        core,
        session,
        permit,
        client,
        what,
        summary: params_summary(params),
    })
}

/// What an export is, for its audit record: action and resource type.
type What = (&'static str, &'static str);
const HISTORY: What = ("GET /api/export", "history");
const ALARMS: What = ("GET /api/export/alarms", "alarm_history");

/// An export that may start: its caller, a slot, where it came from, what it asked.
struct Admitted {
    core: Arc<Core>,
    session: Session,
    permit: OwnedSemaphorePermit,
    client: Option<String>,
    what: What,
    summary: String,
}

impl Admitted {
    /// Audits the checked request; a refusal becomes its response.
    async fn audited<T>(&self, checked: Result<T, ApiError>, rid: &str) -> Result<T, Response> {
        let (core, session) = (&self.core, &self.session);
        let outcome = checked.as_ref().map(|_| ());
        let client = self.client.as_deref();
        audit(
            core,
            session,
            self.what,
            rid,
            client,
            &self.summary,
            outcome,
        )
        .await;
        checked.map_err(|e| refuse(e, rid))
    }
}

/// The parameters as asked, for the audit record (they hold no secrets).
fn params_summary(params: &Params) -> String {
    match params {
        Ok(Query(p)) => {
            let sorted: std::collections::BTreeMap<_, _> = p.iter().collect();
            serde_json::to_string(&sorted).unwrap_or_else(|_| "{}".into())
        }
        Err(_) => "{}".into(),
    }
}

/// One audit record per export asked by a signed-in caller: started (Success), denied
/// or refused (Failed, with the error code). The rows an export then streams are in
/// `thermacore_exported_rows_total`.
async fn audit(
    core: &Core,
    session: &Session,
    (action, resource): What,
    rid: &str,
    client: Option<&str>,
    summary: &str,
    outcome: Result<(), &ApiError>,
) {
    let mut record = super::audit::http(session, action, resource, rid, client);
    record.summary = summary.to_string();
    if let Err(e) = outcome {
        record.outcome = match e {
            ApiError::Forbidden => AuditOutcome::Denied,
            _ => AuditOutcome::Failed,
        };
        record.reason = Some(e.code().to_string());
    }
    super::audit::write(core.api.store.as_ref(), record).await;
}

/// The parameters both exports take: only `known` ones, a `format`, and `from` /
/// `to` within `api.export_max_days`.
struct Asked {
    params: HashMap<String, String>,
    format: Format,
    from: Timestamp,
    to: Timestamp,
}

impl Asked {
    fn parse(params: Params, known: &[&str], core: &Core) -> Result<Self, ApiError> {
        let Query(params) =
            params.map_err(|e| ApiError::BadRequest(format!("query string: {e}")))?;
        if let Some(k) = params.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter `{k}` (expected {})",
                known.join(", ")
            )));
        }
        let format = Format::parse(params.get("format").map(String::as_str))?;
        let (from, to) = (time_param(&params, "from")?, time_param(&params, "to")?);
        check_raw_range(from, to, core.api.config.api.export_max_days)?;
        Ok(Asked {
            params,
            format,
            from,
            to,
        })
    }
}

fn time_param(params: &HashMap<String, String>, name: &str) -> Result<Timestamp, ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let v = params
        .get(name)
        .ok_or_else(|| bad(format!("`{name}` is required (RFC 3339)")))?;
    DateTime::parse_from_rfc3339(v)
        .map(|t| Timestamp::from_datetime(t.with_timezone(&Utc)))
        .map_err(|e| bad(format!("`{name}` is not an RFC 3339 time: {e}")))
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
    let admitted = match admit(
        &state,
        &rid,
        client.map(|c| c.0),
        &headers,
        &params,
        HISTORY,
    )
    .await
    {
        Ok(admitted) => admitted,
        Err(resp) => return resp,
    };
    let (core, session) = (&admitted.core, &admitted.session);
    let checked = async {
        let asked = Asked::parse(params, &["tagIds", "from", "to", "format"], core)?;
        let tags = tag_ids(&asked.params, core, session)?;
        let names = tag_names(core, session, &tags).await?;
        Ok::<_, ApiError>((asked, tags, names))
    };
    let (asked, tags, names) = match admitted.audited(checked.await, &rid).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let Admitted {
        core,
        session,
        permit,
        ..
    } = admitted;
    let chunks = core
        .api
        .store
        .export_history(session.tenant, &tags, asked.from, asked.to);
    let format = asked.format;
    let encode = move |out: &mut String, s: &Sample| {
        format.sample(out, s, names.get(&s.tag).map_or("", String::as_str));
    };
    let head = format.sample_head();
    stream(chunks, format, "history", head, encode, permit, &rid).await
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
    let admitted = match admit(&state, &rid, client.map(|c| c.0), &headers, &params, ALARMS).await {
        Ok(admitted) => admitted,
        Err(resp) => return resp,
    };
    let (core, session) = (&admitted.core, &admitted.session);
    let checked = async {
        let asked = Asked::parse(params, &["ruleId", "from", "to", "format"], core)?;
        let rule = match asked.params.get("ruleId") {
            None => None,
            Some(r) => Some(r.parse().map_err(|_| ApiError::NotFound("alarm rule"))?),
        };
        let names = tag_names(core, session, &[]).await?;
        Ok::<_, ApiError>((asked, rule, names))
    };
    let (asked, rule, names) = match admitted.audited(checked.await, &rid).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let Admitted {
        core,
        session,
        permit,
        ..
    } = admitted;
    let filter = AlarmHistoryFilter {
        rule,
        from: Some(asked.from),
        to: Some(asked.to),
    };
    let chunks = core.api.store.export_alarm_history(session.tenant, &filter);
    let format = asked.format;
    let encode = move |out: &mut String, e: &AlarmEventRecord| {
        format.alarm(out, e, names.get(&e.event.tag).map_or("", String::as_str));
    };
    let head = format.alarm_head();
    stream(chunks, format, "alarm-history", head, encode, permit, &rid).await
}

/// The `tagIds` parameter: comma-separated, at most `export_max_tags`, every one the
/// caller's tenant's (else NOT_FOUND); sorted, each once.
fn tag_ids(
    params: &HashMap<String, String>,
    core: &Core,
    session: &Session,
) -> Result<Vec<TagId>, ApiError> {
    let raw: Vec<&str> = params
        .get("tagIds")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if raw.is_empty() {
        return Err(ApiError::BadRequest(
            "`tagIds` is required: comma-separated tag ids".into(),
        ));
    }
    let tenant =
        core.api.runtime.tenant(session.tenant).ok_or_else(|| {
            ApiError::Unavailable(format!("tenant {} not running", session.tenant))
        })?;
    let mut tags = tenant_tags(
        &tenant,
        raw.into_iter(),
        core.api.config.api.export_max_tags,
    )?;
    tags.sort_unstable();
    tags.dedup();
    Ok(tags)
}

/// Names of the tenant's tags (of `only` when it is not empty).
async fn tag_names(
    core: &Core,
    session: &Session,
    only: &[TagId],
) -> Result<HashMap<TagId, String>, ApiError> {
    let tags = core.api.store.tags(session.tenant, None).await?;
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
    rid: &str,
) -> Response
where
    T: Send + 'static,
    F: Fn(&mut String, &T) + Send + 'static,
{
    let first = match chunks.next().await {
        Some(Err(e)) => return refuse(e.into(), rid),
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
