//! Closed hours of the minute rollup, packed: `samples_1m_packed` holds one row per tag
//! and hour whose `minutes` column carries that hour's minute aggregates
//! ([`Partial`]s) in a compact binary layout, instead of up to sixty rows of
//! `samples_1m`. A day of 1,000 tags is 24,000 short rows rather than 1.44 million, which
//! is what makes minute buckets over long ranges cheap to read.
//!
//! [`compact`] (run by `Store::maintain`) moves the minutes of hours that ended a while
//! ago out of `samples_1m` into their packed rows, in one transaction: it deletes the
//! rows and merges them into the packed hour. A sample that arrives late for a packed
//! hour lands in `samples_1m` again as usual, and readers merge both tables (in one
//! snapshot), so the aggregates stay equal to a recomputation from the samples at every
//! moment; the next compaction folds the late minute in. Each compaction gives the
//! tenant hours it wrote a new version (`samples_1m_packed_hours`), which is what the
//! server's cache of decoded hours ([`super::minute_cache`]) is checked against.
//!
//! Layout of `minutes`: a version byte (1), a little-endian `u64` whose bit `i` says
//! minute `i` of the hour is present, then per present minute in order: `count` and
//! `bad` as LEB128 varints and, if `count > 0`, the offsets of the first and last sample
//! from the minute's start (µs, varints) and `sum`, `min`, `max`, `first`, `last` as
//! little-endian `f64`.

use std::collections::BTreeMap;

use sqlx::{PgPool, Row};

use super::bytes::{Reader, columns, put_varint};
use crate::storage::rollup::{Partial, bucket_of};
use crate::storage::{Error, Result};

pub(super) const MINUTE_US: i64 = 60_000_000;
pub(super) const HOUR_US: i64 = 3_600_000_000;
const VERSION: u8 = 1;
/// Advisory lock key serialising compaction across processes ("thermpak").
const LOCK_KEY: i64 = 0x7468_6572_6d70_616b;
/// `samples_1m` rows moved per transaction (a hundred tag-hours when full): bounds one
/// transaction's memory and locks, and the raw samples it repacks.
const ROWS_PER_ROUND: i64 = 6_000;

/// Packs the minutes of the hour starting at `hour` (µs), given as (minute of the
/// hour, aggregate) in order. An aggregate that does not fit its minute (a sample time
/// outside it, a count without values) is reported, not packed.
pub(super) fn encode<'a>(
    hour: i64,
    minutes: impl IntoIterator<Item = (u8, &'a Partial)> + Clone,
) -> Result<Vec<u8>> {
    let mut present = 0u64;
    let mut n = 0;
    for (m, _) in minutes.clone() {
        present |= 1 << m;
        n += 1;
    }
    let mut out = Vec::with_capacity(9 + n * 64);
    out.push(VERSION);
    out.extend_from_slice(&present.to_le_bytes());
    for (m, p) in minutes {
        let start = hour + i64::from(m) * MINUTE_US;
        let misfit = || Error::Corrupt(format!("minute aggregate at {start} µs: {p:?}"));
        let offset = |at: i64| {
            u64::try_from(at - start)
                .ok()
                .filter(|o| *o < MINUTE_US as u64)
                .ok_or_else(misfit)
        };
        if m >= 60 || p.count < 0 || p.bad < 0 {
            return Err(misfit());
        }
        put_varint(&mut out, p.count as u64);
        put_varint(&mut out, p.bad as u64);
        if p.count == 0 {
            continue;
        }
        let (Some((first_ts, first)), Some((last_ts, last)), Some(min), Some(max)) =
            (p.first, p.last, p.min, p.max)
        else {
            return Err(misfit());
        };
        put_varint(&mut out, offset(first_ts)?);
        put_varint(&mut out, offset(last_ts)?);
        for v in [p.sum, min, max, first, last] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// The minutes of a packed hour in time order, as (minute start µs, aggregate); a
/// malformed value ends in one error.
pub(super) struct Minutes<'a> {
    hour: i64,
    /// The minutes still to read (bit `i`: minute `i`); `None`: a bad header.
    present: Option<u64>,
    r: Reader<'a>,
    done: bool,
}

impl<'a> Minutes<'a> {
    /// The packed hour starting at `hour` (µs); a bad header is the first item.
    pub(super) fn new(hour: i64, bytes: &'a [u8]) -> Self {
        let mut r = Reader::new(bytes);
        let present = match (r.byte(), r.array()) {
            (Some(VERSION), Some(bits)) => Some(u64::from_le_bytes(bits)),
            _ => None,
        };
        Minutes {
            hour,
            // Bits 60–63 name no minute.
            present: present.filter(|p| p >> 60 == 0),
            r,
            done: false,
        }
    }

    /// The first of the `present` minutes (not 0).
    fn minute(&mut self, present: u64) -> Option<(i64, Partial)> {
        let m = i64::from(present.trailing_zeros());
        self.present = Some(present & (present - 1));
        let start = self.hour + m * MINUTE_US;
        let count = self.r.count()?;
        let bad = self.r.count()?;
        let mut p = Partial {
            count,
            bad,
            ..Partial::default()
        };
        if count > 0 {
            let first_ts = start + offset(&mut self.r)?;
            let last_ts = start + offset(&mut self.r)?;
            let mut v = [0.0; 5];
            for x in &mut v {
                *x = f64::from_le_bytes(self.r.array()?);
            }
            let [sum, min, max, first, last] = v;
            p.sum = sum;
            p.min = Some(min);
            p.max = Some(max);
            p.first = Some((first_ts, first));
            p.last = Some((last_ts, last));
        }
        Some((start, p))
    }
}

impl Iterator for Minutes<'_> {
    type Item = Result<(i64, Partial)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let Some(present) = self.present else {
            self.done = true;
            return Some(Err(corrupt(self.hour)));
        };
        if present == 0 {
            self.done = true;
            return (!self.r.done()).then(|| Err(corrupt(self.hour)));
        }
        let m = self.minute(present);
        self.done = m.is_none();
        Some(m.ok_or_else(|| corrupt(self.hour)))
    }
}

