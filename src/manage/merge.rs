//! MERGE: a declared draft laid over the stored one. Declared units, devices, tags
//! and rules replace the stored ones of the same name (keeping their ids) or are
//! added; nothing stored is dropped. Declared objects come first, in the order of
//! their document, so that a problem found in the merged draft points at the
//! document's own entry.

use crate::config::draft::{DeviceDraft, Draft, RuleDraft, TagDraft, UnitDraft};

/// `declared` over `stored` (see the module documentation).
pub fn merge(stored: Draft, declared: Draft) -> Draft {
    let units = overlay(
        stored.units,
        declared.units,
        |s, d| s.spec.name == d.spec.name,
        |s, d| UnitDraft { id: s.id, ..d },
    );
    let devices = overlay(
        stored.devices,
        declared.devices,
        |s, d| s.name == d.name,
        |s, d| DeviceDraft {
            id: s.id,
            tags: overlay(
                s.tags,
                d.tags.clone(),
                |s, d| s.spec.name == d.spec.name,
                |s, d| TagDraft {
                    id: s.id,
                    alarms: overlay(
                        s.alarms,
                        d.alarms.clone(),
                        |s, d| s.spec.name == d.spec.name,
                        |s, d| RuleDraft { id: s.id, ..d },
                    ),
                    ..d
                },
            ),
            ..d
        },
    );
    Draft { units, devices }
}

/// The declared items in their order, each taking the id (and what `combine` keeps)
/// of the stored item it is `same` as, then the stored items none was.
fn overlay<T>(
    mut stored: Vec<T>,
    declared: Vec<T>,
    same: impl Fn(&T, &T) -> bool,
    combine: impl Fn(T, T) -> T,
) -> Vec<T> {
    let mut out: Vec<T> = declared
        .into_iter()
        .map(|d| match stored.iter().position(|s| same(s, &d)) {
            Some(i) => combine(stored.remove(i), d),
            None => d,
        })
        .collect();
    out.extend(stored);
    out
}
