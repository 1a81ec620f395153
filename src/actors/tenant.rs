//! The tenant actor: supervises one tenant's cache, live hub, alert stream and device
//! actors, restarting each with the shared [`RestartPolicy`] and escalating to the root
//! when a child keeps failing. A configuration change reaches it as one message and
//! touches exactly the device actors it concerns ([`reconfigure`]).

mod reconfigure;

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::alerts::{AlertArgs, AlertStreamActor};
use super::cache::{CacheActor, TagRegistration};
use super::data_path::{bad_samples, fan_out};
use super::device::{DeviceActor, DeviceArgs};
use super::historian::HistorianHandle;
use super::live::HubActor;
use super::shared::{DeviceStatus, LinkState, Runtime, Slot, TenantShared};
use super::supervision::{Children, Decision, RestartPolicy};
use crate::config::CacheConfig;
use crate::domain::{Device, DeviceId, QualityReason, SampleBatch, Tag};
use crate::storage::Store;

/// One device with its tags, as loaded from the store.
#[derive(Debug, Clone)]
pub struct DeviceWorld {
    pub device: Device,
    pub tags: Vec<Tag>,
}

/// A child of the tenant actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantChild {
    Cache,
    LiveHub,
    AlertStream,
    Device(DeviceId),
}

impl TenantChild {
    /// One of [`CHILD_KINDS`](super::supervision::CHILD_KINDS) (a test checks).
    fn kind(self) -> &'static str {
        match self {
            TenantChild::Cache => "cache",
            TenantChild::LiveHub => "live_hub",
            TenantChild::AlertStream => "alert_stream",
            TenantChild::Device(_) => "device",
        }
    }
}

pub use reconfigure::{ApplyReport, Touched};

pub enum TenantMsg {
    /// Start a child again (sent to self after the backoff delay).
    Restart(TenantChild),
    /// The configuration changed: `devices` is every device as stored now, `touched`
    /// says what the change wrote. Replies with the devices that could not be
    /// (re)started or re-planned.
    Reconfigure {
        devices: Vec<Arc<DeviceWorld>>,
        touched: Touched,
        reply: RpcReplyPort<ApplyReport>,
    },
}

pub struct TenantArgs {
    pub shared: Arc<TenantShared>,
    /// The devices to start with, unless the tenant's shared state already holds a
    /// newer configuration (an earlier life of this actor was reconfigured).
    pub devices: Vec<Arc<DeviceWorld>>,
    pub historian: Arc<HistorianHandle>,
    pub runtime: Arc<Runtime>,
    /// The alert stream reads rules and records alarm transitions here.
    pub store: Arc<dyn Store>,
    pub policy: RestartPolicy,
    pub cache: CacheConfig,
    /// Prefix of actor names, unique per server instance in the process.
    pub name_prefix: String,
}

pub struct TenantState {
    args: TenantArgs,
    children: Children<TenantChild>,
}

pub struct TenantActor;

impl TenantActor {
    fn name(st: &TenantState, child: TenantChild) -> String {
        let base = format!(
            "{}/tenant/{}",
            st.args.name_prefix, st.args.shared.tenant.name
        );
        match child {
            TenantChild::Device(id) => format!("{base}/device/{id}"),
            other => format!("{base}/{}", other.kind()),
        }
    }

