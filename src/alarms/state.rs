//! The ISA-18.2 alarm state machine of one rule's alarm instance.
//!
//! The rule's condition (is the process in alarm?) and the operators' commands move
//! it between the states of ISA-18.2 §10 (figure 10.1):
//!
//! | from         | condition active | condition clears | acknowledge |
//! |--------------|------------------|------------------|-------------|
//! | Normal       | Unacked          | –                | refused     |
//! | Unacked      | –                | RtnUnacked       | Acked       |
//! | Acked        | –                | Normal           | refused     |
//! | RtnUnacked   | Unacked          | –                | Normal      |
//!
//! plus Shelved (an operator hides the alarm until a time, with a reason) and
//! Suppressed (by design: the rule is disabled or its device out of service) from any
//! state. While shelved or suppressed the condition is still followed, so leaving
//! either lands in the state the condition calls for: Unacked if the process is in
//! alarm, Normal if not (nothing that happened meanwhile waits to be acknowledged).
//!
//! [`AlarmState::apply`] is pure: it returns the [`Transition`] to record (or `None`
//! when nothing changes) and refuses commands that make no sense in the current
//! state, so whoever owns the state (the tenant's alert stream, one writer) cannot
//! produce a duplicate or a stuck alarm by interleaving.

use crate::domain::Timestamp;

/// Where the alarm is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmState {
    /// The condition is clear and nothing waits for an operator.
    Normal,
    /// Active, not yet acknowledged.
    Unacked,
    /// Active and acknowledged.
    Acked,
    /// Returned to normal before anyone acknowledged it.
    RtnUnacked,
    /// Hidden by an operator until `until`.
    Shelved { until: Timestamp, reason: String },
    /// Suppressed by design (rule disabled, device out of service).
    Suppressed { reason: String },
}

/// What the process says: the rule's condition now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Active,
    Clear,
}

/// What moves the state: the condition, an operator, the clock or the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The condition's new value.
    Evaluate(Condition),
    Acknowledge,
    Shelve {
        until: Timestamp,
        reason: String,
    },
    Unshelve,
    /// The clock passed a shelving's end.
    Tick,
    Suppress {
        reason: String,
    },
    Unsuppress,
}

/// A change of state, to record with who and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: AlarmState,
    pub to: AlarmState,
    pub at: Timestamp,
}

/// An operator's command that does not apply to the alarm as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the alarm is already acknowledged")]
    AlreadyAcknowledged,
    #[error("the alarm is not active and waits for no acknowledgement")]
    NothingToAcknowledge,
    #[error("the alarm is shelved")]
    Shelved,
    #[error("the alarm is suppressed: {0}")]
    Suppressed(String),
    #[error("the alarm is not shelved")]
    NotShelved,
    #[error("a shelving must end in the future")]
    ShelveInPast,
}

impl AlarmState {
    /// The state's name in the store, the API and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            AlarmState::Normal => "normal",
            AlarmState::Unacked => "unacked",
            AlarmState::Acked => "acked",
            AlarmState::RtnUnacked => "rtn_unacked",
            AlarmState::Shelved { .. } => "shelved",
            AlarmState::Suppressed { .. } => "suppressed",
        }
    }

    /// Whether the alarm is in the list operators see (active or waiting for them).
    pub fn is_annunciated(&self) -> bool {
        matches!(
            self,
            AlarmState::Unacked | AlarmState::Acked | AlarmState::RtnUnacked
        )
    }

    /// The state `command` leads to, given the condition as last evaluated
    /// (`condition`, which the caller keeps), at `now`: the transition to record, or
    /// `None` when the state stays.
    pub fn apply(
        &self,
        command: &Command,
        condition: Condition,
        now: Timestamp,
    ) -> Result<Option<Transition>, StateError> {
        use AlarmState::*;
        let to = match (self, command) {
            (_, Command::Evaluate(c)) => self.evaluate(*c),
            (Unacked, Command::Acknowledge) => Some(Acked),
            (RtnUnacked, Command::Acknowledge) => Some(Normal),
            (Acked, Command::Acknowledge) => return Err(StateError::AlreadyAcknowledged),
            (Normal, Command::Acknowledge) => return Err(StateError::NothingToAcknowledge),
            (Shelved { .. }, Command::Acknowledge) => return Err(StateError::Shelved),
            (Suppressed { reason }, Command::Acknowledge | Command::Shelve { .. }) => {
                return Err(StateError::Suppressed(reason.clone()));
            }
            (_, Command::Shelve { until, .. }) if until.0 <= now.0 => {
                return Err(StateError::ShelveInPast);
            }
            (_, Command::Shelve { until, reason }) => Some(Shelved {
                until: *until,
                reason: reason.clone(),
            }),
            (Shelved { .. }, Command::Unshelve) => Some(Self::resume(condition)),
            (_, Command::Unshelve) => return Err(StateError::NotShelved),
            (Shelved { until, .. }, Command::Tick) if until.0 <= now.0 => {
                Some(Self::resume(condition))
            }
            (_, Command::Tick) => None,
            (Suppressed { reason: r }, Command::Suppress { reason }) if r == reason => None,
            (_, Command::Suppress { reason }) => Some(Suppressed {
                reason: reason.clone(),
            }),
            (Suppressed { .. }, Command::Unsuppress) => Some(Self::resume(condition)),
            (_, Command::Unsuppress) => None,
        };
        Ok(to.filter(|to| to != self).map(|to| Transition {
            from: self.clone(),
            to,
            at: now,
        }))
    }

    /// The state a new condition leads to (shelved and suppressed alarms stay).
    fn evaluate(&self, c: Condition) -> Option<AlarmState> {
        use AlarmState::*;
        match (self, c) {
            (Normal | RtnUnacked, Condition::Active) => Some(Unacked),
            (Unacked, Condition::Clear) => Some(RtnUnacked),
            (Acked, Condition::Clear) => Some(Normal),
            _ => None,
        }
    }

    /// Where an alarm lands when it is shown again.
    fn resume(c: Condition) -> AlarmState {
        match c {
            Condition::Active => AlarmState::Unacked,
            Condition::Clear => AlarmState::Normal,
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
