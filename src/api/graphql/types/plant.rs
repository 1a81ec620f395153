//! The plant as the API shows it: units, devices (with their live status, link
//! security with secrets masked, and tag counts) and tags (with their latest value).

use async_graphql::{ComplexObject, Context, Enum, ID, SimpleObject};
use chrono::{DateTime, Utc};

use super::{TagCounts, TagValue};
use crate::actors::cache::Lookup;
use crate::actors::shared::{DeviceStatus as RtStatus, LinkState};
use crate::api::graphql::{ApiError, Need, api, fail, session, tenant};
use crate::api::permissions::Permission;
use crate::domain::{self, Quality, Timestamp};
use crate::secrets::Secret;

#[derive(SimpleObject, Clone)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Unit {
    pub id: ID,
    pub name: String,
    pub location: Option<Location>,
    pub description: Option<String>,
}

#[ComplexObject]
impl Unit {
    /// Devices attached to this unit.
    #[graphql(guard = "Need(Permission::Read)")]
    async fn devices(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Device>> {
        let s = session(ctx)?;
        let all = api(ctx)
            .store
            .devices(s.tenant)
            .await
            .map_err(|e| fail(ctx, e))?;
        Ok(all
            .into_iter()
            .filter(|d| d.spec.unit.map(|u| u.to_string()) == Some(self.id.to_string()))
            .map(Device::from)
            .collect())
    }
}

impl From<domain::Unit> for Unit {
    fn from(u: domain::Unit) -> Self {
        Unit {
            id: ID(u.id.to_string()),
            name: u.spec.name,
            location: u.spec.location.map(|l| Location {
                lat: l.lat,
                lon: l.lon,
            }),
            description: u.spec.description,
        }
    }
}

/// State of a device.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "DeviceState")]
pub enum DeviceStateGql {
    /// Started; no answer yet, or the link is being opened again.
    Connecting,
    /// Polls answer and every tag reads.
    Online,
    /// The device answers but some tags do not read (exceptions, bad addresses).
    Degraded,
    /// No link, or no answer: the device's tags are BAD / comm_lost.
    Offline,
    /// The device actor failed and waits for its restart.
    Restarting,
    /// Out of service: not polled.
    Disabled,
}

impl From<LinkState> for DeviceStateGql {
    fn from(s: LinkState) -> Self {
        match s {
            LinkState::Connecting => DeviceStateGql::Connecting,
            LinkState::Online => DeviceStateGql::Online,
            LinkState::Degraded => DeviceStateGql::Degraded,
            LinkState::Offline => DeviceStateGql::Offline,
            LinkState::Restarting => DeviceStateGql::Restarting,
            LinkState::Disabled => DeviceStateGql::Disabled,
        }
    }
}

/// One poll group of a device's read plan.
#[derive(SimpleObject, Clone)]
pub struct PollGroup {
    /// `default` (the device's pollMs) or the group's declared name.
    pub name: String,
    pub period_ms: u64,
    /// Protocol requests per cycle of this group.
    pub requests: u32,
    pub tags: u32,
}

/// Live state of a device actor.
#[derive(SimpleObject)]
pub struct DeviceStatus {
    pub device_id: ID,
    pub state: DeviceStateGql,
    /// When the state last changed.
    pub since: DateTime<Utc>,
    pub polls: u64,
    pub poll_errors: u64,
    pub restarts: u64,
    pub last_poll: Option<DateTime<Utc>>,
    /// The last poll in which every tag read; for a device that pushes its values
    /// (MQTT, OPC UA subscriptions, DNP3 events), the last time values arrived.
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Protocol requests of one cycle of every poll group, from the read plan.
    pub requests_per_cycle: u32,
    /// The read plan per poll group.
    pub poll_groups: Vec<PollGroup>,
    /// Addresses in the bad-address cache (skipped for a grace period, then retried).
    pub bad_addresses: u32,
    /// The device was deleted: this is the last status a `deviceStatus` subscription
    /// carries for it.
    pub removed: bool,
}

impl DeviceStatus {
    pub fn last(device: domain::DeviceId, s: RtStatus) -> Self {
        DeviceStatus {
            removed: true,
            ..DeviceStatus::new(device, s)
        }
    }

