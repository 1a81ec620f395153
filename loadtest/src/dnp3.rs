//! DNP3 path: outstations of the `dnp3` crate (a child process, see
//! `dnp3_outstations`) whose analog inputs change at a steady share per second and are
//! reported as unsolicited events → one master channel per device of a real ThermaCore
//! server started in-process (`app::run`, SQLite) → cache (and historian with
//! `--store sqlite`), while two operators send analog output commands through the API,
//! one direct operate and one select-before-operate. Over a steady window (every
//! device ONLINE and its integrity poll done, then a warm-up) it prints one line of
//! figures.
//!
//! `offered_per_sec` is the changes the outstations made, `events_per_sec` the events
//! ThermaCore's masters received (`thermacore_dnp3_events_total`), `samples_per_sec`
//! what left the device actors. `latency` is from an event's time (stamped by the
//! outstation when it changed the point) to its server time (when the driver received
//! it), read back from the cache for 500 tags a second; it holds the outstation's own
//! delay before it sends an unsolicited response as well as ThermaCore's part.
//! `cache_age` is how long since the cached values reached ThermaCore (about the time
//! between changes of a point while the path keeps up). The command round trips are
//! the API's (`writeTag` in GraphQL, sequential per operator); `device_write` the part
//! inside the device actor, and `device_command` the DNP3 request and the
//! outstation's answer within it. CPU is in cores from `/proc`: this process
//! (ThermaCore, the probes and the write clients), the outstations' child, and
//! `other_cores` the rest of the machine meanwhile (a run with a high value was
//! disturbed).
//!
//! The `dnp3` crate's licence allows no publication of benchmark figures: this
//! scenario is for our own measurements.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::child::SliceStats;
use crate::dnp3_outstations::{Layout, Outstations};
use crate::modbus::StoreMode;
use crate::modbus_client::{Snapshot, Window, pct, snapshot, write_load};
use crate::plant_server::{Ages, Server, TENANT, sorted, spread};
use crate::prom;
use crate::world::{peak_rss_kib, rss_kib, rss_kib_of};

pub struct Params {
    pub layout: Layout,
    pub seconds: u64,
    pub warmup: u64,
    /// Per operator (one direct, one SBO).
    pub writes_per_sec: f64,
    pub store: StoreMode,
}

/// One operator's write round trips (ms) and failures.
type Writes = (Vec<f64>, u64);

/// Share of the offer that counts as keeping up.
const KEPT: f64 = 0.98;

const EVENTS: &str = "thermacore_dnp3_events_total";
const DIRECT: &str = "sp_direct";
const SBO: &str = "sp_sbo";

fn plant(l: &Layout, ports: &[u16], store: StoreMode) -> String {
    let mut s = String::with_capacity(l.outstations * usize::from(l.points) * 70);
    s.push_str("[quotas]\nmax_devices = 0\nmax_tags = 0\nmin_poll_ms = 0\n");
    s.push_str("[api]\nuser_requests_per_sec = 10000\n");
    if store == StoreMode::None {
        s.push_str("[historian]\nbatch_size = 1\nmax_buffered_samples = 1\n");
    }
    let _ = writeln!(s, "[[tenants]]\nname = \"{TENANT}\"");
    for (o, port) in ports.iter().enumerate() {
        let _ = writeln!(
            s,
            "[[tenants.devices]]\nname = \"rtu-{o}\"\ndriver = {{ protocol = \"dnp3\", endpoint = \"127.0.0.1:{port}\", unsolicited = true }}"
        );
        for i in 0..l.points {
            let _ = writeln!(
                s,
                "[[tenants.devices.tags]]\nname = \"v{i}\"\naddress = \"ai:{i}\"\ndata_type = \"f64\""
            );
        }
        for (name, address) in [(DIRECT, "ao:0|mode=direct"), (SBO, "ao:1|mode=sbo")] {
            let _ = writeln!(
                s,
                "[[tenants.devices.tags]]\nname = \"{name}\"\naddress = \"{address}\"\ndata_type = \"f64\"\nwritable = true"
            );
        }
    }
    s
}

