//! Every scenario of `thermacore-load`, end to end at a small scale: the generator
//! starts the real `thermacore` binary with the plant, runs its clients, and writes a
//! report whose figures must show the load went through without errors.
//!
//! The server binary is the workspace's `thermacore` of the same profile, which
//! `cargo test --workspace` builds; `cargo test -p thermacore-loadtest` alone does
//! not (build it first with `cargo build`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn server_binary() -> PathBuf {
    let load = Path::new(env!("CARGO_BIN_EXE_thermacore-load"));
    let bin = load.with_file_name("thermacore");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo test --workspace` (or `cargo build` first)",
        bin.display()
    );
    bin
}

/// Runs `scenario` (TOML text, with `server.binary` added) and returns its report.
fn run(name: &str, scenario: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(format!("{name}.toml"));
    let bin = server_binary();
    let text = scenario.replacen(
        "[server]",
        &format!("[server]\nbinary = {:?}", bin.display().to_string()),
        1,
    );
    std::fs::write(&file, text).expect("scenario file");
    let out = dir.path().join("report.json");
    let result = Command::new(env!("CARGO_BIN_EXE_thermacore-load"))
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("thermacore-load runs");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "{name} failed:\n{stdout}\n{stderr}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("report written"))
            .expect("report is JSON");
    assert_eq!(report["scenario"], name, "{report:#}");
    assert_eq!(
        report["errors"],
        serde_json::json!({}),
        "{name}: errors in the window: {report:#}"
    );
    assert!(
        report["server"]["cpu_cores"].as_f64().is_some(),
        "{report:#}"
    );
    assert!(
        report["server"]["peak_rss_mib"].as_f64().unwrap_or(0.0) > 1.0,
        "{report:#}"
    );
    assert!(
        !report["intervals"]
            .as_array()
            .expect("intervals")
            .is_empty()
    );
    assert!(stdout.contains("report:"), "{stdout}");
    report
}

fn count(report: &Value, op: &str) -> u64 {
    report["operations"][op]["count"].as_u64().unwrap_or(0)
}

fn latency(report: &Value, op: &str, q: &str) -> f64 {
    report["operations"][op]["latency_ms"][q]
        .as_f64()
        .unwrap_or(f64::NAN)
}

const SMALL: &str = "duration_secs = 4\nwarmup_secs = 2\ninterval_secs = 2\n[server]\n";

#[test]
fn queries_answer_every_kind() {
    let r = run(
        "queries",
        &format!(
            "scenario = \"queries\"\n{SMALL}[plant]\ndevices = 4\ntags_per_device = 5\n[load]\nclients = 4\nusers = 2\ntags_per_query = 3"
        ),
    );
    for op in ["latest", "history", "devices"] {
        assert!(count(&r, op) > 0, "{op}: {r:#}");
        assert!(
            latency(&r, op, "p50") <= latency(&r, op, "max"),
            "{op}: {r:#}"
        );
    }
    assert!(
        r["server_metrics"]["http_requests_per_sec"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0,
        "{r:#}"
    );
}

#[test]
fn subscribers_and_ingest_measure_change_to_client_latency() {
    let r = run(
        "subscribers",
        &format!(
            "scenario = \"subscribers\"\n{SMALL}[plant]\ndevices = 4\ntags_per_device = 5\npoll_ms = 200\n[load]\nsubscribers = 6\nusers = 2\ntags_per_query = 4"
        ),
    );
    // 6 subscribers × 4 tags × 5 polls/s × 4 s, give or take the edges of the window.
    let n = count(&r, "tagValues");
    assert!(n > 200, "{n}: {r:#}");
    assert!(latency(&r, "tagValues", "p99") < 1000.0, "{r:#}");
    let i = run(
        "ingest",
        &format!(
            "scenario = \"ingest\"\n{SMALL}[plant]\ndevices = 4\ntags_per_device = 10\npoll_ms = 100\n[load]\nsubscribers = 1\ntags_per_query = 5"
        ),
    );
    let rate = i["server_metrics"]["samples_ingested_per_sec"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        rate > 200.0,
        "4 devices × 10 tags × 10 polls/s: {rate}: {i:#}"
    );
    assert!(count(&i, "tagValues") > 0, "{i:#}");
}

#[test]
fn commands_and_the_mixed_plant_run_their_operations() {
    let c = run(
        "commands",
        &format!(
            "scenario = \"commands\"\n{SMALL}[plant]\ndevices = 4\ntags_per_device = 3\npoll_ms = 100\n[load]\nwriters = 2\nusers = 2\nwrites_per_sec = 20.0"
        ),
    );
    assert!(count(&c, "writeTag") >= 40, "{c:#}");
    let m = run(
        "mixed",
        &format!(
            "scenario = \"mixed\"\n{SMALL}[plant]\ndevices = 6\ntags_per_device = 4\npoll_ms = 250\nalarm_tags = 1\nalarm_period_secs = 4\n\
             [load]\noperators = 6\nusers = 3\nrefresh_secs = 1\nwriters = 1\nwrites_per_sec = 5.0"
        ),
    );
    for op in [
        "dashboard.latest",
        "dashboard.alarms",
        "dashboard.trend",
        "dashboard.tagValues",
        "writeTag",
    ] {
        assert!(count(&m, op) > 0, "{op}: {m:#}");
    }
    // Sines of 4 to 9 s cross both limits within the window: alarms are raised,
    // streamed and acknowledged.
    assert!(count(&m, "alarmEvents") > 0, "{m:#}");
    assert!(count(&m, "acknowledgeAlarms") > 0, "{m:#}");
}

#[test]
fn mqtt_flood_goes_through_the_embedded_broker() {
    let r = run(
        "mqtt-flood",
        &format!(
            "scenario = \"mqtt-flood\"\n{SMALL}[plant]\ndevices = 0\n[mqtt]\ngateways = 4\nvalues = 5\nrate = 10.0\nper_connection = 2\n[load]\nsubscribers = 1\ntags_per_query = 5"
        ),
    );
    let published = r["counters"]["mqtt.published"]["total"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(published >= 100.0, "4 gateways × 10/s × 4 s: {r:#}");
    let received = r["server_metrics"]["mqtt_messages_per_sec"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(received > 20.0, "{r:#}");
    assert!(count(&r, "publish→client") > 0, "{r:#}");
}

#[test]
fn expiring_tokens_are_renewed_without_errors() {
    // Settings over the generated configuration: tokens that live 2 s. The HTTP
    // clients and the subscriptions sign in again when the server refuses or closes
    // them; the report must show the renewals and still no error.
    let r = run(
        "mixed",
        "scenario = \"mixed\"\nduration_secs = 6\nwarmup_secs = 1\ninterval_secs = 3\n[server]\n\
             [server.settings.auth]\naccess_token_ttl_secs = 2\n\
             [plant]\ndevices = 3\ntags_per_device = 3\npoll_ms = 200\n\
             [load]\noperators = 3\nusers = 1\nrefresh_secs = 1\nwriters = 1\nwrites_per_sec = 2.0",
    );
    let renewals = r["counters"]["ws_token_renewals"]["total"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(renewals >= 2.0, "{r:#}");
    assert!(count(&r, "dashboard.tagValues") > 0, "{r:#}");
    assert!(count(&r, "dashboard.latest") >= 6, "{r:#}");
}

#[test]
fn a_server_that_is_not_there_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("q.toml");
    std::fs::write(
        &file,
        "scenario = \"queries\"\n[server]\nurl = \"http://127.0.0.1:9\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_thermacore-load"))
        .arg("run")
        .arg(&file)
        .env("THERMACORE_LOAD_PASSWORD", "x")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("login of demo/operator: connect"), "{err}");

    std::fs::write(&file, "scenario = \"queries\"\n[load]\nclient = 3\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_thermacore-load"))
        .arg("run")
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `client`"), "{err}");
}
