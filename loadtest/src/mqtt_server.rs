//! ThermaCore in the `mqtt` scenario: the plant (one MQTT device per gateway, one f64
//! tag per value of its payload, the payload's `ts` as source time), a real server
//! started in-process (`app::run`) on SQLite in a temporary directory, and what the
//! scenario reads from it: `/metrics` and the age of the cached values.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;
use thermacore::config::parse_str;
use thermacore::domain::Role;

use crate::modbus::StoreMode;
use crate::modbus_client::{
    Client, Started, micros_of_day, micros_of_day_now, start_server, stop_server,
};
use crate::mqtt_broker::Broker;

pub const TENANT: &str = "bench";
const USER: &str = "viewer";
const PASSWORD: &str = "mqtt benchmark password";
const SECRET: &str = "a-benchmark-secret-of-enough-length!";

/// What the plant looks like.
pub struct Plant<'a> {
    pub broker: &'a Broker,
    pub prefix: &'a str,
    pub devices: usize,
    pub tags: usize,
    pub qos: u8,
    /// Broker connections the devices are spread over (1: all share one, the
    /// default of devices with the same broker settings).
    pub connections: usize,
    pub store: StoreMode,
}

fn plant(p: &Plant<'_>) -> String {
    let mut s = String::with_capacity(p.devices * p.tags * 90);
    s.push_str("[quotas]\nmax_devices = 0\nmax_tags = 0\nmin_poll_ms = 0\n");
    s.push_str("[api]\nuser_requests_per_sec = 10000\n");
    if p.store == StoreMode::None {
        s.push_str("[historian]\nbatch_size = 1\nmax_buffered_samples = 1\n");
    }
    let _ = writeln!(s, "[[tenants]]\nname = \"{TENANT}\"");
    for d in 0..p.devices {
        let client_id = if p.connections > 1 {
            format!(
                ", client_id = \"thermacore-load-{}-{}\"",
                std::process::id(),
                d % p.connections
            )
        } else {
            String::new()
        };
        // A stale mark only after 3 minutes without a message.
        let _ = writeln!(
            s,
            "[[tenants.devices]]\nname = \"gw-{d}\"\npoll_ms = 60000\ndriver = {{ protocol = \"mqtt\", host = \"{}\", port = {}, qos = {}, time = \"/ts\", topics = [\"{}/gw-{d}/#\"]{client_id} }}",
            p.broker.host, p.broker.port, p.qos, p.prefix
        );
        for i in 0..p.tags {
            let _ = writeln!(
                s,
                "[[tenants.devices.tags]]\nname = \"t{i}\"\naddress = \"topic={}/gw-{d}/data;value=/t{i}\"\ndata_type = \"f64\"",
                p.prefix
            );
        }
    }
    s
}

/// The server under test.
pub struct Server {
    pub client: Client,
    /// A tag of each of the first gateways, whose cached values are looked at.
    probe_tags: Vec<String>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), thermacore::app::AppError>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server and returns once every device is ONLINE (connected to the
    /// broker).
    pub async fn start(p: &Plant<'_>) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let mut config =
            parse_str(&plant(p), "mqtt bench plant").map_err(|e| anyhow::anyhow!("{e}"))?;
        config.storage.url = format!("sqlite:{}", dir.path().join("mqtt.db").display());
        config.auth.jwt_secret = Some(SECRET.into());
        let Started { client, stop, task } = start_server(
            config,
            (TENANT, USER, PASSWORD, Role::Viewer),
            p.devices,
            Duration::from_secs(300),
            Duration::from_secs(60),
        )
        .await?;
        let tags = client.gql("{tags{id name}}", json!({})).await?;
        let probe_tags: Vec<String> = tags["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["name"] == "t0")
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .take(20)
            .collect();
        anyhow::ensure!(!probe_tags.is_empty(), "no tag t0 in the plant");
        Ok(Server {
            client,
            probe_tags,
            stop,
            task,
            _dir: dir,
        })
    }

    /// Gateways that have delivered at least one usable message.
    pub async fn devices_heard(&self) -> anyhow::Result<usize> {
        let text = self.client.metrics().await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("thermacore_mqtt_messages_total{"))
            .filter(|l| l.contains("outcome=\"ok\"") && l.contains(&format!("tenant=\"{TENANT}\"")))
            .count())
    }

    /// The largest age, in ms, of the probe tags' cached values by their server time
    /// (when ThermaCore parsed the message: the wait in its mailboxes) and by their
    /// source time (the publisher's `ts`: through the broker as well). About one
    /// message period while everything keeps up.
    pub async fn cache_ages_ms(&self) -> anyhow::Result<(f64, f64)> {
        let d = self
            .client
            .gql(
                "query($t:[ID!]!){latest(tagIds:$t){serverTime sourceTime}}",
                json!({ "t": self.probe_tags }),
            )
            .await?;
        let day = 86_400_000_000u64;
        let now = micros_of_day_now();
        let age = |field: &str| {
            d["latest"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v[field].as_str().and_then(micros_of_day))
                .map(|t| (now + day - t) % day)
                .max()
                .map_or(f64::NAN, |us| us as f64 / 1000.0)
        };
        Ok((age("serverTime"), age("sourceTime")))
    }

    pub async fn stop(self) {
        stop_server(self.stop, self.task, Duration::from_secs(120)).await;
    }
}
