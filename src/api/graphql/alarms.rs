//! Alarms in the API: the alarm list and the history of transitions, operators'
//! acknowledge / shelve / unshelve (through the tenant's alert stream, the one writer
//! of alarm state), and the `alarmEvents` subscription.

use std::time::Duration;

use async_graphql::{Context, ID, Object, Subscription};
use chrono::{DateTime, Utc};
use futures::Stream;
use ractor::rpc::CallResult;
use tokio::sync::broadcast::error::RecvError;

use super::types::{
    AcknowledgeResult, Alarm, AlarmEvent, AlarmEventPage, AlarmPage, AlarmSkip, AlarmState,
    Severity, cursor_key, decode_cursor, encode_cursor,
};
use super::{ApiError, api, fail, session, tenant};
use crate::actors::TenantShared;
use crate::actors::alerts::{AlarmCommandError, AlertMsg};
use crate::alarms::{AlarmView, Command, EngineError};
use crate::api::audit::note;
use crate::api::permissions::FieldAccess;
use crate::domain::{RuleId, Timestamp, UnitId};
use crate::storage::AlarmHistoryFilter;
use crate::telemetry::names;

/// The longest shelving an operator may set.
pub const MAX_SHELVE: Duration = Duration::from_secs(30 * 86_400);
/// Most alarms one `acknowledgeAlarms` call takes.
pub const MAX_BULK: usize = 1000;
/// Longest comment or shelving reason.
const MAX_TEXT: usize = 500;
/// How long a command waits for the alert stream.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The caller's tenant's unit `id` (NOT_FOUND otherwise).
pub(super) async fn own_unit(
    ctx: &Context<'_>,
    id: Option<&ID>,
) -> async_graphql::Result<Option<UnitId>> {
    let Some(id) = id else { return Ok(None) };
    let unit: UnitId = id
        .parse()
        .map_err(|_| fail(ctx, ApiError::NotFound("unit")))?;
    let s = session(ctx)?;
    let units = api(ctx)
        .store
        .units(s.tenant)
        .await
        .map_err(|e| fail(ctx, e))?;
    if units.iter().any(|u| u.id == unit) {
        Ok(Some(unit))
    } else {
        Err(fail(ctx, ApiError::NotFound("unit")))
    }
}

fn text(
    ctx: &Context<'_>,
    field: &str,
    s: Option<String>,
) -> async_graphql::Result<Option<String>> {
    match s {
        Some(s) if s.chars().count() > MAX_TEXT => Err(fail(
            ctx,
            ApiError::BadRequest(format!("{field}: at most {MAX_TEXT} characters")),
        )),
        other => Ok(other),
    }
}

pub(super) fn first_in(ctx: &Context<'_>, first: i32, max: i32) -> async_graphql::Result<usize> {
    if (1..=max).contains(&first) {
        Ok(first as usize)
    } else {
        Err(fail(
            ctx,
            ApiError::BadRequest(format!("`first` must be within 1..={max}")),
        ))
    }
}

#[derive(Default)]
pub struct AlarmQueries;

