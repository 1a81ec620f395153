//! PostgreSQL's history rollups: `samples_1m` and `samples_1h` keep the aggregates of
//! every tag per minute and hour ([`Partial`]), merged in by each insert of samples
//! in its own transaction; `history` buckets of whole minutes or hours are read from
//! them, and only the partial minutes or hours at the ends of the range from the
//! samples.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};

use super::minute_cache::{CachedMinute, HourMinutes, MinuteCache, TagHour};
use super::packed::{HOUR_US, MINUTE_US, Minutes};

use crate::domain::{TagId, TenantId, Timestamp};
use crate::storage::rollup::{Partial, bad_level, bucket_after, bucket_of, roll_up};
use crate::storage::rows::bucket_width;
use crate::storage::{Bucket, Error, Result, StoredSample};

/// The rollup tables and their widths, widest first.
const TABLES: [(&str, i64); 2] = [("samples_1h", HOUR_US), ("samples_1m", MINUTE_US)];

/// Merges the samples' aggregates into both rollups (inside the insert's transaction).
pub(super) async fn merge(
    tx: &mut Transaction<'_, Postgres>,
    samples: &[StoredSample],
) -> Result<()> {
    for (table, width) in TABLES {
        let parts = roll_up(samples, width);
        let mut cols = Columns::with_capacity(parts.len());
        // In key order, so concurrent writers lock rows in the same order.
        for (&(tenant, tag, bucket), p) in &parts {
            cols.push(tenant, tag, bucket, p);
        }
        // On a conflict the old row is `r`: every expression sees its old values.
        sqlx::query(&format!(
            "INSERT INTO {table} AS r (tenant_id, tag_id, bucket, count, sum, min, max, \
             first_ts, first, last_ts, last, bad) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], \
             $5::float8[], $6::float8[], $7::float8[], $8::int8[], $9::float8[], $10::int8[], \
             $11::float8[], $12::int8[]) \
             ON CONFLICT (tenant_id, tag_id, bucket) DO UPDATE SET \
             count = r.count + excluded.count, sum = r.sum + excluded.sum, \
             min = LEAST(r.min, excluded.min), max = GREATEST(r.max, excluded.max), \
             first_ts = CASE WHEN excluded.first_ts < r.first_ts OR r.first_ts IS NULL \
                        THEN excluded.first_ts ELSE r.first_ts END, \
             first = CASE WHEN excluded.first_ts < r.first_ts OR r.first_ts IS NULL \
                     THEN excluded.first ELSE r.first END, \
             last_ts = CASE WHEN excluded.last_ts >= r.last_ts OR r.last_ts IS NULL \
                       THEN excluded.last_ts ELSE r.last_ts END, \
             last = CASE WHEN excluded.last_ts >= r.last_ts OR r.last_ts IS NULL \
                    THEN excluded.last ELSE r.last END, \
             bad = r.bad + excluded.bad"
        ))
        .bind(&cols.tenant)
        .bind(&cols.tag)
        .bind(&cols.bucket)
        .bind(&cols.count)
        .bind(&cols.sum)
        .bind(&cols.min)
        .bind(&cols.max)
        .bind(&cols.first_ts)
        .bind(&cols.first)
        .bind(&cols.last_ts)
        .bind(&cols.last)
        .bind(&cols.bad)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Rollup rows as column arrays, for `UNNEST`.
#[derive(Default)]
struct Columns {
    tenant: Vec<i64>,
    tag: Vec<i64>,
    bucket: Vec<i64>,
    count: Vec<i64>,
    sum: Vec<f64>,
    min: Vec<Option<f64>>,
    max: Vec<Option<f64>>,
    first_ts: Vec<Option<i64>>,
    first: Vec<Option<f64>>,
    last_ts: Vec<Option<i64>>,
    last: Vec<Option<f64>>,
    bad: Vec<i64>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Columns {
            tenant: Vec::with_capacity(n),
            tag: Vec::with_capacity(n),
            bucket: Vec::with_capacity(n),
            ..Columns::default()
        }
    }

    fn push(&mut self, tenant: i64, tag: i64, bucket: i64, p: &Partial) {
        self.tenant.push(tenant);
        self.tag.push(tag);
        self.bucket.push(bucket);
        self.count.push(p.count);
        self.sum.push(p.sum);
        self.min.push(p.min);
        self.max.push(p.max);
        self.first_ts.push(p.first.map(|f| f.0));
        self.first.push(p.first.map(|f| f.1));
        self.last_ts.push(p.last.map(|l| l.0));
        self.last.push(p.last.map(|l| l.1));
        self.bad.push(p.bad);
    }
}

pub(super) fn partial_of(row: &PgRow, at: usize) -> Result<Partial> {
    let first_ts: Option<i64> = row.try_get(at + 5)?;
    let first: Option<f64> = row.try_get(at + 6)?;
    let last_ts: Option<i64> = row.try_get(at + 7)?;
    let last: Option<f64> = row.try_get(at + 8)?;
    Ok(Partial {
        count: row.try_get(at)?,
        sum: row.try_get::<Option<f64>, _>(at + 1)?.unwrap_or(0.0),
        min: row.try_get(at + 2)?,
        max: row.try_get(at + 3)?,
        first: first_ts.zip(first),
        last: last_ts.zip(last),
        bad: row.try_get(at + 4)?,
    })
}

/// The buckets of `bucket_secs` in `[from, to)`: whole hours or minutes from the
/// widest rollup whose width divides the bucket (minutes from their packed hours and
/// `samples_1m` both), the rest from the samples; all in one snapshot, so a compaction
/// moving minutes between the tables is never seen half done.
pub(super) async fn buckets(
    pool: &PgPool,
    cache: &MinuteCache,
    tenant: TenantId,
    tags: &[TagId],
    from: Timestamp,
    to: Timestamp,
    bucket_secs: i64,
) -> Result<Vec<Bucket>> {
    let width = bucket_width(bucket_secs)?;
    if tags.is_empty() || from >= to {
        return Ok(Vec::new());
    }
    let tag_ids: Vec<i64> = tags.iter().map(|t| t.0).collect();
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // Packed rows and rollup rows come sorted by (tag, start); the raw ends are few.
    let mut packed: Vec<TagHour> = Vec::new();
    let mut rolled: Vec<Keyed> = Vec::new();
    let mut ends: BTreeMap<(i64, i64), Partial> = BTreeMap::new();
    // The whole rollup periods inside the range, [lo, hi).
    let rollup = TABLES
        .into_iter()
        .find(|(_, g)| width % g == 0)
        .map(|(table, g)| {
            let lo = bucket_after(from.0, g);
            (table, g, lo, bucket_of(to.0, g))
        });
    let raw: Vec<(i64, i64)> = match rollup {
        Some((table, g, lo, hi)) if lo < hi => {
            if g == MINUTE_US {
                packed = packed_hours(&mut tx, cache, tenant, &tag_ids, bucket_of(lo, HOUR_US), hi)
                    .await?;
            }
            let sql = if g == width {
                // One rollup row a bucket (`$5`, the width, is bound but not needed).
                format!(
                    "SELECT tag_id, bucket, count, sum, min, max, bad, first_ts, first, \
                     last_ts, last FROM {table} WHERE tenant_id = $1 AND tag_id = ANY($2) \
                     AND bucket >= $3 AND bucket < $4 AND $5 > 0 ORDER BY tag_id, bucket"
                )
            } else {
                format!(
                    "SELECT tag_id, bucket - mod(bucket, $5) - CASE WHEN mod(bucket, $5) < 0 \
                     THEN $5 ELSE 0 END AS start, sum(count)::int8, sum(sum), min(min), \
                     max(max), sum(bad)::int8, min(first_ts), \
                     (array_agg(first ORDER BY first_ts) FILTER (WHERE first_ts IS NOT NULL))[1], \
                     max(last_ts), \
                     (array_agg(last ORDER BY last_ts DESC) FILTER (WHERE last_ts IS NOT NULL))[1] \
                     FROM {table} WHERE tenant_id = $1 AND tag_id = ANY($2) \
                     AND bucket >= $3 AND bucket < $4 GROUP BY tag_id, start \
                     ORDER BY tag_id, start"
                )
            };
            let rows = sqlx::query(&sql)
                .bind(tenant.0)
                .bind(&tag_ids)
                .bind(lo)
                .bind(hi)
                .bind(width)
                .fetch_all(&mut *tx)
                .await?;
            rolled.reserve(rows.len());
            for row in &rows {
                rolled.push(((row.try_get(0)?, row.try_get(1)?), partial_of(row, 2)?));
            }
            vec![(from.0, lo), (hi, to.0)]
        }
        _ => vec![(from.0, to.0)],
    };
    for (a, b) in raw.into_iter().filter(|(a, b)| a < b) {
        for (tag, start, p) in from_samples(&mut tx, tenant, &tag_ids, a, b, width).await? {
            ends.entry((tag, start)).or_default().merge(&p);
        }
    }
    tx.commit().await?;
    let (lo, hi) = rollup.map_or((0, 0), |(_, _, lo, hi)| (lo, hi));
    let per_hour = (HOUR_US / width.min(HOUR_US)) as usize;
    let mut out = Buckets::with_capacity(packed.len() * per_hour + rolled.len() + ends.len());
    // Packed minutes are the oldest writes, then samples_1m, then the raw ends.
    let mut later = merge_sorted(rolled, ends).into_iter().peekable();
    for (tag, hour, minutes) in packed {
        for m in minutes.iter() {
            let (start, p) = m.get(hour);
            if start < lo || start >= hi {
                continue;
            }
            let key = (tag, bucket_of(start, width));
            while let Some((k, p)) = later.next_if(|(k, _)| *k < key) {
                out.add(k, p);
            }
            out.add(key, p);
        }
    }
    for (k, p) in later {
        out.add(k, p);
    }
    Ok(out.finish())
}

/// The packed hours of `tags` in `[from, to)` (hour starts), sorted by (tag, hour):
/// from the cache where it holds the hour's current version, else read and decoded
/// (and cached).
async fn packed_hours(
    conn: &mut PgConnection,
    cache: &MinuteCache,
    tenant: TenantId,
    tag_ids: &[i64],
    from: i64,
    to: i64,
) -> Result<Vec<TagHour>> {
    // Every packed hour has a version (a day is 24 rows).
    let versions: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT hour, version FROM samples_1m_packed_hours \
         WHERE tenant_id = $1 AND hour >= $2 AND hour < $3",
    )
    .bind(tenant.0)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let (mut out, missed) = cache.lookup(tenant.0, tag_ids, &versions);
    if !missed.is_empty() {
        let version_of: HashMap<i64, i64> = versions.iter().copied().collect();
        let (tags, hours): (Vec<i64>, Vec<i64>) = missed.iter().copied().unzip();
        let rows = sqlx::query(
            "SELECT p.tag_id, p.hour, p.minutes \
             FROM UNNEST($2::int8[], $3::int8[]) AS k(tag_id, hour) \
             JOIN samples_1m_packed p \
             ON p.tenant_id = $1 AND p.tag_id = k.tag_id AND p.hour = k.hour",
        )
        .bind(tenant.0)
        .bind(&tags)
        .bind(&hours)
        .fetch_all(&mut *conn)
        .await?;
        let mut found = HashSet::with_capacity(rows.len());
        for row in &rows {
            let (tag, hour, bytes): (i64, i64, &[u8]) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let minutes = decode(hour, bytes)?;
            if let Some(&version) = version_of.get(&hour) {
                cache.put(tenant.0, tag, hour, version, minutes.clone());
            }
            found.insert((tag, hour));
            out.push((tag, hour, minutes));
        }
        // A tag without a packed row in a packed hour: known empty at that version.
        for (tag, hour) in missed.into_iter().filter(|k| !found.contains(k)) {
            if let Some(&version) = version_of.get(&hour) {
                cache.put(tenant.0, tag, hour, version, Vec::new().into());
            }
        }
    }
    // The merge wants (tag, hour) order: cached hours come in the caller's tag order,
    // fetched ones in any (sorting the wide rows in PostgreSQL would spill to disk).
    out.sort_unstable_by_key(|(tag, hour, _)| (*tag, *hour));
    Ok(out)
}

