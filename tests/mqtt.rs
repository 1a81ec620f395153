//! The MQTT driver end to end: a real broker (rumqttd embedded on an ephemeral port,
//! or the real Mosquitto when `THERMACORE_TEST_MQTT=host:port` is set, as `.ci/run`
//! does), plain rumqttc peers playing gateways and Sparkplug B edge nodes, and the
//! real server. The fixtures are here; the tests are in `tests/mqtt/`.

#[path = "mqtt/commands.rs"]
mod commands;
mod common;
#[path = "mqtt/faults.rs"]
mod faults;
#[path = "mqtt/json.rs"]
mod json;
#[path = "mqtt/sparkplug.rs"]
mod sparkplug;
#[path = "mqtt/tls.rs"]
mod tls;

use std::collections::HashMap;
use std::time::Duration;

use common::mqtt::{self as broker, Peer, TestBroker};
use common::server::{self, TestServer, eventually};
use serde_json::{Value, json};
use thermacore::domain::Role;

/// How long a state the tests wait for may take.
const WAIT: Duration = Duration::from_secs(15);

/// A `[[tenants.devices.tags]]` block; `extra` holds more `key = value` lines.
pub fn tag(name: &str, address: &str, data_type: &str, extra: &str) -> String {
    format!(
        "[[tenants.devices.tags]]\nname = \"{name}\"\naddress = \"{address}\"\ndata_type = \"{data_type}\"\n{extra}\n"
    )
}

/// An MQTT device on the broker; `driver` adds settings to the driver table.
pub fn device(name: &str, b: &TestBroker, driver: &str, tags: &[String]) -> String {
    device_at(name, &b.host, b.port, driver, tags)
}

pub fn device_at(name: &str, host: &str, port: u16, driver: &str, tags: &[String]) -> String {
    format!(
        "[[tenants.devices]]\nname = \"{name}\"\npoll_ms = 60000\ndriver = {{ protocol = \"mqtt\", host = \"{host}\", port = {port}, reconnect_min_ms = 100, reconnect_max_ms = 400{driver} }}\n{}",
        tags.concat()
    )
}

/// A running server with one tenant of MQTT devices, its users and an admin token.
pub struct Site {
    pub s: TestServer,
    pub admin: String,
    pub tenant: String,
    _dir: tempfile::TempDir,
}

pub async fn start(tenant: &str, devices: &[String]) -> Site {
    start_with(tenant, devices, |_| {}).await
}

/// Starts with the config changed by `f` first.
pub async fn start_with(
    tenant: &str,
    devices: &[String],
    f: impl FnOnce(&mut thermacore::config::Config),
) -> Site {
    let dir = tempfile::tempdir().expect("tempdir");
    let plant = format!("[[tenants]]\nname = \"{tenant}\"\n{}", devices.concat());
    let mut c = server::config(&plant, dir.path());
    f(&mut c);
    let users = [
        (tenant, "admin", Role::Admin),
        (tenant, "viewer", Role::Viewer),
    ];
    let s = server::start(c, &users).await;
    s.wait_ready().await;
    let admin = s.login(tenant, "admin").await;
    Site {
        s,
        admin,
        tenant: tenant.to_string(),
        _dir: dir,
    }
}

impl Site {
    /// Tag ids by name (read again: templates and births create tags).
    pub async fn ids(&self) -> HashMap<String, String> {
        self.s.tag_ids(&self.admin).await
    }

    pub async fn id(&self, tag: &str) -> String {
        self.ids()
            .await
            .remove(tag)
            .unwrap_or_else(|| panic!("no tag {tag}"))
    }

    /// The latest reading of every tag, by name (`null` before the first).
    pub async fn latest(&self) -> HashMap<String, Value> {
        self.s
            .latest(&self.admin, "value quality qualityReason sourceTime")
            .await
    }

    /// The state of a device (`ONLINE`, `CONNECTING` …).
    pub async fn state(&self, device: &str) -> String {
        let d = self
            .s
            .data(&self.admin, "{devices{name status{state}}}", json!({}))
            .await;
        d["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .find(|d| d["name"] == device)
            .and_then(|d| d["status"]["state"].as_str())
            .unwrap_or("")
            .to_string()
    }

    pub async fn wait_state(&self, device: &str, state: &str) {
        eventually(WAIT, &format!("{device} is {state}"), || async {
            self.state(device).await == state
        })
        .await;
    }

    /// Publishes `payload` on `topic` until `check` holds on the latest values (the
    /// device's subscription may not be acknowledged yet when the test starts).
    pub async fn publish_until(
        &self,
        peer: &Peer,
        topic: &str,
        payload: &[u8],
        what: &str,
        check: impl Fn(&HashMap<String, Value>) -> bool,
    ) {
        let start = std::time::Instant::now();
        loop {
            peer.publish(topic, payload.to_vec()).await;
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(25)).await;
                if check(&self.latest().await) {
                    return;
                }
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for: {what}; latest = {:?}",
                self.latest().await
            );
        }
    }

    pub async fn write_as(&self, token: &str, tag: &str, value: Value) -> Value {
        let id = self.id(tag).await;
        self.s
            .gql(
                Some(token),
                "mutation($t:ID!,$v:JSON!){writeTag(tagId:$t,value:$v){tagId value confirmed acknowledgedAt}}",
                json!({"t": id, "v": value}),
            )
            .await
    }
}

/// The code of a response's first error.
pub fn error_code(r: &Value) -> &str {
    r["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

pub fn value(latest: &HashMap<String, Value>, tag: &str) -> Value {
    latest
        .get(tag)
        .map(|l| l["value"].clone())
        .unwrap_or(Value::Null)
}

pub fn quality(latest: &HashMap<String, Value>, tag: &str) -> (String, String) {
    let l = latest.get(tag).cloned().unwrap_or(Value::Null);
    (
        l["quality"].as_str().unwrap_or("").to_string(),
        l["qualityReason"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn which_broker() {
    let b = broker::broker();
    // Says in the test log which broker the suite ran against.
    eprintln!("MQTT tests against {} at {}:{}", b.kind, b.host, b.port);
    let _peer = Peer::connect(&b.host, b.port).await;
}
