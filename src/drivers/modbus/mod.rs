//! Modbus TCP: tag addresses, the value codec and read planning. The driver itself
//! (rodbus, cargo feature `modbus`) builds on these; they are plain code, testable
//! without a device.

pub mod address;
pub mod codec;
pub mod plan;

pub use address::{Address, Table, WordOrder};