/// Waits until every device's integrity poll has answered and events arrive.
async fn wait_events(server: &Server, devices: usize) -> anyhow::Result<()> {
    server
        .wait_metrics(Duration::from_secs(300), |m| {
            let polls = prom::sum(
                m,
                "thermacore_dnp3_polls_total",
                "class=\"integrity\",outcome=\"ok\"",
            );
            if polls as usize >= devices && prom::sum(m, EVENTS, "") > 0.0 {
                Ok(())
            } else {
                Err(format!("{polls} of {devices} integrity polls answered"))
            }
        })
        .await
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    let l = p.layout;
    l.check()?;
    anyhow::ensure!(p.writes_per_sec > 0.0, "--writes-per-sec must be > 0");
    let setup = Instant::now();
    let mut outstations = Outstations::spawn(&l).await?;
    eprintln!(
        "DNP3 outstations: {} × {} analog inputs, {} changes/s, up after {:.1} s",
        l.outstations,
        l.points,
        l.changes_per_sec(),
        setup.elapsed().as_secs_f64()
    );
    let server = Server::start("dnp3 bench plant", l.outstations, |_| {
        plant(&l, &outstations.ports, p.store)
    })
    .await?;
    let points = l.outstations * usize::from(l.points);
    anyhow::ensure!(
        server.values.len() == points
            && server.writable(DIRECT).len() == l.outstations
            && server.writable(SBO).len() == l.outstations,
        "{} value tags for {points} points",
        server.values.len()
    );
    let online = setup.elapsed().as_secs_f64();
    wait_events(&server, l.outstations).await?;
    eprintln!(
        "thermacore: all devices online after {online:.1} s, integrity polls done after {:.1} s; warm-up {} s",
        setup.elapsed().as_secs_f64(),
        p.warmup
    );
    tokio::time::sleep(Duration::from_secs(p.warmup)).await;

    let pid = outstations.peer.pid.clone();
    let st0 = outstations.peer.slice_stats().await?;
    let s0 = snapshot(&server.client, &pid).await?;
    let until = s0.at + Duration::from_secs(p.seconds);
    let rate = p.writes_per_sec;
    let (direct, sbo, (ages, probe_errors)) = tokio::join!(
        write_load(&server.client, server.writable(DIRECT), rate, until),
        write_load(&server.client, server.writable(SBO), rate, until),
        server.probes(until),
    );
    let s1 = snapshot(&server.client, &pid).await?;
    let st1 = outstations.peer.slice_stats().await?;
    let (rss, child_rss) = (rss_kib(), rss_kib_of(&pid));
    report(&p, (&s0, &s1), (&st0, &st1), &ages, (&direct, &sbo));
    eprintln!(
        "rss_mib={:.0} outstations_rss_mib={:.0} probes={} probe_errors={probe_errors}",
        rss as f64 / 1024.0,
        child_rss as f64 / 1024.0,
        ages.latency_ms.len()
    );
    eprintln!("direct round trips (ms, window): {}", spread(&direct.0));
    eprintln!("SBO round trips (ms, window): {}", spread(&sbo.0));
    server.stop().await;
    outstations.peer.stop(Duration::from_secs(15)).await
}

