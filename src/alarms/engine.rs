//! The alarms of one tenant in memory: every rule's check and its alarm instance's
//! state, indexed by tag. Pure and synchronous: the tenant's alert-stream actor owns
//! the one engine of its tenant, feeds it sample batches, clock ticks and operators'
//! commands in the order they arrive, and records the events it returns. One owner,
//! one alarm instance per rule: no interleaving can raise an alarm twice or lose an
//! acknowledgement.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::anomaly::Anomaly;
use super::condition::Check;
use super::rule::{MessageContext, Rule, Severity};
use super::state::{AlarmState, Command, Condition, StateError};
use crate::domain::{DeviceId, QualityReason, RuleId, Sample, TagId, Timestamp, UnitId};

/// What an alarm message and the API need of a rule's tag.
#[derive(Debug, Clone, PartialEq)]
pub struct TagInfo {
    pub name: String,
    pub eng_unit: String,
    pub device: DeviceId,
    pub unit: Option<UnitId>,
}

/// The state of one alarm instance, as stored and restored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlarm {
    pub state: AlarmState,
    /// The rule's condition when the state last changed.
    pub condition: Condition,
    /// When the state last changed.
    pub since: Timestamp,
    /// When the alarm last became active.
    pub active_since: Option<Timestamp>,
    /// The value that last changed the condition.
    pub value: Option<f64>,
    pub message: String,
    /// Who acknowledged the current activation.
    pub acked_by: Option<String>,
}

impl StoredAlarm {
    fn normal(now: Timestamp) -> Self {
        StoredAlarm {
            state: AlarmState::Normal,
            condition: Condition::Clear,
            since: now,
            active_since: None,
            value: None,
            message: String::new(),
            acked_by: None,
        }
    }
}

/// One transition of one alarm, with who caused it (None: the process or the clock).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmEvent {
    pub rule: RuleId,
    pub tag: TagId,
    pub severity: Severity,
    pub from: AlarmState,
    /// The alarm after the transition (`alarm.state` is where it went, `alarm.since`
    /// when).
    pub alarm: StoredAlarm,
    pub user: Option<String>,
    pub comment: Option<String>,
}

/// An alarm as the API shows it.
#[derive(Debug, Clone)]
pub struct AlarmView {
    pub rule: Arc<Rule>,
    pub tag: Arc<TagInfo>,
    pub alarm: StoredAlarm,
}

/// A command the engine cannot carry out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("no alarm {0} in this tenant")]
    NotFound(RuleId),
    #[error(transparent)]
    State(#[from] StateError),
}

struct Instance {
    rule: Arc<Rule>,
    tag: Arc<TagInfo>,
    check: Check,
    alarm: StoredAlarm,
    /// The tag's last numeric value (kept in the tag's first instance only, one write
    /// per sample), for a transition the clock makes (a delay that ran out).
    last: Option<f64>,
}

pub struct Engine {
    /// Sorted by tag, so a tag's rules are one range.
    instances: Vec<Instance>,
    by_tag: HashMap<TagId, (usize, usize)>,
    by_rule: HashMap<RuleId, usize>,
}

const RULE_DISABLED: &str = "rule disabled";
const OUT_OF_SERVICE: &str = "device out of service";

