use super::*;
use crate::domain::{TagId, Value};

const SEC: i64 = 1_000_000;

fn sample(at_s: f64, v: Value, quality: Quality) -> Sample {
    let t = Timestamp((at_s * SEC as f64) as i64);
    Sample {
        tag: TagId(1),
        value: v,
        quality,
        source_time: t,
        server_time: t,
    }
}

fn spec(to_s: i64, period_s: Option<i64>) -> StatsSpec {
    StatsSpec {
        from: Timestamp(0),
        to: Timestamp(to_s * SEC),
        expected_period_us: period_s.map(|p| p * SEC),
        stale_after_us: 5 * SEC,
    }
}

fn run(spec: StatsSpec, samples: &[Sample]) -> TagStatistics {
    let mut acc = Accumulator::new(spec);
    for s in samples {
        acc.add(s);
    }
    acc.finish()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
}

#[test]
fn numbers_match_a_naive_recomputation() {
    // A ramp with noise: 0.5 per second plus a deterministic wobble.
    let samples: Vec<Sample> = (0..1000)
        .map(|i| {
            let v = 0.5 * i as f64 + ((i * 7919) % 13) as f64 - 6.0;
            sample(i as f64, Value::F64(v), Quality::Good)
        })
        .collect();
    let st = run(spec(1000, Some(1)), &samples);
    let v: Vec<f64> = samples.iter().filter_map(|s| s.value.as_f64()).collect();
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let mut sorted = v.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| crate::alarms::anomaly::quantile(&sorted, p);
    assert_eq!(st.count, 1000);
    assert_eq!(st.numeric, 1000);
    assert!(close(st.mean, mean), "{st:?}");
    assert!(close(st.stddev, var.sqrt()), "{st:?}");
    assert!(close(st.min, sorted[0]) && close(st.max, sorted[999]));
    assert!(close(st.p50, q(0.5)) && close(st.p95, q(0.95)) && close(st.p99, q(0.99)));
    // Least squares by the textbook formula, per hour.
    let t: Vec<f64> = (0..1000).map(|i| i as f64).collect();
    let mt = t.iter().sum::<f64>() / n;
    let cov: f64 = t.iter().zip(&v).map(|(a, b)| (a - mt) * (b - mean)).sum();
    let vt: f64 = t.iter().map(|a| (a - mt).powi(2)).sum();
    assert!(close(st.slope_per_hour, cov / vt * 3600.0), "{st:?}");
    assert!((st.slope_per_hour.unwrap_or(0.0) / 3600.0 - 0.5).abs() < 0.01);
    // Sampled every second for the whole range: nothing missing, nothing stale.
    assert_eq!(st.quality.gaps, 0);
    assert_eq!(st.quality.stale_us, 0);
    assert!((st.quality.score - 1.0).abs() < 1e-12, "{:?}", st.quality);
}

#[test]
fn bad_samples_and_text_are_counted_but_not_in_the_numbers() {
    let samples = [
        sample(0.0, Value::F64(10.0), Quality::Good),
        sample(
            1.0,
            Value::F64(1e9),
            Quality::Bad(QualityReason::DeviceError),
        ),
        sample(2.0, Value::Str("on".into()), Quality::Good),
        sample(
            3.0,
            Value::Bool(true),
            Quality::Uncertain(QualityReason::Stale),
        ),
        sample(4.0, Value::F64(f64::NAN), Quality::Good),
    ];
    let st = run(spec(5, Some(1)), &samples);
    assert_eq!((st.count, st.good, st.uncertain, st.bad), (5, 3, 1, 1));
    assert_eq!(st.numeric, 2, "10 and true (1); not Bad, text or NaN");
    assert_eq!(st.max, Some(10.0));
    assert_eq!(st.mean, Some(5.5));
    assert!((st.quality.good_share - 0.6).abs() < 1e-12);
}

#[test]
fn gaps_stale_and_comm_lost_time_are_measured() {
    // Every second for 0..10 s, nothing from 10 to 30 s, a comm-loss sample at 30 s,
    // good again from 40 s to 59 s, range 0..60 s.
    let mut samples: Vec<Sample> = (0..10)
        .map(|i| sample(i as f64, Value::F64(1.0), Quality::Good))
        .collect();
    samples.push(sample(
        30.0,
        Value::F64(0.0),
        Quality::Bad(QualityReason::CommLost),
    ));
    samples.extend((40..60).map(|i| sample(i as f64, Value::F64(2.0), Quality::Good)));
    let st = run(spec(60, Some(1)), &samples);
    // Gaps: 9 → 30 (21 s, 20 s missing) and 30 → 40 (10 s, 9 s missing).
    assert_eq!(st.quality.gaps, 2);
    assert_eq!(st.quality.missing_us, 29 * SEC);
    assert!((st.quality.coverage - (1.0 - 29.0 / 60.0)).abs() < 1e-12);
    // Stale beyond 5 s: 16 s and 5 s.
    assert_eq!(st.quality.stale_us, 21 * SEC);
    // Lost from the comm-loss sample to the next one.
    assert_eq!(st.quality.comm_lost_us, 10 * SEC);
    // Offline: the stale 16 s before the loss, and the 10 s lost.
    assert_eq!(st.quality.offline_us, 26 * SEC);
    let expected = (30.0 / 31.0) * (31.0 / 60.0) * (1.0 - 21.0 / 60.0);
    assert!(
        (st.quality.score - expected).abs() < 1e-12,
        "{:?}",
        st.quality
    );
}

#[test]
fn the_period_defaults_to_the_median_interval_and_an_empty_tag_scores_zero() {
    let samples: Vec<Sample> = (0..30)
        .map(|i| sample(i as f64 * 2.0, Value::I64(i), Quality::Good))
        .collect();
    let st = run(spec(60, None), &samples);
    assert_eq!(st.quality.expected_period_us, Some(2 * SEC));
    assert_eq!(st.quality.gaps, 0);
    let empty = run(spec(60, None), &[]);
    assert_eq!(empty.count, 0);
    assert_eq!(empty.mean, None);
    assert_eq!(empty.p50, None);
    assert_eq!(empty.slope_per_hour, None);
    assert_eq!(empty.quality.coverage, 0.0);
    assert_eq!(empty.quality.score, 0.0);
    let same_instant = [
        sample(3.0, Value::I64(1), Quality::Good),
        sample(3.0, Value::I64(2), Quality::Good),
    ];
    let st = run(spec(60, None), &same_instant);
    assert_eq!(
        st.quality.expected_period_us, None,
        "no interval to judge by"
    );
    assert_eq!(st.quality.coverage, 0.0);
    let one = run(spec(60, None), &samples[..1]);
    assert_eq!(one.p99, Some(0.0));
    assert_eq!(one.stddev, Some(0.0));
    assert_eq!(one.slope_per_hour, None);
}

#[test]
fn percentiles_interpolate_like_percentile_cont() {
    let mut v = vec![4.0, 1.0, 3.0, 2.0];
    assert_eq!(
        percentiles(&mut v, [0.0, 0.5, 1.0, 0.25]),
        [Some(1.0), Some(2.5), Some(4.0), Some(1.75)]
    );
    assert_eq!(percentiles(&mut [], [0.5]), [None]);
}
