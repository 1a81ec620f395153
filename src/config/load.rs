//! Reading, overriding and validating the configuration.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::draft::{self, Draft, Loc, Problem};
use super::model::{Config, RunMode, TenantConfig};

/// Why a configuration was refused. Every variant names the file or variable, the key,
/// and where the file has one, the line and column.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax, unknown key, wrong type or out-of-range value (toml names key and position).
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    /// A rule across keys (duplicates, references) was broken.
    #[error("{origin}: {key}{position}: {message}")]
    Invalid {
        origin: String,
        key: String,
        position: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// Reads a config file, applies `THERMACORE_*` overrides from the process environment
/// and the JWT secret, and validates it. Relative SQLite paths are made relative to
/// the file's directory.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut config = parse_with_env(&text, &path.display().to_string(), std::env::vars())?;
    if let Some(dir) = path.parent() {
        config.storage.url = resolve_sqlite_path(&config.storage.url, dir);
        if let Some(tls) = &mut config.server.tls {
            tls.cert_file = dir.join(&tls.cert_file);
            tls.key_file = dir.join(&tls.key_file);
        }
    }
    Ok(config)
}

/// Parses and validates config text, without looking at the environment.
pub fn parse_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    parse_with_env(text, origin, std::iter::empty())
}

/// Parses, applies the given `THERMACORE_*` variables, validates.
pub fn parse_with_env(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let file_config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: parse_message(&e, text),
    })?;
    // Cross-key rules are checked on the file's own parse, so positions are the file's.
    validate_tenants(&file_config, text, origin)?;

    let mut overrides = Vec::new();
    let mut jwt_secret = None;
    let mut secret_key = None;
    let mut mode = RunMode::Development;
    for (var, value) in env {
        let Some(rest) = var.strip_prefix("THERMACORE_") else {
            continue;
        };
        if rest == "JWT_SECRET" {
            jwt_secret = Some(value);
        } else if rest == "SECRET_KEY" {
            secret_key = Some(value);
        } else if rest == "ENV" {
            mode = match value.trim().to_ascii_lowercase().as_str() {
                "" | "development" | "dev" => RunMode::Development,
                "production" | "prod" => RunMode::Production,
                other => {
                    return Err(ConfigError::Env {
                        var,
                        message: format!(
                            "`{other}` is not a mode: use `development` or `production`"
                        ),
                    });
                }
            };
        } else if let Some((section, key)) = rest.split_once("__") {
            overrides.push((
                var.clone(),
                section.to_lowercase(),
                key.to_lowercase(),
                value,
            ));
        }
    }
    let mut config = if overrides.is_empty() {
        file_config
    } else {
        apply_overrides(text, origin, overrides)?
    };
    config.auth.jwt_secret = jwt_secret.filter(|s| !s.is_empty());
    config.secret_key = secret_key.filter(|s| !s.is_empty());
    config.mode = mode;
    validate_settings(&config, origin)?;
    Ok(config)
}

fn apply_overrides(
    text: &str,
    origin: &str,
    overrides: Vec<(String, String, String, String)>,
) -> Result<Config, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    let mut last_var = String::new();
    for (var, section, key, raw) in overrides {
        if section == "tenants" {
            return Err(ConfigError::Env {
                var,
                message: "tenants cannot be overridden from the environment".into(),
            });
        }
        // A value that parses as a TOML literal keeps its type (numbers, booleans);
        // anything else is a string.
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key, value);
            }
            _ => {
                return Err(ConfigError::Env {
                    var,
                    message: format!("`{section}` is not a section"),
                });
            }
        }
        last_var = var;
    }
    let merged = toml::to_string(&table).map_err(|e| ConfigError::Env {
        var: last_var.clone(),
        message: e.to_string(),
    })?;
    toml::from_str(&merged).map_err(|e| ConfigError::Env {
        var: last_var,
        message: e.message().to_string(),
    })
}

/// toml's message quotes the offending line; a line that may hold a device secret
/// is left out, only its position is given.
fn parse_message(e: &toml::de::Error, text: &str) -> String {
    const SECRET_KEYS: [&str; 3] = ["password", "key_file", "key_password"];
    if let Some(span) = e.span() {
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = &text[line_start..line_end];
        if SECRET_KEYS.iter().any(|k| line.contains(k)) {
            return format!(
                "{}{} (the line is not shown: it may hold a secret)",
                e.message().trim_end(),
                position(text, span)
            );
        }
    }
    e.to_string().trim_end().to_string()
}

fn position(text: &str, span: std::ops::Range<usize>) -> String {
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!(" (line {line}, column {column})")
}

fn invalid(
    origin: &str,
    text: &str,
    key: String,
    at: &Spanned<String>,
    message: String,
) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_string(),
        key,
        position: position(text, at.span()),
        message,
    }
}

