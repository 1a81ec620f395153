//! The device's read plan: made when its actor starts, and again when only its tags
//! change (on the open link, for drivers that re-plan live): poll groups, each tag's
//! staleness in the cache, deadbands.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;

use super::deadband::Deadbands;
use super::{DeviceActor, DeviceMsg, DeviceState, Group};
use crate::actors::cache::{CacheMsg, TagRegistration};
use crate::actors::shared::LinkState;
use crate::actors::tenant::DeviceWorld;
use crate::domain::{Tag, TagId};

impl DeviceActor {
    /// Plans the reads of the device's tags (its world's and the ones announced
    /// since): poll groups, the staleness of each tag in the cache, deadbands. On a
    /// refusal the device keeps no poll groups and its status says why.
    pub(super) fn plan(st: &mut DeviceState) -> Result<(), String> {
        let id = st.id();
        let spec = &st.world.device.spec;
        let tags: Vec<Tag> = st.world.tags.iter().chain(&st.announced).cloned().collect();
        let plan = st
            .driver
            .plan(&tags, spec.poll_ms)
            .map_err(|e| e.to_string());
        st.planned = plan.is_ok();
        st.shared.update_status(id, |s| match &plan {
            Ok(p) => {
                s.requests_per_cycle = p.requests_per_cycle();
                s.groups = p.groups.clone();
                s.config_error = None;
            }
            Err(e) => {
                s.requests_per_cycle = 0;
                s.groups = Vec::new();
                s.config_error = Some(e.clone());
            }
        });
        let plan = plan?;
        st.groups = plan
            .groups
            .iter()
            .map(|g| Group {
                period: Duration::from_millis(g.period_ms),
                next: Instant::now(),
                degraded: false,
                empty: g.tags == 0,
            })
            .collect();
        // Each tag's period: its poll group's, or the device's.
        let group_period: HashMap<TagId, u64> = plan
            .tag_groups
            .iter()
            .filter_map(|(t, g)| Some((*t, plan.groups.get(*g)?.period_ms)))
            .collect();
        let period_of = |tag: TagId| group_period.get(&tag).copied().unwrap_or(spec.poll_ms);
        st.by_exception = plan.by_exception;
        let regs: Vec<TagRegistration> = tags
            .iter()
            .map(|t| TagRegistration {
                tag: t.id,
                stale_after_us: if plan.by_exception {
                    i64::MAX
                } else {
                    st.cache.stale_after_us(period_of(t.id))
                },
            })
            .collect();
        st.shared.cache_actor.cast(CacheMsg::Register(regs));
        st.deadband = Deadbands::new(&tags, period_of, &st.cache);
        Ok(())
    }

    /// New tags on the open link: re-plan, and read with the new plan at once.
    pub(super) fn retag(
        me: &ActorRef<DeviceMsg>,
        st: &mut DeviceState,
        world: Arc<DeviceWorld>,
    ) -> Result<(), String> {
        st.world = world;
        // Announced tags are stored: the world as stored holds them now.
        st.announced.clear();
        let planned = Self::plan(st);
        if let Err(e) = &planned {
            st.set_state(LinkState::Offline, Some(e.clone()));
        }
        if st.connected {
            Self::start_polling(me, st);
        }
        planned
    }
}
