//! The API's view of who may still use a token, and of each tenant's state and quotas.
//!
//! A verified JWT says who signed in; the gate says whether that still counts: the
//! user exists, is not disabled and did not change password or role since; the
//! tenant is not disabled; the login session was not logged out or caught replaying a
//! refresh token. Changes made through the API update the gate at once; a periodic
//! [`Gate::sync`] picks up changes made by other processes (the CLI).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::auth::{AuthError, Session};
use crate::domain::{Quotas, TenantId, TenantRecord, Timestamp, UserId, UserState};
use crate::storage::{self, Store};

/// A tenant as the API enforces it.
#[derive(Debug, Clone)]
pub struct TenantState {
    pub record: TenantRecord,
    /// Effective quotas (the tenant's overrides over the configured defaults).
    pub quotas: Quotas,
}

pub struct Gate {
    store: Arc<dyn Store>,
    defaults: Quotas,
    users: DashMap<UserId, UserState>,
    tenants: DashMap<TenantId, TenantState>,
    /// Logged-out or replayed login sessions, with when we learnt it.
    families: DashMap<String, Instant>,
    /// How long a revoked family must be remembered: the access-token lifetime.
    remember: Duration,
    subs_by_user: DashMap<UserId, usize>,
    subs_by_tenant: DashMap<TenantId, usize>,
}

impl Gate {
    /// Loads users, tenants and recently revoked sessions.
    pub async fn load(
        store: Arc<dyn Store>,
        defaults: Quotas,
        access_ttl: Duration,
    ) -> Result<Arc<Self>, storage::Error> {
        let gate = Arc::new(Gate {
            store,
            defaults,
            users: DashMap::new(),
            tenants: DashMap::new(),
            families: DashMap::new(),
            remember: access_ttl + Duration::from_secs(60),
            subs_by_user: DashMap::new(),
            subs_by_tenant: DashMap::new(),
        });
        gate.sync().await?;
        Ok(gate)
    }

    /// Re-reads users, tenants and revoked sessions from the store.
    pub async fn sync(&self) -> Result<(), storage::Error> {
        let users = self.store.user_states().await?;
        let ids: std::collections::HashSet<UserId> = users.iter().map(|u| u.user).collect();
        for u in users {
            self.users.insert(u.user, u);
        }
        self.users.retain(|id, _| ids.contains(id));
        let tenants = self.store.tenant_records().await?;
        let tids: std::collections::HashSet<TenantId> =
            tenants.iter().map(|t| t.tenant.id).collect();
        for t in tenants {
            self.put_tenant(t);
        }
        self.tenants.retain(|id, _| tids.contains(id));
        let since = Timestamp(Timestamp::now().0 - self.remember.as_micros() as i64);
        for fam in self.store.revoked_families(since).await? {
            self.families.entry(fam).or_insert_with(Instant::now);
        }
        let remember = self.remember;
        self.families.retain(|_, at| at.elapsed() < remember);
        Ok(())
    }

    /// Whether a verified token still counts.
    pub async fn check(&self, s: &Session) -> Result<(), AuthError> {
        let state = match self.users.get(&s.user).map(|u| *u) {
            Some(u) => u,
            None => self.look_up(s).await?,
        };
        let tenant_ok = self
            .tenants
            .get(&s.tenant)
            .is_some_and(|t| !t.record.disabled);
        let family_ok = s
            .family
            .as_ref()
            .is_none_or(|f| !self.families.contains_key(f));
        if state.tenant == s.tenant
            && !state.disabled
            && s.issued_at_ms >= state.tokens_valid_after_ms
            && tenant_ok
            && family_ok
        {
            Ok(())
        } else {
            Err(AuthError::Revoked)
        }
    }

    /// A user the last sync did not know (created by another process since).
    async fn look_up(&self, s: &Session) -> Result<UserState, AuthError> {
        match self.store.user_by_id(s.tenant, s.user).await {
            Ok(Some(u)) => {
                let state = UserState {
                    user: u.id,
                    tenant: u.tenant,
                    disabled: u.disabled,
                    tokens_valid_after_ms: u.tokens_valid_after_ms,
                };
                self.users.insert(u.id, state);
                Ok(state)
            }
            Ok(None) => Err(AuthError::Revoked),
            Err(e) => {
                tracing::warn!(error = %e, user = %s.user, "cannot check the user's state; refusing the token");
                Err(AuthError::Revoked)
            }
        }
    }

