//! Plain data of the security model: tenant quotas, the audit record, refresh tokens
//! and the per-user state that decides whether a token still counts.

use serde::{Deserialize, Serialize};

use super::ids::{TenantId, UserId};
use super::model::Tenant;
use super::value::Timestamp;

/// What one tenant may use. `0` means "no limit" for every field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    pub max_devices: u32,
    pub max_tags: u32,
    /// Shortest poll period a device may have.
    pub min_poll_ms: u64,
    /// Live subscriptions open at once, per user and per tenant.
    pub max_subscriptions_per_user: u32,
    pub max_subscriptions_per_tenant: u32,
    /// GraphQL requests per second for the whole tenant (subscriptions count once,
    /// when they start).
    pub max_requests_per_sec: u32,
    /// Samples older than this many days are deleted.
    pub history_retention_days: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_devices: 10_000,
            max_tags: 1_000_000,
            min_poll_ms: 0,
            max_subscriptions_per_user: 100,
            max_subscriptions_per_tenant: 1_000,
            max_requests_per_sec: 1_000,
            history_retention_days: 365,
        }
    }
}

/// A quota that a change would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{limit} is {max}; this needs {wanted}")]
pub struct QuotaViolation {
    pub limit: &'static str,
    pub max: u64,
    pub wanted: u64,
}

impl Quotas {
    /// Checks counts of devices and tags a tenant would hold.
    pub fn check_counts(&self, devices: u64, tags: u64) -> Result<(), QuotaViolation> {
        if self.max_devices > 0 && devices > u64::from(self.max_devices) {
            return Err(QuotaViolation {
                limit: "max_devices",
                max: u64::from(self.max_devices),
                wanted: devices,
            });
        }
        if self.max_tags > 0 && tags > u64::from(self.max_tags) {
            return Err(QuotaViolation {
                limit: "max_tags",
                max: u64::from(self.max_tags),
                wanted: tags,
            });
        }
        Ok(())
    }

    /// Checks a device's poll period (0 polls back to back, below any minimum).
    pub fn check_poll(&self, poll_ms: u64) -> Result<(), QuotaViolation> {
        if self.min_poll_ms > 0 && poll_ms < self.min_poll_ms {
            return Err(QuotaViolation {
                limit: "min_poll_ms",
                max: self.min_poll_ms,
                wanted: poll_ms,
            });
        }
        Ok(())
    }
}

/// The quotas one tenant sets apart from the defaults (stored as JSON, only the set
/// fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_devices: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tags: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_poll_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_subscriptions_per_user: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_subscriptions_per_tenant: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_sec: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_retention_days: Option<u32>,
}

impl QuotaOverrides {
    /// The effective quotas: each set field replaces the default.
    pub fn over(&self, d: &Quotas) -> Quotas {
        Quotas {
            max_devices: self.max_devices.unwrap_or(d.max_devices),
            max_tags: self.max_tags.unwrap_or(d.max_tags),
            min_poll_ms: self.min_poll_ms.unwrap_or(d.min_poll_ms),
            max_subscriptions_per_user: self
                .max_subscriptions_per_user
                .unwrap_or(d.max_subscriptions_per_user),
            max_subscriptions_per_tenant: self
                .max_subscriptions_per_tenant
                .unwrap_or(d.max_subscriptions_per_tenant),
            max_requests_per_sec: self.max_requests_per_sec.unwrap_or(d.max_requests_per_sec),
            history_retention_days: self
                .history_retention_days
                .unwrap_or(d.history_retention_days),
        }
    }

    /// Fields set in `other` replace ours.
    pub fn merge(&mut self, other: &QuotaOverrides) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            max_devices,
            max_tags,
            min_poll_ms,
            max_subscriptions_per_user,
            max_subscriptions_per_tenant,
            max_requests_per_sec,
            history_retention_days
        );
    }
}

/// A tenant with its administrative state.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRecord {
    pub tenant: Tenant,
    pub disabled: bool,
    pub quotas: QuotaOverrides,
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    Success,
    /// Refused by authentication, authorization, a rate limit or a quota.
    Denied,
    /// Allowed, but failed (bad input, not found, store error …).
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(AuditOutcome::Success),
            "denied" => Some(AuditOutcome::Denied),
            "failed" => Some(AuditOutcome::Failed),
            _ => None,
        }
    }
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Assigned by the store; 0 before it is written.
    pub id: i64,
    pub at: Timestamp,
    /// The tenant the action happened in (for a failed login, the tenant named, if it
    /// exists).
    pub tenant: Option<TenantId>,
    pub tenant_name: Option<String>,
    pub user: Option<UserId>,
    pub username: Option<String>,
    /// `Mutation.createUser`, `Query.auditLog`, `login` …
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub outcome: AuditOutcome,
    /// The error code or a short reason (`bad_password`, `refresh_token_reuse` …).
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
    /// The input, as JSON with secrets redacted.
    pub summary: String,
    /// A configuration change's objects before and after, as JSON with secrets
    /// redacted (`[{"kind", "op", "id", "name", "before", "after"}]`); None for other
    /// actions.
    pub changes: Option<String>,
}

/// What `auditLog` may filter on. `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub username: Option<String>,
    pub outcome: Option<AuditOutcome>,
    pub resource_type: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// What decides whether a user's tokens still count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserState {
    pub user: UserId,
    pub tenant: TenantId,
    pub disabled: bool,
    /// Tokens issued before this instant (ms since the epoch) no longer count: set on
    /// password change, role change and disabling.
    pub tokens_valid_after_ms: i64,
}

/// A refresh token as stored: only its hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub token_hash: String,
    /// Every token obtained by rotating one login's token shares the family.
    pub family: String,
    pub user: UserId,
    pub tenant: TenantId,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// No such token.
    Unknown,
    /// Valid and now marked used: the caller rotates it.
    Fresh(RefreshToken),
    /// Already used or revoked: a replay, the family must be revoked.
    Reused(RefreshToken),
    Expired(RefreshToken),
}
