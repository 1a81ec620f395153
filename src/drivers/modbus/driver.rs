//! The Modbus TCP driver on rodbus: reads the planned requests of a poll group over
//! the shared channel, splits a range the device refuses so that its neighbours still
//! read, parks addresses that keep failing in the bad-address cache, and writes coils
//! and holding registers with the type's encoding, inverse scaling and an optional
//! read-back.

use std::sync::Arc;

use async_trait::async_trait;
use rodbus::{AddressRange, RequestError};
use tokio::time::Instant;

mod fault;
mod write;

use fault::{Fault, classify, exception_text};

use super::address::{Address, Table};
use super::bad::BadAddressCache;
use super::codec;
use super::config::ModbusConfig;
use super::plan::{self, Request as Planned};
use super::pool::{self, ChannelKey, ChannelSettings, Request, Response, SharedChannel};
use crate::domain::{
    DataType, OpenedSecurity, Quality, QualityReason, Sample, Tag, TagId, Timestamp, Value,
};
use crate::drivers::{Driver, DriverSink, Error, PlanGroup, PlanSummary, ReadReport, WriteReport};

/// One planned tag.
struct PlannedTag {
    id: TagId,
    name: String,
    addr: Address,
    scale: f64,
    offset: f64,
    confirm: bool,
    /// The last value read, carried by a Bad sample when a read fails.
    last: Option<Value>,
}

impl PlannedTag {
    fn bad(&self, reason: QualityReason, now: Timestamp) -> Sample {
        let value = self.last.clone().unwrap_or(match self.addr.data_type {
            DataType::Bool => Value::Bool(false),
            DataType::String => Value::Str("".into()),
            DataType::F32 | DataType::F64 => Value::F64(0.0),
            _ if self.scale != 1.0 || self.offset != 0.0 => Value::F64(0.0),
            _ => Value::I64(0),
        });
        Sample {
            tag: self.id,
            value,
            quality: Quality::Bad(reason),
            source_time: now,
            server_time: now,
        }
    }
}

/// A Modbus device: one unit id on a (shared) channel.
pub struct ModbusDriver {
    config: ModbusConfig,
    security: OpenedSecurity,
    tags: Vec<PlannedTag>,
    /// `addresses[i]` is `tags[i].addr` (what the planner's split reads).
    addresses: Vec<Address>,
    /// The requests of each poll group, refined as the device refuses ranges.
    groups: Vec<Vec<Planned>>,
    bad: BadAddressCache,
    channel: Option<Arc<SharedChannel>>,
    watcher: Option<u64>,
    /// Poll groups whose last poll got nothing but malformed answers: the device is
    /// failing as a whole, so their requests are not split until it answers again.
    garbled: std::collections::HashSet<usize>,
}

/// The request that reads `(table, start, count)`.
fn read_request(table: Table, start: u16, count: u16) -> Request {
    let range = AddressRange { start, count };
    match table {
        Table::Coil => Request::ReadCoils(range),
        Table::DiscreteInput => Request::ReadDiscreteInputs(range),
        Table::InputRegister => Request::ReadInputRegisters(range),
        Table::HoldingRegister => Request::ReadHoldingRegisters(range),
    }
}

/// The engineering value of a tag from the answer to its request, `off` into it.
fn decode(tag: &PlannedTag, response: &Response, off: u16) -> Result<Value, String> {
    let off = usize::from(off);
    let n = usize::from(tag.addr.count);
    match response {
        Response::Bits(bits) => bits
            .get(off)
            .map(|b| Value::Bool(*b))
            .ok_or_else(|| "answer shorter than the request".to_string()),
        Response::Registers(regs) => {
            let slice = regs
                .get(off..off + n)
                .ok_or_else(|| "answer shorter than the request".to_string())?;
            let raw = codec::decode_registers(&tag.addr, slice)?;
            Ok(codec::scale(raw, tag.scale, tag.offset))
        }
        Response::Written => Err("no values in a write answer".into()),
    }
}

