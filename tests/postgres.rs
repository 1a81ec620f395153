//! The whole server on PostgreSQL (gated by `THERMACORE_TEST_POSTGRES`): the API on a
//! real database, and the database going away at start-up and while running, through
//! a loopback proxy that the test cuts and restores.

mod common;

use std::time::Duration;

use common::pg;
use common::proxy::TcpProxy;
use common::server::{self, eventually, metric_sum};
use serde_json::json;
use thermacore::domain::Role;
use thermacore::storage;

fn plant(tenant: &str) -> String {
    format!(
        r#"
[[tenants]]
name = "{tenant}"
[[tenants.devices]]
name = "d"
poll_ms = 10
driver = {{ protocol = "sim", generated_tags = 50 }}
"#
    )
}

#[tokio::test]
async fn api_on_postgres_serves_latest_and_history() {
    let Some((url, guard)) = pg::fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "pg-api";
    let mut config = server::config(&plant(tenant), dir.path());
    config.storage.url = url.clone();
    let s = server::start(
        config,
        &[
            (tenant, "viewer", Role::Viewer),
            (tenant, "admin", Role::Admin),
        ],
    )
    .await;
    s.wait_ready().await;
    let token = s.login(tenant, "viewer").await;
    let tags = s.tag_ids(&token).await;
    let id = tags["gen-0000"].clone();
    let from = chrono::Utc::now() - chrono::Duration::minutes(1);
    eventually(Duration::from_secs(10), "history on PostgreSQL", || async {
        let to = chrono::Utc::now() + chrono::Duration::minutes(1);
        let d = s.data(&token, "query($i:[ID!]!,$f:DateTime!,$t:DateTime!){history(tagIds:$i,from:$f,to:$t){samples{value}}}", json!({"i": [id], "f": from.to_rfc3339(), "t": to.to_rfc3339()})).await;
        d["history"][0]["samples"].as_array().is_some_and(|a| a.len() >= 5)
    })
    .await;
    let admin = s.login(tenant, "admin").await;
    assert_eq!(
        s.data(&admin, "{system{store}}", json!({})).await["system"]["store"],
        "postgres"
    );
    s.stop().await.expect("clean stop");
    guard.drop_database().await;
}

