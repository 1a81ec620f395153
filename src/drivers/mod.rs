//! Protocol drivers: one [`Driver`] trait, one folder per protocol, one table
//! ([`table`]: [`DriverConfig`] and [`build`], which turns it into a running driver).
//!
//! A driver connects, computes a read plan once per configuration (one group per poll
//! period), reads a group when asked, writes commands, and may push samples and link
//! events on its own ([`DriverSink`]). The device actor owns scheduling, backoff and
//! the reaction to errors.

#[cfg(feature = "dnp3")]
pub mod dnp3;
pub mod modbus;
pub mod mqtt;
pub mod opcua;
pub mod scaling;
pub mod sim;
mod table;

use std::sync::Arc;

use async_trait::async_trait;

pub use table::{DriverConfig, PROTOCOLS, build};

use crate::domain::{DataType, QualityReason, Sample, Tag, TagId, TagSpec, Timestamp, Value};

/// Defaults the drivers' configurations share.
pub(crate) mod defaults {
    /// The first delay after a lost or refused link, doubled per failure...
    pub fn reconnect_min_ms() -> u64 {
        500
    }

    /// ... up to this.
    pub fn reconnect_max_ms() -> u64 {
        30_000
    }
}

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
    /// The device answered the request with an exception (e.g. a Modbus exception).
    #[error("the device refused: {0}")]
    Refused(String),
    /// A write went through but reading it back gave another value.
    #[error("tag `{tag}`: wrote {wrote} but read back {read}")]
    NotConfirmed {
        tag: String,
        wrote: String,
        read: String,
    },
    #[error("tag `{0}` is not writable")]
    NotWritable(String),
    #[error("value `{value}` does not fit tag `{tag}`: {reason}")]
    BadValue {
        tag: String,
        value: String,
        reason: String,
    },
    /// The protocol has no such service (browsing a Modbus device).
    #[error("{0}")]
    Unsupported(String),
}

/// A node of a device's address space, as a browse returns it (OPC UA).
#[derive(Debug, Clone, PartialEq)]
pub struct BrowsedNode {
    /// The node in address form (`nsu=<uri>;s=…`), usable as a tag address.
    pub node_id: String,
    pub browse_name: String,
    pub display_name: String,
    /// Object, Variable, Method, ObjectType, VariableType, ReferenceType, DataType, View.
    pub node_class: String,
    /// The node's data type as the server names it (variables only).
    pub data_type: Option<String>,
    /// The ThermaCore data type that reads the node without loss, if any.
    pub tag_type: Option<DataType>,
    pub readable: bool,
    pub writable: bool,
    /// The node has children to browse.
    pub has_children: bool,
}

/// What importing one node gave: a tag spec to create, or why not.
pub type ImportedNode = Result<TagSpec, String>;

/// One poll group of a read plan: tags read together at their own period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanGroup {
    /// `default` for the device's own period, else the name declared in the config.
    pub name: String,
    pub period_ms: u64,
    /// Protocol requests per cycle of this group.
    pub requests: u32,
    /// Tags read in this group.
    pub tags: u32,
}

/// What a read plan costs; shown in device status and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanSummary {
    pub groups: Vec<PlanGroup>,
    /// The group of every tag not read in group 0 (the device's own period): their
    /// staleness follows their group's period.
    pub tag_groups: Vec<(TagId, usize)>,
    /// Values arrive only when they change (Sparkplug B, report by exception) and the
    /// protocol reports the loss of the source itself (death certificates): the tags
    /// never turn stale for want of a message.
    pub by_exception: bool,
}

impl PlanSummary {
    /// Protocol requests of one cycle of every group.
    pub fn requests_per_cycle(&self) -> u32 {
        self.groups.iter().map(|g| g.requests).sum()
    }

    pub fn tags(&self) -> u32 {
        self.groups.iter().map(|g| g.tags).sum()
    }
}

/// How one read of a poll group went, beyond the samples it appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadReport {
    /// Tags that came back Bad from this read (an exception, a bad answer).
    pub failed_tags: u32,
    /// Tags skipped because their address sits in the bad-address cache.
    pub skipped_tags: u32,
    /// Addresses in the driver's bad-address cache after this read.
    pub bad_addresses: u32,
    /// Protocol requests this read sent (splits of refused ranges included).
    pub requests: u32,
}

