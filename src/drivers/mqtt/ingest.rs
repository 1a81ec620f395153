//! What one MQTT device does with the messages its filters receive: JSON and plain
//! payloads mapped to tags by topic and pointer (and tags created from templates), or
//! a Sparkplug B node's births, data and deaths. Runs in the broker link's task; all
//! output goes through the device's [`DriverSink`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rumqttc::AsyncClient;
use tokio::time::Instant;

mod sparkplug_side;

use super::address::MqttAddress;
use super::config::{MqttConfig, TagTemplate};
use super::payload::{self, Parsed, Problem};
use super::sparkplug::{self, Node};
use super::topic::{self, Template};
use crate::domain::{DataType, Quality, QualityReason, Sample, Tag, TagId, TagSpec, Timestamp};
use crate::drivers::{DriverSink, Error};
use crate::telemetry::names;

/// Distinct (topic, reason) pairs logged; beyond it, problems are only counted.
const MAX_LOGGED: usize = 10_000;

/// A JSON or plain tag.
#[derive(Debug, Clone)]
pub(super) struct TopicTag {
    pub tag: TagId,
    pub topic: String,
    pub value: Option<String>,
    pub time: Option<String>,
    pub quality: Option<String>,
    pub command: Option<String>,
    pub data_type: DataType,
    pub scale: f64,
    pub offset: f64,
}

/// A Sparkplug tag.
#[derive(Debug, Clone)]
pub(super) struct MetricTag {
    pub tag: TagId,
    pub metric: String,
    pub data_type: DataType,
    pub scale: f64,
    pub offset: f64,
}

pub(super) struct Ingest {
    pub broken: Option<Error>,
    /// Messages by outcome: ok, refused, unmatched.
    counters: Option<[metrics::Counter; 3]>,
    pub config: Arc<MqttConfig>,
    sink: Option<DriverSink>,
    topic_tags: Vec<TopicTag>,
    exact: HashMap<String, Vec<usize>>,
    wild: Vec<usize>,
    templates: Vec<(Template, TagTemplate)>,
    metric_tags: HashMap<String, Vec<MetricTag>>,
    /// Names of the device's tags, and of tags asked for but not created yet.
    names: HashSet<String>,
    requested: usize,
    /// The last message of each templated topic whose tag is being created, and the
    /// last value of each metric whose tag is: handed over once the tag exists, so
    /// that a value reported by exception is not lost to the creation.
    waiting_topics: HashMap<String, Vec<u8>>,
    waiting_metrics: HashMap<Arc<str>, sparkplug::MetricUpdate>,
    node: Node,
    last_rebirth: Option<Instant>,
    logged: HashSet<(String, &'static str)>,
}

impl Ingest {
    /// A template that does not parse (refused at config load already) is left out and
    /// kept as `broken`, for `plan` to report.
    pub fn new(config: Arc<MqttConfig>) -> Self {
        let mut broken = None;
        let mut templates = Vec::new();
        for t in &config.templates {
            match Template::parse(&t.topic) {
                Ok(p) => templates.push((p, t.clone())),
                Err(e) => broken = Some(Error::Config(format!("templates: {e}"))),
            }
        }
        Ingest {
            broken,
            counters: None,
            config,
            sink: None,
            topic_tags: Vec::new(),
            exact: HashMap::new(),
            wild: Vec::new(),
            templates,
            metric_tags: HashMap::new(),
            names: HashSet::new(),
            requested: 0,
            waiting_topics: HashMap::new(),
            waiting_metrics: HashMap::new(),
            node: Node::default(),
            last_rebirth: None,
            logged: HashSet::new(),
        }
    }

    pub fn sparkplug(&self) -> bool {
        self.config.sparkplug.is_some()
    }

    /// Maps tags (at plan time, and as discovered tags are created).
    pub fn add(&mut self, tags: &[Tag]) -> Result<(), Error> {
        let first_new = self.topic_tags.len();
        let mut new_metrics = Vec::new();
        for t in tags {
            let s = &t.spec;
            let addr = MqttAddress::parse(&s.address, self.sparkplug()).map_err(|reason| {
                Error::Address {
                    tag: s.name.clone(),
                    address: s.address.clone(),
                    reason,
                }
            })?;
            self.names.insert(s.name.clone());
            match addr {
                MqttAddress::Topic {
                    topic,
                    value,
                    time,
                    quality,
                    command,
                } => {
                    let index = self.topic_tags.len();
                    if topic::is_wildcard(&topic) {
                        self.wild.push(index);
                    } else {
                        self.exact.entry(topic.clone()).or_default().push(index);
                    }
                    self.topic_tags.push(TopicTag {
                        tag: t.id,
                        topic,
                        value,
                        time: time.or_else(|| self.config.time.clone()),
                        quality: quality.or_else(|| self.config.quality.clone()),
                        command,
                        data_type: s.data_type,
                        scale: s.scale,
                        offset: s.offset,
                    });
                }
                MqttAddress::Metric { name } => {
                    new_metrics.push(name.clone());
                    self.metric_tags
                        .entry(name.clone())
                        .or_default()
                        .push(MetricTag {
                            tag: t.id,
                            metric: name,
                            data_type: s.data_type,
                            scale: s.scale,
                            offset: s.offset,
                        });
                }
            }
        }
        let topics: Vec<String> = self.topic_tags[first_new..]
            .iter()
            .map(|t| t.topic.clone())
            .collect();
        for topic in topics {
            if let Some(payload) = self.waiting_topics.remove(&topic) {
                self.topic_message(&topic, &payload);
            }
        }
        let values: Vec<sparkplug::MetricUpdate> = new_metrics
            .iter()
            .filter_map(|m| self.waiting_metrics.remove(m.as_str()))
            .collect();
        if !values.is_empty() {
            self.metric_values("", values);
        }
        Ok(())
    }

