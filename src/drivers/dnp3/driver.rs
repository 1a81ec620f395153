//! The DNP3 driver: one master channel and association per outstation, the crate's
//! own connect strategy (observed through its link listener), integrity and class
//! polls on our schedule, unsolicited responses, and commands.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dnp3::app::{ConnectStrategy, Timeout, Variation};
use dnp3::link::{EndpointAddress, LinkErrorMode};
use dnp3::master::{
    AssociationConfig, AssociationHandle, AssociationHandler, AssociationInformation, Classes,
    EventClasses, MasterChannel, MasterChannelConfig, ReadHeader, ReadRequest, TimeSyncProcedure,
};
use dnp3::tcp::EndpointList;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::address::{CommandMode, PointAddress};
use super::command;
use super::config::{AnalogVariation, Dnp3Config, TimeSync};
use super::handler::{Handler, Health, LinkListener, Points};
use crate::domain::{OpenedSecurity, Tag, TagId, Value};
use crate::drivers::{Driver, DriverSink, Error, PlanSummary, WriteReport};
use crate::telemetry::names;

struct Conn {
    /// The channel's task lives while a handle does (it ends when every one is dropped).
    channel: MasterChannel,
    association: AssociationHandle,
    health: Arc<Health>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub struct Dnp3Driver {
    config: Arc<Dnp3Config>,
    security: OpenedSecurity,
    tags: Vec<(Tag, PointAddress)>,
    outputs: HashMap<TagId, PointAddress>,
    conn: Option<Conn>,
}

/// The crate's callbacks for time synchronisation: the system clock.
struct Clock;
impl AssociationHandler for Clock {}

/// Task notifications: the driver's own polls report their outcomes themselves.
struct Info;
impl AssociationInformation for Info {}

impl Dnp3Driver {
    pub fn new(config: Dnp3Config, security: OpenedSecurity) -> Self {
        Dnp3Driver {
            config: Arc::new(config),
            security,
            tags: Vec::new(),
            outputs: HashMap::new(),
            conn: None,
        }
    }

    fn label(&self) -> String {
        format!(
            "dnp3 {} (outstation {})",
            self.config.endpoint, self.config.outstation_address
        )
    }

    fn association_config(&self) -> Result<AssociationConfig, Error> {
        let c = &self.config;
        let unsol = if c.unsolicited {
            EventClasses::all()
        } else {
            EventClasses::none()
        };
        // Always switch unsolicited reporting off first (an outstation may have it on
        // from a previous master), then on again after the integrity poll if wanted.
        // The integrity poll at connect is the driver's own (it counts and reports it).
        let mut a = AssociationConfig::new(
            EventClasses::all(),
            unsol,
            Classes::none(),
            // Without unsolicited reporting, events the outstation announces in its
            // IIN are read at once.
            if c.unsolicited {
                EventClasses::none()
            } else {
                EventClasses::all()
            },
        );
        a.response_timeout = Timeout::from_millis(c.response_timeout_ms)
            .map_err(|e| Error::Config(format!("response_timeout_ms: {e}")))?;
        a.auto_time_sync = match c.time_sync {
            TimeSync::Lan => Some(TimeSyncProcedure::Lan),
            TimeSync::NonLan => Some(TimeSyncProcedure::NonLan),
            TimeSync::None => None,
        };
        a.keep_alive_timeout =
            (c.keep_alive_ms > 0).then(|| Duration::from_millis(c.keep_alive_ms));
        a.auto_integrity_scan_on_buffer_overflow = true;
        Ok(a)
    }

    fn spawn_channel(&self, health: &Arc<Health>) -> Result<MasterChannel, Error> {
        let c = &self.config;
        let master = EndpointAddress::try_new(c.master_address)
            .map_err(|e| Error::Config(format!("master_address {}: {e}", c.master_address)))?;
        let endpoints = EndpointList::new(c.endpoint.clone(), &c.failover_endpoints);
        let strategy = ConnectStrategy::new(
            Duration::from_millis(c.reconnect_min_ms),
            Duration::from_millis(c.reconnect_max_ms),
            Duration::from_millis(c.reconnect_delay_ms),
        );
        let listener = Box::new(LinkListener {
            health: health.clone(),
        });
        let config = MasterChannelConfig::new(master);
        match &self.security.tls {
            None if self.security.require_tls => Err(Error::Config(
                "require_tls is set but the device has no [security.tls] settings".into(),
            )),
            None => Ok(dnp3::tcp::spawn_master_tcp_client(
                LinkErrorMode::Close,
                config,
                endpoints,
                strategy,
                listener,
            )),
            Some(t) => {
                let (Some(ca), Some(cert), Some(key)) = (&t.ca_file, &t.cert_file, &t.key_file)
                else {
                    return Err(Error::Config(
                        "DNP3 over TLS needs tls.ca_file, tls.cert_file and tls.key_file".into(),
                    ));
                };
                let password = t.key_password.as_ref().map(|p| p.expose().to_string());
                let (ca, cert, key) = (Path::new(ca), Path::new(cert), Path::new(key.expose()));
                let min = dnp3::tcp::tls::MinTlsVersion::V12;
                let tls = if c.tls_self_signed {
                    dnp3::tcp::tls::TlsClientConfig::self_signed(
                        ca,
                        cert,
                        key,
                        password.as_deref(),
                        min,
                    )
                } else {
                    let host = c
                        .endpoint
                        .rsplit_once(':')
                        .map_or(c.endpoint.as_str(), |(h, _)| h);
                    let name = c
                        .tls_server_name
                        .clone()
                        .unwrap_or_else(|| host.to_string());
                    dnp3::tcp::tls::TlsClientConfig::full_pki(
                        Some(name),
                        ca,
                        cert,
                        key,
                        password.as_deref(),
                        min,
                    )
                }
                .map_err(|e| {
                    Error::Config(format!(
                        "the TLS files (ca_file, cert_file, key_file) could not be used: {e}"
                    ))
                })?;
                Ok(dnp3::tcp::tls::spawn_master_tls_client(
                    LinkErrorMode::Close,
                    config,
                    endpoints,
                    strategy,
                    listener,
                    tls,
                ))
            }
        }
    }

