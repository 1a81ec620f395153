//! Conformance, part two: samples of every kind and quality in and out, limits,
//! `[from, to)` bounds, buckets, tenant isolation, and a bulk insert counted back.

use std::time::Instant;

use thermacore::domain::{Quality, QualityReason, Sample, TagId, TenantId, Timestamp, Value};
use thermacore::storage::{Bucket, Store, StoredSample};

use crate::world::World;

/// 2023-11-14T22:13:20Z, a multiple of 4 s since the epoch.
const BASE: i64 = 1_700_000_000_000_000;
pub const SEC: i64 = 1_000_000;
fn sample(tag: TagId, i: i64, value: Value, quality: Quality) -> Sample {
    Sample {
        tag,
        value,
        quality,
        source_time: Timestamp(BASE + i * SEC),
        server_time: Timestamp(BASE + i * SEC + 1234),
    }
}

/// Ten samples per tag of A, at BASE + 0..10 s, of every kind and quality.
fn a_samples(w: &World) -> Vec<Sample> {
    let [f, n, b, s] = [w.tags[0].id, w.tags[1].id, w.tags[2].id, w.tags[3].id];
    let mut out = Vec::new();
    for i in 0..10 {
        let stale = Quality::Uncertain(QualityReason::Stale);
        out.push(sample(f, i, Value::F64(i as f64 * 1.5), Quality::Good));
        out.push(sample(
            n,
            i,
            Value::I64(i - 5),
            if i % 3 == 0 { stale } else { Quality::Good },
        ));
        out.push(sample(
            b,
            i,
            Value::Bool(i % 2 == 0),
            Quality::Bad(QualityReason::CommLost),
        ));
        let q = if i == 9 {
            Quality::Bad(QualityReason::DeviceError)
        } else {
            Quality::Good
        };
        out.push(sample(s, i, Value::Str(format!("mode-{i} ✓").into()), q));
    }
    out
}

pub fn stored(tenant: TenantId, samples: &[Sample]) -> Vec<StoredSample> {
    samples
        .iter()
        .map(|s| StoredSample {
            tenant,
            sample: s.clone(),
        })
        .collect()
}

pub async fn history(store: &dyn Store, w: &World) {
    let mut expected = a_samples(w);
    let mut batch = stored(w.a.id, &expected);
    let b_sample = sample(w.b_tag.id, 3, Value::F64(99.0), Quality::Good);
    batch.extend(stored(w.b.id, std::slice::from_ref(&b_sample)));
    assert_eq!(store.insert_samples(&batch).await.expect("insert"), 41);
    assert_eq!(store.insert_samples(&[]).await.expect("empty insert"), 0);
    expected.sort_by_key(|s| (s.tag, s.source_time));

    let ids: Vec<TagId> = w.tags.iter().map(|t| t.id).collect();
    let (from, to) = (Timestamp(BASE), Timestamp(BASE + 10 * SEC));
    let got = store
        .history(w.a.id, &ids, from, to, 1000)
        .await
        .expect("history");
    assert_eq!(got, expected);
    let limited = store
        .history(w.a.id, &ids, from, to, 3)
        .await
        .expect("limit");
    assert_eq!(limited, expected[..3]);
    // The export streams the same rows, in the same order, and of the tenant only.
    let exported = super::collect(store.export_history(w.a.id, &ids, from, to)).await;
    assert_eq!(exported, expected);
    let b_tag = [w.b_tag.id];
    assert!(
        super::collect(store.export_history(w.a.id, &b_tag, from, to))
            .await
            .is_empty()
    );
    assert!(
        super::collect(store.export_history(w.a.id, &ids, to, from))
            .await
            .is_empty()
    );
    // [from, to): 2 s is in, 5 s is out.
    let window = store
        .history(
            w.a.id,
            &ids[..1],
            Timestamp(BASE + 2 * SEC),
            Timestamp(BASE + 5 * SEC),
            100,
        )
        .await
        .expect("window");
    let times: Vec<i64> = window
        .iter()
        .map(|s| (s.source_time.0 - BASE) / SEC)
        .collect();
    assert_eq!(times, [2, 3, 4]);
    assert!(
        store
            .history(w.a.id, &[], from, to, 100)
            .await
            .expect("no tags")
            .is_empty()
    );

    // Tenant isolation of samples, both ways.
    let b_ids = [w.b_tag.id];
    assert!(
        store
            .history(w.b.id, &ids, from, to, 100)
            .await
            .expect("b on a")
            .is_empty()
    );
    assert!(
        store
            .history(w.a.id, &b_ids, from, to, 100)
            .await
            .expect("a on b")
            .is_empty()
    );
    assert_eq!(
        store
            .history(w.b.id, &b_ids, from, to, 100)
            .await
            .expect("b"),
        vec![b_sample]
    );
    assert_eq!(store.count_samples(w.a.id).await.expect("count a"), 40);
    assert_eq!(store.count_samples(w.b.id).await.expect("count b"), 1);

    // Extremes and NaN survive the round trip (NaN on a tag id of its own).
    let nan_tag = TagId(900_001);
    let odd = [
        sample(nan_tag, 0, Value::F64(f64::NAN), Quality::Good),
        sample(nan_tag, 1, Value::I64(i64::MIN), Quality::Good),
        sample(nan_tag, 2, Value::F64(f64::INFINITY), Quality::Good),
        sample(
            nan_tag,
            3,
            Value::Str("".into()),
            Quality::Uncertain(QualityReason::OutOfRange),
        ),
    ];
    store
        .insert_samples(&stored(w.a.id, &odd))
        .await
        .expect("odd values");
    let got = store
        .history(w.a.id, &[nan_tag], from, to, 10)
        .await
        .expect("odd history");
    assert!(
        matches!(got[0].value, Value::F64(v) if v.is_nan()),
        "{got:?}"
    );
    assert_eq!(got[1..], odd[1..]);
    let b = store
        .history_buckets(w.a.id, &[nan_tag], from, to, 60)
        .await
        .expect("odd buckets");
    let counts: Vec<(i64, i64)> = b.iter().map(|b| (b.count, b.bad)).collect();
    assert_eq!(
        counts,
        [(1, 0)],
        "NaN, infinities and strings are not aggregated: {b:?}"
    );
}

