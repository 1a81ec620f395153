//! GraphQL types of the security model: sessions, users, tenants and quotas, the
//! audit log.

use async_graphql::{Enum, ID, Json, SimpleObject};
use chrono::{DateTime, Utc};

use crate::domain;

#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Send as `Authorization: Bearer <accessToken>`.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub token_type: String,
    pub role: UserRole,
    /// Exchange for a new pair with `refresh` before it expires; each one works once.
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

/// A user of the caller's tenant.
#[derive(SimpleObject)]
pub struct UserInfo {
    pub id: ID,
    pub username: String,
    pub role: UserRole,
    pub disabled: bool,
}

impl From<domain::User> for UserInfo {
    fn from(u: domain::User) -> Self {
        UserInfo {
            id: ID(u.id.to_string()),
            username: u.username,
            role: u.role.into(),
            disabled: u.disabled,
        }
    }
}

/// A tenant's limits; 0 means no limit.
#[derive(SimpleObject, Clone, Copy)]
pub struct QuotaInfo {
    pub max_devices: u32,
    pub max_tags: u32,
    pub min_poll_ms: u64,
    pub max_subscriptions_per_user: u32,
    pub max_subscriptions_per_tenant: u32,
    pub max_requests_per_sec: u32,
    pub history_retention_days: u32,
}

impl From<domain::Quotas> for QuotaInfo {
    fn from(q: domain::Quotas) -> Self {
        QuotaInfo {
            max_devices: q.max_devices,
            max_tags: q.max_tags,
            min_poll_ms: q.min_poll_ms,
            max_subscriptions_per_user: q.max_subscriptions_per_user,
            max_subscriptions_per_tenant: q.max_subscriptions_per_tenant,
            max_requests_per_sec: q.max_requests_per_sec,
            history_retention_days: q.history_retention_days,
        }
    }
}

/// Quotas to set; omitted fields keep their current value.
#[derive(async_graphql::InputObject, Default)]
pub struct QuotaInput {
    pub max_devices: Option<u32>,
    pub max_tags: Option<u32>,
    pub min_poll_ms: Option<u64>,
    pub max_subscriptions_per_user: Option<u32>,
    pub max_subscriptions_per_tenant: Option<u32>,
    pub max_requests_per_sec: Option<u32>,
    pub history_retention_days: Option<u32>,
}

impl From<QuotaInput> for domain::QuotaOverrides {
    fn from(q: QuotaInput) -> Self {
        domain::QuotaOverrides {
            max_devices: q.max_devices,
            max_tags: q.max_tags,
            min_poll_ms: q.min_poll_ms,
            max_subscriptions_per_user: q.max_subscriptions_per_user,
            max_subscriptions_per_tenant: q.max_subscriptions_per_tenant,
            max_requests_per_sec: q.max_requests_per_sec,
            history_retention_days: q.history_retention_days,
        }
    }
}

/// A tenant, as platform administrators see it.
#[derive(SimpleObject)]
pub struct TenantInfo {
    pub id: ID,
    pub name: String,
    pub disabled: bool,
    /// Effective quotas (the tenant's own over the defaults).
    pub quotas: QuotaInfo,
}

impl TenantInfo {
    /// A tenant with its effective quotas (its own over `defaults`).
    pub fn new(r: domain::TenantRecord, defaults: &domain::Quotas) -> Self {
        TenantInfo {
            id: ID(r.tenant.id.to_string()),
            quotas: r.quotas.over(defaults).into(),
            name: r.tenant.name,
            disabled: r.disabled,
        }
    }
}

/// What a tenant uses now, against its quotas.
#[derive(SimpleObject)]
pub struct TenantUsage {
    pub tenant: String,
    pub devices: i64,
    pub tags: i64,
    pub users: i64,
    /// Live subscriptions open now.
    pub subscriptions: u64,
    pub quotas: QuotaInfo,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::AuditOutcome")]
pub enum AuditOutcome {
    Success,
    Denied,
    Failed,
}

/// One audit record.
#[derive(SimpleObject)]
pub struct AuditEntry {
    pub id: ID,
    pub at: DateTime<Utc>,
    pub tenant: Option<String>,
    pub user_id: Option<ID>,
    pub username: Option<String>,
    /// `Mutation.createUser`, `Query.auditLog` …
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub outcome: AuditOutcome,
    /// Error code and short reason, when not a success.
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
    /// The input as JSON, with secrets replaced by `***`.
    pub summary: String,
    /// What a configuration change did, object by object: `[{kind, op, id, name,
    /// before, after}]` with secrets replaced by `***`; null for other actions.
    pub changes: Option<Json<serde_json::Value>>,
}

impl From<domain::AuditRecord> for AuditEntry {
    fn from(r: domain::AuditRecord) -> Self {
        AuditEntry {
            id: ID(r.id.to_string()),
            at: r.at.to_datetime(),
            tenant: r.tenant_name,
            user_id: r.user.map(|u| ID(u.to_string())),
            username: r.username,
            action: r.action,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            outcome: r.outcome.into(),
            reason: r.reason,
            request_id: r.request_id,
            client_addr: r.client_addr,
            summary: r.summary,
            changes: r
                .changes
                .and_then(|c| serde_json::from_str(&c).ok())
                .map(Json),
        }
    }
}

/// What `auditLog` keeps; omitted fields match everything.
#[derive(async_graphql::InputObject, Default)]
pub struct AuditFilterInput {
    pub action: Option<String>,
    pub username: Option<String>,
    pub outcome: Option<AuditOutcome>,
    pub resource_type: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// One page of audit records, newest first.
#[derive(SimpleObject)]
pub struct AuditPage {
    pub records: Vec<AuditEntry>,
    /// Pass as `after` for the next page.
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::Role")]
pub enum UserRole {
    Admin,
    Operator,
    Viewer,
}