    /// The filters the device subscribes to (patterns, without `$share/`).
    pub fn filters(&self) -> Vec<(String, u8)> {
        let c = &self.config;
        if let Some(sp) = &c.sparkplug {
            return vec![(
                format!("{}/{}/+/{}/#", sparkplug::NAMESPACE, sp.group, sp.node),
                c.qos,
            )];
        }
        let mut out: Vec<(String, u8)> = c
            .topics
            .iter()
            .map(|t| (t.filter().to_string(), t.qos(c.qos)))
            .collect();
        let extra = self
            .topic_tags
            .iter()
            .map(|t| t.topic.clone())
            .chain(self.templates.iter().map(|(t, _)| t.filter.clone()));
        for f in extra {
            let covered = out.iter().any(|(o, _)| {
                o == &f
                    || (topic::is_wildcard(o) && !topic::is_wildcard(&f) && topic::matches(o, &f))
            });
            if !covered {
                out.push((f, c.qos));
            }
        }
        out
    }

    pub fn topic_tag(&self, tag: TagId) -> Option<&TopicTag> {
        self.topic_tags.iter().find(|t| t.tag == tag)
    }

    pub fn metric_tag(&self, tag: TagId) -> Option<&MetricTag> {
        self.metric_tags.values().flatten().find(|m| m.tag == tag)
    }

    /// The data type the node's birth declared for a metric of this device.
    pub fn declared_type(&self, metric: &str) -> Option<u32> {
        let scope = self.config.sparkplug.as_ref()?.device.as_deref();
        self.node
            .declared(scope)?
            .iter()
            .find(|d| &*d.name == metric)
            .map(|d| d.datatype)
    }

    fn problem(&mut self, topic: &str, reason: &'static str, detail: &dyn std::fmt::Display) {
        metrics::counter!(names::MQTT_PARSE_FAILURES, "reason" => reason).increment(1);
        if self.logged.len() < MAX_LOGGED && self.logged.insert((topic.to_string(), reason)) {
            let device = self
                .sink
                .as_ref()
                .map(|s| s.device.clone())
                .unwrap_or_default();
            tracing::warn!(%device, topic, reason, %detail, "MQTT message not usable (logged once per topic and reason; counted in thermacore_mqtt_parse_failures_total)");
        }
    }

    /// Where the device's messages go: their counters are made once, not per message.
    pub fn set_sink(&mut self, sink: DriverSink) {
        let counter = |outcome: &'static str| metrics::counter!(names::MQTT_MESSAGES, "tenant" => sink.tenant.to_string(), "outcome" => outcome);
        self.counters = Some([counter("ok"), counter("refused"), counter("unmatched")]);
        self.sink = Some(sink);
    }

    fn outcome(&self, outcome: &'static str) {
        if let Some([ok, refused, unmatched]) = &self.counters {
            match outcome {
                "ok" => ok.increment(1),
                "refused" => refused.increment(1),
                _ => unmatched.increment(1),
            }
        }
    }

    fn lost(&self, tags: Vec<TagId>, reason: QualityReason) {
        if let (Some(s), false) = (&self.sink, tags.is_empty()) {
            (s.lost)(tags, reason);
        }
    }

    fn emit(&self, samples: Vec<Sample>) {
        if let (Some(s), false) = (&self.sink, samples.is_empty()) {
            (s.samples)(samples);
        }
    }

    fn discover(&mut self, mut specs: Vec<TagSpec>) {
        let Some(discovered) = self.sink.as_ref().map(|s| s.discovered.clone()) else {
            return;
        };
        let room = self
            .config
            .max_discovered_tags
            .saturating_sub(self.requested);
        if specs.len() > room {
            let dropped = specs.len() - room;
            specs.truncate(room);
            let limit = self.config.max_discovered_tags;
            self.problem(
                "",
                "discovery_limit",
                &format_args!(
                    "{dropped} tag(s) not created: the device reached max_discovered_tags = {limit}"
                ),
            );
        }
        if specs.is_empty() {
            return;
        }
        self.requested += specs.len();
        for spec in &specs {
            self.names.insert(spec.name.clone());
        }
        discovered(specs);
    }

    /// One message on one of the device's filters.
    pub fn handle(&mut self, topic: &str, payload: &[u8], client: &AsyncClient) {
        if self.sparkplug() {
            self.sparkplug_message(topic, payload, client);
        } else {
            self.topic_message(topic, payload);
        }
    }

