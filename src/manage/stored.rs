//! One tenant's configured world as stored ([`Stored`], the storage layer's
//! snapshot), as the starting point of a change (its draft) and as what the running
//! tenant is told after it (its device worlds).

use std::collections::HashMap;
use std::sync::Arc;

use crate::actors::DeviceWorld;
use crate::config::draft::{DeviceDraft, Draft, RuleDraft, SecurityDraft, TagDraft, UnitDraft};
use crate::domain::{DeviceId, Tag, TagId, UnitId};

pub use crate::storage::Snapshot as Stored;

/// What the live configuration makes of a stored world.
pub trait Drafted {
    /// The stored world as a draft with ids: units, devices with their declared tags
    /// (not the ones their driver generates) and the tags' rules.
    fn draft(&self) -> Draft;

    fn worlds(&self) -> Vec<Arc<DeviceWorld>>;
}

impl Drafted for Stored {
    fn draft(&self) -> Draft {
        let unit_name = |u: Option<UnitId>| u.and_then(|u| self.unit_name(u)).map(str::to_string);
        let mut rules: HashMap<TagId, Vec<RuleDraft>> = HashMap::new();
        for r in &self.rules {
            rules.entry(r.tag).or_default().push(RuleDraft {
                id: Some(r.id),
                spec: r.spec.clone(),
            });
        }
        let mut tags: HashMap<DeviceId, Vec<&Tag>> = HashMap::new();
        for t in &self.tags {
            tags.entry(t.device).or_default().push(t);
        }
        let devices = self
            .devices
            .iter()
            .map(|d| {
                let generated: Vec<String> = d
                    .spec
                    .driver
                    .generated_tags()
                    .into_iter()
                    .map(|g| g.name)
                    .collect();
                DeviceDraft {
                    id: Some(d.id),
                    name: d.spec.name.clone(),
                    unit: unit_name(d.spec.unit),
                    enabled: d.spec.enabled,
                    poll_ms: d.spec.poll_ms,
                    driver: d.spec.driver.clone(),
                    security: SecurityDraft::Stored(d.spec.security.clone()),
                    tags: tags
                        .get(&d.id)
                        .into_iter()
                        .flatten()
                        .filter(|t| !generated.contains(&t.spec.name))
                        .map(|t| TagDraft {
                            id: Some(t.id),
                            unit: unit_name(t.spec.unit),
                            spec: t.spec.clone(),
                            alarms: rules.remove(&t.id).unwrap_or_default(),
                        })
                        .collect(),
                }
            })
            .collect();
        Draft {
            units: self
                .units
                .iter()
                .map(|u| UnitDraft {
                    id: Some(u.id),
                    spec: u.spec.clone(),
                })
                .collect(),
            devices,
        }
    }

    /// Every device with all its stored tags, as the tenant actor runs them.
    fn worlds(&self) -> Vec<Arc<DeviceWorld>> {
        let mut tags: HashMap<DeviceId, Vec<Tag>> = HashMap::new();
        for t in &self.tags {
            tags.entry(t.device).or_default().push(t.clone());
        }
        self.devices
            .iter()
            .map(|d| {
                Arc::new(DeviceWorld {
                    device: d.clone(),
                    tags: tags.remove(&d.id).unwrap_or_default(),
                })
            })
            .collect()
    }
}
