//! `sim`: a simulated device of deterministic signal generators, with fault injection
//! for tests and demos. It needs no network and is the reference driver of the
//! device actor's behaviour.

mod config;
mod driver;
mod signal;

pub use config::SimConfig;
pub use driver::SimDriver;
pub use signal::Signal;
