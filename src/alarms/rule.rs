//! Alarm rules: what makes a tag's alarm active, how severe it is and what it says.
//! A rule belongs to one tag; its alarm instance (one per rule, whatever the
//! concurrency) is identified by the rule's id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::anomaly::{DetectorError, DetectorSpec};
use super::limit::LimitKind;
use crate::domain::{QualityReason, RuleId, TagId, TenantId};

/// How urgent an alarm is; ordered, so `>= minSeverity` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown severity `{s}` (expected critical, high, medium, low or info)")
            })
    }
}

/// What the rule watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RuleKind {
    /// The value beyond a setpoint; clears back past setpoint ∓ deadband.
    Limit {
        limit: LimitKind,
        setpoint: f64,
        deadband: f64,
    },
    /// The value changing faster than `max_per_second` (either direction).
    RateOfChange { max_per_second: f64 },
    /// A digital input in the alarm state (e.g. pump fault = true).
    Digital { state: bool },
    /// The value's quality is Bad, for one of `reasons` (any reason when empty);
    /// `[comm_lost]` is a communication-loss alarm.
    Quality { reasons: Vec<QualityReason> },
    /// No Good or Uncertain update for `after_ms`.
    Stale { after_ms: u64 },
    /// A value the tag's streaming detector finds anomalous.
    Anomaly(DetectorSpec),
}

impl RuleKind {
    /// The name of the kind, as in the config file and the API.
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Limit { limit, .. } => limit.as_str(),
            RuleKind::RateOfChange { .. } => "rate_of_change",
            RuleKind::Digital { .. } => "digital",
            RuleKind::Quality { reasons } if reasons == &[QualityReason::CommLost] => "comm_loss",
            RuleKind::Quality { .. } => "bad_quality",
            RuleKind::Stale { .. } => "stale",
            RuleKind::Anomaly(_) => "anomaly",
        }
    }

    fn default_message(&self) -> &'static str {
        match self {
            RuleKind::Limit { limit, .. } if limit.is_high() => {
                "{tag} {kind}: {value} {eng_unit} above {setpoint}"
            }
            RuleKind::Limit { .. } => "{tag} {kind}: {value} {eng_unit} below {setpoint}",
            RuleKind::RateOfChange { .. } => "{tag} changing faster than {setpoint} per second",
            RuleKind::Digital { .. } => "{tag} is {value}",
            RuleKind::Quality { .. } => "{tag} quality bad: {reason}",
            RuleKind::Stale { .. } => "{tag} not updated for {setpoint} s",
            RuleKind::Anomaly(_) => "{tag} anomalous ({method}): {value} {eng_unit}",
        }
    }

    /// The number `{setpoint}` stands for in a message.
    fn setpoint(&self) -> Option<f64> {
        match self {
            RuleKind::Limit { setpoint, .. } => Some(*setpoint),
            RuleKind::RateOfChange { max_per_second } => Some(*max_per_second),
            RuleKind::Stale { after_ms } => Some(*after_ms as f64 / 1000.0),
            RuleKind::Anomaly(d) => Some(d.threshold),
            RuleKind::Digital { .. } | RuleKind::Quality { .. } => None,
        }
    }
}

/// A rule as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// Unique among the tag's rules.
    pub name: String,
    pub kind: RuleKind,
    pub severity: Severity,
    /// With `{tag}`, `{value}`, `{eng_unit}`, `{setpoint}` (an anomaly rule's
    /// threshold), `{kind}`, `{rule}`, `{severity}`, `{reason}` and `{method}` (an
    /// anomaly rule's); a default per kind when absent.
    pub message: Option<String>,
    /// A disabled rule's alarm is suppressed by design.
    pub enabled: bool,
    pub on_delay_ms: u64,
    pub off_delay_ms: u64,
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: RuleId,
    pub tenant: TenantId,
    pub tag: TagId,
    pub spec: RuleSpec,
}

/// The longest on- or off-delay a rule may have (a day).
pub const MAX_DELAY_MS: u64 = 86_400_000;
/// The longest message template.
pub const MAX_MESSAGE: usize = 500;

/// A rule that cannot work, with the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("name: a rule needs a name")]
    EmptyName,
    #[error("setpoint: must be a finite number, not {0}")]
    Setpoint(f64),
    #[error("deadband: must be a finite number >= 0, not {0}")]
    Deadband(f64),
    #[error("max_per_second: must be a finite number > 0, not {0}")]
    Rate(f64),
    #[error("after_ms: the stale window must be > 0")]
    StaleWindow,
    #[error("{field}: at most {MAX_DELAY_MS} ms, not {value}")]
    Delay { field: &'static str, value: u64 },
    #[error("message: at most {MAX_MESSAGE} characters")]
    Message,
    #[error(
        "setpoint: the {lower_kind} limit `{lower}` ({lower_at}) must be below the {upper_kind} limit `{upper}` ({upper_at})"
    )]
    LimitOrder {
        lower: String,
        lower_kind: &'static str,
        lower_at: f64,
        upper: String,
        upper_kind: &'static str,
        upper_at: f64,
    },
    #[error("name: duplicate rule name `{0}` on the tag")]
    Duplicate(String),
    #[error(transparent)]
    Detector(#[from] DetectorError),
}