    pub fn new(device: domain::DeviceId, s: RtStatus) -> Self {
        DeviceStatus {
            device_id: ID(device.to_string()),
            state: s.state.into(),
            since: s.since.to_datetime(),
            polls: s.polls,
            poll_errors: s.poll_errors,
            restarts: s.restarts,
            last_poll: s.last_poll.map(Timestamp::to_datetime),
            last_success: s.last_success.map(Timestamp::to_datetime),
            last_error: s.last_error,
            requests_per_cycle: s.requests_per_cycle,
            poll_groups: s
                .groups
                .into_iter()
                .map(|g| PollGroup {
                    name: g.name,
                    period_ms: g.period_ms,
                    requests: g.requests,
                    tags: g.tags,
                })
                .collect(),
            bad_addresses: s.bad_addresses,
            removed: false,
        }
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Device {
    pub id: ID,
    pub name: String,
    pub protocol: String,
    pub enabled: bool,
    pub poll_ms: u64,
    pub unit_id: Option<ID>,
    pub security: DeviceSecurity,
    /// Counted by the list that holds the device (once for all of them).
    #[graphql(skip)]
    pub counted: Option<TagCounts>,
}

/// A device's link security. Secret fields read `***` when set, null when not.
#[derive(SimpleObject, Clone)]
pub struct DeviceSecurity {
    /// The driver refuses a link without TLS.
    pub require_tls: bool,
    pub tls: Option<DeviceTls>,
    pub credentials: Option<DeviceCredentials>,
}

#[derive(SimpleObject, Clone)]
pub struct DeviceTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    /// `***` when set.
    pub key_file: Option<String>,
    /// `***` when set.
    pub key_password: Option<String>,
}

#[derive(SimpleObject, Clone)]
pub struct DeviceCredentials {
    pub username: String,
    /// `***` when set.
    pub password: Option<String>,
}

impl From<&domain::DeviceSecurity> for DeviceSecurity {
    fn from(s: &domain::DeviceSecurity) -> Self {
        // Masked in one place for the API, exports and audit records alike.
        let m = s.masked();
        let shown = |v: Option<Secret>| v.map(|v| v.expose().to_string());
        DeviceSecurity {
            require_tls: m.require_tls,
            tls: m.tls.map(|t| DeviceTls {
                ca_file: t.ca_file,
                cert_file: t.cert_file,
                key_file: shown(t.key_file),
                key_password: shown(t.key_password),
            }),
            credentials: m.credentials.map(|c| DeviceCredentials {
                username: c.username,
                password: shown(c.password),
            }),
        }
    }
}

#[ComplexObject]
impl Device {
    /// Its tags by the quality of their latest value (from the cache).
    #[graphql(guard = "Need(Permission::Read)")]
    async fn tag_counts(&self, ctx: &Context<'_>) -> async_graphql::Result<TagCounts> {
        if let Some(c) = self.counted {
            return Ok(c);
        }
        let t = tenant(ctx)?;
        let id = self
            .id
            .parse()
            .map_err(|_| fail(ctx, ApiError::NotFound("device")))?;
        Ok(tag_counts(&t, Some(id)).remove(&id).unwrap_or_default())
    }

