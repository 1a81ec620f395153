//! The configured world: tenants, users, units, devices and tags, each upserted by its
//! natural key and always read within one tenant.
//!
//! The SQL is the same for both backends (`$n` parameters, `ON CONFLICT … RETURNING`),
//! so this file is compiled twice, as `sqlite::world` and `postgres::world`, each time
//! against its parent's concrete `Pool` type: no generic bounds, no copy to drift.

use super::{Pool, next_id};

use crate::domain::{
    Device, DeviceId, DeviceSpec, Role, Tag, TagId, TagSpec, Tenant, TenantId, Unit, UnitId,
    UnitSpec, User, UserId,
};
use crate::storage::rows::{
    DeviceRow, TagRow, USER_COLUMNS, UnitRow, UserRow, insert_error, invalid, poll_ms_column,
    security_column,
};
use crate::storage::{Error, Result};

pub(super) async fn upsert_tenant(pool: &Pool, name: &str) -> Result<Tenant> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tenants (name) VALUES ($1) \
         ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
    )
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok(Tenant {
        id: TenantId(id),
        name: name.to_string(),
    })
}

pub(super) async fn tenant_by_name(pool: &Pool, name: &str) -> Result<Option<Tenant>> {
    let row: Option<(i64, String)> = sqlx::query_as("SELECT id, name FROM tenants WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(id, name)| Tenant {
        id: TenantId(id),
        name,
    }))
}

pub(super) async fn tenants(pool: &Pool) -> Result<Vec<Tenant>> {
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM tenants ORDER BY id")
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name)| Tenant {
            id: TenantId(id),
            name,
        })
        .collect())
}

pub(super) async fn create_user(
    pool: &Pool,
    tenant: TenantId,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<User> {
    let sql = format!(
        "INSERT INTO users (tenant_id, username, password_hash, role) \
         VALUES ($1, $2, $3, $4) RETURNING {USER_COLUMNS}"
    );
    let row: UserRow = sqlx::query_as(&sql)
        .bind(tenant.0)
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .fetch_one(pool)
        .await
        .map_err(|e| {
            insert_error(
                e,
                || format!("user `{username}` in tenant {tenant}"),
                &format!("tenant {tenant}"),
            )
        })?;
    row.try_into()
}

pub(super) async fn set_user_password(
    pool: &Pool,
    tenant: TenantId,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<User> {
    let sql = format!(
        "UPDATE users SET password_hash = $3, role = $4, dev_credential = FALSE, \
         tokens_valid_after = $5 WHERE tenant_id = $1 AND username = $2 RETURNING {USER_COLUMNS}"
    );
    // A reset password ends every token issued before it.
    let row: Option<UserRow> = sqlx::query_as(&sql)
        .bind(tenant.0)
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(chrono::Utc::now().timestamp_millis())
        .fetch_optional(pool)
        .await?;
    row.ok_or_else(|| Error::NotFound(format!("user `{username}` in tenant {tenant}")))?
        .try_into()
}

pub(super) async fn user_by_name(
    pool: &Pool,
    tenant: TenantId,
    username: &str,
) -> Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND username = $2");
    let row: Option<UserRow> = sqlx::query_as(&sql)
        .bind(tenant.0)
        .bind(username)
        .fetch_optional(pool)
        .await?;
    row.map(User::try_from).transpose()
}

pub(super) async fn user_by_id(pool: &Pool, tenant: TenantId, id: UserId) -> Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2");
    let row: Option<UserRow> = sqlx::query_as(&sql)
        .bind(tenant.0)
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    row.map(User::try_from).transpose()
}

pub(super) async fn upsert_unit(pool: &Pool, tenant: TenantId, spec: &UnitSpec) -> Result<Unit> {
    let sql = format!(
        "INSERT INTO units (id, tenant_id, name, lat, lon, description) \
         VALUES ({}, $1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id, name) DO UPDATE \
         SET lat = excluded.lat, lon = excluded.lon, description = excluded.description \
         RETURNING id",
        next_id("units")
    );
    let id: i64 = sqlx::query_scalar(&sql)
        .bind(tenant.0)
        .bind(&spec.name)
        .bind(spec.location.map(|l| l.lat))
        .bind(spec.location.map(|l| l.lon))
        .bind(spec.description.as_deref())
        .fetch_one(pool)
        .await
        .map_err(|e| insert_error(e, || spec.name.clone(), &format!("tenant {tenant}")))?;
    Ok(Unit {
        id: UnitId(id),
        tenant,
        spec: spec.clone(),
    })
}

