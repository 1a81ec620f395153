//! Tags and their alarm rules (permission `configure`), created, changed and deleted
//! while their device runs: re-planned on its open link where the protocol allows,
//! restarted otherwise (see `plant.rs` for what every change goes through).

use async_graphql::{Context, ID, MaybeUndefined, Object};

use super::plant::{device_index, note_created, own, tag_index, written};
use crate::api::graphql::configure::{self, Reading};
use crate::api::graphql::types::{Tag, TagInput, TagPatch};
use crate::api::graphql::{ApiError, fail};
use crate::api::permissions::FieldAccess;
use crate::config::draft::{Loc, TagDraft};
use crate::domain::{DeviceId, TagId, TagSpec};
use crate::manage::Kind;

#[derive(Default)]
pub struct TagMutations;

#[Object(guard = "FieldAccess(\"Mutation\")")]
impl TagMutations {
    /// Creates a tag on a device. The device reads it at once: re-planned on its open
    /// link where the protocol allows (sim, Modbus), restarted otherwise.
    async fn create_tag(&self, ctx: &Context<'_>, input: TagInput) -> async_graphql::Result<Tag> {
        let mut r = Reading::default();
        let data_type = r.one(configure::data_type(&input.data_type, "input.dataType"));
        let alarms = match &input.alarms {
            None => Some(Vec::new()),
            Some(a) => r.many(configure::alarms(a, "input.alarms")),
        };
        r.finish(ctx)?;
        let (Some(data_type), Some(alarms)) = (data_type, alarms) else {
            return Err(fail(
                ctx,
                ApiError::Internal("input read without errors is missing".into()),
            ));
        };
        let device_id: Option<DeviceId> = input.device_id.parse().ok();
        let name = input.name.clone();
        let outcome = configure::change(ctx, false, |stored, draft| {
            let d = device_index(draft, &input.device_id)?;
            let unit = input
                .unit_id
                .as_ref()
                .map(|u| configure::unit_name(stored, u))
                .transpose()?;
            let tags = &mut draft.devices[d].tags;
            tags.push(TagDraft {
                id: None,
                unit,
                spec: TagSpec {
                    name: input.name,
                    unit: None,
                    address: input.address,
                    data_type,
                    scale: input.scale,
                    offset: input.offset,
                    eng_unit: input.eng_unit,
                    deadband: input.deadband,
                    writable: input.writable,
                },
                alarms,
            });
            own(Loc::Tag(d, tags.len() - 1))
        })
        .await?;
        note_created(ctx, &outcome, Kind::Tag);
        written(ctx, outcome.stored.tags, "tag", |t| {
            Some(t.device) == device_id && t.spec.name == name
        })
    }

    /// Changes a tag. Its device reads it the new way at once (re-planned in place
    /// where the protocol allows, restarted otherwise); its alarm rules, when given,
    /// replace the old ones (a rule that stays by name keeps its alarm's state).
    async fn update_tag(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: TagPatch,
    ) -> async_graphql::Result<Tag> {
        let mut r = Reading::default();
        let data_type = input
            .data_type
            .as_deref()
            .and_then(|t| r.one(configure::data_type(t, "input.dataType")));
        let alarms = input
            .alarms
            .as_ref()
            .and_then(|a| r.many(configure::alarms(a, "input.alarms")));
        r.finish(ctx)?;
        let tag_id: Option<TagId> = id.parse().ok();
        let outcome = configure::change(ctx, false, |stored, draft| {
            let (d, i) = tag_index(stored, draft, &id)?;
            let unit = match &input.unit_id {
                MaybeUndefined::Undefined => draft.devices[d].tags[i].unit.clone(),
                MaybeUndefined::Null => None,
                MaybeUndefined::Value(u) => Some(configure::unit_name(stored, u)?),
            };
            let t = &mut draft.devices[d].tags[i];
            t.unit = unit;
            let s = &mut t.spec;
            if let Some(v) = input.name {
                s.name = v;
            }
            if let Some(v) = input.address {
                s.address = v;
            }
            if let Some(v) = data_type {
                s.data_type = v;
            }
            if let Some(v) = input.scale {
                s.scale = v;
            }
            if let Some(v) = input.offset {
                s.offset = v;
            }
            match input.eng_unit {
                MaybeUndefined::Undefined => {}
                MaybeUndefined::Null => s.eng_unit = None,
                MaybeUndefined::Value(v) => s.eng_unit = Some(v),
            }
            if let Some(v) = input.deadband {
                s.deadband = v;
            }
            if let Some(v) = input.writable {
                s.writable = v;
            }
            if let Some(rules) = alarms {
                t.alarms = rules;
            }
            own(Loc::Tag(d, i))
        })
        .await?;
        written(ctx, outcome.stored.tags, "tag", |t| Some(t.id) == tag_id)
    }

    /// Deletes a tag with its alarm rules; its device stops reading it, and live
    /// subscriptions that follow only it end. Its history stays.
    async fn delete_tag(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        configure::change(ctx, false, |stored, draft| {
            let (d, i) = tag_index(stored, draft, &id)?;
            draft.devices[d].tags.remove(i);
            own(Loc::Device(d))
        })
        .await?;
        Ok(true)
    }
}
