//! Daily partitions of `samples`, created ahead of time.
//!
//! `maintain(now)` makes sure `samples_pYYYYMMDD` exists for yesterday through
//! `now` + 3 days (UTC). It is idempotent and safe to run from several processes at
//! once: creation is serialised by an advisory lock and a concurrent duplicate is
//! ignored. Rows that already landed in `samples_default` for a new day are moved into
//! that day's partition before it is attached.

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::{PgExecutor, PgPool};

use crate::domain::Timestamp;
use crate::storage::rows::invalid;
use crate::storage::{Error, Result};

/// Days ahead of today that get a partition.
const DAYS_AHEAD: u64 = 3;
/// Advisory lock key serialising partition creation across processes ("thermaco").
const LOCK_KEY: i64 = 0x7468_6572_6d61_636f;

/// Creates the missing partitions from yesterday to `now` + 3 days.
pub(super) async fn maintain(pool: &PgPool, now: Timestamp) -> Result<()> {
    let today = now.to_datetime().date_naive();
    let first = today
        .checked_sub_days(Days::new(1))
        .ok_or_else(|| invalid(format!("no partition before {today}")))?;
    for offset in 0..=DAYS_AHEAD + 1 {
        let day = first
            .checked_add_days(Days::new(offset))
            .ok_or_else(|| invalid(format!("no partition after {first}")))?;
        ensure_partition(pool, day).await?;
    }
    Ok(())
}

/// The partition of one UTC day.
struct Day {
    name: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Day {
    fn new(day: NaiveDate) -> Result<Self> {
        let next = day
            .checked_add_days(Days::new(1))
            .ok_or_else(|| invalid(format!("no partition after {day}")))?;
        Ok(Day {
            name: format!("samples_p{}", day.format("%Y%m%d")),
            from: day.and_time(chrono::NaiveTime::MIN).and_utc(),
            to: next.and_time(chrono::NaiveTime::MIN).and_utc(),
        })
    }

    /// `FOR VALUES FROM (…) TO (…)`, with explicit UTC offsets so the session's time
    /// zone does not matter.
    fn bounds(&self) -> String {
        format!(
            "FOR VALUES FROM ('{}') TO ('{}')",
            self.from.format("%Y-%m-%d %H:%M:%S+00"),
            self.to.format("%Y-%m-%d %H:%M:%S+00")
        )
    }
}

async fn exists(conn: impl PgExecutor<'_>, name: &str) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(conn)
        .await?)
}

async fn ensure_partition(pool: &PgPool, day: NaiveDate) -> Result<()> {
    let day = Day::new(day)?;
    // The common case, partition already there, takes no lock at all.
    if exists(pool, &day.name).await? {
        return Ok(());
    }
    match create_partition(pool, &day).await {
        Err(Error::Database(sqlx::Error::Database(e)))
            if matches!(e.code().as_deref(), Some("42P07" | "42710" | "23505")) =>
        {
            // duplicate_table / duplicate_object / unique_violation on the catalog:
            // another process created it between our check and our statement.
            Ok(())
        }
        other => other,
    }
}

async fn create_partition(pool: &PgPool, day: &Day) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    if exists(&mut *tx, &day.name).await? {
        return Ok(());
    }
    let (name, bounds) = (&day.name, day.bounds());
    let early_rows: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM samples_default WHERE ts >= $1 AND ts < $2)",
    )
    .bind(day.from)
    .bind(day.to)
    .fetch_one(&mut *tx)
    .await?;
    if early_rows {
        // A partition cannot be created over rows the default partition holds for its
        // range: build it as a plain table, move the rows, then attach it.
        sqlx::query(&format!(
            "CREATE TABLE {name} (LIKE samples INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "WITH moved AS (DELETE FROM samples_default WHERE ts >= $1 AND ts < $2 \
             RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        ))
        .bind(day.from)
        .bind(day.to)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "ALTER TABLE samples ATTACH PARTITION {name} {bounds}"
        ))
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF samples {bounds}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
