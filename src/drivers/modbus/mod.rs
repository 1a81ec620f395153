//! Modbus TCP: tag addresses, the value codec and read planning (plain code, testable
//! without a device), and the driver on rodbus (cargo feature `modbus`): device config,
//! shared channels, the bad-address cache, and a PLC simulator for the demo and tests.

pub mod address;
pub mod codec;
pub mod plan;

#[cfg(feature = "modbus")]
mod bad;
#[cfg(feature = "modbus")]
mod config;
#[cfg(feature = "modbus")]
mod driver;
#[cfg(feature = "modbus")]
pub mod plc;
#[cfg(feature = "modbus")]
pub mod pool;

pub use address::{Address, Table, TagOptions, WordOrder};
#[cfg(feature = "modbus")]
pub use config::{ModbusConfig, PollGroupConfig};
#[cfg(feature = "modbus")]
pub use driver::ModbusDriver;
