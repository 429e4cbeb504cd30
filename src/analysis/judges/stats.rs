//! Small numerical helpers shared by the judges.

/// Complementary error function, fractional error below 1.2e-7 (Chebyshev fit, Numerical Recipes `erfcc`).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// ln(Σ w_i e^{l_i}) for weights w_i > 0, computed without overflow.
pub fn log_mixture(weights: &[f64], logs: &[f64]) -> f64 {
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = weights.iter().zip(logs).map(|(w, l)| w * (l - max).exp()).sum();
    max + sum.ln()
}

/// Kullback-Leibler divergence between Bernoulli(p) and Bernoulli(q), in nats.
pub fn kl_bernoulli(p: f64, q: f64) -> f64 {
    let term = |a: f64, b: f64| if a <= 0.0 { 0.0 } else { a * (a / b).ln() };
    term(p, q) + term(1.0 - p, 1.0 - q)
}

/// The `q` quantile (0..=1) of `values` by the nearest-rank method; reorders `values`. None when empty.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    let (_, v, _) = values.select_nth_unstable_by(rank - 1, f64::total_cmp);
    Some(*v)
}

/// Result of a Mann-Whitney U test of `canary` against `stable`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U statistic of the canary: the number of (canary, stable) pairs where the canary is larger, ties counting half.
    pub u: f64,
    /// z score of U under the null (normal approximation, tie-corrected, continuity-corrected).
    pub z: f64,
    /// One-sided p-value for "canary larger".
    pub p_greater: f64,
    /// Two-sided p-value.
    pub p_two_sided: f64,
}

/// Mann-Whitney U with the normal approximation and tie correction. None if either side is empty.
pub fn mann_whitney(canary: &[f64], stable: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (canary.len(), stable.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> =
        canary.iter().map(|&v| (v, true)).chain(stable.iter().map(|&v| (v, false))).collect();
    all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let n = (n1 + n2) as f64;
    let (mut rank_sum, mut tie_term) = (0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        let avg_rank = (i + j + 1) as f64 / 2.0; // ranks i+1..=j
        rank_sum += avg_rank * all[i..j].iter().filter(|x| x.1).count() as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u = rank_sum - f1 * (f1 + 1.0) / 2.0;
    let mean = f1 * f2 / 2.0;
    let var = f1 * f2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)).max(1.0));
    if var <= 0.0 {
        return Some(MannWhitney { u, z: 0.0, p_greater: 1.0, p_two_sided: 1.0 });
    }
    let sd = var.sqrt();
    let diff = u - mean;
    let z = if diff.abs() <= 0.5 { 0.0 } else { (diff - 0.5 * diff.signum()) / sd };
    let p_greater = normal_sf(z);
    let p_two_sided = (2.0 * normal_sf(z.abs())).min(1.0);
    Some(MannWhitney { u, z, p_greater, p_two_sided })
}

/// A log-bucketed latency histogram (0.5% wide buckets from 0.01 ms to 10⁶ ms), cheap to update
/// and to query for quantiles, as a metrics backend would keep it.
#[derive(Debug, Clone)]
pub struct LogHistogram {
    counts: Vec<u64>,
    total: u64,
}

const HIST_MIN_MS: f64 = 0.01;
const HIST_GROWTH_LN: f64 = 0.005;
const HIST_BUCKETS: usize = 3_700;

impl Default for LogHistogram {
    fn default() -> Self {
        Self { counts: vec![0; HIST_BUCKETS], total: 0 }
    }
}

impl LogHistogram {
    fn bucket(v: f64) -> usize {
        if v.is_nan() || v <= HIST_MIN_MS {
            return 0;
        }
        (((v / HIST_MIN_MS).ln() / HIST_GROWTH_LN) as usize).min(HIST_BUCKETS - 1)
    }

    fn upper_edge(bucket: usize) -> f64 {
        HIST_MIN_MS * ((bucket + 1) as f64 * HIST_GROWTH_LN).exp()
    }

    pub fn add(&mut self, v: f64) {
        self.counts[Self::bucket(v)] += 1;
        self.total += 1;
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The upper edge of the bucket holding the value of rank `rank` (1-based): never below that value.
    pub fn value_at_rank(&self, rank: u64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = rank.clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::upper_edge(i));
            }
        }
        None
    }

    /// An upper confidence bound for the `q` quantile: the order statistic `z` standard errors
    /// above the nearest rank (normal approximation to the binomial), rounded up to a bucket edge.
    pub fn quantile_upper(&self, q: f64, z: f64) -> Option<f64> {
        let n = self.total as f64;
        let rank = (q * n + z * (n * q * (1.0 - q)).sqrt()).ceil() as u64;
        self.value_at_rank(rank)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_tail_matches_tables() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_sf(1.96) - 0.025).abs() < 1e-4);
        assert!((normal_sf(2.326) - 0.01).abs() < 1e-4);
        assert!((normal_sf(-1.645) - 0.95).abs() < 1e-4);
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_case() {
        // canary 3,4,5 vs stable 1,2: every canary larger → U = 6.
        let mw = mann_whitney(&[3.0, 4.0, 5.0], &[1.0, 2.0]).expect("non-empty");
        assert_eq!(mw.u, 6.0);
        assert!(mw.p_greater < 0.1 && mw.z > 0.0);
        // ties count half
        let mw = mann_whitney(&[1.0, 1.0], &[1.0, 1.0]).expect("non-empty");
        assert_eq!(mw.u, 2.0);
        assert_eq!(mw.p_two_sided, 1.0);
        assert!(mann_whitney(&[], &[1.0]).is_none());
    }

    #[test]
    fn mann_whitney_detects_a_shift_and_not_its_absence() {
        let a: Vec<f64> = (0..200).map(f64::from).collect();
        let b: Vec<f64> = (0..200).map(|i| f64::from(i) + 40.0).collect();
        assert!(mann_whitney(&b, &a).expect("data").p_greater < 1e-6);
        assert!(mann_whitney(&a, &b).expect("data").p_greater > 0.99);
        assert!(mann_whitney(&a, &a).expect("data").p_two_sided > 0.9);
    }

    #[test]
    fn histogram_quantiles_are_close_and_never_below() {
        let mut h = LogHistogram::default();
        let mut v: Vec<f64> = (1..=10_000).map(|i| f64::from(i) / 100.0).collect();
        for x in &v {
            h.add(*x);
        }
        let exact = quantile(&mut v, 0.99).expect("data");
        let approx = h.quantile_upper(0.99, 0.0).expect("data");
        assert!(approx >= exact && approx <= exact * 1.006, "{exact} {approx}");
        assert!(h.quantile_upper(0.99, 10.0).expect("data") > approx);
    }

    #[test]
    fn log_mixture_is_stable() {
        let l = log_mixture(&[0.5, 0.5], &[1000.0, 1000.0]);
        assert!((l - 1000.0).abs() < 1e-9);
        assert!(kl_bernoulli(0.1, 0.1).abs() < 1e-12 && kl_bernoulli(0.1, 0.2) > 0.0);
    }
}
