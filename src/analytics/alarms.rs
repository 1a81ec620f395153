//! Alarm-system performance after ISA-18.2 (and EEMUA 191), from the recorded
//! transitions: activations per 10 minutes and the busiest 10 minutes, floods (more
//! than 10 activations in a 10-minute interval), the most frequent alarms, chattering
//! alarms (3 or more activations within a minute) and standing alarms (active for
//! more than 24 hours), and the time each alarm was active.
//!
//! An activation is a transition whose condition is active after one whose condition
//! was clear (or the first one recorded): whatever the state machine did in between
//! (acknowledge, shelve), the process crossed into alarm once.

use std::collections::HashMap;

use crate::alarms::{Condition, Severity};
use crate::domain::{RuleId, TagId, Timestamp};
use crate::storage::AlarmEventRecord;

pub const TEN_MINUTES_US: i64 = 600_000_000;
pub const MINUTE_US: i64 = 60_000_000;
/// ISA-18.2: more than this many activations in 10 minutes is a flood.
pub const FLOOD_ABOVE: u64 = 10;
/// Activations within a minute that make an alarm chattering.
pub const CHATTER_AT: u64 = 3;
/// Active for longer than this at the end of the range: a standing alarm.
pub const STANDING_US: i64 = 24 * 3_600_000_000;
pub const TOP: usize = 10;

/// One alarm's activity in the range.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub rule: RuleId,
    pub tag: TagId,
    pub severity: Severity,
    /// Activation times in `[from, to)`, in order.
    pub activations: Vec<i64>,
    /// Time active within `[from, to)`.
    pub active_us: i64,
    /// Active intervals clipped to the range.
    pub intervals: Vec<(i64, i64)>,
    /// When the activation still active at `to` began.
    pub active_since: Option<i64>,
}

/// Follows each alarm's transitions (oldest first, any time up to `to`; earlier ones
/// tell what was active when the range began).
pub struct Timeline {
    from: i64,
    to: i64,
    alarms: HashMap<RuleId, (Activity, Option<i64>)>,
}

impl Timeline {
    pub fn new(from: Timestamp, to: Timestamp) -> Self {
        Timeline {
            from: from.0,
            to: to.0.max(from.0),
            alarms: HashMap::new(),
        }
    }

    fn close(&mut self, rule: RuleId, until: i64) {
        let (from, to) = (self.from, self.to);
        if let Some((a, open)) = self.alarms.get_mut(&rule)
            && let Some(start) = open.take()
        {
            let (s, e) = (start.max(from), until.min(to));
            if e > s {
                a.active_us += e - s;
                a.intervals.push((s, e));
            }
        }
    }

    pub fn add(&mut self, r: &AlarmEventRecord) {
        let e = &r.event;
        let at = e.alarm.since.0;
        if at >= self.to {
            return;
        }
        let active = e.alarm.condition == Condition::Active;
        let entry = self.alarms.entry(e.rule).or_insert_with(|| {
            (
                Activity {
                    rule: e.rule,
                    tag: e.tag,
                    severity: e.severity,
                    activations: Vec::new(),
                    active_us: 0,
                    intervals: Vec::new(),
                    active_since: None,
                },
                None,
            )
        });
        entry.0.severity = e.severity;
        match (entry.1, active) {
            (None, true) => {
                entry.1 = Some(at);
                if at >= self.from {
                    entry.0.activations.push(at);
                }
            }
            (Some(_), false) => self.close(e.rule, at),
            _ => {}
        }
    }

    /// Every alarm that was active at some point of the range, or activated in it.
    pub fn finish(mut self) -> Vec<Activity> {
        let open: Vec<(RuleId, i64)> = self
            .alarms
            .iter()
            .filter_map(|(r, (_, o))| o.map(|s| (*r, s)))
            .collect();
        for (rule, since) in open {
            self.close(rule, self.to);
            if let Some((a, _)) = self.alarms.get_mut(&rule) {
                a.active_since = Some(since);
            }
        }
        let mut out: Vec<Activity> = self
            .alarms
            .into_values()
            .map(|(a, _)| a)
            .filter(|a| !a.activations.is_empty() || a.active_us > 0)
            .collect();
        out.sort_by_key(|a| a.rule);
        out
    }
}

/// An alarm and how often it activated.
#[derive(Debug, Clone, PartialEq)]
pub struct Frequent {
    pub rule: RuleId,
    pub tag: TagId,
    pub activations: u64,
    /// Most activations within any one minute (chattering: ≥ [`CHATTER_AT`]).
    pub most_in_a_minute: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub rule: RuleId,
    pub tag: TagId,
    pub active_since: Timestamp,
    pub active_us: i64,
}

