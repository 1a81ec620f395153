//! The alert stream of one tenant: every sample passes through it. Alarm rules and
//! anomaly detectors plug in here (a later issue); today it counts what it evaluates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::domain::SampleBatch;
use crate::telemetry::names;

/// Counters of the alert stream that survive its restarts.
pub struct AlertStats {
    tenant: String,
    evaluated: AtomicU64,
}

impl AlertStats {
    pub fn new(tenant: String) -> Self {
        AlertStats {
            tenant,
            evaluated: AtomicU64::new(0),
        }
    }

    pub fn evaluated(&self) -> u64 {
        self.evaluated.load(Ordering::Relaxed)
    }
}

/// Messages of the alert stream actor.
pub enum AlertMsg {
    /// New samples to evaluate against the tenant's rules.
    Batch(Arc<SampleBatch>),
    /// Samples evaluated so far.
    Evaluated(RpcReplyPort<u64>),
}

pub struct AlertStreamActor;

impl Actor for AlertStreamActor {
    type Msg = AlertMsg;
    type State = Arc<AlertStats>;
    type Arguments = Arc<AlertStats>;

    async fn pre_start(
        &self,
        _me: ActorRef<AlertMsg>,
        stats: Arc<AlertStats>,
    ) -> Result<Arc<AlertStats>, ActorProcessingErr> {
        Ok(stats)
    }

    async fn handle(
        &self,
        _me: ActorRef<AlertMsg>,
        msg: AlertMsg,
        stats: &mut Arc<AlertStats>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AlertMsg::Batch(batch) => {
                let n = batch.len() as u64;
                stats.evaluated.fetch_add(n, Ordering::Relaxed);
                metrics::counter!(names::ALERT_SAMPLES, "tenant" => stats.tenant.clone())
                    .increment(n);
            }
            AlertMsg::Evaluated(reply) => {
                let _ = reply.send(stats.evaluated());
            }
        }
        Ok(())
    }
}