/// A packed hour, decoded for the cache.
fn decode(hour: i64, bytes: &[u8]) -> Result<HourMinutes> {
    Minutes::new(hour, bytes)
        .map(|m| {
            let (start, p) = m?;
            CachedMinute::new(hour, start, &p).ok_or_else(|| {
                Error::Corrupt(format!(
                    "packed minute at {start} µs of the hour at {hour} µs"
                ))
            })
        })
        .collect()
}

/// Aggregates by (tag, bucket start).
type Keyed = ((i64, i64), Partial);

/// Two runs sorted by key as one; on equal keys `a`'s part comes first.
fn merge_sorted(a: Vec<Keyed>, b: BTreeMap<(i64, i64), Partial>) -> Vec<Keyed> {
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut b = b.into_iter().peekable();
    for (k, p) in a {
        out.extend(std::iter::from_fn(|| b.next_if(|(bk, _)| *bk < k)));
        out.push((k, p));
    }
    out.extend(b);
    out
}

/// Buckets built from parts that come in key order: parts of one key merge, in the
/// order they come.
struct Buckets {
    out: Vec<Bucket>,
    current: Option<Keyed>,
}

impl Buckets {
    fn with_capacity(n: usize) -> Self {
        Buckets {
            out: Vec::with_capacity(n),
            current: None,
        }
    }

