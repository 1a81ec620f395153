//! What the clients measured: per operation a latency histogram (µs, 3 significant
//! digits, up to an hour), its errors by kind, and the same for the current
//! interval. Nothing is counted during the warm-up but the errors, apart.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[derive(Default)]
struct Op {
    whole: Option<Histogram<u64>>,
    interval: Option<Histogram<u64>>,
    errors: u64,
    /// Successes ever recorded in the window, for the progress line's rates.
    count: u64,
}

fn histogram() -> Histogram<u64> {
    // 1 µs … 1 h at 3 significant digits: the bounds are valid constants.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

#[derive(Default)]
struct Inner {
    ops: BTreeMap<&'static str, Op>,
    errors: BTreeMap<String, u64>,
    warmup_errors: BTreeMap<String, u64>,
    counters: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
    measuring: AtomicBool,
}

/// One operation's figures over an interval or the whole window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Figures {
    fn of(h: &Histogram<u64>) -> Figures {
        let ms = |us: u64| us as f64 / 1000.0;
        Figures {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }

    pub fn json(&self, secs: f64) -> Value {
        json!({
            "count": self.count,
            "per_sec": round(self.count as f64 / secs.max(1e-9), 1),
            "latency_ms": {
                "p50": round(self.p50_ms, 3),
                "p95": round(self.p95_ms, 3),
                "p99": round(self.p99_ms, 3),
                "max": round(self.max_ms, 3),
                "mean": round(self.mean_ms, 3),
            },
        })
    }
}

pub fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panicking client task cannot leave the maps half-written: take them.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }

    /// Starts (or stops) the measured window.
    pub fn set_measuring(&self, on: bool) {
        self.measuring.store(on, Ordering::Relaxed);
    }

    /// A successful `op` that took `latency`.
    pub fn ok(&self, op: &'static str, latency: Duration) {
        if !self.measuring() {
            return;
        }
        let us = (latency.as_micros() as u64).max(1);
        let mut inner = self.lock();
        let o = inner.ops.entry(op).or_default();
        o.whole.get_or_insert_with(histogram).saturating_record(us);
        o.interval
            .get_or_insert_with(histogram)
            .saturating_record(us);
        o.count += 1;
    }

    /// A failed `op`, by kind (`timeout`, `http_503`, `graphql_RATE_LIMITED` …).
    pub fn err(&self, op: &'static str, kind: &str) {
        let mut inner = self.lock();
        let key = format!("{op}: {kind}");
        if self.measuring() {
            inner.ops.entry(op).or_default().errors += 1;
            *inner.errors.entry(key).or_default() += 1;
        } else {
            *inner.warmup_errors.entry(key).or_default() += 1;
        }
    }

    /// Adds to a named count (messages published, reconnects …) in the window.
    pub fn add(&self, counter: &'static str, n: u64) {
        if self.measuring() {
            *self.lock().counters.entry(counter).or_default() += n;
        }
    }

    /// Per operation: successes so far and errors so far (for the progress line).
    pub fn totals(&self) -> Vec<(&'static str, u64, u64)> {
        self.lock()
            .ops
            .iter()
            .map(|(k, o)| (*k, o.count, o.errors))
            .collect()
    }

    /// The figures of the interval that ends now, per operation; starts the next.
    pub fn take_interval(&self) -> Vec<(&'static str, Figures)> {
        let mut inner = self.lock();
        inner
            .ops
            .iter_mut()
            .filter_map(|(k, o)| o.interval.take().map(|h| (*k, Figures::of(&h))))
            .collect()
    }

    /// The p99 of the current interval so far, per operation.
    pub fn interval_p99(&self) -> Vec<(&'static str, f64)> {
        self.lock()
            .ops
            .iter()
            .filter_map(|(k, o)| {
                o.interval
                    .as_ref()
                    .map(|h| (*k, h.value_at_quantile(0.99) as f64 / 1000.0))
            })
            .collect()
    }

    /// The whole window: operations, errors by kind, counters.
    pub fn summary(&self, secs: f64) -> (Value, Value, Value, Value) {
        let inner = self.lock();
        let ops: serde_json::Map<String, Value> = inner
            .ops
            .iter()
            .map(|(k, o)| {
                let mut v = o
                    .whole
                    .as_ref()
                    .map_or_else(Figures::default, Figures::of)
                    .json(secs);
                v["errors"] = json!(o.errors);
                (k.to_string(), v)
            })
            .collect();
        let errors = json!(inner.errors);
        let warmup = json!(inner.warmup_errors);
        let counters = json!(inner.counters);
        (Value::Object(ops), errors, warmup, counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_window_is_measured_and_quantiles_are_of_it() {
        let r = Recorder::default();
        r.ok("q", Duration::from_millis(500));
        r.err("q", "timeout");
        r.set_measuring(true);
        for ms in 1..=100 {
            r.ok("q", Duration::from_millis(ms));
        }
        r.err("q", "http_503");
        r.err("q", "http_503");
        let (ops, errors, warmup, _) = r.summary(10.0);
        assert_eq!(ops["q"]["count"], 100);
        assert_eq!(ops["q"]["errors"], 2);
        assert_eq!(ops["q"]["per_sec"], 10.0);
        let p50 = ops["q"]["latency_ms"]["p50"].as_f64().expect("p50");
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        let max = ops["q"]["latency_ms"]["max"].as_f64().expect("max");
        assert!((99.9..=100.1).contains(&max), "{max}");
        assert_eq!(errors["q: http_503"], 2);
        assert_eq!(warmup["q: timeout"], 1);
        let interval = r.take_interval();
        assert_eq!(interval[0].1.count, 100);
        assert!(
            r.take_interval().is_empty(),
            "the next interval starts empty"
        );
    }
}
