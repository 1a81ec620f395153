//! What both backends share below the [`Store`](super::Store) trait: telling a
//! connection failure from a query failure, and turning stored rows back into domain
//! records, with [`Error::Corrupt`] naming the column when a row does not decode.

use sqlx::FromRow;

use super::{Error, Result, codec};
use crate::domain::{
    DataType, Device, DeviceId, DeviceSecurity, DeviceSpec, Location, Role, Sample, Tag, TagId,
    TagSpec, TenantId, Timestamp, Unit, UnitId, UnitSpec, User, UserId,
};
use crate::drivers::DriverConfig;

/// True for errors that say "the database cannot be reached or is busy", as opposed to
/// "this query is wrong".
pub(super) fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else { return false };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite_code_unavailable(&code)
            } else {
                postgres_state_unavailable(&code)
            }
        }
        _ => false,
    }
}

/// SQLite reports extended result codes; the primary code is the low byte.
fn sqlite_code_unavailable(code: &str) -> bool {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    code.parse::<i32>()
        .is_ok_and(|c| matches!(c & 0xff, BUSY | LOCKED | IOERR | FULL | CANTOPEN))
}

/// SQLSTATE class 08 (connection exception), too many connections, server shutting
/// down or starting, and a read-only standby after a fail-over.
fn postgres_state_unavailable(state: &str) -> bool {
    state.starts_with("08") || matches!(state, "53300" | "57P01" | "57P02" | "57P03" | "25006")
}

/// Maps a failed insert: unique violation → `Conflict`, foreign-key violation (the
/// tenant does not exist) → `NotFound`, anything else through `classify`.
pub(super) fn insert_error(e: sqlx::Error, what: impl FnOnce() -> String, parent: &str) -> Error {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return Error::Conflict(what());
        }
        if db.is_foreign_key_violation() {
            return Error::NotFound(parent.to_string());
        }
    }
    Error::from(e)
}

/// Rejects a value the schema cannot hold, as a query error.
pub(super) fn invalid(msg: String) -> Error {
    Error::Database(sqlx::Error::InvalidArgument(msg))
}

/// A bucket width in microseconds, refused when it is not positive or overflows.
pub(super) fn bucket_width(bucket_secs: i64) -> Result<i64, Error> {
    bucket_secs
        .checked_mul(1_000_000)
        .filter(|w| *w > 0)
        .ok_or_else(|| invalid(format!("bucket of {bucket_secs} s")))
}

/// `poll_ms` is stored in a signed 64-bit column.
pub(super) fn poll_ms_column(poll_ms: u64) -> Result<i64> {
    i64::try_from(poll_ms).map_err(|_| invalid(format!("poll_ms {poll_ms} is too large")))
}

/// The columns of a [`UserRow`], in its order.
pub(super) const USER_COLUMNS: &str =
    "id, tenant_id, username, password_hash, role, disabled, tokens_valid_after, dev_credential";

#[derive(FromRow)]
pub(super) struct UserRow {
    id: i64,
    tenant_id: i64,
    username: String,
    password_hash: String,
    role: String,
    disabled: bool,
    tokens_valid_after: i64,
    dev_credential: bool,
}

impl TryFrom<UserRow> for User {
    type Error = Error;
    fn try_from(r: UserRow) -> Result<Self> {
        Ok(User {
            id: UserId(r.id),
            tenant: TenantId(r.tenant_id),
            role: r
                .role
                .parse::<Role>()
                .map_err(|e| Error::Corrupt(format!("users.role of user {}: {e}", r.id)))?,
            username: r.username,
            password_hash: r.password_hash,
            disabled: r.disabled,
            tokens_valid_after_ms: r.tokens_valid_after,
            dev_credential: r.dev_credential,
        })
    }
}

#[derive(FromRow)]
pub(super) struct UnitRow {
    id: i64,
    tenant_id: i64,
    name: String,
    lat: Option<f64>,
    lon: Option<f64>,
    description: Option<String>,
}

impl TryFrom<UnitRow> for Unit {
    type Error = Error;
    fn try_from(r: UnitRow) -> Result<Self> {
        let location = match (r.lat, r.lon) {
            (None, None) => None,
            (Some(lat), Some(lon)) => Some(
                Location::new(lat, lon)
                    .map_err(|e| Error::Corrupt(format!("units.lat/lon of unit {}: {e}", r.id)))?,
            ),
            _ => {
                return Err(Error::Corrupt(format!(
                    "units.lat/lon of unit {}: only one of them is set",
                    r.id
                )));
            }
        };
        Ok(Unit {
            id: UnitId(r.id),
            tenant: TenantId(r.tenant_id),
            spec: UnitSpec {
                name: r.name,
                location,
                description: r.description,
            },
        })
    }
}

