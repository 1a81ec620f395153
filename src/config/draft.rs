//! One tenant's configured world as a draft: units, devices with their tags and alarm
//! rules, referring to each other by name (and carrying their ids where they are
//! stored already). The config file, an imported document and the API's mutations all
//! build a draft; [`check`] lists everything wrong with it, each problem at its place,
//! so the three are validated by the same rules.

use std::collections::HashSet;

use super::model::{DeviceConfig, UnitConfig};
use crate::alarms::{RuleSpec, check_tag_rules};
use crate::domain::{
    DeviceId, DeviceSecurity, OpenedSecurity, QuotaViolation, Quotas, RuleId, TagId, TagSpec,
    UnitId, UnitSpec,
};
use crate::drivers::DriverConfig;

/// The longest name of a unit, device, tag or alarm rule.
pub const MAX_NAME: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub struct UnitDraft {
    pub id: Option<UnitId>,
    pub spec: UnitSpec,
}

/// A device's link security: as stored (secrets sealed), or as given (secrets in
/// plaintext, or `***` for "keep the stored one").
#[derive(Debug, Clone, PartialEq)]
pub enum SecurityDraft {
    Stored(DeviceSecurity),
    Given(OpenedSecurity),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceDraft {
    pub id: Option<DeviceId>,
    pub name: String,
    /// The name of one of the tenant's units.
    pub unit: Option<String>,
    pub enabled: bool,
    pub poll_ms: u64,
    pub driver: DriverConfig,
    pub security: SecurityDraft,
    /// The tags as declared: the ones the driver generates by itself (a sim's
    /// `generated_tags`) are not here, they follow from `driver`.
    pub tags: Vec<TagDraft>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TagDraft {
    pub id: Option<TagId>,
    /// The name of one of the tenant's units (`spec.unit`, an id, is not read).
    pub unit: Option<String>,
    pub spec: TagSpec,
    pub alarms: Vec<RuleDraft>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleDraft {
    pub id: Option<RuleId>,
    pub spec: RuleSpec,
}

/// The units and devices of one tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    pub units: Vec<UnitDraft>,
    pub devices: Vec<DeviceDraft>,
}

/// Where in a draft (or in the document it came from) a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loc {
    /// The tenant as a whole (quotas on counts).
    Tenant,
    Unit(usize),
    Device(usize),
    Tag(usize, usize),
    Rule(usize, usize, usize),
}

impl Loc {
    /// The place's rank in document order (units, then each device with its tags and
    /// their rules, then the tenant's counts), for listing problems in that order.
    pub fn order(self) -> (usize, usize, usize, usize, usize) {
        match self {
            Loc::Unit(u) => (0, u, 0, 0, 0),
            Loc::Device(d) => (1, d, 0, 0, 0),
            Loc::Tag(d, t) => (1, d, 1, t, 0),
            Loc::Rule(d, t, r) => (1, d, 1, t, r + 1),
            Loc::Tenant => (2, 0, 0, 0, 0),
        }
    }

    /// `devices[2].tags[0]`, as the keys of the document's tenant section.
    pub fn path(self) -> String {
        match self {
            Loc::Tenant => String::new(),
            Loc::Unit(u) => format!("units[{u}]"),
            Loc::Device(d) => format!("devices[{d}]"),
            Loc::Tag(d, t) => format!("devices[{d}].tags[{t}]"),
            Loc::Rule(d, t, r) => format!("devices[{d}].tags[{t}].alarms[{r}]"),
        }
    }
}

/// One thing wrong with a draft.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub loc: Loc,
    /// The key at fault (`poll_ms`, `address`, `driver.port` …); empty when the message
    /// names it (an alarm rule's own checks do).
    pub field: String,
    pub message: String,
    /// Set when the problem is a quota the draft would exceed.
    pub quota: Option<QuotaViolation>,
}

