//! Bulk reads: the polled nodes (`mode=poll`, `subscribe = false`, or nodes the
//! server would not monitor) read per sampling interval in calls no larger than the
//! server's MaxNodesPerRead, and the attribute reads that writes and imports need.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opcua::types::{
    AttributeId, DataValue, NodeId, ReadValueId, StatusCode, SubStatusCode, TimestampsToReturn,
};
use tokio::time::Instant;

use super::conn::{Ctx, count_error, lock};
use super::items::index;
use super::value;
use crate::domain::{QualityReason, Timestamp};
use crate::drivers::Error;

impl Ctx {
    /// Reads `reads` in calls of at most MaxNodesPerRead; one value per read, in order.
    pub async fn read_bulk(&self, reads: Vec<ReadValueId>) -> Result<Vec<DataValue>, Error> {
        let mut out = Vec::with_capacity(reads.len());
        let mut at = 0;
        while at < reads.len() {
            let per = lock(&self.limits).per_read.max(1);
            let end = (at + per).min(reads.len());
            match self
                .session
                .read(&reads[at..end], TimestampsToReturn::Both, 0.0)
                .await
            {
                Ok(values) if values.len() == end - at => {
                    out.extend(values);
                    at = end;
                }
                Ok(values) => {
                    count_error("read", StatusCode::BadUnexpectedError);
                    return Err(Error::Protocol(format!(
                        "a read of {} nodes answered {} values",
                        end - at,
                        values.len()
                    )));
                }
                Err(e)
                    if e.status().sub_code() == SubStatusCode::BadTooManyOperations
                        && end - at > 1 =>
                {
                    count_error("read", e.status());
                    let mut l = lock(&self.limits);
                    l.per_read = ((end - at) / 2).max(1);
                    tracing::info!(device = %self.sink.device, per_read = l.per_read, "the server reads fewer nodes per call");
                }
                Err(e) => {
                    count_error("read", e.status());
                    let code = e.status();
                    return Err(match code.sub_code() {
                        SubStatusCode::BadTimeout => Error::Timeout(self.config.request_timeout_ms),
                        SubStatusCode::BadNotConnected
                        | SubStatusCode::BadConnectionClosed
                        | SubStatusCode::BadSessionClosed
                        | SubStatusCode::BadSessionIdInvalid => {
                            Error::Disconnected(format!("read: {e}"))
                        }
                        _ => Error::Protocol(format!("read: {e}")),
                    });
                }
            }
        }
        Ok(out)
    }

    /// One attribute of each node.
    pub async fn read_attribute(
        &self,
        nodes: &[NodeId],
        attribute: AttributeId,
    ) -> Result<Vec<DataValue>, Error> {
        let reads = nodes
            .iter()
            .map(|n| ReadValueId {
                node_id: n.clone(),
                attribute_id: attribute as u32,
                ..Default::default()
            })
            .collect();
        self.read_bulk(reads).await
    }

    /// Reads the polled nodes of one sampling interval once and delivers the samples.
    pub async fn poll_once(&self, handles: &[u32]) {
        if !self.online() {
            return;
        }
        let (live, reads): (Vec<u32>, Vec<ReadValueId>) = {
            let items = self.items.read();
            let bad = lock(&self.bad);
            handles
                .iter()
                .filter(|h| !bad.is_parked(**h))
                .filter_map(|h| {
                    let item = items.get(index(*h)?)?;
                    Some((
                        *h,
                        ReadValueId {
                            node_id: item.node.clone()?,
                            attribute_id: AttributeId::Value as u32,
                            ..Default::default()
                        },
                    ))
                })
                .unzip()
        };
        if reads.is_empty() {
            return;
        }
        let now = Timestamp::now();
        let result = self.read_bulk(reads).await;
        let items = self.items.read();
        let mut out = Vec::with_capacity(live.len());
        let mut parked = Vec::new();
        match result {
            Ok(values) => {
                for (h, dv) in live.iter().zip(values.iter()) {
                    let Some(item) = index(*h).and_then(|i| items.get(i)) else {
                        continue;
                    };
                    let status = dv.status.unwrap_or(StatusCode::Good);
                    if value::is_bad_node(status) {
                        count_error("read", status);
                        parked.push((*h, status));
                        continue;
                    }
                    if status.is_good() {
                        lock(&self.bad).recovered(*h);
                    }
                    out.push(value::sample(&item.tag, dv, now));
                }
            }
            Err(e) => {
                tracing::debug!(device = %self.sink.device, error = %e, "poll failed");
                let reason = match e {
                    Error::Protocol(_) => QualityReason::DeviceError,
                    _ => QualityReason::CommLost,
                };
                for h in &live {
                    if let Some(item) = index(*h).and_then(|i| items.get(i)) {
                        out.push(value::bad(&item.tag, reason, now));
                    }
                }
            }
        }
        drop(items);
        self.park(&parked);
        if !out.is_empty() {
            (self.sink.samples)(out);
        }
    }

    /// Reads every monitored node once and delivers the values: at connect and after
    /// a new session, so that the cache holds the current values (with their source
    /// timestamps) whether or not the server sends initial values promptly.
    pub async fn refresh(&self) {
        let handles: Vec<u32> = lock(&self.monitored).iter().copied().collect();
        for chunk in handles.chunks(10_000) {
            self.poll_once(chunk).await;
        }
    }

    /// Polls every polled node at its interval until the session ends.
    pub async fn poller(self: Arc<Self>) {
        let mut next: HashMap<u64, Instant> = HashMap::new();
        loop {
            let intervals: Vec<u64> = lock(&self.polls).keys().copied().collect();
            if intervals.is_empty() {
                self.poll_changed.notified().await;
                continue;
            }
            let now = Instant::now();
            for i in &intervals {
                next.entry(*i).or_insert(now);
            }
            let (interval, at) = intervals
                .iter()
                .map(|i| (*i, next[i]))
                .min_by_key(|(_, at)| *at)
                .unwrap_or((intervals[0], now));
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = self.poll_changed.notified() => continue,
            }
            let handles = lock(&self.polls)
                .get(&interval)
                .cloned()
                .unwrap_or_default();
            self.poll_once(&handles).await;
            let period = Duration::from_millis(interval);
            let mut due = at + period;
            let now = Instant::now();
            if due <= now {
                // Behind: skip the missed cycles rather than bunching them.
                due = now + period;
            }
            next.insert(interval, due);
        }
    }
}