    pub fn set_user(&self, state: UserState) {
        self.users.insert(state.user, state);
    }

    pub fn remove_user(&self, user: UserId) {
        self.users.remove(&user);
    }

    pub fn revoke_family(&self, family: &str) {
        self.families.insert(family.to_string(), Instant::now());
    }

    pub fn put_tenant(&self, record: TenantRecord) {
        let quotas = record.quotas.over(&self.defaults);
        self.tenants
            .insert(record.tenant.id, TenantState { record, quotas });
    }

    pub fn remove_tenant(&self, id: TenantId) {
        self.tenants.remove(&id);
    }

    pub fn tenant(&self, id: TenantId) -> Option<TenantState> {
        self.tenants.get(&id).map(|t| t.clone())
    }

    pub fn tenant_id(&self, name: &str) -> Option<TenantId> {
        self.tenants
            .iter()
            .find(|t| t.record.tenant.name == name)
            .map(|t| t.record.tenant.id)
    }

    pub fn tenants(&self) -> Vec<TenantState> {
        self.tenants.iter().map(|t| t.clone()).collect()
    }

    /// Effective quotas of a tenant (the defaults if the gate does not know it yet).
    pub fn quotas(&self, id: TenantId) -> Quotas {
        self.tenants.get(&id).map_or(self.defaults, |t| t.quotas)
    }

    pub fn defaults(&self) -> Quotas {
        self.defaults
    }

    /// Live subscriptions of a tenant now.
    pub fn subscriptions(&self, tenant: TenantId) -> usize {
        self.subs_by_tenant.get(&tenant).map_or(0, |n| *n)
    }

    /// Opens a subscription slot for the session, within the user's, the tenant's and
    /// the connection's limits; the slot frees itself when dropped.
    pub fn open_subscription(
        self: &Arc<Self>,
        s: &Session,
        connection: Option<&Arc<AtomicUsize>>,
        per_connection: usize,
    ) -> Result<SubscriptionSlot, (&'static str, u64)> {
        let q = self.quotas(s.tenant);
        if let Some(c) = connection {
            if c.load(Ordering::Relaxed) >= per_connection {
                return Err(("max_subscriptions_per_connection", per_connection as u64));
            }
        }
        {
            let mut n = self.subs_by_tenant.entry(s.tenant).or_insert(0);
            if q.max_subscriptions_per_tenant > 0 && *n >= q.max_subscriptions_per_tenant as usize {
                return Err((
                    "max_subscriptions_per_tenant",
                    u64::from(q.max_subscriptions_per_tenant),
                ));
            }
            *n += 1;
        }
        {
            let mut n = self.subs_by_user.entry(s.user).or_insert(0);
            if q.max_subscriptions_per_user > 0 && *n >= q.max_subscriptions_per_user as usize {
                drop(n);
                if let Some(mut t) = self.subs_by_tenant.get_mut(&s.tenant) {
                    *t = t.saturating_sub(1);
                }
                return Err((
                    "max_subscriptions_per_user",
                    u64::from(q.max_subscriptions_per_user),
                ));
            }
            *n += 1;
        }
        if let Some(c) = connection {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Ok(SubscriptionSlot {
            gate: self.clone(),
            user: s.user,
            tenant: s.tenant,
            connection: connection.cloned(),
        })
    }
}

/// One open subscription, counted against its user, tenant and connection.
pub struct SubscriptionSlot {
    gate: Arc<Gate>,
    user: UserId,
    tenant: TenantId,
    connection: Option<Arc<AtomicUsize>>,
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        if let Some(mut n) = self.gate.subs_by_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
        }
        if let Some(mut n) = self.gate.subs_by_tenant.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
        }
        if let Some(c) = &self.connection {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