    async fn spawn(
        me: &ActorRef<TenantMsg>,
        st: &mut TenantState,
        child: TenantChild,
    ) -> Result<(), ActorProcessingErr> {
        let name = Some(Self::name(st, child));
        let sup = me.get_cell();
        let shared = st.args.shared.clone();
        let id = match child {
            TenantChild::Cache => {
                let (a, _) =
                    Actor::spawn_linked(name, CacheActor, shared.cache.clone(), sup).await?;
                shared.cache_actor.set(Some(a.clone()));
                a.get_id()
            }
            TenantChild::LiveHub => {
                let (a, _) = Actor::spawn_linked(name, HubActor, shared.live.clone(), sup).await?;
                shared.hub_actor.set(Some(a.clone()));
                a.get_id()
            }
            TenantChild::AlertStream => {
                let args = AlertArgs {
                    shared: shared.clone(),
                    store: st.args.store.clone(),
                    devices: st.args.devices.clone(),
                };
                let (a, _) = Actor::spawn_linked(name, AlertStreamActor, args, sup).await?;
                shared.alerts_actor.set(Some(a.clone()));
                a.get_id()
            }
            TenantChild::Device(device_id) => {
                let Some(world) = st.args.devices.iter().find(|d| d.device.id == device_id) else {
                    return Ok(());
                };
                let args = DeviceArgs {
                    world: world.clone(),
                    shared: shared.clone(),
                    historian: st.args.historian.clone(),
                    secret_key: st.args.runtime.secret_key.clone(),
                    cache: st.args.cache.clone(),
                    catalog: st.args.runtime.catalog.clone(),
                };
                let (a, _) = Actor::spawn_linked(name, DeviceActor, args, sup).await?;
                shared
                    .devices
                    .entry(device_id)
                    .or_insert_with(|| Slot::new("device"))
                    .set(Some(a.clone()));
                a.get_id()
            }
        };
        st.children.insert(id, child);
        Ok(())
    }

    fn clear_slot(st: &TenantState, child: TenantChild) {
        let shared = &st.args.shared;
        match child {
            TenantChild::Cache => shared.cache_actor.set(None),
            TenantChild::LiveHub => shared.hub_actor.set(None),
            TenantChild::AlertStream => shared.alerts_actor.set(None),
            TenantChild::Device(id) => {
                if let Some(slot) = shared.devices.get(&id) {
                    slot.set(None);
                }
            }
        }
    }

    /// Makes a device's tags known (cache, command routing) and gives it a status.
    fn register(st: &TenantState, d: &DeviceWorld) {
        let shared = &st.args.shared;
        let stale = st.args.cache.stale_after_us(d.device.spec.poll_ms);
        shared.cache.register(
            d.tags
                .iter()
                .map(|t| TagRegistration {
                    tag: t.id,
                    stale_after_us: stale,
                })
                .collect(),
        );
        for t in &d.tags {
            shared.tag_devices.insert(t.id, d.device.id);
        }
        let state = if d.device.spec.enabled {
            LinkState::Connecting
        } else {
            LinkState::Disabled
        };
        shared
            .status
            .entry(d.device.id)
            .and_modify(|s| s.protocol = d.device.protocol())
            .or_insert_with(|| DeviceStatus::new(d.device.protocol(), state));
    }

    /// A failed device's values turn Bad/DeviceRestarting everywhere (cache, live
    /// subscribers, history) until it polls again.
    fn mark_device_restarting(st: &TenantState, device: DeviceId) {
        let Some(world) = st.args.devices.iter().find(|d| d.device.id == device) else {
            return;
        };
        let samples = bad_samples(
            &st.args.shared,
            world.tags.iter().map(|t| t.id),
            QualityReason::DeviceRestarting,
        );
        if samples.is_empty() {
            return;
        }
        let batch = SampleBatch {
            tenant: world.device.tenant,
            device,
            samples,
        };
        fan_out(
            &st.args.shared,
            &st.args.historian,
            batch,
            world.device.protocol(),
        );
    }

