//! Streaming anomaly detection on one tag's values: each value is judged against a
//! rolling window of the values before it, then joins the window.
//!
//! - **z-score**: `|x − mean| / std` of the window; anomalous above `threshold`
//!   (standard deviations; 3 is usual).
//! - **IQR**: outside `[Q1 − k·IQR, Q3 + k·IQR]` of the window, `k` = `threshold`
//!   (1.5 is Tukey's fences, 3 "far out"); the score is the distance beyond the
//!   quartile in IQRs.
//! - **moving average**: `|x − average|` of the window, in the tag's engineering
//!   units; anomalous above `threshold` (e.g. 5 m³/h).
//!
//! A detector judges nothing until its window is full (no detections while it warms
//! up, after a start or a restart). Each detection carries its method, its score
//! (in the method's measure), the expected value (mean, median or average) with the
//! band that was normal, and a confidence in `[0, 1)`: `1 − threshold / score`, 0 at
//! the threshold, 0.5 at twice it, nearing 1 far beyond it.
//!
//! The window counts samples, not seconds: a detector behaves the same whatever the
//! tag's poll period, and a device that slows down does not empty it.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::domain::{RuleId, TagId, Timestamp};

/// The detection methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[serde(rename = "zscore")]
    ZScore,
    Iqr,
    MovingAverage,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::ZScore, Method::Iqr, Method::MovingAverage];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::ZScore => "zscore",
            Method::Iqr => "iqr",
            Method::MovingAverage => "moving_average",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("unknown anomaly method `{s}` (expected zscore, iqr or moving_average)")
            })
    }
}

/// The fewest samples a window may hold.
pub const MIN_WINDOW: u32 = 4;
/// The most samples a window may hold.
pub const MAX_WINDOW: u32 = 10_000;
/// Scores are capped here: a window of identical values has no spread, and any other
/// value is then as far from normal as a number can say.
pub const MAX_SCORE: f64 = 1e9;

/// A detector as configured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectorSpec {
    pub method: Method,
    /// Samples in the rolling window.
    pub window: u32,
    /// The score above which a value is anomalous.
    pub threshold: f64,
}

/// A detector that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectorError {
    #[error("window: must be {MIN_WINDOW} to {MAX_WINDOW} samples, not {0}")]
    Window(u32),
    #[error("threshold: must be a finite number > 0, not {0}")]
    Threshold(f64),
}

impl DetectorSpec {
    pub fn check(&self) -> Result<(), DetectorError> {
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&self.window) {
            return Err(DetectorError::Window(self.window));
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(DetectorError::Threshold(self.threshold));
        }
        Ok(())
    }
}

/// One anomalous value, as judged against the window before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub method: Method,
    pub value: f64,
    pub score: f64,
    pub confidence: f64,
    /// The window's mean (z-score), median (IQR) or average (moving average).
    pub expected: f64,
    /// The band of normal values: a value outside it is anomalous.
    pub lower: f64,
    pub upper: f64,
}

/// A detection on a tag by an anomaly rule, at the sample's source time.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub rule: RuleId,
    pub tag: TagId,
    pub at: Timestamp,
    pub detection: Detection,
}

/// The streaming detector of one tag.
#[derive(Debug, Clone)]
pub struct Detector {
    spec: DetectorSpec,
    window: VecDeque<f64>,
    /// Sums of `x − shift` and its square over the window (z-score, moving average):
    /// shifted by the first value seen, so that a large offset with a small spread
    /// does not cancel away the variance.
    shift: f64,
    sum: f64,
    sum_sq: f64,
    /// Pushes since the sums were last recomputed from the window (rounding drift).
    since_exact: u32,
    /// The window in order (IQR only).
    sorted: Vec<f64>,
}

impl Detector {
    pub fn new(spec: DetectorSpec) -> Self {
        let n = spec.window as usize;
        Detector {
            spec,
            window: VecDeque::with_capacity(n + 1),
            shift: f64::NAN,
            sum: 0.0,
            sum_sq: 0.0,
            since_exact: 0,
            sorted: if spec.method == Method::Iqr {
                Vec::with_capacity(n + 1)
            } else {
                Vec::new()
            },
        }
    }