impl ModbusDriver {
    pub fn new(config: ModbusConfig, security: OpenedSecurity) -> Self {
        let bad = BadAddressCache::new(
            config.bad_address_after,
            std::time::Duration::from_millis(config.bad_address_grace_ms),
        );
        ModbusDriver {
            config,
            security,
            tags: Vec::new(),
            addresses: Vec::new(),
            groups: Vec::new(),
            bad,
            channel: None,
            watcher: None,
            garbled: Default::default(),
        }
    }

    fn label(&self) -> String {
        format!(
            "{}:{} unit {}",
            self.config.host, self.config.port, self.config.unit_id
        )
    }

    /// The pool key and, for Modbus/TCP Security, the TLS settings of this device.
    fn channel_settings(&self) -> Result<(ChannelKey, ChannelSettings), Error> {
        let c = &self.config;
        let tls = match &self.security.tls {
            None if self.security.require_tls => {
                return Err(Error::Config(
                    "require_tls is set but the device has no tls settings".into(),
                ));
            }
            None => None,
            Some(t) => {
                let (Some(ca), Some(cert), Some(key)) = (&t.ca_file, &t.cert_file, &t.key_file)
                else {
                    return Err(Error::Config(
                        "Modbus/TCP Security needs tls.ca_file, tls.cert_file and tls.key_file"
                            .into(),
                    ));
                };
                let name = c.tls_server_name.clone().unwrap_or_else(|| c.host.clone());
                Some((name, ca.clone(), cert.clone(), key.expose().to_string()))
            }
        };
        let tls_config = match &tls {
            None => None,
            Some((name, ca, cert, key)) => {
                let password = self
                    .security
                    .tls
                    .as_ref()
                    .and_then(|t| t.key_password.as_ref())
                    .map(|p| p.expose().to_string());
                let config = rodbus::client::TlsClientConfig::full_pki(
                    Some(name.clone()),
                    std::path::Path::new(ca),
                    std::path::Path::new(cert),
                    std::path::Path::new(key),
                    password.as_deref(),
                    rodbus::client::MinTlsVersion::V1_2,
                )
                .map_err(|e| {
                    tracing::warn!(device = %self.label(), error = %e, "modbus TLS settings refused");
                    Error::Config(format!(
                        "the TLS files (ca_file, cert_file, key_file) could not be used: {e}"
                    ))
                })?;
                Some(config)
            }
        };
        let key = ChannelKey {
            host: c.host.clone(),
            port: c.port,
            tls: tls.map(|(a, b, cc, d)| [a, b, cc, d]),
            reconnect_ms: (c.reconnect_min_ms, c.reconnect_max_ms),
            reconnect_after_timeouts: c.reconnect_after_timeouts,
            owner: c.own_connection.then(pool::unique_owner),
        };
        let settings = ChannelSettings {
            max_concurrent_per_host: c.max_concurrent_per_host,
            idle_close: std::time::Duration::from_secs(c.idle_close_secs),
            tls: tls_config,
        };
        Ok((key, settings))
    }

    fn channel(&self) -> Result<Arc<SharedChannel>, Error> {
        self.channel
            .clone()
            .ok_or_else(|| Error::Disconnected("not connected".into()))
    }

    /// One request of this device, with its errors as driver errors.
    async fn call(&self, ch: &SharedChannel, request: Request) -> Result<Response, Error> {
        ch.call(self.config.unit_id, self.config.timeout(), request)
            .await
            .map_err(|e| match classify(&e, &ch.label, self.config.timeout_ms) {
                Fault::Link(err) => err,
                Fault::Refused { .. } => match e {
                    RequestError::Exception(x) => Error::Refused(exception_text(x)),
                    other => Error::Protocol(other.to_string()),
                },
            })
    }
}

