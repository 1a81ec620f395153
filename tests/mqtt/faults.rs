//! The broker going away: values turn Bad/comm_lost while it is down, commands fail
//! clearly (and are not sent later), and after it is back the device is resubscribed
//! and values flow again; nothing crashes. Also a broker that is not there at start.

use std::time::Duration;

use serde_json::json;

use super::{PublishUntil, Site, WAIT, device_at, error_code, quality, start, tag, value};
use crate::common::mqtt::{ChildBroker, Peer};
use crate::common::server::eventually;

async fn flowing(site: &Site, port: u16, topic: &str, v: f64) {
    let peer = Peer::connect("127.0.0.1", port).await;
    let body = json!({ "v": v }).to_string();
    site.publish_until(&peer, topic, body.as_bytes(), "values flow", |l| {
        value(l, "v") == json!(v) && quality(l, "v").0 == "GOOD"
    })
    .await;
}

#[tokio::test]
async fn a_broker_restart_marks_values_bad_then_resubscribes() {
    let mut broker = ChildBroker::start();
    eprintln!(
        "restarting a {} broker on port {}",
        broker.kind(),
        broker.port
    );
    let topic = "plant/restart/v";
    let tags = [tag(
        "v",
        &format!("topic={topic};value=/v;command=plant/restart/set"),
        "f64",
        "writable = true",
    )];
    let site = start(
        "mqtt-restart",
        &[device_at(
            "gw",
            "127.0.0.1",
            broker.port,
            ", keep_alive_secs = 5",
            &tags,
        )],
    )
    .await;
    site.wait_state("gw", "ONLINE").await;
    flowing(&site, broker.port, topic, 1.0).await;

    broker.kill();
    eventually(WAIT, "values go bad while the broker is down", || async {
        quality(&site.latest().await, "v") == ("BAD".into(), "comm_lost".into())
    })
    .await;
    let state = site.state("gw").await;
    assert!(state == "CONNECTING" || state == "OFFLINE", "{state}");
    // A command while the broker is down fails at once, and is not sent later.
    let r = site.write_as(&site.admin, "v", json!(5.0)).await;
    assert_eq!(error_code(&r), "DEVICE_ERROR", "{r}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.restart();
    site.wait_state("gw", "ONLINE").await;
    let mut watcher = Peer::connect("127.0.0.1", broker.port).await;
    watcher.subscribe("plant/restart/set").await;
    // Resubscribed: new values arrive and are Good again.
    flowing(&site, broker.port, topic, 2.0).await;
    // The refused command was not delivered after the reconnect.
    let late = watcher
        .try_next_on("plant/restart/set", Duration::from_millis(500))
        .await;
    assert!(
        late.is_none(),
        "a failed command must not be published later"
    );
    // A command now goes through.
    let r = site.write_as(&site.admin, "v", json!(6.0)).await;
    assert!(r.get("errors").is_none(), "{r}");
    let body = watcher.next_on("plant/restart/set", WAIT).await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("json")["value"],
        json!(6.0)
    );
}

#[tokio::test]
async fn a_broker_that_is_not_there_yet_leaves_the_device_offline_until_it_is() {
    let mut broker = ChildBroker::start();
    broker.kill();
    let topic = "plant/late/v";
    let tags = [tag("v", &format!("topic={topic};value=/v"), "f64", "")];
    let site = start(
        "mqtt-late",
        &[device_at("gw", "127.0.0.1", broker.port, "", &tags)],
    )
    .await;
    site.wait_state("gw", "OFFLINE").await;
    broker.restart();
    site.wait_state("gw", "ONLINE").await;
    flowing(&site, broker.port, topic, 3.0).await;
}
