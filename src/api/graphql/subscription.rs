//! Subscription root: live tag values from the tenant's live hub, and device status
//! changes (alarm events are in `alarms.rs`).

use async_graphql::{Context, ID, Subscription};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::types::{DeviceStatus, TagValue};
use super::{ApiError, RequestCtx, api, fail, own_tags, session, tenant};
use crate::actors::cache::Lookup;
use crate::api::permissions::FieldAccess;
use crate::domain::{DeviceId, Timestamp};

/// The subscription root: the fields here and `alarmEvents`.
#[derive(async_graphql::MergedSubscription, Default)]
pub struct SubscriptionRoot(CoreSubscriptions, super::alarms::AlarmSubscriptions);

#[derive(Default)]
pub struct CoreSubscriptions;

#[Subscription(guard = "FieldAccess(\"Subscription\")")]
impl CoreSubscriptions {
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
        let device = own_device(ctx, &t, device_id)?;
        if tags.is_empty() && device.is_none() {
            return Err(fail(
                ctx,
                ApiError::BadRequest("give tagIds or deviceId".into()),
            ));
        }
        let slot = open_slot(ctx)?;
        let sub = t
            .live
            .subscribe(tags.clone(), device, api(ctx).config.live.subscriber_queue);
        let now = Timestamp::now();
        for tag in &tags {
            if let Lookup::Value(l) = t.cache.get(*tag, now) {
                sub.offer(l);
            }
        }
        // The slot lives as long as the stream: dropping it frees the quota.
        let stream = futures::stream::unfold((sub, slot), |(sub, slot)| async move {
            let values = sub.recv().await?;
            Some((
                futures::stream::iter(values.into_iter().map(TagValue::from)),
                (sub, slot),
            ))
        });
        Ok(futures::StreamExt::flatten(stream))
    }

    /// Every change of state (CONNECTING, ONLINE, DEGRADED, OFFLINE, RESTARTING,
    /// DISABLED) or of the last error of one device, or of every device of the tenant
    /// without `deviceId` (devices created later included). The current status comes
    /// first; a subscriber that falls behind gets the current status again instead of
    /// what it missed. A deleted device's last status has `removed: true`; a
    /// subscription to that device then completes.
    async fn device_status(
        &self,
        ctx: &Context<'_>,
        device_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = DeviceStatus> + use<>> {
        let t = tenant(ctx)?;
        let device = own_device(ctx, &t, device_id)?;
        let slot = open_slot(ctx)?;
        let rx = t.status_events.subscribe();
        let current = move |t: &crate::actors::TenantShared| -> Vec<DeviceStatus> {
            let mut all: Vec<DeviceStatus> = t
                .status
                .iter()
                .filter(|e| device.is_none_or(|d| d == *e.key()))
                .map(|e| DeviceStatus::new(*e.key(), e.value().clone()))
                .collect();
            all.sort_by(|a, b| a.device_id.cmp(&b.device_id));
            all
        };
        let first = current(&t);
        let stream = futures::stream::unfold(
            (rx, slot, t, Some(first), false),
            move |(mut rx, slot, t, first, ended)| async move {
                if let Some(first) = first {
                    return Some((first, (rx, slot, t, None, false)));
                }
                if ended {
                    return None;
                }
                loop {
                    match rx.recv().await {
                        Ok(ev) if ev.removed && device.is_none_or(|d| d == ev.device) => {
                            let out = vec![DeviceStatus::last(ev.device, ev.status)];
                            // Following that device only: nothing more will come.
                            return Some((out, (rx, slot, t, None, device.is_some())));
                        }
                        Ok(ev) if device.is_none_or(|d| d == ev.device) => {
                            let out = vec![DeviceStatus::new(ev.device, ev.status)];
                            return Some((out, (rx, slot, t, None, false)));
                        }
                        Ok(_) => {}
                        Err(RecvError::Lagged(n)) => {
                            metrics::counter!(crate::telemetry::names::DEVICE_STATUS_LAGGED)
                                .increment(n);
                            let now = current(&t);
                            // A followed device deleted meanwhile: end.
                            let gone = device.is_some() && now.is_empty();
                            return Some((now, (rx, slot, t, None, gone)));
                        }
                        Err(RecvError::Closed) => return None,
                    }
                }
            },
        );
        Ok(futures::StreamExt::flat_map(stream, futures::stream::iter))
    }
}

/// Parses an optional device id and checks it is a device of the caller's tenant (else
/// NOT_FOUND).
pub(crate) fn own_device(
    ctx: &Context<'_>,
    t: &crate::actors::TenantShared,
    id: Option<ID>,
) -> async_graphql::Result<Option<DeviceId>> {
    let Some(id) = id else { return Ok(None) };
    match id.parse::<DeviceId>() {
        Ok(d) if t.status.contains_key(&d) => Ok(Some(d)),
        _ => Err(fail(ctx, ApiError::NotFound("device"))),
    }
}

/// Takes one of the caller's subscription slots (per user, tenant and connection);
/// the slot is freed when the stream holding it is dropped.
pub(crate) fn open_slot(
    ctx: &Context<'_>,
) -> async_graphql::Result<crate::api::gate::SubscriptionSlot> {
    let a = api(ctx);
    let connection = ctx
        .data_opt::<RequestCtx>()
        .and_then(|r| r.connection_subs.as_ref());
    a.gate
        .open_subscription(
            session(ctx)?,
            connection,
            a.config.api.max_subscriptions_per_connection,
        )
        .map_err(|(limit, max)| {
            metrics::counter!(crate::telemetry::names::QUOTA_REFUSALS, "limit" => limit)
                .increment(1);
            fail(ctx, ApiError::QuotaExceeded { limit, max })
        })
}
