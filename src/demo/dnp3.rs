//! The demo's DNP3 device: the `dnp3` crate's outstation on a free loopback port,
//! playing the RTU of an 11 kV feeder. A breaker (double-bit status, closed by a
//! trip/close CROB that operators send select-before-operate), three phase voltages
//! that follow a writable voltage setpoint (the transformer's tap changer) and three
//! load currents, all reported as events with deadbands, and an energy counter.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::drivers::dnp3::PointKind;
use crate::drivers::dnp3::outstation::{
    OutstationError, OutstationSpec, PointSpec, RunningOutstation,
};

/// The demo's DNP3 unit, device and tags; `{endpoint}` is the outstation's `host:port`.
pub const DNP3_DEVICES: &str = r#"
[[tenants.units]]
name = "substation-7"
location = { lat = 45.0588, lon = 7.6953 }
description = "11 kV feeder supplying the boiler house"

[[tenants.devices]]
name = "feeder-7"
unit = "substation-7"
driver = { protocol = "dnp3", endpoint = "{endpoint}", integrity_poll_s = 300, unsolicited = true }

[[tenants.devices.tags]]
name = "feeder-breaker"
address = "dbbi:0"
data_type = "string"

[[tenants.devices.tags]]
name = "feeder-breaker-command"
address = "bo:0|op=trip_close;critical"
data_type = "bool"
writable = true

[[tenants.devices.tags]]
name = "feeder-voltage-l1"
address = "ai:0"
eng_unit = "kV"
scale = 0.001

[[tenants.devices.tags]]
name = "feeder-voltage-l2"
address = "ai:1"
eng_unit = "kV"
scale = 0.001

[[tenants.devices.tags]]
name = "feeder-voltage-l3"
address = "ai:2"
eng_unit = "kV"
scale = 0.001

[[tenants.devices.tags]]
name = "feeder-current-l1"
address = "ai:3"
eng_unit = "A"

[[tenants.devices.tags]]
name = "feeder-current-l2"
address = "ai:4"
eng_unit = "A"

[[tenants.devices.tags]]
name = "feeder-current-l3"
address = "ai:5"
eng_unit = "A"

[[tenants.devices.tags]]
name = "feeder-energy"
address = "counter:0"
data_type = "u32"
eng_unit = "kWh"

[[tenants.devices.tags]]
name = "feeder-voltage-setpoint"
address = "ao:0"
eng_unit = "kV"
scale = 0.001
writable = true
"#;

/// [`DNP3_DEVICES`] for an outstation at `endpoint`.
pub fn dnp3_devices(endpoint: &str) -> String {
    DNP3_DEVICES.replace("{endpoint}", endpoint)
}

const STEP: Duration = Duration::from_millis(500);
const SEED: u64 = 77;
/// Nominal voltage, V.
const NOMINAL: f64 = 11_000.0;
/// Voltage drop per ampere of load, V.
const DROP_PER_AMP: f64 = 1.5;

/// The feeder's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Feeder {
    pub closed: bool,
    /// The voltage the tap changer regulates to, V.
    pub setpoint: f64,
    pub voltages: [f64; 3],
    pub currents: [f64; 3],
    /// Energy delivered, kWh, and the fraction not yet counted.
    pub energy: u32,
    energy_frac: f64,
    t: f64,
    rng: u64,
}

impl Feeder {
    pub fn new(seed: u64) -> Self {
        Feeder {
            closed: true,
            setpoint: NOMINAL,
            voltages: [NOMINAL; 3],
            currents: [0.0; 3],
            energy: 120_000,
            energy_frac: 0.0,
            t: 0.0,
            rng: seed | 1,
        }
    }

    /// One step of `dt` seconds.
    pub fn step(&mut self, dt: f64) {
        self.t += dt;
        // The boiler house draws 150..250 A per phase, slowly varying, a little unbalanced.
        let load = 200.0 + 50.0 * (self.t / 120.0).sin();
        for phase in 0..3 {
            let target = if self.closed {
                load * (1.0 + 0.03 * phase as f64) + self.noise(2.0)
            } else {
                0.0
            };
            self.currents[phase] += (target - self.currents[phase]) * 0.5;
            if !self.closed && self.currents[phase] < 0.5 {
                self.currents[phase] = 0.0;
            }
            let v = self.setpoint - DROP_PER_AMP * self.currents[phase] + self.noise(8.0);
            self.voltages[phase] += (v - self.voltages[phase]) * 0.5;
        }
        // P = √3 · U · I (power factor 0.95), per phase averaged.
        let i = self.currents.iter().sum::<f64>() / 3.0;
        let u = self.voltages.iter().sum::<f64>() / 3.0;
        let kw = 3f64.sqrt() * u * i * 0.95 / 1000.0;
        self.energy_frac += kw * dt / 3600.0;
        let whole = self.energy_frac.floor();
        self.energy = self.energy.wrapping_add(whole as u32);
        self.energy_frac -= whole;
    }

