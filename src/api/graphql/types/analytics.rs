//! Analytics types of the API: anomaly detections, statistics, correlation, alarm
//! analytics and unit KPIs.

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

/// Seconds from microseconds, for the API.
fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

/// How trustworthy a tag's history in the range is.
#[derive(SimpleObject, Clone, Debug)]
pub struct DataQuality {
    /// `goodShare × coverage × (1 − staleSeconds / range)`, 0 to 1.
    pub score: f64,
    /// GOOD samples over all samples (1 without samples).
    pub good_share: f64,
    /// The period the gaps are judged against: the one asked for, or the median
    /// interval between the samples (null without two samples).
    pub expected_period_seconds: Option<f64>,
    /// Intervals without a sample longer than twice the period (the range's ends
    /// included), and the time they miss beyond one period.
    pub gaps: u64,
    pub missing_seconds: f64,
    /// `1 − missingSeconds / range`.
    pub coverage: f64,
    /// Time the latest value was older than the tag's staleness limit.
    pub stale_seconds: f64,
    /// Time the latest value was BAD for a lost connection.
    pub comm_lost_seconds: f64,
}

/// Statistics of one tag's samples in a range. The numbers are of the numeric
/// samples that are not BAD (booleans as 0 and 1); the counts of all samples.
#[derive(SimpleObject, Clone, Debug)]
pub struct TagStatistics {
    pub tag_id: ID,
    pub count: u64,
    pub good: u64,
    pub uncertain: u64,
    pub bad: u64,
    /// How many samples the numbers are of.
    pub numeric: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    /// Population standard deviation.
    pub stddev: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// Least-squares trend of value over time, in engineering units per hour.
    pub slope_per_hour: Option<f64>,
    pub quality: DataQuality,
}

impl TagStatistics {
    pub fn new(tag: crate::domain::TagId, s: crate::analytics::stats::TagStatistics) -> Self {
        let q = s.quality;
        TagStatistics {
            tag_id: ID(tag.to_string()),
            count: s.count,
            good: s.good,
            uncertain: s.uncertain,
            bad: s.bad,
            numeric: s.numeric,
            min: s.min,
            max: s.max,
            mean: s.mean,
            stddev: s.stddev,
            p50: s.p50,
            p95: s.p95,
            p99: s.p99,
            slope_per_hour: s.slope_per_hour,
            quality: DataQuality {
                score: q.score,
                good_share: q.good_share,
                expected_period_seconds: q.expected_period_us.map(secs),
                gaps: q.gaps,
                missing_seconds: secs(q.missing_us),
                coverage: q.coverage,
                stale_seconds: secs(q.stale_us),
                comm_lost_seconds: secs(q.comm_lost_us),
            },
        }
    }
}

/// Pearson correlation of tags over their bucket averages.
#[derive(SimpleObject, Clone, Debug)]
pub struct Correlation {
    /// The tags, in the order of the rows and columns.
    pub tag_ids: Vec<ID>,
    /// `coefficients[i][j]`: r of tags i and j over the buckets both have a value in;
    /// null with fewer than 3 such buckets or a constant series.
    pub coefficients: Vec<Vec<Option<f64>>>,
    /// How many buckets each coefficient is of.
    pub common_buckets: Vec<Vec<u64>>,
}

/// Activations of one severity.
#[derive(SimpleObject, Clone, Debug)]
pub struct SeverityActivations {
    pub severity: super::Severity,
    pub count: u64,
}

/// An alarm and how often it activated in the range.
#[derive(SimpleObject, Clone, Debug)]
pub struct FrequentAlarm {
    pub alarm_id: ID,
    pub tag_id: ID,
    pub activations: u64,
    /// Most activations within any one minute (chattering from 3).
    pub most_in_a_minute: u64,
}

/// An alarm active for more than 24 hours at the end of the range.
#[derive(SimpleObject, Clone, Debug)]
pub struct StandingAlarm {
    pub alarm_id: ID,
    pub tag_id: ID,
    pub active_since: DateTime<Utc>,
    pub active_seconds: f64,
}

/// Alarm-system performance over a range, after ISA-18.2.
#[derive(SimpleObject, Clone, Debug)]
pub struct AlarmAnalytics {
    /// Times an alarm's condition became active in the range.
    pub activations: u64,
    pub by_severity: Vec<SeverityActivations>,
    /// Average activations per 10 minutes (ISA-18.2 aims at about 1, at most 2).
    pub per_ten_minutes: f64,
    /// Most activations within any 10 minutes.
    pub peak_ten_minutes: u64,
    /// 10-minute intervals (from `from`) with more than 10 activations: floods.
    pub flood_intervals: u64,
    pub flood_share: f64,
    /// The 10 most frequent alarms.
    pub top: Vec<FrequentAlarm>,
    /// Alarms with 3 or more activations within a minute.
    pub chattering: Vec<FrequentAlarm>,
    /// Alarms active for more than 24 hours at the end of the range.
    pub standing: Vec<StandingAlarm>,
    /// Time with at least one of the alarms active.
    pub time_in_alarm_seconds: f64,
}

impl From<crate::analytics::alarms::AlarmMetrics> for AlarmAnalytics {
    fn from(m: crate::analytics::alarms::AlarmMetrics) -> Self {
        let frequent = |f: crate::analytics::alarms::Frequent| FrequentAlarm {
            alarm_id: ID(f.rule.to_string()),
            tag_id: ID(f.tag.to_string()),
            activations: f.activations,
            most_in_a_minute: f.most_in_a_minute,
        };
        AlarmAnalytics {
            activations: m.activations,
            by_severity: m
                .by_severity
                .into_iter()
                .map(|(s, count)| SeverityActivations {
                    severity: s.into(),
                    count,
                })
                .collect(),
            per_ten_minutes: m.per_10_minutes,
            peak_ten_minutes: m.peak_10_minutes,
            flood_intervals: m.flood_intervals,
            flood_share: m.flood_share,
            top: m.top.into_iter().map(frequent).collect(),
            chattering: m.chattering.into_iter().map(frequent).collect(),
            standing: m
                .standing
                .into_iter()
                .map(|s| StandingAlarm {
                    alarm_id: ID(s.rule.to_string()),
                    tag_id: ID(s.tag.to_string()),
                    active_since: s.active_since.to_datetime(),
                    active_seconds: secs(s.active_us),
                })
                .collect(),
            time_in_alarm_seconds: secs(m.any_active_us),
        }
    }
}

/// How one device of a unit did in the range.
#[derive(SimpleObject, Clone, Debug)]
pub struct DeviceAvailability {
    pub device_id: ID,
    /// Share of the range its tags had a usable value: neither lost to communication
    /// nor stale (the mean over its tags in the unit).
    pub availability: f64,
    pub comm_lost_seconds: f64,
    pub stale_seconds: f64,
}

/// Key figures of a unit over a range.
#[derive(SimpleObject, Clone, Debug)]
pub struct UnitKpis {
    pub unit_id: ID,
    /// Mean availability of the unit's devices (null without devices).
    pub availability: Option<f64>,
    pub devices: Vec<DeviceAvailability>,
    /// Alarm activations on the unit's tags, in all and by severity.
    pub alarm_activations: u64,
    pub alarms_by_severity: Vec<SeverityActivations>,
    /// Time with at least one of the unit's alarms active, and its share of the range.
    pub time_in_alarm_seconds: f64,
    pub time_in_alarm_share: f64,
}
