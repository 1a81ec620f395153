//! The catalogue of every metric ThermaCore exports: name, type, labels, unit and
//! meaning ([`names::ALL`]). `grafana/README.md` holds it as a table
//! ([`catalogue_markdown`], `thermacore metrics`); tests keep the table, the code and
//! a running server's `/metrics` equal to it.

/// Every metric's name, and [`ALL`](names::ALL), the catalogue.
pub mod names {
    use super::Metric;

    pub const ACTOR_RESTARTS: &str = "thermacore_actor_restarts_total";
    pub const ACTOR_ESCALATIONS: &str = "thermacore_actor_escalations_total";
    pub const ACTORS: &str = "thermacore_actors";
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
    pub const HTTP_REQUEST_SECONDS: &str = "thermacore_http_request_duration_seconds";
    pub const GRAPHQL_OPERATIONS: &str = "thermacore_graphql_operations_total";
    pub const GRAPHQL_ERRORS: &str = "thermacore_graphql_errors_total";
    pub const AUTH_FAILURES: &str = "thermacore_auth_failures_total";
    pub const RATE_LIMITED: &str = "thermacore_rate_limited_total";
    pub const LOGIN_LOCKOUTS: &str = "thermacore_login_lockouts_total";
    pub const QUOTA_REFUSALS: &str = "thermacore_quota_refusals_total";
    pub const AUDIT_RECORDS: &str = "thermacore_audit_records_total";
    pub const AUDIT_WRITE_FAILURES: &str = "thermacore_audit_write_failures_total";
    pub const CONFIG_CHANGES: &str = "thermacore_config_changes_total";
    pub const CONFIG_NOT_APPLIED: &str = "thermacore_config_not_applied_total";
    pub const TENANT_USAGE: &str = "thermacore_tenant_usage";
    pub const TENANT_QUOTA: &str = "thermacore_tenant_quota";
    pub const RETENTION_DELETED: &str = "thermacore_retention_deleted_total";
    pub const EXPORTS: &str = "thermacore_exports_total";
    pub const EXPORTED_ROWS: &str = "thermacore_exported_rows_total";
    pub const TLS_CERT_EXPIRY: &str = "thermacore_tls_certificate_expiry_timestamp_seconds";
    pub const EXPORT_REFUSED: &str = "thermacore_exports_refused_total";

