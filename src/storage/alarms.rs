//! The alarm tables: rules, the current state of each rule's alarm, and the history
//! of transitions. Same SQL on both backends, compiled twice like `world.rs`, each time
//! as the [`AlarmStore`] of its parent's `Backend`.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::StreamExt;
use sqlx::FromRow;

use super::{Backend, next_id};
use crate::alarms::{
    AlarmEvent, AlarmState, Anomaly, Condition, Detection, Rule, RuleSpec, Severity, StoredAlarm,
};
use crate::domain::{RuleId, TagId, TenantId, Timestamp};
use crate::storage::export::{Chunks, forward, spawn_export};
use crate::storage::rows::insert_error;
use crate::storage::{
    AlarmEventRecord, AlarmHistoryFilter, AlarmStore, AnomalyFilter, AnomalyRecord, Error, Result,
};

/// (state, reason, shelved_until) columns of a state.
fn state_columns(s: &AlarmState) -> (&'static str, Option<&str>, Option<i64>) {
    match s {
        AlarmState::Shelved { until, reason } => (s.name(), Some(reason), Some(until.0)),
        AlarmState::Suppressed { reason } => (s.name(), Some(reason), None),
        _ => (s.name(), None, None),
    }
}

fn state_of(state: &str, reason: Option<String>, until: Option<i64>) -> Result<AlarmState> {
    Ok(match state {
        "normal" => AlarmState::Normal,
        "unacked" => AlarmState::Unacked,
        "acked" => AlarmState::Acked,
        "rtn_unacked" => AlarmState::RtnUnacked,
        "shelved" => AlarmState::Shelved {
            until: Timestamp(until.unwrap_or_default()),
            reason: reason.unwrap_or_default(),
        },
        "suppressed" => AlarmState::Suppressed {
            reason: reason.unwrap_or_default(),
        },
        other => return Err(Error::Corrupt(format!("alarm state `{other}`"))),
    })
}

fn condition(active: bool) -> Condition {
    if active {
        Condition::Active
    } else {
        Condition::Clear
    }
}

#[derive(FromRow)]
struct RuleRow {
    id: i64,
    tenant_id: i64,
    tag_id: i64,
    spec: String,
}

impl TryFrom<RuleRow> for Rule {
    type Error = Error;
    fn try_from(r: RuleRow) -> Result<Self> {
        let spec = serde_json::from_str(&r.spec)
            .map_err(|e| Error::Corrupt(format!("alarm_rules.spec of rule {}: {e}", r.id)))?;
        Ok(Rule {
            id: RuleId(r.id),
            tenant: TenantId(r.tenant_id),
            tag: TagId(r.tag_id),
            spec,
        })
    }
}

#[derive(FromRow)]
struct AlarmRow {
    rule_id: i64,
    state: String,
    reason: Option<String>,
    shelved_until: Option<i64>,
    active: bool,
    since: i64,
    active_since: Option<i64>,
    value: Option<f64>,
    message: String,
    acked_by: Option<String>,
}

#[derive(FromRow)]
struct EventRow {
    id: i64,
    rule_id: i64,
    tag_id: i64,
    severity: String,
    at: i64,
    from_state: String,
    to_state: String,
    reason: Option<String>,
    shelved_until: Option<i64>,
    active: bool,
    value: Option<f64>,
    message: String,
    user_name: Option<String>,
    comment: Option<String>,
}

impl TryFrom<EventRow> for AlarmEventRecord {
    type Error = Error;
    fn try_from(r: EventRow) -> Result<Self> {
        let severity: Severity = r.severity.parse().map_err(Error::Corrupt)?;
        // The reason columns describe where the alarm went; where it came from is
        // only named (a shelving's reason is in the event that shelved it).
        let from = state_of(&r.from_state, None, None)?;
        let state = state_of(&r.to_state, r.reason, r.shelved_until)?;
        Ok(AlarmEventRecord {
            id: r.id,
            event: AlarmEvent {
                rule: RuleId(r.rule_id),
                tag: TagId(r.tag_id),
                severity,
                from,
                alarm: StoredAlarm {
                    state,
                    condition: condition(r.active),
                    since: Timestamp(r.at),
                    active_since: None,
                    value: r.value,
                    message: r.message,
                    acked_by: None,
                },
                user: r.user_name,
                comment: r.comment,
            },
        })
    }
}

#[derive(FromRow)]
struct AnomalyRow {
    id: i64,
    rule_id: i64,
    tag_id: i64,
    at: i64,
    method: String,
    value: f64,
    score: f64,
    confidence: f64,
    expected: f64,
    lower: f64,
    upper: f64,
}

