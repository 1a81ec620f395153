//! The registration table: [`DriverConfig`], tagged by `protocol`, with one line per
//! protocol in each of its methods, and [`build`], which turns it into a running
//! driver. Adding a protocol touches its folder and these lines.

use serde::{Deserialize, Serialize};

#[cfg(feature = "dnp3")]
use super::dnp3;
use super::{Driver, modbus, mqtt, opcua, sim};
use crate::domain::{DataType, OpenedSecurity, TagSpec};

/// The protocols this build has (Modbus and DNP3 are cargo features).
pub const PROTOCOLS: &[&str] = &[
    "sim",
    #[cfg(feature = "modbus")]
    "modbus",
    "mqtt",
    "opcua",
    #[cfg(feature = "dnp3")]
    "dnp3",
];

/// The protocol part of a device's configuration, tagged by `protocol`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum DriverConfig {
    /// Deterministic signal generators with fault injection.
    Sim(sim::SimConfig),
    /// Modbus TCP (rodbus; cargo feature `modbus`).
    #[cfg(feature = "modbus")]
    Modbus(modbus::ModbusConfig),
    /// MQTT (rumqttc): JSON, plain and Sparkplug B payloads.
    Mqtt(Box<mqtt::MqttConfig>),
    /// OPC UA (async-opcua): subscriptions, bulk reads, secure sessions.
    Opcua(Box<opcua::OpcuaConfig>),
    /// DNP3 over TCP or TLS (dnp3; cargo feature `dnp3`).
    #[cfg(feature = "dnp3")]
    Dnp3(Box<dnp3::Dnp3Config>),
}

