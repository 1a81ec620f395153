//! Plain data types shared by every layer: ids, values, samples and the configured world.

mod device_security;
mod ids;
mod model;
mod security;
mod value;

pub use device_security::{
    DeviceCredentials, DeviceSecurity, DeviceTls, OpenedSecurity, SECRET_MASK,
};
pub use ids::{DeviceId, RuleId, TagId, TenantId, UnitId, UserId};
pub use model::{
    DataType, Device, DeviceSpec, Location, LocationError, Role, Tag, TagSpec, Tenant, Unit,
    UnitSpec, User,
};
pub use security::{
    AuditFilter, AuditOutcome, AuditRecord, QuotaOverrides, QuotaViolation, Quotas, RefreshToken,
    RefreshUse, TenantRecord, UserState,
};
pub use value::{Quality, QualityReason, Sample, SampleBatch, Timestamp, Value, ValueKind};
