//! Live configuration: units, devices, tags and alarm rules changed while the plant
//! runs (the API's mutations, `importConfig`, and the config file at start-up).
//!
//! Every change goes the same way, one at a time per tenant (its `config_lock`):
//! read the stored world, edit it as a [`Draft`], check the whole draft
//! ([`check`](crate::config::draft::check): the rules the config file is held to, and
//! the tenant's quotas), plan the writes against what is stored ([`plan`]), write them
//! in one transaction, then hand the running tenant the devices as stored and what
//! the change touched: exactly those device actors move. A change the running tenant
//! could not apply is reported with the devices at fault, which show the error.

mod document;
mod merge;
mod paths;
mod plan;
pub mod probe;
mod security;
mod stored;
mod tags;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::rpc::CallResult;

pub use document::{Format, KEEP_SECRET, ParseError, TenantDoc, from_json, parse};
pub use merge::merge;
pub use paths::{FieldError, Scope};
pub use plan::{Change, Kind, Op};
pub use stored::{Drafted, Stored};

use crate::actors::TenantShared;
use crate::actors::tenant::TenantMsg;
use crate::config::Manage;
use crate::config::draft::{Draft, Problem, check};
use crate::domain::{Quotas, TenantId};
use crate::secrets::SecretKey;
use crate::storage::{self, Store};
use crate::telemetry::names;

/// How long a change waits for the running tenant to apply it.
const APPLY_WITHIN: Duration = Duration::from_secs(60);

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The change breaks rules of the configuration: every problem, with its place.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// An id that is not one of the tenant's.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The change is refused as a whole (a unit that still has devices …).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] storage::Error),
}

/// What a change works with.
pub struct Env<'a> {
    pub store: &'a dyn Store,
    /// The tenant's quotas (its own over the defaults).
    pub quotas: Quotas,
    /// Seals device secrets; None when `THERMACORE_SECRET_KEY` is not set.
    pub key: Option<&'a SecretKey>,
}

/// An edit of a draft: where its problems are reported, and problems it found itself.
pub struct Edit<'a> {
    pub scope: Scope<'a>,
    pub problems: Vec<Problem>,
}

/// What a change did.
#[derive(Debug)]
pub struct Outcome {
    /// Every object created, updated or deleted (would be, for a dry run).
    pub changes: Vec<Change>,
    /// False for a dry run: nothing was written.
    pub applied: bool,
    /// Devices the running tenant could not apply the change to (name, why); the
    /// change is stored, and the devices show the error.
    pub failed: Vec<(String, String)>,
    /// The world as stored after the change (before it, for a dry run).
    pub stored: Stored,
}

/// Makes one change of a running tenant's configuration (see the module
/// documentation). `edit` turns the stored world's draft into the wanted one.
pub async fn change<'a, F>(
    env: &Env<'_>,
    tenant: &TenantShared,
    dry_run: bool,
    edit: F,
) -> Result<Outcome, ManageError>
where
    F: FnOnce(&Stored, &mut Draft) -> Result<Edit<'a>, ManageError>,
{
    let _one_at_a_time = tenant.config_lock.lock().await;
    let id = tenant.tenant.id;
    let generation = tenant.config_generation.load(Ordering::Acquire);
    let stored = match take_snapshot(tenant, generation) {
        Some(s) => s,
        None => Stored::load(env.store, id).await?,
    };
    let mut draft = stored.draft();
    let planned = edit(&stored, &mut draft).and_then(|edit| prepare(env, &stored, &draft, edit));
    let mut plan = match planned {
        Ok(p) => p,
        Err(e) => {
            keep_snapshot(tenant, generation, &stored);
            return Err(e);
        }
    };
    if dry_run || plan.changes.is_empty() {
        keep_snapshot(tenant, generation, &stored);
        return Ok(Outcome {
            changes: plan.report,
            applied: !dry_run,
            failed: Vec::new(),
            stored,
        });
    }
    let written = env.store.apply_world(id, &plan.changes).await?;
    let mut touched = plan.touched.clone();
    let plan_changes = std::mem::take(&mut plan.changes);
    let changes = plan.finish(&written);
    count(&changes);
    // Stored: from here on, what the running tenant is not told now, it is told with
    // the next change.
    if let Ok(mut earlier) = tenant.unapplied.lock() {
        touched.merge(std::mem::take(&mut *earlier));
    }
    let mut after = stored;
    after.apply(id, &plan_changes, &written);
    keep_snapshot(tenant, generation, &after);
    let failed = apply_running(tenant, &after, touched).await;
    metrics::counter!(names::CONFIG_NOT_APPLIED).increment(failed.len() as u64);
    Ok(Outcome {
        changes,
        applied: true,
        failed,
        stored: after,
    })
}