impl Engine {
    /// The engine of `rules` (rules of unknown tags are left out), each alarm at its
    /// `stored` state (Normal when none). A disabled rule, or one whose device is
    /// `out_of_service`, is suppressed; one that is neither any more is unsuppressed.
    /// Those transitions go to `out`.
    pub fn new(
        mut rules: Vec<Rule>,
        tags: &HashMap<TagId, Arc<TagInfo>>,
        mut stored: HashMap<RuleId, StoredAlarm>,
        out_of_service: &HashSet<DeviceId>,
        now: Timestamp,
        out: &mut Vec<AlarmEvent>,
    ) -> Self {
        rules.retain(|r| tags.contains_key(&r.tag));
        rules.sort_by_key(|r| (r.tag, r.id));
        let mut engine = Engine {
            instances: Vec::with_capacity(rules.len()),
            by_tag: HashMap::new(),
            by_rule: HashMap::new(),
        };
        for rule in rules {
            let Some(tag) = tags.get(&rule.tag).cloned() else {
                continue;
            };
            let alarm = stored
                .remove(&rule.id)
                .unwrap_or_else(|| StoredAlarm::normal(now));
            let i = engine.instances.len();
            engine.by_rule.insert(rule.id, i);
            let range = engine.by_tag.entry(rule.tag).or_insert((i, i));
            range.1 = i + 1;
            engine.instances.push(Instance {
                check: Check::new(&rule.spec, alarm.condition, now),
                last: alarm.value,
                rule: Arc::new(rule),
                tag,
                alarm,
            });
        }
        for i in 0..engine.instances.len() {
            let inst = &engine.instances[i];
            let reason = if !inst.rule.spec.enabled {
                Some(RULE_DISABLED)
            } else if out_of_service.contains(&inst.tag.device) {
                Some(OUT_OF_SERVICE)
            } else {
                None
            };
            let command = match reason {
                Some(reason) => Command::Suppress {
                    reason: reason.to_string(),
                },
                None => Command::Unsuppress,
            };
            if let Ok(Some(e)) = engine.plan(i, &command, None, None, now) {
                engine.commit(&e);
                out.push(e);
            }
        }
        engine
    }

    /// Takes a new set of rules (the configuration changed) and returns the rules that
    /// are gone. An alarm whose rule stays keeps its state; one whose rule's settings
    /// are unchanged also keeps its evaluation in progress (delays, anomaly windows).
    /// Suppression follows `out_of_service` and the rules' `enabled` as in
    /// [`Engine::new`]; those transitions go to `out`.
    pub fn reconfigure(
        &mut self,
        rules: Vec<Rule>,
        tags: &HashMap<TagId, Arc<TagInfo>>,
        out_of_service: &HashSet<DeviceId>,
        now: Timestamp,
        out: &mut Vec<AlarmEvent>,
    ) -> Vec<RuleId> {
        let mut old: HashMap<RuleId, Instance> = std::mem::take(&mut self.instances)
            .into_iter()
            .map(|i| (i.rule.id, i))
            .collect();
        let current = old.iter().map(|(id, i)| (*id, i.alarm.clone())).collect();
        let mut next = Engine::new(rules, tags, current, out_of_service, now, out);
        for inst in &mut next.instances {
            if let Some(prev) = old.remove(&inst.rule.id) {
                if prev.rule.tag == inst.rule.tag && prev.rule.spec == inst.rule.spec {
                    inst.check = prev.check;
                    inst.last = prev.last.or(inst.last);
                }
            }
        }
        *self = next;
        old.into_keys().collect()
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Evaluates samples against their tags' rules; transitions go to `out`, the
    /// anomaly rules' detections to `anomalies`.
    pub fn on_samples(
        &mut self,
        samples: &[Sample],
        out: &mut Vec<AlarmEvent>,
        anomalies: &mut Vec<Anomaly>,
    ) {
        for s in samples {
            let Some(&(a, b)) = self.by_tag.get(&s.tag) else {
                continue;
            };
            let value = s.value.as_f64();
            if value.is_some() {
                self.instances[a].last = value;
            }
            for i in a..b {
                let inst = &mut self.instances[i];
                let changed = inst.check.sample(s);
                // A disabled rule's detections are not kept (its alarm is suppressed).
                match inst.check.take_detection() {
                    Some(detection) if inst.rule.spec.enabled => anomalies.push(Anomaly {
                        rule: inst.rule.id,
                        tag: s.tag,
                        at: s.source_time,
                        detection,
                    }),
                    _ => {}
                }
                if let Some(c) = changed {
                    self.follow(i, c, value, s.quality.reason(), s.server_time, out);
                }
            }
        }
    }

    /// The clock at `now`: delays and stale windows that ran out, shelvings that
    /// ended.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<AlarmEvent>) {
        for i in 0..self.instances.len() {
            if let Some(c) = self.instances[i].check.tick(now) {
                // The tag's value lives in its first instance (see `on_samples`).
                let first = self
                    .by_tag
                    .get(&self.instances[i].rule.tag)
                    .map_or(i, |r| r.0);
                let value = self.instances[first].last;
                self.follow(i, c, value, QualityReason::None, now, out);
            }
            if matches!(self.instances[i].alarm.state, AlarmState::Shelved { .. }) {
                if let Ok(Some(e)) = self.plan(i, &Command::Tick, None, None, now) {
                    self.commit(&e);
                    out.push(e);
                }
            }
        }
    }

