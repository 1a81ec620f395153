//! Persistence: one [`Store`] trait, with SQLite (embedded default) and PostgreSQL
//! implementations over sqlx. Every method that touches tenant data takes a
//! [`TenantId`], so no caller can forget the scope.

mod changes;
mod codec;
pub mod export;
pub mod postgres;
pub mod rollup;
mod rows;
mod snapshot;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::alarms::{AlarmEvent, Anomaly, Rule, RuleSpec, StoredAlarm};

use crate::domain::{
    AuditFilter, AuditRecord, Device, DeviceId, DeviceSpec, QuotaOverrides, RefreshToken,
    RefreshUse, Role, RuleId, Sample, Tag, TagId, TagSpec, Tenant, TenantId, TenantRecord,
    Timestamp, Unit, UnitSpec, User, UserId, UserState,
};

pub use changes::{DeviceWrite, Ref, RuleWrite, TagWrite, UnitWrite, WorldChanges, WrittenIds};
pub use codec::{decode_code, decode_value, encode_code};
pub use snapshot::Snapshot;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database cannot be reached or refused the connection.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A uniqueness rule was broken (e.g. a second user with the same name).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The referenced object does not exist in this tenant.
    #[error("not found: {0}")]
    NotFound(String),
    /// Stored data could not be decoded (e.g. a device's driver config).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database URL is not one we support.
    #[error("unsupported database url `{0}` (expected sqlite:… or postgres://…)")]
    UnsupportedUrl(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every sqlx error goes through [`classify`], so `?` cannot turn "store down" into
/// "bad query".
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        classify(e)
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError;
        match e {
            MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _)
                if rows::is_unavailable(&e) =>
            {
                Error::Unavailable(e.to_string())
            }
            e => Error::Migrate(e),
        }
    }
}

/// Sorts an sqlx error: connection-level failures (I/O, TLS, pool timeout or closed,
/// SQLite busy/locked/cannot open, PostgreSQL connection and shutdown states) become
/// [`Error::Unavailable`], undecodable columns [`Error::Corrupt`], the rest
/// [`Error::Database`].
fn classify(e: sqlx::Error) -> Error {
    if rows::is_unavailable(&e) {
        return Error::Unavailable(e.to_string());
    }
    match e {
        sqlx::Error::ColumnDecode { index, source } => {
            Error::Corrupt(format!("column {index}: {source}"))
        }
        e => Error::Database(e),
    }
}

/// A sample on its way to the history table, with its tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    pub tenant: TenantId,
    pub sample: Sample,
}

/// The samples in the order of the history index (tenant, tag, time). Both backends
/// insert in this order: the index's leaves are then walked once and in sequence
/// instead of at random, several times faster once the index outgrows the cache.
pub(crate) fn in_index_order(samples: &[StoredSample]) -> Vec<&StoredSample> {
    let mut order: Vec<&StoredSample> = samples.iter().collect();
    order.sort_unstable_by_key(|s| (s.tenant.0, s.sample.tag.0, s.sample.source_time.0));
    order
}

/// One aggregation bucket of a tag's history (see [`rollup`]): the aggregates are of
/// the numeric samples that are not Bad, and the Bad ones are counted apart. The
/// aggregates are read through methods that say `None` when `count` is 0 (only Bad
/// samples in the bucket); without an `Option` per aggregate a bucket is 72 bytes
/// instead of 112, which matters for a day of minutes of many tags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tag: TagId,
    /// Start of the bucket (inclusive).
    pub start: Timestamp,
    /// Numeric samples that are not Bad: what the aggregates are of.
    pub count: i64,
    /// Bad samples in the bucket.
    pub bad: i64,
    /// avg, min, max, first, last (zeros when `count` is 0).
    values: [f64; 5],
}

impl Bucket {
    /// A bucket of `count` counted samples whose aggregates are `[avg, min, max, first,
    /// last]` (ignored when `count` is 0), and `bad` Bad ones.
    pub fn new(tag: TagId, start: Timestamp, count: i64, bad: i64, values: [f64; 5]) -> Self {
        Bucket {
            tag,
            start,
            count,
            bad,
            values: if count > 0 { values } else { [0.0; 5] },
        }
    }

    fn value(&self, i: usize) -> Option<f64> {
        (self.count > 0).then_some(self.values[i])
    }

