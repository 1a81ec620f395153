//! Tags created at run time: a device announced them (an MQTT topic template matched,
//! a Sparkplug B birth declared a metric) or an administrator imported them from the
//! device's address space (OPC UA). They are stored like configured tags, within the
//! tenant's `max_tags` quota, so that they keep their ids across restarts.

use std::sync::Arc;

use crate::domain::{DeviceId, Quotas, Tag, TagSpec};
use crate::storage::{self, Store};

use super::shared::TenantShared;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("store: {0}")]
    Store(#[from] storage::Error),
    #[error("QUOTA_EXCEEDED: max_tags is {max}; {refused} tag(s) not created")]
    Quota { max: u32, refused: usize },
}

pub struct TagCatalog {
    store: Arc<dyn Store>,
    defaults: Quotas,
}

impl TagCatalog {
    pub fn new(store: Arc<dyn Store>, defaults: Quotas) -> Self {
        TagCatalog { store, defaults }
    }

    /// Creates (or finds, by name) the tags on `device`. Within the quota, returns the
    /// tags created; the ones beyond it are refused together.
    pub async fn create(
        &self,
        tenant: &TenantShared,
        device: DeviceId,
        specs: Vec<TagSpec>,
    ) -> (Vec<Tag>, Option<CatalogError>) {
        let id = tenant.tenant.id;
        let quotas = match self.store.tenant_record(id).await {
            Ok(r) => r.map_or(self.defaults, |r| r.quotas.over(&self.defaults)),
            Err(e) => return (Vec::new(), Some(e.into())),
        };
        let have = tenant.tag_devices.len();
        let room = if quotas.max_tags == 0 {
            usize::MAX
        } else {
            (quotas.max_tags as usize).saturating_sub(have)
        };
        let refused = specs.len().saturating_sub(room);
        let mut created = Vec::with_capacity(specs.len().min(room));
        for spec in specs.into_iter().take(room) {
            match self.store.upsert_tag(id, device, &spec).await {
                Ok(t) => created.push(t),
                Err(e) => return (created, Some(e.into())),
            }
        }
        if !created.is_empty() {
            // The live configuration's snapshot of the tenant no longer holds them.
            tenant
                .config_generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        let error = (refused > 0).then_some(CatalogError::Quota {
            max: quotas.max_tags,
            refused,
        });
        (created, error)
    }

    /// The tags stored on `device`: configured ones and those created at run time
    /// (also by an earlier life of its actor).
    pub async fn tags_of(
        &self,
        tenant: &TenantShared,
        device: DeviceId,
    ) -> Result<Vec<Tag>, CatalogError> {
        Ok(self.store.tags(tenant.tenant.id, Some(device)).await?)
    }
}
