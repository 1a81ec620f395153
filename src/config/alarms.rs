//! Alarm rules declared in the config file, on their tag:
//!
//! ```toml
//! [[tenants.devices.tags]]
//! name = "supply_temp"
//! address = "…"
//! alarms = [
//!   { name = "hot", type = "high", setpoint = 80, deadband = 2, on_delay_ms = 5000, severity = "high" },
//!   { name = "link", type = "comm_loss", severity = "medium" },
//! ]
//! ```
//!
//! `type` is `high_high`, `high`, `low`, `low_low` (with `setpoint`, `deadband`),
//! `rate_of_change` (`max_per_second`), `digital` (`state`, default true),
//! `bad_quality` (`reasons`, any Bad when empty), `comm_loss`, `stale` (`after_ms`) or
//! `anomaly` (`method` = `zscore`, `iqr` or `moving_average`; `window` in samples,
//! default 60; `threshold`, default 3 standard deviations for `zscore` and 1.5 IQRs
//! for `iqr`, and for `moving_average` a deviation in the tag's units, required).

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::alarms::{DetectorSpec, LimitKind, Method, RuleKind, RuleSpec, Severity};
use crate::domain::QualityReason;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmConfig {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setpoint: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadband: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<QualityReason>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default = "medium")]
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub on_delay_ms: i64,
    #[serde(default)]
    pub off_delay_ms: i64,
}

fn medium() -> Severity {
    Severity::Medium
}
fn yes() -> bool {
    true
}

const KINDS: &str = "high_high, high, low, low_low, rate_of_change, digital, bad_quality, \
                     comm_loss, stale or anomaly";
/// The window of an anomaly rule that names none.
const DEFAULT_WINDOW: u32 = 60;

impl AlarmConfig {
    /// The entry that declares `spec` (the export of a stored rule):
    /// `to_spec(from_spec(s)) == s`.
    pub fn from_spec(spec: &RuleSpec) -> Self {
        let mut a = AlarmConfig {
            name: Spanned::new(0..0, spec.name.clone()),
            kind: Spanned::new(0..0, spec.kind.name().to_string()),
            setpoint: None,
            deadband: None,
            max_per_second: None,
            state: None,
            reasons: None,
            after_ms: None,
            method: None,
            window: None,
            threshold: None,
            severity: spec.severity,
            message: spec.message.clone(),
            enabled: spec.enabled,
            on_delay_ms: i64::try_from(spec.on_delay_ms).unwrap_or(i64::MAX),
            off_delay_ms: i64::try_from(spec.off_delay_ms).unwrap_or(i64::MAX),
        };
        match &spec.kind {
            RuleKind::Limit {
                setpoint, deadband, ..
            } => {
                a.setpoint = Some(*setpoint);
                a.deadband = Some(*deadband);
            }
            RuleKind::RateOfChange { max_per_second } => a.max_per_second = Some(*max_per_second),
            RuleKind::Digital { state } => a.state = Some(*state),
            RuleKind::Quality { reasons } => {
                // `comm_loss` is the quality rule of exactly [comm_lost].
                if spec.kind.name() == "bad_quality" && !reasons.is_empty() {
                    a.reasons = Some(reasons.clone());
                }
            }
            RuleKind::Stale { after_ms } => {
                a.after_ms = Some(i64::try_from(*after_ms).unwrap_or(i64::MAX));
            }
            RuleKind::Anomaly(d) => {
                a.method = Some(d.method);
                a.window = Some(i64::from(d.window));
                a.threshold = Some(d.threshold);
            }
        }
        a
    }

    /// The rule this entry declares, or what is wrong with it (field first). The
    /// rule's own checks ([`RuleSpec::check`]) come on top.
    pub fn to_spec(&self) -> Result<RuleSpec, String> {
        let kind = self.kind.get_ref().as_str();
        let limit = LimitKind::ALL.into_iter().find(|l| l.as_str() == kind);
        let allowed: &[&str] = match (limit, kind) {
            (Some(_), _) => &["setpoint", "deadband"],
            (None, "rate_of_change") => &["max_per_second"],
            (None, "digital") => &["state"],
            (None, "bad_quality") => &["reasons"],
            (None, "comm_loss") => &[],
            (None, "stale") => &["after_ms"],
            (None, "anomaly") => &["method", "window", "threshold"],
            (None, other) => {
                return Err(format!(
                    "type: unknown alarm type `{other}` (expected {KINDS})"
                ));
            }
        };
        let given = [
            ("setpoint", self.setpoint.is_some()),
            ("deadband", self.deadband.is_some()),
            ("max_per_second", self.max_per_second.is_some()),
            ("state", self.state.is_some()),
            ("reasons", self.reasons.is_some()),
            ("after_ms", self.after_ms.is_some()),
            ("method", self.method.is_some()),
            ("window", self.window.is_some()),
            ("threshold", self.threshold.is_some()),
        ];
        if let Some((field, _)) = given.iter().find(|(f, set)| *set && !allowed.contains(f)) {
            return Err(format!("{field}: does not apply to a `{kind}` alarm"));
        }
        let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        let missing = |field: &str| format!("{field}: {article} `{kind}` alarm needs one");
        let kind = match limit {
            Some(limit) => RuleKind::Limit {
                limit,
                setpoint: self.setpoint.ok_or_else(|| missing("setpoint"))?,
                deadband: self.deadband.unwrap_or(0.0),
            },
            None => match kind {
                "rate_of_change" => RuleKind::RateOfChange {
                    max_per_second: self
                        .max_per_second
                        .ok_or_else(|| missing("max_per_second"))?,
                },
                "digital" => RuleKind::Digital {
                    state: self.state.unwrap_or(true),
                },
                "bad_quality" => RuleKind::Quality {
                    reasons: self.reasons.clone().unwrap_or_default(),
                },
                "comm_loss" => RuleKind::Quality {
                    reasons: vec![QualityReason::CommLost],
                },
                "anomaly" => RuleKind::Anomaly(self.detector().map_err(&missing)?),
                _ => {
                    let after = self.after_ms.ok_or_else(|| missing("after_ms"))?;
                    RuleKind::Stale {
                        after_ms: u64::try_from(after)
                            .map_err(|_| format!("after_ms: must be > 0, not {after}"))?,
                    }
                }
            },
        };
        let delay = |field: &str, v: i64| {
            u64::try_from(v).map_err(|_| format!("{field}: a delay cannot be negative ({v})"))
        };
        Ok(RuleSpec {
            name: self.name.get_ref().clone(),
            kind,
            severity: self.severity,
            message: self.message.clone(),
            enabled: self.enabled,
            on_delay_ms: delay("on_delay_ms", self.on_delay_ms)?,
            off_delay_ms: delay("off_delay_ms", self.off_delay_ms)?,
        })
    }

    /// The detector of an `anomaly` entry (its range checks are the rule's), or the
    /// field it lacks.
    fn detector(&self) -> Result<DetectorSpec, &'static str> {
        let method = self.method.ok_or("method")?;
        let threshold = match (self.threshold, method) {
            (Some(t), _) => t,
            (None, Method::ZScore) => 3.0,
            (None, Method::Iqr) => 1.5,
            (None, Method::MovingAverage) => return Err("threshold"),
        };
        let window = match self.window {
            None => DEFAULT_WINDOW,
            // Out of range (negative too) is the rule check's to name.
            Some(w) => u32::try_from(w).unwrap_or(0),
        };
        Ok(DetectorSpec {
            method,
            window,
            threshold,
        })
    }
}