#[Object(guard = "FieldAccess(\"Query\")")]
impl AlarmQueries {
    /// The alarm list: the caller's tenant's alarms in the given states (default:
    /// every state but NORMAL) and severities, on tags of `unitId` or of `deviceId`;
    /// most severe first, then the most recently changed; `first` (at most 500) after
    /// the cursor `after`.
    #[allow(clippy::too_many_arguments)]
    async fn alarms(
        &self,
        ctx: &Context<'_>,
        state: Option<Vec<AlarmState>>,
        severity: Option<Vec<Severity>>,
        unit_id: Option<ID>,
        device_id: Option<ID>,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<AlarmPage> {
        let t = tenant(ctx)?;
        let first = first_in(ctx, first, 500)?;
        let unit = own_unit(ctx, unit_id.as_ref()).await?;
        let device = super::subscription::own_device(ctx, &t, device_id)?;
        let after = match after {
            None => None,
            Some(c) => Some(decode_cursor(&c).ok_or_else(|| {
                fail(ctx, ApiError::BadRequest("`after` is not a cursor".into()))
            })?),
        };
        let mut list: Vec<Alarm> = t
            .alarms
            .iter()
            .filter(|v| unit.is_none_or(|u| v.tag.unit == Some(u)))
            .filter(|v| device.is_none_or(|d| v.tag.device == d))
            .map(|v| Alarm::from(v.value()))
            .filter(|a| match &state {
                Some(states) => states.contains(&a.state),
                None => a.state != AlarmState::Normal,
            })
            .filter(|a| severity.as_ref().is_none_or(|s| s.contains(&a.severity)))
            .filter(|a| after.is_none_or(|k| cursor_key(a) > k))
            .collect();
        list.sort_by_key(cursor_key);
        let has_next_page = list.len() > first;
        list.truncate(first);
        Ok(AlarmPage {
            end_cursor: list.last().map(encode_cursor),
            has_next_page,
            alarms: list,
        })
    }

    /// Recorded transitions of the caller's tenant's alarms (of one alarm with
    /// `alarmId`), newest first, within `[from, to)`, `first` (at most 500) after the
    /// cursor `after`.
    async fn alarm_history(
        &self,
        ctx: &Context<'_>,
        alarm_id: Option<ID>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<AlarmEventPage> {
        let s = session(ctx)?;
        let first = first_in(ctx, first, 500)?;
        let rule = match &alarm_id {
            None => None,
            Some(id) => Some(own_alarm(ctx, &*tenant(ctx)?, id)?),
        };
        let before_id =
            match after {
                None => None,
                Some(c) => Some(c.parse::<i64>().map_err(|_| {
                    fail(ctx, ApiError::BadRequest("`after` is not a cursor".into()))
                })?),
            };
        let filter = AlarmHistoryFilter {
            rule,
            from: from.map(Timestamp::from_datetime),
            to: to.map(Timestamp::from_datetime),
        };
        let mut records = api(ctx)
            .store
            .alarm_history(s.tenant, &filter, before_id, first as i64 + 1)
            .await
            .map_err(|e| fail(ctx, e))?;
        let has_next_page = records.len() > first;
        records.truncate(first);
        Ok(AlarmEventPage {
            end_cursor: records.last().map(|r| r.id.to_string()),
            has_next_page,
            events: records.into_iter().map(Into::into).collect(),
        })
    }
}

/// Sends an operator's command to the tenant's alert stream and waits for the
/// alarm after it.
async fn command(
    ctx: &Context<'_>,
    t: &TenantShared,
    rule: RuleId,
    command: Command,
    comment: Option<String>,
) -> Result<AlarmView, ApiError> {
    let s = session(ctx).map_err(|_| ApiError::Unauthenticated)?;
    let actor = t
        .alerts_actor
        .get()
        .ok_or_else(|| ApiError::Unavailable("the alert stream is restarting".into()))?;
    let user = s.username.clone();
    match actor
        .call(
            |reply| AlertMsg::Command {
                rule,
                command,
                user,
                comment,
                reply,
            },
            Some(CALL_TIMEOUT),
        )
        .await
    {
        Ok(CallResult::Success(Ok(view))) => Ok(view),
        Ok(CallResult::Success(Err(e))) => Err(match e {
            AlarmCommandError::Engine(EngineError::NotFound(_)) => ApiError::NotFound("alarm"),
            AlarmCommandError::Engine(EngineError::State(e)) => ApiError::BadRequest(e.to_string()),
            AlarmCommandError::Store(e) => ApiError::Unavailable(e),
        }),
        Ok(CallResult::Timeout) => Err(ApiError::Unavailable(
            "the alert stream did not answer in time".into(),
        )),
        Ok(CallResult::SenderError) | Err(_) => Err(ApiError::Unavailable(
            "the alert stream stopped before answering".into(),
        )),
    }
}

/// The caller's tenant's alarm `id` (NOT_FOUND otherwise, whether or not it exists
/// elsewhere).
fn own_alarm(ctx: &Context<'_>, t: &TenantShared, id: &ID) -> async_graphql::Result<RuleId> {
    match id.parse::<RuleId>() {
        Ok(rule) if t.alarms.contains_key(&rule) => Ok(rule),
        _ => Err(fail(ctx, ApiError::NotFound("alarm"))),
    }
}

#[derive(Default)]
pub struct AlarmMutations;

#[Object(guard = "FieldAccess(\"Mutation\")")]
impl AlarmMutations {
    /// Acknowledges an active (UNACKED → ACKED) or returned (RTN_UNACKED → NORMAL)
    /// alarm. One already acknowledged, normal, shelved or suppressed is
    /// BAD_USER_INPUT and changes nothing.
    async fn acknowledge_alarm(
        &self,
        ctx: &Context<'_>,
        id: ID,
        comment: Option<String>,
    ) -> async_graphql::Result<Alarm> {
        let t = tenant(ctx)?;
        let rule = own_alarm(ctx, &t, &id)?;
        note(ctx, |n| n.resource_id = Some(rule.to_string()));
        let comment = text(ctx, "comment", comment)?;
        command(ctx, &t, rule, Command::Acknowledge, comment)
            .await
            .map(|v| Alarm::from(&v))
            .map_err(|e| fail(ctx, e))
    }

    /// Acknowledges many alarms (at most 1000): those waiting for it are
    /// acknowledged, the others are listed as skipped with why. An id that is not one
    /// of the caller's alarms is NOT_FOUND and nothing is acknowledged.
    async fn acknowledge_alarms(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
        comment: Option<String>,
    ) -> async_graphql::Result<AcknowledgeResult> {
        let t = tenant(ctx)?;
        if ids.len() > MAX_BULK {
            return Err(fail(
                ctx,
                ApiError::BadRequest(format!("at most {MAX_BULK} alarms per call")),
            ));
        }
        let rules = ids
            .iter()
            .map(|id| own_alarm(ctx, &t, id))
            .collect::<async_graphql::Result<Vec<_>>>()?;
        let comment = text(ctx, "comment", comment)?;
        note(ctx, |n| {
            n.resource_id = Some(format!("{} alarms", rules.len()))
        });
        let mut result = AcknowledgeResult {
            acknowledged: Vec::new(),
            skipped: Vec::new(),
        };
        for rule in rules {
            match command(ctx, &t, rule, Command::Acknowledge, comment.clone()).await {
                Ok(v) => result.acknowledged.push(Alarm::from(&v)),
                Err(ApiError::BadRequest(reason)) => result.skipped.push(AlarmSkip {
                    id: ID(rule.to_string()),
                    reason,
                }),
                Err(e) => return Err(fail(ctx, e)),
            }
        }
        Ok(result)
    }

    /// Shelves an alarm until `until` (in the future, at most 30 days ahead) with a
    /// reason: it leaves the alarm list and comes back by itself when the shelving
    /// ends, in the state its condition calls for.
    async fn shelve_alarm(
        &self,
        ctx: &Context<'_>,
        id: ID,
        until: DateTime<Utc>,
        reason: String,
    ) -> async_graphql::Result<Alarm> {
        let t = tenant(ctx)?;
        let rule = own_alarm(ctx, &t, &id)?;
        note(ctx, |n| n.resource_id = Some(rule.to_string()));
        let reason = text(ctx, "reason", Some(reason))?.unwrap_or_default();
        if reason.trim().is_empty() {
            return Err(fail(
                ctx,
                ApiError::BadRequest("reason: a shelving needs a reason".into()),
            ));
        }
        let limit = Utc::now() + MAX_SHELVE;
        if until > limit {
            return Err(fail(
                ctx,
                ApiError::BadRequest(format!(
                    "until: a shelving ends at most {} days ahead",
                    MAX_SHELVE.as_secs() / 86_400
                )),
            ));
        }
        let cmd = Command::Shelve {
            until: Timestamp::from_datetime(until),
            reason: reason.clone(),
        };
        command(ctx, &t, rule, cmd, Some(reason))
            .await
            .map(|v| Alarm::from(&v))
            .map_err(|e| fail(ctx, e))
    }

    /// Ends a shelving now.
    async fn unshelve_alarm(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Alarm> {
        let t = tenant(ctx)?;
        let rule = own_alarm(ctx, &t, &id)?;
        note(ctx, |n| n.resource_id = Some(rule.to_string()));
        command(ctx, &t, rule, Command::Unshelve, None)
            .await
            .map(|v| Alarm::from(&v))
            .map_err(|e| fail(ctx, e))
    }
}

#[derive(Default)]
pub struct AlarmSubscriptions;

#[Subscription(guard = "FieldAccess(\"Subscription\")")]
impl AlarmSubscriptions {
    /// Every transition of the caller's tenant's alarms as it happens, of at least
    /// `minSeverity`, on tags of `unitId`. A subscriber that falls behind misses
    /// transitions (counted in `thermacore_alarm_events_lagged_total`) and should
    /// read `alarms` again.
    async fn alarm_events(
        &self,
        ctx: &Context<'_>,
        min_severity: Option<Severity>,
        unit_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = AlarmEvent> + use<>> {
        let t = tenant(ctx)?;
        let unit = own_unit(ctx, unit_id.as_ref()).await?;
        let slot = super::subscription::open_slot(ctx)?;
        let rx = t.alarm_events.subscribe();
        let min = min_severity.unwrap_or(Severity::Info);
        let stream = futures::stream::unfold((rx, slot, t), move |(mut rx, slot, t)| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        let on_unit = unit.is_none_or(|u| {
                            t.alarms.get(&e.rule).is_some_and(|v| v.tag.unit == Some(u))
                        });
                        if Severity::from(e.severity) >= min && on_unit {
                            return Some((AlarmEvent::new(None, &e), (rx, slot, t)));
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        metrics::counter!(names::ALARM_EVENTS_LAGGED).increment(n);
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        Ok(stream)
    }
}
