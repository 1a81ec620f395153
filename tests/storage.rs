//! The storage layer against real databases: the conformance suite on SQLite (file and
//! memory) and PostgreSQL (when `THERMACORE_TEST_POSTGRES` is set), partitions, corrupt
//! rows, and the store going away and coming back.

#[path = "storage/alarms.rs"]
mod alarms;
mod common;
#[path = "storage/samples.rs"]
mod samples;
#[path = "storage/security.rs"]
mod security;
#[path = "storage/world.rs"]
mod world;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};
use thermacore::domain::{Quality, Sample, TagId, TenantId, Timestamp, Value};
use thermacore::storage::postgres::PostgresStore;
use thermacore::storage::{self, Error, Store, StoredSample};

use common::pg;
use common::proxy::TcpProxy;

/// The behaviour every backend must show: every `Store` method, on a fresh database.
async fn conformance(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    store.migrate().await.expect("migrating twice is a no-op");
    store.maintain(Timestamp::now()).await.expect("maintain");
    let world = world::world(&*store).await;
    world::users(&*store, &world).await;
    samples::history(&*store, &world).await;
    samples::buckets(&*store, &world).await;
    samples::bulk(&*store).await;
    samples::rollups(&*store, &world).await;
    security::security(&*store, &world).await;
    alarms::alarms(&*store, &world).await;
    alarms::anomalies(&*store, &world).await;
}

/// Every row of an export stream, failing on an error.
pub async fn collect<T>(chunks: thermacore::storage::export::Chunks<T>) -> Vec<T> {
    use futures::StreamExt;
    let mut rows = Vec::new();
    let mut chunks = chunks;
    while let Some(chunk) = chunks.next().await {
        rows.extend(chunk.expect("export chunk"));
    }
    rows
}

/// A connection failure must be reported within this long, not hang.
const FAIL_FAST: Duration = Duration::from_secs(8);

fn one_sample(tenant: TenantId, ts: Timestamp) -> Vec<StoredSample> {
    vec![StoredSample {
        tenant,
        sample: Sample {
            tag: TagId(1),
            value: Value::F64(1.0),
            quality: Quality::Good,
            source_time: ts,
            server_time: ts,
        },
    }]
}

fn assert_unavailable<T: std::fmt::Debug>(r: Result<T, Error>, what: &str, started: Instant) {
    assert!(matches!(r, Err(Error::Unavailable(_))), "{what}: {r:?}");
    assert!(
        started.elapsed() < FAIL_FAST,
        "{what} took {:?}",
        started.elapsed()
    );
}

