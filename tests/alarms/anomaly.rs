//! Anomaly rules in the alert stream against SQLite: a series with known spikes goes
//! through the actor in batches; the recorded detections find the spikes (precision
//! and recall asserted) and the rule's alarm follows them.

use std::collections::HashSet;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thermacore::alarms::{DetectorSpec, Method, RuleKind, RuleSpec, Severity};
use thermacore::domain::{Quality, Sample, SampleBatch, Timestamp, Value};
use thermacore::storage::AnomalyFilter;

use super::stream::{drain, history, plant, start};

/// 50 ± 1 (Gaussian), with a spike of 8 to 12 standard deviations, up or down, every
/// 150 to 250 samples.
fn series(n: usize) -> (Vec<f64>, HashSet<usize>) {
    let mut rng = StdRng::seed_from_u64(42);
    let mut gauss = || {
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        let v: f64 = rng.random_range(0.0..1.0);
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    };
    let mut xs: Vec<f64> = (0..n).map(|_| 50.0 + gauss()).collect();
    let mut rng = StdRng::seed_from_u64(43);
    let mut spikes = HashSet::new();
    let mut i = 200;
    while i < n {
        let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        xs[i] += sign * rng.random_range(8.0..12.0);
        spikes.insert(i);
        i += rng.random_range(150..250);
    }
    (xs, spikes)
}

#[tokio::test]
async fn the_alert_stream_records_every_detection_and_alarms_on_them() {
    let p = plant(1).await;
    let tenant = p.world.shared.tenant.id;
    let device = &p.world.devices[0];
    let tag = device.tags[0].id;
    let spec = RuleSpec {
        name: "odd".into(),
        kind: RuleKind::Anomaly(DetectorSpec {
            method: Method::ZScore,
            window: 60,
            threshold: 4.0,
        }),
        severity: Severity::Medium,
        message: None,
        enabled: true,
        on_delay_ms: 0,
        off_delay_ms: 0,
    };
    let rule = p
        .store
        .upsert_alarm_rule(tenant, tag, &spec)
        .await
        .expect("anomaly rule");
    let actor = start(&p).await;

    let (xs, spikes) = series(20_000);
    let t0 = Timestamp::now().0 - 20_000 * 1_000_000;
    let at = |i: usize| Timestamp(t0 + i as i64 * 1_000_000);
    for (k, chunk) in xs.chunks(100).enumerate() {
        let samples = chunk
            .iter()
            .enumerate()
            .map(|(j, &v)| {
                let t = at(k * 100 + j);
                Sample {
                    tag,
                    value: Value::F64(v),
                    quality: Quality::Good,
                    source_time: t,
                    server_time: t,
                }
            })
            .collect();
        let batch = SampleBatch {
            tenant,
            device: device.device.id,
            samples,
        };
        actor
            .cast(thermacore::actors::alerts::AlertMsg::Batch(Arc::new(batch)))
            .expect("cast");
    }
    drain(&actor).await;

    let filter = AnomalyFilter {
        tags: vec![tag],
        from: at(0),
        to: at(20_000),
        min_confidence: None,
    };
    let recorded = p
        .store
        .anomalies(tenant, &filter, None, 100_000)
        .await
        .expect("detections");
    let found: HashSet<usize> = recorded
        .iter()
        .map(|r| ((r.anomaly.at.0 - t0) / 1_000_000) as usize)
        .collect();
    assert_eq!(found.len(), recorded.len(), "one detection per sample");
    let hits = found.intersection(&spikes).count() as f64;
    let (precision, recall) = (hits / found.len() as f64, hits / spikes.len() as f64);
    assert!(
        precision >= 0.9 && recall >= 0.98,
        "precision {precision:.3}, recall {recall:.3} ({} found, {} spikes)",
        found.len(),
        spikes.len()
    );
    for r in &recorded {
        let d = &r.anomaly.detection;
        assert_eq!((r.anomaly.rule, d.method), (rule.id, Method::ZScore));
        assert!(
            d.score > 4.0 && d.confidence > 0.0 && d.confidence < 1.0,
            "{d:?}"
        );
        assert!(d.value < d.lower || d.value > d.upper, "{d:?}");
    }

    // Each spike raises the alarm and the next value returns it to normal, waiting
    // for an acknowledgement; a spike after that raises it again.
    let transitions = history(&*p.store, &p, rule.id).await;
    let raised = transitions.iter().filter(|(_, to)| to == "unacked").count();
    assert!(
        raised as f64 >= 0.98 * spikes.len() as f64 && raised <= found.len(),
        "{raised} activations for {} detections",
        found.len()
    );
    assert_eq!(
        transitions[0],
        ("normal".to_string(), "unacked".to_string())
    );
    assert!(
        transitions
            .iter()
            .any(|(from, to)| from == "unacked" && to == "rtn_unacked")
    );
    actor.stop(None);
}
