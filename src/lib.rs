//! ThermaCore: a SCADA control server.
//!
//! # Layout
//! - [`config`]: typed TOML configuration with environment overrides, validated at start-up.
//! - [`domain`]: plain data types: ids, values, qualities, samples, tags, devices, units.
//! - [`actors`]: the supervised actor tree (root, tenants, devices, cache, alert
//!   stream, live hub, historian) and its restart policy.
//! - [`analytics`]: statistics, correlation and alarm-system metrics over the store.
//! - [`drivers`]: the `Driver` trait and one folder per protocol (`sim` …).
//! - [`manage`]: live configuration: changes planned against the store, written in
//!   one transaction and applied to the running actors; import, export, connection
//!   tests.
//! - [`secrets`]: the device-secret key, sealing and the `Secret` / `Sealed` types.
//! - [`storage`]: the `Store` trait with SQLite and PostgreSQL implementations.
//! - [`telemetry`]: tracing set-up and the metric name catalogue.

pub mod actors;
pub mod alarms;
pub mod analytics;
pub mod api;
pub mod app;
pub mod config;
pub mod demo;
pub mod domain;
pub mod drivers;
pub mod manage;
pub mod secrets;
pub mod storage;
pub mod telemetry;
