//! The demo's Modbus PLC: a rodbus server on a free loopback port with a small pump
//! station behind it. Temperatures follow their setpoint, pressure and flow follow the
//! pumps (started by writing their coils), an energy counter counts, a float sits in
//! CDAB order, and one configured tag points at an address the PLC does not have, so
//! that the bad-address cache shows in the demo.

use std::time::Duration;

use tokio::net::TcpListener;

use crate::drivers::modbus::plc::{Bank, BankHandle, serve};

/// The demo's Modbus device and its tags; `{port}` is the PLC's port.
pub const PLC_DEVICE: &str = r#"
[[tenants.devices]]
name = "station-plc"
unit = "pump-station"
poll_ms = 500
driver = { protocol = "modbus", host = "127.0.0.1", port = {port}, unit_id = 1, timeout_ms = 1000, poll_groups = [{ name = "slow", period_ms = 5000 }], bad_address_grace_ms = 60000 }

[[tenants.devices.tags]]
name = "supply-temp"
address = "ir:0"
data_type = "u16"
scale = 0.1
eng_unit = "°C"

[[tenants.devices.tags]]
name = "return-temp"
address = "30002"
data_type = "i16"
scale = 0.1
eng_unit = "°C"

[[tenants.devices.tags]]
name = "discharge-pressure"
address = "ir:2"
data_type = "u16"
scale = 0.01
eng_unit = "bar"
deadband = 0.02

[[tenants.devices.tags]]
name = "flow"
address = "ir:3;order=CDAB"
data_type = "f32"
eng_unit = "m³/h"

[[tenants.devices.tags]]
name = "energy"
address = "ir:5;group=slow"
data_type = "u32"
eng_unit = "kWh"

[[tenants.devices.tags]]
name = "pump-1-running"
address = "di:0"
data_type = "bool"

[[tenants.devices.tags]]
name = "pump-2-running"
address = "di:1"
data_type = "bool"

[[tenants.devices.tags]]
name = "low-level-alarm"
address = "di:2"
data_type = "bool"

[[tenants.devices.tags]]
name = "supply-setpoint"
address = "hr:0"
data_type = "u16"
scale = 0.1
eng_unit = "°C"
writable = true

[[tenants.devices.tags]]
name = "pump-speed"
address = "40002"
data_type = "u16"
eng_unit = "%"
writable = true

[[tenants.devices.tags]]
name = "pressure-setpoint"
address = "hr:2;confirm"
data_type = "f32"
eng_unit = "bar"
writable = true

[[tenants.devices.tags]]
name = "auto-mode"
address = "hr:4.0"
data_type = "bool"
writable = true

[[tenants.devices.tags]]
name = "plc-name"
address = "hr:10;len=8;group=slow"
data_type = "string"

[[tenants.devices.tags]]
name = "pump-1-start"
address = "coil:0"
data_type = "bool"
writable = true

[[tenants.devices.tags]]
name = "pump-2-start"
address = "coil:1"
data_type = "bool"
writable = true

[[tenants.devices.tags]]
name = "unwired-sensor"
address = "ir:40"
data_type = "u16"
"#;

/// The register map of the station at rest.
fn station() -> Bank {
    let mut b = Bank::default();
    b.set_input(0, &[720, 565, 50]);
    b.set_input(3, &f32_cdab(0.0));
    b.set_input(5, &[0, 0]);
    for a in 0..3 {
        b.discrete_inputs.insert(a, false);
    }
    b.set_holding(0, &[750, 60]);
    b.set_holding(2, &f32_abcd(4.0));
    b.set_holding(4, &[1]);
    let name: Vec<u16> = b"TC-DEMO-PLC\0\0\0\0\0"
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    b.set_holding(10, &name);
    b.coils.insert(0, false);
    b.coils.insert(1, false);
    b
}

fn f32_abcd(v: f32) -> [u16; 2] {
    let bits = v.to_bits();
    [(bits >> 16) as u16, bits as u16]
}

fn f32_cdab(v: f32) -> [u16; 2] {
    let [hi, lo] = f32_abcd(v);
    [lo, hi]
}

