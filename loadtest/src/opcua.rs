//! OPC UA path: embedded async-opcua servers (a child process, see `opcua_server`)
//! whose `items` Double variables all change once a second → one session per device
//! of a real ThermaCore server started in-process (`app::run`, SQLite) monitoring every
//! variable → cache (and historian with `--store sqlite`), while an operator writes a
//! tag of a random device through the API. Over a steady window (every device ONLINE,
//! every item monitored, then a warm-up) it prints one line of figures.
//!
//! `offered_per_sec` is the values the servers set, `delivered_per_sec` the data
//! changes ThermaCore's sessions received (`thermacore_opcua_data_changes_total`),
//! `samples_per_sec` what left the device actors (`thermacore_samples_ingested_total`).
//! Every subscription samples and publishes at `--publish-ms` (the devices' `poll_ms`):
//! a value waits up to one interval at the server, so `latency` (source time, when the
//! server set the value, to server time, when the driver received it; read back from
//! the cache for 500 tags a second) is about half an interval on average.
//! `source_age` is how old the values the cache shows are at a random moment (up to a
//! second between changes, plus the latency); `cache_age` the same since they reached
//! ThermaCore (it grows when the device actors fall behind). `publish_latency` is the
//! driver's histogram of a notification's publish time (at the server) to its receipt.
//! The write round trip is the API's (`writeTag` in GraphQL, sequential); the
//! `device_write` figures the part inside the device actor (the OPC UA Write call).
//! Histogram quantiles are interpolated in the buckets (…, 1, 2.5, 5, 10, 25 ms, …).
//! CPU is in cores from `/proc`: this process (ThermaCore, the probes and the write
//! client), the server child, and `other_cores` the rest of the machine meanwhile (a
//! run with a high value was disturbed).

use std::time::{Duration, Instant};

use crate::child::SliceStats;
use crate::modbus::StoreMode;
use crate::modbus_client::{Snapshot, Window, pct, snapshot, write_load};
use crate::opcua_plant;
use crate::opcua_server::{Layout, Servers};
use crate::plant_server::{Ages, TENANT, sorted, spread};
use crate::prom;
use crate::world::{TICKS_PER_SEC, peak_rss_kib, rss_kib, rss_kib_of};

pub struct Params {
    pub layout: Layout,
    pub publish_ms: u64,
    pub seconds: u64,
    pub warmup: u64,
    pub writes_per_sec: f64,
    pub store: StoreMode,
}

/// Share of the offer that counts as keeping up.
const KEPT: f64 = 0.98;

const DATA_CHANGES: &str = "thermacore_opcua_data_changes_total";
const MONITORED: &str = "thermacore_opcua_monitored_items";

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Waits until every tag is a monitored item and data changes arrive.
async fn wait_monitored(server: &crate::plant_server::Server, want: usize) -> anyhow::Result<()> {
    server
        .wait_metrics(Duration::from_secs(300), |m| {
            let monitored = prom::sum(m, MONITORED, "");
            if monitored as usize >= want && prom::sum(m, DATA_CHANGES, "") > 0.0 {
                Ok(())
            } else {
                Err(format!("{monitored} of {want} items monitored"))
            }
        })
        .await
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    let l = p.layout;
    l.check()?;
    anyhow::ensure!(
        p.publish_ms >= 100,
        "--publish-ms must be at least 100 (async-opcua's minimum)"
    );
    anyhow::ensure!(p.writes_per_sec > 0.0, "--writes-per-sec must be > 0");
    let setup = Instant::now();
    let mut servers = Servers::spawn(&l).await?;
    eprintln!(
        "OPC UA servers: {} items on {} devices, {} server(s) at ports {:?} (ns={}), up after {:.1} s",
        l.items,
        l.devices,
        l.servers,
        servers.ports,
        servers.ns,
        setup.elapsed().as_secs_f64()
    );
    let server = opcua_plant::start(&l, &servers, p.publish_ms, p.store).await?;
    let online = setup.elapsed().as_secs_f64();
    wait_monitored(&server, l.items + l.devices).await?;
    eprintln!(
        "thermacore: all devices online after {online:.1} s, every item monitored after {:.1} s; warm-up {} s",
        setup.elapsed().as_secs_f64(),
        p.warmup
    );
    tokio::time::sleep(Duration::from_secs(p.warmup)).await;

    let pid = servers.peer.pid.clone();
    let st0 = servers.peer.slice_stats().await?;
    let s0 = snapshot(&server.client, &pid).await?;
    let until = s0.at + Duration::from_secs(p.seconds);
    let ((took, write_errors), (ages, probe_errors)) = tokio::join!(
        write_load(
            &server.client,
            server.writable("w"),
            p.writes_per_sec,
            until
        ),
        server.probes(until),
    );
    let s1 = snapshot(&server.client, &pid).await?;
    let st1 = servers.peer.slice_stats().await?;
    let (rss, server_rss) = (rss_kib(), rss_kib_of(&pid));
    report(&p, &s0, &s1, (&st0, &st1), &ages, &took, write_errors);
    eprintln!(
        "rss_mib={:.0} opcua_server_rss_mib={:.0} probes={} probe_errors={probe_errors}",
        rss as f64 / 1024.0,
        server_rss as f64 / 1024.0,
        ages.latency_ms.len()
    );
    eprintln!("writeTag round trips (ms, window): {}", spread(&took));
    let by_thread: Vec<String> = s1
        .threads
        .iter()
        .map(|(name, t)| (name, t - s0.threads.get(name).copied().unwrap_or(0).min(*t)))
        .filter(|(_, t)| *t > 0)
        .map(|(name, t)| {
            let el = (s1.at - s0.at).as_secs_f64();
            format!("{name}={:.2}", t as f64 / TICKS_PER_SEC / el)
        })
        .collect();
    eprintln!("thermacore cpu cores by thread: {}", by_thread.join(" "));
    server.stop().await;
    servers.peer.stop(Duration::from_secs(15)).await
}

