//! Device secrets at rest, end to end: sealed in the store, masked by the API, and a
//! start-up that refuses a wrong or missing THERMACORE_SECRET_KEY.

mod common;

use std::time::Duration;

use common::server;
use serde_json::json;
use thermacore::app::AppError;
use thermacore::config::{Config, RunMode};
use thermacore::domain::Role;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "HxwdHhobGBkWFxQVEhMQEQ4PDA0KCwgJBgcEBQIDAAE=";

const PLANT: &str = r#"
[[tenants]]
name = "acme"
[[tenants.devices]]
name = "plc"
poll_ms = 100
driver = { protocol = "sim" }
[tenants.devices.security]
require_tls = true
tls = { ca_file = "/etc/tc/ca.pem", key_file = "/etc/tc/plc-client.key", key_password = "kp-plaintext-42" }
credentials = { username = "operator", password = "pw-plaintext-17" }
[[tenants.devices.tags]]
name = "temp"
address = "sine"
"#;

const PLAINTEXTS: [&str; 3] = ["pw-plaintext-17", "kp-plaintext-42", "plc-client.key"];

fn config(dir: &std::path::Path, key: Option<&str>) -> Config {
    let mut c = server::config(PLANT, dir);
    c.secret_key = key.map(str::to_string);
    c
}

async fn stopped_with(c: Config) -> AppError {
    let s = server::start_unprepared(c).await;
    let handle = s.handle.as_ref().expect("running");
    // The server stops by itself once start-up finds the problem.
    let mut waited = 0;
    while !handle.is_finished() && waited < 400 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    s.stop().await.expect_err("start-up must fail")
}

#[tokio::test]
async fn secrets_are_sealed_in_the_store_masked_by_the_api_and_need_the_same_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server::start(
        config(dir.path(), Some(KEY)),
        &[("acme", "admin", Role::Admin)],
    )
    .await;
    s.wait_ready().await;
    let token = s.login("acme", "admin").await;
    let d = s
        .data(
            &token,
            "{devices{name security{requireTls tls{caFile certFile keyFile keyPassword} credentials{username password}}}}",
            json!({}),
        )
        .await;
    assert_eq!(
        d["devices"][0]["security"],
        json!({
            "requireTls": true,
            "tls": {"caFile": "/etc/tc/ca.pem", "certFile": null, "keyFile": "***", "keyPassword": "***"},
            "credentials": {"username": "operator", "password": "***"}
        })
    );
    s.stop().await.expect("stop");

    // The stored row holds ciphertext only.
    let url = format!("sqlite:{}", dir.path().join("t.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open sqlite");
    let stored: String = sqlx::query_scalar("SELECT security FROM devices WHERE name = 'plc'")
        .fetch_one(&pool)
        .await
        .expect("security column");
    assert!(stored.contains("enc:v1:"), "{stored}");
    assert!(stored.contains("/etc/tc/ca.pem"), "{stored}");
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT driver_config, COALESCE(security, '') FROM devices")
            .fetch_all(&pool)
            .await
            .expect("rows");
    pool.close().await;
    for secret in PLAINTEXTS {
        assert!(
            !rows
                .iter()
                .any(|(a, b)| a.contains(secret) || b.contains(secret))
        );
    }
    // Nor anywhere in the database files (WAL included).
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        // A journal file may come and go while the server writes.
        let Ok(bytes) = std::fs::read(entry.expect("entry").path()) else {
            continue;
        };
        for secret in PLAINTEXTS {
            let hit = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!hit, "`{secret}` found in a database file");
        }
    }

    // Next start with another key: refused, naming the device and the variable.
    let e = stopped_with(config(dir.path(), Some(OTHER_KEY))).await;
    let text = e.to_string();
    assert!(matches!(e, AppError::Secret(_)), "{e:?}");
    assert!(
        text.contains("acme/plc") && text.contains("THERMACORE_SECRET_KEY"),
        "{text}"
    );
    for secret in PLAINTEXTS {
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test]
async fn secrets_without_a_key_refuse_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = stopped_with(config(dir.path(), None)).await;
    let text = e.to_string();
    assert!(
        text.contains("acme/plc") && text.contains("THERMACORE_SECRET_KEY is not set"),
        "{text}"
    );
    let e = stopped_with(config(dir.path(), Some("bm90IDMyIGJ5dGVz"))).await;
    assert!(
        e.to_string().contains("THERMACORE_SECRET_KEY is not valid"),
        "{e}"
    );
}

#[tokio::test]
async fn production_mode_lists_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path(), None);
    c.mode = RunMode::Production;
    c.auth.jwt_secret = Some("short".into());
    c.server.cors_allowed_origins = vec!["*".into()];
    let e = stopped_with(c).await;
    let text = e.to_string();
    assert!(
        matches!(e, AppError::Production(ref p) if p.len() == 3),
        "{text}"
    );
    for needle in [
        "THERMACORE_JWT_SECRET",
        "cors_allowed_origins",
        "THERMACORE_SECRET_KEY",
    ] {
        assert!(text.contains(needle), "{text}");
    }
    for secret in PLAINTEXTS {
        assert!(!text.contains(secret), "{text}");
    }
}
