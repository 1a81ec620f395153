//! One connected session and everything that lives as long as it: the server's
//! operation limits and namespaces, the subscriptions, the polled nodes, the
//! bad-node cache, and the task that follows the session's events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opcua::client::Session;
use opcua::types::{
    AttributeId, NodeId, ReadValueId, StatusCode, TimestampsToReturn, VariableId, Variant,
    VariantScalarTypeId,
};
use tokio::sync::Notify;

use super::config::OpcuaConfig;
use super::items::{BadNodes, Items, index};
use crate::domain::QualityReason;
use crate::drivers::{DriverSink, Error};
use crate::telemetry::names;

/// What the server allows per call, lowered to our own caps; learned further when
/// the server refuses (a per-subscription cap shows only that way on most servers).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_call: usize,
    pub per_read: usize,
    pub per_write: usize,
    pub per_browse: usize,
    /// Most monitored items per subscription, when known.
    pub per_subscription: Option<usize>,
}

/// One subscription we created, by publishing interval.
#[derive(Debug, Clone, Copy)]
pub struct Sub {
    pub id: u32,
    pub interval_ms: u64,
    pub items: usize,
    /// The server refused more items on it.
    pub full: bool,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Service-call failures, by service and status code name.
pub fn count_error(service: &'static str, code: StatusCode) {
    metrics::counter!(names::OPCUA_SERVICE_ERRORS, "service" => service, "status" => code.sub_code().name())
        .increment(1);
}

/// Bad-node statuses seen in notifications (on the client library's task), handed to
/// the session task, which parks the nodes.
#[derive(Clone, Default)]
pub struct Reports {
    pub queue: Arc<Mutex<Vec<(u32, StatusCode)>>>,
    pub wake: Arc<Notify>,
}

impl Reports {
    pub fn report(&self, handle: u32, code: StatusCode) {
        lock(&self.queue).push((handle, code));
        self.wake.notify_one();
    }
}

/// A per-tenant gauge of the OPC UA devices.
pub fn ctx_gauge(sink: &DriverSink, name: &'static str) -> metrics::Gauge {
    metrics::gauge!(name, "tenant" => sink.tenant.to_string())
}

/// The state of one connected session, shared by the driver and its tasks.
pub struct Ctx {
    pub config: Arc<OpcuaConfig>,
    pub items: Items,
    pub sink: DriverSink,
    pub session: Arc<Session>,
    pub online: AtomicBool,
    pub limits: Mutex<Limits>,
    pub namespaces: Mutex<Vec<String>>,
    pub bad: Mutex<BadNodes>,
    /// Serialises changes to the subscriptions (an async lock: held across calls).
    pub subs: tokio::sync::Mutex<Vec<Sub>>,
    /// Polled handles by sampling interval.
    pub polls: Mutex<BTreeMap<u64, Vec<u32>>>,
    pub polled: Mutex<HashSet<u32>>,
    pub poll_changed: Notify,
    /// Handles with a monitored item on the server.
    pub monitored: Mutex<HashSet<u32>>,
    /// The scalar type of written nodes, read once per node.
    pub node_types: Mutex<HashMap<u32, VariantScalarTypeId>>,
    /// Nodes a notification reported as bad nodes, for the session task to park.
    pub reports: Reports,
    /// Monitored nodes parked: their monitored items are deleted by the session task.
    pub unmonitor: Mutex<Vec<u32>>,
    /// `connected` or `connecting`, as counted in the sessions gauge.
    gauge_state: Mutex<Option<&'static str>>,
}

impl Ctx {
    pub fn new(
        config: Arc<OpcuaConfig>,
        items: Items,
        sink: DriverSink,
        session: Arc<Session>,
    ) -> Self {
        let grace = Duration::from_millis(config.bad_node_grace_ms);
        Ctx {
            limits: Mutex::new(Limits {
                per_call: config.max_items_per_call,
                per_read: config.max_nodes_per_read,
                per_write: config.max_nodes_per_read,
                per_browse: config.max_nodes_per_read,
                per_subscription: (config.max_items_per_subscription > 0)
                    .then_some(config.max_items_per_subscription),
            }),
            config,
            items,
            sink,
            session,
            online: AtomicBool::new(false),
            namespaces: Mutex::new(Vec::new()),
            bad: Mutex::new(BadNodes::new(grace)),
            subs: tokio::sync::Mutex::new(Vec::new()),
            polls: Mutex::new(BTreeMap::new()),
            polled: Mutex::new(HashSet::new()),
            poll_changed: Notify::new(),
            monitored: Mutex::new(HashSet::new()),
            node_types: Mutex::new(HashMap::new()),
            reports: Reports::default(),
            unmonitor: Mutex::new(Vec::new()),
            gauge_state: Mutex::new(None),
        }
    }

    pub fn online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Moves this session in the sessions gauge (`None`: gone).
    pub fn gauge(&self, state: Option<&'static str>) {
        let mut cur = lock(&self.gauge_state);
        if *cur == state {
            return;
        }
        if let Some(old) = cur.take() {
            metrics::gauge!(names::OPCUA_SESSIONS, "tenant" => self.sink.tenant.to_string(), "state" => old).decrement(1.0);
        }
        if let Some(new) = state {
            metrics::gauge!(names::OPCUA_SESSIONS, "tenant" => self.sink.tenant.to_string(), "state" => new).increment(1.0);
        }
        *cur = state;
    }

