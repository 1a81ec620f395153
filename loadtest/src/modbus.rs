//! Modbus path: simulated Modbus TCP devices on loopback polled by a real ThermaCore
//! server started in-process (`app::run`, SQLite), while an operator writes tags
//! through the API. Over a steady window (after every device is ONLINE and a warm-up)
//! it reports the achieved sample and poll rates, the poll lag (jitter), the server's
//! CPU and memory, and the `writeTag` round trip.
//!
//! The devices (rodbus servers, ThermaCore's PLC simulator) run in a child process of
//! this binary, so that `cpu_cores` and `rss_mib` are the server's own (plus the small
//! write client) and `sim_cpu_cores` the devices'; both share the machine's cores.
//! `other_cores` is what the rest of the machine took meanwhile: a run with a high
//! value was disturbed. Lag and poll quantiles are interpolated inside the buckets of
//! the server's histograms (…, 1, 2.5, 5, 10 ms, …), so they are coarse.
//! `busiest_tenth` is the share of devices whose polls start in the same tenth of the
//! period (0.1 when spread evenly); `cache_age_ms` the age of the cached latest values
//! at the end (about a period while the cache keeps up). By default the historian
//! keeps nothing (see [`StoreMode`]): SQLite sustains a fraction of 1 M samples/s.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;
use thermacore::config::parse_str;
use thermacore::domain::Role;

use crate::modbus_client::{Started, pct, snapshot, start_server, stop_server, write_load};
use crate::modbus_sim::{self, placement};
use crate::prom;
use crate::world::{TICKS_PER_SEC, rss_kib, rss_kib_of};

const TENANT: &str = "bench";
const OPERATOR: &str = "operator";
const PASSWORD: &str = "modbus benchmark password";
const SECRET: &str = "a-benchmark-secret-of-enough-length!";

/// What the historian does with the samples.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreMode {
    /// The historian keeps nothing: its buffer holds one sample, so every batch is
    /// dropped and counted at the cost of a lock (polling and the data path are
    /// measured, not SQLite).
    None,
    /// The historian at its defaults writes to the SQLite file; past what SQLite
    /// sustains it buffers up to `max_buffered_samples` (2 M), then drops and counts.
    Sqlite,
}

pub struct Params {
    pub devices: usize,
    pub registers: u16,
    pub poll_ms: u64,
    pub seconds: u64,
    pub warmup: u64,
    pub servers: usize,
    pub writes_per_sec: f64,
    /// `max_concurrent_per_host` of every device (0: one per device, i.e. no limit).
    pub host_limit: u16,
    pub store: StoreMode,
}

