//! Aggregates of a tag's history per time bucket, as the `history` buckets report
//! them and as PostgreSQL's rollup tables keep them: over the numeric samples that
//! are not Bad (count, sum, min, max, first and last by source time), and the number
//! of Bad samples, which are counted, not averaged (their value is the last known
//! one, not a measurement). Non-finite values are left out.
//!
//! Partial aggregates merge exactly (count and sum add, min and max compare, first and
//! last go by time), which is what lets a rollup be maintained one insert at a time
//! and a bucket be assembled from rollup rows and raw edges.

use std::collections::BTreeMap;

use super::{Bucket, StoredSample};
use crate::domain::{Quality, QualityReason, TagId, Timestamp};

/// The quality level of Bad in a stored code (bits 4–7 of `code`), for SQL that counts
/// Bad samples.
pub fn bad_level() -> u8 {
    Quality::Bad(QualityReason::None).to_code().0
}

/// The aggregate of some samples of one tag in one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Partial {
    pub count: i64,
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// (source time µs, value) of the earliest and latest counted sample.
    pub first: Option<(i64, f64)>,
    pub last: Option<(i64, f64)>,
    pub bad: i64,
}

impl Default for Partial {
    fn default() -> Self {
        Partial {
            count: 0,
            sum: 0.0,
            min: None,
            max: None,
            first: None,
            last: None,
            bad: 0,
        }
    }
}

