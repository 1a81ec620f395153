//! The difference between the stored world and a draft: the writes that turn the one
//! into the other ([`WorldChanges`]), what they change object by object ([`Change`],
//! for the API's answer and the audit log), and which running actors they touch
//! ([`Touched`]). Objects are matched by id where the draft has one, else by name
//! (units and devices in the tenant, tags in their device, rules in their tag): what
//! the draft does not hold is deleted.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::json;

use super::security::resolve_security;
use super::stored::Stored;
use super::tags::plan_tags;
use crate::actors::tenant::Touched;
use crate::config::draft::{Draft, Loc, Problem, TagDraft};
use crate::domain::{DeviceId, DeviceSpec, Tag, UnitId};
use crate::secrets::SecretKey;
use crate::storage::{DeviceWrite, Ref, UnitWrite, WorldChanges, WrittenIds};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Unit,
    Device,
    Tag,
    AlarmRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Update,
    Delete,
}

/// One object a change creates, updates or deletes, before and after (secrets as
/// `***`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub kind: Kind,
    pub op: Op,
    /// The object's id (a created one's once it is written).
    pub id: Option<String>,
    /// `unit`, `device`, `device/tag` or `device/tag/rule`.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// The writes of a change, and what they mean.
#[derive(Debug, Default)]
pub struct Plan {
    pub changes: WorldChanges,
    pub report: Vec<Change>,
    pub touched: Touched,
    /// Creates in `report`: (report index, kind, index of the write).
    created: Vec<(usize, Kind, usize)>,
}

impl Plan {
    /// Fills in the ids of the created objects, once written.
    pub fn finish(mut self, written: &WrittenIds) -> Vec<Change> {
        for (r, kind, w) in std::mem::take(&mut self.created) {
            let id = match kind {
                Kind::Unit => written.units.get(w).map(|i| i.to_string()),
                Kind::Device => written.devices.get(w).map(|i| i.to_string()),
                Kind::Tag => written.tags.get(w).map(|i| i.to_string()),
                Kind::AlarmRule => written.rules.get(w).map(|i| i.to_string()),
            };
            if let Some(c) = self.report.get_mut(r) {
                c.id = id;
            }
        }
        self.report
    }

    pub(super) fn note(
        &mut self,
        kind: Kind,
        op: Op,
        id: Option<String>,
        name: String,
    ) -> &mut Change {
        self.report.push(Change {
            kind,
            op,
            id,
            name,
            before: None,
            after: None,
        });
        let last = self.report.len() - 1;
        &mut self.report[last]
    }

    pub(super) fn created(
        &mut self,
        kind: Kind,
        write: usize,
        name: String,
        after: serde_json::Value,
    ) {
        let r = self.report.len();
        self.note(kind, Op::Create, None, name).after = Some(after);
        self.created.push((r, kind, write));
    }
}

/// A device as a change's before or after: the config file's keys, secrets as `***`.
fn device_json(spec: &DeviceSpec, unit: Option<&str>) -> serde_json::Value {
    json!({
        "name": spec.name, "unit": unit, "enabled": spec.enabled, "poll_ms": spec.poll_ms,
        "driver": spec.driver, "security": spec.security.masked(),
    })
}

