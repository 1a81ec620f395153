//! The demo's JSON gateway: a boiler as one JSON object on [`BOILER_TOPIC`] every
//! second, unit temperatures as plain numbers on [`unit_topic`], and commands on
//! [`CMD_FILTER`] that set the boiler's `setpoint` and `mode`.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, QoS};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{LinkEvent, connect, noise, now_ms, options, round};

/// The boiler's JSON object (`ts`, `supply_temp`, `return_temp`, `pressure`,
/// `pump_running`, `mode`, `setpoint`, `q`).
pub const BOILER_TOPIC: &str = "demo/gateway1/boiler";
/// The gateway takes commands under this filter.
pub const CMD_FILTER: &str = "demo/gateway1/cmd/#";
/// `{"value": <number>}` sets the boiler's `setpoint`.
pub const SETPOINT_CMD_TOPIC: &str = "demo/gateway1/cmd/setpoint";
/// `{"value": "<text>"}` sets the boiler's `mode` (`off` stops the pump).
pub const MODE_CMD_TOPIC: &str = "demo/gateway1/cmd/mode";
/// The units with a plain-text temperature topic each ([`unit_topic`]).
pub const UNITS: [&str; 3] = ["north", "south", "east"];
/// The boiler's setpoint until a command changes it.
pub const DEFAULT_SETPOINT: f64 = 70.0;
/// How often the gateway publishes.
pub const PERIOD: Duration = Duration::from_secs(1);
/// A pressure surge (water hammer when a valve slams) every this many seconds, for
/// one publication: what the demo's anomaly rule on `gw-pressure` finds.
pub const SURGE_EVERY_S: u64 = 150;
/// How far a surge lifts the pressure, bar (the noise is ±0.02, the swing ±0.1).
const SURGE_BAR: f64 = 0.45;

/// `demo/site/{unit}/temperature`: a plain number such as `18.4`.
pub fn unit_topic(unit: &str) -> String {
    format!("demo/site/{unit}/temperature")
}

/// What the commands change.
#[derive(Debug, Clone, PartialEq)]
struct Boiler {
    setpoint: f64,
    mode: String,
}

impl Default for Boiler {
    fn default() -> Self {
        Boiler {
            setpoint: DEFAULT_SETPOINT,
            mode: "auto".into(),
        }
    }
}

impl Boiler {
    /// Applies a command message; false (and a warning) for one it does not understand.
    fn apply(&mut self, topic: &str, payload: &[u8]) -> bool {
        let value = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("value").cloned());
        let applied = match (topic, value) {
            (SETPOINT_CMD_TOPIC, Some(v)) => match v.as_f64().filter(|v| v.is_finite()) {
                Some(sp) => {
                    self.setpoint = sp;
                    true
                }
                None => false,
            },
            (MODE_CMD_TOPIC, Some(serde_json::Value::String(mode))) => {
                self.mode = mode;
                true
            }
            _ => false,
        };
        if applied {
            tracing::info!(topic, "demo gateway applied a command");
        } else {
            tracing::warn!(
                topic,
                payload = %String::from_utf8_lossy(payload),
                "demo gateway ignored a command"
            );
        }
        applied
    }

    /// The JSON object at `t` seconds since start, taken at `ts_ms`.
    fn json(&self, t: f64, ts_ms: u64) -> serde_json::Value {
        let running = self.mode != "off";
        let tau = std::f64::consts::TAU;
        let supply = self.setpoint + 1.3 + 2.0 * (tau * t / 120.0).sin() + noise(0.2);
        let ret = supply - 19.0 + 1.5 * (tau * t / 150.0).cos() + noise(0.2);
        let surge = if t as u64 % SURGE_EVERY_S == SURGE_EVERY_S / 2 {
            SURGE_BAR
        } else {
            0.0
        };
        let pressure = if running {
            1.8 + 0.1 * (tau * t / 45.0).sin() + noise(0.02) + surge
        } else {
            0.4 + noise(0.01)
        };
        json!({
            "ts": ts_ms,
            "supply_temp": round(supply, 1),
            "return_temp": round(ret, 1),
            "pressure": round(pressure, 2),
            "pump_running": running,
            "mode": self.mode,
            "setpoint": self.setpoint,
            "q": "good",
        })
    }
}