    pub fn avg(&self) -> Option<f64> {
        self.value(0)
    }

    pub fn min(&self) -> Option<f64> {
        self.value(1)
    }

    pub fn max(&self) -> Option<f64> {
        self.value(2)
    }

    /// The earliest of the counted samples, by source time.
    pub fn first(&self) -> Option<f64> {
        self.value(3)
    }

    /// The latest of the counted samples, by source time.
    pub fn last(&self) -> Option<f64> {
        self.value(4)
    }
}

/// What a tenant holds, against its quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantCounts {
    pub devices: i64,
    pub tags: i64,
    pub users: i64,
}

/// A change to a user; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
    /// Tokens issued before this instant (ms since the epoch) stop counting. Only ever
    /// moves forward.
    pub revoke_tokens_at_ms: Option<i64>,
}

/// Tenant administration, users, refresh tokens and the audit log.
///
/// The audit log is append-only: besides [`SecurityStore::append_audit`] the only
/// write is the retention purge, and both schemas refuse an `UPDATE` of a record.
#[async_trait]
pub trait SecurityStore: Send + Sync + 'static {
    async fn tenant_records(&self) -> Result<Vec<TenantRecord>>;
    async fn tenant_record(&self, id: TenantId) -> Result<Option<TenantRecord>>;
    /// Fails with [`Error::Conflict`] when the name is taken.
    async fn create_tenant(&self, name: &str, quotas: &QuotaOverrides) -> Result<TenantRecord>;
    async fn set_tenant_disabled(
        &self,
        id: TenantId,
        disabled: bool,
    ) -> Result<Option<TenantRecord>>;
    async fn set_tenant_quotas(
        &self,
        id: TenantId,
        quotas: &QuotaOverrides,
    ) -> Result<Option<TenantRecord>>;
    /// Deletes the tenant with everything it owns, history included; its audit
    /// records stay. False when there was no such tenant.
    async fn delete_tenant(&self, id: TenantId) -> Result<bool>;
    async fn tenant_counts(&self, tenant: TenantId) -> Result<TenantCounts>;

    async fn users(&self, tenant: TenantId) -> Result<Vec<User>>;
    async fn update_user(
        &self,
        tenant: TenantId,
        id: UserId,
        change: &UserChange,
    ) -> Result<Option<User>>;
    async fn delete_user(&self, tenant: TenantId, id: UserId) -> Result<bool>;
    /// Every user's token-relevant state (the API's revocation view).
    async fn user_states(&self) -> Result<Vec<UserState>>;
    /// Flags a user as a development credential (created by `thermacore demo`).
    async fn mark_dev_credential(&self, tenant: TenantId, username: &str) -> Result<()>;
    /// (tenant, username) of every development credential.
    async fn dev_credentials(&self) -> Result<Vec<(String, String)>>;

    async fn insert_refresh_token(&self, token: &RefreshToken) -> Result<()>;
    /// Marks the token used if it is valid, atomically; otherwise says why not.
    async fn use_refresh_token(&self, token_hash: &str, now: Timestamp) -> Result<RefreshUse>;
    async fn revoke_refresh_family(&self, family: &str, now: Timestamp) -> Result<u64>;
    async fn revoke_user_refresh_tokens(&self, user: UserId, now: Timestamp) -> Result<u64>;
    /// Families with a token revoked at or after `since`.
    async fn revoked_families(&self, since: Timestamp) -> Result<Vec<String>>;
    /// Deletes refresh tokens that expired before `before`.
    async fn purge_refresh_tokens(&self, before: Timestamp) -> Result<u64>;

    /// Appends one record; returns its id.
    async fn append_audit(&self, record: &AuditRecord) -> Result<i64>;
    /// Newest first, ids below `before_id`, at most `limit`; `tenant: None` reads every
    /// tenant's records.
    async fn audit_log(
        &self,
        tenant: Option<TenantId>,
        filter: &AuditFilter,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>>;
    /// Audit retention: deletes records older than `before`.
    async fn purge_audit(&self, before: Timestamp) -> Result<u64>;

    /// History retention of one tenant: samples (their count is returned) and the
    /// anomaly detections on them.
    async fn delete_history_before(&self, tenant: TenantId, before: Timestamp) -> Result<u64>;
}