impl TryFrom<AnomalyRow> for AnomalyRecord {
    type Error = Error;
    fn try_from(r: AnomalyRow) -> Result<Self> {
        Ok(AnomalyRecord {
            id: r.id,
            anomaly: Anomaly {
                rule: RuleId(r.rule_id),
                tag: TagId(r.tag_id),
                at: Timestamp(r.at),
                detection: Detection {
                    method: r.method.parse().map_err(Error::Corrupt)?,
                    value: r.value,
                    score: r.score,
                    confidence: r.confidence,
                    expected: r.expected,
                    lower: r.lower,
                    upper: r.upper,
                },
            },
        })
    }
}

fn spec_json(spec: &RuleSpec) -> Result<String> {
    serde_json::to_string(spec).map_err(|e| Error::Corrupt(format!("rule spec: {e}")))
}

#[async_trait]
impl AlarmStore for Backend {
    async fn upsert_alarm_rule(
        &self,
        tenant: TenantId,
        tag: TagId,
        spec: &RuleSpec,
    ) -> Result<Rule> {
        let json = spec_json(spec)?;
        // Selecting from the tenant's own tags is the isolation check.
        let sql = format!(
            "INSERT INTO alarm_rules (id, tenant_id, tag_id, name, spec) \
             SELECT {}, t.tenant_id, t.id, $3, $4 FROM tags t WHERE t.id = $2 AND t.tenant_id = $1 \
             ON CONFLICT (tag_id, name) DO UPDATE SET spec = excluded.spec RETURNING id",
            next_id("alarm_rules")
        );
        let id: Option<i64> = sqlx::query_scalar(&sql)
            .bind(tenant.0)
            .bind(tag.0)
            .bind(&spec.name)
            .bind(&json)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| insert_error(e, || format!("rule `{}`", spec.name), "tag"))?;
        let id = id.ok_or_else(|| Error::NotFound(format!("tag {tag} in tenant {tenant}")))?;
        Ok(Rule {
            id: RuleId(id),
            tenant,
            tag,
            spec: spec.clone(),
        })
    }

    async fn alarm_rules(&self, tenant: TenantId) -> Result<Vec<Rule>> {
        let rows: Vec<RuleRow> = sqlx::query_as(
            "SELECT id, tenant_id, tag_id, spec FROM alarm_rules WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Rule::try_from).collect()
    }

    async fn alarm_states(&self, tenant: TenantId) -> Result<HashMap<RuleId, StoredAlarm>> {
        let rows: Vec<AlarmRow> = sqlx::query_as(
            "SELECT rule_id, state, reason, shelved_until, active, since, active_since, value, \
             message, acked_by FROM alarms WHERE tenant_id = $1",
        )
        .bind(tenant.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    RuleId(r.rule_id),
                    StoredAlarm {
                        state: state_of(&r.state, r.reason, r.shelved_until)?,
                        condition: condition(r.active),
                        since: Timestamp(r.since),
                        active_since: r.active_since.map(Timestamp),
                        value: r.value,
                        message: r.message,
                        acked_by: r.acked_by,
                    },
                ))
            })
            .collect()
    }

    async fn record_alarms(
        &self,
        tenant: TenantId,
        events: &[AlarmEvent],
        anomalies: &[Anomaly],
    ) -> Result<()> {
        if events.is_empty() && anomalies.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for e in events {
            let a = &e.alarm;
            let (from, _, _) = state_columns(&e.from);
            let (to, reason, until) = state_columns(&a.state);
            let active = a.condition == Condition::Active;
            sqlx::query(
                "INSERT INTO alarm_events (tenant_id, rule_id, tag_id, severity, at, from_state, \
                 to_state, reason, shelved_until, active, value, message, user_name, comment) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(tenant.0)
            .bind(e.rule.0)
            .bind(e.tag.0)
            .bind(e.severity.as_str())
            .bind(a.since.0)
            .bind(from)
            .bind(to)
            .bind(reason)
            .bind(until)
            .bind(active)
            .bind(a.value)
            .bind(&a.message)
            .bind(e.user.as_deref())
            .bind(e.comment.as_deref())
            .execute(&mut *tx)
            .await?;
            // A rule deleted meanwhile keeps its history but has no state row.
            sqlx::query(
                "INSERT INTO alarms (rule_id, tenant_id, state, reason, shelved_until, active, \
                 since, active_since, value, message, acked_by) \
                 SELECT id, tenant_id, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM alarm_rules \
                 WHERE id = $1 AND tenant_id = $2 \
                 ON CONFLICT (rule_id) DO UPDATE SET state = excluded.state, \
                 reason = excluded.reason, shelved_until = excluded.shelved_until, \
                 active = excluded.active, since = excluded.since, \
                 active_since = excluded.active_since, value = excluded.value, \
                 message = excluded.message, acked_by = excluded.acked_by",
            )
            .bind(e.rule.0)
            .bind(tenant.0)
            .bind(to)
            .bind(reason)
            .bind(until)
            .bind(active)
            .bind(a.since.0)
            .bind(a.active_since.map(|t| t.0))
            .bind(a.value)
            .bind(&a.message)
            .bind(a.acked_by.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        for a in anomalies {
            let d = &a.detection;
            // Selecting the tenant's own tag keeps a detection of a tag deleted
            // meanwhile (or of another tenant) out.
            sqlx::query(
                "INSERT INTO anomalies (tenant_id, tag_id, rule_id, at, method, value, score, \
                 confidence, expected, lower, upper) \
                 SELECT tenant_id, id, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM tags \
                 WHERE id = $2 AND tenant_id = $1",
            )
            .bind(tenant.0)
            .bind(a.tag.0)
            .bind(a.rule.0)
            .bind(a.at.0)
            .bind(d.method.as_str())
            .bind(d.value)
            .bind(d.score)
            .bind(d.confidence)
            .bind(d.expected)
            .bind(d.lower)
            .bind(d.upper)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn alarm_history(
        &self,
        tenant: TenantId,
        filter: &AlarmHistoryFilter,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AlarmEventRecord>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT id, rule_id, tag_id, severity, at, from_state, to_state, reason, \
             shelved_until, active, value, message, user_name, comment FROM alarm_events \
             WHERE tenant_id = $1 AND ($2 IS NULL OR rule_id = $2) \
             AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) \
             AND ($5 IS NULL OR id < $5) ORDER BY id DESC LIMIT $6",
        )
        .bind(tenant.0)
        .bind(filter.rule.map(|r| r.0))
        .bind(filter.from.map(|t| t.0))
        .bind(filter.to.map(|t| t.0))
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AlarmEventRecord::try_from).collect()
    }

    fn export_alarm_history(
        &self,
        tenant: TenantId,
        filter: &AlarmHistoryFilter,
    ) -> Chunks<AlarmEventRecord> {
        let (pool, filter) = (self.pool.clone(), filter.clone());
        spawn_export(move |tx| async move {
            let rows = sqlx::query_as::<_, EventRow>(
                "SELECT id, rule_id, tag_id, severity, at, from_state, to_state, reason, \
                 shelved_until, active, value, message, user_name, comment FROM alarm_events \
                 WHERE tenant_id = $1 AND ($2 IS NULL OR rule_id = $2) \
                 AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) ORDER BY id",
            )
            .bind(tenant.0)
            .bind(filter.rule.map(|r| r.0))
            .bind(filter.from.map(|t| t.0))
            .bind(filter.to.map(|t| t.0))
            .fetch(&pool)
            .map(|row| {
                row.map_err(Error::from)
                    .and_then(AlarmEventRecord::try_from)
            });
            forward(rows, tx).await;
        })
    }

    async fn anomalies(
        &self,
        tenant: TenantId,
        filter: &AnomalyFilter,
        before: Option<(Timestamp, i64)>,
        limit: i64,
    ) -> Result<Vec<AnomalyRecord>> {
        if filter.tags.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = sqlx::QueryBuilder::<super::Db>::new(
            "SELECT id, rule_id, tag_id, at, method, value, score, confidence, expected, lower, \
             upper FROM anomalies WHERE tenant_id = ",
        );
        qb.push_bind(tenant.0).push(" AND tag_id IN (");
        let mut tags = qb.separated(", ");
        for t in &filter.tags {
            tags.push_bind(t.0);
        }
        qb.push(") AND at >= ")
            .push_bind(filter.from.0)
            .push(" AND at < ")
            .push_bind(filter.to.0);
        if let Some(c) = filter.min_confidence {
            qb.push(" AND confidence >= ").push_bind(c);
        }
        if let Some((at, id)) = before {
            qb.push(" AND (at < ")
                .push_bind(at.0)
                .push(" OR (at = ")
                .push_bind(at.0)
                .push(" AND id < ")
                .push_bind(id)
                .push("))");
        }
        qb.push(" ORDER BY at DESC, id DESC LIMIT ")
            .push_bind(limit);
        let rows: Vec<AnomalyRow> = qb.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(AnomalyRecord::try_from).collect()
    }
}
