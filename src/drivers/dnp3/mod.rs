//! DNP3 (IEEE 1815) master over TCP or TLS, with the `dnp3` crate (cargo feature
//! `dnp3`; Step Function I/O's non-commercial, non-production licence).
//!
//! One master channel and association per device: integrity polls on connect, on the
//! configured period and after an outstation restart; class 1/2/3 event polls;
//! unsolicited responses; flags into quality and device time into source time;
//! CROB and analog output commands, select-before-operate or direct.
//! [`outstation`] runs the crate's outstation for the demo and the tests.

pub mod address;
mod command;
pub mod config;
mod driver;
mod handler;
mod measure;
pub mod outstation;

pub use address::{PointAddress, PointKind};
pub use config::Dnp3Config;
pub use driver::Dnp3Driver;
