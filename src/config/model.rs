//! The configuration's types and their compiled-in defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::domain::{DataType, Location, OpenedSecurity, QuotaOverrides, Quotas};
use crate::drivers::DriverConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub supervision: SupervisionConfig,
    pub historian: HistorianConfig,
    pub cache: CacheConfig,
    pub live: LiveConfig,
    pub api: ApiConfig,
    /// Default quotas of every tenant (a tenant may set its own).
    pub quotas: Quotas,
    pub audit: AuditConfig,
    /// Config as code: tenants with their units, devices and tags.
    pub tenants: Vec<TenantConfig>,
    /// From `THERMACORE_ENV` (`development`, the default, or `production`).
    #[serde(skip)]
    pub mode: RunMode,
    /// From `THERMACORE_SECRET_KEY` only: the key that seals device secrets at rest.
    #[serde(skip)]
    pub secret_key: Option<String>,
}

/// Development (the default) or production: production refuses to start on weak
/// settings, and development credentials exist only in development.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    #[default]
    Development,
    Production,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Development => "development",
            RunMode::Production => "production",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP listener (GraphQL, metrics, health).
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    /// Serve HTTPS with these PEM files; plain HTTP when absent.
    pub tls: Option<ServerTlsConfig>,
    /// Take the client address from the first `X-Forwarded-For` entry (only behind a
    /// proxy that sets it; otherwise clients could pick their own address).
    pub trust_forwarded_for: bool,
    /// Origins allowed by CORS: empty = no CORS headers, `"*"` = any origin.
    pub cors_allowed_origins: Vec<String>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// An HTTP request not answered within this time gets 503 (not WebSockets once
    /// upgraded).
    pub request_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log_format: LogFormat::Text,
            tls: None,
            trust_forwarded_for: false,
            cors_allowed_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
        }
    }
}

/// The API's certificate chain and private key, PEM files (relative paths are taken
/// next to the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite:PATH` (relative paths are taken next to the config file) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
    /// Start-up: first and longest wait between attempts to reach the store.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Period of store upkeep (PostgreSQL partitions ahead).
    pub maintenance_interval_secs: u64,
    /// SQLite's page cache per connection, in MiB: the per-tag index of a busy
    /// history table outgrows a small cache quickly; lower it on small gateways.
    pub sqlite_cache_mib: u32,
    /// PostgreSQL: memory for the decoded packed hours of minute rollups that
    /// `history` reads (dashboards asking for the same day again), in MiB; 0: none.
    pub history_cache_mib: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: "sqlite:thermacore.db".into(),
            max_connections: 8,
            retry_initial_ms: 250,
            retry_max_ms: 10_000,
            maintenance_interval_secs: 3600,
            sqlite_cache_mib: 64,
            history_cache_mib: crate::storage::postgres::DEFAULT_HISTORY_CACHE_MIB,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of an access token.
    pub access_token_ttl_secs: u64,
    pub issuer: String,
    pub audience: String,
    /// From `THERMACORE_JWT_SECRET` only, never from the file.
    #[serde(skip)]
    pub jwt_secret: Option<String>,
    /// Lifetime of a refresh token (each use rotates it).
    pub refresh_token_ttl_secs: u64,
    /// How often the API re-reads users, tenants and revoked sessions from the store
    /// (changes made through the API apply at once; this catches other processes,
    /// such as `thermacore user add --update`).
    pub revocation_sync_secs: u64,
    /// Shortest password accepted by `changePassword`, `createUser`, `resetPassword`.
    pub min_password_len: usize,
    /// Failed logins per minute, per account and per client address, before logins
    /// from them are refused for a while ...
    pub login_failures_per_minute: u32,
    /// ... first for this long, doubling with each further lockout ...
    pub lockout_initial_ms: u64,
    /// ... up to this.
    pub lockout_max_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_ttl_secs: 900,
            issuer: "thermacore".into(),
            audience: "thermacore-api".into(),
            jwt_secret: None,
            refresh_token_ttl_secs: 7 * 24 * 3600,
            revocation_sync_secs: 5,
            min_password_len: 12,
            login_failures_per_minute: 5,
            lockout_initial_ms: 1_000,
            lockout_max_secs: 900,
        }
    }
}

/// The one restart policy of every supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionConfig {
    pub min_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// More restarts than this within `window_secs` escalates to the parent.
    pub max_restarts: u32,
    pub window_secs: u64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            min_backoff_ms: 100,
            max_backoff_ms: 30_000,
            max_restarts: 10,
            window_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorianConfig {
    /// Flush when this many samples are pending …
    pub batch_size: usize,
    /// … or when the oldest has waited this long.
    pub flush_interval_ms: u64,
    /// Bound of the in-memory buffer while the store is slow or down; samples beyond it
    /// are dropped and counted (`thermacore_historian_dropped_samples_total`).
    pub max_buffered_samples: usize,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// On a graceful stop, how long to keep writing the buffer before giving up.
    pub shutdown_flush_secs: u64,
}