#[tokio::test]
async fn postgres_down_at_start_up_then_back() {
    let Some((url, guard)) = pg::fresh_database().await else {
        return;
    };
    let proxy = TcpProxy::start(pg::server_addr(&url).await).await;
    proxy.cut().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server::config(&plant("pg-startup"), dir.path());
    config.storage.url = pg::with_host_port(&url, proxy.addr());
    let s = server::start_unprepared(config).await;
    eventually(Duration::from_secs(5), "HTTP up", || async {
        reqwest::get(s.url("/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.get("/readyz").await.status(), 503);
    proxy.restore().await;
    s.wait_ready().await;
    s.stop().await.expect("clean stop");
    guard.drop_database().await;
}

#[tokio::test]
async fn postgres_lost_while_running_is_buffered_then_written() {
    let Some((url, guard)) = pg::fresh_database().await else {
        return;
    };
    let proxy = TcpProxy::start(pg::server_addr(&url).await).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "pg-lost";
    let mut config = server::config(&plant(tenant), dir.path());
    config.storage.url = pg::with_host_port(&url, proxy.addr());
    let s = server::start(config, &[(tenant, "admin", Role::Admin)]).await;
    s.wait_ready().await;
    let token = s.login(tenant, "admin").await;
    let q = "{system{historian{buffered written dropped failedWrites}}}";
    eventually(Duration::from_secs(10), "first writes", || async {
        s.data(&token, q, json!({})).await["system"]["historian"]["written"]
            .as_u64()
            .unwrap_or(0)
            > 0
    })
    .await;
    let tags = s.tag_ids(&token).await;
    let tag = tags.values().next().expect("a tag").clone();
    proxy.cut().await;
    eventually(
        Duration::from_secs(20),
        "failed writes while PostgreSQL is away",
        || async {
            s.data(&token, q, json!({})).await["system"]["historian"]["failedWrites"]
                .as_u64()
                .unwrap_or(0)
                > 0
        },
    )
    .await;
    assert_eq!(
        s.get("/readyz").await.status(),
        503,
        "not ready while the store is away"
    );
    // An export or a statistics query while the store is away: refused with a code
    // before the first byte, nothing half-sent.
    let now = chrono::Utc::now();
    let range = format!(
        "tagIds={tag}&from={}&to={}",
        (now - chrono::Duration::minutes(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let export = |range: String| {
        let s = &s;
        let token = token.clone();
        async move {
            s.client()
                .get(s.url(&format!("/api/export?{range}")))
                .bearer_auth(token)
                .send()
                .await
                .expect("GET /api/export")
        }
    };
    let r = export(range.clone()).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.expect("json error");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAVAILABLE",
        "{body}"
    );
    let stats = s
        .gql(
            Some(&token),
            "query($i:[ID!]!,$f:DateTime!,$t:DateTime!){statistics(tagIds:$i,from:$f,to:$t){count}}",
            json!({"i": [tag], "f": (now - chrono::Duration::minutes(5)).to_rfc3339(), "t": now.to_rfc3339()}),
        )
        .await;
    assert_eq!(
        stats["errors"][0]["extensions"]["code"], "UNAVAILABLE",
        "{stats}"
    );
    let during = s.data(&token, q, json!({})).await;
    assert!(
        during["system"]["historian"]["buffered"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{during}"
    );
    proxy.restore().await;
    s.wait_ready().await;
    eventually(Duration::from_secs(30), "backlog written", || async {
        s.data(&token, q, json!({})).await["system"]["historian"]["buffered"]
            .as_u64()
            .unwrap_or(u64::MAX)
            < 5_000
    })
    .await;
    assert_eq!(
        s.data(&token, q, json!({})).await["system"]["historian"]["dropped"],
        0
    );
    // Back: the same export streams.
    let r = export(range).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("csv").lines().count() > 1);
    s.stop().await.expect("clean stop");
    let produced = metric_sum(
        &thermacore::telemetry::metrics_handle().render(),
        "thermacore_samples_ingested_total",
        &format!("tenant=\"{tenant}\""),
    );
    let store = storage::connect(&url, 1).await.expect("store");
    let t = store
        .tenant_by_name(tenant)
        .await
        .expect("q")
        .expect("tenant");
    assert_eq!(
        store.count_samples(t.id).await.expect("count") as f64,
        produced,
        "no sample lost"
    );
    guard.drop_database().await;
}

#[tokio::test]
async fn live_configuration_on_postgres_round_trips_and_applies() {
    let Some((url, _guard)) = pg::fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "pg-live";
    let mut config = server::config(&plant(tenant), dir.path());
    config.storage.url = url.clone();
    let s = server::start(config, &[(tenant, "admin", Role::Admin)]).await;
    s.wait_ready().await;
    let token = s.login(tenant, "admin").await;
    let import = "mutation($d: String!, $m: ImportMode!) { importConfig(document: $d, mode: $m) { created updated deleted } }";
    let doc = "[[units]]\nname = \"u\"\n\n[[devices]]\nname = \"new\"\nunit = \"u\"\npoll_ms = 50\ndriver = { protocol = \"sim\" }\n\n[[devices.tags]]\nname = \"c\"\naddress = \"counter\"\ndata_type = \"i64\"\nalarms = [{ name = \"many\", type = \"high\", setpoint = 1000000 }]\n";
    let r = s
        .data(&token, import, json!({"d": doc, "m": "MERGE"}))
        .await;
    assert_eq!(r["importConfig"]["created"], 4, "{r}");
    let tags = s.tag_ids(&token).await;
    let c = tags["c"].clone();
    eventually(
        Duration::from_secs(10),
        "the imported device reads",
        || async {
            let d = s
                .data(
                    &token,
                    "query($t:[ID!]!){latest(tagIds:$t){value}}",
                    json!({"t": [c]}),
                )
                .await;
            d["latest"][0]["value"].is_number()
        },
    )
    .await;
    let export = "{ exportConfig }";
    let first = s.data(&token, export, json!({})).await["exportConfig"]
        .as_str()
        .expect("export")
        .to_string();
    let r = s
        .data(&token, import, json!({"d": first, "m": "REPLACE"}))
        .await;
    assert_eq!(
        r["importConfig"],
        json!({"created": 0, "updated": 0, "deleted": 0}),
        "{r}"
    );
    let again = s.data(&token, export, json!({})).await["exportConfig"].clone();
    assert_eq!(again, first.as_str());
    // REPLACE with the file's device only: the imported one goes, its id is not reused.
    let only = "[[devices]]\nname = \"d\"\npoll_ms = 10\ndriver = { protocol = \"sim\", generated_tags = 50 }\n";
    let r = s
        .data(&token, import, json!({"d": only, "m": "REPLACE"}))
        .await;
    // The unit and the device (its tag and rule go with it).
    assert_eq!(r["importConfig"]["deleted"], 2, "{r}");
    let d = s.data(&token, "{devices{name}}", json!({})).await;
    assert_eq!(d["devices"], json!([{"name": "d"}]));
    let r = s
        .gql(
            Some(&token),
            "query($t:[ID!]!){latest(tagIds:$t){value}}",
            json!({"t": [c]}),
        )
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "NOT_FOUND", "{r}");
}
