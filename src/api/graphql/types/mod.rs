//! GraphQL object types and their conversions from domain types: values, history and
//! system figures here, the plant (units, devices, tags) in [`plant`], the security model in [`security`], OPC UA browsing
//! and import in [`opcua`], alarms in [`alarms`], anomalies in [`analytics`].

mod alarms;
mod analytics;
mod config;
mod opcua;
mod plant;
mod security;

pub use alarms::*;
pub use analytics::*;
pub use config::*;
pub use opcua::*;
pub use plant::*;
pub use security::*;

use async_graphql::{Enum, ID, Json, SimpleObject};
use chrono::{DateTime, Utc};

use crate::actors::cache::Latest;
use crate::domain::{self, Quality};

/// Quality of a value.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum QualityLevel {
    Good,
    Uncertain,
    Bad,
}

/// One value of one tag.
#[derive(SimpleObject, Clone, Debug)]
pub struct TagValue {
    pub tag_id: ID,
    /// A number, a boolean or a string.
    pub value: Json<serde_json::Value>,
    pub quality: QualityLevel,
    /// Why the value is not GOOD (comm_lost, stale, device_restarting …); null when GOOD.
    pub quality_reason: Option<String>,
    pub source_time: DateTime<Utc>,
    pub server_time: DateTime<Utc>,
}

impl From<Latest> for TagValue {
    fn from(l: Latest) -> Self {
        let (quality, reason) = match l.quality {
            Quality::Good => (QualityLevel::Good, None),
            Quality::Uncertain(r) => (QualityLevel::Uncertain, Some(r.as_str().to_string())),
            Quality::Bad(r) => (QualityLevel::Bad, Some(r.as_str().to_string())),
        };
        TagValue {
            tag_id: ID(l.tag.to_string()),
            value: Json(l.value.to_json()),
            quality,
            quality_reason: reason,
            source_time: l.source_time.to_datetime(),
            server_time: l.server_time.to_datetime(),
        }
    }
}

impl From<domain::Sample> for TagValue {
    fn from(s: domain::Sample) -> Self {
        Latest {
            tag: s.tag,
            value: s.value,
            quality: s.quality,
            source_time: s.source_time,
            server_time: s.server_time,
        }
        .into()
    }
}

#[derive(SimpleObject)]
pub struct Me {
    pub id: ID,
    pub username: String,
    pub role: UserRole,
    pub tenant: String,
}

/// Aggregates of one bucket of history: of its numeric samples that are not BAD
/// (`count` of them; the aggregates are null when there are none), with the BAD
/// samples counted apart (`bad`), not averaged in.
#[derive(SimpleObject)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub count: i64,
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The earliest and the latest value in the bucket, by source time.
    pub first: Option<f64>,
    pub last: Option<f64>,
    pub bad: i64,
}

impl From<crate::storage::Bucket> for Bucket {
    fn from(b: crate::storage::Bucket) -> Self {
        Bucket {
            start: b.start.to_datetime(),
            count: b.count,
            avg: b.avg(),
            min: b.min(),
            max: b.max(),
            first: b.first(),
            last: b.last(),
            bad: b.bad,
        }
    }
}

/// A stretch of the requested range without any sample.
#[derive(SimpleObject)]
pub struct Gap {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// History of one tag: raw samples, or buckets when `bucketSeconds` was given, and
/// the gaps in it.
#[derive(SimpleObject)]
pub struct TagHistory {
    pub tag_id: ID,
    pub samples: Vec<TagValue>,
    pub buckets: Vec<Bucket>,
    /// Raw: stretches longer than `gapSeconds` without a sample. Buckets: runs of
    /// buckets without a sample.
    pub gaps: Vec<Gap>,
}

#[derive(SimpleObject)]
pub struct ActorInfo {
    pub total: u64,
    pub tenants: u64,
    pub devices: u64,
}

#[derive(SimpleObject)]
pub struct CacheInfo {
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
}

#[derive(SimpleObject)]
pub struct HistorianInfo {
    pub buffered: u64,
    pub written: u64,
    pub dropped: u64,
    pub failed_writes: u64,
}

#[derive(SimpleObject)]
pub struct SystemInfo {
    pub version: String,
    pub uptime_seconds: u64,
    pub store: String,
    pub actors: ActorInfo,
    /// Actor restarts performed by supervisors since start.
    pub restarts: u64,
    /// The caller's tenant's cache.
    pub cache: CacheInfo,
    pub historian: HistorianInfo,
    /// Live subscriptions of the caller's tenant.
    pub live_subscribers: u64,
    /// The caller's tenant's alarms by severity, most severe first.
    pub alarms: Vec<SeverityCount>,
}
