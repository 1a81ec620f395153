//! Statistics of one tag's samples over a range, in one pass over the samples in time
//! order (the store's export cursor): count, min, max, mean, standard deviation,
//! percentiles, the least-squares trend, and a data-quality score.
//!
//! The numeric statistics are of the numeric samples that are not Bad (booleans count
//! as 0 and 1), like `history` buckets. The quality measures are of every sample:
//!
//! - `good_share`: Good samples over all samples;
//! - gaps: an interval between consecutive samples (or from `from` to the first, or
//!   from the last to the end of the range) longer than twice the expected period is
//!   a gap, and the time beyond one period is missing; `coverage` is one minus the
//!   missing time over the range;
//! - stale time: how long the latest value was older than the tag's staleness limit
//!   (what the cache shows as Uncertain/Stale);
//! - comm-lost time: how long the latest value was Bad for a lost connection, and
//!   offline time: comm-lost or stale (what availability is measured by);
//! - `score` = `good_share` × `coverage` × (1 − stale share), in [0, 1].

use crate::domain::{Quality, QualityReason, Sample, Timestamp};

/// What the statistics of a tag are measured against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsSpec {
    pub from: Timestamp,
    /// End of the range; the time after the last sample up to here counts for gaps
    /// and staleness (callers cap it at now).
    pub to: Timestamp,
    /// The tag's expected sampling period; `None` takes the median interval between
    /// its samples.
    pub expected_period_us: Option<i64>,
    /// Age beyond which a value is stale (the cache's limit for the tag).
    pub stale_after_us: i64,
}

/// The statistics of one tag.
#[derive(Debug, Clone, PartialEq)]
pub struct TagStatistics {
    /// Every sample in the range.
    pub count: u64,
    pub good: u64,
    pub uncertain: u64,
    pub bad: u64,
    /// Numeric samples that are not Bad: what the numbers below are of.
    pub numeric: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    /// Population standard deviation.
    pub stddev: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// Least-squares slope of value over time, per hour (`None` under two samples or
    /// when they share one instant).
    pub slope_per_hour: Option<f64>,
    pub quality: DataQuality,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataQuality {
    /// 1 for a tag without samples: nothing was bad, but coverage is 0.
    pub good_share: f64,
    /// The period the gaps were judged against (`None`: no samples to judge by).
    pub expected_period_us: Option<i64>,
    pub gaps: u64,
    pub missing_us: i64,
    pub coverage: f64,
    pub stale_us: i64,
    pub comm_lost_us: i64,
    /// Time the tag had no usable value: lost to communication, or stale.
    pub offline_us: i64,
    pub score: f64,
}

/// Accumulates one tag's samples, which must come in time order.
#[derive(Debug)]
pub struct Accumulator {
    spec: StatsSpec,
    count: u64,
    good: u64,
    uncertain: u64,
    bad: u64,
    values: Vec<f64>,
    min: f64,
    max: f64,
    /// Running means and co-moments (Welford): value, time (s since `from`).
    mean_v: f64,
    mean_t: f64,
    m2_v: f64,
    m2_t: f64,
    c_tv: f64,
    /// Source times of the samples, for the gaps once the period is known.
    intervals: Vec<i64>,
    last: Option<(i64, bool)>,
    stale_us: i64,
    comm_lost_us: i64,
    offline_us: i64,
}

impl Accumulator {
    pub fn new(spec: StatsSpec) -> Self {
        Accumulator {
            spec,
            count: 0,
            good: 0,
            uncertain: 0,
            bad: 0,
            values: Vec::new(),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean_v: 0.0,
            mean_t: 0.0,
            m2_v: 0.0,
            m2_t: 0.0,
            c_tv: 0.0,
            intervals: Vec::new(),
            last: None,
            stale_us: 0,
            comm_lost_us: 0,
            offline_us: 0,
        }
    }

    /// Time from the previous sample (or `from`) to `at`: its interval, its stale
    /// part and, if the previous value was lost to communication, all of it.
    fn elapse(&mut self, at: i64) {
        let (prev, lost) = self.last.unwrap_or((self.spec.from.0, false));
        let dt = at.saturating_sub(prev).max(0);
        self.intervals.push(dt);
        let stale = (dt - self.spec.stale_after_us).max(0);
        self.stale_us += stale;
        if lost {
            self.comm_lost_us += dt;
            self.offline_us += dt;
        } else {
            self.offline_us += stale;
        }
    }

