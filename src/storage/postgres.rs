//! PostgreSQL backend: a lazy pool, binary `COPY` bulk inserts, and samples partitioned by
//! day, with partitions created ahead of time by [`Store::maintain`].

mod bytes;
mod history;
mod minute_cache;
mod packed;
mod packed_export;
mod packed_samples;
mod partitions;
mod rollups;
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
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::export::Chunks;
use super::{Bucket, Error, Result, Store, StoredSample};
use crate::domain::{
    Device, DeviceId, DeviceSpec, Role, Sample, Tag, TagId, TagSpec, Tenant, TenantId, Timestamp,
    Unit, UnitSpec, User, UserId,
};

/// How long a caller waits for a pooled connection (including connecting) before the
/// store reports itself [`Error::Unavailable`].
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long after an hour ends its minute rollups are packed: late samples are
/// rarer by then (they would still be counted, through `samples_1m`).
const COMPACT_AFTER_US: i64 = 5 * 60 * 1_000_000;

/// The tables of a tenant's history (without foreign keys, so deleted explicitly).
const HISTORY_TABLES: [&str; 6] = [
    "samples",
    "samples_1m",
    "samples_1h",
    "samples_1m_packed",
    "samples_1m_packed_hours",
    "samples_packed",
];

/// Compaction transactions per maintenance run: some 10,000 tag-hours.
const COMPACT_ROUNDS: usize = 100;

/// The pool type the shared `world` module is compiled against.
type Pool = PgPool;

/// The id of a new row of `table`, from its sequence (which never gives an id twice).
fn next_id(table: &str) -> String {
    format!("nextval(pg_get_serial_sequence('{table}', 'id'))")
}
/// The database the shared modules build queries for.
type Db = sqlx::Postgres;
/// The store type the shared `security` module implements [`SecurityStore`](super::SecurityStore) for.
type Backend = PostgresStore;

/// The PostgreSQL implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Packed hours of minute rollups, decoded (shared by the clones).
    minutes: Arc<minute_cache::MinuteCache>,
}

/// Default memory for cached packed minute rollups, in MiB (`[storage]
/// history_cache_mib`): a day of 1-minute trends of some 2,500 tags.
pub const DEFAULT_HISTORY_CACHE_MIB: u32 = 256;

impl PostgresStore {
    /// Prepares a pool for `postgres://…` or `postgresql://…`. Connects lazily: an
    /// unreachable server shows up in [`Store::ping`], not here. Only a malformed URL
    /// fails. Caches [`DEFAULT_HISTORY_CACHE_MIB`] of packed minute rollups.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with_cache(url, max_connections, DEFAULT_HISTORY_CACHE_MIB).await
    }

    /// [`connect`](Self::connect), caching up to `history_cache_mib` MiB of packed minute
    /// rollups for `history` (0: none).
    pub async fn connect_with_cache(
        url: &str,
        max_connections: u32,
        history_cache_mib: u32,
    ) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(Error::Database)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let budget = usize::try_from(history_cache_mib)
            .unwrap_or(usize::MAX)
            .saturating_mul(1 << 20);
        Ok(PostgresStore {
            pool,
            minutes: Arc::new(minute_cache::MinuteCache::new(budget)),
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        partitions::maintain(&self.pool, Timestamp::now()).await
    }

    async fn maintain(&self, now: Timestamp) -> Result<()> {
        partitions::maintain(&self.pool, now).await?;
        // Bounded, so that a backlog (the first run over an older database) is worked
        // off over several runs rather than holding up the next.
        let moved = packed::compact(&self.pool, now.0 - COMPACT_AFTER_US, COMPACT_ROUNDS).await?;
        tracing::debug!(moved, "history packed");
        Ok(())
    }

    async fn compact_history(&self, before: Timestamp) -> Result<u64> {
        packed::compact(&self.pool, before.0, usize::MAX).await
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
        rollups::buckets(
            &self.pool,
            &self.minutes,
            tenant,
            tags,
            from,
            to,
            bucket_secs,
        )
        .await
    }

    fn export_history(
        &self,
        tenant: TenantId,
        tags: &[TagId],
        from: Timestamp,
        to: Timestamp,
    ) -> Chunks<Sample> {
        packed_export::export(&self.pool, tenant, tags, from, to)
    }

    async fn count_samples(&self, tenant: TenantId) -> Result<i64> {
        history::count_samples(&self.pool, tenant).await
    }
}
