//! The host side of one Sparkplug B edge node: births define metrics and aliases, data
//! updates them, deaths end them, and a sequence gap or data from a node we have no
//! birth of asks for a rebirth.

use std::collections::HashMap;
use std::sync::Arc;

use super::proto::{Metric, MetricValue, Payload};
use super::{MessageType, Topic, ValueError, metric_value};
use crate::domain::Value;

/// The birth/death sequence metric of NBIRTH and NDEATH.
const BD_SEQ: &str = "bdSeq";

/// A metric as declared by a birth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub name: Arc<str>,
    pub datatype: u32,
}

/// One value of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricUpdate {
    pub name: Arc<str>,
    /// `Ok(None)`: the metric was sent as null.
    pub value: Result<Option<Value>, ValueError>,
    /// Milliseconds since the epoch, the metric's or the payload's.
    pub timestamp_ms: Option<u64>,
}

/// What a message meant.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// A birth declared these metrics (the node's when `device` is None).
    Born {
        device: Option<String>,
        metrics: Vec<Declared>,
    },
    Values {
        device: Option<String>,
        values: Vec<MetricUpdate>,
    },
    /// The node (`device` None: with all its devices) or one device died.
    Died { device: Option<String> },
    /// Something is wrong with the stream; `reason` is a metric label.
    Problem {
        reason: &'static str,
        detail: String,
    },
    /// Ask the node for its births again.
    Rebirth { reason: &'static str },
}

#[derive(Debug, Default)]
struct Scope {
    metrics: Vec<Declared>,
    by_alias: HashMap<u64, usize>,
    by_name: HashMap<Arc<str>, usize>,
}

impl Scope {
    fn declare(metrics: &[Metric]) -> (Scope, Vec<String>) {
        let mut s = Scope::default();
        let mut problems = Vec::new();
        for m in metrics {
            let Some(name) = m.name.as_deref() else {
                problems.push("a birth metric without a name".to_string());
                continue;
            };
            let Some(datatype) = m.datatype else {
                problems.push(format!("birth metric `{name}` has no data type"));
                continue;
            };
            let name: Arc<str> = name.into();
            let index = s.metrics.len();
            s.metrics.push(Declared {
                name: name.clone(),
                datatype,
            });
            s.by_name.insert(name, index);
            if let Some(alias) = m.alias
                && s.by_alias.insert(alias, index).is_some()
            {
                problems.push(format!("alias {alias} declared twice"));
            }
        }
        (s, problems)
    }

    fn lookup(&self, m: &Metric) -> Option<&Declared> {
        let index = match (&m.name, m.alias) {
            (Some(name), _) => self.by_name.get(name.as_str()),
            (None, Some(alias)) => self.by_alias.get(&alias),
            (None, None) => None,
        }?;
        self.metrics.get(*index)
    }
}

/// One edge node as the host sees it.
#[derive(Debug, Default)]
pub struct Node {
    alive: bool,
    /// The `seq` expected next.
    next_seq: Option<u8>,
    /// The bdSeq of the current NBIRTH (an NDEATH with another belongs to an older session).
    bd_seq: Option<u64>,
    node: Option<Scope>,
    devices: HashMap<String, Scope>,
}

fn bd_seq(payload: &Payload) -> Option<u64> {
    payload
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some(BD_SEQ))
        .and_then(|m| match m.value {
            Some(MetricValue::LongValue(v)) => Some(v),
            Some(MetricValue::IntValue(v)) => Some(u64::from(v)),
            _ => None,
        })
}

impl Node {
    pub fn alive(&self) -> bool {
        self.alive
    }

    /// The metrics a birth declared for `device` (the node's own for None).
    pub fn declared(&self, device: Option<&str>) -> Option<&[Declared]> {
        match device {
            None => self.node.as_ref(),
            Some(d) => self.devices.get(d),
        }
        .map(|s| s.metrics.as_slice())
    }

