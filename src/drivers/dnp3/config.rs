//! Configuration of a DNP3 outstation (`protocol = "dnp3"`): its link addresses, the
//! endpoints it answers on, the polls the master runs and the timeouts it waits.

use serde::{Deserialize, Serialize};

use super::address::PointAddress;
use crate::domain::DataType;

/// How the master sets the outstation's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeSync {
    /// The LAN procedure (record current time, then write it), when the outstation
    /// asks for time (IIN1.4 NEED_TIME).
    #[default]
    Lan,
    /// The non-LAN procedure (delay measurement), for links with a long or variable delay.
    NonLan,
    /// The master never sets the clock.
    None,
}

/// How analog inputs are asked for in integrity polls: the outstation's own choice, or
/// one encoding (a master that handles only some of them gets what it can read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AnalogVariation {
    /// Class 0 as the outstation sends it.
    #[default]
    Any,
    /// Group 30 variation 5 (32-bit float with flags).
    Float,
    /// Group 30 variation 1 (32-bit integer with flags).
    I32,
    /// Group 30 variation 2 (16-bit integer with flags).
    I16,
}

/// `protocol = "dnp3"`: one outstation reached over TCP (or TLS), polled and listened to
/// by one master association.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dnp3Config {
    /// `host:port` of the outstation (20000 by convention).
    pub endpoint: String,
    /// Further `host:port`s of the same outstation (redundant links), tried in order
    /// when the main one fails; the main one is tried first after every loss.
    #[serde(default)]
    pub failover_endpoints: Vec<String>,
    /// The master's own link address.
    #[serde(default = "default_master_address")]
    pub master_address: u16,
    /// The outstation's link address.
    #[serde(default = "default_outstation_address")]
    pub outstation_address: u16,
    /// How long a request waits for the outstation's response.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// Link-status requests after this much silence (0: none); an unanswered one
    /// closes the link.
    #[serde(default = "default_keep_alive_ms")]
    pub keep_alive_ms: u64,
    /// Integrity poll (class 1, 2, 3 and 0) period; one also runs at every connect
    /// and after the outstation restarts or overflows its event buffer.
    #[serde(default = "default_integrity_poll_s")]
    pub integrity_poll_s: u64,
    /// Event poll periods per class (0: no periodic poll of that class).
    #[serde(default)]
    pub class1_poll_ms: u64,
    #[serde(default)]
    pub class2_poll_ms: u64,
    #[serde(default)]
    pub class3_poll_ms: u64,
    /// Ask the outstation to report events unsolicited (classes 1, 2 and 3).
    #[serde(default = "yes")]
    pub unsolicited: bool,
    #[serde(default)]
    pub time_sync: TimeSync,
    #[serde(default)]
    pub analog_variation: AnalogVariation,
    /// The crate's connect strategy: the first delay after a failed connect, doubled
    /// after each failure up to `reconnect_max_ms`; `reconnect_delay_ms` after a lost link.
    #[serde(default = "crate::drivers::defaults::reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    #[serde(default = "crate::drivers::defaults::reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    #[serde(default = "default_reconnect_delay_ms")]
    pub reconnect_delay_ms: u64,
    /// How long the first connect is waited for before the device is reported offline
    /// (the crate keeps trying in the background).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// With `[security.tls]`: the name the outstation's certificate must carry
    /// (default: the endpoint's host). `self_signed`: the certificate in `ca_file` is
    /// the outstation's own, matched byte for byte.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    #[serde(default)]
    pub tls_self_signed: bool,
}

fn yes() -> bool {
    true
}
fn default_master_address() -> u16 {
    1
}
fn default_outstation_address() -> u16 {
    1024
}
fn default_response_timeout_ms() -> u64 {
    5_000
}
fn default_keep_alive_ms() -> u64 {
    60_000
}
fn default_integrity_poll_s() -> u64 {
    300
}
fn default_reconnect_delay_ms() -> u64 {
    1_000
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}

/// Link addresses 0xFFF0 and above are reserved for broadcast and self-address.
const MAX_LINK_ADDRESS: u16 = 0xFFEF;

