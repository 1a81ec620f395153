//! The demo's OPC UA device: an embedded OPC UA server on a free loopback port with a
//! small pump station under the folder `PumpStation`. A pump fills a wet well that the
//! plant draws from; the pump starts when the level falls below the setpoint minus a
//! hysteresis and stops at the setpoint, flow and discharge pressure follow the pump,
//! and the setpoint is writable. Security: Basic256Sha256 SignAndEncrypt.

use std::path::{Path, PathBuf};
use std::time::Duration;

use opcua::crypto::SecurityPolicy;
use opcua::types::{MessageSecurityMode, Variant};
use tokio::task::JoinHandle;

use crate::drivers::opcua::server::{RunningServer, ServerError, ServerSpec, VariableSpec};

/// The namespace of the station's variables.
pub const NAMESPACE: &str = "urn:thermacore:demo:pump-station";
/// The Object folder under Objects that holds them.
pub const FOLDER: &str = "PumpStation";
pub const FLOW: &str = "Flow";
pub const PRESSURE: &str = "Pressure";
pub const LEVEL: &str = "Level";
pub const PUMP_RUNNING: &str = "PumpRunning";
pub const SETPOINT: &str = "Setpoint";
pub const STARTS: &str = "Starts";

/// The demo's OPC UA device and its tags. `{endpoint}` is the server's endpoint URL,
/// `{server_cert}` its certificate (which the client trusts because the config names
/// it), `{pki}` the client's own PKI directory; [`opcua_devices`] fills them in.
pub const OPCUA_DEVICES: &str = r#"
[[tenants.devices]]
name = "station-2"
unit = "pump-station"
poll_ms = 500
driver = { protocol = "opcua", endpoint = "{endpoint}", security_policy = "basic256sha256", security_mode = "sign_and_encrypt", pki_dir = "{pki}", server_certificate = "{server_cert}" }

[[tenants.devices.tags]]
name = "well-level"
address = "nsu=urn:thermacore:demo:pump-station;s=Level"
eng_unit = "m"

[[tenants.devices.tags]]
name = "well-level-setpoint"
address = "nsu=urn:thermacore:demo:pump-station;s=Setpoint"
eng_unit = "m"
writable = true

[[tenants.devices.tags]]
name = "station-flow"
address = "nsu=urn:thermacore:demo:pump-station;s=Flow"
eng_unit = "m³/h"

[[tenants.devices.tags]]
name = "station-pressure"
address = "nsu=urn:thermacore:demo:pump-station;s=Pressure"
eng_unit = "bar"

[[tenants.devices.tags]]
name = "station-pump-running"
address = "nsu=urn:thermacore:demo:pump-station;s=PumpRunning"
data_type = "bool"

[[tenants.devices.tags]]
name = "station-pump-starts"
address = "nsu=urn:thermacore:demo:pump-station;s=Starts"
data_type = "u32"
"#;

/// [`OPCUA_DEVICES`] for a server at `endpoint` with its certificate at `server_cert`,
/// the client keeping its PKI in `pki`.
pub fn opcua_devices(endpoint: &str, server_cert: &Path, pki: &Path) -> String {
    OPCUA_DEVICES
        .replace("{endpoint}", &toml_escape(endpoint))
        .replace(
            "{server_cert}",
            &toml_escape(&server_cert.display().to_string()),
        )
        .replace("{pki}", &toml_escape(&pki.display().to_string()))
}

/// `s` fit for the inside of a TOML basic string (a Windows path has backslashes).
fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The demo's server PKI under the data directory.
pub fn server_pki_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("opcua").join("server-pki")
}

/// The demo server's certificate (DER), which the demo's client config names.
pub fn server_certificate_path(data_dir: &Path) -> PathBuf {
    server_pki_dir(data_dir).join("own").join("cert.der")
}

/// The PKI of ThermaCore's OPC UA client in the demo.
pub fn client_pki_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("opcua").join("client-pki")
}

