//! PostgreSQL's packed history under stress: compaction racing writers, and the
//! database cut off in the middle of an export of packed and raw hours.

use std::time::Duration;

use thermacore::domain::{Quality, Sample, TagId, Timestamp, Value};
use thermacore::storage::postgres::PostgresStore;
use thermacore::storage::{Error, SecurityStore, Store, StoredSample};

use super::{assert_export, collect, migrated};
use crate::common::pg;
use crate::common::proxy::TcpProxy;

/// Compaction racing writers: while several writers keep adding samples to hours that
/// are being packed (late ones among them), nothing is lost or counted twice: the
/// export and the minute buckets afterwards hold exactly what was written, and again
/// once everything is packed. (Locking rows in another order than the writers did
/// deadlocked here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_compaction_racing_writers_loses_and_doubles_nothing() {
    let Some((url, db)) = pg::fresh_database().await else {
        return;
    };
    const HOUR: i64 = 3_600_000_000;
    let start = 1_700_000_000_000_000 / HOUR * HOUR;
    let store = migrated(&url).await;
    let tenant = store.upsert_tenant("race").await.expect("tenant").id;
    let tags: Vec<TagId> = (1..=3).map(TagId).collect();
    // Writer w writes sample i of every tag at a time unique to (w, i), spread over
    // three hours in an order that keeps returning to earlier hours.
    let writer = |w: i64| {
        let store = store.clone();
        let tags = tags.clone();
        tokio::spawn(async move {
            let mut all = Vec::new();
            for round in 0..40i64 {
                let batch: Vec<StoredSample> = (0..25i64)
                    .flat_map(|i| {
                        let k = round * 25 + i;
                        let at = start + (k * 7_919 % 1_000) * 10_800_000 + w * 1_000 + 1;
                        tags.iter().map(move |&tag| StoredSample {
                            tenant,
                            sample: Sample {
                                tag,
                                value: Value::F64((k * 31 % 97) as f64 + w as f64 / 10.0),
                                quality: Quality::Good,
                                source_time: Timestamp(at),
                                server_time: Timestamp(at),
                            },
                        })
                    })
                    .collect();
                store.insert_samples(&batch).await.expect("insert");
                all.extend(batch.into_iter().map(|s| s.sample));
            }
            all
        })
    };
    let writers: Vec<_> = (0..3).map(writer).collect();
    let compactor = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut moved = 0;
            for _ in 0..30 {
                moved += store
                    .compact_history(Timestamp(start + 4 * HOUR))
                    .await
                    .expect("compact");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            moved
        })
    };
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.expect("writer"));
    }
    assert!(
        compactor.await.expect("compactor") > 0,
        "nothing was packed"
    );
    let (from, to) = (Timestamp(start), Timestamp(start + 3 * HOUR));
    for pass in ["after the race", "all packed"] {
        let exported = collect(store.export_history(tenant, &tags, from, to)).await;
        assert_export(&exported, &written, from, to, pass);
        let buckets = store
            .history_buckets(tenant, &tags, from, to, 60)
            .await
            .expect("buckets");
        let counted: i64 = buckets.iter().map(|b| b.count).sum();
        assert_eq!(counted, written.len() as i64, "{pass}: minute buckets");
        store
            .compact_history(Timestamp(start + 4 * HOUR))
            .await
            .expect("compact");
    }
    db.drop_database().await;
}