    /// Reads the namespace array and the operation limits, and resolves every item's
    /// node. Returns whether the namespaces changed since the last read.
    pub async fn read_server(&self) -> Result<bool, Error> {
        // Two at a time: the server's MaxNodesPerRead is among them.
        let ids = [
            VariableId::Server_NamespaceArray,
            VariableId::Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
            VariableId::Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            VariableId::Server_ServerCapabilities_OperationLimits_MaxNodesPerWrite,
            VariableId::Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
            VariableId::Server_ServerCapabilities_MaxMonitoredItemsPerSubscription,
        ];
        let mut values = Vec::with_capacity(ids.len());
        for pair in ids.chunks(2) {
            let reads: Vec<ReadValueId> = pair
                .iter()
                .map(|v| ReadValueId {
                    node_id: NodeId::from(*v),
                    attribute_id: AttributeId::Value as u32,
                    ..Default::default()
                })
                .collect();
            let got = self
                .session
                .read(&reads, TimestampsToReturn::Neither, 0.0)
                .await
                .map_err(|e| {
                    count_error("read", e.status());
                    Error::Protocol(format!("reading the server's namespaces and limits: {e}"))
                })?;
            values.extend(got);
        }
        let namespaces: Vec<String> = match values.first().and_then(|v| v.value.as_ref()) {
            Some(Variant::Array(a)) => a
                .values
                .iter()
                .map(|v| match v {
                    Variant::String(s) => s.as_ref().to_string(),
                    _ => String::new(),
                })
                .collect(),
            _ => {
                return Err(Error::Protocol(
                    "the server's NamespaceArray is not an array of strings".into(),
                ));
            }
        };
        let limit = |i: usize| -> Option<usize> {
            match values.get(i).and_then(|v| v.value.as_ref()) {
                Some(Variant::UInt32(n)) if *n > 0 => Some(*n as usize),
                _ => None,
            }
        };
        {
            let mut l = lock(&self.limits);
            let c = &self.config;
            l.per_read = limit(1).map_or(c.max_nodes_per_read, |n| n.min(c.max_nodes_per_read));
            l.per_call = limit(2).map_or(c.max_items_per_call, |n| n.min(c.max_items_per_call));
            l.per_write = limit(3).map_or(c.max_nodes_per_read, |n| n.min(c.max_nodes_per_read));
            l.per_browse = limit(4).map_or(c.max_nodes_per_read, |n| n.min(c.max_nodes_per_read));
            let ours = (c.max_items_per_subscription > 0).then_some(c.max_items_per_subscription);
            l.per_subscription = match (limit(5), ours) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tracing::debug!(device = %self.sink.device, limits = ?*l, "OPC UA server limits");
        }
        let changed = {
            let mut ns = lock(&self.namespaces);
            let changed = !ns.is_empty() && *ns != namespaces;
            *ns = namespaces.clone();
            changed
        };
        let mut unresolved = Vec::new();
        for item in self.items.write().iter_mut() {
            match item.address.resolve(&namespaces) {
                Ok(n) => item.node = Some(n),
                Err(e) => {
                    if item.node.is_some() || !changed {
                        tracing::warn!(device = %self.sink.device, tag = %item.tag.spec.name, error = %e, "tag not mapped");
                    }
                    item.node = None;
                    unresolved.push(item.tag.id);
                }
            }
        }
        if !unresolved.is_empty() {
            (self.sink.lost)(unresolved, QualityReason::ConfigError);
        }
        Ok(changed)
    }

    /// Parks `failed` nodes in the bad-node cache, logs each once, and reports their
    /// tags Bad with the code's reason (a Bad sample: such a node often never had a
    /// value, and a status without a value is what the server gave).
    pub fn park(&self, failed: &[(u32, StatusCode)]) {
        if failed.is_empty() {
            return;
        }
        let now = Instant::now();
        let at = crate::domain::Timestamp::now();
        let mut out = Vec::with_capacity(failed.len());
        {
            let items = self.items.read();
            let mut bad = lock(&self.bad);
            for (h, code) in failed {
                let Some(item) = index(*h).and_then(|i| items.get(i)) else {
                    continue;
                };
                if bad.park(*h, *code, now) {
                    tracing::warn!(
                        device = %self.sink.device,
                        tag = %item.tag.spec.name,
                        node = %item.address,
                        status = %code,
                        grace_ms = self.config.bad_node_grace_ms,
                        "node refused; skipped for the grace period, then tried again (logged once)"
                    );
                }
                let reason = super::value::quality(*code).reason();
                out.push(super::value::bad(&item.tag, reason, at));
            }
        }
        ctx_gauge(&self.sink, names::OPCUA_BAD_NODES).increment(out.len() as f64);
        (self.sink.samples)(out);
        {
            let monitored = lock(&self.monitored);
            lock(&self.unmonitor).extend(
                failed
                    .iter()
                    .map(|(h, _)| *h)
                    .filter(|h| monitored.contains(h)),
            );
        }
        self.reports.wake.notify_one();
    }

    /// Adds `handles` to the polled set (by their sampling interval).
    pub fn poll(&self, handles: &[u32]) {
        if handles.is_empty() {
            return;
        }
        let items = self.items.read();
        let mut polls = lock(&self.polls);
        let mut polled = lock(&self.polled);
        let mut added = 0;
        for h in handles {
            let Some(item) = index(*h).and_then(|i| items.get(i)) else {
                continue;
            };
            if polled.insert(*h) {
                polls.entry(item.sampling_ms.max(1)).or_default().push(*h);
                added += 1;
            }
        }
        ctx_gauge(&self.sink, names::OPCUA_POLLED_NODES).increment(f64::from(added));
        drop((polls, polled));
        self.poll_changed.notify_one();
    }
}
