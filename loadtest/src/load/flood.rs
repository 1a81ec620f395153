//! `mqtt-flood`'s publishers, in the generator's process: `gateways` gateways, each
//! publishing one JSON object of `values` numbers (and its time `ts`, in ms) to
//! `{prefix}/gw-N/data` `rate` times a second, `per_connection` gateways sharing
//! one MQTT connection. What the event loops write is counted as `mqtt.published`.

use std::time::Duration;

use rumqttc::{Event, EventLoop, Outgoing};
use tokio::sync::watch;

use super::scenario::MqttSpec;
use super::stats::Recorder;
use std::sync::Arc;
use thermacore_loadtest::mqtt_pub;

/// Starts the publishers; they run until `stop`.
pub fn start(
    spec: &MqttSpec,
    host: &str,
    port: u16,
    prefix: &str,
    rec: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let connections = spec.gateways.div_ceil(spec.per_connection);
    for c in 0..connections {
        let (client, el) = mqtt_pub::client(format!("{prefix}-pub-{c}"), host, port);
        tasks.push(tokio::spawn(drive(el, rec.clone(), stop.clone())));
        let first = c * spec.per_connection;
        let last = (first + spec.per_connection).min(spec.gateways);
        for g in first..last {
            tasks.push(tokio::spawn(gateway(
                client.clone(),
                spec.clone(),
                prefix.to_string(),
                g,
                stop.clone(),
            )));
        }
    }
    tasks
}

/// One connection's event loop: counts publishes written, reports errors.
async fn drive(mut el: EventLoop, rec: Arc<Recorder>, mut stop: watch::Receiver<bool>) {
    loop {
        let ev = tokio::select! {
            ev = el.poll() => ev,
            _ = stop.wait_for(|s| *s) => return,
        };
        match ev {
            Ok(Event::Outgoing(Outgoing::Publish(_))) => rec.add("mqtt.published", 1),
            Ok(_) => {}
            Err(e) => {
                rec.err("mqtt.publish", &format!("connection: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn gateway(
    client: rumqttc::AsyncClient,
    spec: MqttSpec,
    prefix: String,
    g: usize,
    mut stop: watch::Receiver<bool>,
) {
    let period = Duration::from_secs_f64(1.0 / spec.rate);
    let offset = period.mul_f64(g as f64 / spec.gateways as f64);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let topic = mqtt_pub::topic(&prefix, g);
    let qos = mqtt_pub::qos(spec.qos);
    for n in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let body = mqtt_pub::payload(spec.values, g, n);
        if client
            .publish(topic.as_str(), qos, false, body)
            .await
            .is_err()
        {
            return;
        }
    }
}