/// Time between two steps of the station, and so between two value changes.
const STEP: Duration = Duration::from_millis(500);
/// Seed of the station's noise, so that two runs of the demo look alike.
const SEED: u64 = 55;
/// The well's height; the level's EURange is 0..WELL_HEIGHT.
const WELL_HEIGHT: f64 = 5.0;
/// Wet-well area in m², small so that a pump cycle lasts about a minute.
const WELL_AREA: f64 = 0.8;
const PUMP_FLOW: f64 = 60.0;
const HYSTERESIS: f64 = 0.3;
const DEFAULT_SETPOINT: f64 = 3.0;

/// The station's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Station {
    /// Level in the wet well, m.
    pub level: f64,
    /// Level setpoint, m (written by operators through ThermaCore).
    pub setpoint: f64,
    pub pump_running: bool,
    /// Pump flow, m³/h.
    pub flow: f64,
    /// Discharge pressure, bar.
    pub pressure: f64,
    pub starts: u32,
    /// Seconds since start, for the plant's slowly varying demand.
    t: f64,
    rng: u64,
}

impl Station {
    pub fn new(seed: u64) -> Self {
        Station {
            level: 2.8,
            setpoint: DEFAULT_SETPOINT,
            pump_running: false,
            flow: 0.0,
            pressure: 0.5,
            starts: 0,
            t: 0.0,
            rng: seed | 1,
        }
    }

    /// One step of `dt` seconds.
    pub fn step(&mut self, dt: f64) {
        self.t += dt;
        if self.pump_running && self.level >= self.setpoint {
            self.pump_running = false;
        } else if !self.pump_running && self.level < self.setpoint - HYSTERESIS {
            self.pump_running = true;
            self.starts = self.starts.wrapping_add(1);
        }
        let target_flow = if self.pump_running { PUMP_FLOW } else { 0.0 };
        self.flow += (target_flow - self.flow) * 0.4;
        if self.pump_running {
            self.flow += self.noise(0.5);
        } else if self.flow < 0.05 {
            self.flow = 0.0;
        }
        self.flow = self.flow.max(0.0);
        // The plant draws 25..35 m³/h, slowly varying.
        let demand = 30.0 + 5.0 * (self.t / 90.0).sin() + self.noise(0.5);
        let net = (self.flow - demand) / 3600.0 * dt / WELL_AREA;
        self.level = (self.level + net).clamp(0.0, WELL_HEIGHT);
        // Static head of the well plus the friction of the pumped flow.
        let target_pressure = 0.3 + 0.1 * self.level + 3.2 * (self.flow / PUMP_FLOW).powi(2);
        self.pressure += (target_pressure - self.pressure) * 0.3 + self.noise(0.01);
        self.pressure = self.pressure.max(0.0);
    }

