//! `thermacore-load`: load scenarios against a ThermaCore server, from TOML files
//! (`loadtest/scenarios/`). A scenario starts the server itself with its plant (or
//! targets a URL), runs its clients through a warm-up and a measured window with a
//! progress line, prints the figures and writes them as JSON: throughput,
//! latency quantiles, errors by kind, the server's CPU and peak memory and what its
//! `/metrics` said.

mod client;
mod clients;
mod flood;
mod metrics;
mod plant;
mod report;
mod scenario;
mod server;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use tokio::sync::watch;

use client::Gql;
use clients::{Ctx, From};
use scenario::{Kind, Scenario};
use stats::{Recorder, round};

#[derive(Parser)]
#[command(
    name = "thermacore-load",
    about = "Load scenarios against a ThermaCore server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario file.
    Run {
        scenario: PathBuf,
        /// Override the scenario's duration_secs.
        #[arg(long)]
        duration_secs: Option<u64>,
        /// Where the JSON report goes (default loadtest/results/SCENARIO-TIME.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run the scenario this many times (a fresh server each time); the
        /// reports get `-1`, `-2` … and the medians over the runs are printed and
        /// written to `…-medians.json`.
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// Print the configuration a started server would get (to give a server of your
    /// own the same plant, then run the scenario against it with server.url).
    Config { scenario: PathBuf },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    match cli.command {
        Command::Config { scenario } => {
            let s = Scenario::load(&scenario)?;
            let broker = s
                .mqtt
                .broker
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse().ok()?)));
            let text = plant::config(&s, "load", "sqlite:thermacore-load.db", broker)
                .map_err(anyhow::Error::msg)?;
            print!("{text}");
            Ok(())
        }
        Command::Run {
            scenario,
            duration_secs,
            out,
            runs,
        } => {
            let mut s = Scenario::load(&scenario)?;
            if let Some(d) = duration_secs {
                s.duration_secs = d;
                s.validate().map_err(anyhow::Error::msg)?;
            }
            let out = out.unwrap_or_else(|| {
                PathBuf::from("loadtest/results").join(format!(
                    "{}-{}.json",
                    s.scenario.name(),
                    chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
                ))
            });
            let mut reports = Vec::new();
            for n in 1..=runs.max(1) {
                let report = rt.block_on(run(&s, &scenario))?;
                report::print(&report);
                let path = if runs > 1 {
                    suffixed(&out, &n.to_string())
                } else {
                    out.clone()
                };
                report::write(&path, &report)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("report: {}", path.display());
                reports.push(report);
            }
            if runs > 1 {
                let medians = report::medians(&reports);
                report::print_medians(&medians);
                let path = suffixed(&out, "medians");
                report::write(&path, &medians)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("medians: {}", path.display());
            }
            Ok(())
        }
    }
}

/// `dir/name.json` → `dir/name-SUFFIX.json`.
fn suffixed(path: &std::path::Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}-{suffix}.json"))
}

async fn run(s: &Scenario, file: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(s.load.timeout_ms))
        .pool_max_idle_per_host(1024)
        .build()?;
    eprintln!("{}: preparing the server …", s.scenario.name());
    let target = server::Target::new(s, &http).await?;
    let result = drive(s, file, &http, &target).await;
    target.finish().await?;
    result
}

/// Signs every user in, discovers the plant, runs the clients, measures.
async fn drive(
    s: &Scenario,
    file: &std::path::Path,
    http: &reqwest::Client,
    target: &server::Target,
) -> anyhow::Result<serde_json::Value> {
    let mut gqls = Vec::new();
    for l in &target.logins {
        gqls.push(
            Gql::connect(http.clone(), &target.base, l.clone())
                .await
                .map_err(anyhow::Error::msg)?,
        );
    }
    let tags = clients::discover(&gqls[0])
        .await
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(!tags.is_empty(), "the tenant has no tags to load");
    let rec = Arc::new(Recorder::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Ctx {
        rec: rec.clone(),
        stop: stop_rx.clone(),
        load: Arc::new(s.load.clone()),
        tags: Arc::new(tags),
    };
    let tasks = spawn_clients(s, &ctx, &gqls, target);
    let started_at = chrono::Utc::now();

    // Warm-up, then the measured window.
    let mut progress = report::Progress::new();
    let every = s.interval_secs();
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut interrupted = false;
    for e in 1..=s.warmup_secs {
        tokio::select! {
            _ = tick.tick() => progress.tick(&rec, "warm-up", e, s.warmup_secs, None, every),
            _ = tokio::signal::ctrl_c() => { interrupted = true; break; }
        }
    }
    let before = metrics::scrape(http, &target.base)
        .await
        .unwrap_or_default();
    let usage0 = target.usage();
    rec.set_measuring(true);
    let w0 = Instant::now();
    let mut intervals = Vec::new();
    let mut last = (w0, usage0);
    let mut e = 0;
    while !interrupted && e < s.duration_secs {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => { interrupted = true; break; }
        }
        e += 1;
        let now = target.usage();
        let usage = usage_between(last, (Instant::now(), now));
        progress.tick(&rec, "measuring", e, s.duration_secs, usage, every);
        if e % every == 0 || e == s.duration_secs {
            let secs = last.0.elapsed().as_secs_f64();
            intervals.push(report::interval(
                w0.elapsed().as_secs_f64(),
                secs,
                &rec.take_interval(),
                usage,
            ));
            last = (Instant::now(), now);
        }
    }
    rec.set_measuring(false);
    let secs = w0.elapsed().as_secs_f64();
    let after = metrics::scrape(http, &target.base)
        .await
        .unwrap_or_default();
    let usage1 = target.usage();
    progress.done();
    let _ = stop_tx.send(true);
    for t in tasks {
        // Clients stop at the signal; one stuck in a request is not waited for long.
        if tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .is_err()
        {
            rec.add("clients_not_stopping", 1);
        }
    }

    let (ops, errors, warmup_errors, counters) = rec.summary(secs);
    let server_usage = match (usage0, usage1) {
        (Some(a), Some(b)) => json!({
            "cpu_cores": round((b.2 - a.2) as f64 / 100.0 / secs, 3),
            "rss_end_mib": round(b.0 as f64 / 1024.0, 1),
            "peak_rss_mib": round(b.1 as f64 / 1024.0, 1),
        }),
        _ => {
            json!({"cpu_cores": null, "peak_rss_mib": null, "note": "not measured: the server is not a process of this machine (set server.pid)"})
        }
    };
    let mut server = target.describe.clone();
    if let (Some(o), Some(u)) = (server.as_object_mut(), server_usage.as_object()) {
        o.extend(u.clone());
    }
    let counters_rates = counters_per_sec(&counters, secs);
    Ok(json!({
        "scenario": s.scenario.name(),
        "file": file.display().to_string(),
        "started_at": started_at.to_rfc3339(),
        "duration_secs": round(secs, 1),
        "warmup_secs": s.warmup_secs,
        "interrupted": interrupted,
        "setup": {
            "plant": (s.server.url.is_none()).then_some(&s.plant),
            "load": &s.load,
            "mqtt": (s.scenario == Kind::MqttFlood).then_some(&s.mqtt),
            "tags": ctx.tags.len(),
            "users": target.logins.len(),
        },
        "machine": report::machine(),
        "generator": {"cpu_cores": round(thermacore_loadtest::world::cpu_ticks("self") as f64 / 100.0 / t0.elapsed().as_secs_f64(), 3)},
        "server": server,
        "operations": ops,
        "errors": errors,
        "warmup_errors": warmup_errors,
        "counters": counters_rates,
        "server_metrics": metrics::window(&before, &after, secs),
        "intervals": intervals,
        "drift": report::drift(&intervals),
    }))
}