    fn topic_message(&mut self, topic: &str, bytes: &[u8]) {
        let mut hits: Vec<usize> = self.exact.get(topic).cloned().unwrap_or_default();
        hits.extend(
            self.wild
                .iter()
                .copied()
                .filter(|&i| topic::matches(&self.topic_tags[i].topic, topic)),
        );
        let mut new_specs = Vec::new();
        let mut template_hits = Vec::new();
        for (ti, (template, t)) in self.templates.iter().enumerate() {
            if let Some(captures) = template.capture(topic) {
                let name = topic::render(&t.name, &captures);
                if !self.names.contains(&name) {
                    let address = match &t.value {
                        Some(p) => format!("topic={topic};value={p}"),
                        None => format!("topic={topic}"),
                    };
                    let address = match &t.command {
                        Some(c) if t.writable => {
                            format!("{address};command={}", topic::render(c, &captures))
                        }
                        _ => address,
                    };
                    new_specs.push(TagSpec {
                        name,
                        unit: None,
                        address,
                        data_type: t.data_type,
                        scale: 1.0,
                        offset: 0.0,
                        eng_unit: t.eng_unit.clone(),
                        deadband: 0.0,
                        writable: t.writable,
                    });
                }
                template_hits.push(ti);
                if self.waiting_topics.len() < self.config.max_discovered_tags {
                    self.waiting_topics
                        .insert(topic.to_string(), bytes.to_vec());
                }
            }
        }
        if !new_specs.is_empty() {
            self.discover(new_specs);
        }
        if hits.is_empty() {
            if template_hits.is_empty() {
                self.outcome("unmatched");
                self.problem(
                    topic,
                    "unmatched_topic",
                    &"no tag of the device maps this topic",
                );
            }
            return;
        }
        let needs_json = hits.iter().any(|&i| self.topic_tags[i].value.is_some());
        let parsed = match payload::parse(bytes, self.config.max_payload_bytes, needs_json) {
            Ok(p) => p,
            Err(p) => {
                self.outcome("refused");
                self.problem(topic, p.reason(), &p);
                if let Some(Quality::Bad(reason)) = p.quality() {
                    self.lost(
                        hits.iter().map(|&i| self.topic_tags[i].tag).collect(),
                        reason,
                    );
                }
                return;
            }
        };
        let now = Timestamp::now();
        let mut samples = Vec::with_capacity(hits.len());
        let mut bad: Vec<(TagId, QualityReason)> = Vec::new();
        let mut problems: Vec<Problem> = Vec::new();
        type Memo<'p, T> = Vec<(&'p str, Option<Result<T, Problem>>)>;
        let mut times: Memo<'_, Timestamp> = Vec::new();
        let mut qualities: Memo<'_, Quality> = Vec::new();
        for &i in &hits {
            let t = &self.topic_tags[i];
            let value = payload::lookup(&parsed, t.value.as_deref())
                .and_then(|v| payload::tag_value(v, t.data_type, t.scale, t.offset));
            let value = match value {
                Ok(v) => v,
                Err(p) => {
                    if let Some(Quality::Bad(reason)) = p.quality() {
                        bad.push((t.tag, reason));
                    }
                    problems.push(p);
                    continue;
                }
            };
            let mut source_time = now;
            let mut quality = Quality::Good;
            if let Parsed::Json(doc) = &parsed {
                // Looked up once per message and pointer (tags usually share the
                // device's), not once per tag.
                if let Some(p) = t.time.as_deref() {
                    let found = match times.iter().find(|(q, _)| *q == p) {
                        Some((_, r)) => r.clone(),
                        None => {
                            let r = doc
                                .pointer(p)
                                .map(|v| payload::timestamp(v, self.config.time_unit));
                            if let Some(Err(e)) = &r {
                                problems.push(e.clone());
                            }
                            times.push((p, r.clone()));
                            r
                        }
                    };
                    if let Some(Ok(ts)) = found {
                        source_time = ts;
                    }
                }
                if let Some(p) = t.quality.as_deref() {
                    let found = match qualities.iter().find(|(q, _)| *q == p) {
                        Some((_, r)) => r.clone(),
                        None => {
                            let r = doc.pointer(p).map(payload::quality);
                            if let Some(Err(e)) = &r {
                                problems.push(e.clone());
                            }
                            qualities.push((p, r.clone()));
                            r
                        }
                    };
                    match found {
                        Some(Ok(q)) => quality = q,
                        Some(Err(_)) => quality = Quality::Uncertain(QualityReason::BadResponse),
                        None => {}
                    }
                }
            }
            samples.push(Sample {
                tag: t.tag,
                value,
                quality,
                source_time,
                server_time: now,
            });
        }
        self.outcome(if problems.is_empty() { "ok" } else { "refused" });
        for p in problems {
            self.problem(topic, p.reason(), &p);
        }
        self.emit(samples);
        let mut by_reason: HashMap<QualityReason, Vec<TagId>> = HashMap::new();
        for (tag, reason) in bad {
            by_reason.entry(reason).or_default().push(tag);
        }
        for (reason, tags) in by_reason {
            self.lost(tags, reason);
        }
    }
}
