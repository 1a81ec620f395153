//! The alert stream of one tenant: every sample passes through it. Alarm rules and
//! anomaly detectors plug in here (a later issue); today it counts what it evaluates
//! in `thermacore_alert_samples_evaluated_total`.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::domain::SampleBatch;
use crate::telemetry::names;

/// Messages of the alert stream actor.
pub enum AlertMsg {
    /// New samples to evaluate against the tenant's rules.
    Batch(Arc<SampleBatch>),
}

/// The alert stream actor; its state is the tenant's name (the metric label).
pub struct AlertStreamActor;

impl Actor for AlertStreamActor {
    type Msg = AlertMsg;
    type State = String;
    type Arguments = String;

    async fn pre_start(
        &self,
        _me: ActorRef<AlertMsg>,
        tenant: String,
    ) -> Result<String, ActorProcessingErr> {
        Ok(tenant)
    }

    async fn handle(
        &self,
        _me: ActorRef<AlertMsg>,
        msg: AlertMsg,
        tenant: &mut String,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AlertMsg::Batch(batch) => {
                metrics::counter!(names::ALERT_SAMPLES, "tenant" => tenant.clone())
                    .increment(batch.len() as u64);
            }
        }
        Ok(())
    }
}