    pub fn spec(&self) -> &DetectorSpec {
        &self.spec
    }

    /// Judges `x` against the window (None while the window fills, or when `x` is
    /// normal), then adds it. Non-finite values are ignored.
    pub fn push(&mut self, x: f64) -> Option<Detection> {
        if !x.is_finite() {
            return None;
        }
        let full = self.window.len() == self.spec.window as usize;
        let detection = if full { self.judge(x) } else { None };
        self.add(x);
        detection
    }

    fn judge(&self, x: f64) -> Option<Detection> {
        let t = self.spec.threshold;
        let n = self.window.len() as f64;
        let (score, expected, lower, upper) = match self.spec.method {
            Method::ZScore | Method::MovingAverage => {
                let mean_shifted = self.sum / n;
                let mean = mean_shifted + self.shift;
                if self.spec.method == Method::MovingAverage {
                    ((x - mean).abs(), mean, mean - t, mean + t)
                } else {
                    // Sample variance of the window.
                    let var = ((self.sum_sq - self.sum * mean_shifted) / (n - 1.0)).max(0.0);
                    let std = var.sqrt();
                    let score = spread_score((x - mean).abs(), std);
                    (score, mean, mean - t * std, mean + t * std)
                }
            }
            Method::Iqr => {
                let q1 = quantile(&self.sorted, 0.25);
                let q3 = quantile(&self.sorted, 0.75);
                let iqr = q3 - q1;
                let beyond = if x > q3 {
                    x - q3
                } else if x < q1 {
                    q1 - x
                } else {
                    0.0
                };
                let score = spread_score(beyond, iqr);
                let median = quantile(&self.sorted, 0.5);
                (score, median, q1 - t * iqr, q3 + t * iqr)
            }
        };
        // Values near the end of the f64 range can overflow the window's sums: no
        // judgement rather than a detection nobody can store or show.
        let finite = [expected, lower, upper].iter().all(|v| v.is_finite());
        (score > t && finite).then(|| Detection {
            method: self.spec.method,
            value: x,
            score,
            confidence: 1.0 - t / score,
            expected,
            lower,
            upper,
        })
    }

    fn add(&mut self, x: f64) {
        if self.shift.is_nan() {
            self.shift = x;
        }
        let n = self.spec.window as usize;
        self.window.push_back(x);
        let d = x - self.shift;
        self.sum += d;
        self.sum_sq += d * d;
        if self.spec.method == Method::Iqr {
            let at = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
            self.sorted.insert(at, x);
        }
        if self.window.len() > n {
            if let Some(old) = self.window.pop_front() {
                let d = old - self.shift;
                self.sum -= d;
                self.sum_sq -= d * d;
                if self.spec.method == Method::Iqr {
                    let at = self.sorted.partition_point(|v| v.total_cmp(&old).is_lt());
                    self.sorted.remove(at);
                }
            }
        }
        self.since_exact += 1;
        if self.since_exact >= self.spec.window {
            self.exact_sums();
        }
    }

    /// Recomputes the sums from the window (once per window length of pushes), so
    /// that rounding errors of the running sums cannot accumulate.
    fn exact_sums(&mut self) {
        if let Some(&first) = self.window.front() {
            self.shift = first;
        }
        let (mut s, mut sq) = (0.0, 0.0);
        for &v in &self.window {
            let d = v - self.shift;
            s += d;
            sq += d * d;
        }
        self.sum = s;
        self.sum_sq = sq;
        self.since_exact = 0;
    }
}

/// `distance / spread`, capped; a window without spread makes any distance the cap.
fn spread_score(distance: f64, spread: f64) -> f64 {
    if distance == 0.0 {
        0.0
    } else if spread > 0.0 {
        (distance / spread).min(MAX_SCORE)
    } else {
        MAX_SCORE
    }
}

/// The `q` quantile of sorted values, linearly interpolated between closest ranks
/// (the usual "type 7" definition).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * q;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

#[cfg(test)]
#[path = "anomaly_tests.rs"]
mod tests;
