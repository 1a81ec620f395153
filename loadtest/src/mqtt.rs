//! MQTT path: gateways publishing JSON on loopback (a child process) → a broker (the
//! embedded rumqttd in a child process, or an external one) → a real ThermaCore
//! server started in-process (`app::run`, SQLite, historian on) → cache and historian.
//!
//! Two phases per rate, each a line of figures. `ceiling`: the same publishers and a
//! plain rumqttc subscriber that only counts (on the same filters as ThermaCore, or
//! `PREFIX/#`), without ThermaCore: what the broker delivers on this machine. Then
//! `thermacore`: the server subscribes instead. Comparing the two at each rate says
//! which stage limits (`limit=`): the broker (the ceiling phase falls behind),
//! ThermaCore (only its phase falls behind: `thermacore` for the path to the cache,
//! `thermacore_historian` when only the historian drops or falls behind), or the
//! publishers (`offered` short of `target` while the rest keeps up). All ceiling
//! phases run before the server starts, so it never takes a share of them. Run a
//! `--sweep` of rates to see which saturates first.
//!
//! `delivered` is what ThermaCore's broker links received, `samples_per_sec` what
//! left the device actors for cache, alerts, live hub and historian
//! (`thermacore_samples_ingested_total`). `backlog` is samples parsed by a link but
//! not yet through its device actor's mailbox; `cache_age_ms` the age of cached values
//! by the time ThermaCore parsed them (its mailboxes), `source_age_ms` by the
//! publisher's `ts` (the broker too); both about one message period while all keeps
//! up. `drain_secs` is how long after the publishers stop ThermaCore still receives or
//! ingests. CPU is in cores, read from `/proc` for this process (ThermaCore and the
//! probes; `thermacore_store_cpu_cores` its SQLite threads), the broker's and the
//! publishers'; `other_cores` is what the rest of the machine took meanwhile: a run
//! with a high value was disturbed.

use std::time::{Duration, Instant};

use crate::modbus::StoreMode;
use crate::mqtt_broker::{Broker, Sink};
use crate::mqtt_pub::{Load, PubStats, Publishers};
use crate::mqtt_server::{Plant, Server, TENANT};
use crate::prom;
use crate::world::{TICKS_PER_SEC, cpu_ticks, machine_busy_ticks, rss_kib, thread_ticks};

/// Which phases run.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phases {
    /// The broker's ceiling at every rate, then ThermaCore at every rate.
    Both,
    /// Only the broker's ceiling (no server started).
    Ceiling,
    /// Only ThermaCore (`limit=` cannot tell the broker apart then).
    Thermacore,
}

pub struct Params {
    pub devices: usize,
    pub tags: usize,
    /// Messages per second per gateway, one run of each phase per rate.
    pub rates: Vec<f64>,
    pub qos: u8,
    pub seconds: u64,
    pub warmup: u64,
    pub per_client: usize,
    pub connections: usize,
    /// `host:port` of an external broker; none: the embedded rumqttd.
    pub broker: Option<String>,
    pub broker_pid: Option<u32>,
    pub phases: Phases,
    /// The counting subscriber takes `PREFIX/#` instead of ThermaCore's filters.
    pub ceiling_wildcard: bool,
    pub store: StoreMode,
}

/// Shares of the offer that count as keeping up.
const KEPT: f64 = 0.98;
/// A cache older than this at the end of the window is behind.
const MAX_CACHE_AGE_MS: f64 = 1000.0;

/// Counters of one moment.
struct Snap {
    at: Instant,
    metrics: String,
    cpu: u64,
    broker_cpu: u64,
    pub_cpu: u64,
    machine: u64,
    pubs: PubStats,
    sink: [u64; 4],
}

async fn snap(
    broker: &Broker,
    pubs: &mut Publishers,
    server: Option<&Server>,
    sink: Option<&Sink>,
) -> anyhow::Result<Snap> {
    use std::sync::atomic::Ordering::Relaxed;
    let metrics = match server {
        Some(s) => s.client.metrics().await?,
        None => String::new(),
    };
    let sink = sink.map_or([0; 4], |s| {
        let c = &s.counters;
        [
            c.messages.load(Relaxed),
            c.bytes.load(Relaxed),
            c.lag_ms_sum.load(Relaxed),
            c.lag_ms_max.swap(0, Relaxed),
        ]
    });
    Ok(Snap {
        at: Instant::now(),
        metrics,
        cpu: cpu_ticks("self"),
        broker_cpu: broker.pid.as_deref().map_or(0, cpu_ticks),
        pub_cpu: cpu_ticks(&pubs.pid),
        machine: machine_busy_ticks(),
        pubs: pubs.stats().await?,
        sink,
    })
}

