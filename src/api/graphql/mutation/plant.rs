//! Units and devices (permission `configure`; tags are in `tags.rs`), created,
//! changed and deleted while the plant runs: each mutation is one change of the live
//! configuration
//! ([`crate::manage`]), checked whole, stored in one transaction, then applied to the
//! running actors (only the devices it concerns move), and audited with its objects
//! before and after.

use async_graphql::{Context, ID, MaybeUndefined, Object};

use crate::api::audit::note;
use crate::api::graphql::configure::{self, Reading};
use crate::api::graphql::types::{
    Device, DeviceInput, DevicePatch, LocationInput, Unit, UnitInput, UnitPatch,
};
use crate::api::graphql::{ApiError, fail};
use crate::api::permissions::FieldAccess;
use crate::config::draft::{DeviceDraft, Draft, Loc, SecurityDraft, UnitDraft};
use crate::domain::{DeviceId, Location, TagId, UnitId, UnitSpec};
use crate::manage::{Edit, FieldError, Kind, ManageError, Op, Outcome, Scope, Stored};

#[derive(Default)]
pub struct PlantMutations;

/// The edit's scope: the mutation's own object at `loc`.
pub(super) fn own(loc: Loc) -> Result<Edit<'static>, ManageError> {
    Ok(Edit {
        scope: Scope::Input(loc),
        problems: Vec::new(),
    })
}

fn location(l: LocationInput) -> Result<Location, FieldError> {
    Location::new(l.lat, l.lon).map_err(|e| FieldError {
        path: "input.location".into(),
        message: e.to_string(),
        quota: None,
    })
}

pub(super) fn device_index(draft: &Draft, id: &ID) -> Result<usize, ManageError> {
    let id: Option<DeviceId> = id.parse().ok();
    draft
        .devices
        .iter()
        .position(|d| d.id.is_some() && d.id == id)
        .ok_or(ManageError::NotFound("device"))
}

/// Where a tag is in the draft; a tag its driver generates is not there to change.
pub(super) fn tag_index(
    stored: &Stored,
    draft: &Draft,
    id: &ID,
) -> Result<(usize, usize), ManageError> {
    let id: Option<TagId> = id.parse().ok();
    for (d, device) in draft.devices.iter().enumerate() {
        if let Some(t) = device
            .tags
            .iter()
            .position(|t| t.id.is_some() && t.id == id)
        {
            return Ok((d, t));
        }
    }
    match id.and_then(|id| stored.tag(id)) {
        Some(t) => Err(ManageError::Refused(format!(
            "tag `{}` is made by its device's driver (`generated_tags`): change the device's driver settings instead",
            t.spec.name
        ))),
        None => Err(ManageError::NotFound("tag")),
    }
}

/// Notes the id of the object a create made, for the audit record.
pub(super) fn note_created(ctx: &Context<'_>, outcome: &Outcome, kind: Kind) {
    let id = outcome
        .changes
        .iter()
        .find(|c| c.kind == kind && c.op == Op::Create)
        .and_then(|c| c.id.clone());
    if id.is_some() {
        note(ctx, |n| n.resource_id = id);
    }
}

/// The object a change wrote, found in the world as stored after it, as the API shows
/// it.
pub(super) fn written<T, G: From<T>>(
    ctx: &Context<'_>,
    stored: Vec<T>,
    what: &'static str,
    found: impl FnMut(&T) -> bool,
) -> async_graphql::Result<G> {
    stored.into_iter().find(found).map(G::from).ok_or_else(|| {
        fail(
            ctx,
            ApiError::Internal(format!("the {what} written is not in the store")),
        )
    })
}

#[Object(guard = "FieldAccess(\"Mutation\")")]
impl PlantMutations {
    /// Creates a unit (a physical asset: a boiler house, a pump station).
    async fn create_unit(
        &self,
        ctx: &Context<'_>,
        input: UnitInput,
    ) -> async_graphql::Result<Unit> {
        let mut r = Reading::default();
        let location = input.location.and_then(|l| r.one(location(l)));
        r.finish(ctx)?;
        let name = input.name.clone();
        let spec = UnitSpec {
            name: input.name,
            location,
            description: input.description,
        };
        let outcome = configure::change(ctx, false, |_, draft| {
            draft.units.push(UnitDraft { id: None, spec });
            own(Loc::Unit(draft.units.len() - 1))
        })
        .await?;
        note_created(ctx, &outcome, Kind::Unit);
        written(ctx, outcome.stored.units, "unit", |u| u.spec.name == name)
    }

    /// Changes a unit; the devices and tags attached to it follow a new name.
    async fn update_unit(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UnitPatch,
    ) -> async_graphql::Result<Unit> {
        let mut r = Reading::default();
        let location = match input.location {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(l) => r.one(location(l)).map(Some),
        };
        r.finish(ctx)?;
        let unit_id: Option<UnitId> = id.parse().ok();
        let outcome = configure::change(ctx, false, |_, draft| {
            let i = draft
                .units
                .iter()
                .position(|u| u.id.is_some() && u.id == unit_id)
                .ok_or(ManageError::NotFound("unit"))?;
            if let Some(name) = input.name {
                let old = std::mem::replace(&mut draft.units[i].spec.name, name.clone());
                for d in &mut draft.devices {
                    for unit in
                        std::iter::once(&mut d.unit).chain(d.tags.iter_mut().map(|t| &mut t.unit))
                    {
                        if unit.as_deref() == Some(old.as_str()) {
                            *unit = Some(name.clone());
                        }
                    }
                }
            }
            let spec = &mut draft.units[i].spec;
            if let Some(l) = location {
                spec.location = l;
            }
            match input.description {
                MaybeUndefined::Undefined => {}
                MaybeUndefined::Null => spec.description = None,
                MaybeUndefined::Value(d) => spec.description = Some(d),
            }
            own(Loc::Unit(i))
        })
        .await?;
        written(ctx, outcome.stored.units, "unit", |u| Some(u.id) == unit_id)
    }

