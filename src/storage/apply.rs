//! [`Store::apply_world`](crate::storage::Store::apply_world): a batch of configuration
//! writes in one transaction. Same SQL on both backends, compiled twice like
//! `world.rs`; new ids come from the parent's `next_id` (SQLite never hands out an id
//! of a deleted row again, PostgreSQL's sequences never do).

use super::{Pool, next_id};
use crate::alarms::RuleSpec;
use crate::domain::{DeviceId, RuleId, TagId, TenantId, UnitId};
use crate::storage::changes::{WorldChanges, WrittenIds};
use crate::storage::rows::{insert_error, invalid, poll_ms_column, security_column};
use crate::storage::{Error, Result};

fn rule_json(spec: &RuleSpec) -> Result<String> {
    serde_json::to_string(spec).map_err(|e| Error::Corrupt(format!("rule spec: {e}")))
}

/// Deletes one row of the tenant; a row that is not there (any more) fails the batch.
macro_rules! delete_row {
    ($tx:expr, $table:literal, $id:expr, $tenant:expr, $what:literal) => {{
        let done = sqlx::query(concat!(
            "DELETE FROM ",
            $table,
            " WHERE id = $1 AND tenant_id = $2"
        ))
        .bind($id)
        .bind($tenant.0)
        .execute(&mut *$tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!(
                "{} {} in tenant {}",
                $what, $id, $tenant
            )));
        }
    }};
}