    /// Every metric above: kind, labels, unit and meaning. `describe()` registers them
    /// all; `grafana/README.md` holds them as a table (a test keeps the two equal).
    #[rustfmt::skip]
    pub const ALL: &[Metric] = &[
        Metric::counter(ACTOR_RESTARTS, &["kind"], "1", "Actors restarted by their supervisor, by kind"),
        Metric::counter(ACTOR_ESCALATIONS, &["kind"], "1", "Supervisors that gave up on a child (restart intensity exceeded), by kind"),
        Metric::gauge(ACTORS, &["kind"], "1", "Running actors by kind: system (root, historian), tenant, device, tenant_service (cache, live hub, alert stream)"),
        Metric::counter(SAMPLES_INGESTED, &["tenant", "protocol"], "1", "Samples produced by device actors, by tenant and protocol"),
        Metric::counter(DEVICE_POLLS, &["protocol"], "1", "Polls performed, by protocol"),
        Metric::counter(DEVICE_POLL_ERRORS, &["protocol", "kind"], "1", "Polls that failed, by protocol and kind"),
        Metric::histogram(DEVICE_POLL_SECONDS, &["protocol"], "Duration of one poll, by protocol"),
        Metric::histogram(DEVICE_POLL_LAG, &["protocol"], "How late a poll started against its schedule (poll jitter), by protocol"),
        Metric::gauge(DEVICES, &["tenant", "protocol", "state"], "1", "Devices by tenant, protocol and state (connecting, online, degraded, offline, restarting, disabled)"),
        Metric::gauge(DEVICE_PLAN_REQUESTS, &["tenant", "protocol"], "1", "Protocol requests per poll cycle of every group, summed over devices, by tenant and protocol"),
        Metric::counter(DEVICE_WRITES, &["protocol", "outcome"], "1", "Writes to tags (commands), by protocol and outcome"),
        Metric::histogram(DEVICE_WRITE_SECONDS, &["protocol"], "Duration of one write through its device actor, by protocol"),
        Metric::counter(DEVICE_STATUS_LAGGED, &[], "1", "Device status changes a slow deviceStatus subscriber missed"),
        Metric::counter(MODBUS_REQUESTS, &["function"], "1", "Modbus requests sent, by function"),
        Metric::counter(MODBUS_ERRORS, &["function", "code"], "1", "Modbus requests that failed, by function and code (exception or timeout, io, bad_response, no_connection)"),
        Metric::histogram(MODBUS_REQUEST_SECONDS, &["function"], "Duration of one Modbus request, by function"),
        Metric::counter(MODBUS_LINK_EVENTS, &["event"], "1", "State changes of Modbus channels reported by rodbus's reconnect machinery, by event"),
        Metric::gauge(MODBUS_BAD_ADDRESSES, &["tenant"], "1", "Modbus addresses parked in the bad-address cache, by tenant"),
        Metric::gauge(MODBUS_CHANNELS, &[], "1", "Modbus channels open (shared by the devices behind one gateway)"),
        Metric::counter(MQTT_MESSAGES, &["tenant", "outcome"], "1", "MQTT messages handed to devices, by outcome (ok, refused: a parse failure, unmatched: no device wanted the topic)"),
        Metric::counter(MQTT_PARSE_FAILURES, &["reason"], "1", "MQTT messages or values that could not be used, by reason (too_large, malformed_json, wrong_type, bad_protobuf, unknown_alias, seq_gap …)"),
        Metric::counter(MQTT_RECEIVED_BYTES, &[], "bytes", "Payload bytes of MQTT messages received"),
        Metric::gauge(MQTT_CONNECTIONS, &["state"], "1", "MQTT broker connections, by state (connected, disconnected)"),
        Metric::counter(MQTT_RECONNECTS, &[], "1", "MQTT broker connections lost or refused (each is retried with backoff)"),
        Metric::counter(MQTT_COMMANDS, &["outcome"], "1", "Commands published to MQTT with QoS 1, by outcome (acked, timeout, disconnected)"),
        Metric::counter(MQTT_REBIRTH_REQUESTS, &["reason"], "1", "Sparkplug B rebirth requests sent to edge nodes, by reason (seq_gap, no_birth)"),
        Metric::counter(MQTT_DISCOVERED_TAGS, &[], "1", "Tags created from MQTT topic templates and Sparkplug B births"),
        Metric::gauge(OPCUA_SESSIONS, &["tenant", "state"], "1", "OPC UA sessions, by tenant and state (connected, connecting)"),
        Metric::counter(OPCUA_RECONNECTS, &["outcome"], "1", "OPC UA sessions lost (each is re-established by the client with backoff), by outcome of the reconnect (reactivated, new_session)"),
        Metric::gauge(OPCUA_MONITORED_ITEMS, &["tenant"], "1", "OPC UA monitored items created on servers (subscribed tags), by tenant"),
        Metric::gauge(OPCUA_POLLED_NODES, &["tenant"], "1", "OPC UA nodes read by bulk polls instead (mode=poll, or the server would not monitor them), by tenant"),
        Metric::counter(OPCUA_DATA_CHANGES, &[], "1", "OPC UA data change notifications received (one per value)"),
        Metric::histogram(OPCUA_PUBLISH_LATENCY, &[], "Time from an OPC UA notification's publish time at the server to its receipt"),
        Metric::counter(OPCUA_SERVICE_ERRORS, &["service", "status"], "1", "OPC UA service calls or items that failed, by service and status code name"),
        Metric::gauge(OPCUA_BAD_NODES, &["tenant"], "1", "OPC UA nodes parked in the bad-node cache (retried after the grace period), by tenant"),
        Metric::counter(DNP3_POLLS, &["class", "outcome"], "1", "DNP3 polls, by class (integrity, class1, class2, class3) and outcome (ok, timeout, rejected, error, offline)"),
        Metric::histogram(DNP3_REQUEST_SECONDS, &["kind"], "Duration of one DNP3 request and its response, by kind (poll, command)"),
        Metric::counter(DNP3_UNSOLICITED, &[], "1", "Unsolicited response fragments received from DNP3 outstations"),
        Metric::counter(DNP3_EVENTS, &["point"], "1", "DNP3 event objects received (polled or unsolicited), by point type"),
        Metric::counter(DNP3_IIN, &["bit"], "1", "DNP3 responses carrying an IIN bit of note, by bit (device_restart, event_buffer_overflow, need_time, device_trouble, local_control, config_corrupt, no_func_code_support, object_unknown, parameter_error, already_executing)"),
        Metric::counter(DNP3_COMMANDS, &["mode", "outcome"], "1", "DNP3 commands (CROB, analog output), by mode (sbo, direct) and outcome (success, the outstation's status, timeout, error)"),
        Metric::counter(DNP3_SKIPPED_OBJECTS, &["object"], "1", "DNP3 objects received that no tag maps (octet strings, device attributes, ...), skipped, by object"),
        Metric::counter(DNP3_LINKS, &["state"], "1", "DNP3 link state changes reported by the master channel, by state (connected, connect_failed, disconnected)"),
        Metric::counter(ROUTE_DROPPED_BATCHES, &["kind"], "1", "Sample batches not delivered because the receiving actor was restarting, by kind"),
        Metric::counter(CACHE_HITS, &["tenant"], "1", "Latest-value reads answered with a value, by tenant"),
        Metric::counter(CACHE_MISSES, &["tenant"], "1", "Latest-value reads of a tag without a value yet, by tenant"),
        Metric::gauge(CACHE_ENTRIES, &["tenant"], "1", "Tags known to the cache, by tenant"),
        Metric::gauge(LIVE_SUBSCRIBERS, &["tenant"], "1", "Live subscriptions registered, by tenant"),
        Metric::counter(LIVE_DELIVERED, &["tenant"], "1", "Values queued for live subscribers, by tenant"),
        Metric::counter(LIVE_CONFLATED, &["tenant"], "1", "Values replaced by a newer one before a slow subscriber read them, by tenant"),
        Metric::counter(ALERT_SAMPLES, &["tenant"], "1", "Samples passed through the alert stream, by tenant"),
        Metric::gauge(ALARMS, &["tenant", "severity", "state"], "1", "Alarms not in the normal state, by tenant, severity and state (unacked, acked, rtn_unacked, shelved, suppressed)"),
        Metric::counter(ALARM_TRANSITIONS, &["tenant", "severity", "to"], "1", "Alarm state transitions, by tenant, severity and the state entered"),
        Metric::counter(ALARM_STORE_ERRORS, &["tenant"], "1", "Failed writes of alarm transitions to the store (retried at the next tick)"),
        Metric::counter(ALARM_EVENTS_DROPPED, &["tenant"], "1", "Alarm transitions dropped unrecorded because the store stayed unreachable too long"),
        Metric::counter(ALARM_EVENTS_LAGGED, &[], "1", "Alarm events an alarmEvents subscriber missed because it read too slowly"),
        Metric::counter(ANOMALIES, &["tenant", "method"], "1", "Values the anomaly rules' detectors found anomalous, by method"),
        Metric::counter(ANOMALIES_DROPPED, &["tenant"], "1", "Anomaly detections dropped unrecorded because the store stayed unreachable too long"),
        Metric::counter(HISTORIAN_WRITTEN, &[], "1", "Samples written to the store"),
        Metric::counter(HISTORIAN_DROPPED, &[], "1", "Samples the historian could not keep (buffer bound exceeded)"),
        Metric::counter(HISTORIAN_FAILED_WRITES, &[], "1", "Store writes that failed and will be retried"),
        Metric::gauge(HISTORIAN_BUFFERED, &[], "1", "Samples waiting in the historian's buffer"),
        Metric::histogram(HISTORIAN_WRITE_SECONDS, &[], "Duration of one bulk write to the store"),
        Metric::gauge(STORE_UP, &[], "0/1", "1 when the store answered the last check"),
        Metric::counter(HTTP_REQUESTS, &["path", "status"], "1", "HTTP requests, by path class and status class"),
        Metric::histogram(HTTP_REQUEST_SECONDS, &["path"], "Time to answer an HTTP request (to the response head; a subscription's upgrade, an export's first bytes), by path class"),
        Metric::counter(GRAPHQL_OPERATIONS, &["type"], "1", "GraphQL requests, by the type of operation run (query, mutation, subscription; unknown: the document names none to run; invalid: it did not parse)"),
        Metric::counter(GRAPHQL_ERRORS, &["code"], "1", "GraphQL errors returned, by code"),
        Metric::counter(RATE_LIMITED, &["limit"], "1", "Requests refused by a rate limit, by limit (user, tenant, anonymous, login)"),
        Metric::counter(LOGIN_LOCKOUTS, &[], "1", "Lockouts started by repeated failed logins (per account or address)"),
        Metric::counter(QUOTA_REFUSALS, &["limit"], "1", "Requests refused by a tenant quota, by limit"),
        Metric::counter(AUDIT_RECORDS, &["outcome"], "1", "Audit records written, by outcome"),
        Metric::counter(AUDIT_WRITE_FAILURES, &[], "1", "Audit records that could not be written (the store refused)"),
        Metric::counter(CONFIG_CHANGES, &["op"], "1", "Units, devices, tags and alarm rules changed by the live configuration (API, imports), by op (create, update, delete)"),
        Metric::counter(CONFIG_NOT_APPLIED, &[], "1", "Devices a stored configuration change could not be applied to (they show the error in their status)"),
        Metric::gauge(TENANT_USAGE, &["tenant", "resource"], "1", "What a tenant uses, by tenant and resource (devices, tags, subscriptions)"),
        Metric::gauge(TENANT_QUOTA, &["tenant", "limit"], "1", "A tenant's quota, by tenant and limit (0 = unlimited)"),
        Metric::counter(EXPORTS, &["kind"], "1", "Exports started (GET /api/export...), by kind (history, alarm-history)"),
        Metric::counter(EXPORTED_ROWS, &["kind"], "1", "Rows streamed by exports, by kind"),
        Metric::counter(EXPORT_REFUSED, &["code"], "1", "Exports refused before they started, by code"),
        Metric::gauge(TLS_CERT_EXPIRY, &["use"], "seconds", "When the certificate in use expires (Unix time), by use (https: the API's server certificate)"),
        Metric::counter(RETENTION_DELETED, &["table"], "1", "Rows deleted by retention, by table (samples, audit_log, refresh_tokens)"),
        Metric::counter(AUTH_FAILURES, &["reason"], "1", "Failed logins and rejected tokens, by reason"),
    ];
}