    /// The integrity poll: every event class, then the static values (class 0, or
    /// each point type with analogs in the preferred encoding).
    fn integrity_request(&self) -> ReadRequest {
        let analog = match self.config.analog_variation {
            AnalogVariation::Any => return ReadRequest::class_scan(Classes::all()),
            AnalogVariation::Float => Variation::Group30Var5,
            AnalogVariation::I32 => Variation::Group30Var1,
            AnalogVariation::I16 => Variation::Group30Var2,
        };
        let mut headers: Vec<ReadHeader> = [
            Variation::Group60Var2,
            Variation::Group60Var3,
            Variation::Group60Var4,
            Variation::Group1Var0,
            Variation::Group3Var0,
            Variation::Group10Var0,
            Variation::Group20Var0,
            Variation::Group21Var0,
        ]
        .into_iter()
        .map(ReadHeader::all_objects)
        .collect();
        headers.push(ReadHeader::all_objects(analog));
        headers.push(ReadHeader::all_objects(Variation::Group40Var0));
        ReadRequest::multiple_headers(&headers)
    }

    fn conn(&mut self) -> Result<&mut Conn, Error> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Disconnected("the DNP3 master is not running".into()))
    }
}

/// One poll on its period (and on demand): the class it reads, and what came of it.
struct Poll {
    class: &'static str,
    period: Duration,
    request: ReadRequest,
    demand: Option<mpsc::UnboundedReceiver<()>>,
}

async fn run_poll(
    mut assoc: AssociationHandle,
    mut poll: Poll,
    health: Arc<Health>,
    timeout_ms: u64,
) {
    let mut next = tokio::time::Instant::now() + poll.period;
    loop {
        match poll.demand.as_mut() {
            Some(demand) => tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                got = demand.recv() => {
                    if got.is_none() {
                        return;
                    }
                    // Demands that piled up meanwhile are served by this one poll.
                    while demand.try_recv().is_ok() {}
                }
            },
            None => tokio::time::sleep_until(next).await,
        }
        next = tokio::time::Instant::now() + poll.period;
        let started = Instant::now();
        let integrity = poll.demand.is_some();
        if integrity {
            health.integrity_running(true);
        }
        let result = assoc.read(poll.request.clone()).await;
        if integrity {
            health.integrity_running(false);
        }
        metrics::histogram!(names::DNP3_REQUEST_SECONDS, "kind" => "poll")
            .record(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(()) => {
                health.answered();
                "ok".to_string()
            }
            Err(e) => {
                let answered = command::outstation_answered(&e);
                let (err, outcome) = command::task_error(e, timeout_ms);
                match outcome.as_str() {
                    "timeout" => health.silent(format!(
                        "no response to the {} poll within {timeout_ms} ms",
                        poll.class
                    )),
                    "offline" => {}
                    _ => {
                        tracing::warn!(device = %health.sink().device, class = poll.class, error = %err, "DNP3 poll failed");
                        if answered {
                            health.answered();
                        }
                    }
                }
                outcome
            }
        };
        metrics::counter!(names::DNP3_POLLS, "class" => poll.class, "outcome" => outcome)
            .increment(1);
    }
}

