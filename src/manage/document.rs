//! The configuration document of one tenant: the keys of the config file's tenant
//! section (`name`, `units`, `devices` with their `tags` and `alarms`), as TOML or
//! JSON. `exportConfig` writes it from the stored world; `importConfig` reads it
//! back. Secrets are written as `***`, which on import keeps the stored secret, so an
//! export imported again changes nothing.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::stored::{Drafted, Stored};
use crate::config::draft::{Draft, Loc, Problem};
use crate::config::{AlarmConfig, DeviceConfig, Manage, TagConfig, UnitConfig};
use crate::domain::QuotaOverrides;

/// What a stored secret is exported as, and what keeps it on import.
pub use crate::domain::SECRET_MASK as KEEP_SECRET;

/// The format of a configuration document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// JSON when the text starts with `{`, TOML otherwise.
    pub fn detect(text: &str) -> Format {
        if text.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Toml
        }
    }
}

/// A tenant section: what `importConfig` takes and `exportConfig` gives.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDoc {
    /// The tenant the document describes; an import into another tenant is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Spanned<String>>,
    /// Accepted only to say clearly that it belongs to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage: Option<Manage>,
    /// Accepted only to say clearly that quotas are a platform administrator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<QuotaOverrides>,
    #[serde(default)]
    pub units: Vec<UnitConfig>,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
}

/// Why a document could not be read at all (before any object was looked at).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ParseError {
    /// The key at fault (`devices[0].poll_ms`), empty for a syntax error.
    pub path: String,
    pub message: String,
}

/// Reads a document: TOML, or JSON (turned into TOML's data model; `null` is refused
/// with its key, since TOML has none).
pub fn parse(text: &str, format: Format) -> Result<TenantDoc, ParseError> {
    match format {
        Format::Toml => read_toml(text, true),
        Format::Json => {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ParseError {
                path: String::new(),
                message: format!("not JSON: {e}"),
            })?;
            from_json(&value)
        }
    }
}

/// A value of a configuration type read from JSON the way a document's JSON is read
/// (through TOML's data model, so that `Spanned` keys work): a JSON document, a
/// mutation's `alarms`. The error's path is relative to `value` (`[0].setpoint`,
/// `devices[0].poll_ms`).
pub fn from_json<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<T, ParseError> {
    #[derive(Deserialize)]
    struct Wrap<T> {
        v: T,
    }
    let mut table = toml::Table::new();
    table.insert("v".into(), json_to_toml(value, &mut String::new())?);
    let text = toml::to_string(&table).map_err(|e| ParseError {
        path: String::new(),
        message: e.to_string(),
    })?;
    // Positions in the converted text would mean nothing to the sender.
    read_toml::<Wrap<T>>(&text, false)
        .map(|w| w.v)
        .map_err(|mut e| {
            let within = e.path.strip_prefix('v').unwrap_or(&e.path);
            e.path = within.strip_prefix('.').unwrap_or(within).to_string();
            e
        })
}

/// Deserializes TOML text, naming the key at fault; with `positions`, the message
/// keeps toml's line and column.
fn read_toml<T: serde::de::DeserializeOwned>(text: &str, positions: bool) -> Result<T, ParseError> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| ParseError {
        path: String::new(),
        message: one_line(&e.to_string()),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ParseError {
            path: if path == "." { String::new() } else { path },
            message: if positions {
                one_line(&inner.to_string())
            } else {
                inner.message().to_string()
            },
        }
    })
}

/// toml's messages quote the line over several lines: one line is enough here.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.starts_with('^'))
        .collect::<Vec<_>>()
        .join(" ")
}

fn json_to_toml(v: &serde_json::Value, path: &mut String) -> Result<toml::Value, ParseError> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => {
            return Err(ParseError {
                path: path.clone(),
                message: "null is not a value here: leave the key out".into(),
            });
        }
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(json_to_toml(item, path)?);
                path.truncate(len);
            }
            toml::Value::Array(out)
        }
        J::Object(map) => {
            let mut out = toml::Table::new();
            for (k, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                out.insert(k.clone(), json_to_toml(item, path)?);
                path.truncate(len);
            }
            toml::Value::Table(out)
        }
    })
}

impl TenantDoc {
    /// The draft the document declares, with what is wrong with the document itself
    /// (`name` of another tenant, `manage`, `quotas`, alarm rules that do not convert).
    pub fn draft(&self, tenant: &str) -> (Draft, Vec<Problem>) {
        let (draft, mut problems) = Draft::from_config(&self.units, &self.devices);
        if let Some(name) = &self.name {
            if name.get_ref() != tenant {
                problems.push(Problem::new(
                    Loc::Tenant,
                    "name",
                    format!(
                        "this document describes tenant `{}`, not `{tenant}` (leave `name` out to import it here)",
                        name.get_ref()
                    ),
                ));
            }
        }
        if self.manage.is_some() {
            problems.push(Problem::new(
                Loc::Tenant,
                "manage",
                "`manage` belongs to the config file; an import says MERGE or REPLACE in its `mode`",
            ));
        }
        if self.quotas.is_some() {
            problems.push(Problem::new(
                Loc::Tenant,
                "quotas",
                "quotas are set by a platform administrator (setTenantQuotas), not by an import",
            ));
        }
        (draft, problems)
    }

    /// The document of a stored world: units, devices, declared tags and alarm rules
    /// in id order, secrets as [`KEEP_SECRET`].
    pub fn export(tenant: &str, stored: &Stored) -> TenantDoc {
        let draft = stored.draft();
        let spanned = |s: &String| Spanned::new(0..0, s.clone());
        let units = draft
            .units
            .iter()
            .map(|u| UnitConfig {
                name: spanned(&u.spec.name),
                location: u.spec.location,
                description: u.spec.description.clone(),
            })
            .collect();
        let devices = draft
            .devices
            .iter()
            .map(|d| DeviceConfig {
                name: spanned(&d.name),
                unit: d.unit.as_ref().map(spanned),
                enabled: d.enabled,
                poll_ms: d.poll_ms,
                driver: d.driver.clone(),
                security: match &d.security {
                    crate::config::draft::SecurityDraft::Stored(s) => s.masked(),
                    crate::config::draft::SecurityDraft::Given(o) => o.clone(),
                },
                tags: d
                    .tags
                    .iter()
                    .map(|t| TagConfig {
                        name: spanned(&t.spec.name),
                        unit: t.unit.as_ref().map(spanned),
                        address: spanned(&t.spec.address),
                        data_type: t.spec.data_type,
                        scale: t.spec.scale,
                        offset: t.spec.offset,
                        eng_unit: t.spec.eng_unit.clone(),
                        deadband: t.spec.deadband,
                        writable: t.spec.writable,
                        alarms: t
                            .alarms
                            .iter()
                            .map(|r| AlarmConfig::from_spec(&r.spec))
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        TenantDoc {
            name: Some(Spanned::new(0..0, tenant.to_string())),
            manage: None,
            quotas: None,
            units,
            devices,
        }
    }

    /// The document as text.
    pub fn render(&self, format: Format) -> Result<String, String> {
        match format {
            Format::Toml => toml::to_string(self).map_err(|e| e.to_string()),
            Format::Json => {
                // TOML has no null, and neither has the document: an absent key.
                let mut v = serde_json::to_value(self).map_err(|e| e.to_string())?;
                strip_nulls(&mut v);
                serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
            }
        }
    }
}

fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
