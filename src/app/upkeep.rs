//! Background upkeep of a running server: the gate's resync, retention, and the
//! store's own maintenance (PostgreSQL partitions).

use std::sync::Arc;
use std::time::Duration;

use crate::api::gate::Gate;
use crate::api::limits::Limits;
use crate::domain::Timestamp;
use crate::storage::Store;
use crate::telemetry::names;

/// Re-reads the gate's view (changes made by other processes) and forgets idle
/// rate-limit keys.
pub(super) async fn keep_security(gate: Arc<Gate>, limits: Arc<Limits>, every_secs: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(every_secs.max(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = gate.sync().await {
            tracing::warn!(error = %e, "could not refresh users and sessions from the store");
        }
        limits.upkeep();
    }
}

/// Deletes what retention says is too old: each tenant's history after its
/// `history_retention_days`, audit records after `[audit] retention_days`, refresh
/// tokens a day after they expired. Runs at start and every maintenance interval.
pub(super) async fn retention(
    store: Arc<dyn Store>,
    gate: Arc<Gate>,
    audit_days: u32,
    every_secs: u64,
) {
    const DAY_US: i64 = 86_400_000_000;
    let mut tick = tokio::time::interval(Duration::from_secs(every_secs.max(60)));
    loop {
        tick.tick().await;
        let now = Timestamp::now();
        for t in gate.tenants() {
            let days = t.quotas.history_retention_days;
            if days == 0 {
                continue;
            }
            let before = Timestamp(now.0 - i64::from(days) * DAY_US);
            match store
                .delete_history_before(t.record.tenant.id, before)
                .await
            {
                Ok(n) => {
                    metrics::counter!(names::RETENTION_DELETED, "table" => "samples").increment(n);
                    if n > 0 {
                        tracing::info!(tenant = %t.record.tenant.name, deleted = n, days, "history retention");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, tenant = %t.record.tenant.name, "history retention failed")
                }
            }
        }
        if audit_days > 0 {
            let before = Timestamp(now.0 - i64::from(audit_days) * DAY_US);
            match store.purge_audit(before).await {
                Ok(n) => {
                    metrics::counter!(names::RETENTION_DELETED, "table" => "audit_log").increment(n)
                }
                Err(e) => tracing::warn!(error = %e, "audit retention failed"),
            }
        }
        match store.purge_refresh_tokens(Timestamp(now.0 - DAY_US)).await {
            Ok(n) => metrics::counter!(names::RETENTION_DELETED, "table" => "refresh_tokens")
                .increment(n),
            Err(e) => tracing::warn!(error = %e, "refresh token purge failed"),
        }
    }
}

pub(super) async fn maintain(store: Arc<dyn Store>, every_secs: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(every_secs.max(60)));
    loop {
        tick.tick().await;
        if let Err(e) = store.maintain(Timestamp::now()).await {
            tracing::warn!(error = %e, "store maintenance failed");
        }
    }
}