impl DriverConfig {
    /// Reads a driver section given as JSON (an API input), naming the key at fault
    /// (`port`, `poll_groups[0].period_ms`; empty for the section as a whole), which
    /// serde's reading of the tagged enum cannot.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, (String, String)> {
        let Some(map) = value.as_object() else {
            return Err((String::new(), "must be an object with a `protocol`".into()));
        };
        let mut rest = map.clone();
        let protocol = match rest.remove("protocol") {
            Some(serde_json::Value::String(p)) => p,
            Some(_) => return Err(("protocol".into(), "must be a string".into())),
            None => {
                return Err((
                    "protocol".into(),
                    "missing: sim, modbus, mqtt, opcua or dnp3".into(),
                ));
            }
        };
        Ok(match protocol.as_str() {
            "sim" => DriverConfig::Sim(crate::config::json_section(&serde_json::Value::Object(
                rest,
            ))?),
            #[cfg(feature = "modbus")]
            "modbus" => DriverConfig::Modbus(crate::config::json_section(
                &serde_json::Value::Object(rest),
            )?),
            "mqtt" => DriverConfig::Mqtt(Box::new(crate::config::json_section(
                &serde_json::Value::Object(rest),
            )?)),
            "opcua" => DriverConfig::Opcua(Box::new(crate::config::json_section(
                &serde_json::Value::Object(rest),
            )?)),
            #[cfg(feature = "dnp3")]
            "dnp3" => DriverConfig::Dnp3(Box::new(crate::config::json_section(
                &serde_json::Value::Object(rest),
            )?)),
            other => {
                return Err((
                    "protocol".into(),
                    format!(
                        "unknown protocol `{other}` (this server has {})",
                        PROTOCOLS.join(", ")
                    ),
                ));
            }
        })
    }

    pub fn protocol(&self) -> &'static str {
        match self {
            DriverConfig::Sim(_) => "sim",
            #[cfg(feature = "modbus")]
            DriverConfig::Modbus(_) => "modbus",
            DriverConfig::Mqtt(_) => "mqtt",
            DriverConfig::Opcua(_) => "opcua",
            #[cfg(feature = "dnp3")]
            DriverConfig::Dnp3(_) => "dnp3",
        }
    }

    /// Checks the protocol settings on their own (config validation).
    pub fn check(&self) -> Result<(), String> {
        match self {
            DriverConfig::Sim(_) => Ok(()),
            #[cfg(feature = "modbus")]
            DriverConfig::Modbus(c) => c.check(),
            DriverConfig::Mqtt(c) => c.check(),
            DriverConfig::Opcua(c) => c.check(),
            #[cfg(feature = "dnp3")]
            DriverConfig::Dnp3(c) => c.check(),
        }
    }

    /// The `host:port` the driver connects to first (a connection test reaches it over
    /// TCP before the protocol's session); None for a simulated device.
    pub fn endpoint(&self) -> Option<String> {
        match self {
            DriverConfig::Sim(_) => None,
            #[cfg(feature = "modbus")]
            DriverConfig::Modbus(c) => Some(format!("{}:{}", c.host, c.port)),
            DriverConfig::Mqtt(c) => Some(format!("{}:{}", c.host, c.port)),
            DriverConfig::Opcua(c) => {
                let rest = c.endpoint.strip_prefix("opc.tcp://")?;
                let authority = rest.split('/').next()?;
                Some(
                    if authority
                        .rsplit_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                    {
                        authority.to_string()
                    } else {
                        format!("{authority}:4840")
                    },
                )
            }
            #[cfg(feature = "dnp3")]
            DriverConfig::Dnp3(c) => Some(c.endpoint.clone()),
        }
    }

    /// Whether a running driver takes a changed set of tags without reconnecting
    /// ([`Driver::plan`] again on the same link): the device actor is then re-planned
    /// in place, other protocols restart it.
    pub fn replans_live(&self) -> bool {
        match self {
            DriverConfig::Sim(_) => true,
            #[cfg(feature = "modbus")]
            DriverConfig::Modbus(_) => true,
            DriverConfig::Mqtt(_) | DriverConfig::Opcua(_) => false,
            #[cfg(feature = "dnp3")]
            DriverConfig::Dnp3(_) => false,
        }
    }

    /// Tags the driver declares by itself (the sim's `generated_tags`), added to the
    /// device's declared tags when the configuration is applied.
    pub fn generated_tags(&self) -> Vec<TagSpec> {
        match self {
            DriverConfig::Sim(c) => c.generated_tag_specs(),
            #[cfg(feature = "modbus")]
            DriverConfig::Modbus(_) => Vec::new(),
            DriverConfig::Mqtt(_) | DriverConfig::Opcua(_) => Vec::new(),
            #[cfg(feature = "dnp3")]
            DriverConfig::Dnp3(_) => Vec::new(),
        }
    }

    /// Checks a tag address for a tag of `data_type` without connecting (config
    /// validation). `writable` tags must sit where the protocol can write.
    pub fn check_tag(
        &self,
        address: &str,
        data_type: DataType,
        writable: bool,
    ) -> Result<(), String> {
        match self {
            DriverConfig::Sim(_) => sim::Signal::parse(address).map(|_| ()),
            #[cfg(feature = "modbus")]
            DriverConfig::Modbus(c) => c.check_tag(address, data_type, writable),
            DriverConfig::Mqtt(c) => c.check_tag(address, data_type, writable),
            DriverConfig::Opcua(c) => c.check_tag(address, data_type, writable),
            #[cfg(feature = "dnp3")]
            DriverConfig::Dnp3(c) => c.check_tag(address, data_type, writable),
        }
    }

    /// The address as the driver understands it, in its canonical form (the Modbus
    /// driver shows the 0-based address and the 1-based notation: `hr:100 (40101)`).
    pub fn describe_address(&self, address: &str, data_type: DataType) -> Option<String> {
        match self {
            DriverConfig::Sim(_) => None,
            #[cfg(feature = "modbus")]
            DriverConfig::Modbus(_) => modbus::Address::parse(address, data_type)
                .ok()
                .map(|a| a.to_string()),
            DriverConfig::Mqtt(_) => None,
            DriverConfig::Opcua(_) => opcua::OpcuaAddress::parse(address)
                .ok()
                .map(|a| a.to_string()),
            #[cfg(feature = "dnp3")]
            DriverConfig::Dnp3(_) => dnp3::PointAddress::parse(address)
                .ok()
                .map(|a| a.to_string()),
        }
    }
}

/// The registration table: one line per protocol. `security` carries the device's
/// TLS settings and credentials, secrets opened (the sim has no link to secure).
pub fn build(config: &DriverConfig, security: OpenedSecurity) -> Box<dyn Driver> {
    match config {
        DriverConfig::Sim(c) => {
            // A simulated device has no link to secure.
            drop(security);
            Box::new(sim::SimDriver::new(c.clone()))
        }
        #[cfg(feature = "modbus")]
        DriverConfig::Modbus(c) => Box::new(modbus::ModbusDriver::new(c.clone(), security)),
        DriverConfig::Mqtt(c) => Box::new(mqtt::MqttDriver::new((**c).clone(), security)),
        DriverConfig::Opcua(c) => Box::new(opcua::OpcuaDriver::new((**c).clone(), security)),
        #[cfg(feature = "dnp3")]
        DriverConfig::Dnp3(c) => Box::new(dnp3::Dnp3Driver::new((**c).clone(), security)),
    }
}
