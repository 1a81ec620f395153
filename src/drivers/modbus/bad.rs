//! The bad-address cache: a tag whose address keeps failing (the device refuses it, or
//! answers garbage for it) is parked — skipped by the polls for a grace period, logged
//! once — and then retried. Times are tokio's, so tests run it on paused time.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::plan::Request;

/// A parked single-tag request and when it is tried again.
struct Parked {
    group: usize,
    request: Request,
    until: Instant,
}

pub struct BadAddressCache {
    /// Consecutive failures that park an address.
    after: u32,
    grace: Duration,
    /// Consecutive failures per planned tag index.
    failures: HashMap<usize, u32>,
    parked: Vec<Parked>,
    /// Tags parked at least once: a second parking is not logged again.
    logged: std::collections::HashSet<usize>,
}

impl BadAddressCache {
    pub fn new(after: u32, grace: Duration) -> Self {
        BadAddressCache {
            after: after.max(1),
            grace,
            failures: HashMap::new(),
            parked: Vec::new(),
            logged: std::collections::HashSet::new(),
        }
    }

    /// Counts a failure of `tag`; true when it has now failed `after` times in a row.
    pub fn failed(&mut self, tag: usize) -> bool {
        let n = self.failures.entry(tag).or_insert(0);
        *n += 1;
        *n >= self.after
    }

    /// A good read of `tag`: its count starts again.
    pub fn succeeded(&mut self, tag: usize) {
        self.failures.remove(&tag);
    }

    /// Parks a single-tag request until the grace period has passed. True the first
    /// time this tag is parked (the caller logs it then, and only then).
    pub fn park(&mut self, group: usize, request: Request, now: Instant) -> bool {
        let tag = request.tags.first().map(|(t, _)| *t);
        self.parked.push(Parked {
            group,
            request,
            until: now + self.grace,
        });
        match tag {
            Some(t) => {
                self.failures.remove(&t);
                self.logged.insert(t)
            }
            None => false,
        }
    }

    /// The parked requests of `group` whose grace period is over, to be tried again.
    pub fn due(&mut self, group: usize, now: Instant) -> Vec<Request> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.parked.len() {
            if self.parked[i].group == group && self.parked[i].until <= now {
                out.push(self.parked.swap_remove(i).request);
            } else {
                i += 1;
            }
        }
        out
    }

    /// Addresses parked now.
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    /// Tags of `group` skipped while parked.
    pub fn skipped(&self, group: usize) -> u32 {
        self.parked
            .iter()
            .filter(|p| p.group == group)
            .map(|p| p.request.tags.len() as u32)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::modbus::Table;

    fn single(tag: usize, start: u16) -> Request {
        Request {
            table: Table::HoldingRegister,
            start,
            count: 1,
            tags: vec![(tag, 0)],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_is_parked_after_repeated_failures_and_retried_after_the_grace() {
        let mut cache = BadAddressCache::new(3, Duration::from_secs(300));
        assert!(!cache.failed(7));
        assert!(!cache.failed(7));
        cache.succeeded(7); // a good read in between: the count starts again
        assert!(!cache.failed(7));
        assert!(!cache.failed(7));
        assert!(cache.failed(7), "third failure in a row");
        assert!(
            cache.park(0, single(7, 40), Instant::now()),
            "logged the first time"
        );
        assert_eq!((cache.len(), cache.skipped(0), cache.skipped(1)), (1, 1, 0));

        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(
            cache.due(0, Instant::now()).is_empty(),
            "still in its grace"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cache.due(1, Instant::now()).is_empty(), "other group");
        let back = cache.due(0, Instant::now());
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].start, 40);
        assert_eq!(cache.len(), 0);

        // It fails again: parked again, but not logged a second time.
        for _ in 0..2 {
            assert!(!cache.failed(7));
        }
        assert!(cache.failed(7));
        assert!(!cache.park(0, single(7, 40), Instant::now()));
        assert_eq!(cache.len(), 1);
    }
}
