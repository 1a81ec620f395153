//! Configuration of an MQTT device (`protocol = "mqtt"`): the broker connection, the
//! topics it subscribes to, how payloads map to tags, commands, templates and
//! Sparkplug B.

use serde::{Deserialize, Serialize};

use super::address::MqttAddress;
use super::topic::{self, Template};
use crate::domain::DataType;

/// One subscription: a topic filter with its QoS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TopicConfig {
    /// A filter at the device's `qos`.
    Filter(String),
    /// A filter with its own QoS.
    WithQos { filter: String, qos: u8 },
}

impl TopicConfig {
    pub fn filter(&self) -> &str {
        match self {
            TopicConfig::Filter(f) | TopicConfig::WithQos { filter: f, .. } => f,
        }
    }

    pub fn qos(&self, default: u8) -> u8 {
        match self {
            TopicConfig::Filter(_) => default,
            TopicConfig::WithQos { qos, .. } => *qos,
        }
    }
}

/// How a number at the time pointer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Seconds below 10^11, milliseconds below 10^14, else microseconds.
    #[default]
    Auto,
    S,
    Ms,
    Us,
}

/// A tag template: every topic matching `topic` creates (once) a tag named `name`
/// with the captured levels filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagTemplate {
    /// `site/{unit}/temperature`: `{x}` levels are captured, `+` levels ignored.
    pub topic: String,
    /// `{unit}.temperature`.
    pub name: String,
    /// JSON pointer of the value; absent: the payload is the value (plain).
    #[serde(default)]
    pub value: Option<String>,
    pub data_type: DataType,
    #[serde(default)]
    pub eng_unit: Option<String>,
    #[serde(default)]
    pub writable: bool,
    /// Command topic of the created tags (captures filled in), when writable.
    #[serde(default)]
    pub command: Option<String>,
}

/// Sparkplug B: the edge node (and optionally one of its devices) this device maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparkplugConfig {
    pub group: String,
    pub node: String,
    /// A device of the node (DBIRTH/DDATA/DCMD); absent: the node's own metrics
    /// (NBIRTH/NDATA/NCMD).
    #[serde(default)]
    pub device: Option<String>,
    /// Create a tag for every metric a birth declares that no tag maps yet.
    #[serde(default)]
    pub discover: bool,
    /// Shortest time between two rebirth requests to the node.
    #[serde(default = "default_rebirth_ms")]
    pub rebirth_min_interval_ms: u64,
}

/// `protocol = "mqtt"`: a broker connection and the topics of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    /// 1883 (8883 with TLS by convention).
    #[serde(default = "default_port")]
    pub port: u16,
    /// MQTT client id; default `thermacore-<pid>-<n>`. Set it (unique per server)
    /// for a persistent session (`clean_session = false`).
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// MQTT 3.1.1 clean session: false keeps subscriptions and queued QoS 1 messages at
    /// the broker while ThermaCore is away (for as long as the broker keeps sessions).
    #[serde(default = "yes")]
    pub clean_session: bool,
    /// QoS of subscriptions that do not set their own, 0-2.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Subscribe as `$share/GROUP/FILTER`, so that ThermaCore nodes sharing the group
    /// split the messages between them.
    #[serde(default)]
    pub share_group: Option<String>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Reconnect backoff: from min, doubled per failure up to max, with ±20 % jitter.
    #[serde(default = "crate::drivers::defaults::reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    #[serde(default = "crate::drivers::defaults::reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Larger payloads are refused (counted, tags of the topic marked Bad).
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// Filters subscribed for JSON and plain tags (tags whose `topic=` is not covered
    /// are subscribed on their own).
    #[serde(default)]
    pub topics: Vec<TopicConfig>,
    /// Default JSON pointers of the source timestamp and of the quality.
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub time_unit: TimeUnit,
    #[serde(default)]
    pub quality: Option<String>,
    /// Default command topic of writable tags: `{tag}` is the tag's name.
    #[serde(default)]
    pub command_topic: Option<String>,
    /// Command payload: `{value}` is the value as JSON, `{tag}` the tag name (as a
    /// JSON string's contents), `{ts}` milliseconds since the epoch.
    #[serde(default = "default_command_payload")]
    pub command_payload: String,
    /// How long a command waits for the broker's PUBACK.
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
    #[serde(default)]
    pub templates: Vec<TagTemplate>,
    #[serde(default)]
    pub sparkplug: Option<SparkplugConfig>,
    /// Most tags templates and Sparkplug discovery may create for this device.
    #[serde(default = "default_max_discovered")]
    pub max_discovered_tags: usize,
    /// The name the broker's TLS certificate must carry (default: `host`).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// A connection of its own instead of sharing one with devices of the same broker
    /// and settings.
    #[serde(default)]
    pub own_connection: bool,
}

