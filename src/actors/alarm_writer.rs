//! The alert stream's recorder: a task that writes alarm transitions (and anomaly
//! detections) to the store in the order the alert stream produced them, as many per transaction as have queued
//! up, so that evaluation never waits for the store (an alarm flood costs one
//! transaction per write, not one per sample batch).
//!
//! Transitions caused by the process are handed over and forgotten: while the store is
//! unreachable they stay queued (at most [`MAX_PENDING`]; the oldest beyond are dropped
//! and counted) and are retried. An operator's transition comes with an
//! acknowledgement channel: it is answered once the transition is recorded, and on a
//! failure it is answered with the error and dropped (the alert stream then does not
//! apply it), while the process's transitions around it stay queued.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::alarms::{AlarmEvent, Anomaly};
use crate::domain::TenantId;
use crate::storage::Store;
use crate::telemetry::names;

/// Transitions and detections kept while the store is unreachable.
pub const MAX_PENDING: usize = 100_000;
/// Most transitions and detections written in one transaction.
const MAX_PER_WRITE: usize = 10_000;
/// Wait before retrying after a failed write.
const RETRY: Duration = Duration::from_millis(250);

/// One hand-over: transitions, and for an operator's command (or a flush) where to
/// say whether they were recorded.
pub struct Job {
    pub events: Vec<AlarmEvent>,
    pub anomalies: Vec<Anomaly>,
    pub ack: Option<oneshot::Sender<Result<(), String>>>,
}

impl Job {
    fn len(&self) -> usize {
        self.events.len() + self.anomalies.len()
    }
}

/// The sending side, held by the alert stream.
pub struct AlarmWriter {
    tx: mpsc::UnboundedSender<Job>,
    task: tokio::task::JoinHandle<()>,
}

impl AlarmWriter {
    pub fn start(store: Arc<dyn Store>, tenant: TenantId, tenant_name: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(store, tenant, tenant_name, rx));
        AlarmWriter { tx, task }
    }

    /// Queues the process's transitions and detections.
    pub fn submit(&self, events: Vec<AlarmEvent>, anomalies: Vec<Anomaly>) {
        if !events.is_empty() || !anomalies.is_empty() {
            // The task ends only when this sender is dropped.
            let _ = self.tx.send(Job {
                events,
                anomalies,
                ack: None,
            });
        }
    }

    /// Records `events` after everything queued before them and says whether that
    /// worked; with no events, waits until everything queued is recorded (or failed).
    pub async fn record(&self, events: Vec<AlarmEvent>) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job {
                events,
                anomalies: Vec::new(),
                ack: Some(ack),
            })
            .map_err(|_| "the alarm recorder stopped".to_string())?;
        done.await
            .unwrap_or_else(|_| Err("the alarm recorder stopped".into()))
    }

    /// Stops taking transitions and waits (at most `within`) for the queue to be
    /// written.
    pub async fn close(self, within: Duration) {
        drop(self.tx);
        let _ = tokio::time::timeout(within, self.task).await;
    }
}

async fn run(
    store: Arc<dyn Store>,
    tenant: TenantId,
    name: String,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut open = true;
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(job) => queue.push_back(job),
                None => return,
            }
        }
        while open {
            match rx.try_recv() {
                Ok(job) => queue.push_back(job),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        // Take jobs up to the size of one write (at least one whole job).
        let mut take = 0;
        let mut n = 0;
        for job in &queue {
            if take > 0 && n + job.len() > MAX_PER_WRITE {
                break;
            }
            n += job.len();
            take += 1;
        }
        let jobs = || queue.iter().take(take);
        let events: Vec<AlarmEvent> = jobs().flat_map(|j| j.events.iter().cloned()).collect();
        let anomalies: Vec<Anomaly> = jobs().flat_map(|j| j.anomalies.iter().cloned()).collect();
        match store.record_alarms(tenant, &events, &anomalies).await {
            Ok(()) => {
                for job in queue.drain(..take) {
                    if let Some(ack) = job.ack {
                        let _ = ack.send(Ok(()));
                    }
                }
            }
            Err(e) => {
                metrics::counter!(names::ALARM_STORE_ERRORS, "tenant" => name.clone()).increment(1);
                tracing::warn!(tenant = %name, queued = queue.len(), error = %e,
                    "alarm transitions not recorded yet");
                // Operators' commands fail now; the process's transitions wait.
                let mut kept = VecDeque::with_capacity(queue.len());
                for job in queue.drain(..) {
                    match job.ack {
                        Some(ack) => {
                            let _ = ack.send(Err(e.to_string()));
                        }
                        None => kept.push_back(job),
                    }
                }
                queue = kept;
                let mut queued: usize = queue.iter().map(Job::len).sum();
                while queued > MAX_PENDING {
                    let Some(old) = queue.pop_front() else { break };
                    queued -= old.len();
                    metrics::counter!(names::ALARM_EVENTS_DROPPED, "tenant" => name.clone())
                        .increment(old.events.len() as u64);
                    metrics::counter!(names::ANOMALIES_DROPPED, "tenant" => name.clone())
                        .increment(old.anomalies.len() as u64);
                }
                if !open && queue.is_empty() {
                    return;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
        if !open && queue.is_empty() {
            return;
        }
    }
}