/// Counters with their rate over the window.
fn counters_per_sec(counters: &serde_json::Value, secs: f64) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    if let Some(c) = counters.as_object() {
        for (k, v) in c {
            let n = v.as_f64().unwrap_or(0.0);
            m.insert(
                k.clone(),
                json!({"total": n, "per_sec": round(n / secs.max(1e-9), 1)}),
            );
        }
    }
    serde_json::Value::Object(m)
}

/// Cores and resident MiB of the server between two readings.
fn usage_between(
    a: (Instant, Option<(u64, u64, u64)>),
    b: (Instant, Option<(u64, u64, u64)>),
) -> Option<(f64, f64)> {
    let (ua, ub) = (a.1?, b.1?);
    let secs = b.0.duration_since(a.0).as_secs_f64().max(1e-3);
    Some((
        ub.2.saturating_sub(ua.2) as f64 / 100.0 / secs,
        ub.0 as f64 / 1024.0,
    ))
}

/// The client tasks of the scenario.
fn spawn_clients(
    s: &Scenario,
    ctx: &Ctx,
    gqls: &[Gql],
    target: &server::Target,
) -> Vec<tokio::task::JoinHandle<()>> {
    let l = &s.load;
    let user = |i: usize| gqls[i % gqls.len()].clone();
    let mut tasks = Vec::new();
    let subscribers = |tasks: &mut Vec<_>, n: usize, op: &'static str, from: From| {
        for i in 0..n {
            let ids = spread(&ctx.tags, i, n, l.tags_per_query);
            tasks.push(tokio::spawn(clients::subscriber(
                ctx.clone(),
                user(i),
                ids,
                op,
                from,
            )));
        }
    };
    let writers = |tasks: &mut Vec<_>| {
        if l.writes_per_sec > 0.0 && l.writers > 0 {
            for i in 0..l.writers {
                tasks.push(tokio::spawn(clients::writer(
                    ctx.clone(),
                    user(i),
                    l.writes_per_sec / l.writers as f64,
                )));
            }
        }
    };
    match s.scenario {
        Kind::Ingest | Kind::Subscribers => {
            subscribers(&mut tasks, l.subscribers, "tagValues", From::ServerTime)
        }
        Kind::MqttFlood => {
            if let Some((host, port)) = &target.broker {
                tasks.extend(flood::start(
                    &s.mqtt,
                    host,
                    *port,
                    &s.mqtt.prefix,
                    ctx.rec.clone(),
                    ctx.stop.clone(),
                ));
            }
            subscribers(
                &mut tasks,
                l.subscribers,
                "publish→client",
                From::SourceTime,
            );
        }
        Kind::Queries => {
            for i in 0..l.clients {
                tasks.push(tokio::spawn(clients::query_client(ctx.clone(), user(i))));
            }
        }
        Kind::Commands => writers(&mut tasks),
        Kind::Mixed | Kind::Soak => {
            let mut devices: Vec<String> = ctx.tags.iter().map(|t| t.device.clone()).collect();
            devices.sort_unstable();
            devices.dedup();
            for i in 0..l.operators {
                let device =
                    devices[i * devices.len() / l.operators.max(1) % devices.len()].clone();
                tasks.push(tokio::spawn(clients::operator(
                    ctx.clone(),
                    user(i),
                    device,
                )));
            }
            writers(&mut tasks);
        }
    }
    tasks
}

/// Subscriber `i` of `n`: `per` tags, the subscribers spread over all tags.
fn spread(tags: &[clients::TagInfo], i: usize, n: usize, per: usize) -> Vec<String> {
    let per = per.min(tags.len());
    let start = (i * tags.len() / n.max(1)).min(tags.len() - per);
    tags[start..start + per]
        .iter()
        .map(|t| t.id.clone())
        .collect()
}
