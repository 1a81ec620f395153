//! Signal generators of the sim driver, parsed from a tag address such as
//! `sine:period=60,amplitude=10,offset=50`. Values depend only on the poll index and
//! the seed, so a run is reproducible.

use crate::domain::Value;

/// One generator.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// `offset + amplitude * sin(2π t / period)`.
    Sine {
        period: f64,
        amplitude: f64,
        offset: f64,
    },
    /// Rises linearly from `min` to `max` over `period`, then starts again.
    Ramp { period: f64, min: f64, max: f64 },
    /// Random walk of `±step` per poll, clamped to `[min, max]`.
    Walk { step: f64, min: f64, max: f64 },
    /// Boolean, true for the first half of each `period`.
    Square { period: f64 },
    /// Integer counting up by `step` each poll.
    Counter { step: i64 },
}

impl Signal {
    /// Parses `kind[:key=value,…]`. Unknown kinds and keys are refused by name.
    pub fn parse(address: &str) -> Result<Signal, String> {
        let (kind, params) = match address.split_once(':') {
            Some((k, p)) => (k.trim(), p),
            None => (address.trim(), ""),
        };
        let mut pairs = Vec::new();
        for part in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not key=value"))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("`{}` is not a number", v.trim()))?;
            if !v.is_finite() {
                return Err(format!("`{}` must be finite", k.trim()));
            }
            pairs.push((k.trim(), v));
        }
        let allowed: &[&str] = match kind {
            "sine" => &["period", "amplitude", "offset"],
            "ramp" => &["period", "min", "max"],
            "walk" => &["step", "min", "max"],
            "square" => &["period"],
            "counter" => &["step"],
            other => {
                return Err(format!(
                    "unknown signal `{other}` (expected sine, ramp, walk, square or counter)"
                ));
            }
        };
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(k)) {
            return Err(format!(
                "unknown parameter `{k}` for `{kind}` (expected {})",
                allowed.join(", ")
            ));
        }
        let get = |key: &str, default: f64| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map_or(default, |(_, v)| *v)
        };
        let signal = match kind {
            "sine" => Signal::Sine {
                period: get("period", 60.0),
                amplitude: get("amplitude", 1.0),
                offset: get("offset", 0.0),
            },
            "ramp" => Signal::Ramp {
                period: get("period", 60.0),
                min: get("min", 0.0),
                max: get("max", 100.0),
            },
            "walk" => Signal::Walk {
                step: get("step", 1.0),
                min: get("min", 0.0),
                max: get("max", 100.0),
            },
            "square" => Signal::Square {
                period: get("period", 10.0),
            },
            _ => Signal::Counter {
                step: get("step", 1.0) as i64,
            },
        };
        match signal {
            Signal::Sine { period, .. }
            | Signal::Ramp { period, .. }
            | Signal::Square { period }
                if period <= 0.0 =>
            {
                Err("period must be > 0".to_string())
            }
            Signal::Ramp { min, max, .. } | Signal::Walk { min, max, .. } if min >= max => {
                Err("min must be < max".to_string())
            }
            s => Ok(s),
        }
    }

    /// The first value of the generator (the random walk starts in the middle).
    pub fn initial_state(&self) -> f64 {
        match self {
            Signal::Walk { min, max, .. } => (min + max) / 2.0,
            _ => 0.0,
        }
    }

    /// Value at time `t` (seconds since the epoch of the poll). `state` carries the random
    /// walk's position and the counter; `rng` is the tag's own generator.
    pub fn value(&self, t: f64, state: &mut f64, rng: &mut u64) -> Value {
        match *self {
            Signal::Sine {
                period,
                amplitude,
                offset,
            } => Value::F64(offset + amplitude * (std::f64::consts::TAU * t / period).sin()),
            Signal::Ramp { period, min, max } => {
                Value::F64(min + (max - min) * (t.rem_euclid(period) / period))
            }
            Signal::Walk { step, min, max } => {
                let up = xorshift(rng) & 1 == 1;
                *state = (*state + if up { step } else { -step }).clamp(min, max);
                Value::F64(*state)
            }
            Signal::Square { period } => Value::Bool(t.rem_euclid(period) < period / 2.0),
            Signal::Counter { step } => {
                *state += step as f64;
                Value::I64(*state as i64)
            }
        }
    }
}

/// xorshift64*: tiny, fast, deterministic.
pub(crate) fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_and_refuses_unknowns() {
        assert_eq!(
            Signal::parse("sine:period=10,amplitude=2,offset=5"),
            Ok(Signal::Sine {
                period: 10.0,
                amplitude: 2.0,
                offset: 5.0
            })
        );
        assert!(matches!(
            Signal::parse("counter"),
            Ok(Signal::Counter { step: 1 })
        ));
        assert!(
            Signal::parse("noise")
                .unwrap_err()
                .contains("unknown signal")
        );
        assert!(
            Signal::parse("sine:freq=2")
                .unwrap_err()
                .contains("unknown parameter `freq`")
        );
        assert!(
            Signal::parse("ramp:min=5,max=1")
                .unwrap_err()
                .contains("min must be < max")
        );
        assert!(Signal::parse("sine:period=0").is_err());
        assert!(Signal::parse("sine:period=abc").is_err());
    }

    #[test]
    fn generators_are_deterministic() {
        let s = Signal::parse("walk:step=1,min=0,max=10").expect("valid");
        let run = || {
            let (mut st, mut rng) = (s.initial_state(), 7u64);
            (0..20)
                .map(|i| s.value(i as f64, &mut st, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        let sine = Signal::parse("sine:period=4,amplitude=1,offset=0").expect("valid");
        let (mut st, mut rng) = (0.0, 1);
        match sine.value(1.0, &mut st, &mut rng) {
            Value::F64(v) => assert!((v - 1.0).abs() < 1e-9),
            other => panic!("unexpected {other:?}"),
        }
        let sq = Signal::Square { period: 10.0 };
        assert_eq!(sq.value(2.0, &mut st, &mut rng), Value::Bool(true));
        assert_eq!(sq.value(7.0, &mut st, &mut rng), Value::Bool(false));
    }
}
