//! The Grafana dashboards (`grafana/dashboards/*.json`):
//! - Always: each has the instance and tenant variables and names only catalogued
//!   metrics.
//! - With a real Prometheus: it scrapes the demo, and every panel's query, sent through
//!   the Prometheus HTTP API, must return series and no error. This needs the
//!   Prometheus server binary in `THERMACORE_TEST_PROMETHEUS` (Debian's `prometheus`
//!   package: `/usr/bin/prometheus`; `.ci/run` sets it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const DEMO_PASSWORD: &str = "grafana-test-password";

fn dashboards() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("grafana/dashboards")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("dashboard");
            let d = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                d,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// (dashboard file, panel title, expression) of every panel target.
fn queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for p in d["panels"].as_array().expect("panels") {
            let title = p["title"].as_str().expect("title").to_string();
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: {title} has no query");
            for t in targets {
                let expr = t["expr"].as_str().expect("expr").to_string();
                out.push((file.clone(), title.clone(), expr));
            }
        }
    }
    out
}

/// The metrics an expression reads (a histogram's series by the histogram).
fn metrics_of(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in expr.match_indices("thermacore_") {
        let name: String = expr[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.push(thermacore::telemetry::family(&name).to_string());
    }
    out
}

#[test]
fn dashboards_have_both_variables_and_name_only_catalogued_metrics() {
    let all = dashboards();
    assert!(all.len() >= 6, "{} dashboards", all.len());
    for (file, d) in &all {
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .expect("templating")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        for v in ["datasource", "instance", "tenant"] {
            assert!(vars.contains(&v), "{file} has no ${v} variable");
        }
        assert!(
            d["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{file}: uid"
        );
    }
    for (file, title, expr) in queries() {
        assert!(
            expr.contains("instance=~\"$instance\""),
            "{file}: {title} ignores $instance: {expr}"
        );
        for m in metrics_of(&expr) {
            assert!(
                thermacore::telemetry::metric(&m).is_some(),
                "{file}: {title} reads {m}, which is not catalogued"
            );
        }
    }
}

/// A free loopback port (for Prometheus, which is told where to listen).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The demo of this build on an ephemeral port; returns it and its address.
async fn demo(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_thermacore"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("THERMACORE_DEMO_PASSWORD", DEMO_PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the demo");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("demo output") {
            if let Some(url) = line.trim().strip_prefix("Metrics:") {
                return url
                    .trim()
                    .trim_start_matches("http://")
                    .trim_end_matches("/metrics")
                    .to_string();
            }
        }
        panic!("the demo ended without printing its metrics URL");
    })
    .await
    .expect("the demo printed its URLs");
    // Keep reading, so the demo never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

async fn prometheus(bin: &str, dir: &Path, target: &str) -> (Child, String) {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: thermacore\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .expect("prometheus.yml");
    let listen = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    (child, listen)
}

/// The panel's expression as Grafana would send it with every instance and tenant.
fn concrete(expr: &str) -> String {
    expr.replace("$instance", ".*")
        .replace("$tenant", ".*")
        .replace("$__rate_interval", "1m")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_has_data_from_the_demo_in_a_real_prometheus() {
    let Ok(bin) = std::env::var("THERMACORE_TEST_PROMETHEUS") else {
        eprintln!(
            "skipped: set THERMACORE_TEST_PROMETHEUS to a Prometheus server binary (Debian: apt-get install prometheus; /usr/bin/prometheus)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let demo_dir: PathBuf = dir.path().join("demo");
    let (_demo, addr) = demo(&demo_dir).await;
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "demo not ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_prom, prom) = prometheus(&bin, dir.path(), &addr).await;

    // What an operator does: a failed login, a login, queries (the auth, request and
    // latency panels need them).
    let login =
        "mutation($p:String!){login(tenant:\"demo\",username:\"viewer\",password:$p){accessToken}}";
    let gql = |body: Value| {
        let http = http.clone();
        let url = format!("http://{addr}/graphql");
        async move {
            http.post(url)
                .json(&body)
                .send()
                .await
                .expect("graphql")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let denied = gql(json!({"query": login, "variables": {"p": "not the password"}})).await;
    assert!(denied["errors"].is_array(), "{denied}");

    // Every panel with data, or the list of those without after two minutes (the
    // demo's alarms trip within about a minute).
    let queries = queries();
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let ok = gql(json!({"query": login, "variables": {"p": DEMO_PASSWORD}})).await;
        assert!(ok["data"]["login"]["accessToken"].is_string(), "{ok}");
        let mut empty = Vec::new();
        for (file, title, expr) in &queries {
            let r = http
                .get(format!("http://{prom}/api/v1/query"))
                .query(&[("query", concrete(expr))])
                .send()
                .await;
            // Until its storage is up Prometheus refuses connections, then answers
            // 503 in plain text: both mean "not yet".
            let r = match r {
                Ok(r) if r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE => r,
                _ => {
                    empty.push(format!("{file}: {title}: Prometheus not answering yet"));
                    continue;
                }
            };
            let body: Value = r.json().await.expect("Prometheus answers JSON");
            assert_eq!(
                body["status"], "success",
                "{file}: {title}: {expr} failed: {body}"
            );
            if body["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
            {
                empty.push(format!("{file}: {title}: {expr}"));
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "panels without data after {:?}:\n{}",
            started.elapsed(),
            empty.join("\n")
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
