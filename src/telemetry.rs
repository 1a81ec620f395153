//! Tracing and metrics set-up, and the catalogue of every metric name ThermaCore emits.
//! Names start with `thermacore_`; labels stay low-cardinality (tenant, protocol, kind).

mod catalogue;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use catalogue::{Kind, LATENCY_BUCKETS, Metric, catalogue_markdown, family, metric, names};

use crate::config::LogFormat;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
/// Later calls (several servers in one test process) share the first one.
pub fn metrics_handle() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding program);
            // then our handle still renders whatever reached this recorder.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            zero_counters();
            handle
        })
        .clone()
}

fn describe() {
    for m in names::ALL {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// Counters of rare events exist from the start, at 0 (with every value of their
/// label where the values are few and fixed): a dashboard shows 0 rather
/// than no data, and `increase()` in an alert rule counts the first events too
/// (Prometheus takes a series' first sample as its starting point).
fn zero_counters() {
    for m in names::ALL
        .iter()
        .filter(|m| m.kind == Kind::Counter && m.labels.is_empty())
    {
        metrics::counter!(m.name).increment(0);
    }
    for kind in crate::actors::supervision::CHILD_KINDS {
        metrics::counter!(names::ACTOR_RESTARTS, "kind" => kind).increment(0);
        metrics::counter!(names::ACTOR_ESCALATIONS, "kind" => kind).increment(0);
        metrics::counter!(names::ROUTE_DROPPED_BATCHES, "kind" => kind).increment(0);
    }
    for limit in crate::api::limits::LIMITS {
        metrics::counter!(names::RATE_LIMITED, "limit" => limit).increment(0);
    }
    for path in crate::api::PATH_CLASSES {
        for status in ["ok", "4xx", "5xx"] {
            metrics::counter!(names::HTTP_REQUESTS, "path" => path, "status" => status)
                .increment(0);
        }
    }
    for kind in crate::api::graphql::operations::OPERATION_TYPES {
        metrics::counter!(names::GRAPHQL_OPERATIONS, "type" => kind).increment(0);
    }
    for code in ["INTERNAL", "UNAVAILABLE"] {
        metrics::counter!(names::GRAPHQL_ERRORS, "code" => code).increment(0);
    }
    for op in ["create", "update", "delete"] {
        metrics::counter!(names::CONFIG_CHANGES, "op" => op).increment(0);
    }
}

/// Sets up `tracing` with `RUST_LOG` (default `info`) in text or JSON.
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // rodbus warns on every failed request; the Modbus driver counts them in metrics
    // and logs a failing address once, so by default only its errors show. The OPC UA
    // crates log every connection at info (the driver logs what an operator needs),
    // and warn of an empty endpoint list that the driver never uses.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(
            "info,rodbus::client::task=error,rumqttd=warn,opcua_server=warn,opcua_crypto=warn,opcua_core=warn,opcua_client=warn,opcua_client::config=error,dnp3=warn",
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
