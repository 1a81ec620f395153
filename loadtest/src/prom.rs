//! Reading the server's `/metrics` (Prometheus text): counter sums and quantiles of a
//! histogram between two scrapes.

/// The series of `name` (exactly, with or without labels) whose labels contain
/// `labels`, as (label text, value).
fn series<'a>(
    text: &'a str,
    name: &'a str,
    labels: &'a str,
) -> impl Iterator<Item = (&'a str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(move |l| {
            let rest = l.strip_prefix(name)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            let (head, value) = rest.rsplit_once(' ')?;
            Some((head, value.parse::<f64>().ok()?))
        })
        .filter(move |(head, _)| head.contains(labels))
}

/// Sum of a metric's series whose labels contain `labels` (e.g. `tenant="a"`).
pub fn sum(text: &str, name: &str, labels: &str) -> f64 {
    series(text, name, labels).map(|(_, v)| v).sum()
}

/// The cumulative buckets of histogram `name` (series matching `labels`), by upper
/// bound, summed over series.
pub fn buckets(text: &str, name: &str, labels: &str) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (head, v) in series(text, &bucket, labels) {
        let Some(le) = head
            .split_once("le=\"")
            .and_then(|(_, r)| r.split_once('"'))
            .map(|(le, _)| le)
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse() {
                Ok(b) => b,
                Err(_) => continue,
            }
        };
        match out.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, c)) => *c += v,
            None => out.push((bound, v)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Quantile `q` of what a histogram recorded between two scrapes (`before`, `after`:
/// [`buckets`]), interpolated linearly inside the bucket as Prometheus's
/// `histogram_quantile` does; the largest finite bound when it falls in `+Inf`.
/// `None` when nothing was recorded.
pub fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(b, c)| {
            let c0 = before
                .iter()
                .find(|(b0, _)| b0 == b)
                .map_or(0.0, |(_, c0)| *c0);
            (*b, c - c0)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (bound, cum) in &delta {
        if *cum >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = cum - lower.1;
            let frac = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * frac);
        }
        lower = (*bound, *cum);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE x histogram\n\
        x_bucket{protocol=\"modbus\",le=\"0.001\"} 10\n\
        x_bucket{protocol=\"modbus\",le=\"0.01\"} 90\n\
        x_bucket{protocol=\"modbus\",le=\"+Inf\"} 100\n\
        x_sum{protocol=\"modbus\"} 0.5\n\
        x_count{protocol=\"modbus\"} 100\n\
        xy_total{protocol=\"modbus\"} 7\n\
        x_total{protocol=\"modbus\"} 3\n\
        x_total{protocol=\"sim\"} 4\n";

    #[test]
    fn sums_match_the_exact_name_and_quantiles_interpolate() {
        assert_eq!(sum(TEXT, "x_total", "protocol=\"modbus\""), 3.0);
        assert_eq!(sum(TEXT, "x_total", ""), 7.0);
        let b = buckets(TEXT, "x", "protocol=\"modbus\"");
        assert_eq!(b.len(), 3);
        let p50 = quantile(&[], &b, 0.5).expect("p50");
        assert!((p50 - 0.0055).abs() < 1e-9, "{p50}");
        assert_eq!(quantile(&[], &b, 0.99), Some(0.01));
        assert_eq!(quantile(&b, &b, 0.5), None);
    }
}