/// One recorded alarm transition.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmEventRecord {
    pub id: i64,
    pub event: AlarmEvent,
}

/// Which alarm transitions to read; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlarmHistoryFilter {
    pub rule: Option<RuleId>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// One recorded anomaly detection.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyRecord {
    pub id: i64,
    pub anomaly: Anomaly,
}

/// Which anomaly detections to read: of `tags`, at source times in `[from, to)`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyFilter {
    pub tags: Vec<TagId>,
    pub from: Timestamp,
    pub to: Timestamp,
    pub min_confidence: Option<f64>,
}

/// Alarm rules, alarm states, the alarm history and the anomaly detections. Only the tenant's alert stream
/// writes states and history.
#[async_trait]
pub trait AlarmStore: Send + Sync + 'static {
    /// Creates or updates (by tag and name) a rule. `NotFound` if the tag is not this
    /// tenant's.
    async fn upsert_alarm_rule(
        &self,
        tenant: TenantId,
        tag: TagId,
        spec: &RuleSpec,
    ) -> Result<Rule>;
    async fn alarm_rules(&self, tenant: TenantId) -> Result<Vec<Rule>>;
    /// The last recorded state of every alarm of the tenant.
    async fn alarm_states(&self, tenant: TenantId) -> Result<HashMap<RuleId, StoredAlarm>>;
    /// Appends the transitions to the history, moves the alarms' states and appends
    /// the anomaly detections, in one transaction: all or nothing.
    async fn record_alarms(
        &self,
        tenant: TenantId,
        events: &[AlarmEvent],
        anomalies: &[Anomaly],
    ) -> Result<()>;
    /// Newest first, ids below `before_id`, at most `limit`.
    async fn alarm_history(
        &self,
        tenant: TenantId,
        filter: &AlarmHistoryFilter,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AlarmEventRecord>>;
    /// The transitions the filter selects, oldest first, read from the database's
    /// cursor as the consumer takes the chunks (the export).
    fn export_alarm_history(
        &self,
        tenant: TenantId,
        filter: &AlarmHistoryFilter,
    ) -> export::Chunks<AlarmEventRecord>;
    /// Newest first (by time, then id), older than `before` (time, id), at most
    /// `limit`.
    async fn anomalies(
        &self,
        tenant: TenantId,
        filter: &AnomalyFilter,
        before: Option<(Timestamp, i64)>,
        limit: i64,
    ) -> Result<Vec<AnomalyRecord>>;
}

/// The persistence interface of ThermaCore.
#[async_trait]
pub trait Store: SecurityStore + AlarmStore {
    /// "sqlite" or "postgres", for logs and metrics labels.
    fn backend(&self) -> &'static str;

    /// Answers when the database answers (`/readyz`).
    async fn ping(&self) -> Result<()>;

    /// Applies the embedded migrations of this backend.
    async fn migrate(&self) -> Result<()>;

    /// Periodic upkeep: PostgreSQL creates sample partitions ahead of time and packs
    /// the minute rollups of the hours that ended five minutes or more before `now`
    /// ([`Store::compact_history`]).
    async fn maintain(&self, now: Timestamp) -> Result<()>;

    /// Moves closed history into its compact form: on PostgreSQL the minute rollups of
    /// the hours that ended by `before` into one packed row per tag and hour (reads
    /// see the same buckets before and after). Returns the rows moved; SQLite keeps no
    /// rollups and moves none.
    async fn compact_history(&self, before: Timestamp) -> Result<u64>;

    // --- tenants and users -------------------------------------------------------------

    /// Creates the tenant if missing; returns it either way.
    async fn upsert_tenant(&self, name: &str) -> Result<Tenant>;
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>>;
    async fn tenants(&self) -> Result<Vec<Tenant>>;

