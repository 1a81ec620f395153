//! The one restart policy every supervisor uses: exponential backoff with jitter,
//! at most N restarts in a sliding window, then escalate to the parent.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::SupervisionConfig;
use crate::telemetry::names;

/// Every kind of supervised actor (the `kind` label of restarts and escalations),
/// as the root and tenant actors name their children.
pub const CHILD_KINDS: [&str; 6] = [
    "historian",
    "tenant",
    "cache",
    "live_hub",
    "alert_stream",
    "device",
];

/// Restart parameters, from `[supervision]`.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub max_restarts: u32,
    pub window: Duration,
}

impl From<&SupervisionConfig> for RestartPolicy {
    fn from(c: &SupervisionConfig) -> Self {
        RestartPolicy {
            min_backoff: Duration::from_millis(c.min_backoff_ms),
            max_backoff: Duration::from_millis(c.max_backoff_ms),
            max_restarts: c.max_restarts,
            window: Duration::from_secs(c.window_secs),
        }
    }
}

/// What a supervisor does about a failed child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    Restart(Duration),
    /// Too many failures in the window: fail the supervisor itself.
    Escalate,
}

/// Failure history of one child (kept across its restarts).
#[derive(Debug, Default, Clone)]
pub struct RestartHistory {
    failures: VecDeque<Instant>,
}

impl RestartPolicy {
    /// Records a failure at `now` and decides. The n-th failure within the window
    /// waits `min * 2^(n-1)` capped at `max`, jittered into `[d/2, d]`.
    pub fn on_failure(&self, history: &mut RestartHistory, now: Instant) -> Decision {
        while let Some(first) = history.failures.front() {
            if now.duration_since(*first) > self.window {
                history.failures.pop_front();
            } else {
                break;
            }
        }
        history.failures.push_back(now);
        let n = history.failures.len() as u32;
        if n > self.max_restarts {
            return Decision::Escalate;
        }
        let exp = self
            .min_backoff
            .saturating_mul(1u32 << (n - 1).min(20))
            .min(self.max_backoff);
        let half = exp / 2;
        let jitter = half.mul_f64(rand::random::<f64>());
        Decision::Restart(half + jitter)
    }
}

/// A supervisor's bookkeeping: which actor id is which child, and each child's history.
pub struct Children<K> {
    by_actor: HashMap<ractor::ActorId, K>,
    history: HashMap<K, RestartHistory>,
}

impl<K: Clone + Eq + std::hash::Hash> Default for Children<K> {
    fn default() -> Self {
        Children {
            by_actor: HashMap::new(),
            history: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + std::hash::Hash> Children<K> {
    pub fn insert(&mut self, actor: ractor::ActorId, key: K) {
        self.by_actor.insert(actor, key);
    }

    /// Whether a child with this key is alive.
    pub fn contains(&self, key: &K) -> bool {
        self.by_actor.values().any(|k| k == key)
    }

    /// Forgets a live child before it is stopped on purpose (its exit is then not a
    /// failure); returns its actor id.
    pub fn take(&mut self, key: &K) -> Option<ractor::ActorId> {
        let id = self
            .by_actor
            .iter()
            .find_map(|(id, k)| (k == key).then_some(*id))?;
        self.by_actor.remove(&id);
        Some(id)
    }

    /// The key of an exited child, removed from the live set; `None` if unknown (a
    /// child stopped on purpose).
    pub fn exited(&mut self, actor: ractor::ActorId) -> Option<K> {
        self.by_actor.remove(&actor)
    }

    /// The child an exit event is about, with the reason; `None` for other events and
    /// for children stopped on purpose.
    pub fn exit_of(&mut self, evt: ractor::SupervisionEvent) -> Option<(K, String)> {
        let (cell, why) = match evt {
            ractor::SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            ractor::SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return None,
        };
        self.exited(cell.get_id()).map(|k| (k, why))
    }

    /// Graceful stop of a supervisor's children, in data-path order: first those for
    /// which `first` holds, then the rest, each waiting for its `post_stop`. (Children
    /// left to ractor would be killed when the parent exits, without `post_stop`.)
    /// `later_timeout` bounds each of the later ones (the historian drains its buffer).
    pub async fn stop_in_order(
        &mut self,
        cells: Vec<ractor::ActorCell>,
        first: impl Fn(&K) -> bool,
        later_timeout: std::time::Duration,
    ) {
        let timeout = Some(std::time::Duration::from_secs(10));
        let mut later = Vec::new();
        for cell in cells {
            match self.exited(cell.get_id()) {
                Some(k) if first(&k) => {
                    let _ = cell.stop_and_wait(Some("shutdown".into()), timeout).await;
                }
                _ => later.push(cell),
            }
        }
        for cell in later {
            let _ = cell
                .stop_and_wait(Some("shutdown".into()), Some(later_timeout))
                .await;
        }
    }

    /// Applies the policy to an exited child and counts the restart or escalation.
    pub fn decide(&mut self, policy: &RestartPolicy, key: &K, kind: &'static str) -> Decision {
        let history = self.history.entry(key.clone()).or_default();
        let decision = policy.on_failure(history, Instant::now());
        match decision {
            Decision::Restart(_) => {
                metrics::counter!(names::ACTOR_RESTARTS, "kind" => kind).increment(1)
            }
            Decision::Escalate => {
                metrics::counter!(names::ACTOR_ESCALATIONS, "kind" => kind).increment(1)
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_restarts: 3,
            window: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_grows_with_jitter_then_escalates() {
        let p = policy();
        let mut h = RestartHistory::default();
        let t0 = Instant::now();
        let bounds = [(50, 100), (100, 200), (200, 400)];
        for (i, (lo, hi)) in bounds.iter().enumerate() {
            match p.on_failure(&mut h, t0 + Duration::from_millis(i as u64)) {
                Decision::Restart(d) => {
                    assert!(
                        d >= Duration::from_millis(*lo) && d <= Duration::from_millis(*hi),
                        "{i}: {d:?}"
                    )
                }
                Decision::Escalate => panic!("escalated too early at {i}"),
            }
        }
        assert_eq!(
            p.on_failure(&mut h, t0 + Duration::from_millis(5)),
            Decision::Escalate
        );
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let p = policy();
        let mut h = RestartHistory::default();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(matches!(
                p.on_failure(&mut h, t0 + Duration::from_millis(i)),
                Decision::Restart(_)
            ));
        }
        let later = t0 + Duration::from_secs(11);
        match p.on_failure(&mut h, later) {
            Decision::Restart(d) => assert!(d <= Duration::from_millis(100)),
            Decision::Escalate => panic!("old failures must not count"),
        }
    }

    #[test]
    fn backoff_is_capped() {
        let p = RestartPolicy {
            max_restarts: 100,
            ..policy()
        };
        let mut h = RestartHistory::default();
        let t0 = Instant::now();
        let mut last = Duration::ZERO;
        for i in 0..50 {
            if let Decision::Restart(d) = p.on_failure(&mut h, t0 + Duration::from_millis(i)) {
                last = d;
            }
        }
        assert!(last <= Duration::from_millis(1000) && last >= Duration::from_millis(500));
    }
}
