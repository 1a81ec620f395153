//! The evaluation state of one rule on its tag: fed the tag's samples and the clock,
//! it reports the rule's condition when it changes (after the rule's delays).
//!
//! Which samples count: a limit, rate-of-change, digital or anomaly rule ignores Bad
//! samples (their value is the last known one, not a measurement; the quality rule
//! covers them) and non-numeric values. Delays and staleness run on the server's receive
//! time (device clocks may be off); the rate of change uses the device's source time,
//! which is when the values were measured.

use super::Condition;
use super::anomaly::{Detection, Detector};
use super::delay::Delay;
use super::limit::limit_raw;
use super::rule::{RuleKind, RuleSpec};
use crate::domain::{Quality, QualityReason, Sample, Timestamp};

#[derive(Debug, Clone)]
enum Watch {
    Limit {
        kind: super::LimitKind,
        setpoint: f64,
        deadband: f64,
    },
    Rate {
        max_per_second: f64,
        last: Option<(f64, Timestamp)>,
    },
    Digital {
        state: bool,
    },
    Quality {
        reasons: Vec<QualityReason>,
    },
    Stale {
        after_us: i64,
        last: Timestamp,
    },
    /// Boxed: the detector and its window are large, and every rule's check sits in
    /// the engine's one vector, which the other kinds keep small.
    Anomaly(Box<AnomalyWatch>),
}

#[derive(Debug, Clone)]
struct AnomalyWatch {
    detector: Detector,
    /// The last sample's detection, until the engine takes it.
    found: Option<Detection>,
}

/// One rule's evaluation.
#[derive(Debug, Clone)]
pub struct Check {
    watch: Watch,
    delay: Delay,
}

impl Check {
    /// A check of `spec` starting at `condition` (Clear for a new rule, the stored one
    /// after a restart, so a standing alarm is not raised twice). A stale rule counts
    /// its window from `now`.
    pub fn new(spec: &RuleSpec, condition: Condition, now: Timestamp) -> Self {
        let watch = match &spec.kind {
            RuleKind::Limit {
                limit,
                setpoint,
                deadband,
            } => Watch::Limit {
                kind: *limit,
                setpoint: *setpoint,
                deadband: *deadband,
            },
            RuleKind::RateOfChange { max_per_second } => Watch::Rate {
                max_per_second: *max_per_second,
                last: None,
            },
            RuleKind::Digital { state } => Watch::Digital { state: *state },
            RuleKind::Quality { reasons } => Watch::Quality {
                reasons: reasons.clone(),
            },
            RuleKind::Stale { after_ms } => Watch::Stale {
                after_us: i64::try_from(*after_ms).unwrap_or(i64::MAX / 1000) * 1000,
                last: now,
            },
            RuleKind::Anomaly(d) => Watch::Anomaly(Box::new(AnomalyWatch {
                detector: Detector::new(*d),
                found: None,
            })),
        };
        Check {
            watch,
            delay: Delay::new(spec.on_delay_ms, spec.off_delay_ms, condition),
        }
    }

    /// The condition as last reported.
    pub fn condition(&self) -> Condition {
        self.delay.condition()
    }

    /// A sample of the rule's tag: the condition, when it changes.
    pub fn sample(&mut self, s: &Sample) -> Option<Condition> {
        let at = s.server_time;
        let raw = self.delay.raw();
        let bad = matches!(s.quality, Quality::Bad(_));
        let next = match &mut self.watch {
            Watch::Quality { reasons } => Some(match s.quality {
                Quality::Bad(r) if reasons.is_empty() || reasons.contains(&r) => Condition::Active,
                _ => Condition::Clear,
            }),
            Watch::Stale { last, .. } => {
                if !bad {
                    *last = at;
                    Some(Condition::Clear)
                } else {
                    None
                }
            }
            _ if bad => None,
            Watch::Limit {
                kind,
                setpoint,
                deadband,
            } => s
                .value
                .as_f64()
                .filter(|v| !v.is_nan())
                .map(|v| limit_raw(*kind, *setpoint, *deadband, raw, v)),
            Watch::Digital { state } => s.value.as_f64().filter(|v| !v.is_nan()).map(|v| {
                if (v != 0.0) == *state {
                    Condition::Active
                } else {
                    Condition::Clear
                }
            }),
            Watch::Rate {
                max_per_second,
                last,
            } => {
                let v = s.value.as_f64().filter(|v| v.is_finite());
                let t = s.source_time;
                match (v, *last) {
                    (Some(v), Some((pv, pt))) if t.0 > pt.0 => {
                        *last = Some((v, t));
                        let rate = (v - pv).abs() / ((t.0 - pt.0) as f64 / 1e6);
                        Some(if rate > *max_per_second {
                            Condition::Active
                        } else {
                            Condition::Clear
                        })
                    }
                    (Some(v), None) => {
                        *last = Some((v, t));
                        None
                    }
                    _ => None,
                }
            }
            Watch::Anomaly(w) => s.value.as_f64().filter(|v| v.is_finite()).map(|v| {
                w.found = w.detector.push(v);
                if w.found.is_some() {
                    Condition::Active
                } else {
                    Condition::Clear
                }
            }),
        };
        match next {
            Some(raw) => self.delay.set(raw, at),
            None => self.delay.tick(at),
        }
    }

    /// The detection of the last sample, for an anomaly rule (once).
    pub fn take_detection(&mut self) -> Option<Detection> {
        match &mut self.watch {
            Watch::Anomaly(w) => w.found.take(),
            _ => None,
        }
    }

    /// The clock at `now`: a delay may have run out, a stale window may have passed.
    pub fn tick(&mut self, now: Timestamp) -> Option<Condition> {
        if let Watch::Stale { after_us, last } = &self.watch {
            if now.0.saturating_sub(last.0) >= *after_us {
                return self.delay.set(Condition::Active, now);
            }
        }
        self.delay.tick(now)
    }

    /// When the condition may change without a sample: a pending delay, or a stale
    /// window running out.
    pub fn deadline(&self) -> Option<Timestamp> {
        let stale = match &self.watch {
            Watch::Stale { after_us, last } if self.delay.raw() == Condition::Clear => {
                Some(Timestamp(last.0.saturating_add(*after_us)))
            }
            _ => None,
        };
        match (self.delay.deadline(), stale) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
#[path = "condition_tests.rs"]
mod tests;