pub(super) async fn apply_world(
    pool: &Pool,
    tenant: TenantId,
    c: &WorldChanges,
) -> Result<WrittenIds> {
    let scope = format!("tenant {tenant}");
    let mut tx = pool.begin().await?;
    for id in &c.delete_rules {
        delete_row!(tx, "alarm_rules", id.0, tenant, "alarm rule");
    }
    for id in &c.delete_tags {
        delete_row!(tx, "tags", id.0, tenant, "tag");
    }
    for id in &c.delete_devices {
        delete_row!(tx, "devices", id.0, tenant, "device");
    }
    for id in &c.delete_units {
        delete_row!(tx, "units", id.0, tenant, "unit");
    }

    let mut out = WrittenIds::default();
    let insert_unit = format!(
        "INSERT INTO units (id, tenant_id, name, lat, lon, description) \
         VALUES ({}, $1, $2, $3, $4, $5) RETURNING id",
        next_id("units")
    );
    for w in &c.units {
        let s = &w.spec;
        let sql = match w.id {
            None => insert_unit.as_str(),
            Some(_) => {
                "UPDATE units SET name = $2, lat = $3, lon = $4, description = $5 \
                 WHERE id = $6 AND tenant_id = $1 RETURNING id"
            }
        };
        let mut q = sqlx::query_scalar(sql)
            .bind(tenant.0)
            .bind(&s.name)
            .bind(s.location.map(|l| l.lat))
            .bind(s.location.map(|l| l.lon))
            .bind(s.description.as_deref());
        if let Some(id) = w.id {
            q = q.bind(id.0);
        }
        let id: Option<i64> = q
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| insert_error(e, || format!("unit `{}`", s.name), &scope))?;
        let id = id.ok_or_else(|| Error::NotFound(format!("unit `{}` in {scope}", s.name)))?;
        out.units.push(UnitId(id));
    }

    let insert_device = format!(
        "INSERT INTO devices (id, tenant_id, unit_id, name, enabled, poll_ms, protocol, \
         driver_config, security) SELECT {}, $1, $2, $3, $4, $5, $6, $7, $8 \
         WHERE $2 IS NULL OR EXISTS (SELECT 1 FROM units WHERE id = $2 AND tenant_id = $1) \
         RETURNING id",
        next_id("devices")
    );
    for w in &c.devices {
        let s = &w.spec;
        let unit = w
            .unit
            .map(|u| WrittenIds::resolve(u, &out.units, "unit"))
            .transpose()?;
        let driver = serde_json::to_string(&s.driver)
            .map_err(|e| invalid(format!("driver config of `{}`: {e}", s.name)))?;
        let security = security_column(s)?;
        let sql = match w.id {
            None => insert_device.as_str(),
            Some(_) => {
                "UPDATE devices SET unit_id = $2, name = $3, enabled = $4, poll_ms = $5, \
                 protocol = $6, driver_config = $7, security = $8 \
                 WHERE id = $9 AND tenant_id = $1 \
                 AND ($2 IS NULL OR EXISTS (SELECT 1 FROM units WHERE id = $2 AND tenant_id = $1)) \
                 RETURNING id"
            }
        };
        let mut q = sqlx::query_scalar(sql)
            .bind(tenant.0)
            .bind(unit.map(|u| u.0))
            .bind(&s.name)
            .bind(s.enabled)
            .bind(poll_ms_column(s.poll_ms)?)
            .bind(s.driver.protocol())
            .bind(driver)
            .bind(security);
        if let Some(id) = w.id {
            q = q.bind(id.0);
        }
        let id: Option<i64> = q
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| insert_error(e, || format!("device `{}`", s.name), &scope))?;
        let id = id.ok_or_else(|| {
            Error::NotFound(format!("device `{}` or its unit in {scope}", s.name))
        })?;
        out.devices.push(DeviceId(id));
    }

    let insert_tag = format!(
        "INSERT INTO tags (id, tenant_id, device_id, unit_id, name, address, data_type, \
         scale, \"offset\", eng_unit, deadband, writable) \
         SELECT {}, d.tenant_id, d.id, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM devices d \
         WHERE d.id = $2 AND d.tenant_id = $1 \
         AND ($3 IS NULL OR EXISTS (SELECT 1 FROM units WHERE id = $3 AND tenant_id = $1)) \
         RETURNING id",
        next_id("tags")
    );
    for w in &c.tags {
        let s = &w.spec;
        let unit = w
            .unit
            .map(|u| WrittenIds::resolve(u, &out.units, "unit"))
            .transpose()?;
        let device = WrittenIds::resolve(w.device, &out.devices, "device")?;
        let (sql, key) = match w.id {
            None => (insert_tag.as_str(), device.0),
            Some(id) => (
                "UPDATE tags SET unit_id = $3, name = $4, address = $5, data_type = $6, \
                 scale = $7, \"offset\" = $8, eng_unit = $9, deadband = $10, writable = $11 \
                 WHERE id = $2 AND tenant_id = $1 \
                 AND ($3 IS NULL OR EXISTS (SELECT 1 FROM units WHERE id = $3 AND tenant_id = $1)) \
                 RETURNING id",
                id.0,
            ),
        };
        let id: Option<i64> = sqlx::query_scalar(sql)
            .bind(tenant.0)
            .bind(key)
            .bind(unit.map(|u| u.0))
            .bind(&s.name)
            .bind(&s.address)
            .bind(s.data_type.as_str())
            .bind(s.scale)
            .bind(s.offset)
            .bind(s.eng_unit.as_deref())
            .bind(s.deadband)
            .bind(s.writable)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| insert_error(e, || format!("tag `{}`", s.name), &scope))?;
        let id = id.ok_or_else(|| {
            Error::NotFound(format!(
                "tag `{}`, its device or its unit in {scope}",
                s.name
            ))
        })?;
        out.tags.push(TagId(id));
    }

    let insert_rule = format!(
        "INSERT INTO alarm_rules (id, tenant_id, tag_id, name, spec) \
         SELECT {}, t.tenant_id, t.id, $3, $4 FROM tags t WHERE t.id = $2 AND t.tenant_id = $1 \
         RETURNING id",
        next_id("alarm_rules")
    );
    for w in &c.rules {
        let json = rule_json(&w.spec)?;
        let (sql, key) = match w.id {
            None => (
                insert_rule.as_str(),
                WrittenIds::resolve(w.tag, &out.tags, "tag")?.0,
            ),
            Some(id) => (
                "UPDATE alarm_rules SET name = $3, spec = $4 \
                 WHERE id = $2 AND tenant_id = $1 RETURNING id",
                id.0,
            ),
        };
        let id: Option<i64> = sqlx::query_scalar(sql)
            .bind(tenant.0)
            .bind(key)
            .bind(&w.spec.name)
            .bind(json)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| insert_error(e, || format!("alarm rule `{}`", w.spec.name), &scope))?;
        let id = id.ok_or_else(|| {
            Error::NotFound(format!(
                "alarm rule `{}` or its tag in {scope}",
                w.spec.name
            ))
        })?;
        out.rules.push(RuleId(id));
    }
    tx.commit().await?;
    Ok(out)
}
