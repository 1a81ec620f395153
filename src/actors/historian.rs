//! The historian: batches samples by size and time and bulk-inserts them into the
//! store. Its intake queue lives in a [`HistorianHandle`] outside the actor, so that
//! a sample handed to the historian survives a restart of the actor; while the store
//! is down it buffers up to a bound and retries with backoff, and it counts every
//! sample it could not keep.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::shared::Slot;
use crate::config::HistorianConfig;
use crate::domain::SampleBatch;
use crate::storage::{Store, StoredSample};
use crate::telemetry::names;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Most batches merged into one write when the historian is behind.
const MAX_BATCHES_PER_WRITE: usize = 16;

#[derive(Default)]
struct Queue {
    batches: VecDeque<Arc<SampleBatch>>,
    samples: usize,
    oldest: Option<Instant>,
}

/// Counters of the historian, for `system` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistorianStats {
    /// Samples handed to the historian.
    pub submitted: u64,
    pub buffered: u64,
    pub written: u64,
    pub dropped: u64,
    pub failed_writes: u64,
}

/// The historian's intake and counters, shared by every device actor and by the
/// historian actor's successive lives.
pub struct HistorianHandle {
    config: HistorianConfig,
    queue: Mutex<Queue>,
    /// The chunk of a failed write, written again before anything else.
    retry: Mutex<Option<Vec<StoredSample>>>,
    pub(crate) actor: Slot<HistorianMsg>,
    flush_requested: AtomicBool,
    submitted: AtomicU64,
    /// Samples taken from the queue whose write has not succeeded yet (being written,
    /// or waiting in `retry`).
    unfinished: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    failed_writes: AtomicU64,
}

impl HistorianHandle {
    pub fn new(config: HistorianConfig) -> Self {
        HistorianHandle {
            config,
            queue: Mutex::new(Queue::default()),
            retry: Mutex::new(None),
            actor: Slot::new("historian"),
            flush_requested: AtomicBool::new(false),
            submitted: AtomicU64::new(0),
            unfinished: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed_writes: AtomicU64::new(0),
        }
    }

    /// Hands a batch to the historian. Never blocks on the store: beyond
    /// `max_buffered_samples` the batch is dropped and counted.
    pub fn submit(&self, batch: Arc<SampleBatch>) {
        let n = batch.len();
        if n == 0 {
            return;
        }
        self.submitted.fetch_add(n as u64, Ordering::Relaxed);
        let mut q = lock(&self.queue);
        if q.samples + n > self.config.max_buffered_samples {
            drop(q);
            self.overflow(&batch);
            return;
        }
        q.samples += n;
        q.oldest.get_or_insert_with(Instant::now);
        q.batches.push_back(batch);
        let full = q.samples >= self.config.batch_size;
        drop(q);
        if full && !self.flush_requested.swap(true, Ordering::AcqRel) {
            // Not a batch: if the actor is between lives, its next life flushes on start.
            if let Some(actor) = self.actor.get() {
                let _ = actor.cast(HistorianMsg::Flush);
            }
        }
    }

    /// Where samples go that the buffer cannot hold. Today they are dropped and
    /// counted; this is the seam for the disk spool.
    fn overflow(&self, batch: &SampleBatch) {
        let n = batch.len() as u64;
        self.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(names::HISTORIAN_DROPPED).increment(n);
    }

    pub fn stats(&self) -> HistorianStats {
        let queued = lock(&self.queue).samples as u64;
        HistorianStats {
            submitted: self.submitted.load(Ordering::Relaxed),
            buffered: queued + self.unfinished.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed_writes: self.failed_writes.load(Ordering::Relaxed),
        }
    }

    pub fn actor_alive(&self) -> bool {
        self.actor.get().is_some()
    }

    pub fn export_metrics(&self) {
        metrics::gauge!(names::HISTORIAN_BUFFERED).set(self.stats().buffered as f64);
    }