/// What a metric is, as Prometheus types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One entry of the catalogue ([`names::ALL`]).
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// Every label a series of it may carry (a series may carry fewer; histograms add
    /// `le`). All of bounded cardinality: tenants, protocols, outcomes, codes.
    pub labels: &'static [&'static str],
    /// `seconds`, `bytes`, `0/1`, or `1` for a plain count.
    pub unit: &'static str,
    pub help: &'static str,
}

impl Metric {
    const fn counter(
        name: &'static str,
        labels: &'static [&'static str],
        unit: &'static str,
        help: &'static str,
    ) -> Self {
        Metric {
            name,
            kind: Kind::Counter,
            labels,
            unit,
            help,
        }
    }

    const fn gauge(
        name: &'static str,
        labels: &'static [&'static str],
        unit: &'static str,
        help: &'static str,
    ) -> Self {
        Metric {
            name,
            kind: Kind::Gauge,
            labels,
            unit,
            help,
        }
    }

    /// Histograms are of durations, in seconds, with [`LATENCY_BUCKETS`].
    const fn histogram(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Metric {
            name,
            kind: Kind::Histogram,
            labels,
            unit: "seconds",
            help,
        }
    }
}

/// The catalogue entry of a metric name.
pub fn metric(name: &str) -> Option<&'static Metric> {
    names::ALL.iter().find(|m| m.name == name)
}

