//! Monitored items: grouped into subscriptions by publishing interval, created in
//! calls no larger than the server allows, spread over several subscriptions when a
//! server caps items per subscription, and moved to bulk polls when the server will
//! not monitor them. Notifications come back as one sample batch per message.

use std::collections::BTreeMap;
use std::time::Duration;

use opcua::client::{MonitoredItemMap, OnSubscriptionNotificationCore};
use opcua::types::{
    AttributeId, DataChangeNotification, MonitoredItemCreateRequest, MonitoringMode,
    MonitoringParameters, NotificationMessage, ReadValueId, StatusChangeNotification, StatusCode,
    SubStatusCode, TimestampsToReturn,
};

use super::conn::{Ctx, Reports, Sub, count_error, ctx_gauge, lock};
use super::items::{Items, index};
use super::value;
use crate::domain::Timestamp;
use crate::drivers::{DriverSink, Error};
use crate::telemetry::names;

/// Delivers a subscription's notifications to the device: one batch per message.
pub struct Notifications {
    pub items: Items,
    pub sink: DriverSink,
    pub reports: Reports,
}

impl OnSubscriptionNotificationCore for Notifications {
    fn on_subscription_notification(
        &mut self,
        message: NotificationMessage,
        _monitored_items: MonitoredItemMap<'_>,
    ) {
        let now = Timestamp::now();
        let published = message.publish_time.as_chrono().timestamp_micros();
        let Some(data) = message.notification_data else {
            return;
        };
        let mut out = Vec::new();
        for obj in data {
            if let Some(change) = obj.inner_as::<DataChangeNotification>() {
                let items = self.items.read();
                for n in change.monitored_items.iter().flatten() {
                    if let Some(item) = index(n.client_handle).and_then(|i| items.get(i)) {
                        if let Some(code) = n.value.status.filter(|c| value::is_bad_node(*c)) {
                            self.reports.report(n.client_handle, code);
                        }
                        out.push(value::sample(&item.tag, &n.value, now));
                    }
                }
            } else if let Some(status) = obj.inner_as::<StatusChangeNotification>() {
                tracing::warn!(device = %self.sink.device, status = %status.status, "OPC UA subscription status changed");
            }
        }
        tracing::trace!(device = %self.sink.device, values = out.len(), first = ?out.first(), "OPC UA notification");
        if out.is_empty() {
            return;
        }
        metrics::counter!(names::OPCUA_DATA_CHANGES).increment(out.len() as u64);
        let latency_us = (now.0 - published).max(0);
        metrics::histogram!(names::OPCUA_PUBLISH_LATENCY).record(latency_us as f64 / 1e6);
        (self.sink.samples)(out);
    }
}

/// Codes of a create call that say: this server will not monitor (this), poll it.
fn unsupported(code: StatusCode) -> bool {
    use SubStatusCode as S;
    matches!(
        code.sub_code(),
        S::BadServiceUnsupported
            | S::BadNotSupported
            | S::BadNotImplemented
            | S::BadMonitoredItemFilterUnsupported
            | S::BadFilterNotAllowed
            | S::BadDeadbandFilterInvalid
            | S::BadMonitoringModeInvalid
            | S::BadTooManySubscriptions
    )
}

fn too_many_items(code: StatusCode) -> bool {
    code.sub_code() == SubStatusCode::BadTooManyMonitoredItems
}

impl Ctx {
    /// A subscription at `interval_ms`, its keep-alive near the session keep-alive
    /// and its lifetime long enough to outlive a short reconnect.
    async fn new_subscription(&self, interval_ms: u64) -> Result<Sub, StatusCode> {
        let keep_alive = (self.config.keep_alive_ms / interval_ms.max(1)).clamp(1, 10_000) as u32;
        let lifetime = (keep_alive * 6).max(3);
        let id = self
            .session
            .create_subscription(
                Duration::from_millis(interval_ms),
                lifetime,
                keep_alive,
                0,
                0,
                true,
                Notifications {
                    items: self.items.clone(),
                    sink: self.sink.clone(),
                    reports: self.reports.clone(),
                },
            )
            .await
            .map_err(|e| {
                count_error("create_subscription", e.status());
                e.status()
            })?;
        Ok(Sub {
            id,
            interval_ms,
            items: 0,
            full: false,
        })
    }

