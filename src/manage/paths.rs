//! Where a problem is, in the words of whoever sent the change: a key of the imported
//! document (`devices[3].tags[1].address`), a field of a mutation's input
//! (`input.pollMs`), or, for an object the sender did not send (a stored one a change
//! affects), its names (`devices["pump-1"].tags["flow"].address`).

use serde::Serialize;

use super::document::TenantDoc;
use crate::config::draft::{Draft, Loc, Problem};
use crate::domain::QuotaViolation;

/// Who sent a change, for naming the places of its problems.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The config file at start-up (checked when it was read): objects by name.
    File,
    /// An imported document.
    Document(&'a TenantDoc),
    /// A mutation whose input is the object at this place.
    Input(Loc),
}

/// One problem of a change, at its place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
    /// Set when the problem is a quota the change would exceed.
    #[serde(skip)]
    pub quota: Option<QuotaViolation>,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl Scope<'_> {
    pub fn locate(&self, draft: &Draft, p: &Problem) -> FieldError {
        let path = match *self {
            Scope::File => named(draft, p),
            Scope::Document(doc) if in_document(doc, p.loc) => p.path(),
            Scope::Input(target) => match input_path(target, p) {
                Some(path) => path,
                None => named(draft, p),
            },
            Scope::Document(_) => named(draft, p),
        };
        FieldError {
            path,
            message: p.message.clone(),
            quota: p.quota,
        }
    }
}

/// Whether the place is an entry of the document (not a stored object a MERGE kept).
fn in_document(doc: &TenantDoc, loc: Loc) -> bool {
    let tags = |d: usize| doc.devices.get(d).map_or(0, |d| d.tags.len());
    match loc {
        Loc::Tenant => true,
        Loc::Unit(u) => u < doc.units.len(),
        Loc::Device(d) => d < doc.devices.len(),
        Loc::Tag(d, t) => t < tags(d),
        Loc::Rule(d, t, r) => t < tags(d) && r < doc.devices[d].tags[t].alarms.len(),
    }
}

/// `input.pollMs` for a problem of the mutation's own object (or of a rule of its tag).
fn input_path(target: Loc, p: &Problem) -> Option<String> {
    let field = camel(&p.field);
    let within = match (target, p.loc) {
        (t, l) if t == l => field,
        (Loc::Tag(d, t), Loc::Rule(rd, rt, r)) if (d, t) == (rd, rt) => match field.as_str() {
            "" => format!("alarms[{r}]"),
            f => format!("alarms[{r}].{f}"),
        },
        _ => return None,
    };
    Some(if within.is_empty() {
        "input".into()
    } else {
        format!("input.{within}")
    })
}

/// A place by the names of its objects.
fn named(draft: &Draft, p: &Problem) -> String {
    let device = |d: usize| draft.devices.get(d);
    let base = match p.loc {
        Loc::Tenant => String::new(),
        Loc::Unit(u) => draft.units.get(u).map_or_else(
            || format!("units[{u}]"),
            |u| format!("units[{:?}]", u.spec.name),
        ),
        Loc::Device(d) => device(d).map_or_else(
            || format!("devices[{d}]"),
            |x| format!("devices[{:?}]", x.name),
        ),
        Loc::Tag(d, t) | Loc::Rule(d, t, _) => {
            let dn = device(d).map_or_else(|| d.to_string(), |x| format!("{:?}", x.name));
            let tn = device(d)
                .and_then(|x| x.tags.get(t))
                .map_or_else(|| t.to_string(), |x| format!("{:?}", x.spec.name));
            let rule = match p.loc {
                Loc::Rule(_, _, r) => device(d)
                    .and_then(|x| x.tags.get(t))
                    .and_then(|x| x.alarms.get(r))
                    .map_or_else(
                        || format!(".alarms[{r}]"),
                        |x| format!(".alarms[{:?}]", x.spec.name),
                    ),
                _ => String::new(),
            };
            format!("devices[{dn}].tags[{tn}]{rule}")
        }
    };
    match (base.is_empty(), p.field.is_empty()) {
        (_, true) => base,
        (true, false) => p.field.clone(),
        (false, false) => format!("{base}.{}", p.field),
    }
}

/// `poll_ms` → `pollMs`; dotted paths keep their dots (`driver.port` stays).
fn camel(field: &str) -> String {
    if field.contains('.') {
        return field.to_string();
    }
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_as_the_api_names_them() {
        assert_eq!(camel("poll_ms"), "pollMs");
        assert_eq!(camel("data_type"), "dataType");
        assert_eq!(camel("driver"), "driver");
        assert_eq!(camel("security.tls.key_file"), "security.tls.key_file");
        let p = Problem::new(Loc::Device(2), "poll_ms", "too fast");
        assert_eq!(
            input_path(Loc::Device(2), &p).as_deref(),
            Some("input.pollMs")
        );
        assert_eq!(input_path(Loc::Device(1), &p), None);
        let r = Problem::new(Loc::Rule(0, 1, 2), "", "setpoint: must be finite");
        assert_eq!(
            input_path(Loc::Tag(0, 1), &r).as_deref(),
            Some("input.alarms[2]")
        );
    }
}