/// A unit's temperature at `t` seconds since start, as its payload.
fn unit_temperature(index: usize, t: f64) -> String {
    let base = [18.4, 19.2, 17.6][index % 3];
    let phase = index as f64 * 2.1;
    let v = base + 1.2 * (std::f64::consts::TAU * t / 300.0 + phase).sin() + noise(0.1);
    format!("{v:.1}")
}

/// Starts the gateway: its connection task and its publishing task.
pub(super) fn spawn(host: &str, port: u16) -> Vec<JoinHandle<()>> {
    let (client, events, link) = connect(options("gateway", host, port), |_| {});
    vec![link, tokio::spawn(run(client, events))]
}

async fn run(client: AsyncClient, mut events: mpsc::Receiver<LinkEvent>) {
    let start = Instant::now();
    let mut boiler = Boiler::default();
    let mut connected = false;
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                None => return,
                Some(LinkEvent::Up) => {
                    connected = true;
                    if let Err(e) = client.try_subscribe(CMD_FILTER, QoS::AtLeastOnce) {
                        tracing::warn!(error = %e, "demo gateway cannot subscribe");
                    }
                }
                Some(LinkEvent::Down) => connected = false,
                Some(LinkEvent::Message(p)) => {
                    boiler.apply(&p.topic, &p.payload);
                }
            },
            _ = tick.tick() => {
                if connected {
                    publish(&client, &boiler, start.elapsed().as_secs_f64());
                }
            }
        }
    }
}

fn publish(client: &AsyncClient, boiler: &Boiler, t: f64) {
    let mut messages = vec![(
        BOILER_TOPIC.to_string(),
        boiler.json(t, now_ms()).to_string(),
    )];
    for (i, unit) in UNITS.iter().enumerate() {
        messages.push((unit_topic(unit), unit_temperature(i, t)));
    }
    for (topic, payload) in messages {
        if let Err(e) = client.try_publish(topic, QoS::AtMostOnce, false, payload) {
            tracing::debug!(error = %e, "demo gateway dropped a message");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_set_setpoint_and_mode_and_bad_ones_change_nothing() {
        let mut b = Boiler::default();
        assert!(b.apply(SETPOINT_CMD_TOPIC, br#"{"value": 65}"#));
        assert!(b.apply(MODE_CMD_TOPIC, br#"{"value": "off"}"#));
        assert_eq!((b.setpoint, b.mode.as_str()), (65.0, "off"));
        for (topic, payload) in [
            (SETPOINT_CMD_TOPIC, &br#"{"value": "hot"}"#[..]),
            (SETPOINT_CMD_TOPIC, b"65"),
            (MODE_CMD_TOPIC, br#"{"value": 3}"#),
            ("demo/gateway1/cmd/other", br#"{"value": 1}"#),
        ] {
            assert!(!b.apply(topic, payload));
        }
        assert_eq!((b.setpoint, b.mode.as_str()), (65.0, "off"));
        let j = b.json(10.0, 1);
        assert_eq!(j["pump_running"], false);
        assert_eq!(j["setpoint"], 65.0);
    }

    #[test]
    fn values_stay_near_their_base() {
        let b = Boiler::default();
        for t in [0.0, 30.0, 60.0, 90.0, 1000.0] {
            let j = b.json(t, 7);
            let supply = j["supply_temp"].as_f64().expect("number");
            assert!((68.0..75.0).contains(&supply), "{supply}");
            assert_eq!(j["q"], "good");
            let unit: f64 = unit_temperature(0, t).parse().expect("plain number");
            assert!((17.0..20.0).contains(&unit), "{unit}");
        }
    }

    #[test]
    fn the_pressure_surges_once_a_cycle() {
        let b = Boiler::default();
        let pressure = |t: f64| b.json(t, 7)["pressure"].as_f64().expect("number");
        let surges: Vec<u64> = (0..2 * SURGE_EVERY_S)
            .filter(|&t| pressure(t as f64) > 2.0)
            .collect();
        assert_eq!(surges, vec![SURGE_EVERY_S / 2, SURGE_EVERY_S * 3 / 2]);
    }
}
