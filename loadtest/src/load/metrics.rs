//! What the server says about the window: rates of its counters and quantiles of
//! its histograms between two scrapes of `/metrics`.

use serde_json::{Map, Value, json};
use thermacore_loadtest::prom;

use super::stats::round;

pub async fn scrape(http: &reqwest::Client, base: &str) -> Option<String> {
    let r = http.get(format!("{base}/metrics")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// Counters reported per second over the window.
const RATES: &[(&str, &str)] = &[
    (
        "samples_ingested_per_sec",
        "thermacore_samples_ingested_total",
    ),
    (
        "historian_written_per_sec",
        "thermacore_historian_written_samples_total",
    ),
    ("device_polls_per_sec", "thermacore_device_polls_total"),
    ("mqtt_messages_per_sec", "thermacore_mqtt_messages_total"),
    ("live_delivered_per_sec", "thermacore_live_delivered_total"),
    ("http_requests_per_sec", "thermacore_http_requests_total"),
    (
        "alarm_transitions_per_sec",
        "thermacore_alarm_transitions_total",
    ),
];

/// Counters reported as what they grew by (the ones that should stay at 0).
const DELTAS: &[(&str, &str)] = &[
    ("device_poll_errors", "thermacore_device_poll_errors_total"),
    (
        "historian_dropped_samples",
        "thermacore_historian_dropped_samples_total",
    ),
    ("live_conflated", "thermacore_live_conflated_total"),
    ("rate_limited", "thermacore_rate_limited_total"),
    ("graphql_errors", "thermacore_graphql_errors_total"),
    ("actor_restarts", "thermacore_actor_restarts_total"),
    (
        "mqtt_parse_failures",
        "thermacore_mqtt_parse_failures_total",
    ),
    (
        "route_dropped_batches",
        "thermacore_route_dropped_batches_total",
    ),
];

/// Histograms reported as p50 / p99 in ms (from their buckets, so at the bucket
/// resolution).
const HISTOGRAMS: &[(&str, &str)] = &[
    (
        "device_poll_duration",
        "thermacore_device_poll_duration_seconds",
    ),
    ("device_poll_lag", "thermacore_device_poll_lag_seconds"),
    (
        "device_write_duration",
        "thermacore_device_write_duration_seconds",
    ),
    (
        "historian_write_duration",
        "thermacore_historian_write_duration_seconds",
    ),
    (
        "http_request_duration",
        "thermacore_http_request_duration_seconds",
    ),
];

/// The server's figures between `before` and `after`, `secs` apart.
pub fn window(before: &str, after: &str, secs: f64) -> Value {
    let mut m = Map::new();
    let delta = |name: &str| prom::sum(after, name, "") - prom::sum(before, name, "");
    for (key, name) in RATES {
        m.insert(
            key.to_string(),
            json!(round(delta(name) / secs.max(1e-9), 1)),
        );
    }
    for (key, name) in DELTAS {
        m.insert(key.to_string(), json!(delta(name)));
    }
    for (key, name) in HISTOGRAMS {
        let (b, a) = (
            prom::buckets(before, name, ""),
            prom::buckets(after, name, ""),
        );
        let q = |q: f64| prom::quantile(&b, &a, q).map(|s| round(s * 1000.0, 3));
        if let (Some(p50), Some(p99)) = (q(0.5), q(0.99)) {
            m.insert(format!("{key}_ms"), json!({"p50": p50, "p99": p99}));
        }
    }
    m.insert(
        "historian_buffered_samples_end".into(),
        json!(prom::sum(
            after,
            "thermacore_historian_buffered_samples",
            ""
        )),
    );
    m.insert(
        "live_subscribers_end".into(),
        json!(prom::sum(after, "thermacore_live_subscribers", "")),
    );
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_deltas_and_quantiles_come_from_the_two_scrapes() {
        let before = "thermacore_samples_ingested_total{tenant=\"a\"} 100\n\
                      thermacore_rate_limited_total{limit=\"user\"} 1\n\
                      thermacore_device_poll_duration_seconds_bucket{le=\"0.001\"} 0\n\
                      thermacore_device_poll_duration_seconds_bucket{le=\"+Inf\"} 0\n";
        let after = "thermacore_samples_ingested_total{tenant=\"a\"} 1100\n\
                     thermacore_rate_limited_total{limit=\"user\"} 4\n\
                     thermacore_device_poll_duration_seconds_bucket{le=\"0.001\"} 10\n\
                     thermacore_device_poll_duration_seconds_bucket{le=\"+Inf\"} 10\n";
        let w = window(before, after, 10.0);
        assert_eq!(w["samples_ingested_per_sec"], 100.0);
        assert_eq!(w["rate_limited"], 3.0);
        assert_eq!(w["device_poll_duration_ms"]["p50"], 0.5);
        assert!(
            w.get("http_request_duration_ms").is_none(),
            "nothing recorded, no figure"
        );
    }
}