    fn failed(
        me: &ActorRef<TenantMsg>,
        st: &mut TenantState,
        child: TenantChild,
        why: &str,
    ) -> Result<(), ActorProcessingErr> {
        Self::clear_slot(st, child);
        let tenant = st.args.shared.tenant.name.clone();
        tracing::warn!(%tenant, child = ?child, reason = why, "tenant child exited");
        if let TenantChild::Device(id) = child {
            Self::mark_device_restarting(st, id);
        }
        match st.children.decide(&st.args.policy, &child, child.kind()) {
            Decision::Restart(delay) => {
                st.args.runtime.count_restart();
                if let TenantChild::Device(id) = child {
                    st.args.shared.update_status(id, |s| s.restarts += 1);
                    st.args
                        .shared
                        .set_state(id, LinkState::Restarting, Some(why.to_string()));
                }
                me.send_after(delay, move || TenantMsg::Restart(child));
                Ok(())
            }
            Decision::Escalate => Err(format!(
                "tenant `{tenant}`: {child:?} exceeded its restart intensity: {why}"
            )
            .into()),
        }
    }
}

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = TenantArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<TenantMsg>,
        mut args: TenantArgs,
    ) -> Result<TenantState, ActorProcessingErr> {
        // A new life after a configuration change starts from the changed devices.
        match args.shared.configured() {
            Some(newer) => args.devices = newer,
            None => args.shared.set_configured(args.devices.clone()),
        }
        Ok(TenantState {
            args,
            children: Children::default(),
        })
    }

    async fn post_start(
        &self,
        me: ActorRef<TenantMsg>,
        st: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        st.args.shared.tenant_actor.set(Some(me.clone()));
        let devices = st.args.devices.clone();
        for d in &devices {
            Self::register(st, d);
        }
        for child in [
            TenantChild::Cache,
            TenantChild::LiveHub,
            TenantChild::AlertStream,
        ] {
            Self::spawn(&me, st, child).await?;
        }
        let enabled: Vec<DeviceId> = st
            .args
            .devices
            .iter()
            .filter(|d| d.device.spec.enabled)
            .map(|d| d.device.id)
            .collect();
        for id in enabled {
            if let Err(e) = Self::spawn(&me, st, TenantChild::Device(id)).await {
                Self::failed(&me, st, TenantChild::Device(id), &e.to_string())?;
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<TenantMsg>,
        msg: TenantMsg,
        st: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TenantMsg::Restart(child) => {
                // Restarted, disabled or deleted by a configuration change meanwhile.
                let current = match child {
                    TenantChild::Device(id) => st
                        .args
                        .devices
                        .iter()
                        .any(|d| d.device.id == id && d.device.spec.enabled),
                    _ => true,
                };
                if !current || st.children.contains(&child) {
                    return Ok(());
                }
                if let Err(e) = Self::spawn(&me, st, child).await {
                    Self::failed(&me, st, child, &format!("restart failed: {e}"))?;
                }
            }
            TenantMsg::Reconfigure {
                devices,
                touched,
                reply,
            } => {
                let report = Box::pin(Self::reconfigure(&me, st, devices, touched)).await;
                // The caller may have timed out.
                let _ = reply.send(report);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<TenantMsg>,
        evt: SupervisionEvent,
        st: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match st.children.exit_of(evt) {
            Some((child, why)) => Self::failed(&me, st, child, &why),
            None => Ok(()),
        }
    }

    /// Graceful stop: devices first (no new samples), then the tenant's services.
    async fn post_stop(
        &self,
        me: ActorRef<TenantMsg>,
        st: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        st.args.shared.tenant_actor.set(None);
        let cells = me.get_children();
        st.children
            .stop_in_order(
                cells,
                |k| matches!(k, TenantChild::Device(_)),
                std::time::Duration::from_secs(10),
            )
            .await;
        for child in [
            TenantChild::Cache,
            TenantChild::LiveHub,
            TenantChild::AlertStream,
        ] {
            Self::clear_slot(st, child);
        }
        for d in &st.args.devices {
            Self::clear_slot(st, TenantChild::Device(d.device.id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod kind_tests {
    use super::TenantChild;
    use crate::actors::root::RootChild;
    use crate::actors::supervision::CHILD_KINDS;
    use crate::domain::{DeviceId, TenantId};

    #[test]
    fn every_child_kind_is_listed_for_the_metrics() {
        let kinds = [
            TenantChild::Cache.kind(),
            TenantChild::LiveHub.kind(),
            TenantChild::AlertStream.kind(),
            TenantChild::Device(DeviceId(1)).kind(),
            RootChild::Historian.kind(),
            RootChild::Tenant(TenantId(1)).kind(),
        ];
        for k in kinds {
            assert!(CHILD_KINDS.contains(&k), "{k} missing from CHILD_KINDS");
        }
    }
}
