//! On- and off-delays of a rule's condition: a raw condition (what the last sample
//! says) becomes the reported one only after it held for the delay, so a value that
//! crosses for a moment raises nothing and one that returns for a moment clears
//! nothing. Every condition kind shares it.

use super::Condition;
use crate::domain::Timestamp;

#[derive(Debug, Clone)]
pub struct Delay {
    on_ms: u64,
    off_ms: u64,
    /// What the last evaluation said.
    raw: Condition,
    /// What was last reported.
    out: Condition,
    /// Since when `raw` differs from `out`.
    pending_since: Option<Timestamp>,
}

impl Delay {
    /// Starts at `initial` (reported and raw), e.g. the condition restored from the
    /// store.
    pub fn new(on_ms: u64, off_ms: u64, initial: Condition) -> Self {
        Delay {
            on_ms,
            off_ms,
            raw: initial,
            out: initial,
            pending_since: None,
        }
    }

    pub fn raw(&self) -> Condition {
        self.raw
    }

    /// The condition as last reported.
    pub fn condition(&self) -> Condition {
        self.out
    }

    /// A new raw condition at `at`: the reported condition, when it changes.
    pub fn set(&mut self, raw: Condition, at: Timestamp) -> Option<Condition> {
        self.raw = raw;
        self.settle(at)
    }

    /// The clock at `now`: a delay may have run out.
    pub fn tick(&mut self, now: Timestamp) -> Option<Condition> {
        self.settle(now)
    }

    /// When a pending change will be reported if nothing else happens.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.pending_since
            .map(|since| Timestamp(since.0.saturating_add(self.delay_us())))
    }

    fn delay_us(&self) -> i64 {
        let ms = match self.raw {
            Condition::Active => self.on_ms,
            Condition::Clear => self.off_ms,
        };
        i64::try_from(ms).unwrap_or(i64::MAX / 1000) * 1000
    }

    fn settle(&mut self, now: Timestamp) -> Option<Condition> {
        if self.raw == self.out {
            self.pending_since = None;
            return None;
        }
        let since = *self.pending_since.get_or_insert(now);
        if now.0.saturating_sub(since.0) >= self.delay_us() {
            self.out = self.raw;
            self.pending_since = None;
            Some(self.out)
        } else {
            None
        }
    }
}
