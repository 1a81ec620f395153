use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn spec(method: Method, window: u32, threshold: f64) -> DetectorSpec {
    DetectorSpec {
        method,
        window,
        threshold,
    }
}

/// Standard normal by Box-Muller.
fn gauss(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// A plant signal: 50 ± 2 (Gaussian) riding a slow swing of ±5 over 2,000 samples,
/// with `spikes` spikes of 8 to 12 standard deviations, up or down, at least 100
/// samples apart. Returns the series and where the spikes are.
fn series(seed: u64, n: usize, spikes: usize) -> (Vec<f64>, HashSet<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut xs: Vec<f64> = (0..n)
        .map(|i| {
            let swing = 5.0 * (i as f64 * 2.0 * std::f64::consts::PI / 2000.0).sin();
            50.0 + swing + 2.0 * gauss(&mut rng)
        })
        .collect();
    let mut at = HashSet::new();
    let gap = n / spikes;
    for k in 0..spikes {
        // Past the warm-up, somewhere in the k-th stretch, 100 from its neighbours.
        let i = 200 + k * gap + rng.random_range(0..gap.saturating_sub(300).max(1));
        let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        xs[i] += sign * 2.0 * rng.random_range(8.0..12.0);
        at.insert(i);
    }
    (xs, at)
}

fn detect(spec: DetectorSpec, xs: &[f64]) -> Vec<(usize, Detection)> {
    let mut d = Detector::new(spec);
    xs.iter()
        .enumerate()
        .filter_map(|(i, &x)| d.push(x).map(|det| (i, det)))
        .collect()
}

/// (precision, recall) of the detections against the known anomalies.
fn score(found: &[(usize, Detection)], truth: &HashSet<usize>) -> (f64, f64) {
    let hits = found.iter().filter(|(i, _)| truth.contains(i)).count() as f64;
    (hits / found.len() as f64, hits / truth.len() as f64)
}

#[test]
fn each_method_finds_the_spikes_and_little_else() {
    for (spec, min_precision, min_recall) in [
        (spec(Method::ZScore, 60, 4.0), 0.9, 0.98),
        (spec(Method::Iqr, 60, 3.0), 0.9, 0.98),
        // 8 °C from the 30-sample average is 4 of the noise's standard deviations.
        (spec(Method::MovingAverage, 30, 8.0), 0.9, 0.98),
    ] {
        for seed in [1, 2, 3] {
            let (xs, truth) = series(seed, 50_000, 200);
            let found = detect(spec, &xs);
            let (precision, recall) = score(&found, &truth);
            assert!(
                precision >= min_precision && recall >= min_recall,
                "{} seed {seed}: precision {precision:.3}, recall {recall:.3} ({} found, {} true)",
                spec.method,
                found.len(),
                truth.len()
            );
        }
    }
}

#[test]
fn a_tighter_threshold_trades_precision_for_recall() {
    // Spikes of 8 to 12 σ: a z-score threshold of 2 flags them all and much noise.
    let (xs, truth) = series(7, 50_000, 200);
    let (loose_p, loose_r) = score(&detect(spec(Method::ZScore, 60, 2.0), &xs), &truth);
    let (strict_p, strict_r) = score(&detect(spec(Method::ZScore, 60, 4.0), &xs), &truth);
    assert!(loose_p < 0.2, "precision at 2σ: {loose_p}");
    assert!(strict_p > loose_p);
    assert!(loose_r >= strict_r);
}

/// Mean, sample standard deviation, and quartiles of a window, recomputed.
fn naive(window: &[f64]) -> (f64, f64, f64, f64, f64) {
    let n = window.len() as f64;
    let mean = window.iter().sum::<f64>() / n;
    let var = window.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let mut sorted = window.to_vec();
    sorted.sort_by(f64::total_cmp);
    (
        mean,
        var.sqrt(),
        quantile(&sorted, 0.25),
        quantile(&sorted, 0.5),
        quantile(&sorted, 0.75),
    )
}

#[test]
fn rolling_statistics_equal_recomputation_over_the_window() {
    // A tiny threshold makes nearly every value a detection, exposing the window's
    // statistics; a large offset tests the shifted sums.
    let mut rng = StdRng::seed_from_u64(11);
    let xs: Vec<f64> = (0..5_000).map(|_| 1.0e6 + gauss(&mut rng)).collect();
    let w = 50;
    for method in Method::ALL {
        let mut d = Detector::new(spec(method, w as u32, 1e-6));
        let mut compared = 0;
        for (i, &x) in xs.iter().enumerate() {
            let Some(det) = d.push(x) else { continue };
            let (mean, std, q1, median, q3) = naive(&xs[i - w..i]);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
            match method {
                Method::ZScore => {
                    assert!(close(det.expected, mean), "{i}: {} vs {mean}", det.expected);
                    assert!((det.score - (x - mean).abs() / std).abs() < 1e-6, "{i}");
                }
                Method::Iqr => {
                    assert_eq!(det.expected, median, "{i}");
                    assert!(close(det.lower, q1 - 1e-6 * (q3 - q1)), "{i}");
                }
                Method::MovingAverage => {
                    assert!(close(det.expected, mean), "{i}");
                    assert!((det.score - (x - mean).abs()).abs() < 1e-6, "{i}");
                }
            }
            compared += 1;
        }
        // Half the values lie between the quartiles, where the IQR method scores 0.
        let want = if method == Method::Iqr { 2_000 } else { 4_000 };
        assert!(compared > want, "{method}: {compared} compared");
    }
}

#[test]
fn nothing_is_judged_while_the_window_fills() {
    let mut d = Detector::new(spec(Method::ZScore, 10, 3.0));
    for i in 0..10 {
        // Wildly different values: no window yet to call them anomalous.
        assert_eq!(d.push(if i % 2 == 0 { 0.0 } else { 1e6 }), None);
    }
    let mut d = Detector::new(spec(Method::ZScore, 10, 3.0));
    for _ in 0..10 {
        d.push(5.0 + 0.1 * (d.window.len() as f64 % 2.0));
    }
    assert!(d.push(500.0).is_some(), "the eleventh value is judged");
}

#[test]
fn a_flat_window_scores_any_change_at_the_cap() {
    for method in [Method::ZScore, Method::Iqr] {
        let mut d = Detector::new(spec(method, 8, 3.0));
        for _ in 0..8 {
            d.push(20.0);
        }
        assert_eq!(d.push(20.0), None, "{method}: the same value is normal");
        let det = d.push(20.5).expect("a change after a flat window");
        assert_eq!(det.score, MAX_SCORE);
        assert!(det.confidence > 0.999_999 && det.confidence < 1.0);
        assert!(det.lower.is_finite() && det.upper.is_finite());
    }
}

#[test]
fn confidence_is_half_at_twice_the_threshold() {
    let mut d = Detector::new(spec(Method::MovingAverage, 4, 5.0));
    for x in [10.0, 10.0, 10.0, 10.0] {
        d.push(x);
    }
    let det = d.push(20.0).expect("10 from the average, threshold 5");
    assert_eq!(det.score, 10.0);
    assert_eq!(det.confidence, 0.5);
    assert_eq!((det.lower, det.expected, det.upper), (5.0, 10.0, 15.0));
    assert_eq!(d.push(14.9), None, "inside the band (average now 12.5)");
}

#[test]
fn non_finite_values_are_ignored() {
    let mut d = Detector::new(spec(Method::ZScore, 4, 3.0));
    for x in [1.0, 2.0, f64::NAN, 1.0, f64::INFINITY, 2.0] {
        assert_eq!(d.push(x), None);
    }
    assert_eq!(d.window.len(), 4);
    // Finite values whose sums overflow: judged as nothing, never a detection of
    // infinities.
    let mut d = Detector::new(spec(Method::MovingAverage, 4, 1.0));
    for x in [f64::MAX, -f64::MAX, f64::MAX, -f64::MAX, 0.0] {
        assert_eq!(d.push(x), None);
    }
}

#[test]
fn specs_out_of_range_are_refused() {
    for (window, threshold, want) in [
        (0, 3.0, DetectorError::Window(0)),
        (3, 3.0, DetectorError::Window(3)),
        (10_001, 3.0, DetectorError::Window(10_001)),
        (60, 0.0, DetectorError::Threshold(0.0)),
        (60, -1.0, DetectorError::Threshold(-1.0)),
    ] {
        assert_eq!(
            spec(Method::ZScore, window, threshold).check(),
            Err(want.clone())
        );
    }
    assert!(matches!(
        spec(Method::Iqr, 60, f64::NAN).check(),
        Err(DetectorError::Threshold(_))
    ));
    assert_eq!(spec(Method::Iqr, 4, 1.5).check(), Ok(()));
    assert_eq!(
        "median".parse::<Method>().unwrap_err(),
        "unknown anomaly method `median` (expected zscore, iqr or moving_average)"
    );
}

#[test]
fn quantiles_interpolate_between_ranks() {
    let v = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(quantile(&v, 0.25), 1.75);
    assert_eq!(quantile(&v, 0.5), 2.5);
    assert_eq!(quantile(&v, 0.75), 3.25);
    assert_eq!(quantile(&[7.0], 0.9), 7.0);
    assert!(quantile(&[], 0.5).is_nan());
}