    /// The earliest time `tick` can change something.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.instances
            .iter()
            .filter_map(|i| {
                let shelf = match &i.alarm.state {
                    AlarmState::Shelved { until, .. } => Some(*until),
                    _ => None,
                };
                match (i.check.deadline(), shelf) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
    }

    /// The event an operator's command on alarm `rule` would cause (None: nothing
    /// changes), without applying it: the caller records it, then [`Engine::commit`]s.
    pub fn command(
        &self,
        rule: RuleId,
        command: &Command,
        user: &str,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Option<AlarmEvent>, EngineError> {
        let &i = self.by_rule.get(&rule).ok_or(EngineError::NotFound(rule))?;
        self.plan(i, command, Some(user.to_string()), comment, now)
    }

    /// Applies an event [`Engine::command`] planned (and the caller recorded).
    pub fn commit(&mut self, event: &AlarmEvent) {
        if let Some(&i) = self.by_rule.get(&event.rule) {
            self.instances[i].alarm = event.alarm.clone();
        }
    }

    pub fn view(&self, rule: RuleId) -> Option<AlarmView> {
        self.by_rule.get(&rule).map(|&i| self.view_of(i))
    }

    pub fn views(&self) -> impl Iterator<Item = AlarmView> + '_ {
        (0..self.instances.len()).map(|i| self.view_of(i))
    }

    fn view_of(&self, i: usize) -> AlarmView {
        let inst = &self.instances[i];
        AlarmView {
            rule: inst.rule.clone(),
            tag: inst.tag.clone(),
            alarm: inst.alarm.clone(),
        }
    }

    /// A new condition of rule `i`'s check: the state follows it.
    fn follow(
        &mut self,
        i: usize,
        c: Condition,
        value: Option<f64>,
        reason: QualityReason,
        at: Timestamp,
        out: &mut Vec<AlarmEvent>,
    ) {
        let inst = &mut self.instances[i];
        let Ok(Some(t)) = inst.alarm.state.apply(&Command::Evaluate(c), c, at) else {
            // Shelved or suppressed: the condition is followed, the state stays.
            inst.alarm.condition = c;
            return;
        };
        let mut alarm = inst.alarm.clone();
        alarm.state = t.to;
        alarm.condition = c;
        alarm.since = at;
        alarm.value = value;
        if c == Condition::Active {
            // A new activation: its message, with the value that raised it. A clear
            // keeps the message of the activation it ends.
            alarm.active_since = Some(at);
            alarm.acked_by = None;
            alarm.message = inst.rule.spec.render(&MessageContext {
                tag: &inst.tag.name,
                eng_unit: &inst.tag.eng_unit,
                value,
                reason,
            });
        }
        let event = AlarmEvent {
            rule: inst.rule.id,
            tag: inst.rule.tag,
            severity: inst.rule.spec.severity,
            from: t.from,
            alarm,
            user: None,
            comment: None,
        };
        inst.alarm = event.alarm.clone();
        out.push(event);
    }

    fn plan(
        &self,
        i: usize,
        command: &Command,
        user: Option<String>,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Option<AlarmEvent>, EngineError> {
        let inst = &self.instances[i];
        let condition = inst.check.condition();
        let Some(t) = inst.alarm.state.apply(command, condition, now)? else {
            return Ok(None);
        };
        let mut alarm = inst.alarm.clone();
        alarm.state = t.to;
        alarm.condition = condition;
        alarm.since = now;
        if *command == Command::Acknowledge {
            alarm.acked_by = user.clone();
        }
        if alarm.state == AlarmState::Unacked && !t.from.is_annunciated() {
            // Shown again while the process is in alarm: a new activation.
            alarm.active_since = Some(now);
            alarm.acked_by = None;
        }
        Ok(Some(AlarmEvent {
            rule: inst.rule.id,
            tag: inst.rule.tag,
            severity: inst.rule.spec.severity,
            from: t.from,
            alarm,
            user,
            comment,
        }))
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
