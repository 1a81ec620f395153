//! Exports from PostgreSQL: every sample of some tags over a range, by tag then time,
//! whole hours that are packed and current ([`super::packed_samples`]) read from their
//! packed copies, 64 at a time, and the rest from `samples` (short stretches of many
//! tags in one query). One REPEATABLE READ snapshot throughout, so a packed copy and
//! the late minutes in `samples_1m` that outdate it are seen together.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use super::history::{SELECT_RANGE, sample_from_columns, sample_from_row};
use super::packed::HOUR_US;
use super::packed_samples::decode;
use crate::domain::{Sample, TagId, TenantId, Timestamp};
use crate::storage::export::{ChunkWriter, Chunks, spawn_export};
use crate::storage::rollup::{bucket_after, bucket_of};
use crate::storage::{Error, Result};

/// Packed hours fetched per query by readers: bounds the memory they hold.
const HOURS_PER_FETCH: usize = 64;
/// Raw stretches up to this long (the partial hours at a range's ends, the hours not
/// packed yet) are fetched for many tags in one query, at most this many at a time
/// and only when their rows are at most [`RAW_ROWS_AHEAD`]; others one by one.
const SHORT_US: i64 = 2 * HOUR_US;
const RAW_PIECES_PER_FETCH: usize = 64;
const RAW_ROWS_AHEAD: i64 = 100_000;

/// A stretch of one tag's export: raw samples in `[from, to)`, or a packed hour.
enum Piece {
    Raw(i64, i64, i64),
    Packed(i64, i64),
}

/// Every sample of `tags` in `[from, to)` by tag then time (like the raw export), the
/// whole hours that are packed and current read from their packed copies.
pub(super) fn export(
    pool: &PgPool,
    tenant: TenantId,
    tags: &[TagId],
    from: Timestamp,
    to: Timestamp,
) -> Chunks<Sample> {
    let pool = pool.clone();
    let mut tag_ids: Vec<i64> = tags.iter().map(|t| t.0).collect();
    tag_ids.sort_unstable();
    tag_ids.dedup();
    spawn_export(move |tx| async move {
        let mut out = ChunkWriter::new(tx);
        match read(&pool, tenant, &tag_ids, from.0, to.0, &mut out).await {
            Ok(()) => out.finish().await,
            Err(e) => out.fail(e).await,
        }
    })
}