    /// Fails with [`Error::Conflict`] when the username is taken in this tenant.
    async fn create_user(
        &self,
        tenant: TenantId,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<User>;
    /// Replaces hash and role of an existing user (demo start-up, `user add --force`).
    async fn set_user_password(
        &self,
        tenant: TenantId,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<User>;
    async fn user_by_name(&self, tenant: TenantId, username: &str) -> Result<Option<User>>;
    async fn user_by_id(&self, tenant: TenantId, id: UserId) -> Result<Option<User>>;

    // --- the configured world ---------------------------------------------------------

    /// Creates or updates (by name) a unit.
    async fn upsert_unit(&self, tenant: TenantId, spec: &UnitSpec) -> Result<Unit>;
    /// Creates or updates (by name) a device; the driver config is stored as JSON.
    async fn upsert_device(&self, tenant: TenantId, spec: &DeviceSpec) -> Result<Device>;
    /// Creates or updates (by device and name) a tag. `NotFound` if the device is not
    /// this tenant's.
    async fn upsert_tag(&self, tenant: TenantId, device: DeviceId, spec: &TagSpec) -> Result<Tag>;
    async fn units(&self, tenant: TenantId) -> Result<Vec<Unit>>;
    async fn devices(&self, tenant: TenantId) -> Result<Vec<Device>>;
    async fn device(&self, tenant: TenantId, id: DeviceId) -> Result<Option<Device>>;
    /// All tags of the tenant, or of one of its devices.
    async fn tags(&self, tenant: TenantId, device: Option<DeviceId>) -> Result<Vec<Tag>>;
    /// Applies a batch of configuration writes and deletions in one transaction: all
    /// or nothing. A name taken is [`Error::Conflict`]; an id (or a unit, device or tag
    /// referred to) that is not the tenant's is [`Error::NotFound`]. New ids are never
    /// ones a deleted object had. Returns the id of every write, in order.
    async fn apply_world(&self, tenant: TenantId, changes: &WorldChanges) -> Result<WrittenIds>;

    // --- history -----------------------------------------------------------------------

    /// Bulk insert, in one transaction. Returns the number of rows written.
    /// SQLite: prepared multi-row inserts chunked under the bind limit;
    /// PostgreSQL: binary `COPY`. Both write rows in index order (tenant, tag, time).
    async fn insert_samples(&self, samples: &[StoredSample]) -> Result<u64>;

    /// Raw samples of the tenant's tags in `[from, to)`, ordered by tag then time,
    /// at most `limit` rows.
    async fn history(
        &self,
        tenant: TenantId,
        tags: &[TagId],
        from: Timestamp,
        to: Timestamp,
        limit: i64,
    ) -> Result<Vec<Sample>>;

    /// The [`Bucket`]s of `bucket_secs` (epoch-aligned) of samples in `[from, to)`,
    /// ordered by tag then start; buckets without samples are left out. PostgreSQL
    /// reads whole minutes and hours from its rollups, SQLite aggregates the samples.
    async fn history_buckets(
        &self,
        tenant: TenantId,
        tags: &[TagId],
        from: Timestamp,
        to: Timestamp,
        bucket_secs: i64,
    ) -> Result<Vec<Bucket>>;

    /// Every raw sample of the tags in `[from, to)`, ordered by tag then time, read
    /// from the database as the consumer takes the chunks (the export; PostgreSQL
    /// reads whole packed hours from their packed copies).
    fn export_history(
        &self,
        tenant: TenantId,
        tags: &[TagId],
        from: Timestamp,
        to: Timestamp,
    ) -> export::Chunks<Sample>;

    /// Number of stored samples of the tenant (tests, benchmarks, `system`).
    async fn count_samples(&self, tenant: TenantId) -> Result<i64>;
}

/// Opens the store of the `[storage]` section (URL, pool size, SQLite's page cache,
/// PostgreSQL's history cache).
/// Does not migrate.
pub async fn connect_config(config: &crate::config::StorageConfig) -> Result<Arc<dyn Store>> {
    if config.url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::connect_with_cache(
                &config.url,
                config.max_connections,
                config.sqlite_cache_mib,
            )
            .await?,
        ))
    } else if config.url.starts_with("postgres://") || config.url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PostgresStore::connect_with_cache(
                &config.url,
                config.max_connections,
                config.history_cache_mib,
            )
            .await?,
        ))
    } else {
        connect(&config.url, config.max_connections).await
    }
}

/// Opens the store named by a URL: `sqlite:PATH` / `sqlite://PATH` / `sqlite::memory:`,
/// or `postgres://…` / `postgresql://…`. Does not migrate.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::connect(url, max_connections).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PostgresStore::connect(url, max_connections).await?,
        ))
    } else {
        Err(Error::UnsupportedUrl(url.to_string()))
    }
}