    /// Creates monitored items for `handles`. Nodes the server refuses as nodes go to
    /// the bad-node cache, nodes it will not monitor to the polled set. Fails only
    /// when the session does (the caller reconnects).
    pub async fn subscribe(&self, handles: Vec<u32>) -> Result<(), Error> {
        let mut groups: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        {
            let items = self.items.read();
            let monitored = lock(&self.monitored);
            for h in handles {
                if let Some(item) = index(h).and_then(|i| items.get(i))
                    && item.node.is_some()
                    && !monitored.contains(&h)
                {
                    groups.entry(item.sampling_ms.max(1)).or_default().push(h);
                }
            }
        }
        let mut subs = self.subs.lock().await;
        for (interval, pending) in groups {
            self.subscribe_group(&mut subs, interval, pending).await?;
        }
        Ok(())
    }

    /// [`Ctx::subscribe`], then one read of the nodes now monitored: their values at
    /// once, whether or not the server sends initial values promptly.
    pub async fn subscribe_and_read(&self, handles: Vec<u32>) -> Result<(), Error> {
        self.subscribe(handles.clone()).await?;
        let monitored: Vec<u32> = {
            let m = lock(&self.monitored);
            handles.into_iter().filter(|h| m.contains(h)).collect()
        };
        self.poll_once(&monitored).await;
        Ok(())
    }