/// The plan that turns `stored` into `draft` (which [`check`](crate::config::draft::check)
/// found valid). Fails with the problems it meets: secrets that cannot be sealed or
/// kept, ids that are not stored.
pub fn plan(stored: &Stored, draft: &Draft, key: Option<&SecretKey>) -> Result<Plan, Vec<Problem>> {
    let mut p = Plan::default();
    let mut problems = Vec::new();

    // Units.
    let claimed: HashSet<UnitId> = draft.units.iter().filter_map(|u| u.id).collect();
    let mut units: HashMap<&str, Ref<UnitId>> = HashMap::new();
    let mut kept = HashSet::new();
    for (ui, u) in draft.units.iter().enumerate() {
        let matched = match u.id {
            Some(id) => stored.units.iter().find(|s| s.id == id),
            None => stored
                .units
                .iter()
                .find(|s| s.spec.name == u.spec.name && !claimed.contains(&s.id)),
        };
        let r = match (matched, u.id) {
            (Some(s), _) => {
                kept.insert(s.id);
                if s.spec != u.spec {
                    p.changes.units.push(UnitWrite {
                        id: Some(s.id),
                        spec: u.spec.clone(),
                    });
                    let c = p.note(
                        Kind::Unit,
                        Op::Update,
                        Some(s.id.to_string()),
                        u.spec.name.clone(),
                    );
                    c.before = Some(json!(s.spec));
                    c.after = Some(json!(u.spec));
                    p.touched.alarms = true;
                }
                Ref::Stored(s.id)
            }
            (None, Some(id)) => {
                problems.push(Problem::new(Loc::Unit(ui), "id", format!("no unit {id}")));
                continue;
            }
            (None, None) => {
                let k = p.changes.units.len();
                p.changes.units.push(UnitWrite {
                    id: None,
                    spec: u.spec.clone(),
                });
                p.created(Kind::Unit, k, u.spec.name.clone(), json!(u.spec));
                Ref::Written(k)
            }
        };
        units.insert(u.spec.name.as_str(), r);
    }
    for s in stored.units.iter().filter(|s| !kept.contains(&s.id)) {
        p.changes.delete_units.push(s.id);
        p.note(
            Kind::Unit,
            Op::Delete,
            Some(s.id.to_string()),
            s.spec.name.clone(),
        )
        .before = Some(json!(s.spec));
        p.touched.alarms = true;
    }
    let unit_of = |name: &Option<String>| name.as_deref().and_then(|n| units.get(n).copied());
    let unit_name = |r: Option<Ref<UnitId>>, names: &Option<String>| match r {
        Some(_) => names.clone(),
        None => None,
    };

    // Devices, their tags and the tags' rules: the stored ones indexed once, so that a
    // change of one object in a tenant of thousands costs no more than a read of it.
    let claimed: HashSet<DeviceId> = draft.devices.iter().filter_map(|d| d.id).collect();
    let by_id: HashMap<DeviceId, &crate::domain::Device> =
        stored.devices.iter().map(|d| (d.id, d)).collect();
    let by_name: HashMap<&str, &crate::domain::Device> = stored
        .devices
        .iter()
        .filter(|d| !claimed.contains(&d.id))
        .map(|d| (d.spec.name.as_str(), d))
        .collect();
    let mut tags_of: HashMap<DeviceId, Vec<&Tag>> = HashMap::new();
    for t in &stored.tags {
        tags_of.entry(t.device).or_default().push(t);
    }
    let mut rules_of: HashMap<crate::domain::TagId, Vec<&crate::alarms::Rule>> = HashMap::new();
    for r in &stored.rules {
        rules_of.entry(r.tag).or_default().push(r);
    }
    let mut kept = HashSet::new();
    for (di, d) in draft.devices.iter().enumerate() {
        let matched = match d.id {
            Some(id) => by_id.get(&id).copied(),
            None => by_name.get(d.name.as_str()).copied(),
        };
        if matched.is_none() && d.id.is_some() {
            problems.push(Problem::new(Loc::Device(di), "id", "no such device"));
            continue;
        }
        let security = match resolve_security(&d.security, matched.map(|m| &m.spec.security), key) {
            Ok(s) => s,
            Err((field, message)) => {
                problems.push(Problem::new(Loc::Device(di), field, message));
                continue;
            }
        };
        let unit = unit_of(&d.unit);
        let spec = DeviceSpec {
            name: d.name.clone(),
            unit: match unit {
                Some(Ref::Stored(id)) => Some(id),
                _ => None,
            },
            enabled: d.enabled,
            poll_ms: d.poll_ms,
            driver: d.driver.clone(),
            security,
        };
        let after = device_json(&spec, unit_name(unit, &d.unit).as_deref());
        let device = match matched {
            Some(m) => {
                kept.insert(m.id);
                let same_unit = match unit {
                    None => m.spec.unit.is_none(),
                    Some(Ref::Stored(id)) => m.spec.unit == Some(id),
                    Some(Ref::Written(_)) => false,
                };
                if !same_unit
                    || m.spec
                        != (DeviceSpec {
                            unit: m.spec.unit,
                            ..spec.clone()
                        })
                {
                    p.changes.devices.push(DeviceWrite {
                        id: Some(m.id),
                        unit,
                        spec,
                    });
                    p.touched.devices.insert(m.id);
                    let before =
                        device_json(&m.spec, m.spec.unit.and_then(|u| stored.unit_name(u)));
                    let c = p.note(
                        Kind::Device,
                        Op::Update,
                        Some(m.id.to_string()),
                        d.name.clone(),
                    );
                    c.before = Some(before);
                    c.after = Some(after);
                }
                Ref::Stored(m.id)
            }
            None => {
                let k = p.changes.devices.len();
                p.changes.devices.push(DeviceWrite {
                    id: None,
                    unit,
                    spec,
                });
                p.created(Kind::Device, k, d.name.clone(), after);
                Ref::Written(k)
            }
        };
        let generated = d.driver.generated_tags().into_iter().map(|spec| TagDraft {
            id: None,
            unit: None,
            spec,
            alarms: Vec::new(),
        });
        let wanted: Vec<TagDraft> = d.tags.iter().cloned().chain(generated).collect();
        let have: &[&Tag] = matched
            .and_then(|m| tags_of.get(&m.id))
            .map_or(&[], Vec::as_slice);
        plan_tags(
            &mut p,
            stored,
            (d, device),
            &wanted,
            have,
            &rules_of,
            &unit_of,
        );
    }
    for s in stored.devices.iter().filter(|s| !kept.contains(&s.id)) {
        p.changes.delete_devices.push(s.id);
        let c = p.note(
            Kind::Device,
            Op::Delete,
            Some(s.id.to_string()),
            s.spec.name.clone(),
        );
        let unit = s.spec.unit.and_then(|u| stored.unit_name(u));
        c.before = Some(device_json(&s.spec, unit));
        for t in tags_of.get(&s.id).into_iter().flatten() {
            p.touched.removed_tags.push(t.id);
        }
    }
    if problems.is_empty() {
        Ok(p)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
