//! The alert stream with a real store: rules evaluated on sample batches, transitions
//! recorded and restored, the single-writer guarantee under concurrent triggers, and
//! anomaly rules' detections.

#[path = "alarms/anomaly.rs"]
mod anomaly;
#[path = "alarms/api.rs"]
mod api;
mod common;
#[path = "alarms/stream.rs"]
mod stream;
