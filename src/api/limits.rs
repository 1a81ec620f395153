//! Rate limits (governor's GCRA): requests per user, per tenant (its quota) and per
//! client address for callers without a token; and the login throttle, which locks an
//! account and an address out for growing periods after repeated failures.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{ApiConfig, AuthConfig};
use crate::domain::{TenantId, UserId};
use crate::telemetry::names;

fn per_second(n: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// The `limit` label values of `thermacore_rate_limited_total`: the user, tenant and
/// anonymous limits here, and the login throttle.
pub const LIMITS: [&str; 4] = ["user", "tenant", "anonymous", "login"];

/// Request-rate limits of the API.
pub struct Limits {
    clock: DefaultClock,
    users: DefaultKeyedRateLimiter<UserId>,
    anonymous: DefaultKeyedRateLimiter<String>,
    /// One limiter per tenant, rebuilt when its quota changes.
    tenants: DashMap<TenantId, (u32, Arc<DefaultDirectRateLimiter>)>,
    pub login: LoginThrottle,
    /// Free slots for `GET /api/export` (`api.max_concurrent_exports`).
    pub exports: Arc<tokio::sync::Semaphore>,
}

impl Limits {
    pub fn new(api: &ApiConfig, auth: &AuthConfig) -> Self {
        Limits {
            clock: DefaultClock::default(),
            users: RateLimiter::keyed(per_second(
                api.user_requests_per_sec,
                api.user_requests_per_sec.saturating_mul(2),
            )),
            anonymous: RateLimiter::keyed(per_second(
                api.anonymous_requests_per_sec,
                api.anonymous_requests_per_sec.saturating_mul(2),
            )),
            tenants: DashMap::new(),
            login: LoginThrottle::new(auth),
            exports: Arc::new(tokio::sync::Semaphore::new(api.max_concurrent_exports)),
        }
    }

    fn wait(&self, not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> Duration {
        not_until.wait_time_from(self.clock.now())
    }

    /// One request of a signed-in user: the user's limit, then the tenant's quota
    /// (`0` = unlimited). `Err` carries how long to wait.
    pub fn request(&self, user: UserId, tenant: TenantId, tenant_rps: u32) -> Result<(), Duration> {
        if let Err(n) = self.users.check_key(&user) {
            metrics::counter!(names::RATE_LIMITED, "limit" => "user").increment(1);
            return Err(self.wait(n));
        }
        if tenant_rps == 0 {
            return Ok(());
        }
        let limiter = {
            let mut entry = self.tenants.entry(tenant).or_insert_with(|| {
                (
                    tenant_rps,
                    Arc::new(RateLimiter::direct(per_second(tenant_rps, tenant_rps))),
                )
            });
            if entry.0 != tenant_rps {
                *entry = (
                    tenant_rps,
                    Arc::new(RateLimiter::direct(per_second(tenant_rps, tenant_rps))),
                );
            }
            entry.1.clone()
        };
        limiter.check().map_err(|n| {
            metrics::counter!(names::RATE_LIMITED, "limit" => "tenant").increment(1);
            self.wait(n)
        })
    }

    /// One request without a valid token, by client address.
    pub fn anonymous(&self, addr: &str) -> Result<(), Duration> {
        self.anonymous.check_key(&addr.to_string()).map_err(|n| {
            metrics::counter!(names::RATE_LIMITED, "limit" => "anonymous").increment(1);
            self.wait(n)
        })
    }

    /// Forgets idle keys (called periodically).
    pub fn upkeep(&self) {
        self.users.retain_recent();
        self.anonymous.retain_recent();
        self.login.upkeep();
    }
}

/// A lockout in force.
#[derive(Debug, Clone, Copy)]
struct Lock {
    until: Instant,
    /// Lockouts so far; each doubles the next one's length.
    level: u32,
    last_failure: Instant,
}

/// What a failed login led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted; no lockout yet.
    Counted,
    /// This failure started a lockout of the given length.
    LockedOut(Duration),
}

/// Brute-force protection of `login`: failures are counted per account
/// (`tenant/username`) and per client address; past `login_failures_per_minute` the
/// key is locked out, first for `lockout_initial_ms`, doubling with each further
/// lockout up to `lockout_max_secs`. While locked, logins are refused without looking
/// at the password.
pub struct LoginThrottle {
    failures: DefaultKeyedRateLimiter<String>,
    locks: DashMap<String, Lock>,
    initial: Duration,
    max: Duration,
}

impl LoginThrottle {
    pub fn new(auth: &AuthConfig) -> Self {
        // A burst of (n - 1) failures passes; the n-th within the minute trips it.
        let n = auth.login_failures_per_minute.max(1);
        let per_minute = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(n.saturating_sub(1).max(1)).unwrap_or(NonZeroU32::MIN);
        LoginThrottle {
            failures: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            locks: DashMap::new(),
            initial: Duration::from_millis(auth.lockout_initial_ms.max(1)),
            max: Duration::from_secs(auth.lockout_max_secs.max(1)),
        }
    }

    /// The time left on the longest lockout among `keys`, if any.
    pub fn locked(&self, keys: &[&str]) -> Option<Duration> {
        let now = Instant::now();
        keys.iter()
            .filter_map(|k| self.locks.get(*k).map(|l| l.until))
            .filter(|until| *until > now)
            .max()
            .map(|until| until - now)
    }

    /// Records a failure for every key; returns the longest lockout it started.
    pub fn failed(&self, keys: &[&str]) -> Failure {
        let now = Instant::now();
        let mut started = None::<Duration>;
        for key in keys {
            if self.failures.check_key(&key.to_string()).is_ok() {
                if let Some(mut l) = self.locks.get_mut(*key) {
                    l.last_failure = now;
                }
                continue;
            }
            let mut lock = self.locks.entry(key.to_string()).or_insert(Lock {
                until: now,
                level: 0,
                last_failure: now,
            });
            // A long quiet spell resets the doubling.
            if now.duration_since(lock.last_failure) > self.max * 2 {
                lock.level = 0;
            }
            let factor = 2u32.saturating_pow(lock.level.min(20));
            let length = self.initial.saturating_mul(factor).min(self.max);
            lock.until = now + length;
            lock.level = lock.level.saturating_add(1);
            lock.last_failure = now;
            started = Some(started.map_or(length, |d| d.max(length)));
        }
        match started {
            Some(d) => {
                metrics::counter!(names::LOGIN_LOCKOUTS).increment(1);
                Failure::LockedOut(d)
            }
            None => Failure::Counted,
        }
    }

    /// A successful login clears the account's lockout history.
    pub fn succeeded(&self, account_key: &str) {
        self.locks.remove(account_key);
    }

    fn upkeep(&self) {
        self.failures.retain_recent();
        let now = Instant::now();
        let keep = self.max * 2;
        self.locks
            .retain(|_, l| l.until > now || now.duration_since(l.last_failure) < keep);
    }
}

/// Refuses an operation with more than the given number of aliased fields (counted
/// over the whole document, fragments included), before validation runs.
pub struct AliasLimit(pub usize);

impl async_graphql::extensions::ExtensionFactory for AliasLimit {
    fn create(&self) -> Arc<dyn async_graphql::extensions::Extension> {
        Arc::new(AliasLimit(self.0))
    }
}

fn count_aliases(set: &async_graphql::parser::types::SelectionSet) -> usize {
    use async_graphql::parser::types::Selection;
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(f) => {
                usize::from(f.node.alias.is_some()) + count_aliases(&f.node.selection_set.node)
            }
            Selection::InlineFragment(i) => count_aliases(&i.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

#[async_trait::async_trait]
impl async_graphql::extensions::Extension for AliasLimit {
    async fn parse_query(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        query: &str,
        variables: &async_graphql::Variables,
        next: async_graphql::extensions::NextParseQuery<'_>,
    ) -> async_graphql::ServerResult<async_graphql::parser::types::ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let aliases: usize = doc
            .operations
            .iter()
            .map(|(_, op)| count_aliases(&op.node.selection_set.node))
            .chain(
                doc.fragments
                    .values()
                    .map(|f| count_aliases(&f.node.selection_set.node)),
            )
            .sum();
        if aliases > self.0 {
            let mut e = async_graphql::ServerError::new(
                format!("too many aliases: {aliases} (at most {})", self.0),
                None,
            );
            e.extensions
                .get_or_insert_with(Default::default)
                .set("code", "BAD_USER_INPUT");
            return Err(e);
        }
        Ok(doc)
    }
}

/// A range that reads raw samples or the alarm history (exports, statistics, alarm
/// analytics): ordered, and at most `max_days` (`api.export_max_days`) long.
pub fn check_raw_range(
    from: crate::domain::Timestamp,
    to: crate::domain::Timestamp,
    max_days: u32,
) -> Result<(), super::ApiError> {
    if from >= to {
        return Err(super::ApiError::BadRequest(
            "`from` must be before `to`".into(),
        ));
    }
    if to.micros_since(from) > i64::from(max_days) * 86_400_000_000 {
        return Err(super::ApiError::BadRequest(format!(
            "the range is longer than {max_days} days (api.export_max_days): ask for it in parts"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(&AuthConfig {
            login_failures_per_minute: 5,
            lockout_initial_ms: 200,
            lockout_max_secs: 1,
            ..AuthConfig::default()
        })
    }

    #[test]
    fn the_fifth_failure_in_a_minute_locks_the_key_out() {
        let t = throttle();
        for _ in 0..4 {
            assert_eq!(t.failed(&["a"]), Failure::Counted);
        }
        assert!(t.locked(&["a"]).is_none());
        assert_eq!(
            t.failed(&["a"]),
            Failure::LockedOut(Duration::from_millis(200))
        );
        assert!(t.locked(&["a"]).is_some());
        assert!(t.locked(&["b"]).is_none(), "other keys are not affected");
    }

    #[test]
    fn lockouts_double_up_to_the_cap() {
        let t = throttle();
        for _ in 0..4 {
            t.failed(&["a"]);
        }
        let lengths: Vec<Duration> = (0..5)
            .map(|_| match t.failed(&["a"]) {
                Failure::LockedOut(d) => d,
                Failure::Counted => Duration::ZERO,
            })
            .collect();
        assert_eq!(
            lengths,
            [200, 400, 800, 1000, 1000].map(Duration::from_millis)
        );
    }

    #[test]
    fn success_clears_the_account() {
        let t = throttle();
        for _ in 0..5 {
            t.failed(&["acct", "addr"]);
        }
        assert!(t.locked(&["acct"]).is_some());
        t.succeeded("acct");
        assert!(t.locked(&["acct"]).is_none());
        assert!(t.locked(&["addr"]).is_some(), "the address stays locked");
    }

    #[test]
    fn request_limits_refuse_with_a_wait_hint() {
        let api = ApiConfig {
            user_requests_per_sec: 2,
            ..ApiConfig::default()
        };
        let l = Limits::new(&api, &AuthConfig::default());
        let (u, t) = (UserId(1), TenantId(1));
        // burst of 4 for the user (twice the rate), tenant unlimited
        for _ in 0..4 {
            assert!(l.request(u, t, 0).is_ok());
        }
        let wait = l.request(u, t, 0).expect_err("limited");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        // the tenant quota applies across users
        let l = Limits::new(&ApiConfig::default(), &AuthConfig::default());
        assert!(l.request(UserId(1), t, 1).is_ok());
        assert!(l.request(UserId(2), t, 1).is_err());
    }
}
