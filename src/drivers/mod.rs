//! Protocol drivers: one [`Driver`] trait, one folder per protocol, one table
//! ([`build`]) that turns a [`DriverConfig`] into a running driver.
//!
//! A driver connects, computes a read plan once per configuration, reads the plan,
//! writes commands, and may push samples on its own (`PushSink`). The device actor
//! owns scheduling, backoff and the reaction to errors.

pub mod modbus;
pub mod sim;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{OpenedSecurity, Sample, Tag, TagSpec, Timestamp, Value};

/// Errors a driver reports to its device actor.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// The link is down; the device actor marks the device's tags Bad/CommLost and
    /// reconnects with backoff.
    #[error("disconnected: {0}")]
    Disconnected(String),
    #[error("request timed out after {0} ms")]
    Timeout(u64),
    /// A tag's address cannot be parsed or is refused by the device.
    #[error("tag `{tag}`: bad address `{address}`: {reason}")]
    Address {
        tag: String,
        address: String,
        reason: String,
    },
    /// The device config is not usable.
    #[error("config: {0}")]
    Config(String),
    /// The device answered something we cannot use (garbage, an exception).
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("tag `{0}` is not writable")]
    NotWritable(String),
    #[error("value `{value}` does not fit tag `{tag}`: {reason}")]
    BadValue {
        tag: String,
        value: String,
        reason: String,
    },
}

/// What a read plan costs per cycle; shown in device status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanSummary {
    /// Protocol requests per poll cycle.
    pub requests_per_cycle: u32,
    /// Tags covered by the plan.
    pub tags: u32,
}

/// Where a driver delivers samples that the device pushed without being polled
/// (MQTT messages, OPC UA data changes, DNP3 unsolicited responses).
pub type PushSink = Arc<dyn Fn(Vec<Sample>) + Send + Sync>;

/// One protocol endpoint, driven by its device actor.
#[async_trait]
pub trait Driver: Send + 'static {
    /// Validates the tags' addresses and computes the read plan. Called once per
    /// configuration, not per poll.
    fn plan(&mut self, tags: &[Tag]) -> Result<PlanSummary, Error>;

    /// Opens the link. `push` receives unsolicited data, if the protocol has any.
    async fn connect(&mut self, push: PushSink) -> Result<(), Error>;

    /// Reads the plan once, appending one sample per tag read to `out`.
    async fn read(&mut self, now: Timestamp, out: &mut Vec<Sample>) -> Result<(), Error>;

    /// Writes one value to one tag.
    async fn write(&mut self, tag: &Tag, value: &Value) -> Result<(), Error>;

    /// Closes the link (device stopping or reconfigured).
    async fn disconnect(&mut self);
}

/// The protocol part of a device's configuration, tagged by `protocol`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum DriverConfig {
    /// Deterministic signal generators with fault injection.
    Sim(sim::SimConfig),
}

impl DriverConfig {
    pub fn protocol(&self) -> &'static str {
        match self {
            DriverConfig::Sim(_) => "sim",
        }
    }

    /// Tags the driver declares by itself (the sim's `generated_tags`), added to the
    /// device's declared tags when the configuration is applied.
    pub fn generated_tags(&self) -> Vec<TagSpec> {
        match self {
            DriverConfig::Sim(c) => c.generated_tag_specs(),
        }
    }

    /// Checks a tag address without connecting (config validation).
    pub fn check_address(&self, address: &str) -> Result<(), String> {
        match self {
            DriverConfig::Sim(_) => sim::Signal::parse(address).map(|_| ()),
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
    }
}
