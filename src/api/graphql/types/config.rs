//! GraphQL types of the live configuration: the inputs of the unit, device and tag
//! mutations (a driver's settings are JSON with the config file's keys), what a change
//! did, the device list's filter, and a connection test's report.

use async_graphql::{Enum, ID, InputObject, Json, MaybeUndefined, SimpleObject};

use super::DeviceStateGql;
use crate::manage::{self, Change};

/// A WGS-84 position.
#[derive(InputObject, Clone, Copy)]
pub struct LocationInput {
    pub lat: f64,
    pub lon: f64,
}

/// A new unit.
#[derive(InputObject)]
pub struct UnitInput {
    pub name: String,
    pub location: Option<LocationInput>,
    pub description: Option<String>,
}

/// Changes to a unit: omitted fields stay, `null` clears.
#[derive(InputObject, Default)]
pub struct UnitPatch {
    pub name: Option<String>,
    pub location: MaybeUndefined<LocationInput>,
    pub description: MaybeUndefined<String>,
}

/// A new device. `driver` holds the protocol settings with the config file's keys,
/// `protocol` included (`{"protocol": "modbus", "host": "10.0.0.5", "port": 502,
/// "unit_id": 1}`); `security` the link security (`require_tls`, `tls`,
/// `credentials`), secrets sealed before they are stored.
#[derive(InputObject)]
pub struct DeviceInput {
    pub name: String,
    pub unit_id: Option<ID>,
    #[graphql(default = true)]
    pub enabled: bool,
    /// Poll period (and for pushing protocols the expected publishing interval); at
    /// least the tenant's `min_poll_ms`.
    #[graphql(default = 1000)]
    pub poll_ms: u64,
    pub driver: Json<serde_json::Value>,
    pub security: Option<Json<serde_json::Value>>,
}

/// Changes to a device: omitted fields stay, `null` clears. A new `driver` replaces
/// the whole driver section; a secret given as `***` keeps the stored one.
#[derive(InputObject, Default)]
pub struct DevicePatch {
    pub name: Option<String>,
    pub unit_id: MaybeUndefined<ID>,
    pub enabled: Option<bool>,
    pub poll_ms: Option<u64>,
    pub driver: Option<Json<serde_json::Value>>,
    pub security: MaybeUndefined<Json<serde_json::Value>>,
}

/// A new tag on a device. `alarms` are its alarm rules with the config file's keys
/// (`[{"name": "hot", "type": "high", "setpoint": 80}]`).
#[derive(InputObject)]
pub struct TagInput {
    pub device_id: ID,
    pub name: String,
    pub unit_id: Option<ID>,
    /// In the device's protocol's notation (`hr:100`, `ns=2;s=Temp`, `ai:3` …).
    pub address: String,
    /// `bool`, `i16`, `u16`, `i32`, `u32`, `i64`, `u64`, `f32`, `f64` or `string`.
    #[graphql(default = "f64")]
    pub data_type: String,
    #[graphql(default = 1.0)]
    pub scale: f64,
    #[graphql(default = 0.0)]
    pub offset: f64,
    pub eng_unit: Option<String>,
    #[graphql(default = 0.0)]
    pub deadband: f64,
    #[graphql(default = false)]
    pub writable: bool,
    pub alarms: Option<Json<serde_json::Value>>,
}

/// Changes to a tag (which stays on its device): omitted fields stay, `null` clears.
/// `alarms`, when given, replaces the tag's alarm rules (rules are matched by name: a
/// rule that stays keeps its alarm's state).
#[derive(InputObject, Default)]
pub struct TagPatch {
    pub name: Option<String>,
    pub unit_id: MaybeUndefined<ID>,
    pub address: Option<String>,
    pub data_type: Option<String>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub eng_unit: MaybeUndefined<String>,
    pub deadband: Option<f64>,
    pub writable: Option<bool>,
    pub alarms: Option<Json<serde_json::Value>>,
}

/// How `importConfig` treats what the document does not mention.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ImportMode {
    /// Keep it: the document's objects are created or updated, nothing is deleted.
    Merge,
    /// Delete it: the document is the tenant's whole configuration.
    Replace,
}

/// The text form of a configuration document.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConfigFormat {
    Toml,
    Json,
}