/// A bucket of `count` numbers with (avg, min, max, first, last), and `bad` Bad ones.
fn bucket(tag: TagId, start_s: i64, count: i64, agg: [f64; 5], bad: i64) -> Bucket {
    Bucket::new(tag, Timestamp(BASE + start_s * SEC), count, bad, agg)
}

const NONE: [f64; 5] = [0.0; 5];

pub async fn buckets(store: &dyn Store, w: &World) {
    let [f, n, b, s] = [w.tags[0].id, w.tags[1].id, w.tags[2].id, w.tags[3].id];
    // Samples 1..=9 s, in buckets of 4 s aligned to the epoch (BASE is aligned).
    let (from, to) = (Timestamp(BASE + SEC), Timestamp(BASE + 10 * SEC));
    let got = store
        .history_buckets(w.a.id, &[s, b, n, f], from, to, 4)
        .await
        .expect("buckets");
    // The Uncertain numbers count; the Bad booleans are counted apart; the strings
    // make buckets without numbers (and one Bad).
    let expected = vec![
        bucket(f, 0, 3, [3.0, 1.5, 4.5, 1.5, 4.5], 0),
        bucket(f, 4, 4, [8.25, 6.0, 10.5, 6.0, 10.5], 0),
        bucket(f, 8, 2, [12.75, 12.0, 13.5, 12.0, 13.5], 0),
        bucket(n, 0, 3, [-3.0, -4.0, -2.0, -4.0, -2.0], 0),
        bucket(n, 4, 4, [0.5, -1.0, 2.0, -1.0, 2.0], 0),
        bucket(n, 8, 2, [3.5, 3.0, 4.0, 3.0, 4.0], 0),
        bucket(b, 0, 0, NONE, 3),
        bucket(b, 4, 0, NONE, 4),
        bucket(b, 8, 0, NONE, 2),
        bucket(s, 0, 0, NONE, 0),
        bucket(s, 4, 0, NONE, 0),
        bucket(s, 8, 0, NONE, 1),
    ];
    assert_eq!(got, expected);
    assert!(
        store
            .history_buckets(w.b.id, &[f, n], from, to, 4)
            .await
            .expect("b")
            .is_empty()
    );
    assert!(
        store
            .history_buckets(w.a.id, &[], from, to, 4)
            .await
            .expect("none")
            .is_empty()
    );
    assert!(
        store
            .history_buckets(w.a.id, &[f], from, to, 0)
            .await
            .is_err()
    );

    // Alignment holds before 1970 too: -1.5 s falls in the bucket starting at -2 s.
    let early = Sample {
        source_time: Timestamp(-3 * SEC / 2),
        server_time: Timestamp(0),
        ..sample(f, 0, Value::F64(7.0), Quality::Good)
    };
    store
        .insert_samples(&stored(w.a.id, &[early]))
        .await
        .expect("early");
    let got = store
        .history_buckets(w.a.id, &[f], Timestamp(-10 * SEC), Timestamp(0), 1)
        .await
        .expect("early buckets");
    let start = Timestamp(-2 * SEC);
    assert_eq!(got, vec![Bucket::new(f, start, 1, 0, [7.0; 5])]);
}

pub async fn bulk(store: &dyn Store) {
    const N: i64 = 100_000;
    let tenant = store.upsert_tenant("bulk").await.expect("bulk tenant").id;
    let now = Timestamp::now().0;
    let batch: Vec<StoredSample> = (0..N)
        .map(|i| StoredSample {
            tenant,
            sample: Sample {
                tag: TagId(i % 100),
                value: match i % 4 {
                    0 => Value::F64(i as f64 / 7.0),
                    1 => Value::I64(i),
                    2 => Value::Bool(i % 3 == 0),
                    _ => Value::Str("on".into()),
                },
                quality: Quality::Good,
                source_time: Timestamp(now - (N - i) * 1000),
                server_time: Timestamp(now),
            },
        })
        .collect();
    let started = Instant::now();
    assert_eq!(
        store.insert_samples(&batch).await.expect("bulk insert"),
        N as u64
    );
    let elapsed = started.elapsed();
    println!(
        "{}: {N} samples in {elapsed:?} ({:.0}/s)",
        store.backend(),
        N as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(store.count_samples(tenant).await.expect("count"), N);
    // Exported in many chunks, every row back in (tag, time) order.
    let tags: Vec<TagId> = (0..100).map(TagId).collect();
    let exported = super::collect(store.export_history(
        tenant,
        &tags,
        Timestamp(now - N * 1000),
        Timestamp(now),
    ))
    .await;
    let mut expected: Vec<Sample> = batch.into_iter().map(|s| s.sample).collect();
    expected.sort_by_key(|s| (s.tag, s.source_time));
    assert_eq!(exported.len(), expected.len());
    assert!(
        exported == expected,
        "the export differs from the rows inserted"
    );
}
