//! The OPC UA driver: one session per device, its tags monitored by subscriptions
//! (or polled in bulk), writes converted to the node's data type, browse and import.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use opcua::client::Client;
use opcua::types::{AttributeId, DataValue, StatusCode, SubStatusCode, Variant, WriteValue};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::address::OpcuaAddress;
use super::config::OpcuaConfig;
use super::conn::{Ctx, count_error, ctx_gauge, lock};
use super::items::{Item, Items, handle};
use super::session::{self, SessionEvent};
use super::value;
use crate::domain::{OpenedSecurity, Tag, TagId, Value};
use crate::drivers::{
    BrowsedNode, Driver, DriverSink, Error, ImportedNode, LinkEvent, PlanSummary, WriteReport,
};
use crate::telemetry::names;

struct Conn {
    ctx: Arc<Ctx>,
    tasks: Vec<JoinHandle<()>>,
}

pub struct OpcuaDriver {
    config: Arc<OpcuaConfig>,
    security: OpenedSecurity,
    items: Items,
    by_tag: HashMap<TagId, u32>,
    default_ms: u64,
    /// Built once per driver (the first build may generate the key pair).
    client: Option<Client>,
    /// Monitored items per call the client re-creates subscriptions with.
    client_chunk: usize,
    conn: Option<Conn>,
}

impl OpcuaDriver {
    pub fn new(config: OpcuaConfig, security: OpenedSecurity) -> Self {
        let chunk = config.max_items_per_call;
        OpcuaDriver {
            config: Arc::new(config),
            security,
            items: Items::default(),
            by_tag: HashMap::new(),
            default_ms: 1_000,
            client: None,
            client_chunk: chunk,
            conn: None,
        }
    }

    fn ctx(&self) -> Result<&Arc<Ctx>, Error> {
        match &self.conn {
            Some(c) if c.ctx.online() => Ok(&c.ctx),
            _ => Err(Error::Disconnected("OPC UA session not connected".into())),
        }
    }

    fn map(&mut self, tags: &[Tag]) -> Result<Vec<u32>, Error> {
        let mut parsed = Vec::with_capacity(tags.len());
        for t in tags {
            let a = OpcuaAddress::parse(&t.spec.address).map_err(|reason| Error::Address {
                tag: t.spec.name.clone(),
                address: t.spec.address.clone(),
                reason,
            })?;
            parsed.push(Item::new(t.clone(), a, &self.config, self.default_ms));
        }
        let mut items = self.items.write();
        let mut handles = Vec::with_capacity(parsed.len());
        for item in parsed {
            let h = match self.by_tag.get(&item.tag.id) {
                Some(h) => *h,
                None => {
                    items.push(item.clone());
                    handle(items.len() - 1)
                }
            };
            self.by_tag.insert(item.tag.id, h);
            handles.push(h);
        }
        Ok(handles)
    }

    async fn client(&mut self, session_name: String) -> Result<Client, Error> {
        if let Some(c) = self.client.take() {
            return Ok(c);
        }
        let config = self.config.clone();
        let chunk = self.client_chunk;
        tokio::task::spawn_blocking(move || session::build_client(&config, &session_name, chunk))
            .await
            .map_err(|e| Error::Config(format!("building the OPC UA client: {e}")))?
    }

    /// Opens a session and waits for its first connect.
    async fn open(
        &mut self,
        sink: &DriverSink,
    ) -> Result<
        (
            Arc<Ctx>,
            Vec<JoinHandle<()>>,
            mpsc::UnboundedReceiver<SessionEvent>,
        ),
        Error,
    > {
        let name = format!("thermacore {}/{}", sink.tenant, sink.device);
        let mut client = self.client(name).await?;
        let identity = session::identity(&self.config, &self.security)?;
        let opened = session::open(&mut client, &self.config, identity).await;
        self.client = Some(client);
        let (session, event_loop) = opened?;
        let (first_tx, first_rx) = oneshot::channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let driving = tokio::spawn(session::drive(event_loop, first_tx, ev_tx));
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let first = tokio::time::timeout(timeout, first_rx).await;
        let code = match first {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(code))) => Some(code),
            Ok(Err(_)) => Some(StatusCode::BadUnexpectedError),
            Err(_) => Some(StatusCode::BadTimeout),
        };
        if let Some(code) = code {
            driving.abort();
            count_error("connect", code);
            return Err(session::connect_error(&self.config, code));
        }
        let ctx = Arc::new(Ctx::new(
            self.config.clone(),
            self.items.clone(),
            sink.clone(),
            session,
        ));
        ctx.online.store(true, Ordering::Release);
        if let Err(e) = ctx.read_server().await {
            close(&ctx, &[driving]).await;
            return Err(e);
        }
        Ok((ctx, vec![driving], ev_rx))
    }
}

