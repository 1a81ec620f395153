//! The Modbus TCP driver end to end, against rodbus's server side on loopback ports:
//! every data type in every word order, writes (function codes, read-back, refusals,
//! permissions), exceptions and the bad-address cache, a lost and restored link, unit
//! ids behind one gateway (one of them silent), idle close, read planning, and
//! Modbus/TCP Security. The fixtures are here; the tests are in `tests/modbus/`.

#[path = "modbus/channels.rs"]
mod channels;
mod common;
#[path = "modbus/data_types.rs"]
mod data_types;
#[path = "modbus/faults.rs"]
mod faults;
#[path = "modbus/tls.rs"]
mod tls;
#[path = "modbus/writes.rs"]
mod writes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::server::{self, TestServer, eventually};
use rodbus::server::ServerHandle;
use serde_json::{Value, json};
use thermacore::config::Config;
use thermacore::domain::Role;
use thermacore::drivers::modbus::plc::{self, Bank, BankHandle};
use tokio::net::TcpListener;

/// How long a state the tests wait for may take (polls run every 100 ms).
const WAIT: Duration = Duration::from_secs(15);

/// Tests that compare process-wide counters (`thermacore_modbus_requests_total` by
/// function) hold this while they write, so that no other test's writes count in.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A simulated device (one unit id) on a loopback port of its own.
pub struct Plc {
    pub bank: BankHandle,
    pub port: u16,
    /// The running server; `None` while stopped.
    server: Option<ServerHandle>,
}

impl Plc {
    pub async fn start(bank: Bank) -> Plc {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind plc");
        let port = listener.local_addr().expect("plc addr").port();
        let bank = BankHandle::new(bank);
        let server = Some(plc::serve(listener, &[(1, bank.clone())]));
        Plc { bank, port, server }
    }

    /// Stops the server: the port is closed and live connections end.
    pub fn stop(&mut self) {
        self.server = None;
    }

    /// Serves the same bank on the same port again.
    pub async fn restart(&mut self) {
        let listener = bind_again(self.port).await;
        self.server = Some(plc::serve(listener, &[(1, self.bank.clone())]));
    }
}

/// Binds `127.0.0.1:port` again after a server let it go (the old listener may take a
/// moment to close).
pub async fn bind_again(port: u16) -> TcpListener {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..200 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("port {port} could not be bound again");
}

/// Big-endian bytes laid out in registers in `order` (`ABCD` as is, `CDAB` words
/// reversed, `BADC` bytes swapped in each word, `DCBA` every byte reversed). Written
/// here from the definition, not with the driver's codec.
pub fn registers(be: &[u8], order: &str) -> Vec<u16> {
    assert!(be.len() % 2 == 0, "whole registers");
    let mut bytes = be.to_vec();
    match order {
        "ABCD" => {}
        "CDAB" => {
            let words: Vec<&[u8]> = be.chunks(2).rev().collect();
            bytes = words.concat();
        }
        "BADC" => bytes.chunks_mut(2).for_each(|w| w.swap(0, 1)),
        "DCBA" => bytes.reverse(),
        other => panic!("no order {other}"),
    }
    bytes
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]))
        .collect()
}

/// A `[[tenants.devices.tags]]` block; `extra` holds more `key = value` lines.
pub fn tag(name: &str, address: &str, data_type: &str, extra: &str) -> String {
    format!(
        "[[tenants.devices.tags]]\nname = \"{name}\"\naddress = \"{address}\"\ndata_type = \"{data_type}\"\n{extra}\n"
    )
}

/// A Modbus device on `127.0.0.1:port` polled every 100 ms; `driver` adds settings to
/// the driver table (`, write_multiple = true`).
pub fn device(name: &str, port: u16, driver: &str, tags: &[String]) -> String {
    format!(
        "[[tenants.devices]]\nname = \"{name}\"\npoll_ms = 100\ndriver = {{ protocol = \"modbus\", host = \"127.0.0.1\", port = {port}, timeout_ms = 500{driver} }}\n{}",
        tags.concat()
    )
}

/// A running server with a plant of Modbus devices in one tenant, its users
/// `admin`, `operator` and `viewer`, and an admin token.
pub struct Site {
    pub s: TestServer,
    pub tenant: String,
    pub admin: String,
    /// Tag ids by name.
    pub ids: HashMap<String, String>,
    _dir: tempfile::TempDir,
}