fn f32_of(regs: Option<Vec<u16>>) -> f32 {
    match regs.as_deref() {
        Some([hi, lo]) => f32::from_bits(u32::from(*hi) << 16 | u32::from(*lo)),
        _ => 0.0,
    }
}

/// One step of the station's physics, `dt` seconds long.
fn step(b: &mut Bank, t: f64, dt: f64) {
    let reg = |b: &Bank, a: u16| b.holding_registers.get(&a).copied().unwrap_or(0);
    let setpoint = f64::from(reg(b, 0)) / 10.0;
    let speed = f64::from(reg(b, 1).min(100)) / 100.0;
    let pressure_sp = f64::from(f32_of(b.holding(2, 2)));
    let pumps: Vec<bool> = (0..2)
        .map(|i| b.coils.get(&i).copied().unwrap_or(false))
        .collect();
    for (i, on) in pumps.iter().enumerate() {
        b.discrete_inputs.insert(i as u16, *on);
    }
    let running = pumps.iter().filter(|p| **p).count() as f64;
    let temp = |b: &Bank, a| f64::from(b.input_registers.get(&a).copied().unwrap_or(0)) / 10.0;
    let supply = temp(b, 0);
    let supply = supply + (setpoint - supply) * 0.05 + 0.3 * (t / 7.0).sin();
    let ret = supply - 10.0 - 5.0 * speed * running.min(1.0) + 0.2 * (t / 5.0).cos();
    let target_p = if running > 0.0 {
        pressure_sp * (0.6 + 0.4 * speed) * (0.9 + 0.1 * running)
    } else {
        0.4
    };
    let pressure = f64::from(b.input_registers.get(&2).copied().unwrap_or(0)) / 100.0;
    let pressure = pressure + (target_p - pressure) * 0.2;
    let flow = if running > 0.0 {
        40.0 * speed * running + 1.5 * (t / 3.0).sin()
    } else {
        0.0
    };
    let word = |a| u32::from(b.input_registers.get(&a).copied().unwrap_or(0));
    let energy = word(5) << 16 | word(6);
    let energy = energy.wrapping_add((flow * dt * 0.5).round() as u32);
    b.set_input(
        0,
        &[
            (supply.clamp(0.0, 6553.5) * 10.0) as u16,
            (ret * 10.0).round() as i16 as u16,
            (pressure.clamp(0.0, 655.35) * 100.0) as u16,
        ],
    );
    b.set_input(3, &f32_cdab(flow as f32));
    b.set_input(5, &[(energy >> 16) as u16, energy as u16]);
    // The tank runs low when both pumps run for a while.
    b.discrete_inputs
        .insert(2, running >= 2.0 && (t / 60.0).sin() > 0.5);
}

/// Starts the PLC on a free loopback port and its simulation; returns the port and the
/// server handle (the PLC runs while it is held).
pub async fn start() -> std::io::Result<(u16, rodbus::server::ServerHandle)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let bank = BankHandle::new(station());
    let handle = serve(listener, &[(1, bank.clone())]);
    tokio::spawn(async move {
        let dt = Duration::from_millis(250);
        let mut tick = tokio::time::interval(dt);
        let start = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let t = start.elapsed().as_secs_f64();
            step(&mut bank.lock(), t, dt.as_secs_f64());
        }
    });
    Ok((port, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pumps_raise_pressure_and_flow_and_the_float_is_cdab() {
        let mut b = station();
        for i in 0..40 {
            step(&mut b, f64::from(i) * 0.25, 0.25);
        }
        let at_rest = b.input_registers[&2];
        b.coils.insert(0, true);
        for i in 40..80 {
            step(&mut b, f64::from(i) * 0.25, 0.25);
        }
        assert!(b.discrete_inputs[&0], "pump 1 runs");
        assert!(b.input_registers[&2] > at_rest, "pressure rises");
        let flow = f32_of(Some(vec![b.input_registers[&4], b.input_registers[&3]]));
        assert!(flow > 10.0, "flow {flow}");
        let energy = u32::from(b.input_registers[&5]) << 16 | u32::from(b.input_registers[&6]);
        assert!(energy > 0);
    }
}