/// Closes the session (so that the server frees it at once, not at its timeout),
/// then stops the tasks that serve it, the event loop last.
async fn close(ctx: &Ctx, tasks: &[JoinHandle<()>]) {
    ctx.online.store(false, Ordering::Release);
    for t in tasks.iter().skip(1) {
        t.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ctx.session.disconnect()).await;
    for t in tasks.iter().take(1) {
        t.abort();
    }
}

#[async_trait]
impl Driver for OpcuaDriver {
    fn plan(&mut self, tags: &[Tag], default_period_ms: u64) -> Result<PlanSummary, Error> {
        self.default_ms = default_period_ms.max(1);
        self.map(tags)?;
        // Pushed (subscriptions) or polled by the driver itself: no poll groups for
        // the device actor. A session loss comes as a link event, so values never
        // turn stale for want of a change.
        Ok(PlanSummary {
            by_exception: true,
            ..PlanSummary::default()
        })
    }

    fn manages_link(&self) -> bool {
        true
    }

    fn reconnect_backoff_ms(&self) -> Option<(u64, u64)> {
        Some((self.config.reconnect_min_ms, self.config.reconnect_max_ms))
    }

    fn add_tags(&mut self, tags: &[Tag]) -> Result<(), Error> {
        let handles = self.map(tags)?;
        if let Some(conn) = &self.conn {
            let ctx = conn.ctx.clone();
            let (poll, subscribe): (Vec<u32>, Vec<u32>) = {
                let items = ctx.items.read();
                handles.iter().partition(|h| {
                    super::items::index(**h)
                        .and_then(|i| items.get(i))
                        .is_some_and(|i| i.poll)
                })
            };
            tokio::spawn(async move {
                if let Err(e) = ctx.read_server().await {
                    tracing::warn!(device = %ctx.sink.device, error = %e, "new tags not mapped");
                    return;
                }
                ctx.poll(&poll);
                if let Err(e) = ctx.subscribe_and_read(subscribe).await {
                    tracing::warn!(device = %ctx.sink.device, error = %e, "new tags not subscribed");
                }
            });
        }
        Ok(())
    }

    async fn connect(&mut self, sink: DriverSink) -> Result<(), Error> {
        if self.conn.is_some() {
            return Ok(());
        }
        let (mut ctx, mut tasks, mut events) = self.open(&sink).await?;
        let learned = lock(&ctx.limits).per_call;
        if learned < self.client_chunk {
            // async-opcua re-creates monitored items after a server restart in calls
            // of the size it was built with: build it again with the server's limit.
            tracing::info!(device = %sink.device, per_call = learned, "rebuilding the OPC UA client for the server's MaxMonitoredItemsPerCall");
            close(&ctx, &tasks).await;
            self.client = None;
            self.client_chunk = learned;
            (ctx, tasks, events) = self.open(&sink).await?;
        }
        let (poll, subscribe): (Vec<u32>, Vec<u32>) = {
            let items = self.items.read();
            (0..items.len())
                .map(handle)
                .partition(|h| items[(*h - 1) as usize].poll)
        };
        ctx.poll(&poll);
        if let Err(e) = ctx.subscribe(subscribe).await {
            close(&ctx, &tasks).await;
            return Err(e);
        }
        ctx.refresh().await;
        tasks.push(tokio::spawn(ctx.clone().follow(events)));
        tasks.push(tokio::spawn(ctx.clone().poller()));
        ctx.gauge(Some("connected"));
        (sink.link)(LinkEvent::Connected);
        self.conn = Some(Conn { ctx, tasks });
        Ok(())
    }

