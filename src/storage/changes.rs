//! A batch of configuration writes (units, devices, tags, alarm rules), applied by
//! [`Store::apply_world`](super::Store::apply_world) in one transaction: all of it or
//! none. Live configuration (`manage`) plans a batch from the difference between the
//! stored world and the wanted one.

use crate::alarms::RuleSpec;
use crate::domain::{DeviceId, DeviceSpec, RuleId, TagId, TagSpec, UnitId, UnitSpec};

/// Another object a write refers to: one that is stored already, or the one an
/// earlier write of the same batch writes (its index in that kind's writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ref<I> {
    Stored(I),
    Written(usize),
}

/// Creates a unit (`id: None`) or updates the stored one.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitWrite {
    pub id: Option<UnitId>,
    pub spec: UnitSpec,
}

/// Creates a device (`id: None`) or updates the stored one; its unit is `unit`
/// (`spec.unit` is not read).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceWrite {
    pub id: Option<DeviceId>,
    pub unit: Option<Ref<UnitId>>,
    pub spec: DeviceSpec,
}

/// Creates a tag on `device` (`id: None`) or updates the stored one (which stays on
/// its device); its unit is `unit` (`spec.unit` is not read).
#[derive(Debug, Clone, PartialEq)]
pub struct TagWrite {
    pub id: Option<TagId>,
    pub device: Ref<DeviceId>,
    pub unit: Option<Ref<UnitId>>,
    pub spec: TagSpec,
}

/// Creates an alarm rule on `tag` (`id: None`) or updates the stored one; an updated
/// rule keeps its alarm's state.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleWrite {
    pub id: Option<RuleId>,
    pub tag: Ref<TagId>,
    pub spec: RuleSpec,
}

/// Deletions first (rules, tags, devices, units: deleting a device deletes its tags
/// and their rules, deleting a unit detaches what referred to it), then the writes in
/// the order units, devices, tags, rules. History, alarm transitions and audit
/// records of deleted objects stay; their ids are never given to another object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorldChanges {
    pub delete_rules: Vec<RuleId>,
    pub delete_tags: Vec<TagId>,
    pub delete_devices: Vec<DeviceId>,
    pub delete_units: Vec<UnitId>,
    pub units: Vec<UnitWrite>,
    pub devices: Vec<DeviceWrite>,
    pub tags: Vec<TagWrite>,
    pub rules: Vec<RuleWrite>,
}

impl WorldChanges {
    pub fn is_empty(&self) -> bool {
        *self == WorldChanges::default()
    }
}

/// The id of every write of a batch, in the order of the writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrittenIds {
    pub units: Vec<UnitId>,
    pub devices: Vec<DeviceId>,
    pub tags: Vec<TagId>,
    pub rules: Vec<RuleId>,
}

impl WrittenIds {
    /// The id a reference names, once the writes before it are done.
    pub(crate) fn resolve<I: Copy>(r: Ref<I>, written: &[I], what: &str) -> super::Result<I> {
        match r {
            Ref::Stored(id) => Ok(id),
            Ref::Written(i) => written.get(i).copied().ok_or_else(|| {
                super::Error::NotFound(format!("{what} written at {i} (not written before)"))
            }),
        }
    }
}
