//! A configuration change applied to the running tenant. The live configuration
//! stores the change first, then hands the tenant actor every device as stored now
//! and what the change wrote ([`Touched`]); the tenant actor moves exactly those
//! device actors:
//!
//! - a new device gets its actor (if enabled);
//! - a deleted device's actor stops, its tags leave the cache, and live subscriptions
//!   that follow it (or only its tags) end;
//! - a disabled device's actor stops and its tags turn Bad / `disabled`; an enabled
//!   one starts;
//! - a device whose own settings changed restarts with them;
//! - a device whose tags changed is re-planned in place where its driver can (sim,
//!   Modbus: the link stays up), restarted otherwise;
//! - the alert stream reloads its rules when rules, units, tags or devices changed.
//!
//! Every other device actor goes on untouched.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, rpc::CallResult};

use super::{DeviceWorld, TenantActor, TenantChild, TenantMsg, TenantState};
use crate::actors::alerts::AlertMsg;
use crate::actors::data_path::{bad_samples, fan_out};
use crate::actors::device::DeviceMsg;
use crate::actors::shared::LinkState;
use crate::domain::{DeviceId, QualityReason, SampleBatch, TagId};

/// How long the tenant waits for a device actor to stop or take new tags.
const DEVICE_CALL: Duration = Duration::from_secs(10);
/// How long the tenant waits for the alert stream to reload its rules.
const ALERT_CALL: Duration = Duration::from_secs(30);

/// What a stored configuration change wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Touched {
    /// Devices whose own settings were written (name, unit, enabled, poll period,
    /// driver, security).
    pub devices: HashSet<DeviceId>,
    /// Devices whose tags were created, changed or deleted.
    pub tags_of: HashSet<DeviceId>,
    /// Deleted tags (of deleted devices or of ones that stay).
    pub removed_tags: Vec<TagId>,
    /// Alarm rules or units were written: the alert stream reloads.
    pub alarms: bool,
}

impl Touched {
    /// Adds what another change touched.
    pub fn merge(&mut self, other: Touched) {
        self.devices.extend(other.devices);
        self.tags_of.extend(other.tags_of);
        self.removed_tags.extend(other.removed_tags);
        self.alarms |= other.alarms;
    }
}

/// How applying a change to the running tenant went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyReport {
    /// Devices the change could not be applied to, and why; each shows the error in
    /// its status.
    pub failed: Vec<(DeviceId, String)>,
}

impl TenantActor {
    /// Applies a stored change: see the module documentation.
    pub(super) async fn reconfigure(
        me: &ActorRef<TenantMsg>,
        st: &mut TenantState,
        devices: Vec<Arc<DeviceWorld>>,
        touched: Touched,
    ) -> ApplyReport {
        let shared = st.args.shared.clone();
        let old: HashMap<DeviceId, Arc<DeviceWorld>> = st
            .args
            .devices
            .iter()
            .map(|d| (d.device.id, d.clone()))
            .collect();
        let kept: HashSet<DeviceId> = devices.iter().map(|d| d.device.id).collect();
        st.args.devices = devices.clone();
        let mut report = ApplyReport::default();
        let mut alarms = touched.alarms;

        // The tags of the deleted devices, in one pass over the tenant's tags.
        let mut gone: HashMap<DeviceId, Vec<TagId>> = old
            .keys()
            .filter(|id| !kept.contains(id))
            .map(|id| (*id, Vec::new()))
            .collect();
        if !gone.is_empty() {
            for e in shared.tag_devices.iter() {
                if let Some(tags) = gone.get_mut(e.value()) {
                    tags.push(*e.key());
                }
            }
        }
        for (id, tags) in &gone {
            alarms = true;
            Self::stop_device(me, st, *id).await;
            Self::forget(st, Some(*id), tags);
            shared.devices.remove(id);
            shared.remove_status(*id);
            tracing::info!(tenant = %shared.tenant.name, device = %id, "device deleted");
        }
        for d in &devices {
            let id = d.device.id;
            let prev = match old.get(&id) {
                Some(prev) => prev,
                None => {
                    alarms = true;
                    Self::register(st, d);
                    shared.publish_status(id);
                    if d.device.spec.enabled {
                        if let Err(e) = Self::start_device(me, st, id).await {
                            report.failed.push((id, e));
                        }
                    }
                    continue;
                }
            };
            let tags_changed = touched.tags_of.contains(&id);
            if !touched.devices.contains(&id) && !tags_changed {
                continue;
            }
            Self::register(st, d);
            let (p, n) = (&prev.device.spec, &d.device.spec);
            alarms |= tags_changed || p.enabled != n.enabled || p.unit != n.unit;
            if let Err(e) = Self::change_device(me, st, prev, d, tags_changed).await {
                report.failed.push((id, e));
            }
        }
        let removed: Vec<TagId> = touched
            .removed_tags
            .iter()
            .copied()
            .filter(|t| shared.tag_devices.contains_key(t))
            .collect();
        Self::forget(st, None, &removed);
        if alarms {
            Self::reload_alarms(st).await;
        }
        report
    }