/// The figures both phases share.
struct Window {
    el: f64,
    target: f64,
    offered: f64,
    /// Payload MiB/s the publishers queued.
    offered_mib: f64,
    cores: f64,
    broker_cores: f64,
    pub_cores: f64,
    other_cores: f64,
    pub_errors: u64,
}

fn window(p: &Params, rate: f64, broker: &Broker, s0: &Snap, s1: &Snap) -> Window {
    let el = (s1.at - s0.at).as_secs_f64();
    let cores = |a: u64, b: u64| b.saturating_sub(a) as f64 / TICKS_PER_SEC / el;
    let (c, bc, pc) = (
        cores(s0.cpu, s1.cpu),
        if broker.pid.is_some() {
            cores(s0.broker_cpu, s1.broker_cpu)
        } else {
            f64::NAN
        },
        cores(s0.pub_cpu, s1.pub_cpu),
    );
    Window {
        el,
        target: p.devices as f64 * rate,
        offered: s1.pubs.published.saturating_sub(s0.pubs.published) as f64 / el,
        offered_mib: s1.pubs.bytes.saturating_sub(s0.pubs.bytes) as f64 / el / 1_048_576.0,
        cores: c,
        broker_cores: bc,
        pub_cores: pc,
        other_cores: cores(s0.machine, s1.machine) - c - if bc.is_nan() { 0.0 } else { bc } - pc,
        pub_errors: s1.pubs.errors.saturating_sub(s0.pubs.errors),
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn load(p: &Params, broker: &Broker, prefix: &str, rate: f64) -> Load {
    Load {
        host: broker.host.clone(),
        port: broker.port,
        prefix: prefix.to_string(),
        devices: p.devices,
        tags: p.tags,
        rate,
        qos: p.qos,
        per_client: p.per_client,
    }
}

/// One ceiling phase: publishers and the counting subscriber; whether it kept up.
async fn ceiling(p: &Params, broker: &Broker, prefix: &str, rate: f64) -> anyhow::Result<bool> {
    let filters: Vec<String> = if p.ceiling_wildcard {
        vec![format!("{prefix}/#")]
    } else {
        (0..p.devices)
            .map(|d| format!("{prefix}/gw-{d}/#"))
            .collect()
    };
    let sink = Sink::start(broker, &filters, p.qos).await?;
    let mut pubs = Publishers::spawn(&load(p, broker, prefix, rate)).await?;
    tokio::time::sleep(Duration::from_secs(p.warmup)).await;
    let s0 = snap(broker, &mut pubs, None, Some(&sink)).await?;
    tokio::time::sleep(Duration::from_secs(p.seconds)).await;
    let s1 = snap(broker, &mut pubs, None, Some(&sink)).await?;
    pubs.stop().await?;
    sink.stop().await;
    let w = window(p, rate, broker, &s0, &s1);
    let msgs = (s1.sink[0] - s0.sink[0]) as f64;
    let delivered = msgs / w.el;
    let lag_mean = (s1.sink[2] - s0.sink[2]) as f64 / msgs.max(1.0);
    let kept_up = delivered >= KEPT * w.offered && lag_mean < MAX_CACHE_AGE_MS;
    println!(
        "mqtt phase=ceiling broker={} devices={} tags={} rate={rate} qos={} target_msgs_per_sec={:.0} offered_msgs_per_sec={:.0} delivered_msgs_per_sec={:.0} delivered_samples_per_sec={:.0} offered_mib_per_sec={:.2} delivered_mib_per_sec={:.2} lag_mean_ms={lag_mean:.1} lag_max_ms={} broker_cpu_cores={:.2} publisher_cpu_cores={:.2} sink_cpu_cores={:.2} other_cores={:.2} publisher_errors={} kept_up={} seconds={:.1}",
        broker.kind,
        p.devices,
        p.tags,
        p.qos,
        w.target,
        w.offered,
        delivered,
        delivered * p.tags as f64,
        w.offered_mib,
        (s1.sink[1] - s0.sink[1]) as f64 / w.el / 1_048_576.0,
        s1.sink[3],
        w.broker_cores,
        w.pub_cores,
        w.cores,
        w.other_cores,
        w.pub_errors,
        yes(kept_up),
        w.el,
    );
    Ok(kept_up)
}

/// Samples parsed by the links and not yet through the device actors.
fn backlog(metrics: &str, tags: usize) -> f64 {
    // Every `ok` series is the bench tenant's (the link's `unmatched` has no tenant).
    let ok = prom::sum(metrics, "thermacore_mqtt_messages_total", "outcome=\"ok\"");
    let t = format!("tenant=\"{TENANT}\"");
    ok * tags as f64 - prom::sum(metrics, "thermacore_samples_ingested_total", &t)
}

/// One ThermaCore phase; `ceiling_kept_up` is the ceiling phase's verdict at this rate.
async fn thermacore(
    p: &Params,
    broker: &Broker,
    server: &Server,
    prefix: &str,
    rate: f64,
    ceiling_kept_up: Option<bool>,
) -> anyhow::Result<()> {
    let mut pubs = Publishers::spawn(&load(p, broker, prefix, rate)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.devices_heard().await? < p.devices {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not every gateway reached ThermaCore within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(p.warmup)).await;
    let threads0 = thread_ticks();
    let s0 = snap(broker, &mut pubs, Some(server), None).await?;
    tokio::time::sleep(Duration::from_secs(p.seconds)).await;
    let s1 = snap(broker, &mut pubs, Some(server), None).await?;
    let threads1 = thread_ticks();
    let (cache_age, source_age) = server.cache_ages_ms().await?;
    let rss = rss_kib();
    pubs.stop().await?;
    let stopped = Instant::now();
    let mut last = s1.metrics.clone();
    let drain = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let m = server.client.metrics().await?;
        let msgs = |t: &str| prom::sum(t, "thermacore_mqtt_messages_total", "");
        let settled = msgs(&m) == msgs(&last) && backlog(&m, p.tags) <= 0.0;
        last = m;
        if settled || stopped.elapsed() > Duration::from_secs(60) {
            break stopped.elapsed().as_secs_f64() - 0.25;
        }
    };

    let w = window(p, rate, broker, &s0, &s1);
    let t = format!("tenant=\"{TENANT}\"");
    let delta = |name: &str, labels: &str| {
        (prom::sum(&s1.metrics, name, labels) - prom::sum(&s0.metrics, name, labels)) / w.el
    };
    let delivered = delta("thermacore_mqtt_messages_total", &t);
    let refused = delta("thermacore_mqtt_messages_total", "outcome=\"refused\"");
    let samples = delta("thermacore_samples_ingested_total", &t);
    let (b0, b1) = (backlog(&s0.metrics, p.tags), backlog(&s1.metrics, p.tags));
    let kept_up = delivered >= KEPT * w.offered
        && samples >= KEPT * delivered * p.tags as f64
        && cache_age < MAX_CACHE_AGE_MS;
    let dropped = delta("thermacore_historian_dropped_samples_total", "");
    let written = delta("thermacore_historian_written_samples_total", "");
    let buffered = |s: &Snap| prom::sum(&s.metrics, "thermacore_historian_buffered_samples", "");
    let (buf0, buf1) = (buffered(&s0), buffered(&s1));
    // Behind: its buffer holds more than 2 s of samples and grew by more than the
    // share of the window's samples a keeping-up path may leave. (It settles at a
    // working level first, writing bigger transactions as it grows: a short window
    // sees it fill up to there.)
    let historian = if p.store == StoreMode::None {
        "off"
    } else if dropped > 0.0 {
        "drops"
    } else if buf1 > 2.0 * samples && buf1 - buf0 > (1.0 - KEPT) * samples * w.el {
        "behind"
    } else {
        "keeps_up"
    };
    // The first stage that did not take what it was given; the publishers only when
    // everything after them kept up with the little they offered.
    let limit = if ceiling_kept_up == Some(false) {
        "broker"
    } else if !kept_up {
        "thermacore"
    } else if matches!(historian, "drops" | "behind") {
        "thermacore_historian"
    } else if w.offered < 0.95 * w.target {
        "publishers"
    } else {
        "none"
    };
    let thread_cores = |store: bool| {
        threads1
            .iter()
            .filter(|(name, _)| name.starts_with("sqlx-sqlite") == store)
            .map(|(name, t)| t - threads0.get(name).copied().unwrap_or(0).min(*t))
            .sum::<u64>() as f64
            / TICKS_PER_SEC
            / w.el
    };
    let machine = w.cores + w.pub_cores + w.other_cores + w.broker_cores.max(0.0);
    println!(
        "mqtt phase=thermacore broker={} devices={} tags={} rate={rate} qos={} target_msgs_per_sec={:.0} offered_msgs_per_sec={:.0} delivered_msgs_per_sec={delivered:.0} samples_per_sec={samples:.0} thermacore_cpu_cores={:.2} thermacore_store_cpu_cores={:.2} broker_cpu_cores={:.2} publisher_cpu_cores={:.2} rss_mib={:.0} kept_up={} limit={limit} \
         cores_per_100k_samples={:.2} cores_per_100k_samples_without_store={:.2} backlog_samples_start={b0:.0} backlog_samples_end={b1:.0} cache_age_ms={cache_age:.0} source_age_ms={source_age:.0} drain_secs={drain:.1} refused_msgs_per_sec={refused:.0} historian={historian} historian_written_per_sec={written:.0} historian_dropped_per_sec={dropped:.0} historian_buffered_start={buf0:.0} historian_buffered_end={buf1:.0} offered_mib_per_sec={:.2} route_dropped_batches={:.0} reconnects={:.0} publisher_errors={} connections={} store={} machine_cores={machine:.2}/{} other_cores={:.2} seconds={:.1}",
        broker.kind,
        p.devices,
        p.tags,
        p.qos,
        w.target,
        w.offered,
        w.cores,
        thread_cores(true),
        w.broker_cores,
        w.pub_cores,
        rss as f64 / 1024.0,
        yes(kept_up),
        w.cores / (samples / 100_000.0).max(1e-9),
        thread_cores(false) / (samples / 100_000.0).max(1e-9),
        w.offered_mib,
        delta("thermacore_route_dropped_batches_total", "") * w.el,
        delta("thermacore_mqtt_reconnects_total", "") * w.el,
        w.pub_errors,
        p.connections,
        if p.store == StoreMode::None {
            "none"
        } else {
            "sqlite"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        w.other_cores,
        w.el,
    );
    let by_thread: Vec<String> = threads1
        .iter()
        .map(|(name, t)| (name, t - threads0.get(name).copied().unwrap_or(0).min(*t)))
        .filter(|(_, t)| *t > 0)
        .map(|(name, t)| format!("{name}={:.2}", t as f64 / TICKS_PER_SEC / w.el))
        .collect();
    eprintln!("thermacore cpu cores by thread: {}", by_thread.join(" "));
    Ok(())
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    anyhow::ensure!(
        p.devices > 0 && p.tags > 0,
        "--devices and --tags must be > 0"
    );
    anyhow::ensure!(p.qos <= 2, "--qos must be 0, 1 or 2");
    anyhow::ensure!(
        p.per_client > 0 && p.connections > 0,
        "--per-client and --connections must be > 0"
    );
    anyhow::ensure!(p.rates.iter().all(|r| *r > 0.0), "rates must be > 0");
    let broker = match &p.broker {
        Some(addr) => Broker::external(addr, p.broker_pid)?,
        None => Broker::embedded().await?,
    };
    // A prefix of this run: an external broker may carry other traffic.
    let prefix = format!("load/{}", std::process::id());
    eprintln!(
        "broker {} at {}:{}{}; {} gateways × {} tags at {:?} msgs/s each",
        broker.kind,
        broker.host,
        broker.port,
        if broker.pid.is_some() {
            ""
        } else {
            " (its CPU not measured: no --broker-pid)"
        },
        p.devices,
        p.tags,
        p.rates
    );
    let mut ceilings = Vec::new();
    if p.phases != Phases::Thermacore {
        for &rate in &p.rates {
            ceilings.push(Some(ceiling(&p, &broker, &prefix, rate).await?));
        }
    }
    if p.phases != Phases::Ceiling {
        let setup = Instant::now();
        let server = Server::start(&Plant {
            broker: &broker,
            prefix: &prefix,
            devices: p.devices,
            tags: p.tags,
            qos: p.qos,
            connections: p.connections,
            store: p.store,
        })
        .await?;
        eprintln!(
            "thermacore: {} devices, {} tags, all online after {:.1} s",
            p.devices,
            p.devices * p.tags,
            setup.elapsed().as_secs_f64()
        );
        for (i, &rate) in p.rates.iter().enumerate() {
            let c = ceilings.get(i).copied().flatten();
            thermacore(&p, &broker, &server, &prefix, rate, c).await?;
        }
        server.stop().await;
    }
    broker.stop().await
}