pub async fn start(tenant: &str, devices: &[String]) -> Site {
    start_with(tenant, devices, |_| {}).await
}

/// Starts with the config changed by `f` first. Every test names its own tenant: the
/// metrics are process-wide and some are labelled by tenant.
pub async fn start_with(tenant: &str, devices: &[String], f: impl FnOnce(&mut Config)) -> Site {
    let dir = tempfile::tempdir().expect("tempdir");
    let plant = format!("[[tenants]]\nname = \"{tenant}\"\n{}", devices.concat());
    let mut c = server::config(&plant, dir.path());
    f(&mut c);
    let users = [
        (tenant, "admin", Role::Admin),
        (tenant, "operator", Role::Operator),
        (tenant, "viewer", Role::Viewer),
    ];
    let s = server::start(c, &users).await;
    s.wait_ready().await;
    let admin = s.login(tenant, "admin").await;
    let ids = s.tag_ids(&admin).await;
    Site {
        s,
        tenant: tenant.to_string(),
        admin,
        ids,
        _dir: dir,
    }
}

impl Site {
    pub fn id(&self, tag: &str) -> &str {
        self.ids.get(tag).unwrap_or_else(|| panic!("no tag {tag}"))
    }

    /// The latest reading of every tag, by name (`null` before the first).
    pub async fn latest(&self) -> HashMap<String, Value> {
        self.s
            .latest(&self.admin, "value quality qualityReason")
            .await
    }

    /// The status of every device, by name.
    pub async fn status(&self) -> HashMap<String, Value> {
        let d = self
            .s
            .data(
                &self.admin,
                "{devices{id name status{state polls pollErrors requestsPerCycle pollGroups{name periodMs requests tags} badAddresses lastError}}}",
                json!({}),
            )
            .await;
        d["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .map(|d| {
                let mut status = d["status"].clone();
                status["id"] = d["id"].clone();
                (d["name"].as_str().unwrap_or("").to_string(), status)
            })
            .collect()
    }

    /// Waits until `device` is in `state` (`ONLINE`, `DEGRADED`, `OFFLINE`).
    pub async fn wait_state(&self, device: &str, state: &str) {
        eventually(WAIT, &format!("{device} {state}"), || async {
            self.status().await[device]["state"] == state
        })
        .await;
    }

    /// Waits until every `(tag, value)` reads GOOD with that value.
    pub async fn wait_good(&self, expect: &[(&str, Value)]) {
        let mut last = HashMap::new();
        let ok = tokio::time::timeout(WAIT, async {
            loop {
                last = self.latest().await;
                let good = |(name, v): &(&str, Value)| {
                    let l = &last[*name];
                    l["quality"] == "GOOD" && l["value"] == *v
                };
                if expect.iter().all(good) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
        .await;
        if ok.is_err() {
            let wrong: Vec<String> = expect
                .iter()
                .filter(|(n, v)| last[*n]["quality"] != "GOOD" || last[*n]["value"] != *v)
                .map(|(n, v)| format!("{n}: want {v}, got {}", last[*n]))
                .collect();
            panic!(
                "tags not GOOD with their values within {WAIT:?}:\n{}",
                wrong.join("\n")
            );
        }
    }

    /// Waits until every tag in `tags` reads BAD with `reason`.
    pub async fn wait_bad(&self, tags: &[&str], reason: &str) {
        eventually(WAIT, &format!("{tags:?} BAD {reason}"), || async {
            let l = self.latest().await;
            tags.iter()
                .all(|t| l[*t]["quality"] == "BAD" && l[*t]["qualityReason"] == reason)
        })
        .await;
    }

    /// `writeTag` as `token`; the whole response.
    pub async fn write_as(&self, token: &str, tag: &str, value: Value) -> Value {
        self.s
            .gql(
                Some(token),
                "mutation($t:ID!,$v:JSON!){writeTag(tagId:$t,value:$v){tagId value confirmed acknowledgedAt}}",
                json!({"t": self.id(tag), "v": value}),
            )
            .await
    }

    /// A write that must succeed; its `WriteResult`.
    pub async fn write(&self, tag: &str, value: Value) -> Value {
        let r = self.write_as(&self.admin, tag, value.clone()).await;
        assert!(r.get("errors").is_none(), "write {tag} = {value}: {r}");
        r["data"]["writeTag"].clone()
    }
}

/// The code of a response's first error.
pub fn error_code(r: &Value) -> &str {
    r["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}
