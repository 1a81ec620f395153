//! Live configuration end to end (issue 10): units, devices and tags created, changed
//! and deleted through GraphQL while the plant runs, applied to the running actors;
//! bulk import and export; connection tests; bad input; audit. A real server on an
//! ephemeral port, SQLite, sim devices (and real Modbus and MQTT peers for the
//! connection tests).

mod common;

#[path = "live_config/actors.rs"]
mod actors;
#[path = "live_config/bulk.rs"]
mod bulk;
#[path = "live_config/errors.rs"]
mod errors;
#[path = "live_config/flow.rs"]
mod flow;
#[path = "live_config/probe.rs"]
mod probe;
#[path = "live_config/restart.rs"]
mod restart;

use std::time::Duration;

use common::server::{self, TestServer, eventually};
use serde_json::{Value, json};
use thermacore::domain::Role;

/// Two tenants; `acme` has a unit and a steady device whose counter must never miss a
/// poll while other devices are reconfigured.
pub const PLANT: &str = r#"
[[tenants]]
name = "acme"
quotas = { min_poll_ms = 20 }
[[tenants.units]]
name = "boiler-house"
[[tenants.devices]]
name = "steady"
unit = "boiler-house"
poll_ms = 20
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "count"
address = "counter"
data_type = "i64"

[[tenants]]
name = "globex"
[[tenants.devices]]
name = "far-away"
poll_ms = 100
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "secret"
address = "sine"
"#;

/// A key for device secrets (32 bytes of 7, base64).
pub const SECRET_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

pub async fn start() -> (TestServer, tempfile::TempDir) {
    start_with(|_| {}).await
}

pub async fn start_with(
    f: impl FnOnce(&mut thermacore::config::Config),
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server::config(PLANT, dir.path());
    config.secret_key = Some(SECRET_KEY.into());
    config.api.user_requests_per_sec = 10_000;
    f(&mut config);
    let users = [
        ("acme", "admin", Role::Admin),
        ("acme", "operator", Role::Operator),
        ("globex", "admin", Role::Admin),
    ];
    let s = server::start(config, &users).await;
    s.wait_ready().await;
    (s, dir)
}

/// The error code of the first error of a response.
pub fn code(r: &Value) -> String {
    r["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The paths of every error of a change refused as invalid.
pub fn paths(r: &Value) -> Vec<String> {
    r["errors"][0]["extensions"]["errors"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| e["path"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub const CREATE_DEVICE: &str =
    "mutation($i: DeviceInput!) { createDevice(input: $i) { id name pollMs enabled } }";
pub const CREATE_TAG: &str =
    "mutation($i: TagInput!) { createTag(input: $i) { id name deviceId dataType } }";

/// Creates a sim device with one counter tag; returns (device id, tag id).
pub async fn sim_device(s: &TestServer, token: &str, name: &str, poll_ms: u64) -> (String, String) {
    let d = s
        .data(
            token,
            CREATE_DEVICE,
            json!({"i": {"name": name, "pollMs": poll_ms, "driver": {"protocol": "sim"}}}),
        )
        .await;
    let device = d["createDevice"]["id"]
        .as_str()
        .expect("device id")
        .to_string();
    let t = s
        .data(
            token,
            CREATE_TAG,
            json!({"i": {"deviceId": device, "name": "count", "address": "counter", "dataType": "i64"}}),
        )
        .await;
    let tag = t["createTag"]["id"].as_str().expect("tag id").to_string();
    (device, tag)
}

/// The status of one device.
pub async fn status(s: &TestServer, token: &str, device: &str) -> Value {
    let d = s
        .data(
            token,
            "query($d: ID!) { device(id: $d) { status { state polls restarts lastError pollGroups { periodMs tags } } } }",
            json!({"d": device}),
        )
        .await;
    d["device"]["status"].clone()
}

/// How many polls `device` has made.
pub async fn polls(s: &TestServer, token: &str, device: &str) -> u64 {
    status(s, token, device).await["polls"]
        .as_u64()
        .unwrap_or(0)
}

pub async fn wait_state(s: &TestServer, token: &str, device: &str, state: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{device} {state}"),
        || async { status(s, token, device).await["state"] == state },
    )
    .await;
}

/// The latest value of one tag (`{value quality qualityReason}`), null before the
/// first reading.
pub async fn latest_of(s: &TestServer, token: &str, tag: &str) -> Value {
    let d = s
        .data(
            token,
            "query($t: [ID!]!) { latest(tagIds: $t) { value quality qualityReason } }",
            json!({"t": [tag]}),
        )
        .await;
    d["latest"][0].clone()
}
