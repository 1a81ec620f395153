//! The server under test of the protocol scenarios (`opcua`, `dnp3`): a real
//! ThermaCore server started in-process (`app::run`) on SQLite in a temporary
//! directory with the scenario's plant, its tags, and the latency probes of cached
//! values the scenarios share.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use thermacore::config::parse_str;
use thermacore::domain::Role;

use crate::modbus_client::{
    Client, Started, micros_of_day, micros_of_day_now, start_server, stop_server,
};

pub const TENANT: &str = "bench";
const OPERATOR: &str = "operator";
const PASSWORD: &str = "protocol benchmark password";
const SECRET: &str = "a-benchmark-secret-of-enough-length!";

/// Tags whose cached values one latency probe reads.
const PROBE_TAGS: usize = 500;

/// The latencies of one probe, in ms: per cached value, from its source time (when
/// the device set it) to its server time (when ThermaCore's driver received it), and
/// from its source time to the moment of the probe (how old what the cache shows is).
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
    /// The tags that are not writable, by id.
    pub values: Vec<String>,
    /// The writable tags' ids by tag name (the same name on every device).
    writable: BTreeMap<String, Vec<String>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), thermacore::app::AppError>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server with the plant `plant` writes (given the temporary directory,
    /// for files the plant needs) and returns once its `devices` devices are ONLINE.
    pub async fn start(
        what: &str,
        devices: usize,
        plant: impl FnOnce(&Path) -> String,
    ) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let text = plant(dir.path());
        let mut config = parse_str(&text, what).map_err(|e| anyhow::anyhow!("{e}"))?;
        drop(text);
        config.storage.url = format!("sqlite:{}", dir.path().join("bench.db").display());
        config.auth.jwt_secret = Some(SECRET.into());
        let Started { client, stop, task } = start_server(
            config,
            (TENANT, OPERATOR, PASSWORD, Role::Operator),
            devices,
            Duration::from_secs(600),
            Duration::from_secs(120),
        )
        .await?;
        let tags = client.gql("{tags{id name writable}}", json!({})).await?;
        let (mut values, mut writable) = (Vec::new(), BTreeMap::<_, Vec<_>>::new());
        for t in tags["tags"].as_array().into_iter().flatten() {
            let (Some(id), Some(name)) = (t["id"].as_str(), t["name"].as_str()) else {
                continue;
            };
            if t["writable"].as_bool() == Some(true) {
                writable
                    .entry(name.to_string())
                    .or_default()
                    .push(id.to_string());
            } else {
                values.push(id.to_string());
            }
        }
        Ok(Server {
            client,
            values,
            writable,
            stop,
            task,
            _dir: dir,
        })
    }

    /// The ids of the writable tags called `name`.
    pub fn writable(&self, name: &str) -> &[String] {
        self.writable.get(name).map_or(&[], Vec::as_slice)
    }

    /// The ages of the cached values of [`PROBE_TAGS`] tags, the `n`th slice of the
    /// value tags (a different slice each time).
    pub async fn probe(&self, n: usize, ages: &mut Ages) -> anyhow::Result<()> {
        let per = PROBE_TAGS.min(self.values.len());
        let slices = self.values.len() / per.max(1);
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
        let now = micros_of_day_now();
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

    /// Probes the cache's latencies once a second until `until`: the ages and the
    /// failed probes.
    pub async fn probes(&self, until: Instant) -> (Ages, u64) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut ages, mut errors) = (Ages::default(), 0);
        for n in 0usize.. {
            tick.tick().await;
            if Instant::now() >= until {
                break;
            }
            if let Err(e) = self.probe(n, &mut ages).await {
                if errors == 0 {
                    eprintln!("first failed probe: {e}");
                }
                errors += 1;
            }
        }
        (ages, errors)
    }

    /// Scrapes `/metrics` every half second until `ready` says the scenario can start
    /// (`Ok`) or `within` passes (the error says how far it got, from `ready`'s `Err`).
    pub async fn wait_metrics(
        &self,
        within: Duration,
        ready: impl Fn(&str) -> Result<(), String>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let m = self.client.metrics().await?;
            match ready(&m) {
                Ok(()) => return Ok(()),
                Err(how_far) if Instant::now() >= deadline => {
                    anyhow::bail!("{how_far} after {} s", within.as_secs())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    pub async fn stop(self) {
        stop_server(self.stop, self.task, Duration::from_secs(120)).await;
    }
}

/// How many of `ms` fall in each range (a Nagle / delayed-ACK stall shows as a
/// cluster at 40 ms and above).
pub fn spread(ms: &[f64]) -> String {
    let bounds = [2.0, 5.0, 10.0, 20.0, 35.0, 50.0, 100.0, f64::INFINITY];
    let mut from = 0.0;
    let mut out = Vec::new();
    for b in bounds {
        let n = ms.iter().filter(|v| **v >= from && **v < b).count();
        out.push(format!("{from}-{b}:{n}"));
        from = b;
    }
    out.join(" ")
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}
