//! Alarm types of the API: states and severities, the alarm (one per rule), its
//! transitions, pages, and the counts by severity in `system`.

use std::cmp::Reverse;

use async_graphql::{Enum, ID, SimpleObject};
use chrono::{DateTime, Utc};

use crate::actors::TenantShared;
use crate::alarms::{self, AlarmState as State, AlarmView};
use crate::domain::Timestamp;
use crate::storage::AlarmEventRecord;

/// Where an alarm is (ISA-18.2).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AlarmState {
    /// Condition clear, nothing to acknowledge.
    Normal,
    /// Active, not acknowledged.
    Unacked,
    /// Active and acknowledged.
    Acked,
    /// Returned to normal before anyone acknowledged it.
    RtnUnacked,
    /// Hidden by an operator until `shelvedUntil`.
    Shelved,
    /// Suppressed by design (rule disabled, device out of service).
    Suppressed,
}

impl From<&State> for AlarmState {
    fn from(s: &State) -> Self {
        match s {
            State::Normal => AlarmState::Normal,
            State::Unacked => AlarmState::Unacked,
            State::Acked => AlarmState::Acked,
            State::RtnUnacked => AlarmState::RtnUnacked,
            State::Shelved { .. } => AlarmState::Shelved,
            State::Suppressed { .. } => AlarmState::Suppressed,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl From<alarms::Severity> for Severity {
    fn from(s: alarms::Severity) -> Self {
        match s {
            alarms::Severity::Info => Severity::Info,
            alarms::Severity::Low => Severity::Low,
            alarms::Severity::Medium => Severity::Medium,
            alarms::Severity::High => Severity::High,
            alarms::Severity::Critical => Severity::Critical,
        }
    }
}

/// The reason and end of a shelving, or the reason of a suppression.
fn reason_of(s: &State) -> (Option<String>, Option<DateTime<Utc>>) {
    match s {
        State::Shelved { until, reason } => (Some(reason.clone()), Some(until.to_datetime())),
        State::Suppressed { reason } => (Some(reason.clone()), None),
        _ => (None, None),
    }
}

/// One rule's alarm (the id is the rule's: one alarm instance per rule).
#[derive(SimpleObject, Clone, Debug)]
pub struct Alarm {
    pub id: ID,
    pub rule_name: String,
    /// high_high, high, low, low_low, rate_of_change, digital, bad_quality, comm_loss,
    /// stale, anomaly.
    pub kind: String,
    pub severity: Severity,
    pub state: AlarmState,
    /// Whether the rule's condition is active (the process is in alarm).
    pub active: bool,
    /// When the state last changed.
    pub since: DateTime<Utc>,
    /// When the alarm last became active.
    pub active_since: Option<DateTime<Utc>>,
    /// The value that last changed the condition.
    pub value: Option<f64>,
    pub message: String,
    pub acked_by: Option<String>,
    /// The shelving's or suppression's reason.
    pub reason: Option<String>,
    pub shelved_until: Option<DateTime<Utc>>,
    pub tag_id: ID,
    pub tag_name: String,
    pub device_id: ID,
    pub unit_id: Option<ID>,
}

impl From<&AlarmView> for Alarm {
    fn from(v: &AlarmView) -> Self {
        let a = &v.alarm;
        let (reason, shelved_until) = reason_of(&a.state);
        Alarm {
            id: ID(v.rule.id.to_string()),
            rule_name: v.rule.spec.name.clone(),
            kind: v.rule.spec.kind.name().to_string(),
            severity: v.rule.spec.severity.into(),
            state: (&a.state).into(),
            active: a.condition == alarms::Condition::Active,
            since: a.since.to_datetime(),
            active_since: a.active_since.map(Timestamp::to_datetime),
            value: a.value,
            message: a.message.clone(),
            acked_by: a.acked_by.clone(),
            reason,
            shelved_until,
            tag_id: ID(v.rule.tag.to_string()),
            tag_name: v.tag.name.clone(),
            device_id: ID(v.tag.device.to_string()),
            unit_id: v.tag.unit.map(|u| ID(u.to_string())),
        }
    }
}

#[derive(SimpleObject)]
pub struct AlarmPage {
    pub alarms: Vec<Alarm>,
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
}

/// One transition of one alarm.
#[derive(SimpleObject, Clone, Debug)]
pub struct AlarmEvent {
    /// The history record's id (null in `alarmEvents`, which streams before the
    /// record's id is known to the subscriber).
    pub id: Option<ID>,
    pub alarm_id: ID,
    pub tag_id: ID,
    pub severity: Severity,
    pub from: AlarmState,
    pub to: AlarmState,
    pub at: DateTime<Utc>,
    pub active: bool,
    pub value: Option<f64>,
    pub message: String,
    /// Who caused it; null when the process or the clock did.
    pub user: Option<String>,
    pub comment: Option<String>,
    pub reason: Option<String>,
    pub shelved_until: Option<DateTime<Utc>>,
}

impl AlarmEvent {
    pub fn new(id: Option<i64>, e: &alarms::AlarmEvent) -> Self {
        let (reason, shelved_until) = reason_of(&e.alarm.state);
        AlarmEvent {
            id: id.map(|i| ID(i.to_string())),
            alarm_id: ID(e.rule.to_string()),
            tag_id: ID(e.tag.to_string()),
            severity: e.severity.into(),
            from: (&e.from).into(),
            to: (&e.alarm.state).into(),
            at: e.alarm.since.to_datetime(),
            active: e.alarm.condition == alarms::Condition::Active,
            value: e.alarm.value,
            message: e.alarm.message.clone(),
            user: e.user.clone(),
            comment: e.comment.clone(),
            reason,
            shelved_until,
        }
    }
}

impl From<AlarmEventRecord> for AlarmEvent {
    fn from(r: AlarmEventRecord) -> Self {
        AlarmEvent::new(Some(r.id), &r.event)
    }
}

#[derive(SimpleObject)]
pub struct AlarmEventPage {
    pub events: Vec<AlarmEvent>,
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
}

#[derive(SimpleObject)]
pub struct AlarmSkip {
    pub id: ID,
    pub reason: String,
}

#[derive(SimpleObject)]
pub struct AcknowledgeResult {
    pub acknowledged: Vec<Alarm>,
    /// Alarms that needed no acknowledgement (already acknowledged, normal, shelved,
    /// suppressed), with why.
    pub skipped: Vec<AlarmSkip>,
}

/// Alarms of one severity.
#[derive(SimpleObject, Clone, Debug, Default)]
pub struct SeverityCount {
    pub severity: Option<Severity>,
    /// In the alarm list: unacknowledged, acknowledged or returned unacknowledged.
    pub annunciated: u64,
    /// Of those, waiting for an acknowledgement.
    pub unacknowledged: u64,
    /// Condition active (whatever the state).
    pub active: u64,
    pub shelved: u64,
    pub suppressed: u64,
}

/// The alarm counts of a tenant by severity (`system.alarms`).
pub fn alarm_counts(t: &TenantShared) -> Vec<SeverityCount> {
    alarms::Severity::ALL
        .iter()
        .map(|&sev| {
            let mut c = SeverityCount {
                severity: Some(sev.into()),
                ..SeverityCount::default()
            };
            for v in t.alarms.iter().filter(|v| v.rule.spec.severity == sev) {
                let s = &v.alarm.state;
                c.annunciated += u64::from(s.is_annunciated());
                c.unacknowledged += u64::from(matches!(s, State::Unacked | State::RtnUnacked));
                c.active += u64::from(v.alarm.condition == alarms::Condition::Active);
                c.shelved += u64::from(matches!(s, State::Shelved { .. }));
                c.suppressed += u64::from(matches!(s, State::Suppressed { .. }));
            }
            c
        })
        .collect()
}

/// The cursor of an alarm in the list's order (severity, newest change, id).
pub(crate) fn cursor_key(a: &Alarm) -> (Reverse<Severity>, Reverse<DateTime<Utc>>, i64) {
    (
        Reverse(a.severity),
        Reverse(a.since),
        a.id.parse().unwrap_or_default(),
    )
}

pub(crate) fn encode_cursor(a: &Alarm) -> String {
    format!(
        "{}:{}:{}",
        a.severity as u8,
        a.since.timestamp_micros(),
        a.id.as_str()
    )
}

pub(crate) fn decode_cursor(c: &str) -> Option<(Reverse<Severity>, Reverse<DateTime<Utc>>, i64)> {
    let mut parts = c.split(':');
    let sev = match parts.next()?.parse::<u8>().ok()? {
        0 => Severity::Info,
        1 => Severity::Low,
        2 => Severity::Medium,
        3 => Severity::High,
        4 => Severity::Critical,
        _ => return None,
    };
    let since = DateTime::from_timestamp_micros(parts.next()?.parse().ok()?)?;
    let id = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then_some((Reverse(sev), Reverse(since), id))
}
