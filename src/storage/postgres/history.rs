//! Samples in PostgreSQL: binary `COPY` bulk inserts (with their rollups, see
//! [`super::rollups`]) and raw history (exports: [`super::packed_samples`]).

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::domain::{Sample, TagId, TenantId, Timestamp, Value};
use crate::storage::rows::SampleColumns;
use crate::storage::{Result, StoredSample, encode_code, in_index_order};

/// Rows per `COPY` message: bounds the size of one buffer (~60 bytes a row).
const CHUNK_ROWS: usize = 50_000;

const COPY_SQL: &str = "COPY samples \
    (tenant_id, tag_id, ts, server_ts, value_num, value_int, value_text, code) \
    FROM STDIN (FORMAT binary)";

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Encodes samples in PostgreSQL's binary COPY format (header, tuples, trailer).
fn encode_copy(samples: &[&StoredSample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + samples.len() * 72 + 2);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension
    // A field is its length and bytes; NULL is the length -1 alone.
    let field = |out: &mut Vec<u8>, bytes: Option<&[u8]>| match bytes {
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    };
    for s in samples {
        let sample = &s.sample;
        let (num, int, text) = match &sample.value {
            Value::F64(f) => (Some(*f), None, None),
            Value::Bool(b) => (None, Some(i64::from(*b)), None),
            Value::I64(i) => (None, Some(*i), None),
            Value::Str(t) => (None, None, Some(t.as_bytes())),
        };
        out.extend_from_slice(&8i16.to_be_bytes());
        field(&mut out, Some(&s.tenant.0.to_be_bytes()));
        field(&mut out, Some(&sample.tag.0.to_be_bytes()));
        field(
            &mut out,
            Some(&(sample.source_time.0 - PG_EPOCH_OFFSET_US).to_be_bytes()),
        );
        field(
            &mut out,
            Some(&(sample.server_time.0 - PG_EPOCH_OFFSET_US).to_be_bytes()),
        );
        field(&mut out, num.map(f64::to_be_bytes).as_ref().map(|b| &b[..]));
        field(&mut out, int.map(i64::to_be_bytes).as_ref().map(|b| &b[..]));
        field(&mut out, text);
        field(
            &mut out,
            Some(&encode_code(&sample.value, sample.quality).to_be_bytes()),
        );
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// Binary `COPY` in one transaction, rows sorted in index order (tenant, tag, time) so
/// that the index is walked in sequence rather than at random.
pub(super) async fn insert_samples(pool: &PgPool, samples: &[StoredSample]) -> Result<u64> {
    if samples.is_empty() {
        return Ok(0);
    }
    let order = in_index_order(samples);
    let mut tx = pool.begin().await?;
    let mut written = 0;
    for chunk in order.chunks(CHUNK_ROWS) {
        let mut copy = tx.copy_in_raw(COPY_SQL).await?;
        copy.send(encode_copy(chunk)).await?;
        written += copy.finish().await?;
    }
    super::rollups::merge(&mut tx, samples).await?;
    tx.commit().await?;
    Ok(written)
}

/// The samples of tags `$2` of tenant `$1` in `[$3, $4)`, by tag then time.
pub(super) const SELECT_RANGE: &str = "SELECT tag_id, ts, server_ts, code, value_num, value_int, value_text \
    FROM samples WHERE tenant_id = $1 AND tag_id = ANY($2) AND ts >= $3 AND ts < $4 \
    ORDER BY tag_id, ts";

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
    let rows = sqlx::query(&format!("{SELECT_RANGE} LIMIT $5"))
        .bind(tenant.0)
        .bind(&tag_ids)
        .bind(from.to_datetime())
        .bind(to.to_datetime())
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(sample_from_row).collect()
}

pub(super) fn sample_from_row(row: &PgRow) -> Result<Sample> {
    sample_from_columns(row, 0)
}

/// A sample from the columns of [`SELECT_RANGE`]'s layout, starting at column `at`.
pub(super) fn sample_from_columns(row: &PgRow, at: usize) -> Result<Sample> {
    Sample::try_from(SampleColumns {
        tag: row.try_get(at)?,
        ts: Timestamp::from_datetime(row.try_get(at + 1)?),
        server_ts: Timestamp::from_datetime(row.try_get(at + 2)?),
        code: row.try_get(at + 3)?,
        num: row.try_get(at + 4)?,
        int: row.try_get(at + 5)?,
        text: row.try_get(at + 6)?,
    })
}

pub(super) async fn count_samples(pool: &PgPool, tenant: TenantId) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM samples WHERE tenant_id = $1")
            .bind(tenant.0)
            .fetch_one(pool)
            .await?,
    )
}

/// History retention: deletes a tenant's samples older than `before`, and the rollup
/// periods that ended by then (a period `before` cuts through keeps its aggregates).
pub(super) async fn delete_before(
    pool: &super::Pool,
    tenant: crate::domain::TenantId,
    before: crate::domain::Timestamp,
) -> crate::storage::Result<u64> {
    super::rollups::delete_before(pool, tenant, before).await?;
    Ok(
        sqlx::query("DELETE FROM samples WHERE tenant_id = $1 AND ts < $2")
            .bind(tenant.0)
            .bind(before.to_datetime())
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
