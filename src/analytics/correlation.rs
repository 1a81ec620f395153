//! Pearson correlation between tags, over their bucket averages: two tags are
//! compared on the buckets where both have a value, so a tag's gaps do not count
//! against it, and different sampling rates compare fairly.

use std::collections::HashMap;

use crate::domain::TagId;
use crate::storage::Bucket;

/// Fewer common buckets than this give no coefficient.
pub const MIN_COMMON: usize = 3;

/// The correlation matrix of `tags` (in that order): `matrix[i][j]` is the Pearson
/// coefficient of tags i and j over their common buckets (`None` with fewer than
/// [`MIN_COMMON`] of them or a constant series), `common[i][j]` how many there were.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    pub matrix: Vec<Vec<Option<f64>>>,
    pub common: Vec<Vec<u64>>,
}

pub fn correlate(tags: &[TagId], buckets: &[Bucket]) -> Correlation {
    let slot: HashMap<TagId, usize> = tags.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    // Per tag: bucket start -> average.
    let mut series: Vec<HashMap<i64, f64>> = vec![HashMap::new(); tags.len()];
    for b in buckets {
        if let (Some(&i), Some(avg)) = (slot.get(&b.tag), b.avg().filter(|a| a.is_finite())) {
            series[i].insert(b.start.0, avg);
        }
    }
    let n = tags.len();
    let mut matrix = vec![vec![None; n]; n];
    let mut common = vec![vec![0u64; n]; n];
    for i in 0..n {
        for j in i..n {
            let (a, b) = (&series[i], &series[j]);
            let pairs: Vec<(f64, f64)> = a
                .iter()
                .filter_map(|(start, x)| b.get(start).map(|y| (*x, *y)))
                .collect();
            let r = pearson(&pairs);
            matrix[i][j] = r;
            matrix[j][i] = r;
            common[i][j] = pairs.len() as u64;
            common[j][i] = pairs.len() as u64;
        }
    }
    Correlation { matrix, common }
}

/// Pearson's r of the pairs, by two passes (mean first) for accuracy.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < MIN_COMMON {
        return None;
    }
    let n = pairs.len() as f64;
    let mx = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        let (dx, dy) = (x - mx, y - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;

    fn bucket(tag: i64, start: i64, avg: f64) -> Bucket {
        Bucket::new(TagId(tag), Timestamp(start), 1, 0, [avg; 5])
    }

    #[test]
    fn linear_relations_give_plus_and_minus_one_and_gaps_are_skipped() {
        let mut b = Vec::new();
        for k in 0..50 {
            let x = (k as f64 * 0.3).sin();
            b.push(bucket(1, k, x));
            b.push(bucket(2, k, 3.0 * x + 7.0));
            b.push(bucket(3, k, -x));
            // tag 4 misses every other bucket; where present it follows tag 1
            if k % 2 == 0 {
                b.push(bucket(4, k, 2.0 * x));
            }
            b.push(bucket(5, k, 1.0));
        }
        let tags: Vec<TagId> = (1..=5).map(TagId).collect();
        let c = correlate(&tags, &b);
        let r = |i: usize, j: usize| c.matrix[i][j].unwrap_or(f64::NAN);
        assert!((r(0, 1) - 1.0).abs() < 1e-12);
        assert!((r(0, 2) + 1.0).abs() < 1e-12);
        assert!((r(0, 3) - 1.0).abs() < 1e-12);
        assert_eq!(c.common[0][3], 25);
        assert_eq!(c.common[0][0], 50);
        assert!((r(1, 1) - 1.0).abs() < 1e-12, "a tag with itself");
        assert_eq!(c.matrix[0][4], None, "a constant series has no coefficient");
        let transposed: Vec<Vec<Option<f64>>> = (0..5)
            .map(|i| c.matrix.iter().map(|row| row[i]).collect())
            .collect();
        assert_eq!(c.matrix, transposed, "symmetric");
    }

    #[test]
    fn pearson_matches_the_textbook_value() {
        // x = 1..5, y = 2, 4, 5, 4, 5: r = 0.7745966692414834
        let pairs = [(1.0, 2.0), (2.0, 4.0), (3.0, 5.0), (4.0, 4.0), (5.0, 5.0)];
        let r = pearson(&pairs).unwrap_or(f64::NAN);
        assert!((r - 0.774_596_669_241_483_4).abs() < 1e-12, "{r}");
        assert_eq!(pearson(&pairs[..2]), None);
    }
}
