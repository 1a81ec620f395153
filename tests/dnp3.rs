//! The DNP3 driver end to end: the `dnp3` crate's outstation on an ephemeral port
//! (through [`thermacore::drivers::dnp3::outstation`]) playing a substation RTU, and
//! the real ThermaCore server in front, seen through GraphQL. Fixtures here; tests in
//! `tests/dnp3/`. Needs the cargo feature `dnp3` (on by default).
#![cfg(feature = "dnp3")]

#[path = "dnp3/commands.rs"]
mod commands;
mod common;
#[path = "dnp3/faults.rs"]
mod faults;
#[path = "dnp3/polls.rs"]
mod polls;
#[path = "dnp3/tls.rs"]
mod tls;

pub use common::site::{Site, WAIT, error_code, quality, start, tag, value};
use thermacore::drivers::dnp3::PointKind;
use thermacore::drivers::dnp3::outstation::{OutstationSpec, PointSpec, RunningOutstation};

/// DNP3 ONLINE flag (bit 0).
pub const ONLINE: u8 = 0x01;

/// A DNP3 device on `endpoint`; `driver` adds `, key = value` settings.
pub fn device(name: &str, endpoint: &str, driver: &str, tags: &[String]) -> String {
    format!(
        "[[tenants.devices]]\nname = \"{name}\"\ndriver = {{ protocol = \"dnp3\", endpoint = \"{endpoint}\", response_timeout_ms = 1000, reconnect_min_ms = 100, reconnect_max_ms = 400, reconnect_delay_ms = 100{driver} }}\n{}",
        tags.concat()
    )
}

/// One point of each type, events in class 1 (analogs with a deadband of 0.5), and
/// an analog input sent only as a 32-bit integer.
pub fn feeder_points() -> Vec<PointSpec> {
    use thermacore::drivers::dnp3::outstation::Encoding;
    vec![
        PointSpec::new(PointKind::BinaryInput, 0, 1, 1.0),
        PointSpec::new(PointKind::DoubleBit, 0, 1, 2.0),
        PointSpec::new(PointKind::AnalogInput, 0, 1, 230.5).deadband(0.5),
        PointSpec::new(PointKind::AnalogInput, 1, 2, 1200.0).encoding(Encoding::I32),
        PointSpec::new(PointKind::Counter, 0, 3, 42.0),
        PointSpec::new(PointKind::FrozenCounter, 0, 0, 40.0),
        PointSpec::new(PointKind::BinaryOutput, 0, 1, 0.0),
        PointSpec::new(PointKind::BinaryOutput, 1, 1, 0.0),
        PointSpec::new(PointKind::AnalogOutput, 0, 1, 11.0),
        PointSpec::new(PointKind::AnalogOutput, 1, 1, 0.0),
    ]
}

/// Tags reading every point of [`feeder_points`].
pub fn feeder_tags() -> Vec<String> {
    vec![
        tag("alarm", "bi:0", "bool", ""),
        tag("breaker", "dbbi:0", "string", ""),
        tag("breaker-code", "dbbi:0", "u16", ""),
        tag("voltage", "ai:0", "f64", "eng_unit = \"V\""),
        tag("current", "ai:1", "f64", "scale = 0.01"),
        tag("energy", "counter:0", "u32", ""),
        tag("energy-frozen", "frozen_counter:0", "u32", ""),
        tag("switch", "bo:0", "bool", "writable = true"),
        tag(
            "breaker-cmd",
            "bo:1|op=trip_close;critical",
            "bool",
            "writable = true",
        ),
        tag("setpoint", "ao:0", "f32", "writable = true"),
        tag("tap", "ao:1|cmd=i16", "i16", "writable = true"),
    ]
}

pub async fn outstation(points: Vec<PointSpec>) -> RunningOutstation {
    outstation_with(points, |_| {}).await
}

pub async fn outstation_with(
    points: Vec<PointSpec>,
    f: impl FnOnce(&mut OutstationSpec),
) -> RunningOutstation {
    let mut spec = OutstationSpec::new(points);
    f(&mut spec);
    RunningOutstation::start(spec)
        .await
        .expect("outstation starts")
}

/// The feeder outstation and a site with one device `rtu` polling it.
pub async fn feeder(tenant: &str, driver: &str) -> (RunningOutstation, Site) {
    let o = outstation(feeder_points()).await;
    let site = start(
        tenant,
        &[device("rtu", &o.endpoint(), driver, &feeder_tags())],
    )
    .await;
    (o, site)
}