    fn noise(&mut self, amplitude: f64) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        amplitude * ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
    }
}

/// The outstation's points: breaker and command in class 1, analogs in class 2 with
/// deadbands (20 V, 2 A), the counter in class 3 (every 10 kWh).
pub fn points() -> Vec<PointSpec> {
    let f = Feeder::new(SEED);
    let mut p = vec![
        PointSpec::new(PointKind::DoubleBit, 0, 1, 2.0),
        PointSpec::new(PointKind::BinaryOutput, 0, 1, 1.0),
        PointSpec::new(PointKind::AnalogOutput, 0, 1, f.setpoint),
        PointSpec::new(PointKind::Counter, 0, 3, f64::from(f.energy)).deadband(10.0),
    ];
    for phase in 0..3u16 {
        p.push(PointSpec::new(PointKind::AnalogInput, phase, 2, NOMINAL).deadband(20.0));
        p.push(PointSpec::new(PointKind::AnalogInput, 3 + phase, 2, 0.0).deadband(2.0));
    }
    p
}

/// The running demo feeder: its outstation and the task that steps it (stopped when
/// dropped).
pub struct DemoFeeder {
    pub outstation: RunningOutstation,
    task: JoinHandle<()>,
}

impl Drop for DemoFeeder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the feeder's outstation on a free loopback port and its physics.
pub async fn start() -> Result<DemoFeeder, OutstationError> {
    let outstation = RunningOutstation::start(OutstationSpec::new(points())).await?;
    let handle = outstation.handle();
    let task = tokio::spawn(async move {
        let mut feeder = Feeder::new(SEED);
        let mut tick = tokio::time::interval(STEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let online = 0x01;
        loop {
            tick.tick().await;
            // Commands land in the output points; the feeder takes them from there.
            if let Some(closed) = handle.value(PointKind::BinaryOutput, 0) {
                let closed = closed != 0.0;
                if closed != feeder.closed {
                    // The breaker moves: intermediate for one step.
                    handle.update(PointKind::DoubleBit, 0, 0.0, online);
                    tick.tick().await;
                    feeder.closed = closed;
                }
            }
            if let Some(sp) = handle.value(PointKind::AnalogOutput, 0) {
                feeder.setpoint = sp;
            }
            feeder.step(STEP.as_secs_f64());
            let breaker = if feeder.closed { 2.0 } else { 1.0 };
            handle.update(PointKind::DoubleBit, 0, breaker, online);
            for phase in 0..3u16 {
                let i = usize::from(phase);
                handle.update(
                    PointKind::AnalogInput,
                    phase,
                    feeder.voltages[i].round(),
                    online,
                );
                handle.update(
                    PointKind::AnalogInput,
                    3 + phase,
                    (feeder.currents[i] * 10.0).round() / 10.0,
                    online,
                );
            }
            handle.update(PointKind::Counter, 0, f64::from(feeder.energy), online);
        }
    });
    Ok(DemoFeeder { outstation, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_follows_the_breaker_and_voltage_the_setpoint() {
        let mut f = Feeder::new(SEED);
        for _ in 0..20 {
            f.step(0.5);
        }
        assert!(f.currents.iter().all(|i| *i > 100.0), "{:?}", f.currents);
        let energy = f.energy;
        for _ in 0..200 {
            f.step(0.5);
        }
        assert!(f.energy > energy, "energy is counted");
        f.setpoint = 11_300.0;
        for _ in 0..20 {
            f.step(0.5);
        }
        assert!(f.voltages.iter().all(|v| *v > 10_800.0), "{:?}", f.voltages);
        f.closed = false;
        for _ in 0..20 {
            f.step(0.5);
        }
        assert_eq!(f.currents, [0.0; 3]);
        assert!(
            f.voltages.iter().all(|v| (v - 11_300.0).abs() < 30.0),
            "no load, no drop"
        );
        assert_eq!(Feeder::new(SEED), Feeder::new(SEED), "deterministic");
    }

    #[test]
    fn the_device_text_is_toml() {
        let text = dnp3_devices("127.0.0.1:20001");
        let v: toml::Value = toml::from_str(&text).expect("valid TOML");
        let device = &v["tenants"]["devices"][0];
        assert_eq!(
            device["driver"]["endpoint"].as_str(),
            Some("127.0.0.1:20001")
        );
        assert_eq!(device["tags"].as_array().map(Vec::len), Some(10));
    }
}
