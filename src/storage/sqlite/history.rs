//! Samples in SQLite: multi-row inserts from a fixed set of cached statements, raw
//! history and epoch-aligned buckets.
//!
//! A batch is cut into full chunks of [`MAX_ROWS`] rows plus the binary digits of the
//! remainder (2048, 1024, … 1 rows), so every statement text is one of 13 and each
//! connection prepares it once.

use std::sync::OnceLock;

use futures::StreamExt;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, QueryBuilder, Row, Sqlite, SqlitePool};

use crate::domain::{Sample, TagId, TenantId, Timestamp, Value, ValueKind};
use crate::storage::export::{Chunks, forward, spawn_export};
use crate::storage::rollup::bad_level;
use crate::storage::rows::{SampleColumns, bucket_width, invalid};
use crate::storage::{Bucket, Error, Result, StoredSample, encode_code, in_index_order};

/// Bind parameters per sample row.
const BINDS_PER_ROW: usize = 6;
/// Rows per full statement: 4096 × 6 = 24,576 binds, under SQLite's 32,766.
const MAX_ROWS: usize = 1 << (LEVELS - 1);
/// Statement sizes are the powers of two up to `MAX_ROWS`.
const LEVELS: usize = 13;
const _: () = assert!(MAX_ROWS * BINDS_PER_ROW <= 32_766, "SQLite's bind limit");

/// Tags per history query, so that the `IN (…)` list stays under the bind limit.
const MAX_TAGS: usize = 32_000;

static INSERT_SQL: [OnceLock<String>; LEVELS] = [const { OnceLock::new() }; LEVELS];

/// The insert statement for `rows` rows, a power of two up to `MAX_ROWS`.
fn insert_sql(rows: usize) -> &'static str {
    debug_assert!(rows.is_power_of_two() && rows <= MAX_ROWS);
    INSERT_SQL[rows.trailing_zeros() as usize].get_or_init(|| {
        const HEAD: &str =
            "INSERT INTO samples (tenant_id, tag_id, ts, server_ts, value, code) VALUES ";
        const ROW: &str = "(?,?,?,?,?,?)";
        let mut sql = String::with_capacity(HEAD.len() + rows * (ROW.len() + 1));
        sql.push_str(HEAD);
        for i in 0..rows {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(ROW);
        }
        sql
    })
}

/// Chunk sizes for a batch of `n`: full chunks, then the remainder's binary digits.
fn chunk_sizes(n: usize) -> impl Iterator<Item = usize> {
    let rest = n % MAX_ROWS;
    std::iter::repeat_n(MAX_ROWS, n / MAX_ROWS).chain(
        (0..LEVELS - 1)
            .rev()
            .map(|level| 1 << level)
            .filter(move |size| rest & size != 0),
    )
}

fn bind_sample<'q>(args: &mut SqliteArguments<'q>, s: &'q StoredSample) -> Result<()> {
    let sample = &s.sample;
    let bound = (|| {
        args.add(s.tenant.0)?;
        args.add(sample.tag.0)?;
        args.add(sample.source_time.0)?;
        args.add(sample.server_time.0)?;
        match &sample.value {
            Value::Bool(b) => args.add(i64::from(*b))?,
            Value::I64(i) => args.add(*i)?,
            Value::F64(f) => args.add(*f)?,
            Value::Str(t) => args.add(&**t)?,
        }
        args.add(encode_code(&sample.value, sample.quality))
    })();
    bound.map_err(|e| invalid(format!("binding a sample of tag {}: {e}", sample.tag)))
}

pub(super) async fn insert_samples(pool: &SqlitePool, samples: &[StoredSample]) -> Result<u64> {
    if samples.is_empty() {
        return Ok(0);
    }
    let order = in_index_order(samples);
    let mut tx = pool.begin().await?;
    let mut written = 0;
    let mut rest = order.as_slice();
    for size in chunk_sizes(samples.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut args = SqliteArguments::default();
        args.reserve(size * BINDS_PER_ROW, 0);
        for s in chunk {
            bind_sample(&mut args, s)?;
        }
        written += sqlx::query_with(insert_sql(size), args)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(written)
}

/// `… WHERE tenant_id = ? AND tag_id IN (…) AND ts >= ? AND ts < ?`
fn push_filter(
    qb: &mut QueryBuilder<'_, Sqlite>,
    tenant: TenantId,
    tags: &[TagId],
    from: Timestamp,
    to: Timestamp,
) {
    qb.push(" FROM samples WHERE tenant_id = ")
        .push_bind(tenant.0)
        .push(" AND tag_id IN (");
    let mut list = qb.separated(", ");
    for tag in tags {
        list.push_bind(tag.0);
    }
    qb.push(") AND ts >= ")
        .push_bind(from.0)
        .push(" AND ts < ")
        .push_bind(to.0);
}

fn check_tags(tags: &[TagId]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "{} tags in one history query (at most {MAX_TAGS})",
            tags.len()
        )));
    }
    Ok(())
}

/// The columns of a sample; the value is split by storage class so each column
/// decodes with one Rust type.
const SAMPLE_SELECT: &str = "SELECT tag_id, ts, server_ts, code, \
     CASE typeof(value) WHEN 'real' THEN value END, \
     CASE typeof(value) WHEN 'integer' THEN value END, \
     CASE typeof(value) WHEN 'text' THEN value END";

