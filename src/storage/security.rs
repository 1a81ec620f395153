//! The security tables: tenant administration and quotas, user management, refresh
//! tokens and the append-only audit log. Same SQL on both backends, compiled twice like
//! `world.rs`, each time as the [`SecurityStore`] of its parent's `Backend`.

use async_trait::async_trait;
use sqlx::FromRow;

use super::Backend;
use crate::domain::{
    AuditFilter, AuditOutcome, AuditRecord, QuotaOverrides, RefreshToken, RefreshUse, Role, Tenant,
    TenantId, TenantRecord, Timestamp, User, UserId, UserState,
};
use crate::storage::rows::{USER_COLUMNS, UserRow, insert_error};
use crate::storage::{Error, Result, SecurityStore, TenantCounts};

#[derive(FromRow)]
struct TenantRow {
    id: i64,
    name: String,
    disabled: bool,
    quotas: String,
}

impl TryFrom<TenantRow> for TenantRecord {
    type Error = Error;
    fn try_from(r: TenantRow) -> Result<Self> {
        let quotas = serde_json::from_str(&r.quotas)
            .map_err(|e| Error::Corrupt(format!("tenants.quotas of tenant {}: {e}", r.id)))?;
        Ok(TenantRecord {
            tenant: Tenant {
                id: TenantId(r.id),
                name: r.name,
            },
            disabled: r.disabled,
            quotas,
        })
    }
}

#[derive(FromRow)]
struct RefreshRow {
    token_hash: String,
    family: String,
    user_id: i64,
    tenant_id: i64,
    issued_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<RefreshRow> for RefreshToken {
    fn from(r: RefreshRow) -> Self {
        RefreshToken {
            token_hash: r.token_hash,
            family: r.family,
            user: UserId(r.user_id),
            tenant: TenantId(r.tenant_id),
            issued_at: Timestamp(r.issued_at),
            expires_at: Timestamp(r.expires_at),
        }
    }
}

#[derive(FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    tenant_id: Option<i64>,
    tenant_name: Option<String>,
    user_id: Option<i64>,
    username: Option<String>,
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    outcome: String,
    reason: Option<String>,
    request_id: Option<String>,
    client_addr: Option<String>,
    summary: String,
    changes: Option<String>,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = Error;
    fn try_from(r: AuditRow) -> Result<Self> {
        Ok(AuditRecord {
            outcome: AuditOutcome::parse(&r.outcome).ok_or_else(|| {
                Error::Corrupt(format!(
                    "audit_log.outcome of record {}: {}",
                    r.id, r.outcome
                ))
            })?,
            id: r.id,
            at: Timestamp(r.at),
            tenant: r.tenant_id.map(TenantId),
            tenant_name: r.tenant_name,
            user: r.user_id.map(UserId),
            username: r.username,
            action: r.action,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            reason: r.reason,
            request_id: r.request_id,
            client_addr: r.client_addr,
            summary: r.summary,
            changes: r.changes,
        })
    }
}

const TENANT_COLUMNS: &str = "id, name, disabled, quotas";

fn quotas_json(q: &QuotaOverrides) -> Result<String> {
    serde_json::to_string(q).map_err(|e| Error::Corrupt(format!("quotas: {e}")))
}

