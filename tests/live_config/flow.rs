//! A device's whole life through GraphQL while another device of the tenant goes on
//! polling: created, read live, re-timed, disabled, deleted.

use std::time::{Duration, Instant};

use super::common::server::{WsClient, eventually};
use super::*;

/// The counter of `steady` over `[from, to)` from the history: every poll a sample,
/// each one more than the one before.
async fn assert_no_gap(s: &TestServer, token: &str, tag: &str, from: &str, to: &str) -> usize {
    let h = s
        .data(
            token,
            "query($t: [ID!]!, $f: DateTime!, $to: DateTime!) { history(tagIds: $t, from: $f, to: $to, gapSeconds: 1) { samples { value quality } gaps { from to } } }",
            json!({"t": [tag], "f": from, "to": to}),
        )
        .await;
    let samples = h["history"][0]["samples"]
        .as_array()
        .expect("samples")
        .clone();
    assert!(
        h["history"][0]["gaps"]
            .as_array()
            .is_some_and(|g| g.is_empty()),
        "steady's history has gaps: {}",
        h["history"][0]["gaps"]
    );
    let values: Vec<i64> = samples
        .iter()
        .map(|v| {
            assert_eq!(v["quality"], "GOOD", "{v}");
            v["value"].as_i64().expect("counter")
        })
        .collect();
    for w in values.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "steady missed a poll between {} and {}",
            w[0],
            w[1]
        );
    }
    values.len()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

#[tokio::test]
async fn a_device_created_retimed_disabled_and_deleted_live_while_the_others_run() {
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    let tags = s.tag_ids(&token).await;
    let steady_tag = tags["count"].clone();
    let steady = s.data(&token, "{devices{id name}}", json!({})).await["devices"][0]["id"]
        .as_str()
        .expect("steady")
        .to_string();
    // Steady has been polling for a while.
    eventually(Duration::from_secs(10), "steady polls", || async {
        polls(&s, &token, &steady).await > 10
    })
    .await;
    let started = now();

    // Created: its actor starts and its values arrive live.
    let (device, tag) = sim_device(&s, &token, "new-pump", 50).await;
    let (mut ws, ack) = WsClient::connect(s.addr, &token).await;
    assert_eq!(ack["type"], "connection_ack");
    ws.subscribe(
        "values",
        "subscription($d: ID!) { tagValues(deviceId: $d) { tagId value quality qualityReason } }",
        json!({"d": device}),
    )
    .await;
    let (mut status_ws, _) = WsClient::connect(s.addr, &token).await;
    status_ws
        .subscribe(
            "status",
            "subscription($d: ID!) { deviceStatus(deviceId: $d) { deviceId state removed } }",
            json!({"d": device}),
        )
        .await;
    let mut seen = 0;
    while seen < 5 {
        let m = ws.next(Duration::from_secs(5)).await;
        assert_eq!(m["type"], "next", "{m}");
        assert_eq!(m["payload"]["data"]["tagValues"]["tagId"], tag.as_str());
        assert_eq!(m["payload"]["data"]["tagValues"]["quality"], "GOOD");
        seen += 1;
    }
    wait_state(&s, &token, &device, "ONLINE").await;

    // Re-timed: 50 ms → 500 ms; its plan says so and it polls at the new rate.
    let before = polls(&s, &token, &device).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let fast = polls(&s, &token, &device).await - before;
    assert!(fast >= 8, "{fast} polls in 1 s at 50 ms");
    let r = s
        .data(
            &token,
            "mutation($d: ID!) { updateDevice(id: $d, input: { pollMs: 500 }) { pollMs } }",
            json!({"d": device}),
        )
        .await;
    assert_eq!(r["updateDevice"]["pollMs"], 500);
    let st = status(&s, &token, &device).await;
    assert_eq!(st["pollGroups"][0]["periodMs"], 500, "{st}");
    assert_eq!(
        st["restarts"], 0,
        "a reconfiguration is not a failure: {st}"
    );
    let before = polls(&s, &token, &device).await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let slow = polls(&s, &token, &device).await - before;
    let expected = t0.elapsed().as_millis() as u64 / 500;
    assert!(
        slow + 1 >= expected && slow <= expected + 2,
        "{slow} polls in {:?} at 500 ms",
        t0.elapsed()
    );

    // Disabled: out of service, its tag BAD / disabled, live and in the cache.
    let r = s
        .data(
            &token,
            "mutation($d: ID!) { setDeviceEnabled(id: $d, enabled: false) { enabled } }",
            json!({"d": device}),
        )
        .await;
    assert_eq!(r["setDeviceEnabled"]["enabled"], false);
    wait_state(&s, &token, &device, "DISABLED").await;
    loop {
        let m = ws.next(Duration::from_secs(5)).await;
        assert_eq!(m["type"], "next", "{m}");
        let v = &m["payload"]["data"]["tagValues"];
        if v["quality"] == "BAD" {
            assert_eq!(v["qualityReason"], "disabled", "{v}");
            break;
        }
    }
    let latest = latest_of(&s, &token, &tag).await;
    assert_eq!(latest["qualityReason"], "disabled", "{latest}");
    let stopped = polls(&s, &token, &device).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        polls(&s, &token, &device).await,
        stopped,
        "a disabled device polls"
    );

    // Deleted: the actor stops, the tag is unknown, and both subscriptions end.
    let r = s
        .data(
            &token,
            "mutation($d: ID!) { deleteDevice(id: $d) }",
            json!({"d": device}),
        )
        .await;
    assert_eq!(r["deleteDevice"], true);
    loop {
        let m = ws.next(Duration::from_secs(5)).await;
        match m["type"].as_str() {
            Some("next") => continue,
            Some("complete") => {
                assert_eq!(m["id"], "values");
                break;
            }
            _ => panic!("the subscription of a deleted device must complete: {m}"),
        }
    }
    let mut last = Value::Null;
    loop {
        let m = status_ws.next(Duration::from_secs(5)).await;
        match m["type"].as_str() {
            Some("next") => last = m["payload"]["data"]["deviceStatus"].clone(),
            Some("complete") => break,
            _ => panic!("deviceStatus of a deleted device must complete: {m}"),
        }
    }
    assert_eq!(last["removed"], true, "{last}");
    let r = s
        .gql(
            Some(&token),
            "query($t: [ID!]!) { latest(tagIds: $t) { tagId } }",
            json!({"t": [tag]}),
        )
        .await;
    assert_eq!(code(&r), "NOT_FOUND", "{r}");
    let devices = s.data(&token, "{devices{name}}", json!({})).await;
    assert_eq!(devices["devices"], json!([{"name": "steady"}]));

    // Steady never noticed: every poll is in its history, no restart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ended = now();
    let st = status(&s, &token, &steady).await;
    assert_eq!(st["restarts"], 0, "{st}");
    assert_eq!(st["state"], "ONLINE", "{st}");
    // Written by the historian within its flush interval.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = assert_no_gap(&s, &token, &steady_tag, &started, &ended).await;
    assert!(n > 100, "{n} samples of steady over the test");
}

