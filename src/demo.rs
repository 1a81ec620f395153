//! `thermacore demo`: a small plant of simulated devices on SQLite, with users admin,
//! operator and viewer, ready to explore in GraphiQL. With the `modbus` feature the
//! plant includes a Modbus PLC ([`plc`]) served on a free loopback port; [`mqtt`] has
//! its MQTT peers (a JSON gateway and a Sparkplug B edge node); [`opcua`] an OPC UA
//! server with a pump station; with the `dnp3` feature, [`dnp3`] a DNP3 outstation
//! playing a feeder's RTU.

#[cfg(feature = "dnp3")]
pub mod dnp3;
pub mod mqtt;
pub mod opcua;
#[cfg(feature = "modbus")]
pub mod plc;

use std::path::Path;

use crate::api::auth::hash_password;
use crate::api::permissions::SYSTEM_TENANT;
use crate::config::{Config, parse_str};
use crate::domain::Role;
use crate::storage::{self, Store};

/// The demo plant. One device (`flaky-rtu`) fails on purpose every 20 polls so that
/// supervision is visible; another loses its link now and then (and raises its
/// communication-loss alarm). Limit alarms on the temperatures trip now and then.
pub const DEMO_PLANT: &str = r#"
[[tenants]]
name = "demo"

[[tenants.units]]
name = "boiler-house"
location = { lat = 45.0703, lon = 7.6869 }
description = "Gas boilers feeding the district heating loop"

[[tenants.units]]
name = "pump-station"
location = { lat = 45.0621, lon = 7.6785 }
description = "Circulation pumps of the heating loop"

[[tenants.units]]
name = "borehole-3"
location = { lat = 45.1012, lon = 7.7104 }
description = "Water supply borehole"

[[tenants.devices]]
name = "boiler-1"
unit = "boiler-house"
poll_ms = 1000
driver = { protocol = "sim", seed = 11 }

[[tenants.devices.tags]]
name = "supply-temp"
address = "sine:period=120,amplitude=6,offset=78"
eng_unit = "°C"
alarms = [
  { name = "supply-hot", type = "high", setpoint = 83, deadband = 1, on_delay_ms = 2000, severity = "high" },
  { name = "supply-very-hot", type = "high_high", setpoint = 95, severity = "critical" },
]

[[tenants.devices.tags]]
name = "return-temp"
address = "sine:period=150,amplitude=4,offset=55"
eng_unit = "°C"
alarms = [{ name = "return-cold", type = "low", setpoint = 52, deadband = 0.5, severity = "medium" }]

[[tenants.devices.tags]]
name = "burner-on"
address = "square:period=40"
data_type = "bool"

[[tenants.devices.tags]]
name = "setpoint"
address = "sine:period=600,amplitude=0,offset=80"
eng_unit = "°C"
writable = true

[[tenants.devices]]
name = "pump-1"
unit = "pump-station"
poll_ms = 500
driver = { protocol = "sim", seed = 22, disconnect_every_polls = 120, disconnect_for_polls = 4 }

[[tenants.devices.tags]]
name = "discharge-pressure"
address = "walk:step=0.05,min=2,max=6"
eng_unit = "bar"
deadband = 0.02
alarms = [
  { name = "pump-1-link", type = "comm_loss", severity = "medium", message = "pump-1 not answering" },
  { name = "pressure-high", type = "high", setpoint = 5.5, deadband = 0.2, on_delay_ms = 1000, severity = "low" },
]

[[tenants.devices.tags]]
name = "flow"
address = "ramp:period=300,min=20,max=80"
eng_unit = "m³/h"

[[tenants.devices.tags]]
name = "running"
address = "square:period=90"
data_type = "bool"

[[tenants.devices]]
name = "borehole-3-level"
unit = "borehole-3"
poll_ms = 2000
driver = { protocol = "sim", seed = 33 }

[[tenants.devices.tags]]
name = "water-level"
address = "walk:step=0.02,min=10,max=14"
eng_unit = "m"
alarms = [
  { name = "level-low", type = "low", setpoint = 10.5, deadband = 0.1, severity = "medium" },
  { name = "level-stale", type = "stale", after_ms = 10000, severity = "low" },
]

[[tenants.devices.tags]]
name = "pump-starts"
address = "counter:step=1"
data_type = "i64"

[[tenants.devices]]
name = "flaky-rtu"
unit = "pump-station"
poll_ms = 500
driver = { protocol = "sim", seed = 44, panic_every_polls = 20 }

[[tenants.devices.tags]]
name = "vibration"
address = "walk:step=0.1,min=0,max=5"
eng_unit = "mm/s"
alarms = [{ name = "vibration-high", type = "high", setpoint = 4.5, deadband = 0.3, severity = "high" }]
"#;

