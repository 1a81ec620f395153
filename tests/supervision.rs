//! Supervision end to end: devices that panic or lose their link, restarts counted,
//! other devices untouched, no sample lost, escalation to the root.

mod common;

use std::time::Duration;

use common::server::{self, eventually, metric_sum};
use serde_json::json;
use thermacore::domain::Role;
use thermacore::storage;

fn plant(tenant: &str, panic_every: u32) -> String {
    format!(
        r#"
[[tenants]]
name = "{tenant}"
[[tenants.devices]]
name = "crashy"
poll_ms = 10
driver = {{ protocol = "sim", panic_every_polls = {panic_every} }}
[[tenants.devices.tags]]
name = "c1"
address = "counter"
data_type = "i64"
[[tenants.devices.tags]]
name = "c2"
address = "sine"
[[tenants.devices]]
name = "steady"
poll_ms = 10
driver = {{ protocol = "sim" }}
[[tenants.devices.tags]]
name = "s1"
address = "counter"
data_type = "i64"
"#
    )
}

#[tokio::test]
async fn a_panicking_device_is_restarted_others_untouched_and_no_sample_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "sup-restart";
    let mut config = server::config(&plant(tenant, 5), dir.path());
    config.supervision.max_restarts = 1000;
    let s = server::start(config, &[(tenant, "admin", Role::Admin)]).await;
    s.wait_ready().await;
    let token = s.login(tenant, "admin").await;
    // Counted in /metrics (process-wide: the other tests of this file restart devices
    // too), and by this tenant's own device.
    eventually(
        Duration::from_secs(10),
        "three restarts of crashy",
        || async {
            let d = s
                .data(&token, "{devices{name status{restarts}}}", json!({}))
                .await;
            s.metric_sum("thermacore_actor_restarts_total", "kind=\"device\"")
                .await
                >= 3.0
                && d["devices"].as_array().is_some_and(|list| {
                    list.iter().any(|x| {
                        x["name"] == "crashy" && x["status"]["restarts"].as_u64().unwrap_or(0) >= 3
                    })
                })
        },
    )
    .await;
    let d = s
        .data(
            &token,
            "{devices{name status{state polls restarts}} system{restarts}}",
            json!({}),
        )
        .await;
    let devices = d["devices"].as_array().expect("devices");
    let steady = devices
        .iter()
        .find(|x| x["name"] == "steady")
        .expect("steady");
    let crashy = devices
        .iter()
        .find(|x| x["name"] == "crashy")
        .expect("crashy");
    assert_eq!(steady["status"]["restarts"], 0, "{d}");
    assert_eq!(steady["status"]["state"], "ONLINE", "{d}");
    assert!(
        crashy["status"]["restarts"].as_u64().unwrap_or(0) >= 3,
        "{d}"
    );
    assert!(d["system"]["restarts"].as_u64().unwrap_or(0) >= 3);
    // the restarted device keeps its configuration: its tags still get values
    let tags = s.tag_ids(&token).await;
    let before = s
        .data(
            &token,
            "query($i:[ID!]!){latest(tagIds:$i){serverTime}}",
            json!({"i": [tags["c1"]]}),
        )
        .await;
    eventually(
        Duration::from_secs(5),
        "crashy's tag keeps updating after restarts",
        || async {
            s.data(
                &token,
                "query($i:[ID!]!){latest(tagIds:$i){serverTime}}",
                json!({"i": [tags["c1"]]}),
            )
            .await
                != before
        },
    )
    .await;

    s.stop().await.expect("clean stop");
}

#[tokio::test]
async fn every_ingested_sample_reaches_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "sup-count";
    let mut config = server::config(&plant(tenant, 7), dir.path());
    config.supervision.max_restarts = 1000;
    let url = config.storage.url.clone();
    let s = server::start(config, &[(tenant, "admin", Role::Admin)]).await;
    s.wait_ready().await;
    eventually(Duration::from_secs(10), "restarts happen", || async {
        s.metric_sum("thermacore_actor_restarts_total", "kind=\"device\"")
            .await
            >= 2.0
    })
    .await;
    // After a graceful stop nothing produces samples any more and the historian has
    // written what it held: the process-wide counter is the final number produced.
    s.stop().await.expect("clean stop");
    let text = thermacore::telemetry::metrics_handle().render();
    let ingested = metric_sum(
        &text,
        "thermacore_samples_ingested_total",
        &format!("tenant=\"{tenant}\""),
    );
    assert!(ingested > 0.0);
    let store = storage::connect(&url, 1).await.expect("store");
    let t = store
        .tenant_by_name(tenant)
        .await
        .expect("q")
        .expect("tenant");
    let stored = store.count_samples(t.id).await.expect("count") as f64;
    assert_eq!(
        stored, ingested,
        "every sample produced is stored exactly once"
    );
}

#[tokio::test]
async fn a_lost_link_turns_values_bad_then_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "sup-link";
    let text = format!(
        r#"
[[tenants]]
name = "{tenant}"
[[tenants.devices]]
name = "flaky"
poll_ms = 20
driver = {{ protocol = "sim", disconnect_every_polls = 10, disconnect_for_polls = 2 }}
[[tenants.devices.tags]]
name = "v"
address = "counter"
data_type = "i64"
"#
    );
    let s = server::start(
        server::config(&text, dir.path()),
        &[(tenant, "viewer", Role::Viewer)],
    )
    .await;
    s.wait_ready().await;
    let token = s.login(tenant, "viewer").await;
    let tags = s.tag_ids(&token).await;
    let q = "query($i:[ID!]!){latest(tagIds:$i){quality qualityReason}}";
    let v = json!({"i": [tags["v"]]});
    eventually(Duration::from_secs(10), "BAD comm_lost", || async {
        let d = s.data(&token, q, v.clone()).await;
        d["latest"][0]["quality"] == "BAD" && d["latest"][0]["qualityReason"] == "comm_lost"
    })
    .await;
    eventually(Duration::from_secs(10), "GOOD again", || async {
        s.data(&token, q, v.clone()).await["latest"][0]["quality"] == "GOOD"
    })
    .await;
    assert!(
        s.metric_sum(
            "thermacore_device_poll_errors_total",
            "kind=\"disconnected\""
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn restart_intensity_escalates_to_the_root_which_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "sup-escalate";
    let mut config = server::config(&plant(tenant, 1), dir.path());
    config.supervision.max_restarts = 2;
    config.supervision.min_backoff_ms = 5;
    config.supervision.max_backoff_ms = 10;
    let mut s = server::start(config, &[]).await;
    let handle = s.handle.take().expect("handle");
    let result = tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("server gives up within 20 s")
        .expect("task");
    let err = result.expect_err("run must fail when the root gives up");
    assert!(err.to_string().contains("actor tree"), "{err}");
    let m = thermacore::telemetry::metrics_handle().render();
    assert!(metric_sum(&m, "thermacore_actor_escalations_total", "kind=\"device\"") >= 1.0);
    assert!(metric_sum(&m, "thermacore_actor_restarts_total", "kind=\"tenant\"") >= 1.0);
}
