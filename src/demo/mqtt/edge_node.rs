//! The demo's Sparkplug B edge node: node [`SP_NODE`] of group [`SP_GROUP`] with one
//! device, the pump [`SP_DEVICE`]. NBIRTH and DBIRTH on every new session (and on a
//! rebirth request), DDATA by alias every second with the metrics that changed, NDATA
//! with the uptime every five seconds, the pump's `Setpoint` writable by DCMD, and an
//! NDEATH as the MQTT last will, its bdSeq matching the session's NBIRTH.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message as _;
use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::pump::Pump;
use super::{LinkEvent, connect, now_ms, options};
use crate::drivers::mqtt::sparkplug::proto::{DataType, Metric, MetricValue, Payload};
use crate::drivers::mqtt::sparkplug::{self, MessageType, REBIRTH, Topic, topic};

pub const SP_GROUP: &str = "DemoPlant";
pub const SP_NODE: &str = "Edge1";
pub const SP_DEVICE: &str = "Pump1";
/// The birth/death sequence node metric (Int64) of NBIRTH and NDEATH.
pub const BD_SEQ: &str = "bdSeq";
/// Milliseconds since the node started (Int64), in NBIRTH and NDATA.
pub const UPTIME: &str = "Uptime";
pub const METRIC_SPEED: &str = "Speed";
pub const METRIC_RUNNING: &str = "Running";
pub const METRIC_FLOW: &str = "Flow";
pub const METRIC_STARTS: &str = "Starts";
pub const METRIC_SETPOINT: &str = "Setpoint";
pub const METRIC_STATUS: &str = "Status";
/// How often the node publishes DDATA (NDATA every fifth time).
pub const PERIOD: Duration = Duration::from_secs(1);

/// One metric of the pump as its DBIRTH declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    pub name: &'static str,
    /// The alias DDATA uses instead of the name.
    pub alias: u64,
    pub datatype: DataType,
    /// Settable by DCMD.
    pub writable: bool,
    pub eng_unit: &'static str,
}

const fn spec(
    name: &'static str,
    alias: u64,
    datatype: DataType,
    eng_unit: &'static str,
) -> MetricSpec {
    MetricSpec {
        name,
        alias,
        datatype,
        writable: false,
        eng_unit,
    }
}

/// The pump's metrics, in alias order.
pub const PUMP_METRICS: [MetricSpec; 6] = [
    spec(METRIC_SPEED, 1, DataType::Double, "rpm"),
    spec(METRIC_RUNNING, 2, DataType::Boolean, ""),
    spec(METRIC_FLOW, 3, DataType::Float, "m³/h"),
    spec(METRIC_STARTS, 4, DataType::UInt32, ""),
    MetricSpec {
        writable: true,
        ..spec(METRIC_SETPOINT, 5, DataType::Double, "%")
    },
    spec(METRIC_STATUS, 6, DataType::String, ""),
];
const SETPOINT: usize = 4;
/// What a command asks for.
#[derive(Debug, PartialEq)]
enum Reply {
    Births,
    Data(Payload),
    Nothing,
}

/// The node's session state and its messages.
#[derive(Debug)]
struct EdgeNode {
    /// The next message's seq (0-255; NBIRTH resets it).
    seq: u8,
    /// The session's bdSeq, shared with the connection task that sets the last will.
    bd_seq: Arc<AtomicU64>,
    started: Instant,
    pump: Pump,
    /// The values last published, so that DDATA carries only the changed ones.
    sent: Option<[MetricValue; 6]>,
}

impl EdgeNode {
    fn new(bd_seq: Arc<AtomicU64>) -> Self {
        EdgeNode {
            seq: 0,
            bd_seq,
            started: Instant::now(),
            pump: Pump::new(),
            sent: None,
        }
    }

