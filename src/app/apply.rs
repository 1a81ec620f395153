//! Applying the configured world to the store at start-up: tenants with their
//! quotas, then each tenant's units, devices (secrets sealed), tags and alarm rules
//! through the live configuration's planner, refused when a tenant exceeds its
//! quotas; and loading the world back for the actor tree.

use crate::actors::TenantWorld;
use crate::config::Config;
use crate::config::draft::Draft;
use crate::domain::QuotaOverrides;
use crate::manage::{self, Env, FieldError, ManageError, Op};
use crate::secrets::{SecretError, SecretKey};
use crate::storage::{self, Store};

/// Why the configured world could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] storage::Error),
    /// Device secrets cannot be sealed or opened (missing or changed key).
    #[error("device secrets: {0}")]
    Secret(#[from] SecretError),
    /// The tenant's section breaks a rule only the stored world and the tenant's
    /// quotas can tell (QUOTA_EXCEEDED …): every problem, by the names of its objects.
    #[error("tenant `{tenant}`: {}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        tenant: String,
        errors: Vec<FieldError>,
    },
}

impl ApplyError {
    /// Whether trying again later can help (the store was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, ApplyError::Store(storage::Error::Unavailable(_)))
    }
}

/// The key of `THERMACORE_SECRET_KEY`, checked: a malformed key, or a device that
/// declares secrets while no key is set, is an error naming the device.
pub fn secret_key(config: &Config) -> Result<Option<SecretKey>, SecretError> {
    let key = SecretKey::from_config(config)?;
    if key.is_none() {
        for t in &config.tenants {
            if let Some(d) = t.devices.iter().find(|d| d.security.has_secrets()) {
                return Err(SecretError::MissingKey {
                    device: format!("{}/{}", t.name.get_ref(), d.name.get_ref()),
                });
            }
        }
    }
    Ok(key)
}

/// Fails if a device's stored secrets do not open with `key` (a changed or missing
/// `THERMACORE_SECRET_KEY`), before anything is overwritten.
pub async fn check_stored_secrets(
    store: &dyn Store,
    key: Option<&SecretKey>,
) -> Result<(), ApplyError> {
    for tenant in store.tenants().await? {
        for d in store.devices(tenant.id).await? {
            let name = format!("{}/{}", tenant.name, d.spec.name);
            d.spec.security.open_for(&name, key)?;
        }
    }
    Ok(())
}

/// Applies the configured tenants (with their quotas), units, devices, tags and
/// alarm rules to the store through the live configuration's planner
/// ([`manage::seed`]): declared objects are created or updated by name, and with
/// `manage = "replace"` a tenant's objects the file does not declare are deleted.
/// Refuses, before writing any of a tenant's objects, a section that would exceed its
/// quotas. Device secrets are sealed with `THERMACORE_SECRET_KEY`; secrets already
/// stored must open with it.
pub async fn apply_config(store: &dyn Store, config: &Config) -> Result<(), ApplyError> {
    let key = secret_key(config)?;
    check_stored_secrets(store, key.as_ref()).await?;
    for t in &config.tenants {
        let name = t.name.get_ref();
        let tenant = store.upsert_tenant(name).await?;
        let mut overrides = store
            .tenant_record(tenant.id)
            .await?
            .map(|r| r.quotas)
            .unwrap_or_default();
        if t.quotas != QuotaOverrides::default() {
            // Declared quotas win over ones set through the API.
            overrides.merge(&t.quotas);
            store.set_tenant_quotas(tenant.id, &overrides).await?;
        }
        let env = Env {
            store,
            quotas: overrides.over(&config.quotas),
            key: key.as_ref(),
        };
        let invalid = |errors: Vec<FieldError>| ApplyError::Invalid {
            tenant: name.clone(),
            errors,
        };
        let declared = Draft::from_config(&t.units, &t.devices);
        match manage::seed(&env, tenant.id, declared, t.manage).await {
            Ok(changes) if changes.is_empty() => {}
            Ok(changes) => {
                let count = |op| changes.iter().filter(|c| c.op == op).count();
                tracing::info!(tenant = %name, created = count(Op::Create), updated = count(Op::Update),
                    deleted = count(Op::Delete), "configuration file applied");
            }
            Err(ManageError::Store(e)) => return Err(e.into()),
            Err(ManageError::Invalid(errors)) => return Err(invalid(errors)),
            Err(other) => {
                return Err(invalid(vec![FieldError {
                    path: String::new(),
                    message: other.to_string(),
                    quota: None,
                }]));
            }
        }
    }
    Ok(())
}

/// Loads every enabled tenant with its devices and tags (a disabled tenant's actors
/// do not run).
pub async fn load_world(store: &dyn Store) -> Result<Vec<TenantWorld>, storage::Error> {
    let mut worlds = Vec::new();
    for record in store.tenant_records().await? {
        if !record.disabled {
            worlds.push(TenantWorld::load(store, record.tenant).await?);
        }
    }
    Ok(worlds)
}
