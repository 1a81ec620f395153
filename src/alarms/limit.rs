//! The condition of a limit rule (high-high, high, low, low-low): a value beyond a
//! setpoint, with a deadband (hysteresis: a high alarm clears only below setpoint −
//! deadband) and on- and off-delays (the condition must hold that long before it
//! counts, so a value that crosses for a moment raises nothing). The alert stream
//! feeds it samples and clock ticks; what it reports goes to the alarm's
//! [`super::AlarmState`] as [`Condition`]s.

use super::Condition;
use crate::domain::Timestamp;

/// Which side of the setpoint is in alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    HighHigh,
    High,
    Low,
    LowLow,
}

impl LimitKind {
    fn is_high(self) -> bool {
        matches!(self, LimitKind::HighHigh | LimitKind::High)
    }
}

/// A limit rule's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub kind: LimitKind,
    pub setpoint: f64,
    /// How far back past the setpoint the value must come to clear (≥ 0).
    pub deadband: f64,
    /// How long the value must stay in alarm before the condition is active.
    pub on_delay_ms: u64,
    /// How long it must stay clear before the condition clears.
    pub off_delay_ms: u64,
}

/// Settings that make no limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    #[error("the setpoint must be a finite number, not {0}")]
    Setpoint(f64),
    #[error("the deadband must be a finite number ≥ 0, not {0}")]
    Deadband(f64),
}

/// The evaluation state of one limit on one tag.
#[derive(Debug, Clone)]
pub struct LimitCheck {
    limit: Limit,
    /// Beyond the setpoint (with hysteresis), as the last sample said.
    raw: Condition,
    /// What was last reported.
    out: Condition,
    /// Since when `raw` differs from `out`.
    pending_since: Option<Timestamp>,
}

impl LimitCheck {
    pub fn new(limit: Limit) -> Result<Self, LimitError> {
        if !limit.setpoint.is_finite() {
            return Err(LimitError::Setpoint(limit.setpoint));
        }
        if !limit.deadband.is_finite() || limit.deadband < 0.0 {
            return Err(LimitError::Deadband(limit.deadband));
        }
        Ok(LimitCheck {
            limit,
            raw: Condition::Clear,
            out: Condition::Clear,
            pending_since: None,
        })
    }

    /// The condition as last reported.
    pub fn condition(&self) -> Condition {
        self.out
    }

    /// A sample of the tag at `at`: the condition, when it changes. A value that is
    /// not a number changes nothing (bad values are the quality rule's business).
    pub fn sample(&mut self, value: f64, at: Timestamp) -> Option<Condition> {
        if value.is_nan() {
            return self.settle(at);
        }
        let l = &self.limit;
        let (beyond, back) = if l.kind.is_high() {
            (value > l.setpoint, value < l.setpoint - l.deadband)
        } else {
            (value < l.setpoint, value > l.setpoint + l.deadband)
        };
        self.raw = match self.raw {
            Condition::Clear if beyond => Condition::Active,
            Condition::Active if back => Condition::Clear,
            same => same,
        };
        self.settle(at)
    }

    /// The clock at `now` without a sample: a delay may have run out.
    pub fn tick(&mut self, now: Timestamp) -> Option<Condition> {
        self.settle(now)
    }

    /// When a pending change will be reported if nothing else happens (for the
    /// caller's timer).
    pub fn deadline(&self) -> Option<Timestamp> {
        self.pending_since
            .map(|since| Timestamp(since.0 + self.delay_ms() as i64 * 1000))
    }

    fn delay_ms(&self) -> u64 {
        match self.raw {
            Condition::Active => self.limit.on_delay_ms,
            Condition::Clear => self.limit.off_delay_ms,
        }
    }

    fn settle(&mut self, now: Timestamp) -> Option<Condition> {
        if self.raw == self.out {
            self.pending_since = None;
            return None;
        }
        let since = *self.pending_since.get_or_insert(now);
        if now.0 - since.0 >= self.delay_ms() as i64 * 1000 {
            self.out = self.raw;
            self.pending_since = None;
            Some(self.out)
        } else {
            None
        }
    }
}

#[cfg(test)]
#[path = "limit_tests.rs"]
mod tests;
