//! Samples in PostgreSQL: `UNNEST` bulk inserts (one bind per column, so no bind
//! limit), raw history and epoch-aligned buckets.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::domain::{Sample, TagId, TenantId, Timestamp, Value};
use crate::storage::rows::{SampleColumns, invalid};
use crate::storage::{Bucket, Result, StoredSample, encode_code};

/// Rows per `INSERT … UNNEST` statement: bounds the size of one message.
const CHUNK_ROWS: usize = 50_000;

const INSERT_SQL: &str = "INSERT INTO samples \
    (tenant_id, tag_id, ts, server_ts, value_num, value_int, value_text, code) \
    SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::timestamptz[], $4::timestamptz[], \
    $5::float8[], $6::int8[], $7::text[], $8::int4[])";

/// One chunk of samples, column by column; reused from chunk to chunk.
#[derive(Default)]
struct Columns<'a> {
    tenant: Vec<i64>,
    tag: Vec<i64>,
    ts: Vec<DateTime<Utc>>,
    server_ts: Vec<DateTime<Utc>>,
    num: Vec<Option<f64>>,
    int: Vec<Option<i64>>,
    text: Vec<Option<&'a str>>,
    code: Vec<i32>,
}

impl<'a> Columns<'a> {
    fn fill(&mut self, chunk: &'a [StoredSample]) {
        self.tenant.clear();
        self.tag.clear();
        self.ts.clear();
        self.server_ts.clear();
        self.num.clear();
        self.int.clear();
        self.text.clear();
        self.code.clear();
        for s in chunk {
            let sample = &s.sample;
            self.tenant.push(s.tenant.0);
            self.tag.push(sample.tag.0);
            self.ts.push(sample.source_time.to_datetime());
            self.server_ts.push(sample.server_time.to_datetime());
            let (num, int, text) = match &sample.value {
                Value::Bool(b) => (None, Some(i64::from(*b)), None),
                Value::I64(i) => (None, Some(*i), None),
                Value::F64(f) => (Some(*f), None, None),
                Value::Str(t) => (None, None, Some(&**t)),
            };
            self.num.push(num);
            self.int.push(int);
            self.text.push(text);
            self.code.push(encode_code(&sample.value, sample.quality));
        }
    }
}

pub(super) async fn insert_samples(pool: &PgPool, samples: &[StoredSample]) -> Result<u64> {
    if samples.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    let mut columns = Columns::default();
    let mut written = 0;
    for chunk in samples.chunks(CHUNK_ROWS) {
        columns.fill(chunk);
        written += sqlx::query(INSERT_SQL)
            .bind(&columns.tenant)
            .bind(&columns.tag)
            .bind(&columns.ts)
            .bind(&columns.server_ts)
            .bind(&columns.num)
            .bind(&columns.int)
            .bind(&columns.text)
            .bind(&columns.code)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(written)
}

pub(super) async fn history(
    pool: &PgPool,
    tenant: TenantId,
    tags: &[TagId],
    from: Timestamp,
    to: Timestamp,
    limit: i64,
) -> Result<Vec<Sample>> {
    if tags.is_empty() || limit <= 0 || from >= to {
        return Ok(Vec::new());
    }
    let tag_ids: Vec<i64> = tags.iter().map(|t| t.0).collect();
    let rows = sqlx::query(
        "SELECT tag_id, ts, server_ts, code, value_num, value_int, value_text FROM samples \
         WHERE tenant_id = $1 AND tag_id = ANY($2) AND ts >= $3 AND ts < $4 \
         ORDER BY tag_id, ts LIMIT $5",
    )
    .bind(tenant.0)
    .bind(&tag_ids)
    .bind(from.to_datetime())
    .bind(to.to_datetime())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(sample_from_row).collect()
}

fn sample_from_row(row: &PgRow) -> Result<Sample> {
    Sample::try_from(SampleColumns {
        tag: row.try_get(0)?,
        ts: Timestamp::from_datetime(row.try_get(1)?),
        server_ts: Timestamp::from_datetime(row.try_get(2)?),
        code: row.try_get(3)?,
        num: row.try_get(4)?,
        int: row.try_get(5)?,
        text: row.try_get(6)?,
    })
}

pub(super) async fn history_buckets(
    pool: &PgPool,
    tenant: TenantId,
    tags: &[TagId],
    from: Timestamp,
    to: Timestamp,
    bucket_secs: i64,
) -> Result<Vec<Bucket>> {
    if bucket_secs <= 0 || bucket_secs.checked_mul(1_000_000).is_none() {
        return Err(invalid(format!("bucket of {bucket_secs} s")));
    }
    if tags.is_empty() || from >= to {
        return Ok(Vec::new());
    }
    let tag_ids: Vec<i64> = tags.iter().map(|t| t.0).collect();
    // bool and i64 live in value_int, f64 in value_num; strings have neither. NaN is
    // left out, as SQLite cannot store it as a number.
    let rows = sqlx::query(
        "SELECT tag_id, (floor(extract(epoch FROM ts) / $5) * $5)::int8 AS bucket, \
         avg(v), min(v), max(v), count(*) \
         FROM (SELECT tag_id, ts, COALESCE(value_num, value_int::float8) AS v FROM samples \
               WHERE tenant_id = $1 AND tag_id = ANY($2) AND ts >= $3 AND ts < $4 \
               AND (value_num IS NOT NULL OR value_int IS NOT NULL) \
               AND value_num IS DISTINCT FROM 'NaN') AS numeric_samples \
         GROUP BY tag_id, bucket ORDER BY tag_id, bucket",
    )
    .bind(tenant.0)
    .bind(&tag_ids)
    .bind(from.to_datetime())
    .bind(to.to_datetime())
    .bind(bucket_secs)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let start_secs: i64 = row.try_get(1)?;
            Ok(Bucket {
                tag: TagId(row.try_get(0)?),
                start: Timestamp(start_secs.saturating_mul(1_000_000)),
                avg: row.try_get(2)?,
                min: row.try_get(3)?,
                max: row.try_get(4)?,
                count: row.try_get(5)?,
            })
        })
        .collect()
}

pub(super) async fn count_samples(pool: &PgPool, tenant: TenantId) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM samples WHERE tenant_id = $1")
            .bind(tenant.0)
            .fetch_one(pool)
            .await?,
    )
}