    fn next_seq(&mut self) -> Option<u64> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        Some(u64::from(seq))
    }

    fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn nbirth(&mut self, now: u64) -> Payload {
        self.seq = 0;
        let bd_seq = self.bd_seq.load(Ordering::SeqCst);
        let metrics = vec![
            named(BD_SEQ, DataType::Int64, MetricValue::LongValue(bd_seq), now),
            named(
                REBIRTH,
                DataType::Boolean,
                MetricValue::BooleanValue(false),
                now,
            ),
            named(
                UPTIME,
                DataType::Int64,
                MetricValue::LongValue(self.uptime_ms()),
                now,
            ),
        ];
        self.payload(now, metrics)
    }

    fn dbirth(&mut self, now: u64) -> Payload {
        let values = self.pump.values();
        let metrics = PUMP_METRICS
            .iter()
            .zip(values.iter().cloned())
            .map(|(s, v)| Metric {
                alias: Some(s.alias),
                ..named(s.name, s.datatype, v, now)
            })
            .collect();
        self.sent = Some(values);
        self.payload(now, metrics)
    }

    /// DDATA with the metrics that changed since the last message and those in `force`
    /// (indexes into [`PUMP_METRICS`]); None when there is nothing to send.
    fn ddata(&mut self, now: u64, force: &[usize]) -> Option<Payload> {
        let values = self.pump.values();
        let metrics: Vec<Metric> = values
            .iter()
            .enumerate()
            .filter(|(i, v)| force.contains(i) || self.sent.as_ref().is_none_or(|s| s[*i] != **v))
            .map(|(i, v)| Metric {
                alias: Some(PUMP_METRICS[i].alias),
                timestamp: Some(now),
                value: Some(v.clone()),
                ..Metric::default()
            })
            .collect();
        self.sent = Some(values);
        (!metrics.is_empty()).then(|| self.payload(now, metrics))
    }

    fn ndata(&mut self, now: u64) -> Payload {
        let uptime = MetricValue::LongValue(self.uptime_ms());
        let metrics = vec![named(UPTIME, DataType::Int64, uptime, now)];
        self.payload(now, metrics)
    }

    fn payload(&mut self, now: u64, metrics: Vec<Metric>) -> Payload {
        Payload {
            timestamp: Some(now),
            metrics,
            seq: self.next_seq(),
            ..Payload::default()
        }
    }

    /// Handles an NCMD (rebirth) or DCMD (`Setpoint`, by name or alias).
    fn command(&mut self, topic: &str, bytes: &[u8], now: u64) -> Reply {
        let (Some(t), Ok(payload)) = (Topic::parse(topic), sparkplug::decode(bytes)) else {
            tracing::warn!(topic, "demo edge node ignored an undecodable command");
            return Reply::Nothing;
        };
        match (t.kind, t.device) {
            (MessageType::NCmd, None) => {
                let rebirth = payload.metrics.iter().any(|m| {
                    m.name.as_deref() == Some(REBIRTH)
                        && m.value == Some(MetricValue::BooleanValue(true))
                });
                if rebirth {
                    tracing::info!("demo edge node asked to rebirth");
                    return Reply::Births;
                }
            }
            (MessageType::DCmd, Some(SP_DEVICE)) => {
                let spec = &PUMP_METRICS[SETPOINT];
                let setpoint = payload
                    .metrics
                    .iter()
                    .filter(|m| m.name.as_deref() == Some(spec.name) || m.alias == Some(spec.alias))
                    .filter_map(|m| {
                        let dt = m.datatype.unwrap_or(spec.datatype as u32);
                        sparkplug::metric_value(m, dt).ok().flatten()?.as_f64()
                    })
                    .rfind(|v| v.is_finite());
                if let Some(v) = setpoint {
                    tracing::info!(setpoint = v, "demo edge node applied a setpoint");
                    self.pump.setpoint = v;
                    return self
                        .ddata(now, &[SETPOINT])
                        .map_or(Reply::Nothing, Reply::Data);
                }
            }
            _ => {}
        }
        tracing::warn!(topic, "demo edge node ignored a command");
        Reply::Nothing
    }
}

fn named(name: &str, datatype: DataType, value: MetricValue, now: u64) -> Metric {
    Metric {
        name: Some(name.to_string()),
        timestamp: Some(now),
        datatype: Some(datatype as u32),
        value: Some(value),
        ..Metric::default()
    }
}

/// The NDEATH of session `bd_seq`: the node's last will.
fn death(bd_seq: u64) -> LastWill {
    let payload = Payload {
        timestamp: Some(now_ms()),
        metrics: vec![named(
            BD_SEQ,
            DataType::Int64,
            MetricValue::LongValue(bd_seq),
            now_ms(),
        )],
        ..Payload::default()
    };
    let topic = topic(SP_GROUP, MessageType::NDeath, SP_NODE, None);
    LastWill::new(topic, payload.encode_to_vec(), QoS::AtLeastOnce, false)
}

/// Starts the edge node: its connection task and its publishing task.
pub(super) fn spawn(host: &str, port: u16) -> Vec<JoinHandle<()>> {
    let bd_seq = Arc::new(AtomicU64::new(0));
    let mut opts: MqttOptions = options("edge1", host, port);
    opts.set_last_will(death(0));
    let shared = bd_seq.clone();
    // A new session gets a new bdSeq, and its last will the matching NDEATH.
    let on_lost = move |o: &mut MqttOptions| {
        let next = (shared.load(Ordering::SeqCst) + 1) % 256;
        shared.store(next, Ordering::SeqCst);
        o.set_last_will(death(next));
    };
    let (client, events, link) = connect(opts, on_lost);
    vec![link, tokio::spawn(run(client, events, bd_seq))]
}

