//! The root supervisor: starts the historian and one tenant actor per tenant, and
//! restarts them with the shared policy. When the root itself gives up, the server
//! stops (see `app`).

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::historian::{HistorianActor, HistorianArgs};
use super::shared::{Runtime, TenantShared};
use super::supervision::{Children, Decision, RestartPolicy};
use super::tenant::{DeviceWorld, TenantActor, TenantArgs};
use crate::config::CacheConfig;
use crate::domain::TenantId;
use crate::storage::Store;

/// One tenant as loaded from the store.
pub struct TenantWorld {
    pub shared: Arc<TenantShared>,
    pub devices: Vec<Arc<DeviceWorld>>,
}

impl TenantWorld {
    /// Loads a tenant's devices and tags.
    pub async fn load(
        store: &dyn Store,
        tenant: crate::domain::Tenant,
    ) -> Result<Self, crate::storage::Error> {
        let devices = store.devices(tenant.id).await?;
        let mut tags_by_device: std::collections::HashMap<_, Vec<_>> =
            std::collections::HashMap::new();
        for tag in store.tags(tenant.id, None).await? {
            tags_by_device.entry(tag.device).or_default().push(tag);
        }
        let devices = devices
            .into_iter()
            .map(|device| {
                Arc::new(DeviceWorld {
                    tags: tags_by_device.remove(&device.id).unwrap_or_default(),
                    device,
                })
            })
            .collect();
        Ok(TenantWorld {
            shared: Arc::new(TenantShared::new(tenant)),
            devices,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RootChild {
    Historian,
    Tenant(TenantId),
}

impl RootChild {
    /// One of [`CHILD_KINDS`](super::supervision::CHILD_KINDS) (a test checks).
    pub(crate) fn kind(self) -> &'static str {
        match self {
            RootChild::Historian => "historian",
            RootChild::Tenant(_) => "tenant",
        }
    }
}

pub enum RootMsg {
    Restart(RootChild),
    /// Start the actors of a tenant created at run time.
    AddTenant(TenantWorld, RpcReplyPort<()>),
    /// Stop a tenant's actors (disabled or deleted); replies whether it was running.
    RemoveTenant(TenantId, RpcReplyPort<bool>),
}

pub struct RootArgs {
    pub runtime: Arc<Runtime>,
    pub store: Arc<dyn Store>,
    pub tenants: Vec<TenantWorld>,
    pub policy: RestartPolicy,
    pub cache: CacheConfig,
    pub name_prefix: String,
    /// How long a graceful stop waits for the historian to write its buffer.
    pub shutdown_flush_secs: u64,
}

pub struct RootState {
    args: RootArgs,
    children: Children<RootChild>,
}

pub struct RootActor;

impl RootActor {
    async fn spawn(
        me: &ActorRef<RootMsg>,
        st: &mut RootState,
        child: RootChild,
    ) -> Result<(), ActorProcessingErr> {
        let prefix = st.args.name_prefix.clone();
        let id = match child {
            RootChild::Historian => {
                let handle = st.args.runtime.historian.clone();
                let args = HistorianArgs {
                    handle: handle.clone(),
                    store: st.args.store.clone(),
                };
                let (a, _) = Actor::spawn_linked(
                    Some(format!("{prefix}/historian")),
                    HistorianActor,
                    args,
                    me.get_cell(),
                )
                .await?;
                handle.actor.set(Some(a.clone()));
                a.get_id()
            }
            RootChild::Tenant(tid) => {
                let Some(world) = st.args.tenants.iter().find(|t| t.shared.tenant.id == tid) else {
                    return Ok(());
                };
                let args = TenantArgs {
                    shared: world.shared.clone(),
                    devices: world.devices.clone(),
                    historian: st.args.runtime.historian.clone(),
                    runtime: st.args.runtime.clone(),
                    store: st.args.store.clone(),
                    policy: st.args.policy.clone(),
                    cache: st.args.cache.clone(),
                    name_prefix: prefix.clone(),
                };
                let name = format!("{prefix}/tenant/{}", world.shared.tenant.name);
                let (a, _) =
                    Actor::spawn_linked(Some(name), TenantActor, args, me.get_cell()).await?;
                a.get_id()
            }
        };
        st.children.insert(id, child);
        Ok(())
    }

    fn failed(
        me: &ActorRef<RootMsg>,
        st: &mut RootState,
        child: RootChild,
        why: &str,
    ) -> Result<(), ActorProcessingErr> {
        tracing::error!(child = ?child, reason = why, "root child exited");
        if child == RootChild::Historian {
            st.args.runtime.historian.actor.set(None);
        }
        match st.children.decide(&st.args.policy, &child, child.kind()) {
            Decision::Restart(delay) => {
                st.args.runtime.count_restart();
                me.send_after(delay, move || RootMsg::Restart(child));
                Ok(())
            }
            Decision::Escalate => {
                Err(format!("{child:?} exceeded its restart intensity: {why}").into())
            }
        }
    }
}

impl Actor for RootActor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<RootMsg>,
        args: RootArgs,
    ) -> Result<RootState, ActorProcessingErr> {
        for world in &args.tenants {
            args.runtime
                .tenants
                .insert(world.shared.tenant.id, world.shared.clone());
        }
        Ok(RootState {
            args,
            children: Children::default(),
        })
    }

    async fn post_start(
        &self,
        me: ActorRef<RootMsg>,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        Self::spawn(&me, st, RootChild::Historian).await?;
        let ids: Vec<TenantId> = st.args.tenants.iter().map(|t| t.shared.tenant.id).collect();
        for id in ids {
            Self::spawn(&me, st, RootChild::Tenant(id)).await?;
        }
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<RootMsg>,
        msg: RootMsg,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Restart(child) => {
                if let RootChild::Tenant(id) = child {
                    if !st.args.tenants.iter().any(|t| t.shared.tenant.id == id) {
                        return Ok(()); // removed while waiting for its restart
                    }
                }
                if let Err(e) = Self::spawn(&me, st, child).await {
                    Self::failed(&me, st, child, &format!("restart failed: {e}"))?;
                }
            }
            RootMsg::AddTenant(world, reply) => {
                let id = world.shared.tenant.id;
                if st.children.contains(&RootChild::Tenant(id)) {
                    let _ = reply.send(());
                    return Ok(());
                }
                st.args.runtime.tenants.insert(id, world.shared.clone());
                st.args.tenants.retain(|t| t.shared.tenant.id != id);
                st.args.tenants.push(world);
                if let Err(e) = Self::spawn(&me, st, RootChild::Tenant(id)).await {
                    Self::failed(
                        &me,
                        st,
                        RootChild::Tenant(id),
                        &format!("start failed: {e}"),
                    )?;
                }
                let _ = reply.send(());
            }
            RootMsg::RemoveTenant(id, reply) => {
                st.args.tenants.retain(|t| t.shared.tenant.id != id);
                st.args.runtime.tenants.remove(&id);
                let running = match st.children.take(&RootChild::Tenant(id)) {
                    Some(actor) => {
                        if let Some(cell) =
                            me.get_children().into_iter().find(|c| c.get_id() == actor)
                        {
                            let _ = cell
                                .stop_and_wait(
                                    Some("tenant removed".into()),
                                    Some(std::time::Duration::from_secs(10)),
                                )
                                .await;
                        }
                        true
                    }
                    None => false,
                };
                let _ = reply.send(running);
            }
        }
        Ok(())
    }

    /// Graceful stop in data-path order: tenants (and their devices) first, then the
    /// historian, whose own `post_stop` writes what it still holds. Children left to
    /// ractor would be killed without their `post_stop`.
    async fn post_stop(
        &self,
        me: ActorRef<RootMsg>,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let cells = me.get_children();
        st.children
            .stop_in_order(
                cells,
                |k| matches!(k, RootChild::Tenant(_)),
                std::time::Duration::from_secs(st.args.shutdown_flush_secs),
            )
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<RootMsg>,
        evt: SupervisionEvent,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match st.children.exit_of(evt) {
            Some((child, why)) => Self::failed(&me, st, child, &why),
            None => Ok(()),
        }
    }
}
