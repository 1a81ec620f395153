//! Alarm rule evaluation in the in-memory path: N tags with R rules each (limits with
//! deadbands and delays, rate of change, quality, communication loss, stale; with
//! `--anomaly`, a z-score detector over 60 samples in place of the last), fed
//! sample batches of a slowly swinging signal that crosses some limits now and then.
//!
//! Two figures: the engine alone (what one alert stream's evaluation costs), and the
//! tenant's alert-stream actor with its rules and states in an in-memory SQLite store,
//! batches cast to it as fast as it takes them, transitions recorded.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::Actor;
use thermacore::actors::TenantWorld;
use thermacore::actors::alerts::{AlertArgs, AlertMsg, AlertStreamActor};
use thermacore::alarms::{
    DetectorSpec, Engine, LimitKind, Method, Rule, RuleKind, RuleSpec, Severity, TagInfo,
};
use thermacore::domain::{
    DataType, DeviceId, DeviceSpec, Quality, QualityReason, RuleId, Sample, SampleBatch, TagId,
    TagSpec, TenantId, Timestamp, Value,
};
use thermacore::drivers::DriverConfig;
use thermacore::drivers::sim::SimConfig;
use thermacore::storage;

/// The rules of one tag: up to ten kinds, the last of them an anomaly detector with
/// `anomaly`.
fn rules_of(n: usize, anomaly: bool) -> Vec<RuleSpec> {
    let limit = |name: &str, limit, setpoint, deadband, on| RuleSpec {
        name: name.into(),
        kind: RuleKind::Limit {
            limit,
            setpoint,
            deadband,
        },
        severity: Severity::High,
        message: None,
        enabled: true,
        on_delay_ms: on,
        off_delay_ms: 0,
    };
    let other = |name: &str, kind| RuleSpec {
        name: name.into(),
        kind,
        severity: Severity::Medium,
        message: None,
        enabled: true,
        on_delay_ms: 0,
        off_delay_ms: 0,
    };
    let all = vec![
        limit("hh", LimitKind::HighHigh, 95.0, 1.0, 0),
        limit("h", LimitKind::High, 59.5, 0.5, 0),
        limit("l", LimitKind::Low, 40.5, 0.5, 0),
        limit("ll", LimitKind::LowLow, 5.0, 1.0, 0),
        limit("h-delayed", LimitKind::High, 58.0, 1.0, 500),
        limit("l-delayed", LimitKind::Low, 42.0, 1.0, 500),
        other(
            "roc",
            RuleKind::RateOfChange {
                max_per_second: 1000.0,
            },
        ),
        other(
            "comm",
            RuleKind::Quality {
                reasons: vec![QualityReason::CommLost],
            },
        ),
        other("bad", RuleKind::Quality { reasons: vec![] }),
        other("stale", RuleKind::Stale { after_ms: 60_000 }),
    ];
    let mut rules: Vec<RuleSpec> = all.into_iter().take(n).collect();
    if anomaly {
        rules.pop();
        rules.push(other(
            "odd",
            RuleKind::Anomaly(DetectorSpec {
                method: Method::ZScore,
                window: 60,
                threshold: 4.0,
            }),
        ));
    }
    rules
}

/// What one run measures.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub tags: usize,
    pub rules: usize,
    pub anomaly: bool,
    pub per_batch: usize,
    pub amplitude: f64,
    pub seconds: u64,
}

/// `batches` batches of `per_batch` samples covering the tags in turn: each tag's value
/// is 50 + amplitude·sin(phase), its phase moving a little every round: with the
/// default amplitude of 10 the value crosses the high and low limits of every tag every
/// ~125 rounds (a plant in an alarm flood); with 5 it crosses none.
fn batches(
    tags: &[TagId],
    per_batch: usize,
    count: usize,
    amplitude: f64,
    tenant: TenantId,
) -> Vec<Arc<SampleBatch>> {
    let mut out = Vec::with_capacity(count);
    let mut i = 0usize;
    let t0 = Timestamp::now().0;
    for b in 0..count {
        let now = Timestamp(t0 + b as i64 * 1000);
        let samples = (0..per_batch)
            .map(|_| {
                let tag = tags[i % tags.len()];
                let round = i / tags.len();
                i += 1;
                let phase = tag.0 as f64 * 0.37 + round as f64 * 0.05;
                Sample {
                    tag,
                    value: Value::F64(50.0 + amplitude * phase.sin()),
                    quality: Quality::Good,
                    source_time: now,
                    server_time: now,
                }
            })
            .collect();
        out.push(Arc::new(SampleBatch {
            tenant,
            device: DeviceId(1),
            samples,
        }));
    }
    out
}