impl RuleSpec {
    /// Refuses settings that make no rule.
    pub fn check(&self) -> Result<(), RuleError> {
        if self.name.trim().is_empty() {
            return Err(RuleError::EmptyName);
        }
        match &self.kind {
            RuleKind::Limit {
                setpoint, deadband, ..
            } => {
                if !setpoint.is_finite() {
                    return Err(RuleError::Setpoint(*setpoint));
                }
                if !deadband.is_finite() || *deadband < 0.0 {
                    return Err(RuleError::Deadband(*deadband));
                }
            }
            RuleKind::RateOfChange { max_per_second: r } if !(r.is_finite() && *r > 0.0) => {
                return Err(RuleError::Rate(*r));
            }
            RuleKind::Stale { after_ms: 0 } => return Err(RuleError::StaleWindow),
            RuleKind::Anomaly(d) => d.check()?,
            _ => {}
        }
        for (field, value) in [
            ("on_delay_ms", self.on_delay_ms),
            ("off_delay_ms", self.off_delay_ms),
        ] {
            if value > MAX_DELAY_MS {
                return Err(RuleError::Delay { field, value });
            }
        }
        if self.message.as_ref().is_some_and(|m| m.len() > MAX_MESSAGE) {
            return Err(RuleError::Message);
        }
        Ok(())
    }

    /// The message of the alarm with `ctx` filled in.
    pub fn render(&self, ctx: &MessageContext<'_>) -> String {
        let template = self
            .message
            .as_deref()
            .unwrap_or_else(|| self.kind.default_message());
        let value = ctx.value.map(fmt_number).unwrap_or_else(|| "–".into());
        let setpoint = self.kind.setpoint().map(fmt_number).unwrap_or_default();
        let mut out = String::with_capacity(template.len() + 32);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                out.push_str(&rest[open..]);
                rest = "";
                break;
            };
            let key = &after[..close];
            match key {
                "tag" => out.push_str(ctx.tag),
                "value" => out.push_str(&value),
                "eng_unit" => out.push_str(ctx.eng_unit),
                "setpoint" => out.push_str(&setpoint),
                "kind" => out.push_str(self.kind.name()),
                "rule" => out.push_str(&self.name),
                "severity" => out.push_str(self.severity.as_str()),
                "reason" => out.push_str(ctx.reason.as_str()),
                "method" => {
                    if let RuleKind::Anomaly(d) = &self.kind {
                        out.push_str(d.method.as_str());
                    }
                }
                _ => out.push_str(&rest[open..open + close + 2]),
            }
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        out.trim_end().to_string()
    }
}

/// What a message template can name.
#[derive(Debug, Clone, Copy)]
pub struct MessageContext<'a> {
    pub tag: &'a str,
    pub eng_unit: &'a str,
    pub value: Option<f64>,
    pub reason: QualityReason,
}

fn fmt_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Checks the rules of one tag together: names unique, and the enabled limits in
/// order (every low limit below every high one, low-low at or below low, high at or
/// below high-high).
pub fn check_tag_rules<'a>(rules: impl IntoIterator<Item = &'a RuleSpec>) -> Result<(), RuleError> {
    let rules: Vec<&RuleSpec> = rules.into_iter().collect();
    let mut names = std::collections::HashSet::new();
    for r in &rules {
        r.check()?;
        if !names.insert(r.name.as_str()) {
            return Err(RuleError::Duplicate(r.name.clone()));
        }
    }
    let limits: Vec<(&RuleSpec, LimitKind, f64)> = rules
        .iter()
        .filter(|r| r.enabled)
        .filter_map(|r| match r.kind {
            RuleKind::Limit {
                limit, setpoint, ..
            } => Some((*r, limit, setpoint)),
            _ => None,
        })
        .collect();
    for (a, ka, sa) in &limits {
        for (b, kb, sb) in &limits {
            if ka.rank() >= kb.rank() {
                continue;
            }
            // A limit may equal its own side's outer one (high = high-high); a low
            // and a high limit must leave room between them.
            let below = if ka.is_high() == kb.is_high() {
                sa <= sb
            } else {
                sa < sb
            };
            if !below {
                return Err(RuleError::LimitOrder {
                    lower: a.name.clone(),
                    lower_kind: ka.as_str(),
                    lower_at: *sa,
                    upper: b.name.clone(),
                    upper_kind: kb.as_str(),
                    upper_at: *sb,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "rule_tests.rs"]
mod tests;
