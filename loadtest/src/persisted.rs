//! Persisted path: sim devices → device actors → historian → SQLite or PostgreSQL,
//! sustained for a while, then stopped gracefully and every row counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::Actor;
use thermacore::actors::historian::HistorianHandle;
use thermacore::actors::{RootActor, RootArgs, Runtime};
use thermacore::app::{apply_config, load_world};
use thermacore::config::{CacheConfig, HistorianConfig, SupervisionConfig, parse_str};
use thermacore::storage;

pub struct Params {
    pub url: String,
    pub devices: usize,
    pub tags: usize,
    pub poll_ms: u64,
    pub seconds: u64,
    pub batch_size: usize,
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    let store = storage::connect(&p.url, 4).await?;
    store.migrate().await?;
    let tenant = format!(
        "bench-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let mut plant = format!("[[tenants]]\nname = \"{tenant}\"\n");
    for d in 0..p.devices {
        plant.push_str(&format!(
            "[[tenants.devices]]\nname = \"d{d}\"\npoll_ms = {}\ndriver = {{ protocol = \"sim\", generated_tags = {}, seed = {} }}\n",
            p.poll_ms,
            p.tags,
            d + 1
        ));
    }
    let config = parse_str(&plant, "bench plant").map_err(|e| anyhow::anyhow!("{e}"))?;
    let setup = Instant::now();
    apply_config(store.as_ref(), &config).await?;
    let worlds: Vec<_> = load_world(store.as_ref())
        .await?
        .into_iter()
        .filter(|w| w.shared.tenant.name == tenant)
        .collect();
    let tenant_id = worlds
        .first()
        .map(|w| w.shared.tenant.id)
        .ok_or_else(|| anyhow::anyhow!("bench tenant missing"))?;
    eprintln!(
        "set-up of {} tags took {:.1} s",
        p.devices * p.tags,
        setup.elapsed().as_secs_f64()
    );

    let historian = Arc::new(HistorianHandle::new(HistorianConfig {
        batch_size: p.batch_size,
        flush_interval_ms: 200,
        max_buffered_samples: 20_000_000,
        ..HistorianConfig::default()
    }));
    let runtime = Arc::new(Runtime::new(historian.clone()));
    let args = RootArgs {
        runtime,
        store: store.clone(),
        tenants: worlds,
        policy: (&SupervisionConfig::default()).into(),
        cache: CacheConfig::default(),
        name_prefix: format!("bench{}", std::process::id()),
        // The stop below stops the devices first, then waits for the historian to
        // write everything it holds: the rows are counted after that.
        shutdown_flush_secs: 600,
    };
    let (root, handle) = Actor::spawn(None, RootActor, args).await?;
    let t0 = Instant::now();
    let mut max_buffered = 0;
    while t0.elapsed() < Duration::from_secs(p.seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        max_buffered = max_buffered.max(historian.stats().buffered);
    }
    let during = historian.stats();
    let run_secs = t0.elapsed().as_secs_f64();
    root.stop_and_wait(Some("bench done".into()), Some(Duration::from_secs(700)))
        .await?;
    let _ = handle.await;
    let total_secs = t0.elapsed().as_secs_f64();
    let end = historian.stats();
    let rows = store.count_samples(tenant_id).await?;
    println!(
        "persisted store={} devices={} tags/device={} poll_ms={} offered_per_s={:.0} written_during_run_per_s={:.0} written_incl_drain_per_s={:.0} max_buffered={} submitted={} rows={} dropped={} lost={}",
        store.backend(),
        p.devices,
        p.tags,
        p.poll_ms,
        during.submitted as f64 / run_secs,
        during.written as f64 / run_secs,
        end.written as f64 / total_secs,
        max_buffered,
        end.submitted,
        rows,
        end.dropped,
        end.submitted as i64 - rows,
    );
    anyhow::ensure!(
        rows as u64 == end.submitted && end.dropped == 0,
        "samples were lost"
    );
    Ok(())
}