/// Where the demo's device peers listen.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    /// The Modbus PLC at `127.0.0.1:plc_port` (feature `modbus`).
    pub plc_port: u16,
    /// The embedded MQTT broker at `127.0.0.1:mqtt_port`.
    pub mqtt_port: u16,
    /// The OPC UA pump station's endpoint URL.
    pub opcua_endpoint: String,
    /// The DNP3 feeder outstation's `host:port` (feature `dnp3`).
    pub dnp3_endpoint: String,
}

/// The demo's configuration: the plant above on a SQLite file in `data_dir`, with the
/// Modbus PLC when the `modbus` feature is on, the MQTT gateway and edge node on the
/// embedded broker, the OPC UA pump station (its PKI under `data_dir`), and the DNP3
/// feeder when the `dnp3` feature is on, at the addresses in `peers`.
pub fn demo_config(data_dir: &Path, peers: &Peers) -> Config {
    let mqtt = mqtt::MQTT_DEVICES.replace("{port}", &peers.mqtt_port.to_string());
    let opcua_devices = opcua::opcua_devices(
        &peers.opcua_endpoint,
        &opcua::server_certificate_path(data_dir),
        &opcua::client_pki_dir(data_dir),
    );
    #[cfg(feature = "modbus")]
    let plant = format!(
        "{DEMO_PLANT}{}{mqtt}",
        plc::PLC_DEVICE.replace("{port}", &peers.plc_port.to_string())
    );
    #[cfg(not(feature = "modbus"))]
    let plant = format!("{DEMO_PLANT}{mqtt}");
    #[cfg(feature = "dnp3")]
    let plant = format!("{plant}{}", dnp3::dnp3_devices(&peers.dnp3_endpoint));
    let plant = format!("{plant}{opcua_devices}");
    // The plant text is part of the binary and covered by a test; a failure here is a bug.
    let mut config = parse_str(&plant, "demo plant").expect("the built-in demo plant is valid");
    config.storage.url = format!("sqlite:{}", data_dir.join("thermacore-demo.db").display());
    config
}

/// The demo users and their passwords: admin, operator and viewer of `tenant`, and
/// the platform administrator `platform` of the `system` tenant (who manages
/// tenants). `THERMACORE_DEMO_PASSWORD` for all, or a random one each (returned so the
/// caller can print them once). They are flagged as development credentials, which
/// production mode refuses to start with.
pub async fn seed_users(
    store: &dyn Store,
    tenant: &str,
    fixed: Option<&str>,
) -> Result<Vec<(String, String, String)>, storage::Error> {
    let demo = store.upsert_tenant(tenant).await?;
    let system = store.upsert_tenant(SYSTEM_TENANT).await?;
    let mut out = Vec::new();
    let users = [
        (&demo, Role::Admin.as_str(), Role::Admin),
        (&demo, Role::Operator.as_str(), Role::Operator),
        (&demo, Role::Viewer.as_str(), Role::Viewer),
        (&system, "platform", Role::Admin),
    ];
    for (tenant, username, role) in users {
        let password = fixed.map_or_else(random_password, str::to_string);
        let hash = hash_password(&password).map_err(|e| storage::Error::Corrupt(e.to_string()))?;
        match store.create_user(tenant.id, username, &hash, role).await {
            Ok(_) => {}
            Err(storage::Error::Conflict(_)) => {
                store
                    .set_user_password(tenant.id, username, &hash, role)
                    .await?;
            }
            Err(e) => return Err(e),
        }
        store.mark_dev_credential(tenant.id, username).await?;
        out.push((tenant.name.clone(), username.to_string(), password));
    }
    Ok(out)
}

pub fn random_password() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_plant_is_valid() {
        let peers = super::Peers {
            plc_port: 5020,
            mqtt_port: 18830,
            opcua_endpoint: "opc.tcp://127.0.0.1:4840/".into(),
            dnp3_endpoint: "127.0.0.1:20001".into(),
        };
        let c = super::demo_config(std::path::Path::new("/tmp"), &peers);
        assert_eq!(c.tenants.len(), 1);
        #[cfg(feature = "modbus")]
        assert!(
            c.tenants[0]
                .devices
                .iter()
                .any(|d| d.driver.protocol() == "modbus")
        );
        let mqtt: Vec<_> = c.tenants[0]
            .devices
            .iter()
            .filter(|d| d.driver.protocol() == "mqtt")
            .collect();
        assert_eq!(
            mqtt.len(),
            2,
            "the JSON gateway and the Sparkplug edge node"
        );
        #[cfg(feature = "dnp3")]
        assert!(
            c.tenants[0]
                .devices
                .iter()
                .any(|d| d.driver.protocol() == "dnp3")
        );
        assert!(c.storage.url.ends_with("thermacore-demo.db"));
    }
}
