//! Alarms (ISA-18.2): the state machine one alarm instance follows. Rules, their
//! evaluation in the tenant's alert stream, persistence and the API build on it
//! (issue 8, in steps). [`limit`] is the condition of a limit rule.

pub mod limit;
pub mod state;

pub use limit::{Limit, LimitCheck, LimitError, LimitKind};
pub use state::{AlarmState, Command, Condition, StateError, Transition};
