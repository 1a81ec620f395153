//! Interoperability of the Modbus TCP driver with devices that are conformant but not
//! rodbus: a scripted server (written from the Modbus specification) answers fewer
//! registers than asked, limits request sizes, has holes in its map, closes idle
//! connections, uses unit ids 0 and 255, answers garbage or stays silent. Each test runs
//! the real server against it and checks tags and device states through GraphQL.
#![cfg(feature = "modbus")]

mod common;
#[path = "modbus_interop/links.rs"]
mod links;
#[path = "modbus_interop/maps.rs"]
mod maps;
#[path = "common/modbus_script.rs"]
mod script;

use std::collections::HashMap;
use std::time::Duration;

use common::server::{self, TestServer};
use script::value;
use serde_json::{Value, json};
use thermacore::domain::Role;

const WAIT: Duration = Duration::from_secs(20);

/// One device of a plant: its name, server port, extra driver keys, poll period and
/// holding-register tags (name, address).
struct Dev<'a> {
    name: &'a str,
    port: u16,
    driver: &'a str,
    poll_ms: u64,
    tags: Vec<(String, u16)>,
}

impl<'a> Dev<'a> {
    fn new(
        name: &'a str,
        port: u16,
        driver: &'a str,
        poll_ms: u64,
        tags: Vec<(String, u16)>,
    ) -> Self {
        Dev {
            name,
            port,
            driver,
            poll_ms,
            tags,
        }
    }
}

/// Tags `{prefix}{a}` at `hr:{a}` for every address.
fn regs(prefix: &str, addrs: impl IntoIterator<Item = u16>) -> Vec<(String, u16)> {
    addrs
        .into_iter()
        .map(|a| (format!("{prefix}{a}"), a))
        .collect()
}

fn plant(tenant: &str, devices: &[Dev]) -> String {
    let mut s = format!("[[tenants]]\nname = \"{tenant}\"\n");
    for d in devices {
        s += &format!(
            "[[tenants.devices]]\nname = \"{}\"\npoll_ms = {}\n\
             driver = {{ protocol = \"modbus\", host = \"127.0.0.1\", port = {}{} }}\n",
            d.name, d.poll_ms, d.port, d.driver
        );
        for (name, a) in &d.tags {
            s += &format!(
                "[[tenants.devices.tags]]\nname = \"{name}\"\naddress = \"hr:{a}\"\ndata_type = \"u16\"\n"
            );
        }
    }
    s
}

/// The latest reading of a tag, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
struct Latest {
    value: Value,
    quality: String,
    reason: Option<String>,
}

struct Rig {
    s: TestServer,
    token: String,
    _dir: tempfile::TempDir,
}

async fn rig(tenant: &str, devices: &[Dev<'_>]) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = server::config(&plant(tenant, devices), dir.path());
    let s = server::start(config, &[(tenant, "admin", Role::Admin)]).await;
    s.wait_ready().await;
    let token = s.login(tenant, "admin").await;
    Rig {
        s,
        token,
        _dir: dir,
    }
}

impl Rig {
    /// Every tag with a value, by name.
    async fn tags(&self) -> HashMap<String, Latest> {
        let d = self
            .s
            .data(
                &self.token,
                "{tags{name latest{value quality qualityReason}}}",
                json!({}),
            )
            .await;
        let mut out = HashMap::new();
        for t in d["tags"].as_array().expect("tags") {
            let l = &t["latest"];
            if l.is_null() {
                continue;
            }
            out.insert(
                t["name"].as_str().unwrap_or_default().to_string(),
                Latest {
                    value: l["value"].clone(),
                    quality: l["quality"].as_str().unwrap_or_default().to_string(),
                    reason: l["qualityReason"].as_str().map(str::to_string),
                },
            );
        }
        out
    }

    /// The status of a device.
    async fn status(&self, device: &str) -> Value {
        let d = self
            .s
            .data(
                &self.token,
                "{devices{name status{state lastError badAddresses requestsPerCycle restarts polls pollErrors}}}",
                json!({}),
            )
            .await;
        d["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .find(|x| x["name"] == device)
            .map(|x| x["status"].clone())
            .unwrap_or(Value::Null)
    }

    /// Polls of a device so far, answered or failed.
    async fn polls(&self, device: &str) -> u64 {
        let st = self.status(device).await;
        st["polls"].as_u64().unwrap_or(0) + st["pollErrors"].as_u64().unwrap_or(0)
    }

    /// True when every tag in `tags` reads GOOD with the map's value.
    async fn all_good(&self, tags: &[(String, u16)]) -> bool {
        let now = self.tags().await;
        tags.iter().all(|(name, a)| {
            now.get(name)
                .is_some_and(|l| l.quality == "GOOD" && l.value == json!(value(*a)))
        })
    }

    async fn reads(&self, tag: &str, quality: &str, reasons: &[&str]) -> bool {
        self.tags().await.get(tag).is_some_and(|l| {
            l.quality == quality
                && (reasons.is_empty() || reasons.contains(&l.reason.as_deref().unwrap_or("")))
        })
    }
}

/// Driver keys after the port: unit 1, `timeout_ms`, then `extra`.
fn driver(timeout_ms: u64, extra: &str) -> String {
    format!(", unit_id = 1, timeout_ms = {timeout_ms}{extra}")
}

/// What a device showed while `done` became true: its states in order (repeats
/// collapsed), and every tag reading that was not GOOD.
async fn watch<F, Fut>(r: &Rig, device: &str, done: F) -> (Vec<String>, Vec<(String, Latest)>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let (mut states, mut bad) = (Vec::<String>::new(), Vec::new());
    let start = std::time::Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < WAIT,
            "timed out; states so far {states:?}, bad {bad:?}"
        );
        let state = r.status(device).await["state"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if states.last() != Some(&state) {
            states.push(state);
        }
        for (name, l) in r.tags().await {
            if l.quality != "GOOD" {
                bad.push((name, l));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (states, bad)
}
