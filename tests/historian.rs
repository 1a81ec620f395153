//! The historian against a real SQLite store that goes away: at start-up (readiness
//! waits and retries) and while running (samples buffered, counted, written later).

mod common;

use std::time::Duration;

use common::server::{self, eventually, metric_sum};
use serde_json::json;
use sqlx::Connection;
use thermacore::domain::Role;
use thermacore::storage;

fn plant(tenant: &str) -> String {
    format!(
        r#"
[[tenants]]
name = "{tenant}"
[[tenants.devices]]
name = "d"
poll_ms = 5
driver = {{ protocol = "sim", generated_tags = 20 }}
"#
    )
}

fn ingested(tenant: &str) -> f64 {
    let text = thermacore::telemetry::metrics_handle().render();
    metric_sum(
        &text,
        "thermacore_samples_ingested_total",
        &format!("tenant=\"{tenant}\""),
    )
}

async fn stored(url: &str, tenant: &str) -> f64 {
    let store = storage::connect(url, 1).await.expect("store");
    let t = store
        .tenant_by_name(tenant)
        .await
        .expect("q")
        .expect("tenant");
    store.count_samples(t.id).await.expect("count") as f64
}

#[tokio::test]
async fn store_down_at_start_up_means_not_ready_then_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("not-yet");
    let mut config = server::config(&plant("hist-startup"), dir.path());
    config.storage.url = format!("sqlite:{}", missing.join("t.db").display());
    let s = server::start_unprepared(config).await;
    eventually(Duration::from_secs(5), "HTTP up", || async {
        reqwest::get(s.url("/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    for _ in 0..5 {
        assert_eq!(s.get("/readyz").await.status(), 503);
        let r = s.gql(None, "{me{username}}", json!({})).await;
        assert_eq!(r["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::create_dir_all(&missing).expect("mkdir");
    s.wait_ready().await;
    s.stop().await.expect("clean stop");
}

#[tokio::test]
async fn store_locked_while_running_is_buffered_and_written_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "hist-locked";
    let config = server::config(&plant(tenant), dir.path());
    let url = config.storage.url.clone();
    let s = server::start(config, &[(tenant, "admin", Role::Admin)]).await;
    s.wait_ready().await;
    let token = s.login(tenant, "admin").await;
    let q = "{system{historian{buffered written dropped failedWrites}}}";
    eventually(Duration::from_secs(5), "first writes", || async {
        s.data(&token, q, json!({})).await["system"]["historian"]["written"]
            .as_u64()
            .unwrap_or(0)
            > 0
    })
    .await;

    let mut lock = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("second connection");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .expect("lock the database");
    eventually(
        Duration::from_secs(10),
        "a failed write while the store is locked",
        || async {
            s.data(&token, q, json!({})).await["system"]["historian"]["failedWrites"]
                .as_u64()
                .unwrap_or(0)
                > 0
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = s.data(&token, q, json!({})).await;
    assert!(
        during["system"]["historian"]["buffered"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{during}"
    );
    sqlx::query("COMMIT")
        .execute(&mut lock)
        .await
        .expect("unlock");
    drop(lock);
    eventually(
        Duration::from_secs(15),
        "buffer drained after the store came back",
        || async {
            s.data(&token, q, json!({})).await["system"]["historian"]["buffered"]
                .as_u64()
                .unwrap_or(1)
                < 2_000
        },
    )
    .await;
    let h = s.data(&token, q, json!({})).await;
    assert_eq!(h["system"]["historian"]["dropped"], 0, "{h}");
    s.stop().await.expect("clean stop");
    assert_eq!(
        stored(&url, tenant).await,
        ingested(tenant),
        "no sample lost"
    );
}

#[tokio::test]
async fn beyond_the_buffer_bound_samples_are_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "hist-bound";
    let mut config = server::config(&plant(tenant), dir.path());
    config.historian.batch_size = 100;
    config.historian.max_buffered_samples = 500;
    let url = config.storage.url.clone();
    let s = server::start(config, &[(tenant, "admin", Role::Admin)]).await;
    s.wait_ready().await;
    let token = s.login(tenant, "admin").await;
    let q = "{system{historian{buffered written dropped}}}";
    let mut lock = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("second connection");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .expect("lock");
    eventually(Duration::from_secs(10), "drops counted", || async {
        s.data(&token, q, json!({})).await["system"]["historian"]["dropped"]
            .as_u64()
            .unwrap_or(0)
            > 0
    })
    .await;
    assert!(
        s.metric_sum("thermacore_historian_dropped_samples_total", "")
            .await
            > 0.0
    );
    sqlx::query("COMMIT")
        .execute(&mut lock)
        .await
        .expect("unlock");
    drop(lock);
    eventually(Duration::from_secs(15), "drained", || async {
        s.data(&token, q, json!({})).await["system"]["historian"]["buffered"]
            .as_u64()
            .unwrap_or(u64::MAX)
            < 500
    })
    .await;
    s.stop().await.expect("clean stop");
    // dropped is read from the final metrics of this instance via the store count
    let (stored, produced) = (stored(&url, tenant).await, ingested(tenant));
    assert!(stored < produced, "some samples were dropped");
}
