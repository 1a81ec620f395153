//! `history` buckets over a day of many tags: the store is filled with `--tags` tags
//! sampled every `--step-secs` for a day (on PostgreSQL the inserts maintain the minute
//! and hour rollups, and the closed hours' minutes are then packed as maintenance
//! would), then `history_buckets` for every tag over the whole day is timed
//! `--runs` times per bucket width of `--widths` (60 s and 3600 s are read from the
//! rollups on PostgreSQL, 30 s would be aggregated from the samples; on PostgreSQL
//! with the history cache and without: the first read is reported apart), then the
//! `statistics` of every tag over the day (a pass over every sample).

use std::sync::Arc;
use std::time::Instant;

use thermacore::analytics::{self, stats::StatsSpec};
use thermacore::domain::{Quality, Sample, TagId, Timestamp, Value};
use thermacore::storage::postgres::PostgresStore;
use thermacore::storage::{self, Store, StoredSample};

const DAY_US: i64 = 86_400_000_000;

pub async fn run(
    url: &str,
    tags: usize,
    step_secs: i64,
    runs: usize,
    widths: &[i64],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        tags > 0 && step_secs > 0 && runs > 0,
        "--tags, --step-secs and --runs must be > 0"
    );
    let store = storage::connect(url, 4).await?;
    store.migrate().await?;
    // A tenant of its own per run, so earlier runs' data does not count.
    let tenant = store
        .upsert_tenant(&format!("history-bench-{}", Timestamp::now().0))
        .await?
        .id;
    // Yesterday, on the hour.
    let start = (Timestamp::now().0 - 2 * DAY_US).div_euclid(3_600_000_000) * 3_600_000_000;
    let ids: Vec<TagId> = (1..=tags as i64).map(TagId).collect();
    let per_tag = DAY_US / (step_secs * 1_000_000);
    let total = per_tag * tags as i64;
    let filled = Instant::now();
    let mut batch = Vec::with_capacity(50_000);
    for step in 0..per_tag {
        let t = Timestamp(start + step * step_secs * 1_000_000);
        for &tag in &ids {
            let v = 50.0 + 10.0 * ((step as f64) / 500.0 + tag.0 as f64).sin();
            batch.push(StoredSample {
                tenant,
                sample: Sample {
                    tag,
                    value: Value::F64(v),
                    quality: Quality::Good,
                    source_time: t,
                    server_time: t,
                },
            });
            if batch.len() == 50_000 {
                store.insert_samples(&batch).await?;
                batch.clear();
            }
        }
    }
    store.insert_samples(&batch).await?;
    let fill_secs = filled.elapsed().as_secs_f64();
    println!(
        "history fill: backend={} tags={tags} step_s={step_secs} samples={total} seconds={fill_secs:.1} samples/s={:.0}",
        store.backend(),
        total as f64 / fill_secs
    );
    // What store maintenance does once the hours have ended (PostgreSQL packs the
    // minute rollups of each tag's hour into one row).
    let packing = Instant::now();
    let moved = store.compact_history(Timestamp::now()).await?;
    println!(
        "history compaction: backend={} minute_rows={moved} seconds={:.1}",
        store.backend(),
        packing.elapsed().as_secs_f64()
    );
    let (from, to) = (Timestamp(start), Timestamp(start + DAY_US));
    // PostgreSQL keeps the packed minutes it has decoded: the first read fills that
    // cache, the others use it. A second store without the cache decodes every time.
    let mut stores = vec![("on", store.clone())];
    if store.backend() == "postgres" {
        let uncached = PostgresStore::connect_with_cache(url, 4, 0).await?;
        stores.push(("off", Arc::new(uncached) as Arc<dyn Store>));
    } else {
        stores[0].0 = "none";
    }
    for &width in widths {
        let mut results = Vec::new();
        for (cache, s) in &stores {
            let t = Instant::now();
            let buckets = s
                .history_buckets(tenant, &ids, from, to, width)
                .await?
                .len();
            let first_ms = t.elapsed().as_secs_f64() * 1000.0;
            let mut times = Vec::with_capacity(runs);
            let mut last = Vec::new();
            for _ in 0..runs {
                // Freed first, as a server frees a response once it is sent.
                drop(std::mem::take(&mut last));
                let t = Instant::now();
                last = s.history_buckets(tenant, &ids, from, to, width).await?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(
                    last.len() == buckets,
                    "{} buckets after {buckets}",
                    last.len()
                );
            }
            println!(
                "history buckets: backend={} cache={cache} tags={tags} range=1d bucket_s={width} buckets={buckets} first_ms={first_ms:.1} {}",
                store.backend(),
                spread(&mut times),
            );
            results.push(last);
        }
        // Cached or not, the buckets are the same.
        anyhow::ensure!(
            results.windows(2).all(|w| w[0] == w[1]),
            "{width} s buckets differ with and without the cache"
        );
    }
    // The whole day (whole hours: packed on PostgreSQL), then the day less half an
    // hour at each end (the partial hours are read from the sample rows).
    const HALF_HOUR_US: i64 = 1_800_000_000;
    let shifted = (
        Timestamp(from.0 + HALF_HOUR_US),
        Timestamp(to.0 - HALF_HOUR_US),
    );
    for (label, (from, to)) in [("1d", (from, to)), ("1d-1h-unaligned", shifted)] {
        let expected = (0..per_tag)
            .filter(|step| {
                let t = start + step * step_secs * 1_000_000;
                t >= from.0 && t < to.0
            })
            .count() as u64
            * tags as u64;
        let spec_of = |_| StatsSpec {
            from,
            to,
            expected_period_us: Some(step_secs * 1_000_000),
            stale_after_us: 3 * step_secs * 1_000_000,
        };
        let mut times = Vec::with_capacity(runs);
        let mut counted = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let stats =
                analytics::statistics(store.as_ref(), tenant, &ids, from, to, spec_of).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            counted = stats.iter().map(|(_, s)| s.count).sum::<u64>();
        }
        anyhow::ensure!(
            counted == expected,
            "statistics counted {counted} samples of {expected}"
        );
        let median_s = median(&mut times) / 1000.0;
        println!(
            "statistics: backend={} tags={tags} range={label} samples={counted} {} samples/s={:.0}",
            store.backend(),
            spread(&mut times),
            counted as f64 / median_s,
        );
    }
    Ok(())
}

/// The median of run times (sorts them).
fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// `median_ms=… min_ms=… max_ms=… runs=…` of run times in ms (at least one).
fn spread(times: &mut [f64]) -> String {
    let m = median(times);
    format!(
        "median_ms={m:.1} min_ms={:.1} max_ms={:.1} runs={}",
        times[0],
        times[times.len() - 1],
        times.len()
    )
}
