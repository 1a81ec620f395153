//! SQLite backend: the embedded default. One file in WAL mode (or a private
//! in-memory database for tests and demos), a lazy pool, and multi-row inserts for
//! the history.

mod history;
// Shared with the other backend on purpose: same SQL, compiled against our `Pool`.
#[allow(clippy::duplicate_mod)]
#[path = "alarms.rs"]
mod alarms;
#[allow(clippy::duplicate_mod)]
#[path = "apply.rs"]
mod apply;
#[allow(clippy::duplicate_mod)]
#[path = "security.rs"]
mod security;
#[allow(clippy::duplicate_mod)]
#[path = "world.rs"]
mod world;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::export::Chunks;
use super::{Bucket, Error, Result, Store, StoredSample};
use crate::domain::{
    Device, DeviceId, DeviceSpec, Role, Sample, Tag, TagId, TagSpec, Tenant, TenantId, Timestamp,
    Unit, UnitSpec, User, UserId,
};

/// How long a query waits for another connection's write lock before the store
/// reports itself [`Error::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a caller waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The tables of a tenant's history (without foreign keys, so deleted explicitly).
const HISTORY_TABLES: [&str; 1] = ["samples"];

/// The pool type the shared `world` module is compiled against.
type Pool = SqlitePool;

/// The id of a new row of `table`: above every id the table holds or ever held
/// (SQLite alone would give the id of a deleted last row again; `id_floors` keeps the
/// largest deleted one).
fn next_id(table: &str) -> String {
    format!(
        "(SELECT max(m) + 1 FROM (SELECT coalesce(max(id), 0) AS m FROM {table} \
         UNION ALL SELECT last_id FROM id_floors WHERE tbl = '{table}'))"
    )
}
/// The database the shared modules build queries for.
type Db = sqlx::Sqlite;
/// The store type the shared `security` module implements [`SecurityStore`](super::SecurityStore) for.
type Backend = SqliteStore;

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// Page cache per connection unless configured (SQLite's own default is 2 MiB): the
/// per-tag index of a busy history table outgrows a small cache quickly.
pub const DEFAULT_CACHE_MIB: u32 = 64;

impl SqliteStore {
    /// Prepares a pool for `sqlite:PATH`, `sqlite://PATH` or `sqlite::memory:`.
    /// Connects lazily: an unreachable file (missing directory, locked database) shows
    /// up in [`Store::ping`], not here. Only a malformed URL fails.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with_cache(url, max_connections, DEFAULT_CACHE_MIB).await
    }

    /// As [`SqliteStore::connect`], with `cache_mib` of page cache per connection.
    pub async fn connect_with_cache(
        url: &str,
        max_connections: u32,
        cache_mib: u32,
    ) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(Error::Database)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Negative: KiB rather than pages.
            .pragma(
                "cache_size",
                format!("-{}", u64::from(cache_mib.max(1)) * 1024),
            );
        let pool = SqlitePoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        let pool = if is_in_memory(url) {
            // The database lives as long as its one connection: never close it.
            pool.max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool.max_connections(max_connections.max(1))
        };
        Ok(SqliteStore {
            pool: pool.connect_lazy_with(options),
        })
    }
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    async fn maintain(&self, _now: Timestamp) -> Result<()> {
        Ok(())
    }

    async fn compact_history(&self, _before: Timestamp) -> Result<u64> {
        Ok(0)
    }

    async fn upsert_tenant(&self, name: &str) -> Result<Tenant> {
        world::upsert_tenant(&self.pool, name).await
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        world::tenant_by_name(&self.pool, name).await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        world::tenants(&self.pool).await
    }

    async fn create_user(
        &self,
        tenant: TenantId,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<User> {
        world::create_user(&self.pool, tenant, username, password_hash, role).await
    }

    async fn set_user_password(
        &self,
        tenant: TenantId,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<User> {
        world::set_user_password(&self.pool, tenant, username, password_hash, role).await
    }

    async fn user_by_name(&self, tenant: TenantId, username: &str) -> Result<Option<User>> {
        world::user_by_name(&self.pool, tenant, username).await
    }

    async fn user_by_id(&self, tenant: TenantId, id: UserId) -> Result<Option<User>> {
        world::user_by_id(&self.pool, tenant, id).await
    }

    async fn upsert_unit(&self, tenant: TenantId, spec: &UnitSpec) -> Result<Unit> {
        world::upsert_unit(&self.pool, tenant, spec).await
    }

    async fn upsert_device(&self, tenant: TenantId, spec: &DeviceSpec) -> Result<Device> {
        world::upsert_device(&self.pool, tenant, spec).await
    }

    async fn upsert_tag(&self, tenant: TenantId, device: DeviceId, spec: &TagSpec) -> Result<Tag> {
        world::upsert_tag(&self.pool, tenant, device, spec).await
    }

    async fn units(&self, tenant: TenantId) -> Result<Vec<Unit>> {
        world::units(&self.pool, tenant).await
    }

    async fn devices(&self, tenant: TenantId) -> Result<Vec<Device>> {
        world::devices(&self.pool, tenant, None).await
    }

    async fn device(&self, tenant: TenantId, id: DeviceId) -> Result<Option<Device>> {
        Ok(world::devices(&self.pool, tenant, Some(id)).await?.pop())
    }

    async fn tags(&self, tenant: TenantId, device: Option<DeviceId>) -> Result<Vec<Tag>> {
        world::tags(&self.pool, tenant, device).await
    }

    async fn apply_world(
        &self,
        tenant: TenantId,
        changes: &super::WorldChanges,
    ) -> Result<super::WrittenIds> {
        apply::apply_world(&self.pool, tenant, changes).await
    }

    async fn insert_samples(&self, samples: &[StoredSample]) -> Result<u64> {
        history::insert_samples(&self.pool, samples).await
    }

    async fn history(
        &self,
        tenant: TenantId,
        tags: &[TagId],
        from: Timestamp,
        to: Timestamp,
        limit: i64,
    ) -> Result<Vec<Sample>> {
        history::history(&self.pool, tenant, tags, from, to, limit).await
    }

    async fn history_buckets(
        &self,
        tenant: TenantId,
        tags: &[TagId],
        from: Timestamp,
        to: Timestamp,
        bucket_secs: i64,
    ) -> Result<Vec<Bucket>> {
        history::history_buckets(&self.pool, tenant, tags, from, to, bucket_secs).await
    }

    fn export_history(
        &self,
        tenant: TenantId,
        tags: &[TagId],
        from: Timestamp,
        to: Timestamp,
    ) -> Chunks<Sample> {
        history::export_history(&self.pool, tenant, tags, from, to)
    }

    async fn count_samples(&self, tenant: TenantId) -> Result<i64> {
        history::count_samples(&self.pool, tenant).await
    }
}
