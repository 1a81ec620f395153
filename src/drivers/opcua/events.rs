//! What follows a session's events: link events for the device actor, the
//! subscriptions after a new session, parked nodes retried after their grace period
//! or removed from the subscriptions when the server reports them gone.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use opcua::types::StatusCode;
use tokio::sync::mpsc;

use super::conn::{Ctx, Sub, count_error, ctx_gauge, lock};
use super::items::handle;
use super::session::SessionEvent;
use crate::drivers::{Error, LinkEvent};
use crate::telemetry::names;

impl Ctx {
    /// Follows the session's events until it ends: link events for the device
    /// actor, metrics, and after a reconnect the subscriptions checked.
    pub async fn follow(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<SessionEvent>) {
        let retry_ms = self.config.reconnect_min_ms;
        loop {
            let wait = lock(&self.bad).next_due();
            let event = tokio::select! {
                e = events.recv() => e,
                () = async {
                    match wait {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.retry_bad_nodes().await;
                    continue;
                }
                () = self.reports.wake.notified() => {
                    let reported = std::mem::take(&mut *lock(&self.reports.queue));
                    let fresh: Vec<(u32, StatusCode)> = {
                        let bad = lock(&self.bad);
                        reported.into_iter().filter(|(h, _)| !bad.is_parked(*h)).collect()
                    };
                    self.park(&fresh);
                    let gone = std::mem::take(&mut *lock(&self.unmonitor));
                    self.unmonitor(gone).await;
                    continue;
                }
            };
            let Some(event) = event else { return };
            match event {
                SessionEvent::Lost(code) => {
                    self.online.store(false, Ordering::Release);
                    self.gauge(Some("connecting"));
                    tracing::warn!(device = %self.sink.device, status = %code, "OPC UA session lost; reconnecting");
                    (self.sink.link)(LinkEvent::Disconnected {
                        retry_in_ms: retry_ms,
                    });
                }
                SessionEvent::ReconnectFailed(code) => {
                    tracing::debug!(device = %self.sink.device, status = %code, "OPC UA reconnect failed");
                    (self.sink.link)(LinkEvent::ConnectFailed {
                        retry_in_ms: retry_ms,
                    });
                }
                SessionEvent::Reconnected { new_session } => {
                    // async-opcua's publish loop of a new connection waits for a
                    // trigger that the transfer or re-creation sent before the loop
                    // existed: without this it never publishes again.
                    self.session.trigger_publish_now();
                    let outcome = if new_session {
                        "new_session"
                    } else {
                        "reactivated"
                    };
                    metrics::counter!(names::OPCUA_RECONNECTS, "outcome" => outcome).increment(1);
                    tracing::info!(device = %self.sink.device, outcome, "OPC UA session back");
                    if new_session && let Err(e) = self.after_new_session().await {
                        tracing::warn!(device = %self.sink.device, error = %e, "subscriptions not restored");
                    }
                    self.online.store(true, Ordering::Release);
                    if new_session {
                        self.refresh().await;
                    }
                    self.gauge(Some("connected"));
                    (self.sink.link)(LinkEvent::Connected);
                }
                SessionEvent::Ended(code) => {
                    self.online.store(false, Ordering::Release);
                    tracing::debug!(device = %self.sink.device, status = %code, "OPC UA session loop ended");
                    return;
                }
            }
        }
    }

    /// A new session (the server restarted or dropped ours): async-opcua has
    /// transferred or re-created the subscriptions; take their new ids, and start over
    /// when the server's namespaces moved (the items' nodes changed).
    async fn after_new_session(&self) -> Result<(), Error> {
        let changed = self.read_server().await?;
        if changed {
            tracing::warn!(device = %self.sink.device, "the server's namespace array changed: subscriptions re-created");
            self.rebuild().await
        } else {
            self.adopt_library_subscriptions().await;
            Ok(())
        }
    }

    /// Our view of the subscriptions from the client library's state.
    async fn adopt_library_subscriptions(&self) {
        let mut subs = self.subs.lock().await;
        let state = self.session.subscription_state();
        let state = state.lock();
        let ids = state.subscription_ids().unwrap_or_default();
        *subs = ids
            .iter()
            .filter_map(|id| state.get(*id))
            .map(|s| Sub {
                id: s.subscription_id(),
                interval_ms: s.publishing_interval().as_millis() as u64,
                items: s.monitored_items().count(),
                full: false,
            })
            .collect();
    }

    /// Deletes every subscription and creates them again for the current nodes.
    pub async fn rebuild(&self) -> Result<(), Error> {
        let ids: Vec<u32> = {
            let mut subs = self.subs.lock().await;
            let ids = subs.iter().map(|s| s.id).collect();
            subs.clear();
            ids
        };
        if !ids.is_empty() {
            let _ = self.session.delete_subscriptions(&ids).await;
        }
        let old = std::mem::take(&mut *lock(&self.monitored));
        ctx_gauge(&self.sink, names::OPCUA_MONITORED_ITEMS).decrement(old.len() as f64);
        let polled = lock(&self.polled).clone();
        let handles: Vec<u32> = (0..self.items.read().len())
            .map(handle)
            .filter(|h| !polled.contains(h))
            .collect();
        self.subscribe(handles).await
    }

    /// Tries the parked nodes whose grace period is over: subscribed ones are
    /// monitored again, polled ones are read at their next cycle.
    async fn retry_bad_nodes(&self) {
        let due = lock(&self.bad).due(Instant::now());
        if due.is_empty() {
            return;
        }
        ctx_gauge(&self.sink, names::OPCUA_BAD_NODES).decrement(due.len() as f64);
        tracing::debug!(device = %self.sink.device, nodes = due.len(), "retrying parked nodes");
        let polled = lock(&self.polled).clone();
        let subscribe: Vec<u32> = due.into_iter().filter(|h| !polled.contains(h)).collect();
        if subscribe.is_empty() {
            return;
        }
        if let Err(e) = self.subscribe_and_read(subscribe).await {
            tracing::debug!(device = %self.sink.device, error = %e, "retry of parked nodes failed");
        }
    }

    /// Deletes the monitored items of `handles` (nodes parked while monitored).
    async fn unmonitor(&self, handles: Vec<u32>) {
        if handles.is_empty() {
            return;
        }
        let wanted: HashSet<u32> = handles.into_iter().collect();
        let by_sub: Vec<(u32, Vec<u32>)> = {
            let state = self.session.subscription_state().lock();
            state
                .subscription_ids()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|id| {
                    let ids: Vec<u32> = state
                        .get(id)?
                        .monitored_items()
                        .filter(|m| wanted.contains(&m.client_handle()))
                        .map(|m| m.id())
                        .collect();
                    (!ids.is_empty()).then_some((id, ids))
                })
                .collect()
        };
        let mut subs = self.subs.lock().await;
        for (sub, ids) in by_sub {
            if let Err(e) = self.session.delete_monitored_items(sub, &ids).await {
                count_error("delete_monitored_items", e.status());
                continue;
            }
            if let Some(s) = subs.iter_mut().find(|s| s.id == sub) {
                s.items = s.items.saturating_sub(ids.len());
                s.full = false;
            }
        }
        let mut monitored = lock(&self.monitored);
        let before = monitored.len();
        monitored.retain(|h| !wanted.contains(h));
        ctx_gauge(&self.sink, names::OPCUA_MONITORED_ITEMS)
            .decrement((before - monitored.len()) as f64);
    }
}