    /// Moves one device that stays from its old configuration to its new one.
    async fn change_device(
        me: &ActorRef<TenantMsg>,
        st: &mut TenantState,
        prev: &DeviceWorld,
        next: &Arc<DeviceWorld>,
        tags_changed: bool,
    ) -> Result<(), String> {
        let id = next.device.id;
        let (p, n) = (&prev.device.spec, &next.device.spec);
        match (p.enabled, n.enabled) {
            (true, false) => {
                Self::stop_device(me, st, id).await;
                let shared = &st.args.shared;
                shared.set_state(id, LinkState::Disabled, None);
                let tags = Self::tags_of(st, id);
                let bad = bad_samples(shared, tags.into_iter(), QualityReason::Disabled);
                if !bad.is_empty() {
                    let batch = SampleBatch {
                        tenant: next.device.tenant,
                        device: id,
                        samples: bad,
                    };
                    fan_out(shared, &st.args.historian, batch, next.device.protocol());
                }
                Ok(())
            }
            (false, true) => Self::start_device(me, st, id).await,
            (false, false) => Ok(()),
            (true, true) => {
                let restart = p.name != n.name
                    || p.poll_ms != n.poll_ms
                    || p.driver != n.driver
                    || p.security != n.security
                    || (tags_changed && !n.driver.replans_live());
                if restart {
                    Self::stop_device(me, st, id).await;
                    return Self::start_device(me, st, id).await;
                }
                if !tags_changed {
                    return Ok(()); // only its unit changed: nothing runs differently
                }
                let Some(actor) = st.args.shared.devices.get(&id).and_then(|s| s.get()) else {
                    // Waiting for a restart, which starts from the new tags.
                    return Ok(());
                };
                let world = next.clone();
                let answer = actor
                    .call(
                        |reply| DeviceMsg::Reconfigure { world, reply },
                        Some(DEVICE_CALL),
                    )
                    .await;
                match answer {
                    Ok(CallResult::Success(result)) => result,
                    other => {
                        tracing::warn!(device = %n.name, answer = ?other.map(|_| ()), "device did not take its new tags: restarting it");
                        Self::stop_device(me, st, id).await;
                        Self::start_device(me, st, id).await
                    }
                }
            }
        }
    }

    /// Starts a device's actor; an actor that does not start is retried with the
    /// restart policy, and its status shows why.
    async fn start_device(
        me: &ActorRef<TenantMsg>,
        st: &mut TenantState,
        id: DeviceId,
    ) -> Result<(), String> {
        let child = TenantChild::Device(id);
        st.args.shared.set_state(id, LinkState::Connecting, None);
        if let Err(e) = Self::spawn(me, st, child).await {
            let why = format!("could not start with its new configuration: {e}");
            st.args
                .shared
                .set_state(id, LinkState::Offline, Some(why.clone()));
            if let Err(escalated) = Self::failed(me, st, child, &why) {
                tracing::error!(device = %id, error = %escalated, "device gave up restarting");
            }
            return Err(why);
        }
        // A read plan the driver refused: the actor runs, but reads nothing.
        let refused = st
            .args
            .shared
            .status
            .get(&id)
            .and_then(|s| s.config_error.clone());
        match refused {
            Some(e) => Err(format!("its read plan was refused: {e}")),
            None => Ok(()),
        }
    }

    /// Stops a device's actor on purpose (not a failure: no restart follows).
    async fn stop_device(me: &ActorRef<TenantMsg>, st: &mut TenantState, id: DeviceId) {
        if let Some(actor) = st.children.take(&TenantChild::Device(id)) {
            if let Some(cell) = me.get_children().into_iter().find(|c| c.get_id() == actor) {
                let _ = cell
                    .stop_and_wait(Some("reconfigured".into()), Some(DEVICE_CALL))
                    .await;
            }
        }
        Self::clear_slot(st, TenantChild::Device(id));
    }

    /// Every tag the running tenant routes to `device` (configured, announced,
    /// imported).
    fn tags_of(st: &TenantState, device: DeviceId) -> Vec<TagId> {
        st.args
            .shared
            .tag_devices
            .iter()
            .filter(|e| *e.value() == device)
            .map(|e| *e.key())
            .collect()
    }

    /// Deleted tags leave the cache and the command routing; subscriptions that
    /// followed only them (or the deleted `device`) end.
    fn forget(st: &TenantState, device: Option<DeviceId>, tags: &[TagId]) {
        let shared = &st.args.shared;
        shared.cache.forget(tags);
        for t in tags {
            shared.tag_devices.remove(t);
        }
        shared.live.remove(device, tags);
    }

    /// The alert stream takes the rules as stored now and the devices as configured;
    /// every alarm whose rule stays keeps its state.
    async fn reload_alarms(st: &TenantState) {
        let Some(alerts) = st.args.shared.alerts_actor.get() else {
            return; // restarting: its next life loads the rules as stored
        };
        let devices = st.args.devices.clone();
        let answer = alerts
            .call(
                |reply| AlertMsg::Reconfigure { devices, reply },
                Some(ALERT_CALL),
            )
            .await;
        match answer {
            Ok(CallResult::Success(Ok(()))) => {}
            Ok(CallResult::Success(Err(e))) => {
                tracing::warn!(tenant = %st.args.shared.tenant.name, error = %e, "alert stream could not reload its rules; it keeps the previous ones");
            }
            other => {
                tracing::warn!(tenant = %st.args.shared.tenant.name, answer = ?other.map(|_| ()), "alert stream did not answer the reload");
            }
        }
    }
}