/// The cross-key rules of every tenant section ([`draft::check`]: names, references,
/// drivers, addresses, alarm rules), reported at the first problem with its key and
/// the position of the entry at fault.
fn validate_tenants(config: &Config, text: &str, origin: &str) -> Result<(), ConfigError> {
    let mut tenant_names = HashSet::new();
    for (ti, tenant) in config.tenants.iter().enumerate() {
        let tk = format!("tenants[{ti}]");
        let name = tenant.name.get_ref();
        let duplicate = (!tenant_names.insert(name.as_str()))
            .then(|| format!("duplicate tenant name `{name}`"));
        if let Some(message) = draft::check_name(name, "tenant").err().or(duplicate) {
            return Err(invalid(
                origin,
                text,
                format!("{tk}.name"),
                &tenant.name,
                message,
            ));
        }
        let (d, mut problems) = Draft::from_config(&tenant.units, &tenant.devices);
        problems.extend(draft::check(&d, None));
        // Conversion problems (alarm rules) come first; keep document order.
        problems.sort_by_key(|p| p.loc.order());
        if let Some(p) = problems.first() {
            return Err(invalid(
                origin,
                text,
                format!("{tk}.{}", p.path()),
                span_of(tenant, p),
                p.message.clone(),
            ));
        }
    }
    Ok(())
}

/// The entry of the file a problem points at: the key at fault where it has a
/// position, else the name of its object.
fn span_of<'a>(t: &'a TenantConfig, p: &Problem) -> &'a Spanned<String> {
    let field = p.field.as_str();
    match p.loc {
        Loc::Tenant => &t.name,
        Loc::Unit(u) => t.units.get(u).map_or(&t.name, |u| &u.name),
        Loc::Device(d) => t
            .devices
            .get(d)
            .map_or(&t.name, |d| match (&d.unit, field) {
                (Some(u), "unit") => u,
                _ => &d.name,
            }),
        Loc::Tag(d, g) => {
            let Some(tag) = t.devices.get(d).and_then(|d| d.tags.get(g)) else {
                return &t.name;
            };
            match (field, &tag.unit) {
                ("address", _) => &tag.address,
                ("unit", Some(u)) => u,
                ("alarms", _) => tag.alarms.first().map_or(&tag.name, |a| &a.name),
                _ => &tag.name,
            }
        }
        Loc::Rule(d, g, r) => t
            .devices
            .get(d)
            .and_then(|d| d.tags.get(g))
            .and_then(|g| g.alarms.get(r))
            .map_or(&t.name, |a| &a.name),
    }
}

fn validate_settings(c: &Config, origin: &str) -> Result<(), ConfigError> {
    let fail = |key: &str, message: &str| {
        Err(ConfigError::Invalid {
            origin: origin.to_string(),
            key: key.to_string(),
            position: String::new(),
            message: message.to_string(),
        })
    };
    let url = &c.storage.url;
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        return fail(
            "storage.url",
            "must start with sqlite:, postgres:// or postgresql://",
        );
    }
    if c.storage.max_connections == 0 {
        return fail("storage.max_connections", "must be at least 1");
    }
    if c.historian.batch_size == 0 {
        return fail("historian.batch_size", "must be at least 1");
    }
    if c.historian.max_buffered_samples < c.historian.batch_size {
        return fail(
            "historian.max_buffered_samples",
            "must be at least historian.batch_size",
        );
    }
    if c.supervision.min_backoff_ms > c.supervision.max_backoff_ms {
        return fail(
            "supervision.min_backoff_ms",
            "must not exceed supervision.max_backoff_ms",
        );
    }
    if c.supervision.max_restarts == 0 || c.supervision.window_secs == 0 {
        return fail(
            "supervision.max_restarts",
            "max_restarts and window_secs must be at least 1",
        );
    }
    if c.auth.access_token_ttl_secs == 0 {
        return fail("auth.access_token_ttl_secs", "must be at least 1");
    }
    if c.live.subscriber_queue == 0 {
        return fail("live.subscriber_queue", "must be at least 1");
    }
    if c.server.max_body_bytes == 0 {
        return fail("server.max_body_bytes", "must be at least 1");
    }
    if c.server.request_timeout_secs == 0 {
        return fail("server.request_timeout_secs", "must be at least 1");
    }
    if c.api.export_max_tags == 0 || c.api.export_max_days == 0 || c.api.max_concurrent_exports == 0
    {
        return fail(
            "api.export_max_tags, export_max_days and max_concurrent_exports",
            "must be at least 1",
        );
    }
    if let Some(bad) = c
        .server
        .cors_allowed_origins
        .iter()
        .find(|o| !valid_origin(o))
    {
        return fail(
            "server.cors_allowed_origins",
            &format!("`{bad}` is not an origin: use \"*\" or scheme://host[:port] without a path"),
        );
    }
    Ok(())
}

/// `*`, or `http(s)://host[:port]` with no path, as browsers send it in `Origin`.
fn valid_origin(o: &str) -> bool {
    if o == "*" {
        return true;
    }
    let Some(host) = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
    else {
        return false;
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// `sqlite:data/x.db` in `/etc/tc/` becomes `sqlite:/etc/tc/data/x.db`.
pub(crate) fn resolve_sqlite_path(url: &str, dir: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return url.to_string();
    };
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.starts_with(':') || path.is_empty() || Path::new(path).is_absolute() {
        return url.to_string();
    }
    format!("sqlite:{}", dir.join(path).display())
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
