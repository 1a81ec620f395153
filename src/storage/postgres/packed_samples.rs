//! Closed hours of raw samples, packed: `samples_packed` holds a copy of one tag's
//! samples of one hour in a compact binary layout, so that reading a long range of
//! many tags (an export, `statistics`) reads 24 rows a tag and day instead of every
//! sample row. `samples` stays the record; the packed copy is rebuilt from it.
//!
//! [`pack`] runs inside the compaction transaction of [`super::packed`], for exactly
//! the tag-hours whose minute rollups it moves out of `samples_1m`: every insert of a
//! sample touches its minute's row there, so those are the hours that changed since
//! the last compaction. A packed hour is therefore current unless `samples_1m` holds a
//! minute of it again (a sample arrived late); readers check that in the same
//! snapshot and read such an hour from `samples`.
//!
//! Layout of `data`: a version byte (1), the number of samples (varint), then per
//! sample in time order: the source time's distance from the previous one (the first:
//! from the hour's start), server time minus source time and the stored code, as
//! zigzag varints, then the value by the code's kind: `f64` little-endian, booleans and
//! integers as zigzag varints, text as its length and UTF-8 bytes.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, Utc};

use futures::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use super::history::{SELECT_RANGE, sample_from_columns, sample_from_row};
use super::packed::{HOUR_US, Reader, put_signed, put_varint};
use crate::domain::{Sample, TagId, TenantId, Timestamp, Value};
use crate::storage::codec::{decode_code, encode_code};
use crate::storage::export::{ChunkWriter, Chunks, spawn_export};
use crate::storage::rollup::bucket_of;
use crate::storage::{Error, Result};

const VERSION: u8 = 1;
/// Packed hours fetched per query by readers: bounds the memory they hold.
const HOURS_PER_FETCH: usize = 64;
/// Raw stretches up to this long (the partial hours at a range's ends, the hours not
/// packed yet) are fetched for many tags in one query, at most this many at a time
/// and only when their rows are at most [`RAW_ROWS_AHEAD`]; others one by one.
const SHORT_US: i64 = 2 * HOUR_US;
const RAW_PIECES_PER_FETCH: usize = 64;
const RAW_ROWS_AHEAD: i64 = 100_000;

/// Packs the samples of one tag-hour starting at `hour`, in time order.
pub(super) fn encode(hour: i64, samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + samples.len() * 16);
    out.push(VERSION);
    put_varint(&mut out, samples.len() as u64);
    let mut prev = hour;
    for s in samples {
        put_signed(&mut out, s.source_time.0 - prev);
        prev = s.source_time.0;
        put_signed(&mut out, s.server_time.0 - s.source_time.0);
        put_signed(&mut out, i64::from(encode_code(&s.value, s.quality)));
        match &s.value {
            Value::F64(f) => out.extend_from_slice(&f.to_le_bytes()),
            Value::Bool(b) => put_signed(&mut out, i64::from(*b)),
            Value::I64(i) => put_signed(&mut out, *i),
            Value::Str(t) => {
                put_varint(&mut out, t.len() as u64);
                out.extend_from_slice(t.as_bytes());
            }
        }
    }
    out
}

/// Unpacks a tag-hour packed by [`encode`].
pub(super) fn decode(tag: TagId, hour: i64, bytes: &[u8]) -> Result<Vec<Sample>> {
    let corrupt = || Error::Corrupt(format!("packed samples of tag {} at {hour} µs", tag.0));
    let mut r = Reader { bytes, at: 0 };
    if r.byte() != Some(VERSION) {
        return Err(corrupt());
    }
    let n = r.count().ok_or_else(corrupt)?;
    // Every sample takes at least four bytes: a count beyond that is corruption.
    let n = usize::try_from(n)
        .ok()
        .filter(|n| n.saturating_mul(4) <= bytes.len())
        .ok_or_else(corrupt)?;
    let mut out = Vec::with_capacity(n);
    let mut at = hour;
    for _ in 0..n {
        let s = (|| {
            at = at.checked_add(r.signed()?)?;
            let server = at.checked_add(r.signed()?)?;
            let code = i32::try_from(r.signed()?).ok()?;
            let (kind, quality) = decode_code(code)?;
            let value = match kind {
                crate::domain::ValueKind::F64 => Value::F64(f64::from_le_bytes(r.array()?)),
                crate::domain::ValueKind::Bool => Value::Bool(r.signed()? != 0),
                crate::domain::ValueKind::I64 => Value::I64(r.signed()?),
                crate::domain::ValueKind::Str => {
                    let len = usize::try_from(r.varint()?).ok()?;
                    Value::Str(std::str::from_utf8(r.take(len)?).ok()?.into())
                }
            };
            Some(Sample {
                tag,
                value,
                quality,
                source_time: Timestamp(at),
                server_time: Timestamp(server),
            })
        })()
        .ok_or_else(corrupt)?;
        out.push(s);
    }
    if !r.done() {
        return Err(corrupt());
    }
    Ok(out)
}