async fn run(client: AsyncClient, mut events: mpsc::Receiver<LinkEvent>, bd_seq: Arc<AtomicU64>) {
    let mut node = EdgeNode::new(bd_seq);
    let mut connected = false;
    let mut ticks = 0u64;
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                None => return,
                Some(LinkEvent::Up) => {
                    connected = true;
                    let filters = [
                        topic(SP_GROUP, MessageType::NCmd, SP_NODE, None),
                        topic(SP_GROUP, MessageType::DCmd, SP_NODE, Some(SP_DEVICE)),
                    ]
                    .map(|t| SubscribeFilter::new(t, QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        tracing::warn!(error = %e, "demo edge node cannot subscribe");
                    }
                    births(&client, &mut node);
                }
                Some(LinkEvent::Down) => connected = false,
                Some(LinkEvent::Message(p)) => match node.command(&p.topic, &p.payload, now_ms()) {
                    Reply::Births => births(&client, &mut node),
                    Reply::Data(d) => publish(&client, MessageType::DData, d),
                    Reply::Nothing => {}
                },
            },
            _ = tick.tick() => {
                if !connected {
                    continue;
                }
                ticks += 1;
                node.pump.step(node.started.elapsed().as_secs_f64());
                if let Some(d) = node.ddata(now_ms(), &[]) {
                    publish(&client, MessageType::DData, d);
                }
                if ticks % 5 == 0 {
                    let n = node.ndata(now_ms());
                    publish(&client, MessageType::NData, n);
                }
            }
        }
    }
}

fn births(client: &AsyncClient, node: &mut EdgeNode) {
    let now = now_ms();
    let nbirth = node.nbirth(now);
    publish(client, MessageType::NBirth, nbirth);
    let dbirth = node.dbirth(now);
    publish(client, MessageType::DBirth, dbirth);
}

fn publish(client: &AsyncClient, kind: MessageType, payload: Payload) {
    let device = matches!(kind, MessageType::DBirth | MessageType::DData).then_some(SP_DEVICE);
    let topic = topic(SP_GROUP, kind, SP_NODE, device);
    if let Err(e) = client.try_publish(topic, QoS::AtMostOnce, false, payload.encode_to_vec()) {
        tracing::debug!(error = %e, "demo edge node dropped a message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> EdgeNode {
        EdgeNode::new(Arc::new(AtomicU64::new(3)))
    }

    #[test]
    fn births_declare_names_aliases_and_types_and_data_uses_aliases() {
        let mut n = node();
        let nb = n.nbirth(1);
        assert_eq!(nb.seq, Some(0));
        assert_eq!(nb.metrics[0].name.as_deref(), Some(BD_SEQ));
        assert_eq!(nb.metrics[0].value, Some(MetricValue::LongValue(3)));
        let db = n.dbirth(1);
        assert_eq!(db.seq, Some(1));
        for (m, s) in db.metrics.iter().zip(PUMP_METRICS.iter()) {
            assert_eq!(m.name.as_deref(), Some(s.name));
            assert_eq!(m.alias, Some(s.alias));
            assert_eq!(m.datatype, Some(s.datatype as u32));
        }
        assert_eq!(n.ddata(2, &[]), None, "nothing changed");
        n.pump.step(0.0);
        let dd = n.ddata(2, &[]).expect("the pump started");
        assert_eq!(dd.seq, Some(2));
        assert!(
            dd.metrics
                .iter()
                .all(|m| m.name.is_none() && m.alias.is_some())
        );
    }

    #[test]
    fn seq_wraps_and_rebirth_restarts_it() {
        let mut n = node();
        n.nbirth(0);
        for _ in 0..300 {
            n.ndata(0);
        }
        assert_eq!(n.ndata(0).seq, Some(301 % 256));
        let rebirth = sparkplug::rebirth(5);
        let ncmd = topic(SP_GROUP, MessageType::NCmd, SP_NODE, None);
        assert_eq!(n.command(&ncmd, &rebirth, 5), Reply::Births);
        assert_eq!(n.nbirth(5).seq, Some(0));
    }

    #[test]
    fn dcmd_sets_the_setpoint_and_answers_with_ddata() {
        let mut n = node();
        n.nbirth(0);
        n.dbirth(0);
        let dcmd = topic(SP_GROUP, MessageType::DCmd, SP_NODE, Some(SP_DEVICE));
        let cmd = sparkplug::command(
            METRIC_SETPOINT,
            DataType::Double as u32,
            MetricValue::DoubleValue(55.0),
            9,
        );
        let Reply::Data(d) = n.command(&dcmd, &cmd, 9) else {
            panic!("expected DDATA");
        };
        let sp = d
            .metrics
            .iter()
            .find(|m| m.alias == Some(5))
            .expect("setpoint");
        assert_eq!(sp.value, Some(MetricValue::DoubleValue(55.0)));
        assert_eq!(n.command(&dcmd, b"\xff\xff", 9), Reply::Nothing);
    }
}
