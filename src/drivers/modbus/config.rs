//! Configuration of a Modbus TCP device (`protocol = "modbus"`), with the defaults a
//! conformant device expects and the limits the protocol sets.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::address::{Address, TagOptions};
use super::plan::Limits;
use crate::domain::DataType;

/// A poll group: tags read together at their own period (`group=NAME` in the address).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollGroupConfig {
    pub name: String,
    pub period_ms: u64,
}

/// `protocol = "modbus"`: one unit id on one Modbus TCP server or gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    /// Host name or IP address of the server (or of the gateway in front of it).
    pub host: String,
    /// 502 for Modbus TCP; Modbus/TCP Security (TLS) uses 802 by convention.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The unit id (slave id) addressed; 0 and 255 are valid (many TCP devices
    /// answer on 255, gateways route by the id).
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    /// How long one request waits for its answer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most registers one read request asks for (Modbus allows 125; lower it for
    /// devices that refuse or truncate longer reads).
    #[serde(default = "default_max_registers")]
    pub max_registers: u16,
    /// Most coils or discrete inputs one read request asks for (up to 2000).
    #[serde(default = "default_max_bits")]
    pub max_bits: u16,
    /// Largest run of unused addresses a request reads across to join two tags.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// Poll groups with their own periods; tags without `group=` are read every
    /// `poll_ms` of the device.
    #[serde(default)]
    pub poll_groups: Vec<PollGroupConfig>,
    /// Requests in flight at once to one host, over every channel to it. The first
    /// device that opens a channel to the host sets it.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_per_host: u16,
    /// A channel that carried no request for this long is closed, and opened again by
    /// the next request (0: never closed while a device uses it).
    #[serde(default = "default_idle_close_secs")]
    pub idle_close_secs: u64,
    /// rodbus's reconnect strategy: the first delay after a failed connect, doubled
    /// after each further failure up to `reconnect_max_ms`.
    #[serde(default = "crate::drivers::defaults::reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    #[serde(default = "crate::drivers::defaults::reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Consecutive response timeouts after which the connection is dropped and opened
    /// again (0: never).
    #[serde(default = "default_reconnect_after_timeouts")]
    pub reconnect_after_timeouts: u32,
    /// A tag whose address fails this many polls in a row goes into the bad-address
    /// cache: skipped, logged once, retried after the grace period.
    #[serde(default = "default_bad_address_after")]
    pub bad_address_after: u32,
    #[serde(default = "default_bad_address_grace_ms")]
    pub bad_address_grace_ms: u64,
    /// Write with FC15/FC16 even for one coil or register (for devices that only
    /// implement the multiple-write functions).
    #[serde(default)]
    pub write_multiple: bool,
    /// The name the server's TLS certificate must carry (default: `host`).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// A connection of its own instead of the one shared with the other devices
    /// behind the same gateway (requests on one connection go one at a time, so a
    /// unit that does not answer holds up its neighbours for its timeout).
    #[serde(default)]
    pub own_connection: bool,
}