    async fn subscribe_group(
        &self,
        subs: &mut Vec<Sub>,
        interval: u64,
        mut pending: Vec<u32>,
    ) -> Result<(), Error> {
        let mut chunk_cap = usize::MAX;
        let mut bad = Vec::new();
        let mut fallback = Vec::new();
        while !pending.is_empty() {
            let limits = *lock(&self.limits);
            let fits = |s: &Sub| {
                s.interval_ms == interval
                    && !s.full
                    && limits.per_subscription.is_none_or(|c| s.items < c)
            };
            let at = match subs.iter().position(fits) {
                Some(at) => at,
                None => match self.new_subscription(interval).await {
                    Ok(s) => {
                        subs.push(s);
                        chunk_cap = usize::MAX;
                        subs.len() - 1
                    }
                    Err(code) if unsupported(code) => {
                        tracing::warn!(device = %self.sink.device, status = %code, nodes = pending.len(), "the server refused a subscription; polling these nodes instead");
                        fallback.append(&mut pending);
                        break;
                    }
                    Err(code) => {
                        return Err(Error::Protocol(format!("creating a subscription: {code}")));
                    }
                },
            };
            let room = limits
                .per_subscription
                .map_or(usize::MAX, |c| c.saturating_sub(subs[at].items));
            let n = pending
                .len()
                .min(limits.per_call)
                .min(room)
                .min(chunk_cap)
                .max(1);
            let chunk: Vec<u32> = pending.drain(..n).collect();
            let requests: Vec<MonitoredItemCreateRequest> = {
                let items = self.items.read();
                chunk
                    .iter()
                    .filter_map(|h| {
                        let item = items.get(index(*h)?)?;
                        Some(MonitoredItemCreateRequest {
                            item_to_monitor: ReadValueId {
                                node_id: item.node.clone()?,
                                attribute_id: AttributeId::Value as u32,
                                ..Default::default()
                            },
                            monitoring_mode: MonitoringMode::Reporting,
                            requested_parameters: MonitoringParameters {
                                client_handle: *h,
                                sampling_interval: item.sampling_ms as f64,
                                filter: item.filter(),
                                queue_size: item.queue,
                                discard_oldest: true,
                            },
                        })
                    })
                    .collect()
            };
            let sub_id = subs[at].id;
            match self
                .session
                .create_monitored_items(sub_id, TimestampsToReturn::Both, requests)
                .await
            {
                Ok(results) => {
                    let mut created = Vec::new();
                    let mut refused_for_room = Vec::new();
                    for (h, r) in chunk.iter().zip(results.iter()) {
                        let code = r.result.status_code;
                        if code.is_good() {
                            created.push(*h);
                        } else if too_many_items(code) {
                            refused_for_room.push(*h);
                        } else if value::is_bad_node(code) {
                            count_error("create_monitored_items", code);
                            bad.push((*h, code));
                        } else {
                            count_error("create_monitored_items", code);
                            tracing::info!(device = %self.sink.device, status = %code, "the server will not monitor a node; polling it");
                            fallback.push(*h);
                        }
                    }
                    subs[at].items += created.len();
                    ctx_gauge(&self.sink, names::OPCUA_MONITORED_ITEMS)
                        .increment(created.len() as f64);
                    {
                        let mut bad_nodes = lock(&self.bad);
                        let mut monitored = lock(&self.monitored);
                        for h in &created {
                            bad_nodes.recovered(*h);
                            monitored.insert(*h);
                        }
                    }
                    if !refused_for_room.is_empty() {
                        if subs[at].items == 0 {
                            fallback.extend(refused_for_room);
                            fallback.append(&mut pending);
                        } else {
                            self.full(&mut subs[at], &mut pending, refused_for_room);
                        }
                    }
                }
                Err(e) if too_many_items(e.status()) => {
                    count_error("create_monitored_items", e.status());
                    if chunk.len() > 1 {
                        // The call as a whole would overfill the subscription: try
                        // halves until the subscription's room is found.
                        chunk_cap = chunk.len() / 2;
                        pending.splice(0..0, chunk);
                    } else if subs[at].items == 0 {
                        tracing::warn!(device = %self.sink.device, "the server monitors no item on a new subscription; polling instead");
                        fallback.extend(chunk);
                        fallback.append(&mut pending);
                    } else {
                        self.full(&mut subs[at], &mut pending, chunk);
                        chunk_cap = usize::MAX;
                    }
                }
                Err(e)
                    if e.status().sub_code() == SubStatusCode::BadTooManyOperations
                        && chunk.len() > 1 =>
                {
                    count_error("create_monitored_items", e.status());
                    let mut l = lock(&self.limits);
                    l.per_call = (chunk.len() / 2).max(1);
                    tracing::info!(device = %self.sink.device, per_call = l.per_call, "the server takes fewer monitored items per call");
                    pending.splice(0..0, chunk);
                }
                Err(e) if unsupported(e.status()) => {
                    count_error("create_monitored_items", e.status());
                    tracing::warn!(device = %self.sink.device, status = %e.status(), "the server will not create monitored items; polling instead");
                    fallback.extend(chunk);
                    fallback.append(&mut pending);
                }
                Err(e) => {
                    count_error("create_monitored_items", e.status());
                    self.park(&bad);
                    self.poll(&fallback);
                    return Err(Error::Protocol(format!("creating monitored items: {e}")));
                }
            }
        }
        self.park(&bad);
        self.poll(&fallback);
        Ok(())
    }

    /// `sub` holds all it can: its count is the server's cap; `refused` go first on
    /// the next subscription.
    fn full(&self, sub: &mut Sub, pending: &mut Vec<u32>, refused: Vec<u32>) {
        sub.full = true;
        let mut l = lock(&self.limits);
        let cap = sub.items.max(1);
        if l.per_subscription.is_none_or(|c| cap < c) {
            tracing::info!(device = %self.sink.device, per_subscription = cap, "the server caps monitored items per subscription; spreading items over more subscriptions");
            l.per_subscription = Some(cap);
        }
        pending.splice(0..0, refused);
    }
}
