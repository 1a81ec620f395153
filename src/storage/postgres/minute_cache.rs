//! The server's copy of packed hours of minute rollups ([`super::packed`]): dashboards
//! ask for the same day of trends again and again, and a packed hour only changes when
//! a compaction repacks it (or retention deletes it). Entries are keyed by tenant, tag
//! and hour and carry the row version (`xmin`) they were decoded from; a reader asks
//! PostgreSQL, in its snapshot, for the version of every hour it needs and gets the
//! bytes only of those it does not hold at that version, so a cached hour is never
//! used in place of a newer one, whichever process repacked it.
//!
//! The cache holds at most its budget of bytes, evicting the hours cached longest ago
//! first; a budget of 0 turns it off.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use super::packed::MINUTE_US;
use crate::storage::rollup::Partial;

/// The decoded minutes of one packed hour, in order.
pub(super) type HourMinutes = Arc<[CachedMinute]>;

/// One minute's aggregate in 72 bytes (a [`Partial`] with its start takes 112).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CachedMinute {
    count: i64,
    bad: i64,
    /// sum, min, max, first, last (zeros when `count` is 0).
    values: [f64; 5],
    /// µs from the minute's start to the first and the last counted sample.
    first_at: u32,
    last_at: u32,
    /// Minute of the hour.
    minute: u8,
}

impl CachedMinute {
    /// The aggregate of the minute at `start` of the hour at `hour`; `None` if it does
    /// not fit a minute of that hour (as decoded packed minutes always do).
    pub(super) fn new(hour: i64, start: i64, p: &Partial) -> Option<Self> {
        let minute = u8::try_from((start - hour) / MINUTE_US)
            .ok()
            .filter(|m| *m < 60)?;
        if start != hour + i64::from(minute) * MINUTE_US {
            return None;
        }
        let at = |t: i64| {
            u32::try_from(t - start)
                .ok()
                .filter(|o| i64::from(*o) < MINUTE_US)
        };
        let (values, first_at, last_at) = match (p.min, p.max, p.first, p.last) {
            (Some(min), Some(max), Some(first), Some(last)) if p.count > 0 => (
                [p.sum, min, max, first.1, last.1],
                at(first.0)?,
                at(last.0)?,
            ),
            _ if p.count == 0 => ([0.0; 5], 0, 0),
            _ => return None,
        };
        Some(CachedMinute {
            count: p.count,
            bad: p.bad,
            values,
            first_at,
            last_at,
            minute,
        })
    }

    /// (minute start µs, aggregate), in the hour at `hour`.
    pub(super) fn get(&self, hour: i64) -> (i64, Partial) {
        let start = hour + i64::from(self.minute) * MINUTE_US;
        let [sum, min, max, first, last] = self.values;
        let counted = self.count > 0;
        let p = Partial {
            count: self.count,
            sum,
            min: counted.then_some(min),
            max: counted.then_some(max),
            first: counted.then_some((start + i64::from(self.first_at), first)),
            last: counted.then_some((start + i64::from(self.last_at), last)),
            bad: self.bad,
        };
        (start, p)
    }
}

/// (tenant, tag, hour start µs).
type Key = (i64, i64, i64);

/// A packed hour of a tag: (tag, hour start µs, its minutes).
pub(super) type TagHour = (i64, i64, HourMinutes);

/// Bytes an entry is charged beyond its minutes (key, map and queue slots, `Arc`).
const ENTRY_OVERHEAD: usize = 96;

pub(super) struct MinuteCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    /// Keys in the order they were cached, with the entry's sequence number (a key
    /// cached again has a newer one; its older queue slot is skipped on eviction).
    order: VecDeque<(Key, u64)>,
    bytes: usize,
    next_seq: u64,
}

struct Entry {
    version: i64,
    minutes: HourMinutes,
    seq: u64,
}

fn cost(minutes: &HourMinutes) -> usize {
    std::mem::size_of_val::<[CachedMinute]>(minutes) + ENTRY_OVERHEAD
}