fn default_port() -> u16 {
    502
}
fn default_unit_id() -> u8 {
    1
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_max_registers() -> u16 {
    125
}
fn default_max_bits() -> u16 {
    2000
}
fn default_max_gap() -> u16 {
    8
}
fn default_max_concurrent() -> u16 {
    4
}
fn default_idle_close_secs() -> u64 {
    120
}
fn default_reconnect_after_timeouts() -> u32 {
    3
}
fn default_bad_address_after() -> u32 {
    3
}
fn default_bad_address_grace_ms() -> u64 {
    300_000
}

impl ModbusConfig {
    /// A device at `host:port` with every other setting at its default.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ModbusConfig {
            host: host.into(),
            port,
            unit_id: default_unit_id(),
            timeout_ms: default_timeout_ms(),
            max_registers: default_max_registers(),
            max_bits: default_max_bits(),
            max_gap: default_max_gap(),
            poll_groups: Vec::new(),
            max_concurrent_per_host: default_max_concurrent(),
            idle_close_secs: default_idle_close_secs(),
            reconnect_min_ms: crate::drivers::defaults::reconnect_min_ms(),
            reconnect_max_ms: crate::drivers::defaults::reconnect_max_ms(),
            reconnect_after_timeouts: default_reconnect_after_timeouts(),
            bad_address_after: default_bad_address_after(),
            bad_address_grace_ms: default_bad_address_grace_ms(),
            write_multiple: false,
            tls_server_name: None,
            own_connection: false,
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_registers: self.max_registers,
            max_bits: self.max_bits,
            max_gap: self.max_gap,
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The settings on their own: limits within the protocol's, groups named once.
    pub fn check(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("host must not be empty".into());
        }
        if self.port == 0 {
            return Err("port must be within 1..=65535".into());
        }
        if !(1..=125).contains(&self.max_registers) {
            return Err(format!(
                "max_registers {} must be within 1..=125",
                self.max_registers
            ));
        }
        if !(1..=2000).contains(&self.max_bits) {
            return Err(format!(
                "max_bits {} must be within 1..=2000",
                self.max_bits
            ));
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return Err(format!(
                "timeout_ms {} must be within 1..=600000",
                self.timeout_ms
            ));
        }
        if self.max_concurrent_per_host == 0 {
            return Err("max_concurrent_per_host must be at least 1".into());
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            return Err(format!(
                "reconnect_min_ms {} must be at least 1 and at most reconnect_max_ms {}",
                self.reconnect_min_ms, self.reconnect_max_ms
            ));
        }
        if self.bad_address_after == 0 {
            return Err("bad_address_after must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for g in &self.poll_groups {
            if g.name.trim().is_empty() || g.name == "default" {
                return Err(format!(
                    "poll group name `{}` is empty or reserved (`default` is the device's poll_ms)",
                    g.name
                ));
            }
            if !seen.insert(g.name.as_str()) {
                return Err(format!("poll group `{}` is declared twice", g.name));
            }
            if g.period_ms == 0 {
                return Err(format!("poll group `{}`: period_ms must be > 0", g.name));
            }
        }
        Ok(())
    }

    /// The index of a tag's poll group: 0 is the device's default group, then the
    /// declared groups in order.
    pub fn group_index(&self, options: &TagOptions) -> Result<usize, String> {
        match &options.group {
            None => Ok(0),
            Some(name) => self
                .poll_groups
                .iter()
                .position(|g| &g.name == name)
                .map(|i| i + 1)
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        self.poll_groups.iter().map(|g| g.name.as_str()).collect();
                    format!(
                        "no poll group `{name}` on this device (declared: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )
                }),
        }
    }

    /// Checks one tag: its address parses for its type, its group exists, it fits one
    /// request, and a writable tag sits in a writable table.
    pub fn check_tag(
        &self,
        address: &str,
        data_type: DataType,
        writable: bool,
    ) -> Result<(), String> {
        let (addr, options) = Address::parse_tag(address, data_type)?;
        self.group_index(&options)?;
        let max = if addr.table.is_bits() {
            self.max_bits
        } else {
            self.max_registers
        };
        if addr.count > max {
            return Err(format!(
                "{addr} takes {} registers, more than the device's max_registers {max}",
                addr.count
            ));
        }
        if writable && !addr.table.is_writable() {
            return Err(format!(
                "{addr} is read-only (discrete inputs and input registers cannot be written)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_outside_the_protocol_are_refused() {
        let ok = ModbusConfig::new("127.0.0.1", 502);
        assert!(ok.check().is_ok());
        type Change = Box<dyn Fn(&mut ModbusConfig)>;
        let cases: [(Change, &str); 6] = [
            (Box::new(|c| c.max_registers = 126), "1..=125"),
            (Box::new(|c| c.max_bits = 0), "1..=2000"),
            (Box::new(|c| c.host = " ".into()), "host"),
            (
                Box::new(|c| c.reconnect_min_ms = 60_000),
                "reconnect_min_ms",
            ),
            (
                Box::new(|c| {
                    c.poll_groups = vec![
                        PollGroupConfig {
                            name: "slow".into(),
                            period_ms: 10,
                        },
                        PollGroupConfig {
                            name: "slow".into(),
                            period_ms: 20,
                        },
                    ]
                }),
                "twice",
            ),
            (
                Box::new(|c| {
                    c.poll_groups = vec![PollGroupConfig {
                        name: "default".into(),
                        period_ms: 10,
                    }]
                }),
                "reserved",
            ),
        ];
        for (change, why) in cases {
            let mut c = ok.clone();
            change(&mut c);
            let e = c.check().expect_err(why);
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn the_example_config_documents_every_key() {
        let example = include_str!("../../../thermacore.example.toml");
        let line = example
            .lines()
            .find(|l| l.starts_with("driver = { protocol = \"modbus\""))
            .expect("a modbus device in thermacore.example.toml");
        let mut c = ModbusConfig::new("h", 502);
        c.tls_server_name = Some("h".into());
        let keys = toml::Table::try_from(&c).expect("serializes");
        for key in keys.keys() {
            let documented = example.contains(&format!("#   {key}"))
                || example.contains(&format!(" {key},"))
                || example.contains(&format!(", {key}"));
            assert!(
                documented,
                "{key} is not described in thermacore.example.toml"
            );
            if key != "tls_server_name" {
                assert!(
                    line.contains(&format!("{key} =")),
                    "{key} missing from {line}"
                );
            }
        }
    }

    #[test]
    fn tags_are_checked_against_groups_limits_and_tables() {
        let mut c = ModbusConfig::new("plc", 502);
        c.poll_groups.push(PollGroupConfig {
            name: "slow".into(),
            period_ms: 5000,
        });
        c.max_registers = 10;
        assert!(c.check_tag("hr:0;group=slow", DataType::U16, true).is_ok());
        let e = c
            .check_tag("hr:0;group=fast", DataType::U16, false)
            .expect_err("group");
        assert!(e.contains("declared: slow"), "{e}");
        let e = c
            .check_tag("hr:0;len=20", DataType::String, false)
            .expect_err("size");
        assert!(e.contains("max_registers 10"), "{e}");
        let e = c.check_tag("ir:0", DataType::U16, true).expect_err("ro");
        assert!(e.contains("read-only"), "{e}");
        assert!(c.check_tag("ir:0", DataType::U16, false).is_ok());
    }
}