impl From<ConfigFormat> for manage::Format {
    fn from(f: ConfigFormat) -> Self {
        match f {
            ConfigFormat::Toml => manage::Format::Toml,
            ConfigFormat::Json => manage::Format::Json,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

/// One object a change created, updated or deleted.
#[derive(SimpleObject)]
pub struct ConfigChange {
    /// `unit`, `device`, `tag` or `alarm_rule`.
    pub kind: String,
    pub op: ChangeOp,
    /// Null for an object a dry run would create.
    pub id: Option<ID>,
    /// `unit`, `device`, `device/tag` or `device/tag/rule`.
    pub name: String,
    /// The object before and after, with the config file's keys; secrets as `***`.
    pub before: Option<Json<serde_json::Value>>,
    pub after: Option<Json<serde_json::Value>>,
}

impl From<Change> for ConfigChange {
    fn from(c: Change) -> Self {
        let kind = serde_json::to_value(c.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        ConfigChange {
            kind,
            op: match c.op {
                manage::Op::Create => ChangeOp::Create,
                manage::Op::Update => ChangeOp::Update,
                manage::Op::Delete => ChangeOp::Delete,
            },
            id: c.id.map(ID),
            name: c.name,
            before: c.before.map(Json),
            after: c.after.map(Json),
        }
    }
}

/// What `importConfig` did, or would do in a dry run.
#[derive(SimpleObject)]
pub struct ImportReport {
    /// False for a dry run: nothing was written.
    pub applied: bool,
    pub created: u32,
    pub updated: u32,
    pub deleted: u32,
    /// Every object created, updated or deleted (MERGE deletes only the tags a changed
    /// driver no longer generates).
    pub changes: Vec<ConfigChange>,
}

impl ImportReport {
    pub fn new(applied: bool, changes: Vec<Change>) -> Self {
        let count = |op| changes.iter().filter(|c| c.op == op).count() as u32;
        ImportReport {
            applied,
            created: count(manage::Op::Create),
            updated: count(manage::Op::Update),
            deleted: count(manage::Op::Delete),
            changes: changes.into_iter().map(ConfigChange::from).collect(),
        }
    }
}

/// Which devices `devices` lists; omitted fields match every device.
#[derive(InputObject, Default)]
pub struct DeviceFilter {
    /// `sim`, `modbus`, `mqtt`, `opcua` or `dnp3`.
    pub protocol: Option<String>,
    pub status: Option<DeviceStateGql>,
    pub unit_id: Option<ID>,
    pub enabled: Option<bool>,
    /// Part of the name, any case.
    pub search: Option<String>,
}

/// Tags of a device by the quality of their latest value.
#[derive(SimpleObject, Default, Clone, Copy)]
pub struct TagCounts {
    pub total: u32,
    pub good: u32,
    pub uncertain: u32,
    pub bad: u32,
    /// Not read yet.
    pub no_value: u32,
}

/// A tag to read in a connection test.
#[derive(InputObject)]
pub struct TestTagInput {
    pub name: String,
    pub address: String,
    #[graphql(default = "f64")]
    pub data_type: String,
}

/// A candidate device configuration to try (nothing is saved).
#[derive(InputObject)]
pub struct DeviceTestInput {
    /// As in `DeviceInput.driver`.
    pub driver: Json<serde_json::Value>,
    /// As in `DeviceInput.security`.
    pub security: Option<Json<serde_json::Value>>,
    #[graphql(default = 1000)]
    pub poll_ms: u64,
    /// Tags to read once (or, for protocols that push, to wait for); none: only the
    /// connection is tried.
    #[graphql(default)]
    pub tags: Vec<TestTagInput>,
    /// How long the whole test may take, 100 to 30000 ms.
    #[graphql(default = 5000)]
    pub timeout_ms: u64,
}

/// One value read in a connection test.
#[derive(SimpleObject)]
pub struct TestReading {
    pub tag: String,
    pub value: Option<Json<serde_json::Value>>,
    pub quality: super::QualityLevel,
    pub quality_reason: Option<String>,
}

/// What a connection test found.
#[derive(SimpleObject)]
pub struct ConnectionTest {
    /// A TCP connection to the device's endpoint opened (a simulated device always
    /// is).
    pub reachable: bool,
    /// The protocol's session came up: the device (or broker, or server) answered.
    pub connected: bool,
    /// With credentials or an identity configured: whether they were accepted (null
    /// when none are configured, or when the session did not come up for another
    /// reason).
    pub authenticated: Option<bool>,
    /// Time from the start of the test to the session being up.
    pub latency_ms: Option<f64>,
    /// The tags asked for, as read (or received) within the time.
    pub readings: Vec<TestReading>,
    /// What went wrong, in plain words; null when everything asked for worked.
    pub error: Option<String>,
}
