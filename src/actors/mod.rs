//! The supervised actor tree:
//!
//! ```text
//! Root ─┬─ Historian                       (historian.rs)
//!       └─ Tenant ─┬─ Device …             (tenant.rs, device.rs)
//!                  ├─ Cache                (cache.rs)
//!                  ├─ Alert stream         (alerts.rs)
//!                  └─ Live hub             (live.rs)
//! ```
//!
//! Every supervisor uses the one [`supervision::RestartPolicy`]. State that must
//! outlive a restart (latest values, subscribers, the historian's buffer) lives in
//! shared handles ([`shared`]) passed to each new life of an actor.

pub mod alarm_writer;
pub mod alerts;
pub mod cache;
pub mod catalog;
pub mod data_path;
pub mod device;
pub mod historian;
pub mod live;
pub mod root;
pub mod shared;
pub mod supervision;
pub mod tenant;

pub use root::{RootActor, RootArgs, RootMsg, TenantWorld};
pub use shared::{Runtime, TenantShared};
pub use tenant::DeviceWorld;
