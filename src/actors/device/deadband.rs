//! Deadbands of a device's tags: a reading is reported when it moved by the tag's
//! deadband from the last one reported, or when the last report is half the tag's
//! staleness limit old, so that a steady value never reads stale.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::CacheConfig;
use crate::domain::{Sample, Tag, TagId};

struct Deadband {
    band: f64,
    heartbeat: Duration,
    last: Option<(f64, Instant)>,
}

/// The deadband tags of one device.
pub(super) struct Deadbands(HashMap<TagId, Deadband>);

impl Deadbands {
    /// `period_of` gives a tag's poll period (its group's, or the device's).
    pub(super) fn new(tags: &[Tag], period_of: impl Fn(TagId) -> u64, cache: &CacheConfig) -> Self {
        Deadbands(
            tags.iter()
                .filter(|t| t.spec.deadband > 0.0)
                .map(|t| {
                    let stale = cache.stale_after_us(period_of(t.id)).max(0) as u64;
                    let d = Deadband {
                        band: t.spec.deadband,
                        heartbeat: Duration::from_micros(stale / 2),
                        last: None,
                    };
                    (t.id, d)
                })
                .collect(),
        )
    }

    /// Drops the Good readings that are within their tag's deadband.
    pub(super) fn retain_reportable(&mut self, samples: &mut Vec<Sample>) {
        if self.0.is_empty() {
            return;
        }
        let now = Instant::now();
        samples.retain(|s| match (self.0.get_mut(&s.tag), s.value.as_f64()) {
            (Some(d), Some(v)) if s.quality.is_good() => {
                let report = d.last.is_none_or(|(l, at)| {
                    (v - l).abs() >= d.band || now.duration_since(at) >= d.heartbeat
                });
                if report {
                    d.last = Some((v, now));
                }
                report
            }
            _ => true,
        });
    }
}
