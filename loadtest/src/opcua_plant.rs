//! ThermaCore in the `opcua` scenario: the plant (one OPC UA device per device of the
//! child's servers, one f64 tag per variable, the writable variable as tag `w`), a real
//! server started in-process (`app::run`) on SQLite in a temporary directory, and what
//! the scenario reads from it: the tag ids and the latency of cached values.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;
use thermacore::config::parse_str;
use thermacore::domain::Role;

use crate::modbus::StoreMode;
use crate::modbus_client::{Client, Started, micros_of_day, start_server};
use crate::opcua_server::{ITEMS_PER_SUBSCRIPTION, Layout, Servers, item_id, writable_id};

pub const TENANT: &str = "bench";
const OPERATOR: &str = "operator";
const PASSWORD: &str = "opcua benchmark password";
const SECRET: &str = "a-benchmark-secret-of-enough-length!";

/// Tags whose cached values one latency probe reads.
const PROBE_TAGS: usize = 500;

fn plant(
    layout: &Layout,
    servers: &Servers,
    publish_ms: u64,
    store: StoreMode,
    pki: &str,
) -> String {
    let mut s = String::with_capacity(layout.items * 90);
    s.push_str("[quotas]\nmax_devices = 0\nmax_tags = 0\nmin_poll_ms = 0\n");
    s.push_str("[api]\nuser_requests_per_sec = 10000\n");
    if store == StoreMode::None {
        s.push_str("[historian]\nbatch_size = 1\nmax_buffered_samples = 1\n");
    }
    let _ = writeln!(s, "[[tenants]]\nname = \"{TENANT}\"");
    let ns = servers.ns;
    for d in 0..layout.devices {
        let port = servers.ports[layout.server_of(d)];
        // `poll_ms` is the sampling and publishing interval of the subscriptions.
        let _ = writeln!(
            s,
            "[[tenants.devices]]\nname = \"ua-{d}\"\npoll_ms = {publish_ms}\ndriver = {{ protocol = \"opcua\", endpoint = \"opc.tcp://127.0.0.1:{port}/\", security_policy = \"none\", security_mode = \"none\", pki_dir = \"{pki}\", trust_unknown_server = true, max_items_per_subscription = {ITEMS_PER_SUBSCRIPTION} }}"
        );
        for k in 0..layout.items_of(d) {
            let _ = writeln!(
                s,
                "[[tenants.devices.tags]]\nname = \"v{k}\"\naddress = \"ns={ns};s={}\"\ndata_type = \"f64\"",
                item_id(d, k)
            );
        }
        let _ = writeln!(
            s,
            "[[tenants.devices.tags]]\nname = \"w\"\naddress = \"ns={ns};s={}\"\ndata_type = \"f64\"\nwritable = true",
            writable_id(d)
        );
    }
    s
}

/// The latencies of one probe, in ms: per cached value, from its source time (when
/// the OPC UA server set it) to its server time (when ThermaCore's driver received
/// it), and from its source time to the moment of the probe (how old what the cache
/// shows is).
#[derive(Debug, Default)]
pub struct Ages {
    pub latency_ms: Vec<f64>,
    pub source_age_ms: Vec<f64>,
    /// From server time to the probe: how long since the value reached ThermaCore.
    pub cache_age_ms: Vec<f64>,
}

/// The server under test.
pub struct Server {
    pub client: Client,
    /// The value tags (`v…`) and the writable ones (`w`), by id.
    pub values: Vec<String>,
    pub writable: Vec<String>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), thermacore::app::AppError>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server and returns once every device is ONLINE (its session open).
    pub async fn start(
        layout: &Layout,
        servers: &Servers,
        publish_ms: u64,
        store: StoreMode,
    ) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let pki = dir.path().join("pki");
        let text = plant(
            layout,
            servers,
            publish_ms,
            store,
            &pki.display().to_string(),
        );
        let mut config =
            parse_str(&text, "opcua bench plant").map_err(|e| anyhow::anyhow!("{e}"))?;
        drop(text);
        config.storage.url = format!("sqlite:{}", dir.path().join("opcua.db").display());
        config.auth.jwt_secret = Some(SECRET.into());
        let Started { client, stop, task } = start_server(
            config,
            (TENANT, OPERATOR, PASSWORD, Role::Operator),
            layout.devices,
            Duration::from_secs(600),
            Duration::from_secs(120),
        )
        .await?;
        let tags = client.gql("{tags{id name}}", json!({})).await?;
        let (mut values, mut writable) = (Vec::new(), Vec::new());
        for t in tags["tags"].as_array().into_iter().flatten() {
            let (Some(id), Some(name)) = (t["id"].as_str(), t["name"].as_str()) else {
                continue;
            };
            if name == "w" {
                writable.push(id.to_string());
            } else {
                values.push(id.to_string());
            }
        }
        anyhow::ensure!(
            values.len() == layout.items && writable.len() == layout.devices,
            "{} value and {} writable tags for {} items on {} devices",
            values.len(),
            writable.len(),
            layout.items,
            layout.devices
        );
        Ok(Server {
            client,
            values,
            writable,
            stop,
            task,
            _dir: dir,
        })
    }

    /// The ages of the cached values of [`PROBE_TAGS`] tags, the `n`th slice of the
    /// value tags (a different slice each time).
    pub async fn probe(&self, n: usize, ages: &mut Ages) -> anyhow::Result<()> {
        let per = PROBE_TAGS.min(self.values.len());
        let slices = self.values.len() / per;
        let from = (n.wrapping_mul(7919) % slices.max(1)) * per;
        let ids = &self.values[from..from + per];
        let d = self
            .client
            .gql(
                "query($t:[ID!]!){latest(tagIds:$t){serverTime sourceTime}}",
                json!({ "t": ids }),
            )
            .await?;
        let day = 86_400_000_000i64;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros() as u64
            % day as u64;
        // Times of day: a difference across midnight wraps.
        let ms = |later: u64, earlier: u64| {
            let d = (later as i64 - earlier as i64 + day + day / 2) % day - day / 2;
            d as f64 / 1000.0
        };
        for v in d["latest"].as_array().into_iter().flatten() {
            let (Some(server), Some(source)) = (
                v["serverTime"].as_str().and_then(micros_of_day),
                v["sourceTime"].as_str().and_then(micros_of_day),
            ) else {
                continue;
            };
            ages.latency_ms.push(ms(server, source));
            ages.source_age_ms.push(ms(now, source));
            ages.cache_age_ms.push(ms(now, server));
        }
        Ok(())
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(120), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("server stopped with: {e}"),
            Ok(Err(e)) => eprintln!("server task: {e}"),
            Err(_) => eprintln!("server did not stop within 120 s"),
        }
    }
}