fn corrupt(hour: i64) -> Error {
    Error::Corrupt(format!("packed minutes of the hour at {hour} µs"))
}

/// An offset inside a minute.
fn offset(r: &mut Reader<'_>) -> Option<i64> {
    r.count().filter(|o| *o < MINUTE_US)
}

/// Moves the minutes of hours that end by `before` from `samples_1m` into their packed
/// rows, repacking those hours' samples, in transactions of [`ROWS_PER_ROUND`] rows, at
/// most `rounds` of them (what is left waits for the next call). Returns the minute
/// rows moved (0 when another process is compacting).
pub(super) async fn compact(pool: &PgPool, before: i64, rounds: usize) -> Result<u64> {
    let before = bucket_of(before, HOUR_US);
    let mut moved = 0;
    for _ in 0..rounds {
        let mut tx = pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(moved);
        }
        // Locked in key order, the order writers lock them in: no deadlock.
        let rows = sqlx::query(
            "WITH doomed AS (SELECT ctid FROM samples_1m WHERE bucket < $1 \
             ORDER BY tenant_id, tag_id, bucket LIMIT $2 FOR UPDATE) \
             DELETE FROM samples_1m r USING doomed WHERE r.ctid = doomed.ctid \
             RETURNING r.tenant_id, r.tag_id, r.bucket, r.count, r.sum, r.min, r.max, r.bad, \
             r.first_ts, r.first, r.last_ts, r.last",
        )
        .bind(before)
        .bind(ROWS_PER_ROUND)
        .fetch_all(&mut *tx)
        .await?;
        let n = rows.len();
        let mut hours: BTreeMap<(i64, i64, i64), BTreeMap<u8, Partial>> = BTreeMap::new();
        for row in &rows {
            let (tenant, tag, bucket): (i64, i64, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let hour = bucket_of(bucket, HOUR_US);
            let minute = u8::try_from((bucket - hour) / MINUTE_US)
                .map_err(|_| Error::Corrupt(format!("samples_1m bucket {bucket}")))?;
            hours
                .entry((tenant, tag, hour))
                .or_default()
                .insert(minute, super::rollups::partial_of(row, 3)?);
        }
        let keys: Vec<(i64, i64, i64)> = hours.keys().copied().collect();
        let (tenants, tags, starts) = columns(&keys);
        // The packed hours already there, locked; the moved minutes are newer writes.
        let existing = sqlx::query(
            "SELECT tenant_id, tag_id, hour, minutes FROM samples_1m_packed \
             WHERE (tenant_id, tag_id, hour) IN \
             (SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[])) FOR UPDATE",
        )
        .bind(&tenants)
        .bind(&tags)
        .bind(&starts)
        .fetch_all(&mut *tx)
        .await?;
        for row in &existing {
            let key: (i64, i64, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let bytes: &[u8] = row.try_get(3)?;
            let Some(new) = hours.get_mut(&key) else {
                continue;
            };
            let mut old: BTreeMap<u8, Partial> = BTreeMap::new();
            for minute in Minutes::new(key.2, bytes) {
                let (start, p) = minute?;
                old.insert(((start - key.2) / MINUTE_US) as u8, p);
            }
            for (m, p) in new.iter() {
                old.entry(*m).or_default().merge(p);
            }
            *new = old;
        }
        let packed = hours
            .iter()
            .map(|(key, m)| encode(key.2, m.iter().map(|(k, p)| (*k, p))))
            .collect::<Result<Vec<Vec<u8>>>>()?;
        sqlx::query(
            "INSERT INTO samples_1m_packed (tenant_id, tag_id, hour, minutes) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::bytea[]) \
             ON CONFLICT (tenant_id, tag_id, hour) DO UPDATE SET minutes = excluded.minutes",
        )
        .bind(&tenants)
        .bind(&tags)
        .bind(&starts)
        .bind(&packed)
        .execute(&mut *tx)
        .await?;
        // A new version of every tenant's hour written to: cached copies of its packed
        // minutes are read again.
        sqlx::query(
            "INSERT INTO samples_1m_packed_hours AS v (tenant_id, hour, version) \
             SELECT t, h, nextval('samples_1m_packed_version') FROM \
             (SELECT DISTINCT t, h FROM UNNEST($1::int8[], $2::int8[]) AS k(t, h) \
              ORDER BY t, h) AS d \
             ON CONFLICT (tenant_id, hour) DO UPDATE SET version = excluded.version",
        )
        .bind(&tenants)
        .bind(&starts)
        .execute(&mut *tx)
        .await?;
        // The raw samples of the same hours: exactly the hours written to since the
        // last compaction.
        super::packed_samples::pack(&mut tx, &keys).await?;
        tx.commit().await?;
        moved += n as u64;
        if (n as i64) < ROWS_PER_ROUND {
            break;
        }
    }
    if moved > 0 {
        // The moved rows' dead index entries would slow every read of the recent
        // minutes until autovacuum came by; samples_1m is small (the open hours).
        sqlx::query(
            "VACUUM (ANALYZE) samples_1m, samples_1m_packed, samples_1m_packed_hours, \
             samples_packed",
        )
        .execute(pool)
        .await?;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(hour: i64, bytes: &[u8]) -> Result<Vec<(i64, Partial)>> {
        Minutes::new(hour, bytes).collect()
    }

    fn part(count: i64, bad: i64, at: i64, v: f64) -> Partial {
        let mut p = Partial {
            bad,
            ..Partial::default()
        };
        for i in 0..count {
            p.add(at + i * 1000, Some(v + i as f64), false);
        }
        p
    }

    #[test]
    fn an_hour_round_trips() {
        let hour = 7 * HOUR_US;
        let minutes: Vec<(u8, Partial)> = vec![
            (0, part(3, 1, hour, 1.5)),
            (17, part(0, 4, 0, 0.0)),
            (59, part(1, 0, hour + 59 * MINUTE_US + MINUTE_US - 1, -2.25)),
        ];
        let bytes = encode(hour, minutes.iter().map(|(m, p)| (*m, p))).expect("fits");
        let back = decode(hour, &bytes).expect("decode");
        let want: Vec<(i64, Partial)> = minutes
            .iter()
            .map(|(m, p)| (hour + i64::from(*m) * MINUTE_US, *p))
            .collect();
        assert_eq!(back, want);
        // Before 1970 too: offsets are from the minute's start.
        let early = -HOUR_US;
        let p = part(2, 0, early + 5 * MINUTE_US + 7, 3.0);
        let bytes = encode(early, [(5u8, &p)]).expect("fits");
        // A sample outside its minute is refused.
        assert!(encode(early, [(4u8, &p)]).is_err());
        let back = decode(early, &bytes).expect("decode");
        assert_eq!(back, vec![(early + 5 * MINUTE_US, p)]);
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let p = part(2, 1, 3 * MINUTE_US, 1.0);
        let good = encode(0, [(3u8, &p)]).expect("fits");
        for cut in 0..good.len() {
            assert!(decode(0, &good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(decode(0, &extra).is_err());
        let mut version = good.clone();
        version[0] = 9;
        assert!(decode(0, &version).is_err());
        let mut minute_60 = good;
        minute_60[1..9].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode(0, &minute_60).is_err());
        assert!(decode(0, &[1, 255, 255, 255, 255, 255, 255, 255, 15, 255]).is_err());
    }
}