    /// The variables' values.
    pub fn values(&self) -> [(&'static str, Variant); 6] {
        [
            (FLOW, Variant::Double(round(self.flow, 2))),
            (PRESSURE, Variant::Double(round(self.pressure, 3))),
            (LEVEL, Variant::Double(round(self.level, 3))),
            (PUMP_RUNNING, Variant::Boolean(self.pump_running)),
            (SETPOINT, Variant::Double(self.setpoint)),
            (STARTS, Variant::UInt32(self.starts)),
        ]
    }

    /// Uniform noise in `[-amplitude, amplitude]` from the station's own generator.
    fn noise(&mut self, amplitude: f64) -> f64 {
        let x = xorshift(&mut self.rng);
        amplitude * ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
    }
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// The server's spec: the station's variables on a free loopback port, Basic256Sha256
/// SignAndEncrypt with anonymous identity, PKI under `data_dir`.
pub fn spec(data_dir: &Path) -> ServerSpec {
    let station = Station::new(SEED);
    let variables = station
        .values()
        .into_iter()
        .map(|(id, value)| {
            let v = VariableSpec::new(id, value).in_folder(FOLDER);
            match id {
                SETPOINT => v.writable(),
                LEVEL => v.eu_range(0.0, WELL_HEIGHT),
                _ => v,
            }
        })
        .collect();
    let mut spec = ServerSpec::new(
        ([127, 0, 0, 1], 0).into(),
        NAMESPACE,
        server_pki_dir(data_dir),
    );
    spec.application_name = "ThermaCore demo pump station".into();
    spec.application_uri = "urn:thermacore:demo:pump-station:server".into();
    spec.endpoints = vec![(
        SecurityPolicy::Basic256Sha256,
        MessageSecurityMode::SignAndEncrypt,
    )];
    // The demo runs on loopback with a client PKI made on the fly: trusting whatever
    // application certificate it presents saves a manual trust step, and the channel is
    // still signed and encrypted. A real device keeps this off.
    spec.trust_client_certs = true;
    spec.variables = variables;
    spec
}

/// The running demo station: its server and the task that steps it. Dropping it stops
/// both; [`DemoStation::stop`] also waits for the port to be free.
#[derive(Debug)]
pub struct DemoStation {
    pub server: RunningServer,
    task: StepTask,
}

impl DemoStation {
    pub async fn stop(self) {
        drop(self.task);
        self.server.stop().await;
    }
}

/// The stepping task, aborted when dropped.
#[derive(Debug)]
struct StepTask(JoinHandle<()>);

impl Drop for StepTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the station's server (making its keypair on the first run) and its physics.
pub async fn start(data_dir: &Path) -> Result<DemoStation, ServerError> {
    let server = RunningServer::start(spec(data_dir)).await?;
    let nodes = server.updater();
    let task = tokio::spawn(async move {
        let mut station = Station::new(SEED);
        let mut tick = tokio::time::interval(STEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // An operator's write lands in the node; the station takes it from there.
            if let Some(Variant::Double(sp)) = nodes.value(SETPOINT).and_then(|dv| dv.value) {
                station.setpoint = sp;
            }
            station.step(STEP.as_secs_f64());
            nodes.set_values(&station.values());
        }
    });
    Ok(DemoStation {
        server,
        task: StepTask(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pump_keeps_the_level_near_its_setpoint() {
        let mut s = Station::new(SEED);
        let mut levels = Vec::new();
        for _ in 0..2400 {
            s.step(0.5);
            levels.push(s.level);
        }
        assert!(s.starts >= 5, "the pump cycles: {} starts", s.starts);
        let tail = &levels[600..];
        let (min, max) = tail
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), l| (lo.min(*l), hi.max(*l)));
        assert!(min > DEFAULT_SETPOINT - HYSTERESIS - 0.1, "min {min}");
        assert!(max < DEFAULT_SETPOINT + 0.1, "max {max}");
        s.setpoint = 4.0;
        for _ in 0..600 {
            s.step(0.5);
        }
        assert!(
            s.level > 3.6,
            "the level follows a raised setpoint: {}",
            s.level
        );
    }

    #[test]
    fn flow_and_pressure_follow_the_pump() {
        let mut s = Station::new(SEED);
        s.level = 1.0;
        for _ in 0..20 {
            s.step(0.5);
        }
        assert!(s.pump_running);
        assert!((s.flow - PUMP_FLOW).abs() < 3.0, "flow {}", s.flow);
        assert!(s.pressure > 3.0, "pressure {}", s.pressure);
        assert_eq!(Station::new(SEED), Station::new(SEED), "deterministic");
    }

    #[test]
    fn the_device_text_is_toml_with_its_placeholders_filled() {
        let text = opcua_devices(
            "opc.tcp://127.0.0.1:4841/",
            Path::new(r"C:\demo\server-pki\own\cert.der"),
            Path::new("/tmp/client-pki"),
        );
        for placeholder in ["{endpoint}", "{server_cert}", "{pki}"] {
            assert!(!text.contains(placeholder), "{placeholder} left");
        }
        let v: toml::Value = toml::from_str(&text).expect("valid TOML");
        let device = &v["tenants"]["devices"][0];
        assert_eq!(
            device["driver"]["endpoint"].as_str(),
            Some("opc.tcp://127.0.0.1:4841/")
        );
        assert_eq!(
            device["driver"]["server_certificate"].as_str(),
            Some(r"C:\demo\server-pki\own\cert.der")
        );
        assert_eq!(device["tags"].as_array().map(Vec::len), Some(6));
    }
}
