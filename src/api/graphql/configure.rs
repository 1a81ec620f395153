//! What the configuration mutations share: a change of the caller's tenant through
//! the live configuration ([`crate::manage`]) with the tenant's quotas and the
//! secret key, its objects noted in the mutation's audit record, a change stored but
//! not applied to a running device reported as DEVICE_ERROR; and the inputs (driver
//! and security JSON, alarm rules, data types, unit ids) read with the field at fault.

use async_graphql::{Context, ID, Json};

use super::{ApiError, api, fail, tenant};
use crate::api::audit::note;
use crate::config::AlarmConfig;
use crate::config::draft::{Draft, RuleDraft};
use crate::domain::{DataType, OpenedSecurity, Quotas, UnitId};
use crate::drivers::DriverConfig;
use crate::manage::{self, Edit, Env, FieldError, ManageError, Outcome, Stored};

/// The caller's tenant's quotas: its own over the defaults.
pub(crate) async fn quotas(
    ctx: &Context<'_>,
    tenant: crate::domain::TenantId,
) -> async_graphql::Result<Quotas> {
    let a = api(ctx);
    let record = a
        .store
        .tenant_record(tenant)
        .await
        .map_err(|e| fail(ctx, e))?;
    let defaults = a.gate.defaults();
    Ok(record.map_or(defaults, |r| r.quotas.over(&defaults)))
}

/// Makes a change of the caller's tenant (see [`manage::change`]) and notes what it
/// did in the audit record. A change stored that a running device could not take is
/// DEVICE_ERROR, naming the devices (which show the error in their status).
pub(crate) async fn change<'a, F>(
    ctx: &Context<'_>,
    dry_run: bool,
    edit: F,
) -> async_graphql::Result<Outcome>
where
    F: FnOnce(&Stored, &mut Draft) -> Result<Edit<'a>, ManageError>,
{
    let a = api(ctx);
    let t = tenant(ctx)?;
    let env = Env {
        store: a.store.as_ref(),
        quotas: quotas(ctx, t.tenant.id).await?,
        key: a.runtime.secret_key.as_deref(),
    };
    let outcome = manage::change(&env, &t, dry_run, edit)
        .await
        .map_err(|e| fail(ctx, ApiError::from(e)))?;
    if outcome.applied && !outcome.changes.is_empty() {
        let changes = serde_json::to_string(&outcome.changes).ok();
        note(ctx, |n| n.changes = changes);
    }
    if !outcome.failed.is_empty() {
        let failed: Vec<String> = outcome
            .failed
            .iter()
            .map(|(device, why)| format!("device `{device}`: {why}"))
            .collect();
        return Err(fail(
            ctx,
            ApiError::Device(format!(
                "saved, but not applied to the running devices: {}",
                failed.join("; ")
            )),
        ));
    }
    Ok(outcome)
}

/// Input that could not be read: every field at fault.
pub(crate) fn invalid(ctx: &Context<'_>, errors: Vec<FieldError>) -> async_graphql::Error {
    fail(ctx, ApiError::Invalid(errors))
}

fn field_error(path: &str, e: impl std::fmt::Display) -> FieldError {
    FieldError {
        path: path.to_string(),
        message: e.to_string(),
        quota: None,
    }
}

/// A driver section (`{"protocol": "modbus", …}`).
pub(crate) fn driver(
    value: &Json<serde_json::Value>,
    path: &str,
) -> Result<DriverConfig, FieldError> {
    DriverConfig::from_json(&value.0).map_err(|e| at(path, e))
}

/// A section's error under the input's `path` (`input.driver` + `port`).
fn at(path: &str, (key, message): (String, String)) -> FieldError {
    let path = if key.is_empty() {
        path.to_string()
    } else {
        format!("{path}.{key}")
    };
    field_error(&path, message)
}

/// A security section (`require_tls`, `tls`, `credentials`).
pub(crate) fn security(
    value: Option<&Json<serde_json::Value>>,
    path: &str,
) -> Result<OpenedSecurity, FieldError> {
    match value {
        None => Ok(OpenedSecurity::default()),
        Some(v) => crate::config::json_section(&v.0).map_err(|e| at(path, e)),
    }
}

/// Alarm rules with the config file's keys; each rule's own conversion errors at
/// `path[i]`.
pub(crate) fn alarms(
    value: &Json<serde_json::Value>,
    path: &str,
) -> Result<Vec<RuleDraft>, Vec<FieldError>> {
    let configs: Vec<AlarmConfig> = manage::from_json(&value.0)
        .map_err(|e| vec![field_error(&format!("{path}{}", e.path), e.message)])?;
    let mut errors = Vec::new();
    let rules = configs
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a.to_spec() {
            Ok(spec) => Some(RuleDraft { id: None, spec }),
            Err(e) => {
                errors.push(field_error(&format!("{path}[{i}]"), e));
                None
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

pub(crate) fn data_type(value: &str, path: &str) -> Result<DataType, FieldError> {
    value.parse().map_err(|e: String| field_error(path, e))
}

/// The name of one of the tenant's units, or NOT_FOUND.
pub(crate) fn unit_name(stored: &Stored, id: &ID) -> Result<String, ManageError> {
    id.parse::<UnitId>()
        .ok()
        .and_then(|u| stored.unit_name(u))
        .map(str::to_string)
        .ok_or(ManageError::NotFound("unit"))
}

/// Reads several inputs, keeping every error, so that one answer names every field at
/// fault.
#[derive(Default)]
pub(crate) struct Reading(Vec<FieldError>);

impl Reading {
    pub(crate) fn one<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    pub(crate) fn many<T>(&mut self, r: Result<T, Vec<FieldError>>) -> Option<T> {
        r.map_err(|e| self.0.extend(e)).ok()
    }

    /// BAD_USER_INPUT with every error read, if any.
    pub(crate) fn finish(self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(invalid(ctx, self.0))
        }
    }
}
