//! The outstations of the `dnp3` scenario, run in a child process of this binary
//! (`dnp3-outstations`) so that their CPU is measured apart from ThermaCore's:
//! `outstations` of the `dnp3` crate, each on its own loopback port, each holding
//! `points` analog inputs (`ai:0…`, class 1, float, no deadband) and two analog outputs
//! (`ao:0`, `ao:1`) that follow the commands they get.
//!
//! Every second a share `change` of each outstation's analog inputs gets a new value,
//! in `slices` batches spread over the second (10: every 100 ms), each batch one
//! database transaction stamped when it was applied, and going round the points (each
//! changes once every 1 / `change` seconds). The outstations report the events
//! unsolicited once the master enables it. The child prints `ready PORT…` once every
//! outstation listens, then updates until its stdin closes, answering `stats` lines
//! (see [`SliceCounters`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use thermacore::drivers::dnp3::PointKind;
use thermacore::drivers::dnp3::outstation::{OutstationSpec, PointSpec, Points, RunningOutstation};

use crate::child::{ChildPeer, SliceCounters, answer_stats};

/// Events an outstation buffers per point type: several seconds of changes, so a
/// master that falls behind shows as latency before it shows as overflow.
const EVENT_BUFFER: u16 = 5000;

/// How the points are laid out and changed: flags of the scenario and of its child.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Layout {
    #[arg(long, default_value_t = 200)]
    pub outstations: usize,
    /// Analog inputs per outstation (one f64 tag each).
    #[arg(long, default_value_t = 500)]
    pub points: u16,
    /// Share of the points changing per second.
    #[arg(long, default_value_t = 0.1)]
    pub change: f64,
    /// Update batches per second and outstation.
    #[arg(long, default_value_t = 10)]
    pub slices: usize,
}

impl Layout {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.outstations > 0 && self.points > 0 && self.slices > 0,
            "--outstations, --points and --slices must be > 0"
        );
        anyhow::ensure!(
            self.change > 0.0 && self.change <= 1.0,
            "--change is a share of the points per second, in (0, 1]"
        );
        Ok(())
    }

    /// Points changed in slice `s` (0-based) of each second: the second's changes
    /// spread evenly over the slices.
    pub fn changes_in_slice(&self, s: usize) -> usize {
        let per_sec = (f64::from(self.points) * self.change).round() as usize;
        (s + 1) * per_sec / self.slices - s * per_sec / self.slices
    }

    /// Changes per second over all outstations.
    pub fn changes_per_sec(&self) -> usize {
        (0..self.slices)
            .map(|s| self.changes_in_slice(s))
            .sum::<usize>()
            * self.outstations
    }
}

/// Changes an outstation's analog inputs forever; `phase` delays its first batch
/// (outstations interleave their batches).
async fn pump(points: Points, l: Layout, phase: Duration, c: Arc<SliceCounters>) {
    let period = Duration::from_secs(1) / l.slices as u32;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let n = usize::from(l.points);
    let (mut next, mut round) = (0usize, 0u64);
    let mut batch = Vec::new();
    loop {
        for s in 0..l.slices {
            tick.tick().await;
            batch.clear();
            for _ in 0..l.changes_in_slice(s) {
                // A new value each time round the points (no deadband: every one is
                // an event).
                let value = (round % 1000) as f64 + (next % 100) as f64 * 0.01;
                batch.push((PointKind::AnalogInput, next as u16, value));
                next += 1;
                if next == n {
                    (next, round) = (0, round + 1);
                }
            }
            let t0 = Instant::now();
            // Flags: ONLINE.
            points.update_many(&batch, 0x01);
            c.record(batch.len(), t0.elapsed().as_micros() as u64);
        }
    }
}

fn spec(l: &Layout) -> OutstationSpec {
    let mut points: Vec<PointSpec> = (0..l.points)
        .map(|i| PointSpec::new(PointKind::AnalogInput, i, 1, 0.0))
        .collect();
    points.push(PointSpec::new(PointKind::AnalogOutput, 0, 1, 0.0));
    points.push(PointSpec::new(PointKind::AnalogOutput, 1, 1, 0.0));
    let mut spec = OutstationSpec::new(points);
    spec.event_buffer = EVENT_BUFFER;
    spec
}

/// The child process.
pub async fn serve(l: Layout) -> anyhow::Result<()> {
    l.check()?;
    let counters = Arc::new(SliceCounters::default());
    let mut running = Vec::with_capacity(l.outstations);
    let mut ports = Vec::with_capacity(l.outstations);
    let spec = spec(&l);
    for o in 0..l.outstations {
        let outstation = RunningOutstation::start(spec.clone()).await?;
        ports.push(outstation.addr().port().to_string());
        let phase = Duration::from_secs(1) / (l.slices * l.outstations) as u32 * o as u32;
        tokio::spawn(pump(outstation.handle(), l, phase, counters.clone()));
        running.push(outstation);
    }
    println!("ready {}", ports.join(" "));
    answer_stats(&counters).await?;
    for mut o in running {
        o.stop();
    }
    Ok(())
}

/// The running child.
pub struct Outstations {
    /// The child (its pid, `slice_stats`, `stop`).
    pub peer: ChildPeer,
    pub ports: Vec<u16>,
}

impl Outstations {
    /// Starts the child (this same binary, `dnp3-outstations`) and waits until every
    /// outstation listens; values change from then on.
    pub async fn spawn(l: &Layout) -> anyhow::Result<Outstations> {
        let args = [
            "dnp3-outstations".to_string(),
            "--outstations".into(),
            l.outstations.to_string(),
            "--points".into(),
            l.points.to_string(),
            "--change".into(),
            l.change.to_string(),
            "--slices".into(),
            l.slices.to_string(),
        ];
        let (peer, line) = ChildPeer::spawn("DNP3 outstations", &args).await?;
        let ports = line
            .strip_prefix("ready ")
            .ok_or_else(|| anyhow::anyhow!("DNP3 outstations did not start: {line:?}"))?
            .split_whitespace()
            .map(str::parse::<u16>)
            .collect::<Result<Vec<u16>, _>>()?;
        anyhow::ensure!(
            ports.len() == l.outstations,
            "DNP3 outstations answered {line:?}"
        );
        Ok(Outstations { peer, ports })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_spread_over_slices() {
        let l = Layout {
            outstations: 200,
            points: 500,
            change: 0.1,
            slices: 10,
        };
        l.check().expect("a valid layout");
        assert_eq!(l.changes_in_slice(0), 5);
        assert_eq!(l.changes_per_sec(), 10_000);
        let odd = Layout {
            points: 33,
            slices: 4,
            ..l
        };
        // 3 changes a second over 4 slices: 0, 1, 1, 1.
        assert_eq!(
            (0..4).map(|s| odd.changes_in_slice(s)).collect::<Vec<_>>(),
            [0, 1, 1, 1]
        );
        assert!(Layout { change: 0.0, ..l }.check().is_err());
    }
}