fn pick(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

impl Partial {
    /// One sample: a Bad one is counted as bad; a finite number otherwise enters the
    /// aggregates; anything else (text, NaN) changes nothing.
    pub fn add(&mut self, at: i64, value: Option<f64>, bad: bool) {
        if bad {
            self.bad += 1;
            return;
        }
        let Some(v) = value.filter(|v| v.is_finite()) else {
            return;
        };
        self.merge(&Partial {
            count: 1,
            sum: v,
            min: Some(v),
            max: Some(v),
            first: Some((at, v)),
            last: Some((at, v)),
            bad: 0,
        });
    }

    /// Adds another part of the same bucket. On equal times the other part's last
    /// value wins (it was written later).
    pub fn merge(&mut self, o: &Partial) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = pick(self.min, o.min, f64::min);
        self.max = pick(self.max, o.max, f64::max);
        self.first = match (self.first, o.first) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, o.last) {
            (Some(a), Some(b)) => Some(if b.0 >= a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        self.bad += o.bad;
    }

    pub fn into_bucket(self, tag: TagId, start: Timestamp) -> Bucket {
        match (self.min, self.max, self.first, self.last) {
            (Some(min), Some(max), Some(first), Some(last)) if self.count > 0 => {
                let avg = self.sum / self.count as f64;
                Bucket::new(
                    tag,
                    start,
                    self.count,
                    self.bad,
                    [avg, min, max, first.1, last.1],
                )
            }
            // Only Bad samples (`add` never makes a count without values).
            _ => Bucket::new(tag, start, 0, self.bad, [0.0; 5]),
        }
    }
}

/// The start of the bucket of `width_us` that holds `at` (floor, also before 1970).
pub fn bucket_of(at: i64, width_us: i64) -> i64 {
    at.div_euclid(width_us) * width_us
}

/// The start of the first whole bucket of `width_us` at or after `at` (ceiling).
pub fn bucket_after(at: i64, width_us: i64) -> i64 {
    bucket_of(at, width_us) + if at % width_us == 0 { 0 } else { width_us }
}

/// The samples' aggregates per (tenant, tag, bucket start) for buckets of `width_us`.
pub fn roll_up(samples: &[StoredSample], width_us: i64) -> BTreeMap<(i64, i64, i64), Partial> {
    let mut out: BTreeMap<(i64, i64, i64), Partial> = BTreeMap::new();
    for s in samples {
        let at = s.sample.source_time.0;
        let key = (s.tenant.0, s.sample.tag.0, bucket_of(at, width_us));
        out.entry(key).or_default().add(
            at,
            s.sample.value.as_f64(),
            matches!(s.sample.quality, Quality::Bad(_)),
        );
    }
    out
}

/// The stretches of `[from, to)` in no bucket of `width_us` that has a sample: runs of
/// empty buckets, given the starts of the buckets that have samples (sorted).
pub fn bucket_gaps(starts: &[i64], from: i64, to: i64, width_us: i64) -> Vec<(i64, i64)> {
    let mut gaps = Vec::new();
    let mut covered_to = from;
    for &start in starts {
        if start > covered_to {
            gaps.push((covered_to, start.min(to)));
        }
        covered_to = covered_to.max(start.saturating_add(width_us));
    }
    if covered_to < to {
        gaps.push((covered_to, to));
    }
    gaps
}

/// The stretches of `[from, to)` longer than `min_gap_us` without a sample, given the
/// samples' times (sorted).
pub fn sample_gaps(times: &[i64], from: i64, to: i64, min_gap_us: i64) -> Vec<(i64, i64)> {
    let mut gaps = Vec::new();
    let mut last = from;
    for &t in times.iter().chain(std::iter::once(&to)) {
        if t - last > min_gap_us {
            gaps.push((last, t));
        }
        last = last.max(t);
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_merge_into_the_whole() {
        let samples = [
            (5, Some(3.0), false),
            (1, Some(7.0), false),
            (9, None, true),
            (3, Some(f64::NAN), false),
            (7, Some(-2.0), false),
            (8, Some(4.0), true),
        ];
        let mut whole = Partial::default();
        for (t, v, bad) in samples {
            whole.add(t, v, bad);
        }
        let (mut a, mut b) = (Partial::default(), Partial::default());
        for (i, (t, v, bad)) in samples.into_iter().enumerate() {
            if i % 2 == 0 { &mut a } else { &mut b }.add(t, v, bad);
        }
        a.merge(&b);
        assert_eq!(a, whole);
        let bucket = whole.into_bucket(TagId(1), Timestamp(0));
        assert_eq!(bucket.count, 3);
        assert_eq!(bucket.avg(), Some(8.0 / 3.0));
        assert_eq!((bucket.min(), bucket.max()), (Some(-2.0), Some(7.0)));
        assert_eq!((bucket.first(), bucket.last()), (Some(7.0), Some(-2.0)));
        assert_eq!(bucket.bad, 2);
        let only_bad = {
            let mut p = Partial::default();
            p.add(1, Some(1.0), true);
            p.into_bucket(TagId(1), Timestamp(0))
        };
        assert_eq!((only_bad.count, only_bad.avg(), only_bad.bad), (0, None, 1));
    }

    #[test]
    fn gaps_are_the_stretches_without_samples() {
        // Buckets of 10 in [5, 95): 0 and 10 have samples, 20..60 none, 60 one, then none.
        assert_eq!(
            bucket_gaps(&[0, 10, 60], 5, 95, 10),
            vec![(20, 60), (70, 95)]
        );
        assert_eq!(bucket_gaps(&[], 0, 30, 10), vec![(0, 30)]);
        assert!(bucket_gaps(&[0, 10, 20], 0, 30, 10).is_empty());
        // Samples at 3, 5 and 40 in [0, 50) with gaps over 8: 5..40 and 40..50.
        assert_eq!(sample_gaps(&[3, 5, 40], 0, 50, 8), vec![(5, 40), (40, 50)]);
        assert_eq!(sample_gaps(&[], 0, 50, 8), vec![(0, 50)]);
        assert!(sample_gaps(&[4, 10, 16], 0, 20, 8).is_empty());
    }

    #[test]
    fn buckets_floor_before_the_epoch_too() {
        assert_eq!(bucket_of(59_999_999, 60_000_000), 0);
        assert_eq!(bucket_of(60_000_000, 60_000_000), 60_000_000);
        assert_eq!(bucket_of(-1, 60_000_000), -60_000_000);
        assert_eq!(bucket_after(1, 60_000_000), 60_000_000);
        assert_eq!(bucket_after(60_000_000, 60_000_000), 60_000_000);
        assert_eq!(bucket_after(-1, 60_000_000), 0);
        assert_eq!(bucket_after(-60_000_000, 60_000_000), -60_000_000);
    }
}
