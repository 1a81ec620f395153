//! OPC UA (async-opcua): one session per device with the configured security policy,
//! mode and identity; tags monitored by subscriptions sized to the server's limits
//! (or polled in bulk), writes converted to the node's data type, a bad-node cache,
//! browsing and import; and an embedded server ([`server`]) for the demo and the tests.

pub mod server;

mod address;
mod browse;
mod config;
mod conn;
mod driver;
mod events;
mod items;
mod nodelay;
mod poll;
mod session;
mod subscribe;
mod value;

pub use address::{Deadband, ItemOptions, Mode, Namespace, OpcuaAddress};
pub use config::{Identity, OpcuaConfig, SecurityMode, SecurityPolicy};
pub use driver::OpcuaDriver;
