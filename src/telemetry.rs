//! Tracing and metrics set-up, and the catalogue of every metric name ThermaCore emits.
//! Names start with `thermacore_`; labels stay low-cardinality (tenant, protocol, kind).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::LogFormat;

/// Every metric, with its help text. `describe()` registers them all.
pub mod names {
    pub const ACTOR_RESTARTS: &str = "thermacore_actor_restarts_total";
    pub const ACTOR_ESCALATIONS: &str = "thermacore_actor_escalations_total";
    pub const SAMPLES_INGESTED: &str = "thermacore_samples_ingested_total";
    pub const DEVICE_POLLS: &str = "thermacore_device_polls_total";
    pub const DEVICE_POLL_ERRORS: &str = "thermacore_device_poll_errors_total";
    pub const DEVICE_POLL_SECONDS: &str = "thermacore_device_poll_duration_seconds";
    pub const DEVICE_POLL_LAG: &str = "thermacore_device_poll_lag_seconds";
    pub const DEVICES: &str = "thermacore_devices";
    pub const DEVICE_PLAN_REQUESTS: &str = "thermacore_device_plan_requests";
    pub const DEVICE_WRITES: &str = "thermacore_device_writes_total";
    pub const DEVICE_WRITE_SECONDS: &str = "thermacore_device_write_duration_seconds";
    pub const DEVICE_STATUS_LAGGED: &str = "thermacore_device_status_lagged_total";
    pub const MODBUS_REQUESTS: &str = "thermacore_modbus_requests_total";
    pub const MODBUS_ERRORS: &str = "thermacore_modbus_errors_total";
    pub const MODBUS_REQUEST_SECONDS: &str = "thermacore_modbus_request_duration_seconds";
    pub const MODBUS_LINK_EVENTS: &str = "thermacore_modbus_link_events_total";
    pub const MODBUS_BAD_ADDRESSES: &str = "thermacore_modbus_bad_addresses";
    pub const MODBUS_CHANNELS: &str = "thermacore_modbus_channels";
    pub const MQTT_MESSAGES: &str = "thermacore_mqtt_messages_total";
    pub const MQTT_PARSE_FAILURES: &str = "thermacore_mqtt_parse_failures_total";
    pub const MQTT_RECEIVED_BYTES: &str = "thermacore_mqtt_received_bytes_total";
    pub const MQTT_CONNECTIONS: &str = "thermacore_mqtt_connections";
    pub const MQTT_RECONNECTS: &str = "thermacore_mqtt_reconnects_total";
    pub const MQTT_COMMANDS: &str = "thermacore_mqtt_command_publishes_total";
    pub const MQTT_REBIRTH_REQUESTS: &str = "thermacore_mqtt_rebirth_requests_total";
    pub const MQTT_DISCOVERED_TAGS: &str = "thermacore_mqtt_discovered_tags_total";
    pub const OPCUA_SESSIONS: &str = "thermacore_opcua_sessions";
    pub const OPCUA_RECONNECTS: &str = "thermacore_opcua_reconnects_total";
    pub const OPCUA_MONITORED_ITEMS: &str = "thermacore_opcua_monitored_items";
    pub const OPCUA_POLLED_NODES: &str = "thermacore_opcua_polled_nodes";
    pub const OPCUA_DATA_CHANGES: &str = "thermacore_opcua_data_changes_total";
    pub const OPCUA_PUBLISH_LATENCY: &str = "thermacore_opcua_publish_latency_seconds";
    pub const OPCUA_SERVICE_ERRORS: &str = "thermacore_opcua_service_errors_total";
    pub const OPCUA_BAD_NODES: &str = "thermacore_opcua_bad_nodes";
    pub const DNP3_POLLS: &str = "thermacore_dnp3_polls_total";
    pub const DNP3_REQUEST_SECONDS: &str = "thermacore_dnp3_request_duration_seconds";
    pub const DNP3_UNSOLICITED: &str = "thermacore_dnp3_unsolicited_fragments_total";
    pub const DNP3_EVENTS: &str = "thermacore_dnp3_events_total";
    pub const DNP3_IIN: &str = "thermacore_dnp3_iin_total";
    pub const DNP3_COMMANDS: &str = "thermacore_dnp3_commands_total";
    pub const DNP3_SKIPPED_OBJECTS: &str = "thermacore_dnp3_skipped_objects_total";
    pub const DNP3_LINKS: &str = "thermacore_dnp3_link_changes_total";
    pub const ROUTE_DROPPED_BATCHES: &str = "thermacore_route_dropped_batches_total";
    pub const CACHE_HITS: &str = "thermacore_cache_hits_total";
    pub const CACHE_MISSES: &str = "thermacore_cache_misses_total";
    pub const CACHE_ENTRIES: &str = "thermacore_cache_entries";
    pub const LIVE_SUBSCRIBERS: &str = "thermacore_live_subscribers";
    pub const LIVE_DELIVERED: &str = "thermacore_live_delivered_total";
    pub const LIVE_CONFLATED: &str = "thermacore_live_conflated_total";
    pub const LIVE_DROPPED: &str = "thermacore_live_dropped_total";
    pub const ALERT_SAMPLES: &str = "thermacore_alert_samples_evaluated_total";
    pub const ALARMS: &str = "thermacore_alarms";
    pub const ALARM_TRANSITIONS: &str = "thermacore_alarm_transitions_total";
    pub const ALARM_STORE_ERRORS: &str = "thermacore_alarm_store_errors_total";
    pub const ALARM_EVENTS_DROPPED: &str = "thermacore_alarm_events_dropped_total";
    pub const ALARM_EVENTS_LAGGED: &str = "thermacore_alarm_events_lagged_total";
    pub const ANOMALIES: &str = "thermacore_anomalies_total";
    pub const ANOMALIES_DROPPED: &str = "thermacore_anomalies_dropped_total";
    pub const HISTORIAN_WRITTEN: &str = "thermacore_historian_written_samples_total";
    pub const HISTORIAN_DROPPED: &str = "thermacore_historian_dropped_samples_total";
    pub const HISTORIAN_FAILED_WRITES: &str = "thermacore_historian_failed_writes_total";
    pub const HISTORIAN_BUFFERED: &str = "thermacore_historian_buffered_samples";
    pub const HISTORIAN_WRITE_SECONDS: &str = "thermacore_historian_write_duration_seconds";
    pub const STORE_UP: &str = "thermacore_store_up";
    pub const HTTP_REQUESTS: &str = "thermacore_http_requests_total";
    pub const GRAPHQL_ERRORS: &str = "thermacore_graphql_errors_total";
    pub const AUTH_FAILURES: &str = "thermacore_auth_failures_total";
    pub const RATE_LIMITED: &str = "thermacore_rate_limited_total";
    pub const LOGIN_LOCKOUTS: &str = "thermacore_login_lockouts_total";
    pub const QUOTA_REFUSALS: &str = "thermacore_quota_refusals_total";
    pub const AUDIT_RECORDS: &str = "thermacore_audit_records_total";
    pub const AUDIT_WRITE_FAILURES: &str = "thermacore_audit_write_failures_total";
    pub const TENANT_USAGE: &str = "thermacore_tenant_usage";
    pub const TENANT_QUOTA: &str = "thermacore_tenant_quota";
    pub const RETENTION_DELETED: &str = "thermacore_retention_deleted_total";
    pub const EXPORTS: &str = "thermacore_exports_total";
    pub const EXPORTED_ROWS: &str = "thermacore_exported_rows_total";
    pub const EXPORT_REFUSED: &str = "thermacore_exports_refused_total";

