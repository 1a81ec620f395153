//! Analytics in the API: the anomaly rules' detections.

use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};

use super::alarms::first_in;
use super::types::AnomalyPage;
use super::{ApiError, api, fail, own_tags, tenant};
use crate::api::permissions::FieldAccess;
use crate::domain::Timestamp;
use crate::storage::AnomalyFilter;

/// Most detections one page holds.
const MAX_PAGE: i32 = 1000;

/// The cursor of a detection: its time and id, the page order.
fn cursor(at: Timestamp, id: i64) -> String {
    format!("{}:{id}", at.0)
}

fn parse_cursor(c: &str) -> Option<(Timestamp, i64)> {
    let (at, id) = c.split_once(':')?;
    Some((Timestamp(at.parse().ok()?), id.parse().ok()?))
}

#[derive(Default)]
pub struct AnalyticsQueries;

#[Object(guard = "FieldAccess(\"Query\")")]
impl AnalyticsQueries {
    /// What the anomaly rules' detectors found on the given tags at source times in
    /// `[from, to)`, at least `minConfidence` (0 to 1) sure; newest first, `first`
    /// (at most 1000) after the cursor `after`.
    #[allow(clippy::too_many_arguments)]
    async fn anomalies(
        &self,
        ctx: &Context<'_>,
        tag_ids: Vec<ID>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        min_confidence: Option<f64>,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<AnomalyPage> {
        let t = tenant(ctx)?;
        let tags = own_tags(ctx, &t, &tag_ids)?;
        let first = first_in(ctx, first, MAX_PAGE)?;
        let bad = |m: &str| fail(ctx, ApiError::BadRequest(m.into()));
        if from >= to {
            return Err(bad("`from` must be before `to`"));
        }
        if min_confidence.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
            return Err(bad("`minConfidence` must be within 0..=1"));
        }
        let before = match after {
            None => None,
            Some(c) => Some(parse_cursor(&c).ok_or_else(|| bad("`after` is not a cursor"))?),
        };
        let filter = AnomalyFilter {
            tags,
            from: Timestamp::from_datetime(from),
            to: Timestamp::from_datetime(to),
            min_confidence,
        };
        let mut records = api(ctx)
            .store
            .anomalies(t.tenant.id, &filter, before, first as i64 + 1)
            .await
            .map_err(|e| fail(ctx, e))?;
        let has_next_page = records.len() > first;
        records.truncate(first);
        Ok(AnomalyPage {
            end_cursor: records.last().map(|r| cursor(r.anomaly.at, r.id)),
            has_next_page,
            anomalies: records.into_iter().map(Into::into).collect(),
        })
    }
}
