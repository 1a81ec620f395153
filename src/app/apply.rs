//! Applying the configured world to the store: tenants with their quotas, units,
//! devices (secrets sealed), tags and their alarm rules, refused when a tenant exceeds its quotas; and
//! loading the world back for the actor tree.

use std::collections::HashMap;

use crate::actors::TenantWorld;
use crate::config::Config;
use crate::domain::{DeviceSpec, QuotaOverrides, QuotaViolation, TagSpec, UnitSpec};
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
    /// An alarm rule that does not convert (the loader checks them first).
    #[error("alarm rule: {0}")]
    Rule(String),
    /// The configuration declares more than the tenant's quotas allow.
    #[error("tenant `{tenant}`: QUOTA_EXCEEDED: {violation}{what}")]
    Quota {
        tenant: String,
        violation: QuotaViolation,
        what: String,
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

/// Creates or updates the configured tenants (with their quotas), units, devices and
/// tags in the store, by name; nothing is deleted. Refuses, before writing any device,
/// a tenant whose declared devices, tags or poll periods exceed its quotas. Device
/// secrets are sealed with `THERMACORE_SECRET_KEY`; secrets already stored must open
/// with it.
pub async fn apply_config(store: &dyn Store, config: &Config) -> Result<(), ApplyError> {
    let key = secret_key(config)?;
    check_stored_secrets(store, key.as_ref()).await?;
    for t in &config.tenants {
        let tenant = store.upsert_tenant(t.name.get_ref()).await?;
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
        check_quotas(store, t, tenant.id, &overrides.over(&config.quotas)).await?;
        let mut units = HashMap::new();
        for u in &t.units {
            let spec = UnitSpec {
                name: u.name.get_ref().clone(),
                location: u.location,
                description: u.description.clone(),
            };
            let unit = store.upsert_unit(tenant.id, &spec).await?;
            units.insert(spec.name, unit.id);
        }
        let unit_of = |name: &Option<toml::Spanned<String>>| {
            name.as_ref().and_then(|n| units.get(n.get_ref()).copied())
        };
        for d in &t.devices {
            let security = match &key {
                Some(key) => d.security.seal(key)?,
                // secret_key() made sure there is nothing to seal.
                None => d.security.without_secrets(),
            };
            let spec = DeviceSpec {
                name: d.name.get_ref().clone(),
                unit: unit_of(&d.unit),
                enabled: d.enabled,
                poll_ms: d.poll_ms,
                driver: d.driver.clone(),
                security,
            };
            let device = store.upsert_device(tenant.id, &spec).await?;
            let declared = d.tags.iter().map(|g| TagSpec {
                name: g.name.get_ref().clone(),
                unit: unit_of(&g.unit),
                address: g.address.get_ref().clone(),
                data_type: g.data_type,
                scale: g.scale,
                offset: g.offset,
                eng_unit: g.eng_unit.clone(),
                deadband: g.deadband,
                writable: g.writable,
            });
            for (i, tag) in declared.chain(d.driver.generated_tags()).enumerate() {
                let tag = store.upsert_tag(tenant.id, device.id, &tag).await?;
                // Declared tags come first; generated ones declare no alarms.
                for alarm in d.tags.get(i).map_or(&[][..], |g| &g.alarms) {
                    // Checked when the file was loaded.
                    let spec = alarm.to_spec().map_err(ApplyError::Rule)?;
                    store.upsert_alarm_rule(tenant.id, tag.id, &spec).await?;
                }
            }
        }
    }
    Ok(())
}

/// Refuses a tenant section that would exceed the tenant's quotas.
async fn check_quotas(
    store: &dyn Store,
    t: &crate::config::TenantConfig,
    tenant: crate::domain::TenantId,
    quotas: &crate::domain::Quotas,
) -> Result<(), ApplyError> {
    let quota = |violation: QuotaViolation, what: String| ApplyError::Quota {
        tenant: t.name.get_ref().clone(),
        violation,
        what,
    };
    for d in &t.devices {
        quotas
            .check_poll(d.poll_ms)
            .map_err(|v| quota(v, format!(" (device `{}`)", d.name.get_ref())))?;
    }
    let devices = store.devices(tenant).await?;
    let device_names: HashMap<_, _> = devices
        .iter()
        .map(|d| (d.id, d.spec.name.as_str()))
        .collect();
    let mut all_devices: std::collections::HashSet<&str> = device_names.values().copied().collect();
    let existing_tags = store.tags(tenant, None).await?;
    let mut all_tags: std::collections::HashSet<(String, String)> = existing_tags
        .iter()
        .filter_map(|g| {
            device_names
                .get(&g.device)
                .map(|d| (d.to_string(), g.spec.name.clone()))
        })
        .collect();
    for d in &t.devices {
        all_devices.insert(d.name.get_ref());
        let declared = d.tags.iter().map(|g| g.name.get_ref().clone());
        let generated = d.driver.generated_tags().into_iter().map(|g| g.name);
        for name in declared.chain(generated) {
            all_tags.insert((d.name.get_ref().clone(), name));
        }
    }
    quotas
        .check_counts(all_devices.len() as u64, all_tags.len() as u64)
        .map_err(|v| quota(v, String::new()))
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