fn yes() -> bool {
    true
}
fn default_port() -> u16 {
    1883
}
fn default_keep_alive() -> u64 {
    30
}
fn default_qos() -> u8 {
    1
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_max_payload() -> usize {
    256 * 1024
}
fn default_command_payload() -> String {
    r#"{"value": {value}}"#.into()
}
fn default_command_timeout_ms() -> u64 {
    5_000
}
fn default_max_discovered() -> usize {
    10_000
}
fn default_rebirth_ms() -> u64 {
    5_000
}

fn check_pointer(key: &str, p: &Option<String>) -> Result<(), String> {
    match p {
        Some(p) if !p.is_empty() && !p.starts_with('/') => Err(format!(
            "{key}: `{p}` is not a JSON pointer (it starts with `/`, or is empty for the whole payload)"
        )),
        _ => Ok(()),
    }
}

impl MqttConfig {
    /// Checks the settings on their own; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("host: must not be empty".into());
        }
        if self.port == 0 {
            return Err("port: must be 1-65535".into());
        }
        if self.qos > 2 {
            return Err(format!("qos: {} is not 0, 1 or 2", self.qos));
        }
        if !(5..=65_535).contains(&self.keep_alive_secs) {
            return Err("keep_alive_secs: must be 5-65535".into());
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 65_535)
        {
            return Err("client_id: must be 1-65535 bytes".into());
        }
        if let Some(g) = &self.share_group
            && (g.is_empty() || g.contains(['/', '+', '#']))
        {
            return Err(format!(
                "share_group: `{g}` must be a non-empty name without `/`, `+` or `#`"
            ));
        }
        if self.connect_timeout_ms == 0 || self.command_timeout_ms == 0 {
            return Err("connect_timeout_ms, command_timeout_ms: must be > 0".into());
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_ms < self.reconnect_min_ms {
            return Err("reconnect_min_ms: must be > 0 and <= reconnect_max_ms".into());
        }
        if !(16..=256 * 1024 * 1024).contains(&self.max_payload_bytes) {
            return Err("max_payload_bytes: must be 16 B - 256 MiB".into());
        }
        for (i, t) in self.topics.iter().enumerate() {
            topic::check_filter(t.filter()).map_err(|e| format!("topics[{i}]: {e}"))?;
            if t.qos(self.qos) > 2 {
                return Err(format!("topics[{i}].qos: must be 0, 1 or 2"));
            }
        }
        check_pointer("time", &self.time)?;
        check_pointer("quality", &self.quality)?;
        if let Some(t) = &self.command_topic {
            topic::check_topic(&t.replace("{tag}", "x"))
                .map_err(|e| format!("command_topic: {e}"))?;
        }
        if !self.command_payload.contains("{value}") {
            return Err("command_payload: must contain `{value}`".into());
        }
        for (i, t) in self.templates.iter().enumerate() {
            let template =
                Template::parse(&t.topic).map_err(|e| format!("templates[{i}].topic: {e}"))?;
            if !template
                .names()
                .any(|n| t.name.contains(&format!("{{{n}}}")))
            {
                return Err(format!(
                    "templates[{i}].name: `{}` uses none of the topic's `{{name}}` levels, so every topic would make the same tag",
                    t.name
                ));
            }
            check_pointer(&format!("templates[{i}].value"), &t.value)?;
            if t.writable && t.command.is_none() && self.command_topic.is_none() {
                return Err(format!(
                    "templates[{i}].command: a writable template needs a command topic (or the device's command_topic)"
                ));
            }
        }
        if let Some(sp) = &self.sparkplug {
            for (key, v) in [("group", &sp.group), ("node", &sp.node)] {
                if v.is_empty() || v.contains(['/', '+', '#']) {
                    return Err(format!(
                        "sparkplug.{key}: `{v}` must be a non-empty name without `/`, `+` or `#`"
                    ));
                }
            }
            if let Some(d) = &sp.device
                && (d.is_empty() || d.contains(['/', '+', '#']))
            {
                return Err(format!(
                    "sparkplug.device: `{d}` must be a non-empty name without `/`, `+` or `#`"
                ));
            }
            if self.share_group.is_some() {
                return Err("share_group: a Sparkplug host must see every message of its node (sequence numbers); do not share its subscription".into());
            }
            if !self.topics.is_empty() || !self.templates.is_empty() {
                return Err(
                    "sparkplug: a Sparkplug device maps metrics, not topics: give it no `topics` or `templates` (use a second device)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// Checks a tag's address against this device (config validation).
    pub fn check_tag(
        &self,
        address: &str,
        _data_type: DataType,
        writable: bool,
    ) -> Result<(), String> {
        // Every tag type reads from JSON, plain text and Sparkplug (whose births are
        // checked against the tag's type when they arrive): only the address counts.
        let a = MqttAddress::parse(address, self.sparkplug.is_some())?;
        if writable && !a.commandable(self) {
            return Err(
                "a writable MQTT tag needs `command=TOPIC` in its address or the device's `command_topic`"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<MqttConfig, String> {
        let text = format!("host = \"127.0.0.1\"\n{extra}");
        let c: MqttConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.check().map(|()| c)
    }

    #[test]
    fn defaults_and_checks() {
        let c = config("").expect("defaults");
        assert_eq!(
            (c.port, c.qos, c.keep_alive_secs, c.clean_session),
            (1883, 1, 30, true)
        );
        for (extra, key) in [
            ("qos = 3", "qos"),
            ("topics = [\"a/#/b\"]", "topics[0]"),
            ("topics = [{ filter = \"a\", qos = 5 }]", "topics[0].qos"),
            ("time = \"ts\"", "time"),
            ("share_group = \"a/b\"", "share_group"),
            ("reconnect_min_ms = 0", "reconnect_min_ms"),
            ("command_payload = \"x\"", "command_payload"),
            (
                "templates = [{ topic = \"s/{u}/t\", name = \"fixed\", data_type = \"f64\" }]",
                "templates[0].name",
            ),
            (
                "templates = [{ topic = \"s/u/t\", name = \"{u}\", data_type = \"f64\" }]",
                "templates[0].topic",
            ),
            (
                "sparkplug = { group = \"G/x\", node = \"N\" }",
                "sparkplug.group",
            ),
            (
                "topics = [\"a\"]\nsparkplug = { group = \"G\", node = \"N\" }",
                "sparkplug",
            ),
        ] {
            let e = config(extra).expect_err(extra);
            assert!(e.starts_with(key), "{extra}: {e}");
        }
        let c = config("topics = [\"a/#\", { filter = \"b/+\", qos = 0 }]").expect("topics");
        assert_eq!(c.topics[1].qos(c.qos), 0);
        assert_eq!(c.topics[0].qos(c.qos), 1);
    }

    #[test]
    fn tags_are_checked() {
        let c = config("").expect("config");
        assert!(
            c.check_tag("topic=a/b;value=/x", DataType::F64, false)
                .is_ok()
        );
        assert!(
            c.check_tag("topic=a/b;value=/x", DataType::F64, true)
                .is_err()
        );
        assert!(
            c.check_tag("topic=a/b;command=a/b/set", DataType::F64, true)
                .is_ok()
        );
        assert!(c.check_tag("metric=x", DataType::F64, false).is_err());
        let sp = config("sparkplug = { group = \"G\", node = \"N\" }").expect("sparkplug");
        assert!(sp.check_tag("metric=Temp", DataType::F64, true).is_ok());
        assert!(sp.check_tag("topic=a", DataType::F64, false).is_err());
    }
}
