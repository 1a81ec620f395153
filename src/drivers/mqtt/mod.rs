//! MQTT (rumqttc): JSON and plain payloads mapped to tags by topic and JSON pointer,
//! Sparkplug B edge nodes (births, data, deaths, rebirth requests), commands published
//! with QoS 1, broker connections shared by devices; and an embedded rumqttd broker for
//! the demo and the tests.

pub mod broker;
pub mod sparkplug;
pub mod topic;

mod address;
mod config;
mod driver;
mod ingest;
mod link;
mod payload;
mod tls;

pub use address::MqttAddress;
pub use config::{MqttConfig, SparkplugConfig, TagTemplate, TimeUnit, TopicConfig};
pub use driver::MqttDriver;
