//! The Sparkplug B side of an MQTT device: a node's births, data and deaths to the
//! device's tags, and rebirth requests.

use std::collections::HashMap;

use rumqttc::{AsyncClient, QoS};
use tokio::time::Instant;

use super::Ingest;
use crate::domain::{Quality, QualityReason, Sample, TagId, TagSpec, Timestamp};
use crate::drivers::mqtt::config::SparkplugConfig;
use crate::drivers::mqtt::payload::Problem;
use crate::drivers::mqtt::sparkplug::{self, MessageType, NodeEvent, Topic};
use crate::drivers::scaling;
use crate::telemetry::names;

impl Ingest {
    /// The tags of this device's scope (all of them).
    fn scope_tags(&self) -> Vec<TagId> {
        self.metric_tags.values().flatten().map(|m| m.tag).collect()
    }

    pub(super) fn sparkplug_message(&mut self, topic: &str, bytes: &[u8], client: &AsyncClient) {
        let Some(sp) = self.config.sparkplug.clone() else {
            return;
        };
        let Some(t) = Topic::parse(topic) else {
            self.outcome("refused");
            self.problem(topic, "bad_topic", &"not a Sparkplug B topic");
            return;
        };
        if matches!(
            t.kind,
            MessageType::NCmd | MessageType::DCmd | MessageType::State
        ) {
            return;
        }
        let ours = t.device == sp.device.as_deref()
            || matches!(t.kind, MessageType::NDeath | MessageType::NBirth);
        if bytes.len() > self.config.max_payload_bytes {
            let p = Problem::TooLarge {
                size: bytes.len(),
                limit: self.config.max_payload_bytes,
            };
            self.outcome("refused");
            self.problem(topic, p.reason(), &p);
            if ours {
                self.lost(self.scope_tags(), QualityReason::BadResponse);
            }
            self.rebirth(client, &sp, "bad_message");
            return;
        }
        let payload = match sparkplug::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.outcome("refused");
                self.problem(topic, "bad_protobuf", &e);
                if ours {
                    self.lost(self.scope_tags(), QualityReason::BadResponse);
                }
                self.rebirth(client, &sp, "bad_message");
                return;
            }
        };
        let events = self.node.handle(&t, &payload);
        let mut refused = false;
        for ev in events {
            match ev {
                NodeEvent::Born { device, metrics } if device == sp.device => {
                    let mut specs = Vec::new();
                    for m in &metrics {
                        if self.metric_tags.contains_key(&*m.name) || self.names.contains(&*m.name)
                        {
                            continue;
                        }
                        let internal = m.name.starts_with("Node Control/") || &*m.name == "bdSeq";
                        if sp.discover
                            && !internal
                            && let Some(data_type) = sparkplug::tag_type(m.datatype)
                        {
                            specs.push(TagSpec {
                                name: m.name.to_string(),
                                unit: None,
                                address: format!("metric={}", m.name),
                                data_type,
                                scale: 1.0,
                                offset: 0.0,
                                eng_unit: None,
                                deadband: 0.0,
                                writable: false,
                            });
                        }
                    }
                    let missing: Vec<TagId> = self
                        .metric_tags
                        .iter()
                        .filter(|(name, _)| !metrics.iter().any(|m| &*m.name == name.as_str()))
                        .flat_map(|(_, v)| v.iter().map(|m| m.tag))
                        .collect();
                    if !missing.is_empty() {
                        self.problem(
                            topic,
                            "metric_not_in_birth",
                            &format_args!(
                                "{} mapped metric(s) not declared by the birth",
                                missing.len()
                            ),
                        );
                        self.lost(missing, QualityReason::ConfigError);
                    }
                    if !specs.is_empty() {
                        self.discover(specs);
                    }
                }
                NodeEvent::Values { device, values } if device == sp.device => {
                    refused |= self.metric_values(topic, values);
                }
                NodeEvent::Died { device } if device.is_none() || device == sp.device => {
                    self.lost(self.scope_tags(), QualityReason::CommLost);
                }
                NodeEvent::Problem { reason, detail } => {
                    refused = true;
                    self.problem(topic, reason, &detail);
                }
                NodeEvent::Rebirth { reason } => self.rebirth(client, &sp, reason),
                _ => {}
            }
        }
        self.outcome(if refused { "refused" } else { "ok" });
    }

    /// Metric values of the device's scope to its tags; true if some did not fit.
    /// Values of metrics whose tags are being created wait for them.
    pub(super) fn metric_values(
        &mut self,
        topic: &str,
        values: Vec<sparkplug::MetricUpdate>,
    ) -> bool {
        let now = Timestamp::now();
        let mut samples = Vec::new();
        let mut bad: HashMap<QualityReason, Vec<TagId>> = HashMap::new();
        for u in values {
            let Some(tags) = self.metric_tags.get(&*u.name) else {
                if self.names.contains(&*u.name)
                    && self.waiting_metrics.len() < self.config.max_discovered_tags
                {
                    self.waiting_metrics.insert(u.name.clone(), u);
                }
                continue;
            };
            let source_time = u
                .timestamp_ms
                .and_then(|ms| i64::try_from(ms).ok())
                .map_or(now, |ms| Timestamp(ms.saturating_mul(1000)));
            for m in tags {
                let reason = match &u.value {
                    Ok(Some(raw)) => {
                        match scaling::from_raw(raw.clone(), m.data_type, m.scale, m.offset) {
                            Ok(value) => {
                                samples.push(Sample {
                                    tag: m.tag,
                                    value,
                                    quality: Quality::Good,
                                    source_time,
                                    server_time: now,
                                });
                                continue;
                            }
                            Err(_) => QualityReason::TypeMismatch,
                        }
                    }
                    Ok(None) => QualityReason::DeviceFlag,
                    Err(_) => QualityReason::TypeMismatch,
                };
                bad.entry(reason).or_default().push(m.tag);
            }
        }
        let refused = bad.contains_key(&QualityReason::TypeMismatch);
        if refused {
            self.problem(
                topic,
                "wrong_type",
                &"a metric value does not fit its tag's type or the birth's data type",
            );
        }
        self.emit(samples);
        for (reason, tags) in bad {
            self.lost(tags, reason);
        }
        refused
    }

    fn rebirth(&mut self, client: &AsyncClient, sp: &SparkplugConfig, reason: &'static str) {
        let now = Instant::now();
        let min = std::time::Duration::from_millis(sp.rebirth_min_interval_ms);
        if self
            .last_rebirth
            .is_some_and(|t| now.duration_since(t) < min)
        {
            return;
        }
        self.last_rebirth = Some(now);
        metrics::counter!(names::MQTT_REBIRTH_REQUESTS, "reason" => reason).increment(1);
        let topic = sparkplug::topic(&sp.group, MessageType::NCmd, &sp.node, None);
        let ms = (Timestamp::now().0 / 1000).max(0) as u64;
        if let Err(e) = client.try_publish(topic, QoS::AtMostOnce, false, sparkplug::rebirth(ms)) {
            tracing::warn!(node = %sp.node, error = %e, "could not queue a Sparkplug rebirth request");
        }
    }
}
