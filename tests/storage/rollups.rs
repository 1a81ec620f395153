//! Conformance, part three: `history` buckets and the export equal a recomputation
//! from the samples, on PostgreSQL through its minute and hour rollups and packed hours
//! (before packing, after it, after late samples and after repacking), and after
//! retention cuts through a packed hour.

use thermacore::domain::{Quality, QualityReason, Sample, TagId, Timestamp, Value};
use thermacore::storage::{Bucket, Store};

use super::samples::{SEC, stored};
use crate::world::World;

/// Where the rollup test's samples begin (on the hour).
const START: i64 = 1_800_000_000_000_000;

/// The buckets of `samples` in `[from, to)` of `width` s, recomputed naively.
fn recompute(samples: &[Sample], from: i64, to: i64, width: i64) -> Vec<Bucket> {
    use std::collections::BTreeMap;
    let w = width * SEC;
    let mut groups: BTreeMap<(TagId, i64), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        let t = s.source_time.0;
        if (from..to).contains(&t) {
            groups
                .entry((s.tag, t.div_euclid(w) * w))
                .or_default()
                .push(s);
        }
    }
    groups
        .into_iter()
        .map(|((tag, start), mut group)| {
            group.sort_by_key(|s| s.source_time);
            let bad = group
                .iter()
                .filter(|s| matches!(s.quality, Quality::Bad(_)))
                .count() as i64;
            let nums: Vec<f64> = group
                .iter()
                .filter(|s| !matches!(s.quality, Quality::Bad(_)))
                .filter_map(|s| s.value.as_f64())
                .collect();
            let n = nums.len();
            let values = match (nums.first(), nums.last()) {
                (Some(&first), Some(&last)) => [
                    nums.iter().sum::<f64>() / n as f64,
                    nums.iter().copied().fold(f64::INFINITY, f64::min),
                    nums.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    first,
                    last,
                ],
                _ => [0.0; 5],
            };
            Bucket::new(tag, Timestamp(start), n as i64, bad, values)
        })
        .collect()
}

/// Buckets equal a recomputation from the samples, whatever the bucket width and
/// however unaligned the range: on PostgreSQL this reads the minute and hour rollups
/// that the inserts maintained (samples written in several batches, out of order,
/// with the same minutes and hours touched by several), and the raw samples at the
/// ends of the range.
pub async fn rollups(store: &dyn Store, w: &World) {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let tags: Vec<TagId> = (0..4).map(|i| TagId(800_100 + i)).collect();
    let mut rng = StdRng::seed_from_u64(5);
    let mut samples = Vec::new();
    for &tag in &tags {
        let mut times = std::collections::BTreeSet::new();
        while times.len() < 2_000 {
            times.insert(START + rng.random_range(0..3 * 3_600 * SEC));
        }
        for t in times {
            let value = match rng.random_range(0..20) {
                0 => Value::Str("text".into()),
                1..=3 => Value::I64(rng.random_range(-50..50)),
                4 => Value::Bool(rng.random_bool(0.5)),
                _ => Value::F64(rng.random_range(-100.0..100.0)),
            };
            let quality = match rng.random_range(0..20) {
                0 | 1 => Quality::Bad(QualityReason::CommLost),
                2 => Quality::Uncertain(QualityReason::Stale),
                _ => Quality::Good,
            };
            samples.push(Sample {
                tag,
                value,
                quality,
                source_time: Timestamp(t),
                server_time: Timestamp(t),
            });
        }
    }
    // Five batches, each a random pick: every minute is written to by several. The
    // last one arrives after the first three hours were packed (PostgreSQL), so its
    // samples are late for packed hours.
    let mut batches: Vec<Vec<Sample>> = vec![Vec::new(); 5];
    for s in &samples {
        batches[rng.random_range(0..5)].push(s.clone());
    }
    let (late, early) = batches.split_last().expect("five batches");
    let mut written = Vec::new();
    for b in early {
        store
            .insert_samples(&stored(w.a.id, b))
            .await
            .expect("insert");
        written.extend(b.iter().cloned());
    }
    buckets_match_recomputation(store, w, &tags, &written, "unpacked").await;
    let moved = store
        .compact_history(Timestamp(START + 2 * 3_600 * SEC + 30 * 60 * SEC))
        .await
        .expect("compact");
    assert_eq!(
        moved > 0,
        store.backend() == "postgres",
        "{moved} minutes packed"
    );
    buckets_match_recomputation(store, w, &tags, &written, "two hours packed").await;
    store
        .insert_samples(&stored(w.a.id, late))
        .await
        .expect("insert late");
    written.extend(late.iter().cloned());
    buckets_match_recomputation(store, w, &tags, &written, "late samples").await;
    store
        .compact_history(Timestamp(START + 4 * 3_600 * SEC))
        .await
        .expect("compact again");
    buckets_match_recomputation(store, w, &tags, &written, "all packed").await;
    // Retention through the middle of a packed hour: the export holds what is left.
    let cut = START + 90 * 60 * SEC;
    store
        .delete_history_before(w.a.id, Timestamp(cut))
        .await
        .expect("retention");
    let (from, to) = (Timestamp(START), Timestamp(START + 3 * 3_600 * SEC));
    let exported = super::collect(store.export_history(w.a.id, &tags, from, to)).await;
    super::assert_export(&exported, &written, Timestamp(cut), to, "after retention");
}

/// `history_buckets` over several ranges and widths equals a recomputation from
/// `samples`, and the export over each range is exactly `samples` in it, by tag and
/// time.
async fn buckets_match_recomputation(
    store: &dyn Store,
    w: &World,
    tags: &[TagId],
    samples: &[Sample],
    when: &str,
) {
    let ranges = [
        (START, START + 3 * 3_600 * SEC),
        (START - 3_600 * SEC, START + 5 * 3_600 * SEC),
        (
            START + 17 * SEC + 123,
            START + 2 * 3_600 * SEC + 40 * 60 * SEC + 5 * SEC,
        ),
        (START + 3_600 * SEC, START + 2 * 3_600 * SEC),
        (START + 61 * SEC, START + 119 * SEC),
    ];
    for (from, to) in ranges {
        let exported =
            super::collect(store.export_history(w.a.id, tags, Timestamp(from), Timestamp(to)))
                .await;
        let range = format!("{when}: export of {from}..{to}");
        super::assert_export(&exported, samples, Timestamp(from), Timestamp(to), &range);
        for width in [1, 45, 60, 120, 900, 3_600, 7_200] {
            let got = store
                .history_buckets(w.a.id, tags, Timestamp(from), Timestamp(to), width)
                .await
                .expect("buckets");
            let want = recompute(samples, from, to, width);
            assert_eq!(got.len(), want.len(), "{when}: {width} s over {from}..{to}");
            for (g, e) in got.iter().zip(&want) {
                let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    (a, b) => a == b,
                };
                assert!(
                    g.tag == e.tag
                        && g.start == e.start
                        && (g.count, g.bad) == (e.count, e.bad)
                        && (g.min(), g.max(), g.first(), g.last())
                            == (e.min(), e.max(), e.first(), e.last())
                        && close(g.avg(), e.avg()),
                    "{when}: {width} s over {from}..{to}:\n got  {g:?}\n want {e:?}"
                );
            }
        }
    }
}