impl Dnp3Config {
    /// An outstation at `endpoint` with every other setting at its default.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Dnp3Config {
            endpoint: endpoint.into(),
            failover_endpoints: Vec::new(),
            master_address: default_master_address(),
            outstation_address: default_outstation_address(),
            response_timeout_ms: default_response_timeout_ms(),
            keep_alive_ms: default_keep_alive_ms(),
            integrity_poll_s: default_integrity_poll_s(),
            class1_poll_ms: 0,
            class2_poll_ms: 0,
            class3_poll_ms: 0,
            unsolicited: true,
            time_sync: TimeSync::default(),
            analog_variation: AnalogVariation::default(),
            reconnect_min_ms: crate::drivers::defaults::reconnect_min_ms(),
            reconnect_max_ms: crate::drivers::defaults::reconnect_max_ms(),
            reconnect_delay_ms: default_reconnect_delay_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            tls_server_name: None,
            tls_self_signed: false,
        }
    }

    /// Every endpoint, the main one first.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.endpoint.as_str())
            .chain(self.failover_endpoints.iter().map(|s| s.as_str()))
    }

    /// Checks the settings on their own (config validation).
    pub fn check(&self) -> Result<(), String> {
        for e in self.endpoints() {
            check_endpoint(e)?;
        }
        for (name, a) in [
            ("master_address", self.master_address),
            ("outstation_address", self.outstation_address),
        ] {
            if a > MAX_LINK_ADDRESS {
                return Err(format!(
                    "{name} {a} is reserved (link addresses go up to {MAX_LINK_ADDRESS})"
                ));
            }
        }
        if self.master_address == self.outstation_address {
            return Err(format!(
                "master_address and outstation_address are both {}: they must differ",
                self.master_address
            ));
        }
        if self.response_timeout_ms == 0 {
            return Err("response_timeout_ms must be above 0".into());
        }
        if self.integrity_poll_s == 0 {
            return Err("integrity_poll_s must be above 0 (300 is usual)".into());
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            return Err(format!(
                "reconnect_min_ms ({}) must be above 0 and at most reconnect_max_ms ({})",
                self.reconnect_min_ms, self.reconnect_max_ms
            ));
        }
        for (name, ms) in [
            ("class1_poll_ms", self.class1_poll_ms),
            ("class2_poll_ms", self.class2_poll_ms),
            ("class3_poll_ms", self.class3_poll_ms),
        ] {
            if ms != 0 && ms < 10 {
                return Err(format!("{name} {ms} is below 10 ms (0 turns the poll off)"));
            }
        }
        Ok(())
    }

    /// Checks a tag's point address for a tag of `data_type` (config validation).
    pub fn check_tag(
        &self,
        address: &str,
        data_type: DataType,
        writable: bool,
    ) -> Result<(), String> {
        let a = PointAddress::parse(address)?;
        a.check(data_type, writable)
    }
}

fn check_endpoint(e: &str) -> Result<(), String> {
    let Some((host, port)) = e.rsplit_once(':') else {
        return Err(format!("endpoint `{e}` is not host:port"));
    };
    if host.is_empty() {
        return Err(format!("endpoint `{e}` has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("endpoint `{e}`: `{port}` is not a port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_protocol_conventions() {
        let c: Dnp3Config = toml::from_str(r#"endpoint = "10.0.0.5:20000""#).expect("parses");
        assert_eq!(c, Dnp3Config::new("10.0.0.5:20000"));
        assert_eq!((c.master_address, c.outstation_address), (1, 1024));
        assert_eq!(c.integrity_poll_s, 300);
        assert!(c.unsolicited);
        assert_eq!(c.time_sync, TimeSync::Lan);
        assert!(c.check().is_ok());
    }

    #[test]
    fn bad_settings_are_named() {
        let mut c = Dnp3Config::new("10.0.0.5");
        assert!(c.check().unwrap_err().contains("host:port"));
        c.endpoint = "h:20000".into();
        c.failover_endpoints = vec!["h2:x".into()];
        assert!(c.check().unwrap_err().contains("`x` is not a port"));
        c.failover_endpoints.clear();
        c.outstation_address = 1;
        assert!(c.check().unwrap_err().contains("must differ"));
        c.outstation_address = 0xFFFD;
        assert!(c.check().unwrap_err().contains("reserved"));
        c.outstation_address = 10;
        c.class2_poll_ms = 5;
        assert!(c.check().unwrap_err().contains("class2_poll_ms"));
        let unknown = toml::from_str::<Dnp3Config>("endpoint = \"h:1\"\nintegrity = 3");
        assert!(unknown.unwrap_err().to_string().contains("unknown field"));
    }
}
