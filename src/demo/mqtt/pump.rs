//! The demo edge node's simulated pump: it runs for 110 s and rests for 10 s in every
//! two minutes; its speed follows the speed setpoint, its flow follows its speed.

use super::{noise, round};
use crate::drivers::mqtt::sparkplug::proto::MetricValue;

pub(super) const MAX_RPM: f64 = 2950.0;

/// The simulated pump: runs for 110 s, rests for 10 s; its speed follows the setpoint.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pump {
    pub speed: f64,
    pub running: bool,
    pub flow: f32,
    pub starts: u32,
    /// Speed setpoint in % of the maximum speed.
    pub setpoint: f64,
}

impl Pump {
    pub fn new() -> Self {
        Pump {
            speed: 0.0,
            running: false,
            flow: 0.0,
            starts: 0,
            setpoint: 75.0,
        }
    }

    pub fn step(&mut self, t: f64) {
        let running = t % 120.0 < 110.0;
        if running && !self.running {
            self.starts = self.starts.wrapping_add(1);
        }
        self.running = running;
        let target = if running {
            self.setpoint / 100.0 * MAX_RPM
        } else {
            0.0
        };
        self.speed = (self.speed + (target - self.speed) * 0.3).max(0.0);
        if running {
            self.speed = round(self.speed + noise(3.0), 1);
        } else if self.speed < 1.0 {
            self.speed = 0.0;
        }
        self.flow = round(
            self.speed / MAX_RPM * 120.0 + noise(0.3) * f64::from(running),
            2,
        ) as f32;
        self.flow = self.flow.max(0.0);
    }

    /// The metric values in [`PUMP_METRICS`](super::PUMP_METRICS) order.
    pub fn values(&self) -> [MetricValue; 6] {
        let status = if self.running { "Running" } else { "Stopped" };
        [
            MetricValue::DoubleValue(self.speed),
            MetricValue::BooleanValue(self.running),
            MetricValue::FloatValue(self.flow),
            MetricValue::IntValue(self.starts),
            MetricValue::DoubleValue(self.setpoint),
            MetricValue::StringValue(status.into()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pump_counts_starts_and_follows_its_setpoint() {
        let mut p = Pump::new();
        for t in 0..30 {
            p.step(f64::from(t));
        }
        assert!(p.running && p.starts == 1);
        assert!((p.speed - 0.75 * MAX_RPM).abs() < 50.0, "{}", p.speed);
        p.step(115.0);
        assert!(!p.running);
        p.step(121.0);
        assert_eq!(p.starts, 2);
    }
}