impl Problem {
    pub fn new(loc: Loc, field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            loc,
            field: field.into(),
            message: message.into(),
            quota: None,
        }
    }

    fn quota(loc: Loc, field: &str, v: QuotaViolation) -> Self {
        Problem {
            quota: Some(v),
            ..Problem::new(loc, field, format!("QUOTA_EXCEEDED: {v}"))
        }
    }

    /// The key at fault, as a path in the tenant section (`devices[2].poll_ms`).
    pub fn path(&self) -> String {
        match (self.loc.path(), self.field.as_str()) {
            (p, "") => p,
            (p, f) if p.is_empty() => f.to_string(),
            (p, f) => format!("{p}.{f}"),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path(), self.message)
    }
}

impl Draft {
    /// The draft a tenant section of the config file (or an imported document)
    /// declares, with what does not convert (alarm rules) as problems.
    pub fn from_config(units: &[UnitConfig], devices: &[DeviceConfig]) -> (Draft, Vec<Problem>) {
        let mut problems = Vec::new();
        let units = units
            .iter()
            .map(|u| UnitDraft {
                id: None,
                spec: UnitSpec {
                    name: u.name.get_ref().clone(),
                    location: u.location,
                    description: u.description.clone(),
                },
            })
            .collect();
        let devices = devices
            .iter()
            .enumerate()
            .map(|(di, d)| DeviceDraft {
                id: None,
                name: d.name.get_ref().clone(),
                unit: d.unit.as_ref().map(|u| u.get_ref().clone()),
                enabled: d.enabled,
                poll_ms: d.poll_ms,
                driver: d.driver.clone(),
                security: SecurityDraft::Given(d.security.clone()),
                tags: d
                    .tags
                    .iter()
                    .enumerate()
                    .map(|(ti, t)| TagDraft {
                        id: None,
                        unit: t.unit.as_ref().map(|u| u.get_ref().clone()),
                        spec: TagSpec {
                            name: t.name.get_ref().clone(),
                            unit: None,
                            address: t.address.get_ref().clone(),
                            data_type: t.data_type,
                            scale: t.scale,
                            offset: t.offset,
                            eng_unit: t.eng_unit.clone(),
                            deadband: t.deadband,
                            writable: t.writable,
                        },
                        alarms: t
                            .alarms
                            .iter()
                            .enumerate()
                            .filter_map(|(ri, a)| match a.to_spec() {
                                Ok(spec) => Some(RuleDraft { id: None, spec }),
                                Err(message) => {
                                    problems.push(Problem::new(Loc::Rule(di, ti, ri), "", message));
                                    None
                                }
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        (Draft { units, devices }, problems)
    }

    /// Devices and tags the draft makes (generated tags included), for the quotas.
    pub fn counts(&self) -> (u64, u64) {
        let tags = self
            .devices
            .iter()
            .map(|d| d.tags.len() + d.driver.generated_tags().len())
            .sum::<usize>();
        (self.devices.len() as u64, tags as u64)
    }
}

/// A name of a unit, device, tag or rule: not empty, no surrounding spaces or control
/// characters, at most [`MAX_NAME`] characters.
pub fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{what} name must not be empty"));
    }
    if name.trim() != name || name.chars().any(char::is_control) {
        return Err(format!(
            "{what} name `{}` has surrounding spaces or control characters",
            name.escape_debug()
        ));
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("{what} name is longer than {MAX_NAME} characters"));
    }
    Ok(())
}

/// Everything wrong with `draft`, in document order: names (present, unique, no stray
/// characters), references to units, each driver's settings and each tag's address,
/// type and scaling for its protocol, the alarm rules of each tag, and with `quotas`
/// the tenant's minimum poll period and its device and tag counts.
pub fn check(draft: &Draft, quotas: Option<&Quotas>) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut unit_names = HashSet::new();
    for (ui, u) in draft.units.iter().enumerate() {
        let loc = Loc::Unit(ui);
        if let Err(m) = check_name(&u.spec.name, "unit") {
            out.push(Problem::new(loc, "name", m));
        } else if !unit_names.insert(u.spec.name.as_str()) {
            out.push(Problem::new(
                loc,
                "name",
                format!("duplicate unit name `{}`", u.spec.name),
            ));
        }
    }
    let unit_ref = |unit: &Option<String>, loc: Loc, out: &mut Vec<Problem>| {
        if let Some(u) = unit {
            if !unit_names.contains(u.as_str()) {
                out.push(Problem::new(loc, "unit", format!("no unit named `{u}`")));
            }
        }
    };
    let mut device_names = HashSet::new();
    for (di, d) in draft.devices.iter().enumerate() {
        let loc = Loc::Device(di);
        if let Err(m) = check_name(&d.name, "device") {
            out.push(Problem::new(loc, "name", m));
        } else if !device_names.insert(d.name.as_str()) {
            out.push(Problem::new(
                loc,
                "name",
                format!("duplicate device name `{}`", d.name),
            ));
        }
        unit_ref(&d.unit, loc, &mut out);
        if let Err(reason) = d.driver.check() {
            out.push(Problem::new(loc, "driver", reason));
        }
        if let Some(q) = quotas {
            if let Err(v) = q.check_poll(d.poll_ms) {
                out.push(Problem::quota(loc, "poll_ms", v));
            }
        }
        let generated: HashSet<String> = d
            .driver
            .generated_tags()
            .into_iter()
            .map(|t| t.name)
            .collect();
        let mut tag_names = HashSet::new();
        for (ti, t) in d.tags.iter().enumerate() {
            check_tag(d, t, Loc::Tag(di, ti), &generated, &mut tag_names, &mut out);
            unit_ref(&t.unit, Loc::Tag(di, ti), &mut out);
            check_rules(t, (di, ti), &mut out);
        }
    }
    if let Some(q) = quotas {
        let (devices, tags) = draft.counts();
        if let Err(v) = q.check_counts(devices, tags) {
            let field = if v.limit == "max_devices" {
                "devices"
            } else {
                "tags"
            };
            out.push(Problem::quota(Loc::Tenant, field, v));
        }
    }
    out
}

fn check_tag<'a>(
    d: &DeviceDraft,
    t: &'a TagDraft,
    loc: Loc,
    generated: &HashSet<String>,
    names: &mut HashSet<&'a str>,
    out: &mut Vec<Problem>,
) {
    let s = &t.spec;
    if let Err(m) = check_name(&s.name, "tag") {
        out.push(Problem::new(loc, "name", m));
    } else if generated.contains(&s.name) {
        out.push(Problem::new(
            loc,
            "name",
            format!(
                "duplicate tag name `{}`: the device's driver makes a tag of that name",
                s.name
            ),
        ));
    } else if !names.insert(s.name.as_str()) {
        out.push(Problem::new(
            loc,
            "name",
            format!("duplicate tag name `{}`", s.name),
        ));
    }
    if let Err(reason) = d.driver.check_tag(&s.address, s.data_type, s.writable) {
        out.push(Problem::new(loc, "address", reason));
    }
    if !s.scale.is_finite() || s.scale == 0.0 {
        out.push(Problem::new(loc, "scale", "scale must be finite and not 0"));
    }
    if !s.offset.is_finite() {
        out.push(Problem::new(loc, "offset", "offset must be finite"));
    }
    if !(s.deadband >= 0.0 && s.deadband.is_finite()) {
        out.push(Problem::new(
            loc,
            "deadband",
            "deadband must be finite and >= 0",
        ));
    }
}

/// Each rule on its own, then the tag's rules together (names unique, limits in order).
fn check_rules(t: &TagDraft, (di, ti): (usize, usize), out: &mut Vec<Problem>) {
    let mut each_ok = true;
    for (ri, r) in t.alarms.iter().enumerate() {
        let named = check_name(&r.spec.name, "alarm rule");
        if let Err(e) = named.and_then(|()| r.spec.check().map_err(|e| e.to_string())) {
            out.push(Problem::new(Loc::Rule(di, ti, ri), "", e));
            each_ok = false;
        }
    }
    if each_ok {
        if let Err(e) = check_tag_rules(t.alarms.iter().map(|r| &r.spec)) {
            out.push(Problem::new(Loc::Tag(di, ti), "alarms", e.to_string()));
        }
    }
}

#[cfg(test)]
#[path = "draft_tests.rs"]
mod tests;