impl ReadReport {
    /// Some tags could not be read although the device answered.
    pub fn degraded(&self) -> bool {
        self.failed_tags > 0 || self.bad_addresses > 0
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteReport {
    /// The value as read back from the device, when the tag asks for confirmation.
    pub confirmed: Option<Value>,
}

/// The state of a link that the driver's protocol crate manages itself (reconnects
/// with its own retry strategy), reported to the device actor as it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    Connecting,
    Connected,
    /// A connect attempt failed; the crate retries after `retry_in_ms`.
    ConnectFailed {
        retry_in_ms: u64,
    },
    /// The peer closed the link (or it broke); the crate reconnects after `retry_in_ms`.
    Disconnected {
        retry_in_ms: u64,
    },
    /// The device answered a request (DNP3): the link carries data again.
    Answered,
    /// The link is up but the device does not answer (a request timed out): its
    /// values are lost until it answers again.
    Silent {
        error: String,
    },
    /// The device answers but reports trouble (a DNP3 event buffer overflow).
    Trouble {
        error: String,
    },
}

/// Where a driver delivers what happens without being asked: samples the device pushed
/// (MQTT messages, OPC UA data changes, DNP3 unsolicited responses), link events, tags
/// whose values were lost, and tags the device declared by itself.
#[derive(Clone)]
pub struct DriverSink {
    /// Names of the tenant and the device, for logs and metric labels.
    pub tenant: Arc<str>,
    pub device: Arc<str>,
    /// Connections a driver shares between devices are shared only within one scope
    /// (one tenant of one running server): tenants never share a broker session.
    pub scope: u64,
    pub samples: Arc<dyn Fn(Vec<Sample>) + Send + Sync>,
    pub link: Arc<dyn Fn(LinkEvent) + Send + Sync>,
    /// These tags' last values turn Bad with the reason (a death certificate, a
    /// message that could not be parsed).
    pub lost: Arc<dyn Fn(Vec<TagId>, QualityReason) + Send + Sync>,
    /// Tags the device announced (a topic template matched, a Sparkplug birth): the
    /// device actor creates them and hands them back through [`Driver::add_tags`].
    pub discovered: Arc<dyn Fn(Vec<TagSpec>) + Send + Sync>,
}

impl DriverSink {
    /// A sink that drops everything (tests, connection checks).
    pub fn discard() -> Self {
        DriverSink {
            tenant: "".into(),
            device: "".into(),
            scope: 0,
            samples: Arc::new(|_| {}),
            link: Arc::new(|_| {}),
            lost: Arc::new(|_, _| {}),
            discovered: Arc::new(|_| {}),
        }
    }
}

/// One protocol endpoint, driven by its device actor.
#[async_trait]
pub trait Driver: Send + 'static {
    /// Validates the tags' addresses and computes the read plan, one group per poll
    /// period (`default_period_ms` is the device's `poll_ms`). Called once per
    /// configuration, not per poll.
    fn plan(&mut self, tags: &[Tag], default_period_ms: u64) -> Result<PlanSummary, Error>;

    /// True when the protocol crate keeps the link up by itself (and reports it through
    /// [`DriverSink::link`]): the device actor then never reconnects on its own.
    fn manages_link(&self) -> bool {
        false
    }

    /// The wait between failed connects, from the driver's own settings (min, max in
    /// ms, doubled per failure); `None`: the device actor's default.
    fn reconnect_backoff_ms(&self) -> Option<(u64, u64)> {
        None
    }

    /// Maps tags created at run time (announced through [`DriverSink::discovered`]).
    fn add_tags(&mut self, _tags: &[Tag]) -> Result<(), Error> {
        Ok(())
    }

    /// Opens the link. `sink` receives pushed data and link events.
    async fn connect(&mut self, sink: DriverSink) -> Result<(), Error>;

    /// Reads poll group `group` once, appending one sample per tag read to `out`. A
    /// driver whose plan has no poll groups (values pushed) is never asked.
    async fn read(
        &mut self,
        _group: usize,
        _now: Timestamp,
        _out: &mut Vec<Sample>,
    ) -> Result<ReadReport, Error> {
        Ok(ReadReport::default())
    }

    /// Writes one value (in engineering units) to one tag.
    async fn write(&mut self, tag: &Tag, value: &Value) -> Result<WriteReport, Error>;

    /// Closes the link (device stopping or reconfigured).
    async fn disconnect(&mut self);

    /// The children of `node` (`None`: the root of the device's address space).
    async fn browse(&mut self, _node: Option<&str>) -> Result<Vec<BrowsedNode>, Error> {
        Err(Error::Unsupported(
            "this protocol has no address space to browse".into(),
        ))
    }

    /// Tag specs for `nodes` (addresses as [`BrowsedNode::node_id`] gives them), read
    /// from the device (name, data type, writability); one result per node, in order.
    async fn import(&mut self, _nodes: &[String]) -> Result<Vec<ImportedNode>, Error> {
        Err(Error::Unsupported(
            "this protocol has no address space to import tags from".into(),
        ))
    }
}