pub(super) async fn history(
    pool: &SqlitePool,
    tenant: TenantId,
    tags: &[TagId],
    from: Timestamp,
    to: Timestamp,
    limit: i64,
) -> Result<Vec<Sample>> {
    if tags.is_empty() || limit <= 0 || from >= to {
        return Ok(Vec::new());
    }
    check_tags(tags)?;
    let mut qb = QueryBuilder::new(SAMPLE_SELECT);
    push_filter(&mut qb, tenant, tags, from, to);
    qb.push(" ORDER BY tag_id, ts LIMIT ").push_bind(limit);
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter().map(sample_from_row).collect()
}

/// Every sample in `[from, to)` by tag then time, read from the cursor as the
/// consumer takes the chunks.
pub(super) fn export_history(
    pool: &SqlitePool,
    tenant: TenantId,
    tags: &[TagId],
    from: Timestamp,
    to: Timestamp,
) -> Chunks<Sample> {
    if let Err(e) = check_tags(tags) {
        return futures::stream::iter([Err(e)]).boxed();
    }
    let (pool, tags) = (pool.clone(), tags.to_vec());
    spawn_export(move |tx| async move {
        if tags.is_empty() || from >= to {
            return;
        }
        let mut qb = QueryBuilder::new(SAMPLE_SELECT);
        push_filter(&mut qb, tenant, &tags, from, to);
        qb.push(" ORDER BY tag_id, ts");
        let rows = qb
            .build()
            .fetch(&pool)
            .map(|row| row.map_err(Error::from).and_then(|r| sample_from_row(&r)));
        forward(rows, tx).await;
    })
}

fn sample_from_row(row: &SqliteRow) -> Result<Sample> {
    let code: i32 = row.try_get(3)?;
    let mut num: Option<f64> = row.try_get(4)?;
    let int: Option<i64> = row.try_get(5)?;
    let text: Option<String> = row.try_get(6)?;
    // SQLite stores a NaN REAL as NULL.
    if num.is_none() && int.is_none() && text.is_none() && code & 0x0f == ValueKind::F64 as i32 {
        num = Some(f64::NAN);
    }
    Sample::try_from(SampleColumns {
        tag: row.try_get(0)?,
        ts: Timestamp(row.try_get(1)?),
        server_ts: Timestamp(row.try_get(2)?),
        code,
        num,
        int,
        text,
    })
}

pub(super) async fn history_buckets(
    pool: &SqlitePool,
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
    check_tags(tags)?;
    // Floor division of the microsecond timestamp (`%` truncates towards zero). `v` is
    // the value of a numeric sample that is not Bad (NULL otherwise); the first and
    // last of a bucket are the first values of its numbers in time order, either way.
    let bad = bad_level();
    let mut qb = QueryBuilder::new(format!(
        "SELECT tag_id, bucket, count(v), avg(v), min(v), max(v), max(fv), max(lv), sum(bad) \
         FROM (SELECT tag_id, bucket, v, bad, \
               first_value(v) OVER (PARTITION BY tag_id, bucket ORDER BY v IS NULL, ts) AS fv, \
               first_value(v) OVER (PARTITION BY tag_id, bucket ORDER BY v IS NULL, ts DESC) AS lv \
               FROM (SELECT tag_id, ts, \
                     ts - ts % {width} - CASE WHEN ts % {width} < 0 THEN {width} ELSE 0 END AS bucket, \
                     CASE WHEN (code >> 4) & 15 = {bad} THEN 1 ELSE 0 END AS bad, \
                     CASE WHEN (code >> 4) & 15 <> {bad} AND typeof(value) IN ('integer', 'real') \
                          AND abs(CAST(value AS REAL)) <= {MAX_F64:e} THEN CAST(value AS REAL) END AS v"
    ));
    push_filter(&mut qb, tenant, tags, from, to);
    qb.push(")) GROUP BY tag_id, bucket ORDER BY tag_id, bucket");
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            let (tag, start, count) = (TagId(row.try_get(0)?), row.try_get(1)?, row.try_get(2)?);
            let mut values = [0.0; 5];
            for (i, v) in values.iter_mut().enumerate() {
                match row.try_get::<Option<f64>, _>(3 + i)? {
                    Some(x) => *v = x,
                    None if count == 0 => {}
                    None => {
                        return Err(Error::Corrupt(format!(
                            "bucket at {start} of tag {tag:?}: {count} samples without aggregates"
                        )));
                    }
                }
            }
            Ok(Bucket::new(
                tag,
                Timestamp(start),
                count,
                row.try_get(8)?,
                values,
            ))
        })
        .collect()
}

/// The largest finite f64: SQLite keeps infinities as numbers, the buckets leave them
/// out.
const MAX_F64: f64 = f64::MAX;

pub(super) async fn count_samples(pool: &SqlitePool, tenant: TenantId) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM samples WHERE tenant_id = $1")
            .bind(tenant.0)
            .fetch_one(pool)
            .await?,
    )
}

/// History retention: deletes a tenant's samples older than `before`.
pub(super) async fn delete_before(
    pool: &super::Pool,
    tenant: crate::domain::TenantId,
    before: crate::domain::Timestamp,
) -> crate::storage::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM samples WHERE tenant_id = $1 AND ts < $2")
            .bind(tenant.0)
            .bind(before.0)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_batch_with_cached_sizes() {
        for n in [1, 2, 3, 1000, 4095, 4096, 4097, 100_000] {
            let sizes: Vec<usize> = chunk_sizes(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= MAX_ROWS));
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]));
        }
        assert_eq!(insert_sql(2).matches('?').count(), 2 * BINDS_PER_ROW);
    }
}