/// (Re)packs the tag-hours `keys` (tenant, tag, hour start) from `samples`. An hour
/// whose rows do not decode is left unpacked: readers then read it from `samples` and
/// report the corrupt row, as they would without packing.
pub(super) async fn pack(conn: &mut PgConnection, keys: &[(i64, i64, i64)]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let (tenants, tags, hours) = columns(keys);
    let mut rows = sqlx::query(
        "SELECT k.tenant, k.hour, s.tag_id, s.ts, s.server_ts, s.code, s.value_num, \
         s.value_int, s.value_text \
         FROM UNNEST($1::int8[], $2::int8[], $3::int8[]) AS k(tenant, tag, hour) \
         JOIN samples s ON s.tenant_id = k.tenant AND s.tag_id = k.tag \
         AND s.ts >= 'epoch'::timestamptz + k.hour * interval '1 microsecond' \
         AND s.ts < 'epoch'::timestamptz + (k.hour + $4) * interval '1 microsecond' \
         ORDER BY k.tenant, s.tag_id, k.hour, s.ts",
    )
    .bind(&tenants)
    .bind(&tags)
    .bind(&hours)
    .bind(HOUR_US)
    .fetch(&mut *conn);
    let mut packed: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<Vec<u8>>) = Default::default();
    let mut current: Option<HourRead> = None;
    let mut finish = |(key, samples, corrupt): HourRead| {
        if !corrupt {
            packed.0.push(key.0);
            packed.1.push(key.1);
            packed.2.push(key.2);
            packed.3.push(encode(key.2, &samples));
        }
    };
    while let Some(row) = rows.try_next().await? {
        let key: (i64, i64, i64) = (row.try_get(0)?, row.try_get(2)?, row.try_get(1)?);
        if current.as_ref().is_none_or(|(k, _, _)| *k != key) {
            if let Some(done) = current.replace((key, Vec::new(), false)) {
                finish(done);
            }
        }
        if let Some((_, samples, corrupt)) = &mut current {
            match sample_from_columns(&row, 2) {
                Ok(s) => samples.push(s),
                Err(_) => *corrupt = true,
            }
        }
    }
    drop(rows);
    if let Some(done) = current.take() {
        finish(done);
    }
    // Hours without samples (or that do not decode) lose any packed copy.
    sqlx::query(
        "DELETE FROM samples_packed WHERE (tenant_id, tag_id, hour) IN \
         (SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[]))",
    )
    .bind(&tenants)
    .bind(&tags)
    .bind(&hours)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO samples_packed (tenant_id, tag_id, hour, data) \
         SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::bytea[])",
    )
    .bind(&packed.0)
    .bind(&packed.1)
    .bind(&packed.2)
    .bind(&packed.3)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An hour being packed: its key, its samples, whether one of them did not decode.
type HourRead = ((i64, i64, i64), Vec<Sample>, bool);

/// Keys as three columns, for `UNNEST`.
pub(super) fn columns(keys: &[(i64, i64, i64)]) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
    let mut cols = (
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
    );
    for &(a, b, c) in keys {
        cols.0.push(a);
        cols.1.push(b);
        cols.2.push(c);
    }
    cols
}

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
    let lo = bucket_of(from, HOUR_US) + if from % HOUR_US == 0 { 0 } else { HOUR_US };
    let hi = bucket_of(to, HOUR_US);
    let mut current: Vec<(i64, i64)> = Vec::new();
    if lo < hi {
        let late: HashSet<(i64, i64)> = sqlx::query_as(
            "SELECT DISTINCT tag_id, bucket - mod(bucket, $5) - CASE WHEN mod(bucket, $5) < 0 \
             THEN $5 ELSE 0 END FROM samples_1m WHERE tenant_id = $1 AND tag_id = ANY($2) \
             AND bucket >= $3 AND bucket < $4",
        )
        .bind(tenant.0)
        .bind(tag_ids)
        .bind(lo)
        .bind(hi)
        .bind(HOUR_US)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let keys: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT tag_id, hour FROM samples_packed WHERE tenant_id = $1 \
             AND tag_id = ANY($2) AND hour >= $3 AND hour < $4 ORDER BY tag_id, hour",
        )
        .bind(tenant.0)
        .bind(tag_ids)
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *tx)
        .await?;
        current = keys.into_iter().filter(|k| !late.contains(k)).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Quality, QualityReason};

    fn samples(hour: i64) -> Vec<Sample> {
        let values = [
            Value::F64(1.25),
            Value::F64(f64::NAN),
            Value::Bool(true),
            Value::I64(-7),
            Value::Str("ventil offen".into()),
            Value::Str("".into()),
        ];
        values
            .into_iter()
            .enumerate()
            .map(|(i, value)| Sample {
                tag: TagId(4),
                value,
                quality: match i % 3 {
                    0 => Quality::Good,
                    1 => Quality::Bad(QualityReason::CommLost),
                    _ => Quality::Uncertain(QualityReason::Stale),
                },
                // Two samples share an instant; server times before and after.
                source_time: Timestamp(hour + (i as i64 / 2) * 1_000_003),
                server_time: Timestamp(hour + (i as i64) * 999_999 - 5),
            })
            .collect()
    }

    #[test]
    fn an_hour_of_samples_round_trips() {
        for hour in [0, 5 * HOUR_US, -2 * HOUR_US] {
            let want = samples(hour);
            let back = decode(TagId(4), hour, &encode(hour, &want)).expect("decode");
            assert_eq!(back.len(), want.len());
            for (b, w) in back.iter().zip(&want) {
                // NaN != NaN: compare the bits.
                let same_value = match (&b.value, &w.value) {
                    (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
                    (x, y) => x == y,
                };
                assert!(same_value && (b.tag, b.quality) == (w.tag, w.quality));
                assert_eq!(
                    (b.source_time, b.server_time),
                    (w.source_time, w.server_time)
                );
            }
        }
        assert!(
            decode(TagId(4), 0, &encode(0, &[]))
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn corrupt_packed_samples_are_an_error() {
        let good = encode(0, &samples(0));
        for cut in 0..good.len() {
            assert!(decode(TagId(4), 0, &good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(decode(TagId(4), 0, &extra).is_err());
        // A count far beyond the bytes does not allocate for it.
        assert!(decode(TagId(4), 0, &[1, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        // An unknown value kind.
        let mut kind = vec![1, 1, 0, 0];
        put_signed(&mut kind, 0x0f);
        assert!(decode(TagId(4), 0, &kind).is_err());
    }
}
