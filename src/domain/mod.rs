//! Plain data types shared by every layer: ids, values, samples and the configured world.

mod ids;
mod model;
mod security;
mod value;

pub use ids::{DeviceId, TagId, TenantId, UnitId, UserId};
pub use model::{
    DataType, Device, DeviceSpec, Location, LocationError, Role, Tag, TagSpec, Tenant, Unit,
    UnitSpec, User,
};
pub use security::{DeviceCredentials, DeviceSecurity, DeviceTls, OpenedSecurity};
pub use value::{Quality, QualityReason, Sample, SampleBatch, Timestamp, Value, ValueKind};