pub(super) async fn upsert_device(
    pool: &Pool,
    tenant: TenantId,
    spec: &DeviceSpec,
) -> Result<Device> {
    let driver_config = serde_json::to_string(&spec.driver)
        .map_err(|e| invalid(format!("driver config of `{}`: {e}", spec.name)))?;
    let security = security_column(spec)?;
    // The unit, if any, must be one of this tenant's: otherwise nothing is inserted.
    let sql = format!(
        "INSERT INTO devices (id, tenant_id, unit_id, name, enabled, poll_ms, protocol, \
         driver_config, security) SELECT {}, $1, $2, $3, $4, $5, $6, $7, $8 \
         WHERE $2 IS NULL OR EXISTS (SELECT 1 FROM units WHERE id = $2 AND tenant_id = $1) \
         ON CONFLICT (tenant_id, name) DO UPDATE SET unit_id = excluded.unit_id, \
         enabled = excluded.enabled, poll_ms = excluded.poll_ms, \
         protocol = excluded.protocol, driver_config = excluded.driver_config, \
         security = excluded.security RETURNING id",
        next_id("devices")
    );
    let id: Option<i64> = sqlx::query_scalar(&sql)
        .bind(tenant.0)
        .bind(spec.unit.map(|u| u.0))
        .bind(&spec.name)
        .bind(spec.enabled)
        .bind(poll_ms_column(spec.poll_ms)?)
        .bind(spec.driver.protocol())
        .bind(&driver_config)
        .bind(security.as_deref())
        .fetch_optional(pool)
        .await
        .map_err(|e| insert_error(e, || spec.name.clone(), &format!("tenant {tenant}")))?;
    let id = id.ok_or_else(|| unit_not_found(tenant, spec.unit))?;
    Ok(Device {
        id: DeviceId(id),
        tenant,
        spec: spec.clone(),
    })
}

pub(super) async fn upsert_tag(
    pool: &Pool,
    tenant: TenantId,
    device: DeviceId,
    spec: &TagSpec,
) -> Result<Tag> {
    // Selecting from the tenant's own devices is the isolation check: another
    // tenant's device id (or unit id) inserts nothing.
    let sql = format!(
        "INSERT INTO tags (id, tenant_id, device_id, unit_id, name, address, data_type, \
         scale, \"offset\", eng_unit, deadband, writable) \
         SELECT {}, d.tenant_id, d.id, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM devices d \
         WHERE d.id = $2 AND d.tenant_id = $1 \
         AND ($3 IS NULL OR EXISTS (SELECT 1 FROM units WHERE id = $3 AND tenant_id = $1)) \
         ON CONFLICT (device_id, name) DO UPDATE SET unit_id = excluded.unit_id, \
         address = excluded.address, data_type = excluded.data_type, scale = excluded.scale, \
         \"offset\" = excluded.\"offset\", eng_unit = excluded.eng_unit, \
         deadband = excluded.deadband, writable = excluded.writable \
         RETURNING id",
        next_id("tags")
    );
    let id: Option<i64> = sqlx::query_scalar(&sql)
        .bind(tenant.0)
        .bind(device.0)
        .bind(spec.unit.map(|u| u.0))
        .bind(&spec.name)
        .bind(&spec.address)
        .bind(spec.data_type.as_str())
        .bind(spec.scale)
        .bind(spec.offset)
        .bind(spec.eng_unit.as_deref())
        .bind(spec.deadband)
        .bind(spec.writable)
        .fetch_optional(pool)
        .await?;
    let Some(id) = id else {
        let own_device = !devices(pool, tenant, Some(device)).await?.is_empty();
        return Err(if own_device {
            unit_not_found(tenant, spec.unit)
        } else {
            Error::NotFound(format!("device {device} in tenant {tenant}"))
        });
    };
    Ok(Tag {
        id: TagId(id),
        tenant,
        device,
        spec: spec.clone(),
    })
}

fn unit_not_found(tenant: TenantId, unit: Option<UnitId>) -> Error {
    match unit {
        Some(unit) => Error::NotFound(format!("unit {unit} in tenant {tenant}")),
        None => Error::NotFound(format!("tenant {tenant}")),
    }
}

pub(super) async fn units(pool: &Pool, tenant: TenantId) -> Result<Vec<Unit>> {
    let rows: Vec<UnitRow> = sqlx::query_as(
        "SELECT id, tenant_id, name, lat, lon, description FROM units \
         WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(tenant.0)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Unit::try_from).collect()
}

/// The tenant's devices, or the one with id `only` if it is the tenant's.
pub(super) async fn devices(
    pool: &Pool,
    tenant: TenantId,
    only: Option<DeviceId>,
) -> Result<Vec<Device>> {
    let rows: Vec<DeviceRow> = sqlx::query_as(
        "SELECT id, tenant_id, unit_id, name, enabled, poll_ms, driver_config, security \
         FROM devices \
         WHERE tenant_id = $1 AND ($2 IS NULL OR id = $2) ORDER BY id",
    )
    .bind(tenant.0)
    .bind(only.map(|d| d.0))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Device::try_from).collect()
}

pub(super) async fn tags(
    pool: &Pool,
    tenant: TenantId,
    device: Option<DeviceId>,
) -> Result<Vec<Tag>> {
    let rows: Vec<TagRow> = sqlx::query_as(
        "SELECT id, tenant_id, device_id, unit_id, name, address, data_type, scale, \
         \"offset\", eng_unit, deadband, writable FROM tags \
         WHERE tenant_id = $1 AND ($2 IS NULL OR device_id = $2) ORDER BY id",
    )
    .bind(tenant.0)
    .bind(device.map(|d| d.0))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Tag::try_from).collect()
}