/// Counts what a stored change did, by op.
fn count(changes: &[Change]) {
    for (op, name) in [
        (Op::Create, "create"),
        (Op::Update, "update"),
        (Op::Delete, "delete"),
    ] {
        let n = changes.iter().filter(|c| c.op == op).count() as u64;
        if n > 0 {
            metrics::counter!(names::CONFIG_CHANGES, "op" => name).increment(n);
        }
    }
}

/// Checks the edited draft and plans its writes; every problem found is reported
/// together, each at its place in the edit's scope.
fn prepare(
    env: &Env<'_>,
    stored: &Stored,
    draft: &Draft,
    edit: Edit<'_>,
) -> Result<plan::Plan, ManageError> {
    let mut problems = edit.problems;
    problems.extend(check(draft, Some(&env.quotas)));
    if problems.is_empty() {
        match plan::plan(stored, draft, env.key) {
            Ok(p) => return Ok(p),
            Err(more) => problems = more,
        }
    }
    // In document order; the document's own problems before the rules' at one place.
    problems.sort_by_key(|p| p.loc.order());
    Err(ManageError::Invalid(
        problems
            .iter()
            .map(|p| edit.scope.locate(draft, p))
            .collect(),
    ))
}

/// The snapshot the last change left, if it is of the current generation (nothing was
/// written to the configuration outside the live configuration since).
fn take_snapshot(tenant: &TenantShared, generation: u64) -> Option<Stored> {
    let mut slot = tenant.config_snapshot.lock().ok()?;
    match slot.take() {
        Some((g, s)) if g == generation => {
            Some(Arc::try_unwrap(s).unwrap_or_else(|s| (*s).clone()))
        }
        _ => None,
    }
}

/// Keeps the world as stored now for the next change, marked with the generation it
/// was read at: a write outside meanwhile makes it stale.
fn keep_snapshot(tenant: &TenantShared, generation: u64, stored: &Stored) {
    if let Ok(mut slot) = tenant.config_snapshot.lock() {
        *slot = Some((generation, Arc::new(stored.clone())));
    }
}

fn keep_unapplied(tenant: &TenantShared, touched: crate::actors::tenant::Touched) {
    if let Ok(mut pending) = tenant.unapplied.lock() {
        pending.merge(touched);
    }
}

/// Hands the running tenant its devices as stored now and what the change touched;
/// returns the devices it could not apply the change to. A tenant actor between lives
/// starts its next one from these devices.
async fn apply_running(
    tenant: &TenantShared,
    after: &Stored,
    touched: crate::actors::tenant::Touched,
) -> Vec<(String, String)> {
    let devices = after.worlds();
    tenant.set_configured(devices.clone());
    let Some(actor) = tenant.tenant_actor.get() else {
        return Vec::new();
    };
    let answer = actor
        .call(
            |reply| TenantMsg::Reconfigure {
                devices,
                touched: touched.clone(),
                reply,
            },
            Some(APPLY_WITHIN),
        )
        .await;
    let name = |id| {
        after
            .device(id)
            .map_or_else(|| id.to_string(), |d| d.spec.name.clone())
    };
    match answer {
        Ok(CallResult::Success(report)) => report
            .failed
            .into_iter()
            .map(|(id, why)| (name(id), why))
            .collect(),
        Ok(CallResult::Timeout) => {
            keep_unapplied(tenant, touched);
            vec![(
                "*".into(),
                format!(
                    "the running tenant did not confirm the change within {} s",
                    APPLY_WITHIN.as_secs()
                ),
            )]
        }
        // Stopped meanwhile: its next life starts from the devices as stored.
        _ => Vec::new(),
    }
}

/// The config file's section of a tenant applied at start-up, before its actors run:
/// declared objects are created or updated by name; with `manage = "replace"` the
/// ones the section does not declare are deleted. `declared` comes with the problems
/// of its conversion ([`Draft::from_config`]). Returns what changed.
pub async fn seed(
    env: &Env<'_>,
    tenant: TenantId,
    (declared, problems): (Draft, Vec<Problem>),
    mode: Manage,
) -> Result<Vec<Change>, ManageError> {
    let stored = Stored::load(env.store, tenant).await?;
    let draft = match mode {
        Manage::Merge => merge(stored.draft(), declared),
        Manage::Replace => declared,
    };
    let edit = Edit {
        scope: Scope::File,
        problems,
    };
    let plan = prepare(env, &stored, &draft, edit)?;
    if plan.changes.is_empty() {
        return Ok(plan.report);
    }
    let written = env.store.apply_world(tenant, &plan.changes).await?;
    let changes = plan.finish(&written);
    count(&changes);
    Ok(changes)
}