impl Default for HistorianConfig {
    fn default() -> Self {
        HistorianConfig {
            batch_size: 20_000,
            flush_interval_ms: 500,
            max_buffered_samples: 2_000_000,
            retry_initial_ms: 200,
            retry_max_ms: 10_000,
            shutdown_flush_secs: 120,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// A value older than `stale_after_polls` poll periods of its device (and at least
    /// `min_stale_secs`) is served as Uncertain/Stale.
    pub stale_after_polls: u32,
    pub min_stale_secs: u64,
}

impl CacheConfig {
    /// The staleness limit (µs) of a tag read every `period_ms`.
    pub fn stale_after_us(&self, period_ms: u64) -> i64 {
        let polls = (period_ms as i64)
            .saturating_mul(1000)
            .saturating_mul(i64::from(self.stale_after_polls));
        polls.max(self.min_stale_secs as i64 * 1_000_000)
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            stale_after_polls: 3,
            min_stale_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// Values queued per subscriber before it is conflated to latest-per-tag.
    pub subscriber_queue: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            subscriber_queue: 4096,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Most raw samples one `history` query may return.
    pub max_history_points: i64,
    /// Most tag ids in one `latest`, `history` or `tagValues` call.
    pub max_tag_ids: usize,
    pub max_query_depth: usize,
    pub max_query_complexity: usize,
    /// Most aliased fields in one operation.
    pub max_aliases: usize,
    /// Most subscriptions open at once on one WebSocket connection.
    pub max_subscriptions_per_connection: usize,
    /// Schema introspection (and the GraphiQL page). Default: on in development, off
    /// in production.
    pub introspection: Option<bool>,
    /// Requests per second per signed-in user (a burst of twice as many is allowed).
    pub user_requests_per_sec: u32,
    /// Requests per second per client address without a valid token (login, refresh).
    pub anonymous_requests_per_sec: u32,
    /// How long `writeTag` waits for its device actor to report the device's answer.
    pub command_timeout_ms: u64,
    /// Most tag ids in one `GET /api/export`.
    pub export_max_tags: usize,
    /// Longest time range of one export, in days.
    pub export_max_days: u32,
    /// Exports running at once (each holds a database connection while it streams).
    pub max_concurrent_exports: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_history_points: 100_000,
            max_tag_ids: 10_000,
            max_query_depth: 12,
            max_query_complexity: 5_000,
            max_aliases: 50,
            max_subscriptions_per_connection: 20,
            introspection: None,
            user_requests_per_sec: 100,
            anonymous_requests_per_sec: 20,
            command_timeout_ms: 10_000,
            export_max_tags: 1_000,
            export_max_days: 366,
            max_concurrent_exports: 2,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Audit records older than this many days are deleted (0: kept forever). Apart
    /// from sample retention on purpose.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: 730,
        }
    }
}

/// What start-up does with a tenant's stored units, devices, tags and alarm rules
/// that its section of the file does not declare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Manage {
    /// Keep them (created through the API, or declared by an earlier file).
    #[default]
    Merge,
    /// Delete them: the file is the tenant's whole configuration.
    Replace,
}

/// One tenant declared in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: Spanned<String>,
    /// `merge` (default): declared objects are created or updated, nothing is
    /// deleted. `replace`: what the section does not declare is deleted at start-up.
    #[serde(default)]
    pub manage: Manage,
    /// This tenant's quotas where they differ from `[quotas]`.
    #[serde(default)]
    pub quotas: QuotaOverrides,
    #[serde(default)]
    pub units: Vec<UnitConfig>,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitConfig {
    pub name: Spanned<String>,
    /// `{ lat = …, lon = … }`, validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub name: Spanned<String>,
    /// Name of a unit of the same tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Spanned<String>>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Poll period in milliseconds; 0 polls back to back (load tests).
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// The protocol part, tagged by `protocol`.
    pub driver: DriverConfig,
    /// TLS and credentials of the link, in plaintext here; sealed with
    /// `THERMACORE_SECRET_KEY` before they are stored.
    #[serde(default, skip_serializing_if = "OpenedSecurity::is_default")]
    pub security: OpenedSecurity,
    #[serde(default)]
    pub tags: Vec<TagConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagConfig {
    pub name: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Spanned<String>>,
    pub address: Spanned<String>,
    #[serde(default = "default_data_type")]
    pub data_type: DataType,
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eng_unit: Option<String>,
    #[serde(default)]
    pub deadband: f64,
    #[serde(default)]
    pub writable: bool,
    /// Alarm rules on this tag.
    #[serde(default)]
    pub alarms: Vec<super::AlarmConfig>,
}

fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_data_type() -> DataType {
    DataType::F64
}
