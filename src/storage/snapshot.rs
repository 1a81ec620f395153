//! One tenant's configured world as stored: units, devices, tags and alarm rules read
//! in one go, and kept up to date by applying the batches written to it
//! ([`Snapshot::apply`]) instead of reading it again: the live configuration plans
//! each change against it.

use std::collections::HashSet;

use super::{Ref, Store, WorldChanges, WrittenIds};
use crate::alarms::Rule;
use crate::domain::{
    Device, DeviceId, DeviceSpec, RuleId, Tag, TagId, TagSpec, TenantId, Unit, UnitId,
};

/// Replaces the item of the same id, or adds it in id order.
fn upsert<T, I: Ord + Copy>(items: &mut Vec<T>, item: T, id: impl Fn(&T) -> I) {
    let key = id(&item);
    match items.binary_search_by_key(&key, &id) {
        Ok(i) => items[i] = item,
        Err(i) => items.insert(i, item),
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub units: Vec<Unit>,
    pub devices: Vec<Device>,
    pub tags: Vec<Tag>,
    pub rules: Vec<Rule>,
}

impl Snapshot {
    /// Everything of the tenant, each kind in id order (read concurrently).
    pub async fn load(store: &dyn Store, tenant: TenantId) -> super::Result<Snapshot> {
        let (units, devices, tags, rules) = tokio::try_join!(
            store.units(tenant),
            store.devices(tenant),
            store.tags(tenant, None),
            store.alarm_rules(tenant),
        )?;
        Ok(Snapshot {
            units,
            devices,
            tags,
            rules,
        })
    }

    /// The world as stored once `apply_world` wrote `c` with the ids `written`, without
    /// reading it back: deletions with their cascades (a device's tags, a tag's rules,
    /// a unit detached from what was in it), then the writes in order.
    pub fn apply(&mut self, tenant: TenantId, c: &WorldChanges, written: &WrittenIds) {
        let gone_units: HashSet<UnitId> = c.delete_units.iter().copied().collect();
        let gone_devices: HashSet<DeviceId> = c.delete_devices.iter().copied().collect();
        let gone_tags: HashSet<TagId> = c.delete_tags.iter().copied().collect();
        let gone_rules: HashSet<RuleId> = c.delete_rules.iter().copied().collect();
        let detach = |u: &mut Option<UnitId>| {
            if u.is_some_and(|u| gone_units.contains(&u)) {
                *u = None;
            }
        };
        self.units.retain(|u| !gone_units.contains(&u.id));
        self.devices.retain(|d| !gone_devices.contains(&d.id));
        self.devices
            .iter_mut()
            .for_each(|d| detach(&mut d.spec.unit));
        self.tags
            .retain(|t| !gone_tags.contains(&t.id) && !gone_devices.contains(&t.device));
        self.tags.iter_mut().for_each(|t| detach(&mut t.spec.unit));
        let tags: HashSet<TagId> = self.tags.iter().map(|t| t.id).collect();
        self.rules
            .retain(|r| !gone_rules.contains(&r.id) && tags.contains(&r.tag));

        let unit = |r: Option<Ref<UnitId>>| match r {
            Some(Ref::Stored(id)) => Some(id),
            Some(Ref::Written(i)) => written.units.get(i).copied(),
            None => None,
        };
        for (w, id) in c.units.iter().zip(&written.units) {
            upsert(
                &mut self.units,
                Unit {
                    id: *id,
                    tenant,
                    spec: w.spec.clone(),
                },
                |u| u.id,
            );
        }
        for (w, id) in c.devices.iter().zip(&written.devices) {
            let spec = DeviceSpec {
                unit: unit(w.unit),
                ..w.spec.clone()
            };
            upsert(
                &mut self.devices,
                Device {
                    id: *id,
                    tenant,
                    spec,
                },
                |d| d.id,
            );
        }
        for (w, id) in c.tags.iter().zip(&written.tags) {
            let device = match w.device {
                Ref::Stored(d) => d,
                Ref::Written(i) => written.devices.get(i).copied().unwrap_or(DeviceId(0)),
            };
            let spec = TagSpec {
                unit: unit(w.unit),
                ..w.spec.clone()
            };
            upsert(
                &mut self.tags,
                Tag {
                    id: *id,
                    tenant,
                    device,
                    spec,
                },
                |t| t.id,
            );
        }
        for (w, id) in c.rules.iter().zip(&written.rules) {
            let tag = match w.tag {
                Ref::Stored(t) => t,
                Ref::Written(i) => written.tags.get(i).copied().unwrap_or(TagId(0)),
            };
            let rule = Rule {
                id: *id,
                tenant,
                tag,
                spec: w.spec.clone(),
            };
            upsert(&mut self.rules, rule, |r| r.id);
        }
    }

    pub fn unit_name(&self, id: UnitId) -> Option<&str> {
        self.units
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.spec.name.as_str())
    }

    pub fn device(&self, id: DeviceId) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id)
    }

    pub fn tag(&self, id: TagId) -> Option<&Tag> {
        self.tags.iter().find(|t| t.id == id)
    }
}