async fn migrated(url: &str) -> Arc<dyn Store> {
    let store = storage::connect(url, 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = migrated(&url).await;
    assert_eq!(store.backend(), "sqlite");
    conformance(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_memory_conformance() {
    conformance(migrated("sqlite::memory:").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conformance() {
    let Some((url, db)) = pg::fresh_database().await else {
        return;
    };
    let store = migrated(&url).await;
    assert_eq!(store.backend(), "postgres");
    conformance(store).await;
    db.drop_database().await;
}

#[tokio::test]
async fn connect_is_lazy_and_only_rejects_bad_urls() {
    // A port nobody listens on: connecting succeeds, using the store says why not.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let store = storage::connect(&format!("postgres://postgres@127.0.0.1:{port}/x"), 2)
        .await
        .expect("lazy connect");
    let started = Instant::now();
    assert_unavailable(store.ping().await, "ping", started);
    let started = Instant::now();
    assert_unavailable(store.migrate().await, "migrate", started);

    let r = storage::connect("mysql://localhost/x", 2).await;
    assert!(matches!(r, Err(Error::UnsupportedUrl(_))), "{:?}", r.err());
    let r = storage::connect("postgres://localhost:notaport/x", 2).await;
    assert!(matches!(r, Err(Error::Database(_))), "{:?}", r.err());
}

#[tokio::test]
async fn sqlite_busy_database_is_unavailable_until_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("busy.db");
    let store = migrated(&format!("sqlite:{}", path.display())).await;
    let tenant = store.upsert_tenant("t").await.expect("tenant").id;

    let mut locker = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
        .await
        .expect("second connection");
    locker.execute("BEGIN EXCLUSIVE").await.expect("lock");
    let started = Instant::now();
    let r = store
        .insert_samples(&one_sample(tenant, Timestamp(1)))
        .await;
    assert_unavailable(r, "insert while locked", started);

    locker.execute("COMMIT").await.expect("unlock");
    let written = store
        .insert_samples(&one_sample(tenant, Timestamp(2)))
        .await;
    assert_eq!(written.expect("insert after release"), 1);
    assert_eq!(store.count_samples(tenant).await.expect("count"), 1);
}

#[tokio::test]
async fn sqlite_missing_directory_is_unavailable_until_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("not-yet");
    let url = format!("sqlite://{}", sub.join("store.db").display());
    let store = storage::connect(&url, 2).await.expect("lazy connect");
    let started = Instant::now();
    assert_unavailable(store.ping().await, "ping", started);
    assert_unavailable(store.migrate().await, "migrate", started);

    std::fs::create_dir(&sub).expect("create directory");
    store.ping().await.expect("ping once the directory exists");
    store.migrate().await.expect("migrate");
    store.upsert_tenant("t").await.expect("usable");
}

#[tokio::test]
async fn sqlite_corrupt_rows_are_reported_by_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("corrupt.db");
    let store = migrated(&format!("sqlite:{}", path.display())).await;
    let tenant = store.upsert_tenant("t").await.expect("tenant").id;
    let mut raw = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
        .await
        .expect("raw connection");
    let t = tenant.0;
    for sql in [
        // An unknown value kind (15), and an i64 (kind 1) stored as text.
        format!("INSERT INTO samples VALUES ({t}, 1, 10, 10, 1.0, 15)"),
        format!("INSERT INTO samples VALUES ({t}, 2, 10, 10, 'x', 1)"),
        format!(
            "INSERT INTO devices (tenant_id, name, enabled, poll_ms, protocol, driver_config) \
             VALUES ({t}, 'd', 1, 10, 'sim', '{{\"protocol\":\"nope\"}}')"
        ),
    ] {
        raw.execute(sql.as_str()).await.expect("raw insert");
    }
    let (from, to) = (Timestamp(0), Timestamp(100));
    for (tag, column) in [(1, "samples.code"), (2, "samples.value")] {
        let r = store.history(tenant, &[TagId(tag)], from, to, 10).await;
        assert!(
            matches!(&r, Err(Error::Corrupt(m)) if m.contains(column)),
            "{r:?}"
        );
    }
    let r = store.devices(tenant).await;
    assert!(
        matches!(&r, Err(Error::Corrupt(m)) if m.contains("driver_config")),
        "{r:?}"
    );
}

const AUDIT_ROW: &str = "INSERT INTO audit_log (at, action, resource_type, outcome, summary) \
     VALUES (1, 'Mutation.x', 'user', 'success', '{}')";

#[tokio::test]
async fn sqlite_audit_records_cannot_be_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.db");
    migrated(&format!("sqlite:{}", path.display())).await;
    let mut raw = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
        .await
        .expect("raw connection");
    raw.execute(AUDIT_ROW).await.expect("insert");
    let r = raw.execute("UPDATE audit_log SET outcome = 'denied'").await;
    assert!(
        r.as_ref()
            .is_err_and(|e| e.to_string().contains("append-only")),
        "{r:?}"
    );
}

#[tokio::test]
async fn postgres_audit_records_cannot_be_changed() {
    let Some((url, db)) = pg::fresh_database().await else {
        return;
    };
    migrated(&url).await;
    let mut raw = PgConnection::connect(&url).await.expect("raw connection");
    raw.execute(AUDIT_ROW).await.expect("insert");
    let r = raw.execute("UPDATE audit_log SET outcome = 'denied'").await;
    assert!(
        r.as_ref()
            .is_err_and(|e| e.to_string().contains("append-only")),
        "{r:?}"
    );
    drop(raw);
    db.drop_database().await;
}

#[test]
fn test_urls_are_rewritten() {
    let url = "postgres://postgres:pw@127.0.0.1:5432/test?sslmode=disable";
    assert_eq!(
        pg::with_database(url, "x"),
        "postgres://postgres:pw@127.0.0.1:5432/x?sslmode=disable"
    );
    assert_eq!(pg::with_database("postgres://h", "x"), "postgres://h/x");
    assert_eq!(
        pg::with_host_port(url, "127.0.0.1:9".parse().expect("addr")),
        "postgres://postgres:pw@127.0.0.1:9/test?sslmode=disable"
    );
}

/// The names of the partitions of `samples`.
async fn partitions(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'samples'::regclass ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .expect("list partitions")
}

/// The partition each of the tenant's samples is stored in.
async fn homes(conn: &mut PgConnection, tenant: TenantId) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tableoid::regclass::text FROM samples WHERE tenant_id = $1 ORDER BY ts",
    )
    .bind(tenant.0)
    .fetch_all(conn)
    .await
    .expect("sample homes")
}

