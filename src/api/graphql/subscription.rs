//! Subscription root: live tag values from the tenant's live hub.

use async_graphql::{Context, ID, Subscription};
use futures::Stream;

use super::types::TagValue;
use super::{ApiError, RequestCtx, api, fail, own_tags, session, tenant};
use crate::actors::cache::Lookup;
use crate::api::permissions::FieldAccess;
use crate::domain::{DeviceId, Timestamp};

pub struct SubscriptionRoot;

#[Subscription(guard = "FieldAccess(\"Subscription\")")]
impl SubscriptionRoot {
    /// New values of the given tags and/or of every tag of a device. The current value
    /// of each requested tag comes first. A client that reads slower than values
    /// arrive receives the latest value per tag (conflation) rather than every one.
    async fn tag_values(
        &self,
        ctx: &Context<'_>,
        tag_ids: Option<Vec<ID>>,
        device_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = TagValue> + use<>> {
        let t = tenant(ctx)?;
        let tags = own_tags(ctx, &t, tag_ids.as_deref().unwrap_or_default())?;
        let device = match device_id {
            None => None,
            Some(id) => {
                let id: DeviceId = id
                    .parse()
                    .map_err(|_| fail(ctx, ApiError::NotFound("device")))?;
                if !t.status.contains_key(&id) {
                    return Err(fail(ctx, ApiError::NotFound("device")));
                }
                Some(id)
            }
        };
        if tags.is_empty() && device.is_none() {
            return Err(fail(
                ctx,
                ApiError::BadRequest("give tagIds or deviceId".into()),
            ));
        }
        let a = api(ctx);
        let connection = ctx
            .data_opt::<RequestCtx>()
            .and_then(|r| r.connection_subs.as_ref());
        let slot = a
            .gate
            .open_subscription(
                session(ctx)?,
                connection,
                a.config.api.max_subscriptions_per_connection,
            )
            .map_err(|(limit, max)| {
                metrics::counter!(crate::telemetry::names::QUOTA_REFUSALS, "limit" => limit)
                    .increment(1);
                fail(ctx, ApiError::QuotaExceeded { limit, max })
            })?;
        let sub = t
            .live
            .subscribe(tags.clone(), device, a.config.live.subscriber_queue);
        let now = Timestamp::now();
        for tag in &tags {
            if let Lookup::Value(l) = t.cache.get(*tag, now) {
                sub.offer(l);
            }
        }
        // The slot lives as long as the stream: dropping it frees the quota.
        let stream = futures::stream::unfold((sub, slot), |(sub, slot)| async move {
            let values = sub.recv().await;
            Some((
                futures::stream::iter(values.into_iter().map(TagValue::from)),
                (sub, slot),
            ))
        });
        Ok(futures::StreamExt::flatten(stream))
    }
}