    fn add(&mut self, key: (i64, i64), p: Partial) {
        match &mut self.current {
            Some((k, acc)) if *k == key => acc.merge(&p),
            _ => {
                if let Some(((tag, start), acc)) = self.current.replace((key, p)) {
                    self.out.push(acc.into_bucket(TagId(tag), Timestamp(start)));
                }
            }
        }
    }

    fn finish(mut self) -> Vec<Bucket> {
        if let Some(((tag, start), acc)) = self.current.take() {
            self.out.push(acc.into_bucket(TagId(tag), Timestamp(start)));
        }
        self.out
    }
}

/// The aggregates of the samples in `[from, to)` per bucket of `width` µs.
async fn from_samples(
    conn: &mut PgConnection,
    tenant: TenantId,
    tag_ids: &[i64],
    from: i64,
    to: i64,
    width: i64,
) -> Result<Vec<(i64, i64, Partial)>> {
    let bad = bad_level();
    // bool and i64 live in value_int, f64 in value_num; strings have neither.
    let rows = sqlx::query(&format!(
        "SELECT tag_id, start, count(v), sum(v), min(v), max(v), \
         count(*) FILTER (WHERE is_bad), min(ts) FILTER (WHERE v IS NOT NULL), \
         (array_agg(v ORDER BY ts) FILTER (WHERE v IS NOT NULL))[1], \
         max(ts) FILTER (WHERE v IS NOT NULL), \
         (array_agg(v ORDER BY ts DESC) FILTER (WHERE v IS NOT NULL))[1] \
         FROM (SELECT tag_id, us AS ts, us - mod(us, $5) - CASE WHEN mod(us, $5) < 0 THEN $5 \
               ELSE 0 END AS start, (code >> 4) & 15 = {bad} AS is_bad, \
               CASE WHEN (code >> 4) & 15 <> {bad} \
                    AND COALESCE(value_num, value_int::float8) \
                        NOT IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) \
                    THEN COALESCE(value_num, value_int::float8) END AS v \
               FROM (SELECT tag_id, code, value_num, value_int, \
                     (extract(epoch FROM ts) * 1000000)::int8 AS us FROM samples \
                     WHERE tenant_id = $1 AND tag_id = ANY($2) \
                     AND ts >= $3 AND ts < $4) s \
              ) AS v GROUP BY tag_id, start"
    ))
    .bind(tenant.0)
    .bind(tag_ids)
    .bind(Timestamp(from).to_datetime())
    .bind(Timestamp(to).to_datetime())
    .bind(width)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, partial_of(row, 2)?)))
        .collect()
}

/// Retention: the rollup periods that end at or before `before` (packed minutes go by
/// the hour: an hour `before` cuts through keeps all its minutes).
pub(super) async fn delete_before(
    pool: &PgPool,
    tenant: TenantId,
    before: Timestamp,
) -> Result<()> {
    for (table, width) in TABLES {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE tenant_id = $1 AND bucket + $2 <= $3"
        ))
        .bind(tenant.0)
        .bind(width)
        .bind(before.0)
        .execute(pool)
        .await?;
    }
    // The hours' versions go in the same transaction: a reader that sees a version
    // sees the packed rows of that version.
    let mut tx = pool.begin().await?;
    for table in ["samples_1m_packed_hours", "samples_1m_packed"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE tenant_id = $1 AND hour + $2 <= $3"
        ))
        .bind(tenant.0)
        .bind(HOUR_US)
        .bind(before.0)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    // A packed copy of samples must not outlive any of them: the hour `before` cuts
    // through goes too (it is read from what is left in `samples`).
    sqlx::query("DELETE FROM samples_packed WHERE tenant_id = $1 AND hour < $2")
        .bind(tenant.0)
        .bind(before.0)
        .execute(pool)
        .await?;
    Ok(())
}