/// The plant: every device reads `hr:0..registers` as u16 tags (one request per poll);
/// `hr0` is writable.
fn plant(p: &Params, ports: &[u16]) -> String {
    let limit = if p.host_limit == 0 {
        u16::try_from(p.devices).unwrap_or(u16::MAX)
    } else {
        p.host_limit
    };
    let mut s = String::with_capacity(p.devices * usize::from(p.registers) * 80);
    s.push_str("[quotas]\nmax_devices = 0\nmax_tags = 0\nmin_poll_ms = 0\n");
    s.push_str("[api]\nuser_requests_per_sec = 10000\n");
    if p.store == StoreMode::None {
        s.push_str("[historian]\nbatch_size = 1\nmax_buffered_samples = 1\n");
    }
    let _ = writeln!(s, "[[tenants]]\nname = \"{TENANT}\"");
    for d in 0..p.devices {
        let (server, unit) = placement(d, p.devices, p.servers);
        let _ = writeln!(
            s,
            "[[tenants.devices]]\nname = \"plc-{d:04}\"\npoll_ms = {}\ndriver = {{ protocol = \"modbus\", host = \"127.0.0.1\", port = {}, unit_id = {unit}, max_concurrent_per_host = {limit} }}",
            p.poll_ms, ports[server]
        );
        for r in 0..p.registers {
            let _ = writeln!(
                s,
                "[[tenants.devices.tags]]\nname = \"hr{r}\"\naddress = \"hr:{r}\"\ndata_type = \"u16\"\nwritable = {}",
                r == 0
            );
        }
    }
    s
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    modbus_sim::check_layout(p.devices, p.servers)?;
    anyhow::ensure!(
        p.registers >= 1 && p.registers <= 125,
        "--registers must be 1..=125 (one request per poll)"
    );
    let setup = Instant::now();
    let mut sim = modbus_sim::spawn(p.devices, p.registers, p.servers).await?;
    let sim_pid = sim.child.id().map(|i| i.to_string()).unwrap_or_default();

    let dir = tempfile::tempdir()?;
    let mut config = parse_str(&plant(&p, &sim.ports), "modbus bench plant")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    config.storage.url = format!("sqlite:{}", dir.path().join("modbus.db").display());
    config.auth.jwt_secret = Some(SECRET.into());
    // Ready once the world is applied (tens of thousands of tags) and the tree runs.
    let Started {
        client: c,
        stop: stop_tx,
        task: server,
    } = start_server(
        config,
        (TENANT, OPERATOR, PASSWORD, Role::Operator),
        p.devices,
        Duration::from_secs(600),
        Duration::from_secs(120),
    )
    .await?;
    let tags = c.gql("{tags{id name}}", json!({})).await?;
    let targets: Vec<String> = tags["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["name"] == "hr0")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    anyhow::ensure!(
        targets.len() == p.devices,
        "{} writable tags for {} devices",
        targets.len(),
        p.devices
    );
    eprintln!(
        "set-up: {} devices on {} servers, {} tags, all online after {:.1} s; warm-up {} s",
        p.devices,
        sim.ports.len(),
        p.devices * usize::from(p.registers),
        setup.elapsed().as_secs_f64(),
        p.warmup
    );
    tokio::time::sleep(Duration::from_secs(p.warmup)).await;

    let s0 = snapshot(&c, &sim_pid).await?;
    let until = s0.at + Duration::from_secs(p.seconds);
    let (mut took, write_errors) = write_load(&c, &targets, p.writes_per_sec, until).await;
    let s1 = snapshot(&c, &sim_pid).await?;
    let (rss, sim_rss) = (rss_kib(), rss_kib_of(&sim_pid));
    let states = c.states().await?;
    let busiest = c.busiest_tenth(p.poll_ms).await?;
    let cache_age = c.cache_age_ms(&targets[..targets.len().min(20)]).await?;
    let el = (s1.at - s0.at).as_secs_f64();

    let delta = |name: &str, labels: &str| {
        (prom::sum(&s1.metrics, name, labels) - prom::sum(&s0.metrics, name, labels)) / el
    };
    let modbus = "protocol=\"modbus\"";
    let hist_q = |name: &str, q: f64| {
        let b0 = prom::buckets(&s0.metrics, name, modbus);
        let b1 = prom::buckets(&s1.metrics, name, modbus);
        prom::quantile(&b0, &b1, q).map_or(f64::NAN, |s| s * 1000.0)
    };
    let lag = "thermacore_device_poll_lag_seconds";
    let poll = "thermacore_device_poll_duration_seconds";
    // The write inside the device actor (the driver's Modbus exchange), without the
    // API and the wait in the actor's mailbox.
    let dev_write = "thermacore_device_write_duration_seconds";
    let cores = |a: u64, b: u64| (b - a) as f64 / TICKS_PER_SEC / el;
    took.sort_by(f64::total_cmp);
    let target = p.devices as f64 * f64::from(p.registers) * 1000.0 / p.poll_ms as f64;
    println!(
        "modbus devices={} registers={} poll_ms={} samples_per_sec={:.0} polls_per_sec={:.0} lag_p50_ms={:.2} lag_p99_ms={:.2} cpu_cores={:.2} rss_mib={:.0} write_p50_ms={:.2} write_p99_ms={:.2} write_max_ms={:.2} write_errors={} \
         servers={} store={} seconds={:.1} target_samples_per_sec={:.0} poll_p50_ms={:.2} poll_p99_ms={:.2} device_write_p50_ms={:.2} device_write_p99_ms={:.2} poll_errors_per_sec={:.1} historian_dropped_per_sec={:.0} historian_written_per_sec={:.0} writes={} sim_cpu_cores={:.2} sim_rss_mib={:.0} other_cores={:.2} busiest_tenth={:.2} cache_age_ms={:.0} not_online={}",
        p.devices,
        p.registers,
        p.poll_ms,
        delta(
            "thermacore_samples_ingested_total",
            &format!("tenant=\"{TENANT}\"")
        ),
        delta("thermacore_device_polls_total", modbus),
        hist_q(lag, 0.5),
        hist_q(lag, 0.99),
        cores(s0.cpu, s1.cpu),
        rss as f64 / 1024.0,
        pct(&took, 0.5),
        pct(&took, 0.99),
        took.last().copied().unwrap_or(f64::NAN),
        write_errors,
        sim.ports.len(),
        if p.store == StoreMode::None {
            "none"
        } else {
            "sqlite"
        },
        el,
        target,
        hist_q(poll, 0.5),
        hist_q(poll, 0.99),
        hist_q(dev_write, 0.5),
        hist_q(dev_write, 0.99),
        delta("thermacore_device_poll_errors_total", modbus),
        delta("thermacore_historian_dropped_samples_total", ""),
        delta("thermacore_historian_written_samples_total", ""),
        took.len(),
        cores(s0.sim_cpu, s1.sim_cpu),
        sim_rss as f64 / 1024.0,
        cores(s0.machine, s1.machine) - cores(s0.cpu, s1.cpu) - cores(s0.sim_cpu, s1.sim_cpu),
        busiest,
        cache_age,
        p.devices - states.get("ONLINE").copied().unwrap_or(0),
    );
    let by_thread: Vec<String> = s1
        .threads
        .iter()
        .map(|(name, t)| (name, t - s0.threads.get(name).copied().unwrap_or(0).min(*t)))
        .filter(|(_, t)| *t > 0)
        .map(|(name, t)| format!("{name}={:.2}", t as f64 / TICKS_PER_SEC / el))
        .collect();
    eprintln!("server cpu cores by thread: {}", by_thread.join(" "));
    for name in [lag, poll] {
        let (b0, b1) = (
            prom::buckets(&s0.metrics, name, modbus),
            prom::buckets(&s1.metrics, name, modbus),
        );
        let counts: Vec<String> = b1
            .iter()
            .map(|(b, n)| {
                let n0 = b0.iter().find(|(x, _)| x == b).map_or(0.0, |(_, n0)| *n0);
                format!("{}ms:{:.0}", b * 1000.0, n - n0)
            })
            .collect();
        eprintln!("{name} (cumulative, window): {}", counts.join(" "));
    }

    stop_server(stop_tx, server, Duration::from_secs(60)).await;
    drop(sim.child.stdin.take());
    if tokio::time::timeout(Duration::from_secs(10), sim.child.wait())
        .await
        .is_err()
    {
        sim.child.kill().await?;
    }
    Ok(())
}