fn engine_figure(run: Run) {
    let Run {
        tags,
        rules,
        anomaly,
        per_batch,
        amplitude,
        seconds,
    } = run;
    let tag_ids: Vec<TagId> = (1..=tags as i64).map(TagId).collect();
    let infos: HashMap<TagId, Arc<TagInfo>> = tag_ids
        .iter()
        .map(|&t| {
            let info = TagInfo {
                name: format!("t{}", t.0),
                eng_unit: String::new(),
                device: DeviceId(1),
                unit: None,
            };
            (t, Arc::new(info))
        })
        .collect();
    let mut next = 0;
    let all: Vec<Rule> = tag_ids
        .iter()
        .flat_map(|&tag| {
            rules_of(rules, anomaly)
                .into_iter()
                .map(move |spec| (tag, spec))
        })
        .map(|(tag, spec)| {
            next += 1;
            Rule {
                id: RuleId(next),
                tenant: TenantId(1),
                tag,
                spec,
            }
        })
        .collect();
    let mut events = Vec::new();
    let mut engine = Engine::new(
        all,
        &infos,
        HashMap::new(),
        &HashSet::new(),
        Timestamp::now(),
        &mut events,
    );
    let input = batches(&tag_ids, per_batch, 4096, amplitude, TenantId(1));
    let started = Instant::now();
    let mut samples = 0u64;
    let mut transitions = 0u64;
    let (mut detections, mut found) = (Vec::new(), 0u64);
    let mut k = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..64 {
            let b = &input[k % input.len()];
            k += 1;
            engine.on_samples(&b.samples, &mut events, &mut detections);
            samples += b.len() as u64;
        }
        transitions += events.len() as u64;
        found += detections.len() as u64;
        events.clear();
        detections.clear();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "alarms engine: tags={tags} rules_per_tag={rules} anomaly={anomaly} batch={per_batch} amplitude={amplitude} samples/s={:.0} rule_evaluations/s={:.0} transitions={transitions} anomalies={found} seconds={secs:.1}",
        samples as f64 / secs,
        samples as f64 * rules as f64 / secs,
    );
}

async fn actor_figure(run: Run) -> anyhow::Result<()> {
    let Run {
        tags,
        rules,
        anomaly,
        per_batch,
        amplitude,
        seconds,
    } = run;
    let store = storage::connect("sqlite::memory:", 1).await?;
    store.migrate().await?;
    let tenant = store.upsert_tenant("bench").await?;
    let device = store
        .upsert_device(
            tenant.id,
            &DeviceSpec {
                name: "d".into(),
                unit: None,
                enabled: true,
                poll_ms: 1000,
                driver: DriverConfig::Sim(SimConfig::default()),
                security: Default::default(),
            },
        )
        .await?;
    let mut tag_ids = Vec::with_capacity(tags);
    for t in 0..tags {
        let spec = TagSpec {
            name: format!("t{t}"),
            unit: None,
            address: "sine".into(),
            data_type: DataType::F64,
            scale: 1.0,
            offset: 0.0,
            eng_unit: None,
            deadband: 0.0,
            writable: false,
        };
        let tag = store.upsert_tag(tenant.id, device.id, &spec).await?;
        for r in rules_of(rules, anomaly) {
            store.upsert_alarm_rule(tenant.id, tag.id, &r).await?;
        }
        tag_ids.push(tag.id);
    }
    let world = TenantWorld::load(&*store, tenant.clone()).await?;
    let args = AlertArgs {
        shared: world.shared.clone(),
        store: store.clone(),
        devices: world.devices.clone(),
    };
    let (actor, handle) = Actor::spawn(None, AlertStreamActor, args).await?;
    let input = batches(&tag_ids, per_batch, 4096, amplitude, tenant.id);
    let started = Instant::now();
    let mut samples = 0u64;
    let mut k = 0;
    // Cast in rounds and wait for each round to be handled and its transitions
    // recorded, so the figure is what the actor sustains, not what it queued.
    while started.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..256 {
            let b = input[k % input.len()].clone();
            k += 1;
            samples += b.len() as u64;
            actor.cast(AlertMsg::Batch(b))?;
        }
        actor
            .call(AlertMsg::Flush, Some(Duration::from_secs(60)))
            .await?
            .success_or(anyhow::anyhow!("no answer from the alert stream"))?
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    let secs = started.elapsed().as_secs_f64();
    let recorded = store
        .alarm_history(tenant.id, &Default::default(), None, 1_000_000)
        .await?
        .len();
    println!(
        "alarms actor: tags={tags} rules_per_tag={rules} anomaly={anomaly} batch={per_batch} amplitude={amplitude} samples/s={:.0} rule_evaluations/s={:.0} transitions_recorded={recorded} seconds={secs:.1}",
        samples as f64 / secs,
        samples as f64 * rules as f64 / secs,
    );
    actor.stop(None);
    handle.await?;
    Ok(())
}

pub async fn run(run: Run) -> anyhow::Result<()> {
    anyhow::ensure!((1..=10).contains(&run.rules), "--rules-per-tag is 1..=10");
    anyhow::ensure!(
        run.tags > 0 && run.per_batch > 0,
        "--tags and --batch must be > 0"
    );
    engine_figure(run);
    actor_figure(run).await
}