/// An export of packed hours and many raw ones, whole; then PostgreSQL cut off in the
/// middle of it: the rows stop with an error, never with a quiet end that would look
/// complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_mid_export_ends_in_an_error() {
    use futures::StreamExt;
    let Some((url, db)) = pg::fresh_database().await else {
        return;
    };
    const HOUR: i64 = 3_600_000_000;
    let start = 1_700_000_000_000_000 / HOUR * HOUR;
    let direct = migrated(&url).await;
    let tenant = direct.upsert_tenant("cut").await.expect("tenant").id;
    let tags: Vec<TagId> = (1..=20).map(TagId).collect();
    // Seven hours of 20 tags at 1 s; the first five packed.
    let samples: Vec<StoredSample> = (0..7 * 3_600i64)
        .flat_map(|i| {
            tags.iter().map(move |&tag| StoredSample {
                tenant,
                sample: Sample {
                    tag,
                    value: Value::F64(i as f64),
                    quality: Quality::Good,
                    source_time: Timestamp(start + i * 1_000_000),
                    server_time: Timestamp(start + i * 1_000_000),
                },
            })
        })
        .collect();
    for batch in samples.chunks(50_000) {
        direct.insert_samples(batch).await.expect("insert");
    }
    assert!(
        direct
            .compact_history(Timestamp(start + 5 * HOUR))
            .await
            .expect("compact")
            > 0
    );
    // Whole first: the two unpacked hours of all tags are too many rows to read
    // ahead in one query, so they are read in smaller groups.
    let (from, to) = (Timestamp(start + 1_500_000), Timestamp(start + 7 * HOUR));
    let all: Vec<Sample> = samples.iter().map(|s| s.sample.clone()).collect();
    let whole = collect(direct.export_history(tenant, &tags, from, to)).await;
    assert_export(&whole, &all, from, to, "the whole export");
    let proxy = TcpProxy::start(pg::server_addr(&url).await).await;
    let store = PostgresStore::connect(&pg::with_host_port(&url, proxy.addr()), 2)
        .await
        .expect("connect through proxy");
    let mut chunks = store.export_history(tenant, &tags, from, to);
    let first = chunks.next().await.expect("a first chunk").expect("rows");
    proxy.cut().await;
    let mut rows = first.len();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(c) => rows += c.len(),
                Err(e) => return Some(e),
            }
        }
        None
    })
    .await
    .expect("the export ends once the database is gone");
    let e = ended.expect("an error ends the cut export");
    assert!(
        matches!(e, Error::Unavailable(_) | Error::Database(_)),
        "cut export: {e:?}"
    );
    assert!(rows < whole.len(), "{rows} of {} rows", whole.len());
    proxy.restore().await;
    db.drop_database().await;
}

/// Two servers on one database: one caches a packed hour's minutes, the other repacks
/// that hour (late samples) and then deletes it (retention). The first sees each
/// change on its next read, never its cached copy of an older version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cached_minutes_follow_another_servers_compaction_and_retention() {
    let Some((url, db)) = pg::fresh_database().await else {
        return;
    };
    const HOUR: i64 = 3_600_000_000;
    const MINUTE: i64 = 60_000_000;
    let start = 1_700_000_000_000_000 / HOUR * HOUR;
    let reader = migrated(&url).await;
    let other = PostgresStore::connect(&url, 2)
        .await
        .expect("second server");
    let tenant = reader.upsert_tenant("two").await.expect("tenant").id;
    let tags = [TagId(1), TagId(2)];
    let sample = |tag, at: i64, v: f64| StoredSample {
        tenant,
        sample: Sample {
            tag,
            value: Value::F64(v),
            quality: Quality::Good,
            source_time: Timestamp(at),
            server_time: Timestamp(at),
        },
    };
    // Tag 1 every 10 s of the first hour; tag 2 has nothing there.
    let early: Vec<StoredSample> = (0..360)
        .map(|i| sample(TagId(1), start + i * 10_000_000, (i % 7) as f64))
        .collect();
    other.insert_samples(&early).await.expect("insert");
    other
        .compact_history(Timestamp(start + 2 * HOUR))
        .await
        .expect("pack");
    let (from, to) = (Timestamp(start), Timestamp(start + HOUR));
    let minute_5 = |buckets: &[thermacore::storage::Bucket]| {
        buckets
            .iter()
            .find(|b| b.tag == TagId(1) && b.start == Timestamp(start + 5 * MINUTE))
            .map(|b| (b.count, b.max()))
    };
    for read in ["first read", "cached"] {
        let buckets = reader
            .history_buckets(tenant, &tags, from, to, 60)
            .await
            .expect("buckets");
        assert_eq!(buckets.len(), 60, "{read}");
        assert_eq!(minute_5(&buckets), Some((6, Some(6.0))), "{read}");
    }
    // A late sample in minute 5, packed into the hour by the other server.
    other
        .insert_samples(&[sample(TagId(1), start + 5 * MINUTE + 1, 1000.0)])
        .await
        .expect("late");
    other
        .compact_history(Timestamp(start + 2 * HOUR))
        .await
        .expect("repack");
    let buckets = reader
        .history_buckets(tenant, &tags, from, to, 60)
        .await
        .expect("buckets after repack");
    assert_eq!(minute_5(&buckets), Some((7, Some(1000.0))), "after repack");
    // Retention takes the whole hour (samples, rollups, packed rows).
    other
        .delete_history_before(tenant, Timestamp(start + HOUR))
        .await
        .expect("retention");
    let buckets = reader
        .history_buckets(tenant, &tags, from, to, 60)
        .await
        .expect("buckets after retention");
    assert!(
        buckets.is_empty(),
        "{} buckets after retention",
        buckets.len()
    );
    db.drop_database().await;
}