    async fn write(&mut self, tag: &Tag, v: &Value) -> Result<WriteReport, Error> {
        let ctx = self.ctx()?.clone();
        let h = *self.by_tag.get(&tag.id).ok_or_else(|| {
            Error::Config(format!("tag `{}` is not on this device", tag.spec.name))
        })?;
        let node = {
            let items = ctx.items.read();
            super::items::index(h)
                .and_then(|i| items.get(i))
                .and_then(|i| i.node.clone())
        }
        .ok_or_else(|| Error::Address {
            tag: tag.spec.name.clone(),
            address: tag.spec.address.clone(),
            reason: "the server has no such namespace".into(),
        })?;
        let cached = lock(&ctx.node_types).get(&h).copied();
        let scalar = match cached {
            Some(s) => s,
            None => {
                let dv = ctx
                    .read_attribute(std::slice::from_ref(&node), AttributeId::DataType)
                    .await?;
                let declared = match dv.first().and_then(|d| d.value.as_ref()) {
                    Some(Variant::NodeId(id)) => value::scalar_type(id),
                    _ => None,
                };
                let scalar = match declared {
                    Some(s) => s,
                    // An abstract type (Number, BaseDataType): the current value's.
                    None => ctx
                        .read_attribute(std::slice::from_ref(&node), AttributeId::Value)
                        .await?
                        .first()
                        .and_then(|d| d.value.as_ref())
                        .and_then(Variant::scalar_type_id)
                        .ok_or_else(|| {
                            Error::Refused(format!(
                                "tag `{}`: the node's data type cannot be written",
                                tag.spec.name
                            ))
                        })?,
                };
                lock(&ctx.node_types).insert(h, scalar);
                scalar
            }
        };
        let variant = value::to_variant(v, tag, scalar).map_err(|reason| Error::BadValue {
            tag: tag.spec.name.clone(),
            value: v.to_json().to_string(),
            reason,
        })?;
        let write = WriteValue {
            node_id: node,
            attribute_id: AttributeId::Value as u32,
            index_range: Default::default(),
            value: DataValue {
                value: Some(variant),
                ..Default::default()
            },
        };
        let codes = ctx.session.write(&[write]).await.map_err(|e| {
            count_error("write", e.status());
            match e.status().sub_code() {
                SubStatusCode::BadTimeout => Error::Timeout(self.config.request_timeout_ms),
                _ => Error::Disconnected(format!("write: {e}")),
            }
        })?;
        let code = codes
            .first()
            .copied()
            .unwrap_or(StatusCode::BadUnexpectedError);
        if code.is_good() {
            return Ok(WriteReport { confirmed: None });
        }
        count_error("write", code);
        Err(match code.sub_code() {
            SubStatusCode::BadNotWritable | SubStatusCode::BadUserAccessDenied => {
                Error::NotWritable(format!("{} ({code})", tag.spec.name))
            }
            SubStatusCode::BadTypeMismatch | SubStatusCode::BadOutOfRange => Error::BadValue {
                tag: tag.spec.name.clone(),
                value: v.to_json().to_string(),
                reason: format!("the server refused it ({code})"),
            },
            _ => Error::Refused(format!("{code}")),
        })
    }

    async fn disconnect(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let ctx = conn.ctx;
        close(&ctx, &conn.tasks).await;
        ctx.gauge(None);
        ctx_gauge(&ctx.sink, names::OPCUA_MONITORED_ITEMS)
            .decrement(lock(&ctx.monitored).len() as f64);
        ctx_gauge(&ctx.sink, names::OPCUA_POLLED_NODES).decrement(lock(&ctx.polled).len() as f64);
        ctx_gauge(&ctx.sink, names::OPCUA_BAD_NODES).decrement(lock(&ctx.bad).len() as f64);
    }

    async fn browse(&mut self, node: Option<&str>) -> Result<Vec<BrowsedNode>, Error> {
        self.ctx()?.clone().browse(node).await
    }

    async fn import(&mut self, nodes: &[String]) -> Result<Vec<ImportedNode>, Error> {
        self.ctx()?.clone().import(nodes).await
    }
}

impl Drop for OpcuaDriver {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            for t in &conn.tasks {
                t.abort();
            }
            conn.ctx.gauge(None);
        }
    }
}