async fn read(
    pool: &PgPool,
    tenant: TenantId,
    tag_ids: &[i64],
    from: i64,
    to: i64,
    out: &mut ChunkWriter<Sample>,
) -> Result<()> {
    if tag_ids.is_empty() || from >= to {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    // One snapshot: packed copies and the late minutes that outdate them agree.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let lo = bucket_after(from, HOUR_US);
    let hi = bucket_of(to, HOUR_US);
    let mut current: Vec<(i64, i64)> = Vec::new();
    if lo < hi {
        // A packed hour is current unless a late minute of it is back in samples_1m.
        current = sqlx::query_as(
            "SELECT tag_id, hour FROM samples_packed p WHERE tenant_id = $1 \
             AND tag_id = ANY($2) AND hour >= $3 AND hour < $4 \
             AND NOT EXISTS (SELECT 1 FROM samples_1m m WHERE m.tenant_id = $1 \
                 AND m.tag_id = p.tag_id AND m.bucket >= p.hour AND m.bucket < p.hour + $5) \
             ORDER BY tag_id, hour",
        )
        .bind(tenant.0)
        .bind(tag_ids)
        .bind(lo)
        .bind(hi)
        .bind(HOUR_US)
        .fetch_all(&mut *tx)
        .await?;
    }
    if current.is_empty() {
        // Nothing packed to use: one query for all, as `samples` has them.
        raw(&mut tx, tenant, tag_ids, from, to, out).await?;
        return Ok(());
    }
    // Each tag's range as raw stretches around its current packed hours.
    let mut pieces = Vec::new();
    let mut packed = current.iter().peekable();
    for &tag in tag_ids {
        let mut at = from;
        while let Some(&&(_, hour)) = packed.peek().filter(|(t, _)| *t == tag) {
            if hour > at {
                pieces.push(Piece::Raw(tag, at, hour));
            }
            pieces.push(Piece::Packed(tag, hour));
            at = hour + HOUR_US;
            packed.next();
        }
        if at < to {
            pieces.push(Piece::Raw(tag, at, to));
        }
    }
    let mut i = 0;
    // Short raw stretches of the next pieces, fetched together: (piece index, row).
    let mut ahead: VecDeque<(i64, PgRow)> = VecDeque::new();
    let mut ahead_until = 0;
    let mut batch = RAW_PIECES_PER_FETCH;
    while i < pieces.len() {
        match pieces[i] {
            Piece::Raw(tag, a, b) => {
                let short = b - a <= SHORT_US;
                if short && i >= ahead_until && batch > 1 {
                    // The next short raw pieces (up to `batch`), if their rows are few.
                    let wanted: Vec<usize> = (i..pieces.len())
                        .filter(|&j| matches!(pieces[j], Piece::Raw(_, a, b) if b - a <= SHORT_US))
                        .take(batch)
                        .collect();
                    match raw_ahead(&mut tx, tenant, &pieces, &wanted).await? {
                        Some(rows) => {
                            ahead = rows.into();
                            ahead_until = wanted.last().map_or(i, |j| j + 1);
                        }
                        None => {
                            batch /= 4;
                            continue;
                        }
                    }
                }
                // Read ahead: the short pieces before `ahead_until` (since the
                // last read-ahead all of them).
                if short && i < ahead_until {
                    while ahead.front().is_some_and(|(j, _)| *j == i as i64) {
                        let Some((_, row)) = ahead.pop_front() else {
                            break;
                        };
                        if !out.push(sample_from_columns(&row, 1)?).await {
                            return Ok(());
                        }
                    }
                } else if !raw(&mut tx, tenant, &[tag], a, b, out).await? {
                    return Ok(());
                }
                i += 1;
            }
            Piece::Packed(..) => {
                // The next run of packed hours, fetched together.
                let run: Vec<(i64, i64)> = pieces[i..]
                    .iter()
                    .map_while(|p| match p {
                        Piece::Packed(tag, hour) => Some((*tag, *hour)),
                        Piece::Raw(..) => None,
                    })
                    .take(HOURS_PER_FETCH)
                    .collect();
                i += run.len();
                let (tags, hours): (Vec<i64>, Vec<i64>) = run.iter().copied().unzip();
                let mut rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT tag_id, hour, data FROM samples_packed WHERE tenant_id = $1 \
                     AND (tag_id, hour) IN (SELECT * FROM UNNEST($2::int8[], $3::int8[]))",
                )
                .bind(tenant.0)
                .bind(&tags)
                .bind(&hours)
                .fetch_all(&mut *tx)
                .await?;
                rows.sort_unstable_by_key(|(tag, hour, _)| (*tag, *hour));
                if rows.len() != run.len() {
                    return Err(Error::Corrupt(format!(
                        "{} of {} packed hours vanished within one snapshot",
                        run.len() - rows.len(),
                        run.len()
                    )));
                }
                for (tag, hour, data) in rows {
                    for s in decode(TagId(tag), hour, &data)? {
                        if !out.push(s).await {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The rows of the raw pieces `wanted` (indices into `pieces`, all `Raw`), by piece
/// then time, each with its piece's index; `None` when they are more than
/// [`RAW_ROWS_AHEAD`] (the caller asks for fewer pieces).
async fn raw_ahead(
    conn: &mut PgConnection,
    tenant: TenantId,
    pieces: &[Piece],
    wanted: &[usize],
) -> Result<Option<Vec<(i64, PgRow)>>> {
    let (mut idx, mut tags) = (Vec::new(), Vec::new());
    let (mut froms, mut tos): (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) = Default::default();
    for &j in wanted {
        if let Piece::Raw(tag, a, b) = pieces[j] {
            idx.push(j as i64);
            tags.push(tag);
            froms.push(Timestamp(a).to_datetime());
            tos.push(Timestamp(b).to_datetime());
        }
    }
    let rows = sqlx::query(
        "SELECT g.piece, s.tag_id, s.ts, s.server_ts, s.code, s.value_num, s.value_int, \
         s.value_text FROM UNNEST($2::int8[], $3::int8[], $4::timestamptz[], \
         $5::timestamptz[]) AS g(piece, tag, a, b) CROSS JOIN LATERAL \
         (SELECT * FROM samples WHERE tenant_id = $1 AND tag_id = g.tag AND ts >= g.a \
          AND ts < g.b) s ORDER BY g.piece, s.ts LIMIT $6",
    )
    .bind(tenant.0)
    .bind(&idx)
    .bind(&tags)
    .bind(&froms)
    .bind(&tos)
    .bind(RAW_ROWS_AHEAD + 1)
    .fetch_all(conn)
    .await?;
    if rows.len() as i64 > RAW_ROWS_AHEAD {
        return Ok(None);
    }
    rows.into_iter()
        .map(|row| Ok((row.try_get(0)?, row)))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The samples of `tag_ids` in `[from, to)` from `samples`, into `out`; `false` once
/// the consumer has gone.
async fn raw(
    conn: &mut PgConnection,
    tenant: TenantId,
    tag_ids: &[i64],
    from: i64,
    to: i64,
    out: &mut ChunkWriter<Sample>,
) -> Result<bool> {
    let mut rows = sqlx::query(SELECT_RANGE)
        .bind(tenant.0)
        .bind(tag_ids)
        .bind(Timestamp(from).to_datetime())
        .bind(Timestamp(to).to_datetime())
        .fetch(conn);
    while let Some(row) = rows.try_next().await? {
        if !out.push(sample_from_row(&row)?).await {
            return Ok(false);
        }
    }
    Ok(true)
}
