//! The tags of one device and their alarm rules, planned against the stored ones:
//! matched by id or name, updated where they differ, created or deleted.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::plan::{Kind, Op, Plan};
use super::stored::Stored;
use crate::alarms::Rule;
use crate::config::AlarmConfig;
use crate::config::draft::{DeviceDraft, RuleDraft, TagDraft};
use crate::domain::{DeviceId, Tag, TagId, TagSpec, UnitId};
use crate::storage::{Ref, RuleWrite, TagWrite};

/// The tags of one device: `wanted` (declared, then generated) against the stored
/// `have`.
pub(super) fn plan_tags(
    p: &mut Plan,
    stored: &Stored,
    (d, device): (&DeviceDraft, Ref<DeviceId>),
    wanted: &[TagDraft],
    have: &[&Tag],
    rules_of: &HashMap<TagId, Vec<&Rule>>,
    unit_of: &dyn Fn(&Option<String>) -> Option<Ref<UnitId>>,
) {
    let stored_device = match device {
        Ref::Stored(id) => Some(id),
        Ref::Written(_) => None,
    };
    let claimed: HashSet<_> = wanted.iter().filter_map(|t| t.id).collect();
    let by_id: HashMap<TagId, &Tag> = have.iter().map(|h| (h.id, *h)).collect();
    let by_name: HashMap<&str, &Tag> = have
        .iter()
        .filter(|h| !claimed.contains(&h.id))
        .map(|h| (h.spec.name.as_str(), *h))
        .collect();
    let mut kept = HashSet::new();
    for t in wanted {
        let matched = match t.id {
            Some(id) => by_id.get(&id),
            None => by_name.get(t.spec.name.as_str()),
        };
        let unit = unit_of(&t.unit);
        let spec = TagSpec {
            unit: match unit {
                Some(Ref::Stored(id)) => Some(id),
                _ => None,
            },
            ..t.spec.clone()
        };
        let qualified = format!("{}/{}", d.name, t.spec.name);
        let after = tag_json(&spec, t.unit.as_deref().filter(|_| unit.is_some()));
        let tag = match matched {
            Some(h) => {
                kept.insert(h.id);
                let same_unit = match unit {
                    None => h.spec.unit.is_none(),
                    Some(Ref::Stored(id)) => h.spec.unit == Some(id),
                    Some(Ref::Written(_)) => false,
                };
                if !same_unit
                    || h.spec
                        != (TagSpec {
                            unit: h.spec.unit,
                            ..spec.clone()
                        })
                {
                    p.changes.tags.push(TagWrite {
                        id: Some(h.id),
                        device,
                        unit,
                        spec,
                    });
                    if let Some(id) = stored_device {
                        p.touched.tags_of.insert(id);
                    }
                    let before = tag_json(&h.spec, h.spec.unit.and_then(|u| stored.unit_name(u)));
                    let c = p.note(
                        Kind::Tag,
                        Op::Update,
                        Some(h.id.to_string()),
                        qualified.clone(),
                    );
                    c.before = Some(before);
                    c.after = Some(after);
                }
                Ref::Stored(h.id)
            }
            None => {
                let k = p.changes.tags.len();
                p.changes.tags.push(TagWrite {
                    id: None,
                    device,
                    unit,
                    spec,
                });
                if let Some(id) = stored_device {
                    p.touched.tags_of.insert(id);
                }
                p.created(Kind::Tag, k, qualified.clone(), after);
                Ref::Written(k)
            }
        };
        let rules: &[&Rule] = match tag {
            Ref::Stored(id) => rules_of.get(&id).map_or(&[], Vec::as_slice),
            Ref::Written(_) => &[],
        };
        plan_rules(p, tag, &qualified, &t.alarms, rules);
    }
    for h in have.iter().filter(|h| !kept.contains(&h.id)) {
        p.changes.delete_tags.push(h.id);
        p.touched.removed_tags.push(h.id);
        if let Some(id) = stored_device {
            p.touched.tags_of.insert(id);
        }
        p.note(
            Kind::Tag,
            Op::Delete,
            Some(h.id.to_string()),
            format!("{}/{}", d.name, h.spec.name),
        )
        .before = Some(tag_json(
            &h.spec,
            h.spec.unit.and_then(|u| stored.unit_name(u)),
        ));
    }
}

/// The rules of one tag.
fn plan_rules(p: &mut Plan, tag: Ref<TagId>, tag_name: &str, wanted: &[RuleDraft], have: &[&Rule]) {
    let claimed: HashSet<_> = wanted.iter().filter_map(|r| r.id).collect();
    let mut kept = HashSet::new();
    for r in wanted {
        let matched = have.iter().find(|h| match r.id {
            Some(id) => h.id == id,
            None => h.spec.name == r.spec.name && !claimed.contains(&h.id),
        });
        let name = format!("{tag_name}/{}", r.spec.name);
        let after = json!(AlarmConfig::from_spec(&r.spec));
        match matched {
            Some(h) => {
                kept.insert(h.id);
                if h.spec != r.spec {
                    p.changes.rules.push(RuleWrite {
                        id: Some(h.id),
                        tag,
                        spec: r.spec.clone(),
                    });
                    p.touched.alarms = true;
                    let c = p.note(Kind::AlarmRule, Op::Update, Some(h.id.to_string()), name);
                    c.before = Some(json!(AlarmConfig::from_spec(&h.spec)));
                    c.after = Some(after);
                }
            }
            None => {
                let k = p.changes.rules.len();
                p.changes.rules.push(RuleWrite {
                    id: None,
                    tag,
                    spec: r.spec.clone(),
                });
                p.touched.alarms = true;
                p.created(Kind::AlarmRule, k, name, after);
            }
        }
    }
    for h in have.iter().filter(|h| !kept.contains(&h.id)) {
        p.changes.delete_rules.push(h.id);
        p.touched.alarms = true;
        p.note(
            Kind::AlarmRule,
            Op::Delete,
            Some(h.id.to_string()),
            format!("{tag_name}/{}", h.spec.name),
        )
        .before = Some(json!(AlarmConfig::from_spec(&h.spec)));
    }
}

fn tag_json(spec: &TagSpec, unit: Option<&str>) -> serde_json::Value {
    json!({
        "name": spec.name, "unit": unit, "address": spec.address, "data_type": spec.data_type,
        "scale": spec.scale, "offset": spec.offset, "eng_unit": spec.eng_unit,
        "deadband": spec.deadband, "writable": spec.writable,
    })
}