fn day_name(day: chrono::DateTime<chrono::Utc>) -> String {
    format!("samples_p{}", day.format("%Y%m%d"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_partitions_are_created_ahead_and_default_catches_the_rest() {
    let Some((url, db)) = pg::fresh_database().await else {
        return;
    };
    let store = migrated(&url).await;
    let mut conn = PgConnection::connect(&url)
        .await
        .expect("inspect connection");
    let now = Timestamp::now();
    let day = chrono::Duration::days(1);
    let mut expected: Vec<String> = (-1..=3)
        .map(|d| day_name(now.to_datetime() + day * d))
        .collect();
    expected.push("samples_default".to_string());
    expected.sort();
    assert_eq!(partitions(&mut conn).await, expected, "after migrate");
    store.maintain(now).await.expect("maintain again");
    assert_eq!(
        partitions(&mut conn).await,
        expected,
        "maintain is idempotent"
    );

    // Two processes maintaining at once, for a day with no partition yet.
    let other = PostgresStore::connect(&url, 2).await.expect("second store");
    let later = Timestamp::from_datetime(now.to_datetime() + day * 10);
    let (r1, r2) = tokio::join!(store.maintain(later), other.maintain(later));
    r1.expect("first maintain");
    r2.expect("concurrent maintain");
    assert!(
        partitions(&mut conn)
            .await
            .contains(&day_name(later.to_datetime()))
    );

    // Far past and far future rows land in the default partition; maintaining the
    // future day later moves its rows into the new daily partition.
    let tenant = store.upsert_tenant("t").await.expect("tenant").id;
    let past = Timestamp(978_307_200_000_000); // 2001-01-01
    let future = Timestamp::from_datetime(now.to_datetime() + day * 20);
    let mut batch = one_sample(tenant, past);
    batch.extend(one_sample(tenant, now));
    batch.extend(one_sample(tenant, future));
    assert_eq!(store.insert_samples(&batch).await.expect("insert"), 3);
    let today = day_name(now.to_datetime());
    let default = "samples_default".to_string();
    assert_eq!(
        homes(&mut conn, tenant).await,
        [default.clone(), today.clone(), default.clone()]
    );
    store.maintain(future).await.expect("maintain the future");
    let future_day = day_name(future.to_datetime());
    assert_eq!(homes(&mut conn, tenant).await, [default, today, future_day]);
    let all = store
        .history(tenant, &[TagId(1)], past, Timestamp(future.0 + 1), 10)
        .await
        .expect("history across partitions");
    assert_eq!(all.len(), 3);

    conn.close().await.expect("close");
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_through_a_cut_proxy_is_unavailable_then_recovers() {
    let Some((url, db)) = pg::fresh_database().await else {
        return;
    };
    migrated(&url).await;
    let proxy = TcpProxy::start(pg::server_addr(&url).await).await;
    let store = PostgresStore::connect(&pg::with_host_port(&url, proxy.addr()), 2)
        .await
        .expect("connect through proxy");
    let tenant = store.upsert_tenant("t").await.expect("tenant").id;
    store.ping().await.expect("ping through proxy");
    let now = Timestamp::now();
    store
        .insert_samples(&one_sample(tenant, now))
        .await
        .expect("insert");

    proxy.cut().await;
    let started = Instant::now();
    assert_unavailable(store.ping().await, "ping while cut", started);
    let started = Instant::now();
    let r = store.insert_samples(&one_sample(tenant, now)).await;
    assert_unavailable(r, "insert while cut", started);

    proxy.restore().await;
    store.ping().await.expect("ping after restore");
    store
        .insert_samples(&one_sample(tenant, now))
        .await
        .expect("insert after restore");
    assert_eq!(store.count_samples(tenant).await.expect("count"), 2);

    // Cut in the middle of a pooled connection's life, again: the pool recovers again.
    proxy.cut().await;
    let started = Instant::now();
    assert_unavailable(
        store.count_samples(tenant).await,
        "count while cut",
        started,
    );
    proxy.restore().await;
    assert_eq!(
        store
            .count_samples(tenant)
            .await
            .expect("count after restore"),
        2
    );
    db.drop_database().await;
}

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
    written.sort_by_key(|s| (s.tag, s.source_time));
    let (from, to) = (Timestamp(start), Timestamp(start + 3 * HOUR));
    for pass in ["after the race", "all packed"] {
        let exported = collect(store.export_history(tenant, &tags, from, to)).await;
        assert!(
            exported == written,
            "{pass}: the export holds {} samples of {}",
            exported.len(),
            written.len()
        );
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
    let mut want: Vec<&Sample> = samples
        .iter()
        .map(|s| &s.sample)
        .filter(|s| s.source_time >= from)
        .collect();
    want.sort_by_key(|s| (s.tag, s.source_time));
    let whole = collect(direct.export_history(tenant, &tags, from, to)).await;
    assert!(
        whole.len() == want.len() && whole.iter().zip(&want).all(|(a, b)| a == *b),
        "the export holds {} samples of {}",
        whole.len(),
        want.len()
    );
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
    assert!(rows < samples.len(), "{rows} of {} rows", samples.len());
    proxy.restore().await;
    db.drop_database().await;
}