    /// (name, help) of every metric above, for `describe_*` and the docs.
    pub const ALL: &[(&str, &str)] = &[
        (
            ACTOR_RESTARTS,
            "Actors restarted by their supervisor, by kind",
        ),
        (
            ACTOR_ESCALATIONS,
            "Supervisors that gave up on a child (restart intensity exceeded), by kind",
        ),
        (
            SAMPLES_INGESTED,
            "Samples produced by device actors, by tenant and protocol",
        ),
        (DEVICE_POLLS, "Polls performed, by protocol"),
        (
            DEVICE_POLL_ERRORS,
            "Polls that failed, by protocol and kind",
        ),
        (DEVICE_POLL_SECONDS, "Duration of one poll, by protocol"),
        (
            DEVICE_POLL_LAG,
            "How late a poll started against its schedule (poll jitter), by protocol",
        ),
        (
            DEVICES,
            "Devices by tenant, protocol and state (connecting, online, degraded, offline, restarting, disabled)",
        ),
        (
            DEVICE_PLAN_REQUESTS,
            "Protocol requests per poll cycle of every group, summed over devices, by tenant and protocol",
        ),
        (
            DEVICE_WRITES,
            "Writes to tags (commands), by protocol and outcome",
        ),
        (
            DEVICE_WRITE_SECONDS,
            "Duration of one write through its device actor, by protocol",
        ),
        (
            DEVICE_STATUS_LAGGED,
            "Device status changes a slow deviceStatus subscriber missed",
        ),
        (MODBUS_REQUESTS, "Modbus requests sent, by function"),
        (
            MODBUS_ERRORS,
            "Modbus requests that failed, by function and code (exception or timeout, io, bad_response, no_connection)",
        ),
        (
            MODBUS_REQUEST_SECONDS,
            "Duration of one Modbus request, by function",
        ),
        (
            MODBUS_LINK_EVENTS,
            "State changes of Modbus channels reported by rodbus's reconnect machinery, by event",
        ),
        (
            MODBUS_BAD_ADDRESSES,
            "Modbus addresses parked in the bad-address cache, by tenant",
        ),
        (
            MODBUS_CHANNELS,
            "Modbus channels open (shared by the devices behind one gateway)",
        ),
        (
            MQTT_MESSAGES,
            "MQTT messages handed to devices, by outcome (ok, refused: a parse failure, unmatched: no device wanted the topic)",
        ),
        (
            MQTT_PARSE_FAILURES,
            "MQTT messages or values that could not be used, by reason (too_large, malformed_json, wrong_type, bad_protobuf, unknown_alias, seq_gap …)",
        ),
        (
            MQTT_RECEIVED_BYTES,
            "Payload bytes of MQTT messages received",
        ),
        (
            MQTT_CONNECTIONS,
            "MQTT broker connections, by state (connected, disconnected)",
        ),
        (
            MQTT_RECONNECTS,
            "MQTT broker connections lost or refused (each is retried with backoff)",
        ),
        (
            MQTT_COMMANDS,
            "Commands published to MQTT with QoS 1, by outcome (acked, timeout, disconnected)",
        ),
        (
            MQTT_REBIRTH_REQUESTS,
            "Sparkplug B rebirth requests sent to edge nodes, by reason (seq_gap, no_birth)",
        ),
        (
            MQTT_DISCOVERED_TAGS,
            "Tags created from MQTT topic templates and Sparkplug B births",
        ),
        (
            OPCUA_SESSIONS,
            "OPC UA sessions, by tenant and state (connected, connecting)",
        ),
        (
            OPCUA_RECONNECTS,
            "OPC UA sessions lost (each is re-established by the client with backoff), by outcome of the reconnect (reactivated, new_session)",
        ),
        (
            OPCUA_MONITORED_ITEMS,
            "OPC UA monitored items created on servers (subscribed tags), by tenant",
        ),
        (
            OPCUA_POLLED_NODES,
            "OPC UA nodes read by bulk polls instead (mode=poll, or the server would not monitor them), by tenant",
        ),
        (
            OPCUA_DATA_CHANGES,
            "OPC UA data change notifications received (one per value)",
        ),
        (
            OPCUA_PUBLISH_LATENCY,
            "Time from an OPC UA notification's publish time at the server to its receipt",
        ),
        (
            OPCUA_SERVICE_ERRORS,
            "OPC UA service calls or items that failed, by service and status code name",
        ),
        (
            OPCUA_BAD_NODES,
            "OPC UA nodes parked in the bad-node cache (retried after the grace period), by tenant",
        ),
        (
            DNP3_POLLS,
            "DNP3 polls, by class (integrity, class1, class2, class3) and outcome (ok, timeout, rejected, error, offline)",
        ),
        (
            DNP3_REQUEST_SECONDS,
            "Duration of one DNP3 request and its response, by kind (poll, command)",
        ),
        (
            DNP3_UNSOLICITED,
            "Unsolicited response fragments received from DNP3 outstations",
        ),
        (
            DNP3_EVENTS,
            "DNP3 event objects received (polled or unsolicited), by point type",
        ),
        (
            DNP3_IIN,
            "DNP3 responses carrying an IIN bit of note, by bit (device_restart, event_buffer_overflow, need_time, device_trouble, local_control, config_corrupt, no_func_code_support, object_unknown, parameter_error, already_executing)",
        ),
        (
            DNP3_COMMANDS,
            "DNP3 commands (CROB, analog output), by mode (sbo, direct) and outcome (success, the outstation's status, timeout, error)",
        ),
        (
            DNP3_SKIPPED_OBJECTS,
            "DNP3 objects received that no tag maps (octet strings, device attributes, ...), skipped, by object",
        ),
        (
            DNP3_LINKS,
            "DNP3 link state changes reported by the master channel, by state (connected, connect_failed, disconnected)",
        ),
        (
            ROUTE_DROPPED_BATCHES,
            "Sample batches not delivered because the receiving actor was restarting, by kind",
        ),
        (
            CACHE_HITS,
            "Latest-value reads answered with a value, by tenant",
        ),
        (
            CACHE_MISSES,
            "Latest-value reads of a tag without a value yet, by tenant",
        ),
        (CACHE_ENTRIES, "Tags known to the cache, by tenant"),
        (LIVE_SUBSCRIBERS, "Live subscriptions registered, by tenant"),
        (
            LIVE_DELIVERED,
            "Values queued for live subscribers, by tenant",
        ),
        (
            LIVE_CONFLATED,
            "Values replaced by a newer one before a slow subscriber read them, by tenant",
        ),
        (
            LIVE_DROPPED,
            "Values dropped for subscribers that had gone away, by tenant",
        ),
        (
            ALERT_SAMPLES,
            "Samples passed through the alert stream, by tenant",
        ),
        (
            ALARMS,
            "Alarms not in the normal state, by tenant, severity and state (unacked, acked, rtn_unacked, shelved, suppressed)",
        ),
        (
            ALARM_TRANSITIONS,
            "Alarm state transitions, by tenant, severity and the state entered",
        ),
        (
            ALARM_STORE_ERRORS,
            "Failed writes of alarm transitions to the store (retried at the next tick)",
        ),
        (
            ALARM_EVENTS_DROPPED,
            "Alarm transitions dropped unrecorded because the store stayed unreachable too long",
        ),
        (
            ALARM_EVENTS_LAGGED,
            "Alarm events an alarmEvents subscriber missed because it read too slowly",
        ),
        (
            ANOMALIES,
            "Values the anomaly rules' detectors found anomalous, by method",
        ),
        (
            ANOMALIES_DROPPED,
            "Anomaly detections dropped unrecorded because the store stayed unreachable too long",
        ),
        (HISTORIAN_WRITTEN, "Samples written to the store"),
        (
            HISTORIAN_DROPPED,
            "Samples the historian could not keep (buffer bound exceeded)",
        ),
        (
            HISTORIAN_FAILED_WRITES,
            "Store writes that failed and will be retried",
        ),
        (
            HISTORIAN_BUFFERED,
            "Samples waiting in the historian's buffer",
        ),
        (
            HISTORIAN_WRITE_SECONDS,
            "Duration of one bulk write to the store",
        ),
        (STORE_UP, "1 when the store answered the last check"),
        (
            HTTP_REQUESTS,
            "HTTP requests, by path class and status class",
        ),
        (GRAPHQL_ERRORS, "GraphQL errors returned, by code"),
        (
            RATE_LIMITED,
            "Requests refused by a rate limit, by limit (user, tenant, anonymous, login)",
        ),
        (
            LOGIN_LOCKOUTS,
            "Lockouts started by repeated failed logins (per account or address)",
        ),
        (
            QUOTA_REFUSALS,
            "Requests refused by a tenant quota, by limit",
        ),
        (AUDIT_RECORDS, "Audit records written, by outcome"),
        (
            AUDIT_WRITE_FAILURES,
            "Audit records that could not be written (the store refused)",
        ),
        (
            TENANT_USAGE,
            "What a tenant uses, by tenant and resource (devices, tags, subscriptions)",
        ),
        (
            TENANT_QUOTA,
            "A tenant's quota, by tenant and limit (0 = unlimited)",
        ),
        (
            EXPORTS,
            "Exports started (GET /api/export...), by kind (history, alarm-history)",
        ),
        (EXPORTED_ROWS, "Rows streamed by exports, by kind"),
        (
            EXPORT_REFUSED,
            "Exports refused before they started, by code",
        ),
        (
            RETENTION_DELETED,
            "Rows deleted by retention, by table (samples, audit_log, refresh_tokens)",
        ),
        (
            AUTH_FAILURES,
            "Failed logins and rejected tokens, by reason",
        ),
    ];
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
/// Later calls (several servers in one test process) share the first one.
pub fn metrics_handle() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding program);
            // then our handle still renders whatever reached this recorder.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    for (name, help) in names::ALL {
        if name.ends_with("_total") {
            metrics::describe_counter!(*name, *help);
        } else if name.ends_with("_seconds") {
            metrics::describe_histogram!(*name, *help);
        } else {
            metrics::describe_gauge!(*name, *help);
        }
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

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn catalogue_names_are_prefixed_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for (name, help) in names::ALL {
            assert!(name.starts_with("thermacore_"), "{name}");
            assert!(!help.is_empty());
            assert!(seen.insert(*name), "duplicate {name}");
        }
    }
}