/// Prints the line of figures of one window.
fn report(
    p: &Params,
    (s0, s1): (&Snapshot, &Snapshot),
    (st0, st1): (&SliceStats, &SliceStats),
    ages: &Ages,
    (direct, sbo): (&Writes, &Writes),
) {
    let l = &p.layout;
    let w = Window::new(s0, s1);
    let el = w.seconds;
    let delta = |name: &str, labels: &str| w.rate(name, labels);
    let hist_q = |name: &str, labels: &str, q: f64| w.quantile_ms(name, labels, q);
    let (tc, oc, machine) = w.cores();

    let target = l.changes_per_sec() as f64;
    let offered = st1.updates.saturating_sub(st0.updates) as f64 / el;
    // The analog inputs' events (the outputs' come from the commands).
    let events = delta(EVENTS, "point=\"ai\"");
    let samples = delta(
        "thermacore_samples_ingested_total",
        &format!("tenant=\"{TENANT}\""),
    );
    let latency = sorted(ages.latency_ms.clone());
    let cache_age = sorted(ages.cache_age_ms.clone());
    let (d, s) = (sorted(direct.0.clone()), sorted(sbo.0.clone()));
    let all = sorted([direct.0.as_slice(), sbo.0.as_slice()].concat());
    let timely = pct(&latency, 0.99) < 1000.0;
    let (events_ok, ingested_ok) = (events >= KEPT * offered, samples >= KEPT * events);
    let limit = if offered < 0.95 * target {
        "dnp3_outstations"
    } else if !events_ok {
        "dnp3_delivery"
    } else if !ingested_ok || !timely {
        "thermacore"
    } else {
        "none"
    };
    let overflows = w.count("thermacore_dnp3_iin_total", "bit=\"event_buffer_overflow\"");
    let cmd = "kind=\"command\"";
    let (dev_write, dnp3) = (
        "thermacore_device_write_duration_seconds",
        "protocol=\"dnp3\"",
    );
    println!(
        "dnp3 outstations={} points={} change={} store={} target_per_sec={target:.0} offered_per_sec={offered:.0} events_per_sec={events:.0} samples_per_sec={samples:.0} unsolicited_fragments_per_sec={:.0} \
         thermacore_cpu_cores={tc:.2} outstations_cpu_cores={oc:.2} rss_peak_mib={:.0} latency_p50_ms={:.0} latency_p99_ms={:.0} latency_max_ms={:.0} cache_age_p50_ms={:.0} cache_age_p99_ms={:.0} \
         write_p50_ms={:.2} write_p99_ms={:.2} direct_p50_ms={:.2} direct_p99_ms={:.2} direct_max_ms={:.2} sbo_p50_ms={:.2} sbo_p99_ms={:.2} sbo_max_ms={:.2} writes={} write_errors={} device_write_p50_ms={:.2} device_write_p99_ms={:.2} device_command_p50_ms={:.2} device_command_p99_ms={:.2} \
         kept_up={} limit={limit} overflows={overflows:.0} link_changes={:.0} outstation_slice_ms_mean={:.2} outstation_slice_ms_max={:.2} machine_cores={machine:.2}/{} other_cores={:.2} seconds={el:.1}",
        l.outstations,
        l.points,
        l.change,
        if p.store == StoreMode::None {
            "none"
        } else {
            "sqlite"
        },
        delta("thermacore_dnp3_unsolicited_fragments_total", ""),
        peak_rss_kib() as f64 / 1024.0,
        pct(&latency, 0.5),
        pct(&latency, 0.99),
        latency.last().copied().unwrap_or(f64::NAN),
        pct(&cache_age, 0.5),
        pct(&cache_age, 0.99),
        pct(&all, 0.5),
        pct(&all, 0.99),
        pct(&d, 0.5),
        pct(&d, 0.99),
        d.last().copied().unwrap_or(f64::NAN),
        pct(&s, 0.5),
        pct(&s, 0.99),
        s.last().copied().unwrap_or(f64::NAN),
        all.len(),
        direct.1 + sbo.1,
        hist_q(dev_write, dnp3, 0.5),
        hist_q(dev_write, dnp3, 0.99),
        hist_q("thermacore_dnp3_request_duration_seconds", cmd, 0.5),
        hist_q("thermacore_dnp3_request_duration_seconds", cmd, 0.99),
        if events_ok && ingested_ok && timely {
            "yes"
        } else {
            "no"
        },
        w.count("thermacore_dnp3_link_changes_total", ""),
        st1.slice_us_sum.saturating_sub(st0.slice_us_sum) as f64
            / st1.slices.saturating_sub(st0.slices).max(1) as f64
            / 1000.0,
        st1.slice_us_max as f64 / 1000.0,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        machine - tc - oc,
    );
}
