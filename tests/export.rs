//! `GET /api/export` end to end: a real server on an ephemeral port over SQLite, one
//! million stored samples exported as CSV and checked row by row while
//! the process's peak memory is watched; NDJSON; the alarm history; and every refusal.
//!
//! One test function on purpose: the memory figure is of the whole process.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::server::{self, TestServer};
use serde_json::Value as Json;
use thermacore::alarms::{
    AlarmEvent, AlarmState, Condition, LimitKind, RuleKind, RuleSpec, Severity, StoredAlarm,
};
use thermacore::domain::{Quality, QualityReason, Role, Sample, TagId, Timestamp, Value};
use thermacore::storage::{self, StoredSample};

const PLANT: &str = r#"
[[tenants]]
name = "acme"
[[tenants.devices]]
name = "line"
enabled = false
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "flow"
address = "sine"
[[tenants.devices.tags]]
name = "mode, \"main\""
address = "counter"
data_type = "string"

[[tenants]]
name = "globex"
[[tenants.devices]]
name = "other"
enabled = false
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "secret"
address = "sine"
"#;

const ROWS: i64 = 1_000_000;
/// The first tag gets 70% of the rows.
const FLOW_ROWS: i64 = 700_000;
const BASE: i64 = 1_700_000_000_000_000;

/// The `k`-th sample of a tag: the flow tag numbers and qualities, the mode tag text
/// that needs quoting, integers and booleans.
fn nth(tag: TagId, first: bool, k: i64) -> Sample {
    let (value, quality) = if first {
        let q = match k % 97 {
            0 => Quality::Bad(QualityReason::CommLost),
            1 => Quality::Uncertain(QualityReason::Stale),
            _ => Quality::Good,
        };
        (Value::F64(k as f64 * 0.25 - 1000.0), q)
    } else {
        let v = match k % 4 {
            0 => Value::Str(format!("step {k}, \"auto\"").into()),
            1 => Value::I64(-k),
            2 => Value::Bool(k % 3 == 0),
            _ => Value::Str("=SUM(A1)".into()),
        };
        (v, Quality::Good)
    };
    Sample {
        tag,
        value,
        quality,
        source_time: Timestamp(BASE + k * 1_000),
        server_time: Timestamp(BASE + k * 1_000 + 7),
    }
}