    /// Handles one message on `topic` (already parsed) with its decoded payload.
    pub fn handle(&mut self, topic: &Topic<'_>, payload: &Payload) -> Vec<NodeEvent> {
        let mut out = Vec::new();
        let device = topic.device.map(str::to_string);
        match topic.kind {
            MessageType::NBirth => {
                let (scope, problems) = Scope::declare(&payload.metrics);
                problems_into(&mut out, "bad_birth", problems);
                self.alive = true;
                self.bd_seq = bd_seq(payload);
                self.devices.clear();
                self.next_seq = payload.seq.map(|s| ((s + 1) % 256) as u8);
                out.push(NodeEvent::Born {
                    device: None,
                    metrics: scope.metrics.clone(),
                });
                let values = updates(&scope, payload, &mut out);
                self.node = Some(scope);
                out.push(NodeEvent::Values {
                    device: None,
                    values,
                });
            }
            MessageType::NDeath => {
                let stale = matches!((self.bd_seq, bd_seq(payload)), (Some(a), Some(b)) if a != b);
                if stale {
                    out.push(NodeEvent::Problem {
                        reason: "stale_death",
                        detail: "NDEATH of an earlier session (bdSeq differs); ignored".into(),
                    });
                } else if self.alive {
                    self.alive = false;
                    self.next_seq = None;
                    self.devices.clear();
                    out.push(NodeEvent::Died { device: None });
                }
            }
            MessageType::DBirth | MessageType::DDeath | MessageType::NData | MessageType::DData => {
                if !self.alive {
                    out.push(NodeEvent::Problem {
                        reason: "no_birth",
                        detail: format!("{} before the node's NBIRTH", topic.kind.as_str()),
                    });
                    out.push(NodeEvent::Rebirth { reason: "no_birth" });
                    return out;
                }
                self.check_seq(payload, &mut out);
                match topic.kind {
                    MessageType::DBirth => {
                        let (scope, problems) = Scope::declare(&payload.metrics);
                        problems_into(&mut out, "bad_birth", problems);
                        out.push(NodeEvent::Born {
                            device: device.clone(),
                            metrics: scope.metrics.clone(),
                        });
                        let values = updates(&scope, payload, &mut out);
                        if let Some(d) = &device {
                            self.devices.insert(d.clone(), scope);
                        }
                        out.push(NodeEvent::Values { device, values });
                    }
                    MessageType::DDeath => {
                        if let Some(d) = &device
                            && self.devices.remove(d).is_some()
                        {
                            out.push(NodeEvent::Died { device });
                        }
                    }
                    _ => {
                        let scope = match &device {
                            None => self.node.as_ref(),
                            Some(d) => self.devices.get(d),
                        };
                        match scope {
                            Some(scope) => {
                                let values = updates(scope, payload, &mut out);
                                out.push(NodeEvent::Values { device, values });
                            }
                            None => {
                                out.push(NodeEvent::Problem {
                                    reason: "no_birth",
                                    detail: format!(
                                        "DDATA of device `{}` without its DBIRTH",
                                        device.as_deref().unwrap_or_default()
                                    ),
                                });
                                out.push(NodeEvent::Rebirth { reason: "no_birth" });
                            }
                        }
                    }
                }
            }
            // Commands are ours; STATE belongs to host applications.
            MessageType::NCmd | MessageType::DCmd | MessageType::State => {}
        }
        out
    }

    fn check_seq(&mut self, payload: &Payload, out: &mut Vec<NodeEvent>) {
        let Some(seq) = payload.seq else {
            out.push(NodeEvent::Problem {
                reason: "no_seq",
                detail: "message without seq".into(),
            });
            return;
        };
        let seq = (seq % 256) as u8;
        if let Some(expected) = self.next_seq
            && seq != expected
        {
            out.push(NodeEvent::Problem {
                reason: "seq_gap",
                detail: format!("seq {seq}, expected {expected}"),
            });
            out.push(NodeEvent::Rebirth { reason: "seq_gap" });
        }
        self.next_seq = Some(seq.wrapping_add(1));
    }
}

fn problems_into(out: &mut Vec<NodeEvent>, reason: &'static str, problems: Vec<String>) {
    out.extend(
        problems
            .into_iter()
            .map(|detail| NodeEvent::Problem { reason, detail }),
    );
}

/// The values of a birth or data message, by the scope's declarations.
fn updates(scope: &Scope, payload: &Payload, out: &mut Vec<NodeEvent>) -> Vec<MetricUpdate> {
    let mut values = Vec::with_capacity(payload.metrics.len());
    for m in &payload.metrics {
        let Some(declared) = scope.lookup(m) else {
            out.push(NodeEvent::Problem {
                reason: "unknown_alias",
                detail: match (&m.name, m.alias) {
                    (Some(n), _) => format!("metric `{n}` not in the birth"),
                    (None, Some(a)) => format!("alias {a} not in the birth"),
                    (None, None) => "metric with neither name nor alias".into(),
                },
            });
            continue;
        };
        values.push(MetricUpdate {
            name: declared.name.clone(),
            value: metric_value(m, m.datatype.unwrap_or(declared.datatype)),
            timestamp_ms: m.timestamp.or(payload.timestamp),
        });
    }
    values
}

#[cfg(test)]
mod tests {
    use super::super::proto::DataType;
    use super::*;

    fn metric(name: Option<&str>, alias: Option<u64>, v: f64) -> Metric {
        Metric {
            name: name.map(str::to_string),
            alias,
            datatype: name.map(|_| DataType::Double as u32),
            value: Some(MetricValue::DoubleValue(v)),
            ..Metric::default()
        }
    }

    fn payload(seq: u64, metrics: Vec<Metric>) -> Payload {
        Payload {
            timestamp: Some(1_000),
            seq: Some(seq),
            metrics,
            ..Payload::default()
        }
    }