#[async_trait]
impl Driver for ModbusDriver {
    fn plan(&mut self, tags: &[Tag], default_period_ms: u64) -> Result<PlanSummary, Error> {
        let mut planned = Vec::with_capacity(tags.len());
        let mut tag_groups = Vec::new();
        let mut by_group: Vec<Vec<(usize, Address)>> =
            vec![Vec::new(); self.config.poll_groups.len() + 1];
        for (i, tag) in tags.iter().enumerate() {
            let address_error = |reason| Error::Address {
                tag: tag.spec.name.clone(),
                address: tag.spec.address.clone(),
                reason,
            };
            let (addr, options) =
                Address::parse_tag(&tag.spec.address, tag.spec.data_type).map_err(address_error)?;
            let group = self.config.group_index(&options).map_err(address_error)?;
            by_group[group].push((i, addr));
            if group > 0 {
                tag_groups.push((tag.id, group));
            }
            planned.push(PlannedTag {
                id: tag.id,
                name: tag.spec.name.clone(),
                addr,
                scale: tag.spec.scale,
                offset: tag.spec.offset,
                confirm: options.confirm,
                last: None,
            });
        }
        let limits = self.config.limits();
        let mut groups = Vec::with_capacity(by_group.len());
        let mut summary = PlanSummary {
            groups: Vec::new(),
            tag_groups,
            by_exception: false,
        };
        for (g, members) in by_group.iter().enumerate() {
            let requests = plan::plan(members, &limits).map_err(Error::Config)?;
            let (name, period_ms) = match g {
                0 => ("default".to_string(), default_period_ms),
                _ => {
                    let pg = &self.config.poll_groups[g - 1];
                    (pg.name.clone(), pg.period_ms)
                }
            };
            summary.groups.push(PlanGroup {
                name,
                period_ms,
                requests: requests.len() as u32,
                tags: members.len() as u32,
            });
            groups.push(requests);
        }
        self.addresses = planned.iter().map(|t| t.addr).collect();
        self.tags = planned;
        self.groups = groups;
        self.bad = BadAddressCache::new(
            self.config.bad_address_after,
            std::time::Duration::from_millis(self.config.bad_address_grace_ms),
        );
        Ok(summary)
    }

    fn manages_link(&self) -> bool {
        true
    }

    async fn connect(&mut self, sink: DriverSink) -> Result<(), Error> {
        if self.channel.is_some() {
            return Ok(());
        }
        let (key, settings) = self.channel_settings()?;
        let ch = pool::acquire(key, settings);
        let link = sink.link.clone();
        self.watcher = Some(ch.watch(Arc::new(move |e| link(e))));
        self.channel = Some(ch);
        Ok(())
    }

