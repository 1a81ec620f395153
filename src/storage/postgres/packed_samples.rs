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

use futures::TryStreamExt;
use sqlx::{PgConnection, Row};

use super::bytes::{Reader, columns, put_signed, put_varint};
use super::history::sample_from_columns;
use super::packed::HOUR_US;
use crate::domain::{Sample, TagId, Timestamp, Value};
use crate::storage::codec::{decode_code, encode_code};
use crate::storage::{Error, Result};

const VERSION: u8 = 1;
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
    let mut r = Reader::new(bytes);
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