#[tokio::test]
async fn a_tag_created_changed_and_deleted_is_read_without_restarting_its_device() {
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    let (device, _) = sim_device(&s, &token, "re-planned", 20).await;
    wait_state(&s, &token, &device, "ONLINE").await;
    let r = s
        .data(
            &token,
            CREATE_TAG,
            json!({"i": {"deviceId": device, "name": "wave", "address": "sine:period=10"}}),
        )
        .await;
    let wave = r["createTag"]["id"].as_str().expect("tag").to_string();
    eventually(Duration::from_secs(5), "the new tag read", || async {
        !latest_of(&s, &token, &wave).await.is_null()
    })
    .await;
    let st = status(&s, &token, &device).await;
    assert_eq!(st["pollGroups"][0]["tags"], 2, "{st}");
    assert_eq!(st["restarts"], 0, "{st}");
    // The changed tag reads the new way.
    let r = s
        .data(
            &token,
            "mutation($t: ID!) { updateTag(id: $t, input: { address: \"square:period=1\", dataType: \"bool\" }) { dataType address } }",
            json!({"t": wave}),
        )
        .await;
    assert_eq!(r["updateTag"]["dataType"], "bool");
    eventually(Duration::from_secs(5), "the tag reads a bool", || async {
        latest_of(&s, &token, &wave).await["value"].is_boolean()
    })
    .await;
    // Deleted: the device goes on with its other tag.
    let r = s
        .data(
            &token,
            "mutation($t: ID!) { deleteTag(id: $t) }",
            json!({"t": wave}),
        )
        .await;
    assert_eq!(r["deleteTag"], true);
    let st = status(&s, &token, &device).await;
    assert_eq!(st["pollGroups"][0]["tags"], 1, "{st}");
    let before = polls(&s, &token, &device).await;
    eventually(Duration::from_secs(5), "still polling", || async {
        polls(&s, &token, &device).await > before + 5
    })
    .await;
}
