//! The demo's MQTT peers: a JSON gateway ([`gateway`]) and a Sparkplug B edge node
//! ([`edge_node`]), each a tokio task publishing to a broker through rumqttc and taking
//! commands back. [`start_publishers`] starts both; dropping the handle stops them.

pub mod edge_node;
pub mod gateway;
mod pump;

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, Publish};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use edge_node::{
    BD_SEQ, METRIC_FLOW, METRIC_RUNNING, METRIC_SETPOINT, METRIC_SPEED, METRIC_STARTS,
    METRIC_STATUS, MetricSpec, PUMP_METRICS, SP_DEVICE, SP_GROUP, SP_NODE, UPTIME,
};
pub use gateway::{
    BOILER_TOPIC, CMD_FILTER, DEFAULT_SETPOINT, MODE_CMD_TOPIC, SETPOINT_CMD_TOPIC, UNITS,
    unit_topic,
};

/// The demo's MQTT devices: the JSON gateway (with a topic template for the units'
/// temperatures) and the Sparkplug B pump, on the broker at `127.0.0.1:{port}`.
pub const MQTT_DEVICES: &str = r#"
[[tenants.devices]]
name = "boiler-gateway"
unit = "boiler-house"
poll_ms = 2000
driver = { protocol = "mqtt", host = "127.0.0.1", port = {port}, topics = ["demo/gateway1/boiler"], time = "/ts", quality = "/q", command_topic = "demo/gateway1/cmd/{tag}", templates = [{ topic = "demo/site/{unit}/temperature", name = "{unit}.temperature", data_type = "f64", eng_unit = "°C" }] }

[[tenants.devices.tags]]
name = "gw-supply-temp"
address = "topic=demo/gateway1/boiler;value=/supply_temp"
data_type = "f64"
eng_unit = "°C"

[[tenants.devices.tags]]
name = "gw-return-temp"
address = "topic=demo/gateway1/boiler;value=/return_temp"
data_type = "f64"
eng_unit = "°C"

[[tenants.devices.tags]]
name = "gw-pressure"
address = "topic=demo/gateway1/boiler;value=/pressure"
data_type = "f64"
eng_unit = "bar"
alarms = [{ name = "pressure-surge", type = "anomaly", method = "zscore", window = 30, threshold = 4, severity = "medium", message = "{tag} surge: {value} bar" }]

[[tenants.devices.tags]]
name = "gw-pump-running"
address = "topic=demo/gateway1/boiler;value=/pump_running"
data_type = "bool"

[[tenants.devices.tags]]
name = "setpoint"
address = "topic=demo/gateway1/boiler;value=/setpoint"
data_type = "f64"
eng_unit = "°C"
writable = true

[[tenants.devices.tags]]
name = "mode"
address = "topic=demo/gateway1/boiler;value=/mode"
data_type = "string"
writable = true

[[tenants.devices]]
name = "pump1-edge"
unit = "pump-station"
poll_ms = 2000
driver = { protocol = "mqtt", host = "127.0.0.1", port = {port}, sparkplug = { group = "DemoPlant", node = "Edge1", device = "Pump1", discover = true } }

[[tenants.devices.tags]]
name = "pump1-setpoint"
address = "metric=Setpoint"
data_type = "f64"
eng_unit = "%"
writable = true
"#;

/// MQTT keep-alive of the demo clients.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Pause after a failed connection attempt before the next one.
const RETRY: Duration = Duration::from_millis(500);

/// Why the demo publishers cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("no broker host given")]
    NoHost,
    #[error("broker port 0 is not a port to connect to")]
    NoPort,
}

/// The running demo publishers; dropping this stops them (their connections close, so
/// the broker publishes the edge node's NDEATH).
#[derive(Debug)]
pub struct DemoPublishers {
    tasks: Vec<JoinHandle<()>>,
}

impl DemoPublishers {
    /// False once any of the publishers' tasks has ended (a panic: they run for ever).
    pub fn is_running(&self) -> bool {
        self.tasks.iter().all(|t| !t.is_finished())
    }
}

impl Drop for DemoPublishers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the JSON gateway and the Sparkplug B edge node against the broker at
/// `host:port`. They connect in the background and keep reconnecting, so the broker
/// may come up later (or restart).
pub async fn start_publishers(host: &str, port: u16) -> Result<DemoPublishers, PublisherError> {
    if host.is_empty() {
        return Err(PublisherError::NoHost);
    }
    if port == 0 {
        return Err(PublisherError::NoPort);
    }
    let mut tasks = gateway::spawn(host, port);
    tasks.extend(edge_node::spawn(host, port));
    Ok(DemoPublishers { tasks })
}

/// What the connection task tells a publisher.
#[derive(Debug)]
enum LinkEvent {
    /// Connected (a new session: subscriptions are gone, births are due).
    Up,
    /// The connection was lost; publish nothing until the next `Up`.
    Down,
    Message(Publish),
}

/// Options of a demo client: a unique client id, keep-alive 30 s, clean session.
fn options(role: &str, host: &str, port: u16) -> MqttOptions {
    let id = format!("thermacore-demo-{role}-{:08x}", rand::random::<u32>());
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_request_channel_capacity(256);
    o
}

/// A client and the task that polls its event loop for ever (rumqttc reconnects on the
/// next poll). `on_lost` runs after a lost session, before the next connection attempt,
/// and may change the options (a new last will).
fn connect(
    options: MqttOptions,
    on_lost: impl FnMut(&mut MqttOptions) + Send + 'static,
) -> (AsyncClient, mpsc::Receiver<LinkEvent>, JoinHandle<()>) {
    let (client, eventloop) = AsyncClient::new(options, 256);
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(drive(eventloop, tx, on_lost));
    (client, rx, task)
}

async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::Sender<LinkEvent>,
    mut on_lost: impl FnMut(&mut MqttOptions),
) {
    let client_id = eventloop.mqtt_options.client_id();
    let mut up = false;
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                up = true;
                tracing::info!(client_id, "demo MQTT client connected");
                LinkEvent::Up
            }
            Ok(Event::Incoming(Packet::Publish(p))) => LinkEvent::Message(p),
            Ok(_) => continue,
            // Every AsyncClient is gone: the publisher stopped.
            Err(ConnectionError::RequestsDone) => return,
            Err(e) => {
                if std::mem::take(&mut up) {
                    tracing::warn!(client_id, error = %e, "demo MQTT client lost its connection");
                    on_lost(&mut eventloop.mqtt_options);
                    if tx.send(LinkEvent::Down).await.is_err() {
                        return;
                    }
                } else {
                    tracing::debug!(client_id, error = %e, "demo MQTT client cannot connect");
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Uniform noise in `[-amplitude, amplitude)`.
fn noise(amplitude: f64) -> f64 {
    if amplitude <= 0.0 {
        return 0.0;
    }
    rand::random_range(-amplitude..amplitude)
}

/// `v` rounded to `decimals` places (for readable demo values).
fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}