/// The metric a series of the text format belongs to: a catalogued histogram's
/// `_bucket`, `_sum` and `_count` series are its own; any other name is itself.
pub fn family(series: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| {
            series
                .strip_suffix(suffix)
                .filter(|f| metric(f).is_some_and(|m| m.kind == Kind::Histogram))
        })
        .unwrap_or(series)
}

/// Bucket bounds of every histogram, in seconds: SCADA latencies from a fast local
/// poll (100 µs) to a slow serial gateway or a stalled store (10 s).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The catalogue as a Markdown table, as `grafana/README.md` holds it (and
/// `thermacore metrics` prints it).
pub fn catalogue_markdown() -> String {
    let mut out =
        String::from("| Name | Type | Labels | Unit | Meaning |\n|---|---|---|---|---|\n");
    for m in names::ALL {
        let labels = if m.labels.is_empty() {
            "—".to_string()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {labels} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            m.unit,
            m.help.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Kind, catalogue_markdown, names};

    #[test]
    fn catalogue_names_are_prefixed_unique_and_typed_by_suffix() {
        let mut seen = std::collections::HashSet::new();
        for m in names::ALL {
            assert!(m.name.starts_with("thermacore_"), "{}", m.name);
            assert!(!m.help.is_empty());
            assert!(seen.insert(m.name), "duplicate {}", m.name);
            // Prometheus conventions: counters end in _total, durations in _seconds.
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
            // Durations end in _seconds; so do points in time, as _timestamp_seconds.
            assert_eq!(
                m.kind == Kind::Histogram,
                m.name.ends_with("_seconds") && !m.name.ends_with("_timestamp_seconds"),
                "{}",
                m.name
            );
            assert!(m.labels.iter().all(|l| *l != "le" && !l.is_empty()));
        }
    }

    /// Every catalogued name is emitted somewhere, and every metric emitted is named
    /// by the catalogue's constants (not a string written elsewhere).
    #[test]
    fn the_catalogue_matches_the_code() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("src dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("telemetry.rs")
                    && !path.ends_with("telemetry/catalogue.rs")
                {
                    files.push(std::fs::read_to_string(&path).expect("source"));
                }
            }
        }
        let own = include_str!("catalogue.rs");
        let consts: Vec<&str> = own
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub const "))
            .filter(|l| l.contains(": &str = \"thermacore_"))
            .filter_map(|l| l.split(':').next())
            .collect();
        assert_eq!(
            consts.len(),
            names::ALL.len(),
            "a constant per catalogue entry"
        );
        for c in &consts {
            let used = files.iter().any(|f| {
                f.match_indices(&format!("names::{c}")).any(|(i, m)| {
                    !f[i + m.len()..]
                        .starts_with(|ch: char| ch.is_ascii_alphanumeric() || ch == '_')
                })
            });
            assert!(used, "names::{c} is catalogued but never emitted");
        }
        for f in &files {
            for macro_ in ["counter!(", "gauge!(", "histogram!("] {
                for (i, _) in f.match_indices(&format!("metrics::{macro_}")) {
                    let arg = f[i + "metrics::".len() + macro_.len()..].trim_start();
                    assert!(
                        arg.starts_with("names::")
                            || arg.starts_with("crate::telemetry::names::")
                            || arg.starts_with("name,"),
                        "a metric named outside the catalogue: {}",
                        &arg[..arg.len().min(60)]
                    );
                }
            }
        }
    }

    #[test]
    fn histogram_series_belong_to_their_histogram() {
        use super::family;
        let h = "thermacore_http_request_duration_seconds";
        for suffix in ["_bucket", "_sum", "_count"] {
            assert_eq!(family(&format!("{h}{suffix}")), h);
        }
        assert_eq!(family(h), h);
        // Only histograms have such series; other names stay as they are.
        assert_eq!(
            family("thermacore_store_up_count"),
            "thermacore_store_up_count"
        );
        assert_eq!(
            family("thermacore_http_requests_total"),
            "thermacore_http_requests_total"
        );
    }

    /// `grafana/README.md` holds the catalogue between its markers, exactly.
    #[test]
    fn the_grafana_readme_holds_the_catalogue() {
        let readme = include_str!("../../grafana/README.md");
        let (begin, end) = ("<!-- metrics:begin -->\n", "<!-- metrics:end -->");
        let table = readme
            .split_once(begin)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(table, _)| table);
        assert_eq!(
            table,
            Some(catalogue_markdown().as_str()),
            "grafana/README.md is out of date: put the output of `thermacore metrics` between its markers"
        );
    }
}