    /// Takes the next chunk to write: the failed one first, else about `batch_size`
    /// samples from the queue (up to 16 batches when behind), if `all` or a full batch is pending or the
    /// oldest sample has waited `flush_interval`.
    fn next_chunk(&self, all: bool) -> Option<Vec<StoredSample>> {
        if let Some(chunk) = lock(&self.retry).take() {
            return Some(chunk);
        }
        let mut q = lock(&self.queue);
        let waited = q
            .oldest
            .is_some_and(|t| t.elapsed() >= Duration::from_millis(self.config.flush_interval_ms));
        if q.samples == 0 || !(all || waited || q.samples >= self.config.batch_size) {
            return None;
        }
        // Behind schedule, write bigger transactions (up to 16 batches): the per-commit
        // cost is amortised over more rows exactly when throughput matters.
        let target = q.samples.clamp(
            self.config.batch_size,
            self.config.batch_size * MAX_BATCHES_PER_WRITE,
        );
        let mut chunk = Vec::with_capacity(target.min(q.samples));
        while chunk.len() < target {
            let Some(batch) = q.batches.pop_front() else {
                break;
            };
            q.samples -= batch.len();
            chunk.extend(batch.samples.iter().map(|s| StoredSample {
                tenant: batch.tenant,
                sample: s.clone(),
            }));
        }
        q.oldest = if q.samples > 0 {
            Some(Instant::now())
        } else {
            None
        };
        // Under the queue's lock, so that `stats` never misses these samples.
        self.unfinished.store(chunk.len() as u64, Ordering::Relaxed);
        Some(chunk)
    }

    fn keep_for_retry(&self, chunk: Vec<StoredSample>) {
        *lock(&self.retry) = Some(chunk);
    }
}

/// Messages of the historian actor.
pub enum HistorianMsg {
    /// Periodic: write what has waited long enough.
    Tick,
    /// A full batch is pending.
    Flush,
}

pub struct HistorianArgs {
    pub handle: Arc<HistorianHandle>,
    pub store: Arc<dyn Store>,
}

pub struct HistorianState {
    handle: Arc<HistorianHandle>,
    store: Arc<dyn Store>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

pub struct HistorianActor;

impl HistorianActor {
    /// Writes chunks until nothing is due or a write fails (then backs off).
    async fn flush(state: &mut HistorianState, all: bool) {
        if state.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        while let Some(chunk) = state.handle.next_chunk(all) {
            let started = Instant::now();
            match state.store.insert_samples(&chunk).await {
                Ok(_) => {
                    let n = chunk.len() as u64;
                    state.handle.written.fetch_add(n, Ordering::Relaxed);
                    state.handle.unfinished.store(0, Ordering::Relaxed);
                    metrics::counter!(names::HISTORIAN_WRITTEN).increment(n);
                    metrics::histogram!(names::HISTORIAN_WRITE_SECONDS)
                        .record(started.elapsed().as_secs_f64());
                    metrics::gauge!(names::STORE_UP).set(1.0);
                    state.retry_at = None;
                    state.backoff = Duration::from_millis(state.handle.config.retry_initial_ms);
                }
                Err(e) => {
                    state.handle.failed_writes.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(names::HISTORIAN_FAILED_WRITES).increment(1);
                    metrics::gauge!(names::STORE_UP).set(0.0);
                    tracing::warn!(error = %e, samples = chunk.len(), retry_in_ms = state.backoff.as_millis() as u64, "historian write failed; keeping the samples and retrying");
                    state.handle.keep_for_retry(chunk);
                    state.retry_at = Some(Instant::now() + state.backoff);
                    let max = Duration::from_millis(state.handle.config.retry_max_ms);
                    state.backoff = (state.backoff * 2).min(max);
                    return;
                }
            }
        }
    }
}

impl Actor for HistorianActor {
    type Msg = HistorianMsg;
    type State = HistorianState;
    type Arguments = HistorianArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<HistorianMsg>,
        args: HistorianArgs,
    ) -> Result<HistorianState, ActorProcessingErr> {
        let backoff = Duration::from_millis(args.handle.config.retry_initial_ms);
        Ok(HistorianState {
            handle: args.handle,
            store: args.store,
            retry_at: None,
            backoff,
        })
    }

    async fn post_start(
        &self,
        me: ActorRef<HistorianMsg>,
        state: &mut HistorianState,
    ) -> Result<(), ActorProcessingErr> {
        let period = Duration::from_millis((state.handle.config.flush_interval_ms / 2).max(10));
        me.send_interval(period, || HistorianMsg::Tick);
        // Whatever a previous life left behind is written first.
        let _ = me.cast(HistorianMsg::Flush);
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<HistorianMsg>,
        msg: HistorianMsg,
        state: &mut HistorianState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HistorianMsg::Tick => Self::flush(state, false).await,
            HistorianMsg::Flush => {
                state.handle.flush_requested.store(false, Ordering::Release);
                Self::flush(state, false).await;
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _me: ActorRef<HistorianMsg>,
        state: &mut HistorianState,
    ) -> Result<(), ActorProcessingErr> {
        // Graceful shutdown: one last attempt to write everything.
        state.retry_at = None;
        Self::flush(state, true).await;
        let left = state.handle.stats().buffered;
        if left > 0 {
            tracing::error!(
                samples = left,
                "historian stopped with samples it could not write"
            );
        }
        Ok(())
    }
}