fn time(t: Timestamp) -> String {
    t.to_datetime()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The fields of one CSV line (quoted fields may hold commas and doubled quotes).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

fn expected_csv(s: &Sample, name: &str) -> Vec<String> {
    let value = match &s.value {
        Value::Str(v) if v.starts_with('=') => format!("'{v}"),
        v => v.to_string(),
    };
    let (q, reason) = match s.quality {
        Quality::Good => ("GOOD", ""),
        Quality::Uncertain(r) => ("UNCERTAIN", r.as_str()),
        Quality::Bad(r) => ("BAD", r.as_str()),
    };
    vec![
        s.tag.to_string(),
        name.to_string(),
        time(s.source_time),
        time(s.server_time),
        value,
        q.to_string(),
        reason.to_string(),
    ]
}

/// Peak and current resident memory of this process, in KiB.
fn memory_kib(field: &str) -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

async fn get(s: &TestServer, token: Option<&str>, query: &str) -> reqwest::Response {
    let mut req = s.client().get(s.url(&format!("/api/export{query}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("GET /api/export")
}

async fn refused(s: &TestServer, token: Option<&str>, query: &str, status: u16, code: &str) {
    let r = get(s, token, query).await;
    assert_eq!(r.status().as_u16(), status, "{query}");
    let body: Json = r.json().await.expect("json error body");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], code,
        "{query}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_stream_a_million_rows_in_bounded_memory_and_refuse_bad_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server::config(PLANT, dir.path());
    config.api.max_concurrent_exports = 1;
    config.api.export_max_tags = 100;
    // A small page cache, so that what the export holds is not hidden behind what
    // SQLite caches (64 MiB per connection by default, a bound of its own).
    config.storage.sqlite_cache_mib = 2;
    let users = [
        ("acme", "viewer", Role::Viewer),
        ("acme", "admin", Role::Admin),
        ("globex", "admin", Role::Admin),
    ];
    let s = server::start(config.clone(), &users).await;
    s.wait_ready().await;
    let token = s.login("acme", "viewer").await;
    let other = s.login("globex", "admin").await;

    // A million samples straight into the store, in batches.
    let store = storage::connect(&config.storage.url, 1)
        .await
        .expect("store");
    let acme = store
        .tenant_by_name("acme")
        .await
        .expect("tenant")
        .expect("acme");
    let mut tags = store.tags(acme.id, None).await.expect("tags");
    tags.sort_by_key(|t| t.id);
    let names: HashMap<TagId, String> = tags.iter().map(|t| (t.id, t.spec.name.clone())).collect();
    let (flow, mode) = (tags[0].id, tags[1].id);
    let counts = [(flow, FLOW_ROWS), (mode, ROWS - FLOW_ROWS)];
    for (tag, n) in counts {
        for start in (0..n).step_by(50_000) {
            let batch: Vec<StoredSample> = (start..(start + 50_000).min(n))
                .map(|k| StoredSample {
                    tenant: acme.id,
                    sample: nth(tag, tag == flow, k),
                })
                .collect();
            store.insert_samples(&batch).await.expect("insert");
        }
    }
    let from = time(Timestamp(BASE));
    let to = time(Timestamp(BASE + ROWS * 1_000));
    let all = format!("?tagIds={mode},{flow}&from={from}&to={to}");

    // CSV of everything, read as it comes, every row checked, with the process's peak
    // memory (client and server) watched against where it started.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let before = memory_kib("VmRSS:");
    let mut resp = get(&s, Some(&token), &all).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let mut pending = String::new();
    let mut line_no = 0i64;
    let (mut tag_i, mut k) = (0usize, 0i64);
    while let Some(chunk) = resp.chunk().await.expect("body chunk") {
        pending.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        let mut consumed = 0;
        while let Some(end) = pending[consumed..].find('\n') {
            let line = &pending[consumed..consumed + end];
            consumed += end + 1;
            if line_no == 0 {
                assert_eq!(
                    line,
                    "tag_id,tag,source_time,server_time,value,quality,quality_reason"
                );
            } else {
                if k == counts[tag_i].1 {
                    (tag_i, k) = (tag_i + 1, 0);
                }
                let (tag, _) = counts[tag_i];
                let want = expected_csv(&nth(tag, tag == flow, k), &names[&tag]);
                assert_eq!(csv_fields(line), want, "row {line_no}");
                k += 1;
            }
            line_no += 1;
        }
        pending.drain(..consumed);
    }
    assert!(pending.is_empty(), "the body ends with a whole line");
    assert_eq!(line_no - 1, ROWS, "every row exported once");

    let growth_mib = (memory_kib("VmHWM:") - before) as f64 / 1024.0;
    println!("export of {ROWS} rows: peak resident memory grew by {growth_mib:.1} MiB");
    assert!(
        growth_mib < 16.0,
        "peak memory grew by {growth_mib:.1} MiB during the export: rows are being held"
    );

    // NDJSON of a slice, row by row.
    let slice = format!(
        "?tagIds={flow}&from={}&to={}&format=ndjson",
        time(Timestamp(BASE + 10_000 * 1_000)),
        time(Timestamp(BASE + 12_500 * 1_000))
    );
    let resp = get(&s, Some(&token), &slice).await;
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.expect("ndjson body");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2_500);
    for (i, line) in lines.iter().enumerate() {
        let row: Json = serde_json::from_str(line).expect("json line");
        let want = nth(flow, true, 10_000 + i as i64);
        assert_eq!(row["tagId"], flow.to_string());
        assert_eq!(row["tag"], "flow");
        assert_eq!(row["sourceTime"], time(want.source_time));
        assert_eq!(row["value"].as_f64(), want.value.as_f64(), "{line}");
        let q = match want.quality {
            Quality::Good => "GOOD",
            Quality::Uncertain(_) => "UNCERTAIN",
            Quality::Bad(_) => "BAD",
        };
        assert_eq!(row["quality"], q, "{line}");
    }

    // The alarm history, oldest first.
    let rule = store
        .upsert_alarm_rule(
            acme.id,
            flow,
            &RuleSpec {
                name: "flow-high".into(),
                kind: RuleKind::Limit {
                    limit: LimitKind::High,
                    setpoint: 10.0,
                    deadband: 1.0,
                },
                severity: Severity::High,
                message: None,
                on_delay_ms: 0,
                off_delay_ms: 0,
                enabled: true,
            },
        )
        .await
        .expect("rule");
    let event = |at: i64, from: AlarmState, state: AlarmState, active: bool, user: Option<&str>| {
        AlarmEvent {
            rule: rule.id,
            tag: flow,
            severity: Severity::High,
            from,
            alarm: StoredAlarm {
                state,
                condition: if active {
                    Condition::Active
                } else {
                    Condition::Clear
                },
                since: Timestamp(BASE + at),
                active_since: Some(Timestamp(BASE)),
                value: Some(12.5),
                message: "flow, high: 12.5".into(),
                acked_by: user.map(str::to_string),
            },
            user: user.map(str::to_string),
            comment: user.map(|_| "seen \"it\"".to_string()),
        }
    };
    let events = [
        event(0, AlarmState::Normal, AlarmState::Unacked, true, None),
        event(
            5,
            AlarmState::Unacked,
            AlarmState::Acked,
            true,
            Some("olga"),
        ),
        event(9, AlarmState::Acked, AlarmState::Normal, false, None),
    ];
    store
        .record_alarms(acme.id, &events, &[])
        .await
        .expect("record");
    let alarms = format!("/api/export/alarms?from={from}&to={to}");
    let r = s
        .client()
        .get(s.url(&alarms))
        .bearer_auth(&token)
        .send()
        .await
        .expect("alarm export");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("csv");
    let lines: Vec<Vec<String>> = text.lines().map(csv_fields).collect();
    assert_eq!(
        lines[0].join(","),
        "id,at,rule_id,tag_id,tag,severity,from_state,to_state,active,value,message,user,comment"
    );
    assert_eq!(lines.len(), 4, "{text}");
    let states: Vec<(&str, &str)> = lines[1..]
        .iter()
        .map(|l| (l[6].as_str(), l[7].as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("normal", "unacked"),
            ("unacked", "acked"),
            ("acked", "normal")
        ]
    );
    assert_eq!(lines[2][10], "flow, high: 12.5");
    assert_eq!(lines[2][11], "olga");
    assert_eq!(lines[2][12], "seen \"it\"");
    let r = s
        .client()
        .get(s.url(&format!("{alarms}&format=ndjson&ruleId={}", rule.id)))
        .bearer_auth(&token)
        .send()
        .await
        .expect("alarm export");
    let rows: Vec<Json> = r
        .text()
        .await
        .expect("ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["user"], "olga");
    assert_eq!(rows[2]["active"], false);
    // Another tenant sees none of it.
    let r = s
        .client()
        .get(s.url(&alarms))
        .bearer_auth(&other)
        .send()
        .await
        .expect("alarm export");
    assert_eq!(
        r.text().await.expect("csv").lines().count(),
        1,
        "the header only"
    );

    // Refusals: each with its status and code, before any row.
    let ten_years = format!("?tagIds={flow}&from=2016-01-01T00:00:00Z&to=2026-01-01T00:00:00Z");
    let many: Vec<String> = (1..=10_000).map(|i| i.to_string()).collect();
    let many = format!("?tagIds={}&from={from}&to={to}", many.join(","));
    let mut failed = 0;
    for (query, status, code) in [
        (ten_years.as_str(), 400, "BAD_USER_INPUT"),
        (many.as_str(), 400, "BAD_USER_INPUT"),
        (
            &format!("?tagIds={flow}&from={to}&to={from}"),
            400,
            "BAD_USER_INPUT",
        ),
        (
            &format!("?tagIds={flow}&from=yesterday&to={to}"),
            400,
            "BAD_USER_INPUT",
        ),
        (&format!("?tagIds={flow}&to={to}"), 400, "BAD_USER_INPUT"),
        (&format!("?from={from}&to={to}"), 400, "BAD_USER_INPUT"),
        (&format!("{all}&format=xml"), 400, "BAD_USER_INPUT"),
        (&format!("{all}&limit=5"), 400, "BAD_USER_INPUT"),
        (
            &format!("?tagIds=999999&from={from}&to={to}"),
            404,
            "NOT_FOUND",
        ),
        (
            &format!("?tagIds=abc&from={from}&to={to}"),
            404,
            "NOT_FOUND",
        ),
    ] {
        refused(&s, Some(&token), query, status, code).await;
        failed += 1;
    }
    refused(&s, None, &all, 401, "UNAUTHENTICATED").await;
    refused(&s, Some("not-a-token"), &all, 401, "UNAUTHENTICATED").await;
    // globex may not export acme's tags, and does not learn whether they exist
    refused(&s, Some(&other), &all, 404, "NOT_FOUND").await;

    // One export at a time here (max_concurrent_exports = 1): a second while the first
    // streams is refused, and the slot frees when the first one's client goes away.
    let mut first = get(&s, Some(&token), &all).await;
    assert_eq!(first.status(), 200);
    assert!(first.chunk().await.expect("first chunk").is_some());
    refused(&s, Some(&token), &all, 429, "RATE_LIMITED").await;
    drop(first);
    common::server::eventually(Duration::from_secs(10), "the export slot frees", || async {
        get(&s, Some(&token), &slice).await.status() == 200
    })
    .await;
    assert!(
        s.metric_sum("thermacore_exported_rows_total", "kind=\"history\"")
            .await
            >= ROWS as f64
    );

    // Every export a signed-in caller asked for is in the audit log with what was asked
    // and how it went; the refusals with their codes, globex's in its own tenant.
    let audit = |token: String, action: &'static str| {
        let s = &s;
        async move {
            let d = s
                .data(
                    &token,
                    "query($a:String){auditLog(first: 500, filter: {action: $a}){records{outcome reason resourceType username summary}}}",
                    serde_json::json!({"a": action}),
                )
                .await;
            d["auditLog"]["records"]
                .as_array()
                .expect("records")
                .clone()
        }
    };
    let admin = s.login("acme", "admin").await;
    let acme = audit(admin.clone(), "GET /api/export").await;
    let with = |outcome: &str| acme.iter().filter(|r| r["outcome"] == outcome).count();
    assert_eq!(with("FAILED"), failed, "{acme:?}");
    assert!(with("SUCCESS") >= 3, "{acme:?}");
    assert!(
        acme.iter()
            .all(|r| r["resourceType"] == "history" && r["username"] == "viewer")
    );
    assert!(
        acme.iter().any(|r| r["outcome"] == "SUCCESS"
            && r["summary"]
                .as_str()
                .is_some_and(|m| m.contains(&flow.0.to_string()))),
        "the parameters are recorded: {acme:?}"
    );
    let alarms = audit(admin, "GET /api/export/alarms").await;
    assert!(
        !alarms.is_empty()
            && alarms
                .iter()
                .all(|r| r["outcome"] == "SUCCESS" && r["resourceType"] == "alarm_history"),
        "{alarms:?}"
    );
    let globex = audit(other.clone(), "GET /api/export").await;
    assert_eq!(globex.len(), 1, "{globex:?}");
    assert_eq!(
        (&globex[0]["outcome"], &globex[0]["reason"]),
        (&"FAILED".into(), &"NOT_FOUND".into())
    );
}
