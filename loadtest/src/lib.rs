//! What the two load-test binaries share: `thermacore-loadtest` (in-process
//! benchmarks of the data path) and `thermacore-load` (scenarios against a running
//! server).

pub mod child;
pub mod mqtt_pub;
pub mod prom;
pub mod world;
