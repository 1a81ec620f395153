//! Limit rules (high-high, high, low, low-low): a value beyond a setpoint, with a
//! deadband (hysteresis: a high alarm clears only below setpoint − deadband). The
//! on- and off-delays are [`super::delay::Delay`]'s, as for every condition.

use super::Condition;

/// Which side of the setpoint is in alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    HighHigh,
    High,
    Low,
    LowLow,
}

impl LimitKind {
    pub fn is_high(self) -> bool {
        matches!(self, LimitKind::HighHigh | LimitKind::High)
    }

    /// Low-low 0, low 1, high 2, high-high 3.
    pub fn rank(self) -> u8 {
        match self {
            LimitKind::LowLow => 0,
            LimitKind::Low => 1,
            LimitKind::High => 2,
            LimitKind::HighHigh => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::HighHigh => "high_high",
            LimitKind::High => "high",
            LimitKind::Low => "low",
            LimitKind::LowLow => "low_low",
        }
    }

    pub const ALL: [LimitKind; 4] = [
        LimitKind::HighHigh,
        LimitKind::High,
        LimitKind::Low,
        LimitKind::LowLow,
    ];
}

/// The raw condition of a `kind` limit at `setpoint` for `value`, coming from `raw`:
/// beyond the setpoint it is active; it clears only once the value is back past the
/// setpoint by the deadband (hysteresis).
pub(crate) fn limit_raw(
    kind: LimitKind,
    setpoint: f64,
    deadband: f64,
    raw: Condition,
    value: f64,
) -> Condition {
    let (beyond, back) = if kind.is_high() {
        (value > setpoint, value < setpoint - deadband)
    } else {
        (value < setpoint, value > setpoint + deadband)
    };
    match raw {
        Condition::Clear if beyond => Condition::Active,
        Condition::Active if back => Condition::Clear,
        same => same,
    }
}