/// Prints the line of figures of one window.
fn report(
    p: &Params,
    s0: &Snapshot,
    s1: &Snapshot,
    (st0, st1): (&SliceStats, &SliceStats),
    ages: &Ages,
    took: &[f64],
    write_errors: u64,
) {
    let l = &p.layout;
    let w = Window::new(s0, s1);
    let el = w.seconds;
    let delta = |name: &str, labels: &str| w.rate(name, labels);
    let hist_q = |name: &str, labels: &str, q: f64| w.quantile_ms(name, labels, q);
    let (tc, sc, machine) = w.cores();

    let target = l.items as f64;
    let offered = st1.updates.saturating_sub(st0.updates) as f64 / el;
    let delivered = delta(DATA_CHANGES, "");
    let samples = delta(
        "thermacore_samples_ingested_total",
        &format!("tenant=\"{TENANT}\""),
    );
    let took = sorted(took.to_vec());
    let latency = sorted(ages.latency_ms.clone());
    let source_age = sorted(ages.source_age_ms.clone());
    let cache_age = sorted(ages.cache_age_ms.clone());
    // Behind: a value waits at most one publishing interval at the server; allow a
    // second more before calling the path late.
    let timely = pct(&latency, 0.99) < p.publish_ms as f64 + 1000.0;
    let delivered_ok = delivered >= KEPT * offered;
    let ingested_ok = samples >= KEPT * delivered;
    let kept_up = delivered_ok && ingested_ok && timely;
    let dropped = delta("thermacore_historian_dropped_samples_total", "");
    let written = delta("thermacore_historian_written_samples_total", "");
    let historian = match p.store {
        StoreMode::None => "off",
        StoreMode::Sqlite if dropped > 0.0 => "drops",
        StoreMode::Sqlite if written < KEPT * samples => "behind",
        StoreMode::Sqlite => "keeps_up",
    };
    // The first stage that did not take what it was given.
    let limit = if offered < 0.95 * target {
        "opcua_server_updates"
    } else if !delivered_ok {
        "opcua_delivery"
    } else if !ingested_ok || !timely {
        "thermacore"
    } else if matches!(historian, "drops" | "behind") {
        "thermacore_historian"
    } else {
        "none"
    };
    let slices = st1.slices.saturating_sub(st0.slices).max(1);
    let opcua = "protocol=\"opcua\"";
    let publish = "thermacore_opcua_publish_latency_seconds";
    let dev_write = "thermacore_device_write_duration_seconds";
    println!(
        "opcua items={} devices={} servers={} publish_ms={} store={} target_per_sec={target:.0} offered_per_sec={offered:.0} delivered_per_sec={delivered:.0} samples_per_sec={samples:.0} thermacore_cpu_cores={tc:.2} opcua_server_cpu_cores={sc:.2} rss_peak_mib={:.0} \
         latency_p50_ms={:.0} latency_p99_ms={:.0} publish_latency_p50_ms={:.2} publish_latency_p99_ms={:.2} write_p50_ms={:.2} write_p95_ms={:.2} write_p99_ms={:.2} write_max_ms={:.2} write_errors={write_errors} kept_up={} limit={limit} \
         writes={} device_write_p50_ms={:.2} device_write_p99_ms={:.2} source_age_p50_ms={:.0} source_age_p99_ms={:.0} cache_age_p99_ms={:.0} cache_age_max_ms={:.0} historian={historian} historian_written_per_sec={written:.0} historian_dropped_per_sec={dropped:.0} \
         cores_per_100k_changes={:.2} server_slice_ms_mean={:.1} server_slice_ms_max={:.1} monitored_items={:.0} polled_nodes={:.0} reconnects={:.0} service_errors={:.0} route_dropped_batches={:.0} machine_cores={machine:.2}/{} other_cores={:.2} seconds={el:.1}",
        l.items,
        l.devices,
        l.servers,
        p.publish_ms,
        if p.store == StoreMode::None {
            "none"
        } else {
            "sqlite"
        },
        peak_rss_kib() as f64 / 1024.0,
        pct(&latency, 0.5),
        pct(&latency, 0.99),
        hist_q(publish, "", 0.5),
        hist_q(publish, "", 0.99),
        pct(&took, 0.5),
        pct(&took, 0.95),
        pct(&took, 0.99),
        took.last().copied().unwrap_or(f64::NAN),
        yes(kept_up),
        took.len(),
        hist_q(dev_write, opcua, 0.5),
        hist_q(dev_write, opcua, 0.99),
        pct(&source_age, 0.5),
        pct(&source_age, 0.99),
        pct(&cache_age, 0.99),
        cache_age.last().copied().unwrap_or(f64::NAN),
        tc / (delivered / 100_000.0).max(1e-9),
        st1.slice_us_sum.saturating_sub(st0.slice_us_sum) as f64 / slices as f64 / 1000.0,
        st1.slice_us_max as f64 / 1000.0,
        w.gauge(MONITORED),
        // (+ 0.0: a gauge counted down to zero prints -0.)
        w.gauge("thermacore_opcua_polled_nodes") + 0.0,
        w.count("thermacore_opcua_reconnects_total", ""),
        w.count("thermacore_opcua_service_errors_total", ""),
        w.count("thermacore_route_dropped_batches_total", ""),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        machine - tc - sc,
    );
}
