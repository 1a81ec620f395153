//! The storage layer against real databases: the conformance suite on SQLite (file and
//! memory) and PostgreSQL (when `THERMACORE_TEST_POSTGRES` is set), partitions, corrupt
//! rows, and the store going away and coming back.

#[path = "storage/alarms.rs"]
mod alarms;
#[path = "storage/changes.rs"]
mod changes;
mod common;
#[path = "storage/packing.rs"]
mod packing;
#[path = "storage/rollups.rs"]
mod rollups;
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
    rollups::rollups(&*store, &world).await;
    security::security(&*store, &world).await;
    alarms::alarms(&*store, &world).await;
    alarms::anomalies(&*store, &world).await;
    changes::changes(&*store, &world).await;
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

/// `exported` is exactly the samples of `all` in `[from, to)`, by tag then time.
pub fn assert_export(
    exported: &[Sample],
    all: &[Sample],
    from: Timestamp,
    to: Timestamp,
    what: &str,
) {
    let mut want: Vec<&Sample> = all
        .iter()
        .filter(|s| (from..to).contains(&s.source_time))
        .collect();
    want.sort_by_key(|s| (s.tag, s.source_time));
    assert!(
        exported.len() == want.len() && exported.iter().zip(&want).all(|(e, w)| e == *w),
        "{what}: the export holds {} samples, the range {}",
        exported.len(),
        want.len()
    );
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
