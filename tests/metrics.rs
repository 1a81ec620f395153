//! `/metrics` against the catalogue (`thermacore::telemetry::names::ALL`): every
//! ThermaCore family a running server exports is catalogued with its type and labels,
//! and counters move by exactly what happened, once (no double counting). One test in
//! this binary, so no other test's requests reach the process-wide recorder.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::server::{self, eventually, metric_sum};
use serde_json::json;
use thermacore::domain::Role;
use thermacore::telemetry;

const PLANT: &str = r#"
[[tenants]]
name = "acme"
[[tenants.devices]]
name = "boiler"
poll_ms = 50
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "temp"
address = "sine:period=10,amplitude=5,offset=70"
[[tenants.devices.tags]]
name = "on"
address = "square:period=2"
data_type = "bool"
"#;

/// One sample line of the text format: (name, labels, value).
fn parse_line(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (series, value) = line.rsplit_once(' ').expect("a value after the series");
    let value = value.parse().expect("a numeric value");
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_string(), BTreeMap::new(), value);
    };
    let body = rest.strip_suffix('}').expect("labels end with }");
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {key} of {line}");
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => v.extend(chars.next()),
                '"' => break,
                c => v.push(c),
            }
        }
        labels.insert(key, v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    (name.to_string(), labels, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_catalogued_and_count_each_event_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server::start(
        server::config(PLANT, dir.path()),
        &[("acme", "viewer", Role::Viewer)],
    )
    .await;
    s.wait_ready().await;
    // Counters of rare events exist at 0 from the start.
    let m = s.metrics().await;
    for (name, labels) in [
        ("thermacore_historian_dropped_samples_total", ""),
        ("thermacore_actor_escalations_total", "kind=\"device\""),
        (
            "thermacore_http_requests_total",
            "path=\"/graphql\",status=\"5xx\"",
        ),
    ] {
        assert!(
            m.lines()
                .any(|l| l.starts_with(name) && l.contains(labels) && l.ends_with(" 0")),
            "{name}{{{labels}}} at 0 from the start"
        );
    }
    let token = s.login("acme", "viewer").await;
    eventually(Duration::from_secs(10), "samples written", || async {
        s.metric_sum("thermacore_historian_written_samples_total", "")
            .await
            > 0.0
    })
    .await;

    // N GraphQL requests: the request counter and the latency histogram move by N.
    const N: usize = 37;
    let ok = "path=\"/graphql\",status=\"ok\"";
    let ops = |m: &str, kind: &str| {
        metric_sum(
            m,
            "thermacore_graphql_operations_total",
            &format!("type=\"{kind}\""),
        )
    };
    let (queries, invalid) = {
        let m = s.metrics().await;
        (ops(&m, "query"), ops(&m, "invalid"))
    };
    let (requests, timed) = {
        let m = s.metrics().await;
        (
            metric_sum(&m, "thermacore_http_requests_total", ok),
            metric_sum(
                &m,
                "thermacore_http_request_duration_seconds_count",
                "path=\"/graphql\"",
            ),
        )
    };
    for _ in 0..N {
        s.data(&token, "{ tags { id name } }", json!({})).await;
    }
    // N invalid queries: N errors of their code, and still N more requests.
    let bad = s.gql(Some(&token), "{ tags { nope } }", json!({})).await;
    let code = bad["errors"][0]["extensions"]["code"]
        .as_str()
        .expect("an error code")
        .to_string();
    let errors = s
        .metric_sum(
            "thermacore_graphql_errors_total",
            &format!("code=\"{code}\""),
        )
        .await;
    for _ in 0..N {
        s.gql(Some(&token), "{ tags { nope } }", json!({})).await;
    }
    s.gql(Some(&token), "{ tags {", json!({})).await;
    let m = s.metrics().await;
    assert_eq!(
        ops(&m, "query") - queries,
        (2 * N + 1) as f64,
        "queries by type"
    );
    assert_eq!(
        ops(&m, "invalid") - invalid,
        1.0,
        "a document that does not parse"
    );
    // The invalid query before `errors` was read is one more request, and so is the
    // one that does not parse.
    assert_eq!(
        metric_sum(&m, "thermacore_http_requests_total", ok) - requests,
        (2 * N + 2) as f64,
        "GraphQL requests counted once each"
    );
    assert_eq!(
        metric_sum(
            &m,
            "thermacore_http_request_duration_seconds_count",
            "path=\"/graphql\""
        ) - timed,
        (2 * N + 2) as f64,
        "GraphQL requests timed once each"
    );
    assert_eq!(
        metric_sum(
            &m,
            "thermacore_graphql_errors_total",
            &format!("code=\"{code}\"")
        ) - errors,
        // The document that does not parse is one more of that code.
        (N + 1) as f64,
        "each {code} error counted once"
    );

    // Every ThermaCore family is catalogued, typed as catalogued, with catalogued
    // labels only; every histogram has the catalogue's buckets.
    let mut types = BTreeMap::new();
    for line in m.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.insert(name.to_string(), kind.to_string());
        }
    }
    let ours: Vec<&String> = types
        .keys()
        .filter(|n| n.starts_with("thermacore_"))
        .collect();
    assert!(ours.len() >= 10, "only {} families: {ours:?}", ours.len());
    for name in &ours {
        let entry = telemetry::metric(name).unwrap_or_else(|| panic!("{name} is not catalogued"));
        assert_eq!(types[*name], entry.kind.as_str(), "type of {name}");
    }
    let mut bounds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in m.lines().filter(|l| l.starts_with("thermacore_")) {
        let (series, labels, value) = parse_line(line);
        assert!(value.is_finite() || value.is_nan(), "{line}");
        let family = telemetry::family(&series);
        let entry =
            telemetry::metric(family).unwrap_or_else(|| panic!("{family} is not catalogued"));
        for key in labels.keys() {
            let le = series.ends_with("_bucket") && key == "le";
            assert!(
                le || entry.labels.contains(&key.as_str()),
                "{family} has label {key}, not in the catalogue's {:?}",
                entry.labels
            );
        }
        if let Some(le) = labels.get("le").filter(|_| series.ends_with("_bucket")) {
            bounds
                .entry(family.to_string())
                .or_default()
                .insert(le.clone());
        }
    }
    let want: BTreeSet<String> = telemetry::LATENCY_BUCKETS
        .iter()
        .map(|b| b.to_string())
        .chain(["+Inf".to_string()])
        .collect();
    assert!(bounds.contains_key("thermacore_http_request_duration_seconds"));
    for (family, got) in &bounds {
        assert_eq!(got, &want, "buckets of {family}");
    }
}
