//! In-memory path: sim devices at full speed → device actors → cache + live hub +
//! alert stream, no store. Reports samples per second through the cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::Actor;
use thermacore::actors::Runtime;
use thermacore::actors::historian::HistorianHandle;
use thermacore::actors::supervision::RestartPolicy;
use thermacore::actors::tenant::{TenantActor, TenantArgs};
use thermacore::config::{CacheConfig, HistorianConfig, SupervisionConfig};
use thermacore::domain::TagId;

use crate::world::sim_tenant;

pub async fn run(
    devices: usize,
    tags: usize,
    seconds: u64,
    subscribers: usize,
) -> anyhow::Result<()> {
    let (shared, worlds) = sim_tenant("bench", devices, tags, 0);
    // No store: the historian buffer is bounded at one batch and counts the rest as
    // dropped, which costs one lock per batch (the in-memory path is what is measured).
    let historian = Arc::new(HistorianHandle::new(HistorianConfig {
        batch_size: 1,
        max_buffered_samples: 1,
        ..HistorianConfig::default()
    }));
    let runtime = Arc::new(Runtime::new(historian.clone()));
    let all_tags: Vec<TagId> = worlds
        .iter()
        .flat_map(|w| w.tags.iter().map(|t| t.id))
        .collect();
    let subs: Vec<_> = (0..subscribers)
        .map(|i| {
            shared.live.subscribe(
                all_tags
                    .iter()
                    .skip(i)
                    .step_by(subscribers.max(1))
                    .copied()
                    .collect(),
                None,
                4096,
            )
        })
        .collect();
    let args = TenantArgs {
        shared: shared.clone(),
        devices: worlds,
        historian,
        runtime,
        store: crate::world::rule_store().await?,
        policy: RestartPolicy::from(&SupervisionConfig::default()),
        cache: CacheConfig::default(),
        name_prefix: "bench".into(),
    };
    let (tenant, handle) = Actor::spawn(None, TenantActor, args).await?;
    // A reader per subscriber drains its queue, as a WebSocket client would.
    let readers: Vec<_> = subs
        .into_iter()
        .map(|s| {
            tokio::spawn(async move {
                loop {
                    if s.recv().await.is_none() {
                        break;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    let (c0, d0, t0) = (
        shared.cache.updates(),
        shared.live.delivered(),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (c1, d1, el) = (
        shared.cache.updates(),
        shared.live.delivered(),
        t0.elapsed().as_secs_f64(),
    );
    tenant.stop(None);
    let _ = handle.await;
    for r in readers {
        r.abort();
    }
    println!(
        "inmem devices={devices} tags/device={tags} subscribers={subscribers} seconds={el:.1} cache_samples_per_s={:.0} live_delivered_per_s={:.0} conflated={}",
        (c1 - c0) as f64 / el,
        (d1 - d0) as f64 / el,
        shared.live.conflated()
    );
    Ok(())
}