    /// Deletes a unit. A unit that still has devices is refused unless `cascade`, which
    /// deletes those devices too; tags of other devices attached to it are detached.
    async fn delete_unit(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = false)] cascade: bool,
    ) -> async_graphql::Result<bool> {
        let unit_id: Option<UnitId> = id.parse().ok();
        configure::change(ctx, false, |_, draft| {
            let i = draft
                .units
                .iter()
                .position(|u| u.id.is_some() && u.id == unit_id)
                .ok_or(ManageError::NotFound("unit"))?;
            let name = draft.units.remove(i).spec.name;
            let attached: Vec<&str> = draft
                .devices
                .iter()
                .filter(|d| d.unit.as_deref() == Some(name.as_str()))
                .map(|d| d.name.as_str())
                .collect();
            if !attached.is_empty() && !cascade {
                return Err(ManageError::Refused(format!(
                    "unit `{name}` still has {} device(s) ({}): move or delete them first, or delete with cascade: true",
                    attached.len(),
                    attached.join(", ")
                )));
            }
            draft.devices.retain(|d| d.unit.as_deref() != Some(name.as_str()));
            for t in draft.devices.iter_mut().flat_map(|d| d.tags.iter_mut()) {
                if t.unit.as_deref() == Some(name.as_str()) {
                    t.unit = None;
                }
            }
            own(Loc::Tenant)
        })
        .await?;
        Ok(true)
    }

    /// Creates a device and starts its actor (if enabled): it connects and polls at
    /// once. Its tags are created with `createTag` (or declared in `importConfig`).
    async fn create_device(
        &self,
        ctx: &Context<'_>,
        input: DeviceInput,
    ) -> async_graphql::Result<Device> {
        let mut r = Reading::default();
        let driver = r.one(configure::driver(&input.driver, "input.driver"));
        let security = r.one(configure::security(
            input.security.as_ref(),
            "input.security",
        ));
        r.finish(ctx)?;
        let (Some(driver), Some(security)) = (driver, security) else {
            return Err(fail(
                ctx,
                ApiError::Internal("input read without errors is missing".into()),
            ));
        };
        let name = input.name.clone();
        let outcome = configure::change(ctx, false, |stored, draft| {
            let unit = input
                .unit_id
                .as_ref()
                .map(|u| configure::unit_name(stored, u))
                .transpose()?;
            draft.devices.push(DeviceDraft {
                id: None,
                name: input.name,
                unit,
                enabled: input.enabled,
                poll_ms: input.poll_ms,
                driver,
                security: SecurityDraft::Given(security),
                tags: Vec::new(),
            });
            own(Loc::Device(draft.devices.len() - 1))
        })
        .await?;
        note_created(ctx, &outcome, Kind::Device);
        written(ctx, outcome.stored.devices, "device", |d| {
            d.spec.name == name
        })
    }

    /// Changes a device. Its actor restarts with the new settings (only this device's:
    /// the others go on); a change of only its unit restarts nothing.
    async fn update_device(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: DevicePatch,
    ) -> async_graphql::Result<Device> {
        let mut r = Reading::default();
        let driver = input
            .driver
            .as_ref()
            .and_then(|d| r.one(configure::driver(d, "input.driver")));
        let security = match &input.security {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(Default::default()),
            MaybeUndefined::Value(s) => r.one(configure::security(Some(s), "input.security")),
        };
        r.finish(ctx)?;
        let device_id: Option<DeviceId> = id.parse().ok();
        let outcome = configure::change(ctx, false, |stored, draft| {
            let i = device_index(draft, &id)?;
            let unit = match &input.unit_id {
                MaybeUndefined::Undefined => draft.devices[i].unit.clone(),
                MaybeUndefined::Null => None,
                MaybeUndefined::Value(u) => Some(configure::unit_name(stored, u)?),
            };
            let d = &mut draft.devices[i];
            d.unit = unit;
            if let Some(name) = input.name {
                d.name = name;
            }
            if let Some(enabled) = input.enabled {
                d.enabled = enabled;
            }
            if let Some(poll_ms) = input.poll_ms {
                d.poll_ms = poll_ms;
            }
            if let Some(driver) = driver {
                d.driver = driver;
            }
            if let Some(security) = security {
                d.security = SecurityDraft::Given(security);
            }
            own(Loc::Device(i))
        })
        .await?;
        written(ctx, outcome.stored.devices, "device", |d| {
            Some(d.id) == device_id
        })
    }

    /// Takes a device out of service (its actor stops, its tags turn BAD / `disabled`,
    /// its alarms are suppressed) or back into it.
    async fn set_device_enabled(
        &self,
        ctx: &Context<'_>,
        id: ID,
        enabled: bool,
    ) -> async_graphql::Result<Device> {
        let device_id: Option<DeviceId> = id.parse().ok();
        let outcome = configure::change(ctx, false, |_, draft| {
            let i = device_index(draft, &id)?;
            draft.devices[i].enabled = enabled;
            own(Loc::Device(i))
        })
        .await?;
        written(ctx, outcome.stored.devices, "device", |d| {
            Some(d.id) == device_id
        })
    }

    /// Deletes a device with its tags and their alarm rules: its actor stops, its tags
    /// leave the cache, and live subscriptions that follow it end. Their history, alarm
    /// transitions and audit records stay; their ids are never given again.
    async fn delete_device(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        configure::change(ctx, false, |_, draft| {
            let i = device_index(draft, &id)?;
            draft.devices.remove(i);
            own(Loc::Tenant)
        })
        .await?;
        Ok(true)
    }
}
