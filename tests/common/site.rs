//! A running server with one tenant and its users, for the protocol suites: the
//! latest values, device states and writes, as a GraphQL client sees them.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use thermacore::domain::Role;

use super::server::{self, TestServer};

/// How long a state the tests wait for may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// A `[[tenants.devices.tags]]` block; `extra` holds more `key = value` lines.
pub fn tag(name: &str, address: &str, data_type: &str, extra: &str) -> String {
    format!(
        "[[tenants.devices.tags]]\nname = \"{name}\"\naddress = \"{address}\"\ndata_type = \"{data_type}\"\n{extra}\n"
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

    /// One field of a device's status, as text (`""` if absent or null).
    pub async fn status_field(&self, device: &str, field: &str) -> String {
        let d = self
            .s
            .data(
                &self.admin,
                &format!("{{devices{{name status{{{field}}}}}}}"),
                json!({}),
            )
            .await;
        d["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .find(|d| d["name"] == device)
            .and_then(|d| d["status"][field].as_str())
            .unwrap_or("")
            .to_string()
    }

    /// The state of a device (`ONLINE`, `CONNECTING` …).
    pub async fn state(&self, device: &str) -> String {
        self.status_field(device, "state").await
    }

    /// The last error a device reported (`""` if none).
    pub async fn last_error(&self, device: &str) -> String {
        self.status_field(device, "lastError").await
    }

    /// Waits until `device` is in `state`; a timeout says where it is and why.
    pub async fn wait_state(&self, device: &str, state: &str) {
        let start = std::time::Instant::now();
        while self.state(device).await != state {
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {device} to be {state}: it is {} ({})",
                self.state(device).await,
                self.last_error(device).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
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
