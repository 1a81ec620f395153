//! Alarms (ISA-18.2): rules on tags ([`rule`]), the evaluation of their conditions
//! ([`condition`], with the delays of [`delay`] and the limits of [`limit`]), the
//! state machine of each rule's alarm instance ([`state`]), and the [`engine`] that
//! holds them for one tenant. Anomaly rules judge values with the streaming detectors
//! of [`anomaly`]. The tenant's alert-stream actor owns the engine: it is
//! the only writer of alarm state.

pub mod anomaly;
pub mod condition;
pub mod delay;
pub mod engine;
pub mod limit;
pub mod rule;
pub mod state;

pub use anomaly::{Anomaly, Detection, Detector, DetectorError, DetectorSpec, Method};
pub use condition::Check;
pub use engine::{AlarmEvent, AlarmView, Engine, EngineError, StoredAlarm, TagInfo};
pub use limit::LimitKind;
pub use rule::{MessageContext, Rule, RuleError, RuleKind, RuleSpec, Severity, check_tag_rules};
pub use state::{AlarmState, Command, Condition, StateError, Transition};