#[async_trait]
impl SecurityStore for Backend {
    async fn tenant_records(&self) -> Result<Vec<TenantRecord>> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id");
        let rows: Vec<TenantRow> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
        rows.into_iter().map(TenantRecord::try_from).collect()
    }

    async fn tenant_record(&self, id: TenantId) -> Result<Option<TenantRecord>> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        let row: Option<TenantRow> = sqlx::query_as(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(TenantRecord::try_from).transpose()
    }

    async fn create_tenant(&self, name: &str, quotas: &QuotaOverrides) -> Result<TenantRecord> {
        let sql = format!(
            "INSERT INTO tenants (name, quotas) VALUES ($1, $2) RETURNING {TENANT_COLUMNS}"
        );
        let row: TenantRow = sqlx::query_as(&sql)
            .bind(name)
            .bind(quotas_json(quotas)?)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| insert_error(e, || format!("tenant `{name}`"), "tenants"))?;
        row.try_into()
    }

    async fn set_tenant_disabled(
        &self,
        id: TenantId,
        disabled: bool,
    ) -> Result<Option<TenantRecord>> {
        let sql =
            format!("UPDATE tenants SET disabled = $2 WHERE id = $1 RETURNING {TENANT_COLUMNS}");
        let row: Option<TenantRow> = sqlx::query_as(&sql)
            .bind(id.0)
            .bind(disabled)
            .fetch_optional(&self.pool)
            .await?;
        row.map(TenantRecord::try_from).transpose()
    }

    async fn set_tenant_quotas(
        &self,
        id: TenantId,
        quotas: &QuotaOverrides,
    ) -> Result<Option<TenantRecord>> {
        let sql =
            format!("UPDATE tenants SET quotas = $2 WHERE id = $1 RETURNING {TENANT_COLUMNS}");
        let row: Option<TenantRow> = sqlx::query_as(&sql)
            .bind(id.0)
            .bind(quotas_json(quotas)?)
            .fetch_optional(&self.pool)
            .await?;
        row.map(TenantRecord::try_from).transpose()
    }

    async fn delete_tenant(&self, id: TenantId) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Samples and their rollups carry no foreign key (it would cost a lookup per
        // row): delete them explicitly. Users, units, devices, tags and refresh tokens
        // cascade; the audit log keeps its records.
        for table in super::HISTORY_TABLES {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        let gone = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone > 0)
    }

    async fn tenant_counts(&self, tenant: TenantId) -> Result<TenantCounts> {
        let (devices, tags, users): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM devices WHERE tenant_id = $1), \
             (SELECT COUNT(*) FROM tags WHERE tenant_id = $1), \
             (SELECT COUNT(*) FROM users WHERE tenant_id = $1)",
        )
        .bind(tenant.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(TenantCounts {
            devices,
            tags,
            users,
        })
    }

    async fn users(&self, tenant: TenantId) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY id");
        let rows: Vec<UserRow> = sqlx::query_as(&sql)
            .bind(tenant.0)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(User::try_from).collect()
    }

    async fn update_user(
        &self,
        tenant: TenantId,
        id: UserId,
        change: &crate::storage::UserChange,
    ) -> Result<Option<User>> {
        let sql = format!(
            "UPDATE users SET role = COALESCE($3, role), disabled = COALESCE($4, disabled), \
             password_hash = COALESCE($5, password_hash), \
             dev_credential = CASE WHEN $5 IS NULL THEN dev_credential ELSE FALSE END, \
             tokens_valid_after = CASE WHEN $6 > tokens_valid_after THEN $6 \
             ELSE tokens_valid_after END \
             WHERE tenant_id = $1 AND id = $2 RETURNING {USER_COLUMNS}"
        );
        let row: Option<UserRow> = sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(id.0)
            .bind(change.role.map(Role::as_str))
            .bind(change.disabled)
            .bind(change.password_hash.as_deref())
            .bind(change.revoke_tokens_at_ms.unwrap_or(0))
            .fetch_optional(&self.pool)
            .await?;
        row.map(User::try_from).transpose()
    }

    async fn delete_user(&self, tenant: TenantId, id: UserId) -> Result<bool> {
        let gone = sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id.0)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(gone > 0)
    }

    async fn user_states(&self) -> Result<Vec<UserState>> {
        let rows: Vec<(i64, i64, bool, i64)> =
            sqlx::query_as("SELECT id, tenant_id, disabled, tokens_valid_after FROM users")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, tenant, disabled, after)| UserState {
                user: UserId(id),
                tenant: TenantId(tenant),
                disabled,
                tokens_valid_after_ms: after,
            })
            .collect())
    }

    async fn mark_dev_credential(&self, tenant: TenantId, username: &str) -> Result<()> {
        sqlx::query(
            "UPDATE users SET dev_credential = TRUE WHERE tenant_id = $1 AND username = $2",
        )
        .bind(tenant.0)
        .bind(username)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn dev_credentials(&self) -> Result<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT t.name, u.username FROM users u JOIN tenants t ON t.id = u.tenant_id \
             WHERE u.dev_credential = TRUE ORDER BY t.name, u.username",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn insert_refresh_token(&self, t: &RefreshToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family, user_id, tenant_id, issued_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&t.token_hash)
        .bind(&t.family)
        .bind(t.user.0)
        .bind(t.tenant.0)
        .bind(t.issued_at.0)
        .bind(t.expires_at.0)
        .execute(&self.pool)
        .await
        .map_err(|e| insert_error(e, || "refresh token".into(), "user"))?;
        Ok(())
    }

    async fn use_refresh_token(&self, token_hash: &str, now: Timestamp) -> Result<RefreshUse> {
        // One statement marks it used, so two concurrent presentations cannot both win.
        let used: Option<RefreshRow> = sqlx::query_as(
            "UPDATE refresh_tokens SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL \
             AND expires_at > $2 \
             RETURNING token_hash, family, user_id, tenant_id, issued_at, expires_at, \
             used_at, revoked_at",
        )
        .bind(token_hash)
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = used {
            return Ok(RefreshUse::Fresh(row.into()));
        }
        let row: Option<RefreshRow> = sqlx::query_as(
            "SELECT token_hash, family, user_id, tenant_id, issued_at, expires_at, used_at, \
             revoked_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => RefreshUse::Unknown,
            Some(r) if r.used_at.is_some() || r.revoked_at.is_some() => {
                RefreshUse::Reused(r.into())
            }
            Some(r) => RefreshUse::Expired(r.into()),
        })
    }

    async fn revoke_refresh_family(&self, family: &str, now: Timestamp) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family = $1 AND revoked_at IS NULL",
        )
        .bind(family)
        .bind(now.0)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn revoke_user_refresh_tokens(&self, user: UserId, now: Timestamp) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user.0)
        .bind(now.0)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn revoked_families(&self, since: Timestamp) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT family FROM refresh_tokens WHERE revoked_at >= $1")
                .bind(since.0)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn purge_refresh_tokens(&self, before: Timestamp) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
                .bind(before.0)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn append_audit(&self, r: &AuditRecord) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_log (at, tenant_id, tenant_name, user_id, username, action, \
             resource_type, resource_id, outcome, reason, request_id, client_addr, summary, \
             changes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(r.at.0)
        .bind(r.tenant.map(|t| t.0))
        .bind(r.tenant_name.as_deref())
        .bind(r.user.map(|u| u.0))
        .bind(r.username.as_deref())
        .bind(&r.action)
        .bind(&r.resource_type)
        .bind(r.resource_id.as_deref())
        .bind(r.outcome.as_str())
        .bind(r.reason.as_deref())
        .bind(r.request_id.as_deref())
        .bind(r.client_addr.as_deref())
        .bind(&r.summary)
        .bind(r.changes.as_deref())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn audit_log(
        &self,
        tenant: Option<TenantId>,
        filter: &AuditFilter,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        // Newest first; `before_id` is the cursor of the previous page.
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, at, tenant_id, tenant_name, user_id, username, action, resource_type, \
             resource_id, outcome, reason, request_id, client_addr, summary, changes FROM audit_log \
             WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR id < $2) \
             AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR username = $4) \
             AND ($5 IS NULL OR outcome = $5) AND ($6 IS NULL OR resource_type = $6) \
             AND ($7 IS NULL OR at >= $7) AND ($8 IS NULL OR at < $8) \
             ORDER BY id DESC LIMIT $9",
        )
        .bind(tenant.map(|t| t.0))
        .bind(before_id)
        .bind(filter.action.as_deref())
        .bind(filter.username.as_deref())
        .bind(filter.outcome.map(AuditOutcome::as_str))
        .bind(filter.resource_type.as_deref())
        .bind(filter.from.map(|t| t.0))
        .bind(filter.to.map(|t| t.0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AuditRecord::try_from).collect()
    }

    async fn purge_audit(&self, before: Timestamp) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(before.0)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn delete_history_before(&self, tenant: TenantId, before: Timestamp) -> Result<u64> {
        // The anomalies judged the samples: they go with them.
        sqlx::query("DELETE FROM anomalies WHERE tenant_id = $1 AND at < $2")
            .bind(tenant.0)
            .bind(before.0)
            .execute(&self.pool)
            .await?;
        // The time column differs by backend (INTEGER µs / timestamptz).
        super::history::delete_before(&self.pool, tenant, before).await
    }
}
