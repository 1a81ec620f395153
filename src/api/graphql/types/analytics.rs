//! Analytics types of the API: anomaly detections.

use async_graphql::{Enum, ID, SimpleObject};
use chrono::{DateTime, Utc};

use crate::alarms;
use crate::storage::AnomalyRecord;

/// How a detector judges a value against its rolling window.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AnomalyMethod {
    /// Standard deviations from the window's mean.
    Zscore,
    /// Interquartile ranges beyond the window's quartiles.
    Iqr,
    /// Engineering units from the window's average.
    MovingAverage,
}

impl From<alarms::Method> for AnomalyMethod {
    fn from(m: alarms::Method) -> Self {
        match m {
            alarms::Method::ZScore => AnomalyMethod::Zscore,
            alarms::Method::Iqr => AnomalyMethod::Iqr,
            alarms::Method::MovingAverage => AnomalyMethod::MovingAverage,
        }
    }
}

/// A value an anomaly rule's detector found anomalous.
#[derive(SimpleObject, Clone, Debug)]
pub struct Anomaly {
    pub id: ID,
    pub tag_id: ID,
    /// The anomaly rule's alarm.
    pub alarm_id: ID,
    /// The sample's source time.
    pub at: DateTime<Utc>,
    pub method: AnomalyMethod,
    pub value: f64,
    /// How far from normal, in the method's measure; above the rule's threshold.
    pub score: f64,
    /// `1 − threshold / score`: 0 at the threshold, 0.5 at twice it, nearing 1.
    pub confidence: f64,
    /// The window's mean (ZSCORE), median (IQR) or average (MOVING_AVERAGE).
    pub expected: f64,
    /// The band of normal values when this one came.
    pub lower: f64,
    pub upper: f64,
}

impl From<AnomalyRecord> for Anomaly {
    fn from(r: AnomalyRecord) -> Self {
        let a = r.anomaly;
        let d = a.detection;
        Anomaly {
            id: ID(r.id.to_string()),
            tag_id: ID(a.tag.to_string()),
            alarm_id: ID(a.rule.to_string()),
            at: a.at.to_datetime(),
            method: d.method.into(),
            value: d.value,
            score: d.score,
            confidence: d.confidence,
            expected: d.expected,
            lower: d.lower,
            upper: d.upper,
        }
    }
}

#[derive(SimpleObject)]
pub struct AnomalyPage {
    pub anomalies: Vec<Anomaly>,
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
}