#[async_trait]
impl Driver for Dnp3Driver {
    fn plan(&mut self, tags: &[Tag], _default_period_ms: u64) -> Result<PlanSummary, Error> {
        let mut parsed = Vec::with_capacity(tags.len());
        let mut outputs = HashMap::new();
        for t in tags {
            let a = PointAddress::parse(&t.spec.address)
                .and_then(|a| a.check(t.spec.data_type, t.spec.writable).map(|()| a))
                .map_err(|reason| Error::Address {
                    tag: t.spec.name.clone(),
                    address: t.spec.address.clone(),
                    reason,
                })?;
            if t.spec.writable {
                outputs.insert(t.id, a.clone());
            }
            parsed.push((t.clone(), a));
        }
        self.tags = parsed;
        self.outputs = outputs;
        // The outstation reports changes (events) and the integrity poll refreshes
        // everything: no poll groups, and tags do not turn stale between changes.
        Ok(PlanSummary {
            groups: Vec::new(),
            tag_groups: Vec::new(),
            by_exception: true,
        })
    }

    fn manages_link(&self) -> bool {
        true
    }

    fn reconnect_backoff_ms(&self) -> Option<(u64, u64)> {
        Some((self.config.reconnect_min_ms, self.config.reconnect_max_ms))
    }

    async fn connect(&mut self, sink: DriverSink) -> Result<(), Error> {
        self.disconnect().await;
        let (demand_tx, demand_rx) = mpsc::unbounded_channel();
        let health = Health::new(sink, demand_tx);
        let points = Arc::new(Points::new(&self.tags));
        let assoc_config = self.association_config()?;
        let outstation = EndpointAddress::try_new(self.config.outstation_address).map_err(|e| {
            Error::Config(format!(
                "outstation_address {}: {e}",
                self.config.outstation_address
            ))
        })?;
        let mut channel = self.spawn_channel(&health)?;
        let association = channel
            .add_association(
                outstation,
                assoc_config,
                Box::new(Handler::new(points, health.clone())),
                Box::new(Clock),
                Box::new(Info),
            )
            .await
            .map_err(|e| Error::Config(format!("DNP3 association: {e}")))?;
        let c = &self.config;
        let mut polls = vec![Poll {
            class: "integrity",
            period: Duration::from_secs(c.integrity_poll_s),
            request: self.integrity_request(),
            demand: Some(demand_rx),
        }];
        for (class, ms, events) in [
            (
                "class1",
                c.class1_poll_ms,
                EventClasses::new(true, false, false),
            ),
            (
                "class2",
                c.class2_poll_ms,
                EventClasses::new(false, true, false),
            ),
            (
                "class3",
                c.class3_poll_ms,
                EventClasses::new(false, false, true),
            ),
        ] {
            if ms > 0 {
                polls.push(Poll {
                    class,
                    period: Duration::from_millis(ms),
                    request: ReadRequest::class_scan(Classes::new(false, events)),
                    demand: None,
                });
            }
        }
        let tasks = polls
            .into_iter()
            .map(|p| {
                tokio::spawn(run_poll(
                    association.clone(),
                    p,
                    health.clone(),
                    c.response_timeout_ms,
                ))
            })
            .collect();
        channel
            .enable()
            .await
            .map_err(|_| Error::Disconnected("the DNP3 master channel stopped".into()))?;
        tracing::debug!(device = %self.label(), "DNP3 master enabled");
        self.conn = Some(Conn {
            channel,
            association,
            health,
            tasks,
        });
        Ok(())
    }

    async fn write(&mut self, tag: &Tag, value: &Value) -> Result<WriteReport, Error> {
        let point = self
            .outputs
            .get(&tag.id)
            .ok_or_else(|| Error::NotWritable(tag.spec.name.clone()))?;
        let headers = command::headers(tag, point, value)?;
        let (mode, mode_label) = match point.mode {
            CommandMode::SelectBeforeOperate => {
                (dnp3::master::CommandMode::SelectBeforeOperate, "sbo")
            }
            CommandMode::DirectOperate => (dnp3::master::CommandMode::DirectOperate, "direct"),
        };
        let timeout_ms = self.config.response_timeout_ms;
        let conn = self.conn()?;
        let started = Instant::now();
        let result = conn.association.operate(mode, headers).await;
        metrics::histogram!(names::DNP3_REQUEST_SECONDS, "kind" => "command")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                conn.health.answered();
                metrics::counter!(names::DNP3_COMMANDS, "mode" => mode_label, "outcome" => "success")
                    .increment(1);
                Ok(WriteReport { confirmed: None })
            }
            Err(e) => {
                let answered = match &e {
                    dnp3::master::CommandError::Task(t) => command::outstation_answered(t),
                    dnp3::master::CommandError::Response(_) => true,
                };
                let (err, outcome) = command::error(e, timeout_ms);
                match &err {
                    Error::Timeout(_) => conn
                        .health
                        .silent(format!("no response to a command within {timeout_ms} ms")),
                    _ if answered => conn.health.answered(),
                    _ => {}
                }
                metrics::counter!(names::DNP3_COMMANDS, "mode" => mode_label, "outcome" => outcome)
                    .increment(1);
                Err(err)
            }
        }
    }

    async fn disconnect(&mut self) {
        // Dropping the connection aborts its poll tasks.
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.channel.disable().await;
        }
    }
}
