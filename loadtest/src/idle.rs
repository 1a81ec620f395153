//! 10,000 idle sim devices: start-up time of the tree and memory per device actor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::Actor;
use thermacore::actors::Runtime;
use thermacore::actors::historian::HistorianHandle;
use thermacore::actors::shared::LinkState;
use thermacore::actors::supervision::RestartPolicy;
use thermacore::actors::tenant::{TenantActor, TenantArgs};
use thermacore::config::{CacheConfig, HistorianConfig, SupervisionConfig};

use crate::world::{rss_kib, sim_tenant};

pub async fn run(devices: usize) -> anyhow::Result<()> {
    let (shared, worlds) = sim_tenant("idle", devices, 1, 3_600_000);
    // No store here: the historian keeps nothing (what it is handed is counted as
    // dropped), so that the figure is the actors' memory, not a growing sample buffer.
    let historian = Arc::new(HistorianHandle::new(HistorianConfig {
        batch_size: 1,
        max_buffered_samples: 1,
        ..HistorianConfig::default()
    }));
    let runtime = Arc::new(Runtime::new(historian.clone()));
    // Baseline after the configuration (the worlds) exists, before any actor.
    let rss0 = rss_kib();
    let t0 = Instant::now();
    let args = TenantArgs {
        shared: shared.clone(),
        devices: worlds,
        historian,
        runtime,
        store: crate::world::rule_store().await?,
        policy: RestartPolicy::from(&SupervisionConfig::default()),
        cache: CacheConfig::default(),
        name_prefix: "idle".into(),
    };
    let (tenant, handle) = Actor::spawn(None, TenantActor, args).await?;
    loop {
        let connected = shared
            .status
            .iter()
            .filter(|s| matches!(s.state, LinkState::Online | LinkState::Degraded))
            .count();
        if connected == devices {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "only {connected} of {devices} devices connected after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let startup = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = rss_kib();
    println!(
        "idle devices={devices} startup_ms={} rss_delta_kib={} per_device_bytes={}",
        startup.as_millis(),
        rss1.saturating_sub(rss0),
        rss1.saturating_sub(rss0) * 1024 / devices as u64
    );
    tenant.stop(None);
    let _ = handle.await;
    Ok(())
}