    pub fn add(&mut self, s: &Sample) {
        let at = s.source_time.0;
        self.elapse(at);
        let lost = matches!(s.quality, Quality::Bad(QualityReason::CommLost));
        self.last = Some((at, lost));
        self.count += 1;
        match s.quality {
            Quality::Good => self.good += 1,
            Quality::Uncertain(_) => self.uncertain += 1,
            Quality::Bad(_) => {
                self.bad += 1;
                return;
            }
        }
        let Some(v) = s.value.as_f64().filter(|v| v.is_finite()) else {
            return;
        };
        self.values.push(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        let n = self.values.len() as f64;
        let t = (at - self.spec.from.0) as f64 / 1e6;
        let (dv, dt) = (v - self.mean_v, t - self.mean_t);
        self.mean_v += dv / n;
        self.mean_t += dt / n;
        self.m2_v += dv * (v - self.mean_v);
        self.m2_t += dt * (t - self.mean_t);
        self.c_tv += dt * (v - self.mean_v);
    }

    pub fn finish(mut self) -> TagStatistics {
        let end = self.spec.to.0.max(self.spec.from.0);
        // The first interval (from `from`) and the tail are partial: they count for
        // gaps and staleness, not for the median period.
        let samples = self.count as usize;
        self.elapse(end);
        let period = self.spec.expected_period_us.filter(|p| *p > 0).or_else(|| {
            if samples < 2 {
                return None;
            }
            // Samples of one instant (a batch stamped at once) say nothing of the period.
            let mut inner: Vec<i64> = self.intervals[1..samples]
                .iter()
                .copied()
                .filter(|dt| *dt > 0)
                .collect();
            if inner.is_empty() {
                return None;
            }
            let mid = inner.len() / 2;
            let (_, m, _) = inner.select_nth_unstable(mid);
            Some(*m)
        });
        let (mut gaps, mut missing_us) = (0u64, 0i64);
        if let Some(p) = period {
            for &dt in &self.intervals {
                if dt > 2 * p {
                    gaps += 1;
                    missing_us += dt - p;
                }
            }
        } else {
            // Nothing to judge by: the whole range is missing.
            gaps = 1;
            missing_us = end - self.spec.from.0;
        }
        let range = (end - self.spec.from.0).max(1) as f64;
        let good_share = if self.count == 0 {
            1.0
        } else {
            self.good as f64 / self.count as f64
        };
        let coverage = (1.0 - missing_us as f64 / range).clamp(0.0, 1.0);
        let stale_share = (self.stale_us as f64 / range).clamp(0.0, 1.0);
        let quality = DataQuality {
            good_share,
            expected_period_us: period,
            gaps,
            missing_us,
            coverage,
            stale_us: self.stale_us,
            comm_lost_us: self.comm_lost_us,
            offline_us: self.offline_us,
            score: good_share * coverage * (1.0 - stale_share),
        };
        let numeric = self.values.len();
        let n = numeric as f64;
        let some = |v: f64| (numeric > 0).then_some(v);
        let [p50, p95, p99] = percentiles(&mut self.values, [0.5, 0.95, 0.99]);
        TagStatistics {
            count: self.count,
            good: self.good,
            uncertain: self.uncertain,
            bad: self.bad,
            numeric: numeric as u64,
            min: some(self.min),
            max: some(self.max),
            mean: some(self.mean_v),
            stddev: some((self.m2_v / n).max(0.0).sqrt()),
            p50,
            p95,
            p99,
            slope_per_hour: (numeric > 1 && self.m2_t > 0.0)
                .then(|| self.c_tv / self.m2_t * 3600.0),
            quality,
        }
    }
}

/// Quantiles (linear interpolation between closest ranks, like PostgreSQL's
/// `percentile_cont`) by selection, without sorting the whole slice.
pub fn percentiles<const N: usize>(values: &mut [f64], qs: [f64; N]) -> [Option<f64>; N] {
    let n = values.len();
    qs.map(|q| {
        if n == 0 {
            return None;
        }
        let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
        let lo = h.floor() as usize;
        let (_, at_lo, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
        let at_lo = *at_lo;
        let next = above.iter().copied().reduce(f64::min).unwrap_or(at_lo);
        Some(at_lo + (h - lo as f64) * (next - at_lo))
    })
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