    async fn read(
        &mut self,
        group: usize,
        now: Timestamp,
        out: &mut Vec<Sample>,
    ) -> Result<ReadReport, Error> {
        let ch = self.channel()?;
        ch.ready(self.config.timeout()).await?;
        let label = self.label();
        let started = Instant::now();
        let ModbusDriver {
            config,
            tags,
            addresses,
            groups,
            bad,
            garbled,
            ..
        } = self;
        let Some(requests) = groups.get_mut(group) else {
            return Err(Error::Config(format!("no poll group {group}")));
        };
        requests.extend(bad.due(group, started));
        let mut report = ReadReport::default();
        let mut i = 0;
        // The request last retried after the device closed the link under it.
        let mut retried: Option<usize> = None;
        // Whether the device answered anything (a value or an exception) this poll; the
        // plan before this poll's splits; the requests to park when it did answer.
        let (mut answered, mut before) = (false, None);
        let mut to_park: Vec<(usize, String)> = Vec::new();
        let no_split = garbled.contains(&group);
        while i < requests.len() {
            let (table, start, count) = (requests[i].table, requests[i].start, requests[i].count);
            report.requests += 1;
            let result = ch
                .call(
                    config.unit_id,
                    config.timeout(),
                    read_request(table, start, count),
                )
                .await;
            match result {
                Ok(response) => {
                    answered = true;
                    for (t, off) in &requests[i].tags {
                        let tag = &mut tags[*t];
                        match decode(tag, &response, *off) {
                            Ok(value) => {
                                bad.succeeded(*t);
                                tag.last = Some(value.clone());
                                out.push(Sample {
                                    tag: tag.id,
                                    value,
                                    quality: Quality::Good,
                                    source_time: now,
                                    server_time: now,
                                });
                            }
                            Err(reason) => {
                                tracing::debug!(device = %label, tag = %tag.name, %reason, "undecodable answer");
                                report.failed_tags += 1;
                                out.push(tag.bad(QualityReason::BadResponse, now));
                            }
                        }
                    }
                    i += 1;
                }
                Err(e) => match classify(&e, &ch.label, config.timeout_ms) {
                    // The device closed the link under this request (devices that
                    // close after K requests or when idle): once the channel has
                    // reconnected, ask again rather than lose the whole poll.
                    Fault::Link(_)
                        if retried != Some(i)
                            && matches!(e, RequestError::Io(_) | RequestError::NoConnection) =>
                    {
                        retried = Some(i);
                        let wait = std::time::Duration::from_millis(
                            config.timeout_ms + config.reconnect_min_ms,
                        );
                        ch.ready(wait).await?;
                    }
                    Fault::Link(err) => return Err(err),
                    Fault::Refused {
                        reason,
                        split,
                        cache,
                    } => {
                        let exception = matches!(e, RequestError::Exception(_));
                        answered |= exception;
                        if split
                            && (exception || !no_split)
                            && let Some((a, b)) = plan::split(&requests[i], addresses)
                        {
                            // Try both halves now; the refined plan stays for later polls.
                            before.get_or_insert_with(|| requests.clone());
                            requests[i] = a;
                            requests.insert(i + 1, b);
                            continue;
                        }
                        for (t, _) in &requests[i].tags {
                            report.failed_tags += 1;
                            out.push(tags[*t].bad(reason, now));
                        }
                        let single = requests[i].tags.len() == 1;
                        let tag = requests[i].tags[0].0;
                        if cache && single && bad.failed(tag) {
                            to_park.push((i, e.to_string()));
                        }
                        i += 1;
                    }
                },
            }
        }
        if !answered && report.failed_tags > 0 {
            // Nothing but malformed answers: the device (or the gateway) is failing as a
            // whole, not at these addresses. Keep the plan, park nothing, split no more
            // until it answers again.
            if let Some(plan) = before {
                *requests = plan;
            }
            garbled.insert(group);
        } else {
            garbled.remove(&group);
            for (j, error) in to_park.into_iter().rev() {
                let parked = requests.remove(j);
                let tag = parked.tags[0].0;
                if bad.park(group, parked, started) {
                    let t = &tags[tag];
                    tracing::warn!(
                        device = %label,
                        tag = %t.name,
                        address = %t.addr,
                        %error,
                        grace_ms = config.bad_address_grace_ms,
                        "address keeps failing: skipped for the grace period, then retried (logged once)"
                    );
                }
            }
        }
        report.skipped_tags = bad.skipped(group);
        report.bad_addresses = bad.len() as u32;
        Ok(report)
    }

    async fn write(&mut self, tag: &Tag, value: &Value) -> Result<WriteReport, Error> {
        self.write_tag(tag, value).await
    }

    async fn disconnect(&mut self) {
        self.release();
    }
}

impl ModbusDriver {
    /// Stops hearing the channel's link events and lets go of it (the channel closes
    /// when its last device lets go).
    fn release(&mut self) {
        if let (Some(ch), Some(id)) = (&self.channel, self.watcher.take()) {
            ch.unwatch(id);
        }
        self.channel = None;
    }
}

/// A device actor that failed is not stopped gracefully: its driver is dropped.
impl Drop for ModbusDriver {
    fn drop(&mut self) {
        self.release();
    }
}