impl MinuteCache {
    pub(super) fn new(budget_bytes: usize) -> Self {
        MinuteCache {
            budget: budget_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is consistent after every statement: a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached minutes of `tags` in these hours, each given as (hour start,
    /// current version): the hours cached at that version, as (tag, hour, minutes)
    /// (empty ones left out), and the (tag, hour) pairs that are not.
    pub(super) fn lookup(
        &self,
        tenant: i64,
        tags: &[i64],
        hours: &[(i64, i64)],
    ) -> (Vec<TagHour>, Vec<(i64, i64)>) {
        let mut hits = Vec::with_capacity(tags.len() * hours.len());
        let mut misses = Vec::new();
        let inner = (self.budget > 0).then(|| self.lock());
        for &tag in tags {
            for &(hour, version) in hours {
                let cached = inner
                    .as_ref()
                    .and_then(|i| i.map.get(&(tenant, tag, hour)))
                    .filter(|e| e.version == version);
                match cached {
                    Some(e) if e.minutes.is_empty() => {}
                    Some(e) => hits.push((tag, hour, e.minutes.clone())),
                    None => misses.push((tag, hour)),
                }
            }
        }
        (hits, misses)
    }

    /// Caches the hour's minutes decoded from the row at `version`.
    pub(super) fn put(&self, tenant: i64, tag: i64, hour: i64, version: i64, minutes: HourMinutes) {
        let size = cost(&minutes);
        if size > self.budget {
            return;
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let key = (tenant, tag, hour);
        if let Some(old) = inner.map.insert(
            key,
            Entry {
                version,
                minutes,
                seq,
            },
        ) {
            inner.bytes -= cost(&old.minutes);
        }
        inner.bytes += size;
        inner.order.push_back((key, seq));
        while inner.bytes > self.budget {
            let Some((key, seq)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&key).is_some_and(|e| e.seq == seq) {
                if let Some(e) = inner.map.remove(&key) {
                    inner.bytes -= cost(&e.minutes);
                }
            }
        }
        // Queue slots of replaced entries would otherwise pile up under a budget that
        // is never reached.
        if inner.order.len() > 2 * inner.map.len() + 1024 {
            let map = &inner.map;
            inner
                .order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    /// Bytes held (tests).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl std::fmt::Debug for MinuteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("MinuteCache")
            .field("budget", &self.budget)
            .field("bytes", &inner.bytes)
            .field("hours", &inner.map.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(n: usize) -> HourMinutes {
        (0..n)
            .filter_map(|m| CachedMinute::new(0, m as i64 * MINUTE_US, &Partial::default()))
            .collect::<Vec<_>>()
            .into()
    }

    #[test]
    fn a_minute_round_trips_in_72_bytes() {
        assert_eq!(std::mem::size_of::<CachedMinute>(), 72);
        let hour = -3 * 3_600_000_000;
        let start = hour + 59 * MINUTE_US;
        let mut p = Partial::default();
        p.add(start + 5, Some(2.5), false);
        p.add(start + MINUTE_US - 1, Some(-1.0), false);
        p.add(start + 7, None, true);
        let m = CachedMinute::new(hour, start, &p).expect("fits");
        assert_eq!(m.get(hour), (start, p));
        let bad_only = Partial {
            bad: 3,
            ..Partial::default()
        };
        let m = CachedMinute::new(hour, hour, &bad_only).expect("fits");
        assert_eq!(m.get(hour), (hour, bad_only));
        // Outside the hour, off a minute boundary, a sample outside its minute.
        assert!(CachedMinute::new(hour, hour + 60 * MINUTE_US, &bad_only).is_none());
        assert!(CachedMinute::new(hour, hour + 1, &bad_only).is_none());
        assert!(CachedMinute::new(hour, start - MINUTE_US, &p).is_none());
    }

    /// The version the hour is cached at, of those asked for.
    fn version_of(cache: &MinuteCache, tag: i64, hour: i64) -> Option<i64> {
        (0..10).find(|&v| cache.lookup(1, &[tag], &[(hour, v)]).1.is_empty())
    }

    #[test]
    fn a_cached_hour_keeps_its_version_until_cached_again() {
        let cache = MinuteCache::new(1 << 20);
        cache.put(1, 7, 0, 100, hour(60));
        let hours = [(0, 100), (3_600_000_000, 5)];
        let (hits, misses) = cache.lookup(1, &[7, 8], &hours);
        assert_eq!(
            hits.iter()
                .map(|(t, h, m)| (*t, *h, m.len()))
                .collect::<Vec<_>>(),
            [(7, 0, 60)]
        );
        assert_eq!(misses, [(7, 3_600_000_000), (8, 0), (8, 3_600_000_000)]);
        assert_eq!(
            cache.lookup(1, &[7], &[(0, 101)]).1,
            [(7, 0)],
            "repacked since"
        );
        assert_eq!(
            cache.lookup(2, &[7], &[(0, 100)]).1,
            [(7, 0)],
            "another tenant"
        );
        cache.put(1, 7, 0, 101, hour(30));
        assert_eq!(cache.lookup(1, &[7], &[(0, 101)]).0[0].2.len(), 30);
        // Known empty: neither a hit nor a miss.
        cache.put(1, 8, 0, 100, hour(0));
        assert_eq!(cache.lookup(1, &[8], &[(0, 100)]), (vec![], vec![]));
        assert_eq!(cache.bytes(), cost(&hour(30)) + cost(&hour(0)));
    }

    #[test]
    fn the_budget_evicts_the_oldest_hours_first() {
        let one = cost(&hour(60));
        let cache = MinuteCache::new(3 * one);
        for h in 0..5 {
            cache.put(1, 1, h, 1, hour(60));
        }
        assert!(cache.bytes() <= 3 * one);
        assert_eq!(version_of(&cache, 1, 0).or(version_of(&cache, 1, 1)), None);
        assert!((2..5).all(|h| version_of(&cache, 1, h).is_some()));
        // Re-caching an hour renews it; its old queue slot does not evict the new entry.
        cache.put(1, 1, 2, 2, hour(60));
        cache.put(1, 1, 5, 1, hour(60));
        assert_eq!(
            version_of(&cache, 1, 2),
            Some(2),
            "renewed, so not the oldest"
        );
        assert_eq!(version_of(&cache, 1, 3), None);
        assert!(cache.bytes() <= 3 * one);
    }

    #[test]
    fn a_budget_of_zero_caches_nothing() {
        let cache = MinuteCache::new(0);
        cache.put(1, 1, 0, 1, hour(1));
        assert_eq!(cache.lookup(1, &[1], &[(0, 1)]).1, [(1, 0)]);
    }
}
