//! The sim driver's runtime: generates one sample per tag per poll, and injects the
//! configured faults.

use async_trait::async_trait;

use super::config::SimConfig;
use super::signal::Signal;
use crate::domain::{DataType, Quality, Sample, Tag, TagId, Timestamp, Value};
use crate::drivers::{Driver, DriverSink, Error, PlanGroup, PlanSummary, ReadReport, WriteReport};

struct SimTag {
    id: TagId,
    signal: Signal,
    scale: f64,
    offset: f64,
    data_type: DataType,
    /// Random-walk position or counter.
    state: f64,
    rng: u64,
    /// Last value written by a command; served instead of the signal.
    written: Option<Value>,
}

/// A simulated device.
pub struct SimDriver {
    config: SimConfig,
    tags: Vec<SimTag>,
    polls: u64,
    /// Remaining failed connection attempts of a simulated link loss.
    down_remaining: u64,
    connected: bool,
}

impl SimDriver {
    pub fn new(config: SimConfig) -> Self {
        SimDriver {
            config,
            tags: Vec::new(),
            polls: 0,
            down_remaining: 0,
            connected: false,
        }
    }
}

#[async_trait]
impl Driver for SimDriver {
    fn plan(&mut self, tags: &[Tag], default_period_ms: u64) -> Result<PlanSummary, Error> {
        let mut planned = Vec::with_capacity(tags.len());
        for tag in tags {
            let signal = Signal::parse(&tag.spec.address).map_err(|reason| Error::Address {
                tag: tag.spec.name.clone(),
                address: tag.spec.address.clone(),
                reason,
            })?;
            let seed = self.config.seed ^ (tag.id.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            planned.push(SimTag {
                id: tag.id,
                state: signal.initial_state(),
                signal,
                scale: tag.spec.scale,
                offset: tag.spec.offset,
                data_type: tag.spec.data_type,
                rng: seed | 1,
                written: None,
            });
        }
        self.tags = planned;
        Ok(PlanSummary {
            groups: vec![PlanGroup {
                name: "default".into(),
                period_ms: default_period_ms,
                requests: u32::from(!self.tags.is_empty()),
                tags: self.tags.len() as u32,
            }],
            tag_groups: Vec::new(),
            by_exception: false,
        })
    }

    async fn connect(&mut self, _sink: DriverSink) -> Result<(), Error> {
        if self.down_remaining > 0 {
            self.down_remaining -= 1;
            return Err(Error::Disconnected("simulated link loss".into()));
        }
        self.connected = true;
        Ok(())
    }

    async fn read(
        &mut self,
        _group: usize,
        now: Timestamp,
        out: &mut Vec<Sample>,
    ) -> Result<ReadReport, Error> {
        if !self.connected {
            return Err(Error::Disconnected("not connected".into()));
        }
        self.polls += 1;
        let every = self.config.panic_every_polls;
        if every > 0 && self.polls % every == 0 {
            panic!(
                "sim: injected fault at poll {} (panic_every_polls = {every})",
                self.polls
            );
        }
        let every = self.config.disconnect_every_polls;
        if every > 0 && self.polls % every == 0 {
            self.connected = false;
            self.down_remaining = self.config.disconnect_for_polls;
            return Err(Error::Disconnected("simulated link loss".into()));
        }
        let t = now.0 as f64 / 1e6;
        out.reserve(self.tags.len());
        for tag in &mut self.tags {
            let value = match &tag.written {
                Some(v) => v.clone(),
                None => match tag.signal.value(t, &mut tag.state, &mut tag.rng) {
                    Value::F64(raw) => Value::F64(raw * tag.scale + tag.offset),
                    other => other,
                },
            };
            out.push(Sample {
                tag: tag.id,
                value,
                quality: Quality::Good,
                source_time: now,
                server_time: now,
            });
        }
        Ok(ReadReport {
            requests: u32::from(!self.tags.is_empty()),
            ..ReadReport::default()
        })
    }

    async fn write(&mut self, tag: &Tag, value: &Value) -> Result<WriteReport, Error> {
        if !tag.spec.writable {
            return Err(Error::NotWritable(tag.spec.name.clone()));
        }
        let sim = self
            .tags
            .iter_mut()
            .find(|t| t.id == tag.id)
            .ok_or_else(|| Error::Config(format!("tag `{}` is not planned", tag.spec.name)))?;
        let ok = matches!(
            (sim.data_type, value),
            (DataType::Bool, Value::Bool(_))
                | (DataType::String, Value::Str(_))
                | (DataType::F32 | DataType::F64, Value::F64(_) | Value::I64(_))
        ) || (!matches!(
            sim.data_type,
            DataType::Bool | DataType::String | DataType::F32 | DataType::F64
        ) && matches!(value, Value::I64(_)));
        if !ok {
            return Err(Error::BadValue {
                tag: tag.spec.name.clone(),
                value: value.to_string(),
                reason: format!("expected a {} value", sim.data_type),
            });
        }
        sim.written = Some(value.clone());
        Ok(WriteReport { confirmed: None })
    }

    async fn disconnect(&mut self) {
        self.connected = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeviceId, TagSpec, TenantId};

    fn tag(id: i64, address: &str, data_type: DataType, writable: bool) -> Tag {
        Tag {
            id: TagId(id),
            tenant: TenantId(1),
            device: DeviceId(1),
            spec: TagSpec {
                name: format!("t{id}"),
                unit: None,
                address: address.into(),
                data_type,
                scale: 2.0,
                offset: 1.0,
                eng_unit: None,
                deadband: 0.0,
                writable,
            },
        }
    }

    fn sink() -> DriverSink {
        DriverSink::discard()
    }

    #[tokio::test]
    async fn reads_one_sample_per_tag_with_scaling() {
        let mut d = SimDriver::new(SimConfig::default());
        let plan = d
            .plan(
                &[
                    tag(1, "ramp:period=10,min=0,max=10", DataType::F64, false),
                    tag(2, "counter", DataType::I64, false),
                ],
                1000,
            )
            .expect("plan");
        assert_eq!((plan.requests_per_cycle(), plan.tags()), (1, 2));
        assert_eq!(plan.groups[0].period_ms, 1000);
        d.connect(sink()).await.expect("connect");
        let mut out = Vec::new();
        d.read(0, Timestamp(5_000_000), &mut out)
            .await
            .expect("read");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].value, Value::F64(5.0 * 2.0 + 1.0));
        assert_eq!(out[1].value, Value::I64(1));
    }

    #[tokio::test]
    async fn bad_address_names_the_tag() {
        let mut d = SimDriver::new(SimConfig::default());
        let err = d
            .plan(&[tag(1, "bogus", DataType::F64, false)], 1000)
            .unwrap_err();
        assert!(err.to_string().contains("tag `t1`"), "{err}");
    }

    #[tokio::test]
    async fn disconnect_injection_loses_and_recovers_the_link() {
        let cfg = SimConfig {
            disconnect_every_polls: 2,
            disconnect_for_polls: 2,
            ..SimConfig::default()
        };
        let mut d = SimDriver::new(cfg);
        d.plan(&[tag(1, "counter", DataType::I64, false)], 1000)
            .expect("plan");
        d.connect(sink()).await.expect("connect");
        let mut out = Vec::new();
        d.read(0, Timestamp(0), &mut out).await.expect("poll 1");
        assert!(matches!(
            d.read(0, Timestamp(0), &mut out).await,
            Err(Error::Disconnected(_))
        ));
        assert!(d.connect(sink()).await.is_err());
        assert!(d.connect(sink()).await.is_err());
        d.connect(sink()).await.expect("link back");
        d.read(0, Timestamp(0), &mut out).await.expect("poll 3");
    }

    #[tokio::test]
    async fn writes_are_type_checked_and_served_back() {
        let mut d = SimDriver::new(SimConfig::default());
        let sp = tag(1, "sine", DataType::F64, true);
        let ro = tag(2, "sine", DataType::F64, false);
        d.plan(&[sp.clone(), ro.clone()], 1000).expect("plan");
        d.connect(sink()).await.expect("connect");
        assert!(matches!(
            d.write(&ro, &Value::F64(1.0)).await,
            Err(Error::NotWritable(_))
        ));
        assert!(matches!(
            d.write(&sp, &Value::Bool(true)).await,
            Err(Error::BadValue { .. })
        ));
        d.write(&sp, &Value::F64(42.0)).await.expect("write");
        let mut out = Vec::new();
        d.read(0, Timestamp(1), &mut out).await.expect("read");
        assert_eq!(out[0].value, Value::F64(42.0));
    }

    #[tokio::test]
    #[should_panic(expected = "injected fault")]
    async fn panic_injection_panics_on_the_nth_poll() {
        let mut d = SimDriver::new(SimConfig {
            panic_every_polls: 2,
            ..SimConfig::default()
        });
        d.plan(&[tag(1, "counter", DataType::I64, false)], 1000)
            .expect("plan");
        d.connect(sink()).await.expect("connect");
        let mut out = Vec::new();
        d.read(0, Timestamp(0), &mut out).await.expect("poll 1");
        let _ = d.read(0, Timestamp(0), &mut out).await;
    }
}
