//! The alert stream with a real store: rules evaluated on sample batches, transitions
//! recorded and restored, and the single-writer guarantee under concurrent triggers.

#[path = "alarms/api.rs"]
mod api;
mod common;
#[path = "alarms/stream.rs"]
mod stream;