    fn t(s: &str) -> Topic<'_> {
        Topic::parse(s).expect("topic")
    }

    #[test]
    fn birth_then_data_by_alias_then_death() {
        let mut n = Node::default();
        let ev = n.handle(
            &t("spBv1.0/G/NBIRTH/N"),
            &payload(0, vec![metric(Some("Temp"), Some(1), 20.0)]),
        );
        assert!(matches!(&ev[0], NodeEvent::Born { metrics, .. } if metrics.len() == 1));
        let ev = n.handle(
            &t("spBv1.0/G/NDATA/N"),
            &payload(1, vec![metric(None, Some(1), 21.0)]),
        );
        assert_eq!(
            ev,
            vec![NodeEvent::Values {
                device: None,
                values: vec![MetricUpdate {
                    name: "Temp".into(),
                    value: Ok(Some(Value::F64(21.0))),
                    timestamp_ms: Some(1_000),
                }],
            }]
        );
        let ev = n.handle(&t("spBv1.0/G/NDEATH/N"), &Payload::default());
        assert_eq!(ev, vec![NodeEvent::Died { device: None }]);
        assert!(!n.alive());
    }

    #[test]
    fn gaps_unknown_aliases_and_data_before_birth_ask_for_rebirth() {
        let mut n = Node::default();
        let ev = n.handle(&t("spBv1.0/G/NDATA/N"), &payload(5, vec![]));
        assert!(ev.contains(&NodeEvent::Rebirth { reason: "no_birth" }));
        n.handle(
            &t("spBv1.0/G/NBIRTH/N"),
            &payload(0, vec![metric(Some("Temp"), Some(1), 20.0)]),
        );
        let ev = n.handle(
            &t("spBv1.0/G/NDATA/N"),
            &payload(3, vec![metric(None, Some(9), 1.0)]),
        );
        assert!(ev.contains(&NodeEvent::Rebirth { reason: "seq_gap" }));
        assert!(ev.iter().any(|e| matches!(
            e,
            NodeEvent::Problem {
                reason: "unknown_alias",
                ..
            }
        )));
        // The sequence continues from the message received.
        let ev = n.handle(&t("spBv1.0/G/NDATA/N"), &payload(4, vec![]));
        assert!(!ev.iter().any(|e| matches!(e, NodeEvent::Rebirth { .. })));
        // seq wraps at 255.
        n.handle(&t("spBv1.0/G/NDATA/N"), &payload(255, vec![]));
        let ev = n.handle(&t("spBv1.0/G/NDATA/N"), &payload(0, vec![]));
        assert!(!ev.iter().any(|e| matches!(e, NodeEvent::Rebirth { .. })));
    }

    #[test]
    fn a_death_of_an_older_session_is_ignored() {
        let bd = |v| Metric {
            name: Some(BD_SEQ.into()),
            datatype: Some(DataType::Int64 as u32),
            value: Some(MetricValue::LongValue(v)),
            ..Metric::default()
        };
        let mut n = Node::default();
        n.handle(&t("spBv1.0/G/NBIRTH/N"), &payload(0, vec![bd(2)]));
        let ev = n.handle(&t("spBv1.0/G/NDEATH/N"), &payload(0, vec![bd(1)]));
        assert!(matches!(
            &ev[0],
            NodeEvent::Problem {
                reason: "stale_death",
                ..
            }
        ));
        assert!(n.alive());
        let ev = n.handle(&t("spBv1.0/G/NDEATH/N"), &payload(0, vec![bd(2)]));
        assert_eq!(ev, vec![NodeEvent::Died { device: None }]);
    }

    #[test]
    fn device_births_data_and_deaths() {
        let mut n = Node::default();
        n.handle(&t("spBv1.0/G/NBIRTH/N"), &payload(0, vec![]));
        let ev = n.handle(
            &t("spBv1.0/G/DDATA/N/D"),
            &payload(1, vec![metric(None, Some(1), 1.0)]),
        );
        assert!(ev.contains(&NodeEvent::Rebirth { reason: "no_birth" }));
        n.handle(
            &t("spBv1.0/G/DBIRTH/N/D"),
            &payload(2, vec![metric(Some("Flow"), Some(1), 3.0)]),
        );
        let ev = n.handle(
            &t("spBv1.0/G/DDATA/N/D"),
            &payload(3, vec![metric(None, Some(1), 4.0)]),
        );
        assert!(
            matches!(&ev[0], NodeEvent::Values { device: Some(d), values } if d == "D" && values.len() == 1)
        );
        let ev = n.handle(&t("spBv1.0/G/DDEATH/N/D"), &payload(4, vec![]));
        assert_eq!(
            ev,
            vec![NodeEvent::Died {
                device: Some("D".into())
            }]
        );
    }
}
