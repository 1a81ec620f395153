//! The MQTT driver end to end: a real broker (rumqttd embedded on an ephemeral port,
//! or the real Mosquitto when `THERMACORE_TEST_MQTT=host:port` is set, as `.ci/run`
//! does), plain rumqttc peers playing gateways and Sparkplug B edge nodes, and the
//! real server. The fixtures are here; the tests are in `tests/mqtt/`.

#[path = "mqtt/commands.rs"]
mod commands;
mod common;
#[path = "mqtt/faults.rs"]
mod faults;
#[path = "mqtt/json.rs"]
mod json;
#[path = "mqtt/sparkplug.rs"]
mod sparkplug;
#[path = "mqtt/tls.rs"]
mod tls;

use std::collections::HashMap;
use std::time::Duration;

use common::mqtt::{self as broker, Peer, TestBroker};
pub use common::site::{Site, WAIT, error_code, quality, start, start_with, tag, value};
use serde_json::Value;

/// An MQTT device on the broker; `driver` adds settings to the driver table.
pub fn device(name: &str, b: &TestBroker, driver: &str, tags: &[String]) -> String {
    device_at(name, &b.host, b.port, driver, tags)
}

pub fn device_at(name: &str, host: &str, port: u16, driver: &str, tags: &[String]) -> String {
    format!(
        "[[tenants.devices]]\nname = \"{name}\"\npoll_ms = 60000\ndriver = {{ protocol = \"mqtt\", host = \"{host}\", port = {port}, reconnect_min_ms = 100, reconnect_max_ms = 400{driver} }}\n{}",
        tags.concat()
    )
}

/// Publishing through a peer until the server shows the effect (a test-only trait:
/// its futures need no `Send` bound).
#[allow(async_fn_in_trait)]
pub trait PublishUntil {
    async fn publish_until(
        &self,
        peer: &Peer,
        topic: &str,
        payload: &[u8],
        what: &str,
        check: impl Fn(&HashMap<String, Value>) -> bool,
    );
}

impl PublishUntil for Site {
    /// Publishes `payload` on `topic` until `check` holds on the latest values (the
    /// device's subscription may not be acknowledged yet when the test starts).
    async fn publish_until(
        &self,
        peer: &Peer,
        topic: &str,
        payload: &[u8],
        what: &str,
        check: impl Fn(&HashMap<String, Value>) -> bool,
    ) {
        let start = std::time::Instant::now();
        loop {
            peer.publish(topic, payload.to_vec()).await;
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(25)).await;
                if check(&self.latest().await) {
                    return;
                }
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for: {what}; latest = {:?}",
                self.latest().await
            );
        }
    }
}

#[tokio::test]
async fn which_broker() {
    let b = broker::broker();
    // Says in the test log which broker the suite ran against.
    eprintln!("MQTT tests against {} at {}:{}", b.kind, b.host, b.port);
    let _peer = Peer::connect(&b.host, b.port).await;
}