/// The ISA-18.2 figures of a set of alarms over `[from, to)`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmMetrics {
    pub activations: u64,
    pub by_severity: Vec<(Severity, u64)>,
    /// Average activations per 10 minutes of the range.
    pub per_10_minutes: f64,
    /// Most activations within any 10 minutes.
    pub peak_10_minutes: u64,
    /// 10-minute intervals of the range (from `from`) with more than [`FLOOD_ABOVE`]
    /// activations, and their share of all its intervals.
    pub flood_intervals: u64,
    pub flood_share: f64,
    pub top: Vec<Frequent>,
    pub chattering: Vec<Frequent>,
    pub standing: Vec<Standing>,
    /// Time with at least one of the alarms active.
    pub any_active_us: i64,
}

/// Most items of sorted `times` within any window of `width`.
fn densest(times: &[i64], width: i64) -> u64 {
    let (mut best, mut lo) = (0usize, 0usize);
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= width {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best as u64
}

/// Length of the union of intervals.
pub fn union_us(intervals: &mut [(i64, i64)]) -> i64 {
    intervals.sort_unstable();
    let (mut total, mut cur): (i64, Option<(i64, i64)>) = (0, None);
    for &(s, e) in intervals.iter() {
        cur = match cur {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    total + cur.map_or(0, |(s, e)| e - s)
}

pub fn metrics(activity: &[Activity], from: Timestamp, to: Timestamp) -> AlarmMetrics {
    let range = (to.0 - from.0).max(1);
    let mut all: Vec<i64> = activity
        .iter()
        .flat_map(|a| a.activations.iter().copied())
        .collect();
    all.sort_unstable();
    let intervals = ((range + TEN_MINUTES_US - 1) / TEN_MINUTES_US).max(1);
    let mut per_interval: HashMap<i64, u64> = HashMap::new();
    for t in &all {
        *per_interval
            .entry((t - from.0) / TEN_MINUTES_US)
            .or_default() += 1;
    }
    let flood_intervals = per_interval.values().filter(|n| **n > FLOOD_ABOVE).count() as u64;
    let by_severity = Severity::ALL
        .iter()
        .map(|s| {
            let n = activity
                .iter()
                .filter(|a| a.severity == *s)
                .map(|a| a.activations.len() as u64)
                .sum();
            (*s, n)
        })
        .collect();
    let mut frequent: Vec<Frequent> = activity
        .iter()
        .filter(|a| !a.activations.is_empty())
        .map(|a| Frequent {
            rule: a.rule,
            tag: a.tag,
            activations: a.activations.len() as u64,
            most_in_a_minute: densest(&a.activations, MINUTE_US),
        })
        .collect();
    frequent.sort_by(|a, b| b.activations.cmp(&a.activations).then(a.rule.cmp(&b.rule)));
    let mut chattering: Vec<Frequent> = frequent
        .iter()
        .filter(|f| f.most_in_a_minute >= CHATTER_AT)
        .cloned()
        .collect();
    chattering.sort_by(|a, b| {
        b.most_in_a_minute
            .cmp(&a.most_in_a_minute)
            .then(a.rule.cmp(&b.rule))
    });
    let mut standing: Vec<Standing> = activity
        .iter()
        .filter_map(|a| {
            let since = a.active_since?;
            let age = to.0 - since;
            (age > STANDING_US).then_some(Standing {
                rule: a.rule,
                tag: a.tag,
                active_since: Timestamp(since),
                active_us: age,
            })
        })
        .collect();
    standing.sort_by(|a, b| b.active_us.cmp(&a.active_us).then(a.rule.cmp(&b.rule)));
    let mut spans: Vec<(i64, i64)> = activity.iter().flat_map(|a| a.intervals.clone()).collect();
    frequent.truncate(TOP);
    AlarmMetrics {
        activations: all.len() as u64,
        by_severity,
        per_10_minutes: all.len() as f64 * TEN_MINUTES_US as f64 / range as f64,
        peak_10_minutes: densest(&all, TEN_MINUTES_US),
        flood_intervals,
        flood_share: flood_intervals as f64 / intervals as f64,
        top: frequent,
        chattering,
        standing,
        any_active_us: union_us(&mut spans),
    }
}

#[cfg(test)]
#[path = "alarms_tests.rs"]
mod tests;