#[derive(FromRow)]
pub(super) struct DeviceRow {
    id: i64,
    tenant_id: i64,
    unit_id: Option<i64>,
    name: String,
    enabled: bool,
    poll_ms: i64,
    driver_config: String,
    security: Option<String>,
}

/// The `security` column: NULL when nothing is set, else JSON with sealed secrets.
pub(super) fn security_column(spec: &DeviceSpec) -> Result<Option<String>> {
    if spec.security.is_default() {
        return Ok(None);
    }
    serde_json::to_string(&spec.security)
        .map(Some)
        .map_err(|e| invalid(format!("security of `{}`: {e}", spec.name)))
}

impl TryFrom<DeviceRow> for Device {
    type Error = Error;
    fn try_from(r: DeviceRow) -> Result<Self> {
        let poll_ms = u64::try_from(r.poll_ms).map_err(|_| {
            Error::Corrupt(format!("devices.poll_ms of device {}: {}", r.id, r.poll_ms))
        })?;
        let driver: DriverConfig = serde_json::from_str(&r.driver_config).map_err(|e| {
            Error::Corrupt(format!("devices.driver_config of device {}: {e}", r.id))
        })?;
        let security = match &r.security {
            None => DeviceSecurity::default(),
            // The error names the column, never the content.
            Some(json) => serde_json::from_str(json).map_err(|e| {
                Error::Corrupt(format!(
                    "devices.security of device {}: {:?} error at column {}",
                    r.id,
                    e.classify(),
                    e.column()
                ))
            })?,
        };
        Ok(Device {
            id: DeviceId(r.id),
            tenant: TenantId(r.tenant_id),
            spec: DeviceSpec {
                name: r.name,
                unit: r.unit_id.map(UnitId),
                enabled: r.enabled,
                poll_ms,
                driver,
                security,
            },
        })
    }
}

#[derive(FromRow)]
pub(super) struct TagRow {
    id: i64,
    tenant_id: i64,
    device_id: i64,
    unit_id: Option<i64>,
    name: String,
    address: String,
    data_type: String,
    scale: f64,
    offset: f64,
    eng_unit: Option<String>,
    deadband: f64,
    writable: bool,
}

impl TryFrom<TagRow> for Tag {
    type Error = Error;
    fn try_from(r: TagRow) -> Result<Self> {
        let data_type = r
            .data_type
            .parse::<DataType>()
            .map_err(|e| Error::Corrupt(format!("tags.data_type of tag {}: {e}", r.id)))?;
        Ok(Tag {
            id: TagId(r.id),
            tenant: TenantId(r.tenant_id),
            device: DeviceId(r.device_id),
            spec: TagSpec {
                name: r.name,
                unit: r.unit_id.map(UnitId),
                address: r.address,
                data_type,
                scale: r.scale,
                offset: r.offset,
                eng_unit: r.eng_unit,
                deadband: r.deadband,
                writable: r.writable,
            },
        })
    }
}

/// The stored columns of one sample, whatever the backend's layout.
pub(super) struct SampleColumns {
    pub tag: i64,
    pub ts: Timestamp,
    pub server_ts: Timestamp,
    pub code: i32,
    pub num: Option<f64>,
    pub int: Option<i64>,
    pub text: Option<String>,
}

impl TryFrom<SampleColumns> for Sample {
    type Error = Error;
    fn try_from(c: SampleColumns) -> Result<Self> {
        let SampleColumns {
            tag,
            ts,
            server_ts,
            code,
            num,
            int,
            text,
        } = c;
        let corrupt = |what: &str| {
            Error::Corrupt(format!(
                "samples.{what} of tag {tag} at {} µs (code {code})",
                ts.0
            ))
        };
        let (kind, quality) = codec::decode_code(code).ok_or_else(|| corrupt("code"))?;
        let value = codec::decode_value(kind, num, int, text).ok_or_else(|| corrupt("value"))?;
        Ok(Sample {
            tag: TagId(tag),
            value,
            quality,
            source_time: ts,
            server_time: server_ts,
        })
    }
}