    #[graphql(guard = "Need(Permission::Read)")]
    async fn status(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<DeviceStatus>> {
        let t = tenant(ctx)?;
        let id = self
            .id
            .parse()
            .map_err(|_| fail(ctx, ApiError::NotFound("device")))?;
        Ok(t.status.get(&id).map(|s| DeviceStatus::new(id, s.clone())))
    }

    #[graphql(guard = "Need(Permission::Read)")]
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Tag>> {
        let s = session(ctx)?;
        let id = self
            .id
            .parse()
            .map_err(|_| fail(ctx, ApiError::NotFound("device")))?;
        let tags = api(ctx)
            .store
            .tags(s.tenant, Some(id))
            .await
            .map_err(|e| fail(ctx, e))?;
        Ok(tags.into_iter().map(Tag::from).collect())
    }
}

impl From<domain::Device> for Device {
    fn from(d: domain::Device) -> Self {
        Device {
            id: ID(d.id.to_string()),
            protocol: d.protocol().to_string(),
            name: d.spec.name,
            enabled: d.spec.enabled,
            poll_ms: d.spec.poll_ms,
            unit_id: d.spec.unit.map(|u| ID(u.to_string())),
            security: (&d.spec.security).into(),
            counted: None,
        }
    }
}

/// The tags of every device of a tenant by the quality of their latest value, in
/// one pass over its tags.
pub fn tag_counts(
    t: &crate::actors::TenantShared,
    only: Option<domain::DeviceId>,
) -> std::collections::HashMap<domain::DeviceId, TagCounts> {
    let mut out: std::collections::HashMap<domain::DeviceId, TagCounts> = Default::default();
    let now = Timestamp::now();
    for e in t.tag_devices.iter() {
        let device = *e.value();
        if only.is_some_and(|d| d != device) {
            continue;
        }
        let c = out.entry(device).or_default();
        c.total += 1;
        match t.cache.get(*e.key(), now) {
            Lookup::Value(l) => match l.quality {
                Quality::Good => c.good += 1,
                Quality::Uncertain(_) => c.uncertain += 1,
                Quality::Bad(_) => c.bad += 1,
            },
            _ => c.no_value += 1,
        }
    }
    out
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Tag {
    pub id: ID,
    pub name: String,
    pub device_id: ID,
    pub unit_id: Option<ID>,
    pub address: String,
    pub data_type: String,
    pub scale: f64,
    pub offset: f64,
    pub eng_unit: Option<String>,
    pub deadband: f64,
    pub writable: bool,
}

#[ComplexObject]
impl Tag {
    /// The address as the device's driver reads it, where the protocol has a canonical
    /// form: Modbus shows the table, the 0-based address and the 1-based notation
    /// (`40101` reads `hr:100 (40101)`). Null for protocols without one.
    #[graphql(guard = "Need(Permission::Read)")]
    async fn address_info(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let s = session(ctx)?;
        let device = self
            .device_id
            .parse()
            .map_err(|_| fail(ctx, ApiError::NotFound("device")))?;
        let Some(d) = api(ctx)
            .store
            .device(s.tenant, device)
            .await
            .map_err(|e| fail(ctx, e))?
        else {
            return Ok(None);
        };
        let data_type = self
            .data_type
            .parse()
            .map_err(|e: String| fail(ctx, ApiError::Internal(e)))?;
        Ok(d.spec.driver.describe_address(&self.address, data_type))
    }

    /// The latest value, from the cache; null before the first reading.
    #[graphql(guard = "Need(Permission::Read)")]
    async fn latest(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<TagValue>> {
        let t = tenant(ctx)?;
        let id = self
            .id
            .parse()
            .map_err(|_| fail(ctx, ApiError::NotFound("tag")))?;
        Ok(match t.cache.get(id, Timestamp::now()) {
            Lookup::Value(l) => Some(l.into()),
            _ => None,
        })
    }
}

impl From<domain::Tag> for Tag {
    fn from(t: domain::Tag) -> Self {
        Tag {
            id: ID(t.id.to_string()),
            device_id: ID(t.device.to_string()),
            unit_id: t.spec.unit.map(|u| ID(u.to_string())),
            data_type: t.spec.data_type.to_string(),
            name: t.spec.name,
            address: t.spec.address,
            scale: t.spec.scale,
            offset: t.spec.offset,
            eng_unit: t.spec.eng_unit,
            deadband: t.spec.deadband,
            writable: t.spec.writable,
        }
    }
}
