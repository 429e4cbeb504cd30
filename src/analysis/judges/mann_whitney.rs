//! Kayenta-style judge: at the end of every interval, each metric is compared canary-vs-stable
//! with a Mann-Whitney U test (normal approximation, tie-corrected) over the data since the start;
//! a metric fails when the difference is significant at the configured confidence, the canary is
//! worse, and the effect (ratio of medians, or of means for error rates) exceeds the tolerance.
//! Metrics are scored in weighted groups: below the marginal score rolls back at any interval; at
//! the end the score must reach the pass score.
//!
//! Metrics: `error_rate` (the series of per-window error rates, as Kayenta compares time series)
//! and `latency_ms` (per-request latencies, reservoir-sampled to at most `max_samples` per version).

use super::stats::{mann_whitney, quantile};
use super::{Decision, Judge, Sample};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alternative {
    /// Kayenta's test: significant in either direction, then only a worse canary fails.
    TwoSided,
    /// One-sided test for "canary worse".
    CanaryWorse,
}

/// What to do with a metric that has no data on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NanStrategy {
    /// Leave the metric out of the score.
    Remove,
    /// Count it as zeros on the missing side (so it usually passes).
    Replace,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MannWhitneyConfig {
    /// Kayenta's default is 98%.
    pub confidence: f64,
    pub alternative: Alternative,
    /// A significant difference fails only when canary/stable exceeds 1 + tolerance.
    pub effect_tolerance: f64,
    pub nan_strategy: NanStrategy,
    /// Group weights; the metrics are `error_rate` in `errors` and `latency_ms` in `latency`.
    pub error_weight: f64,
    pub latency_weight: f64,
    /// Score (0–100) at or below which any interval rolls back.
    pub marginal_score: f64,
    /// Score (0–100) the final interval must reach to pass.
    pub pass_score: f64,
    pub windows_per_interval: u32,
    pub max_samples: usize,
}

impl Default for MannWhitneyConfig {
    fn default() -> Self {
        Self {
            confidence: 0.98,
            alternative: Alternative::TwoSided,
            effect_tolerance: 0.0,
            nan_strategy: NanStrategy::Remove,
            error_weight: 50.0,
            latency_weight: 50.0,
            marginal_score: 75.0,
            pass_score: 95.0,
            windows_per_interval: 1,
            max_samples: 4_000,
        }
    }
}

/// A uniform reservoir sample with a fixed-seed generator (splitmix64), so runs are reproducible.
#[derive(Debug, Default)]
struct Reservoir {
    values: Vec<f64>,
    seen: u64,
    state: u64,
}

impl Reservoir {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn add(&mut self, v: f64, cap: usize) {
        self.seen += 1;
        if self.values.len() < cap {
            self.values.push(v);
        } else {
            let j = (self.next() % self.seen) as usize;
            if j < cap {
                self.values[j] = v;
            }
        }
    }
}

/// A failed metric: its name, the canary's value and the message.
type Failure = (String, f64, String);

enum Outcome {
    Pass,
    Fail { value: f64, message: String },
    NoData,
}

pub struct MannWhitneyJudge {
    cfg: MannWhitneyConfig,
    seen: u32,
    pending: bool,
    canary_rates: Vec<f64>,
    stable_rates: Vec<f64>,
    canary_lat: Reservoir,
    stable_lat: Reservoir,
    canary_requests: u64,
    intervals: u32,
}

impl MannWhitneyJudge {
    pub fn new(cfg: MannWhitneyConfig) -> Self {
        Self {
            cfg,
            seen: 0,
            pending: false,
            canary_rates: Vec::new(),
            stable_rates: Vec::new(),
            canary_lat: Reservoir { state: 1, ..Default::default() },
            stable_lat: Reservoir { state: 2, ..Default::default() },
            canary_requests: 0,
            intervals: 0,
        }
    }

    fn compare(&self, metric: &str, canary: &[f64], stable: &[f64], use_mean: bool) -> Outcome {
        let zeros = [0.0];
        let (canary, stable) = match (canary.is_empty(), stable.is_empty(), self.cfg.nan_strategy) {
            (false, false, _) => (canary, stable),
            (_, _, NanStrategy::Remove) | (true, true, NanStrategy::Replace) => return Outcome::NoData,
            (true, false, NanStrategy::Replace) => (&zeros[..], stable),
            (false, true, NanStrategy::Replace) => (canary, &zeros[..]),
        };
        let Some(mw) = mann_whitney(canary, stable) else { return Outcome::NoData };
        let alpha = 1.0 - self.cfg.confidence;
        let (p, worse) = match self.cfg.alternative {
            Alternative::TwoSided => (mw.p_two_sided, mw.z > 0.0),
            Alternative::CanaryWorse => (mw.p_greater, mw.z > 0.0),
        };
        let centre = |v: &[f64]| {
            if use_mean {
                v.iter().sum::<f64>() / v.len() as f64
            } else {
                quantile(&mut v.to_vec(), 0.5).unwrap_or(0.0)
            }
        };
        let (c, s) = (centre(canary), centre(stable));
        let effect = if s > 0.0 {
            c / s
        } else if c > 0.0 {
            f64::INFINITY
        } else {
            1.0
        };
        let limit = 1.0 + self.cfg.effect_tolerance;
        if p < alpha && worse && effect > limit {
            let what = if use_mean { "mean" } else { "median" };
            Outcome::Fail {
                value: c,
                message: format!(
                    "{metric}: canary {what} {c:.4} > stable {s:.4} (×{effect:.2} > ×{limit:.2}; Mann-Whitney p = {p:.2e} < {alpha:.2})"
                ),
            }
        } else {
            Outcome::Pass
        }
    }

    /// The weighted score and the failures, or None when no metric has data.
    fn score(&self) -> Option<(f64, Vec<Failure>)> {
        let metrics = [
            (
                "error_rate",
                self.cfg.error_weight,
                self.compare("error_rate", &self.canary_rates, &self.stable_rates, true),
            ),
            (
                "latency_ms",
                self.cfg.latency_weight,
                self.compare("latency_ms", &self.canary_lat.values, &self.stable_lat.values, false),
            ),
        ];
        let (mut total_weight, mut score, mut failures) = (0.0, 0.0, Vec::new());
        for (metric, weight, outcome) in metrics {
            match outcome {
                Outcome::NoData => {}
                Outcome::Pass => {
                    total_weight += weight;
                    score += weight;
                }
                Outcome::Fail { value, message } => {
                    total_weight += weight;
                    failures.push((metric.to_string(), value, message));
                }
            }
        }
        (total_weight > 0.0).then(|| (100.0 * score / total_weight, failures))
    }

    fn evaluate(&mut self, last: bool) -> Decision {
        self.pending = false;
        self.intervals += 1;
        let Some((score, failures)) = self.score() else {
            return if last {
                Decision::Inconclusive { message: "no metric had data on both sides".into(), more_requests: None }
            } else {
                Decision::Continue
            };
        };
        let bound = if last { self.cfg.pass_score } else { self.cfg.marginal_score };
        let failing = if last { score < bound } else { score <= bound };
        if failing {
            let (metric, value, message) =
                failures.into_iter().next().unwrap_or_else(|| ("score".into(), score, "score".into()));
            return Decision::Fail {
                metric,
                condition: format!("score {score:.0} {} {bound:.0}", if last { "<" } else { "<=" }),
                value,
                message: format!(
                    "{message}; score {score:.0} (pass {:.0}, marginal {:.0})",
                    self.cfg.pass_score, self.cfg.marginal_score
                ),
            };
        }
        if last {
            Decision::Pass {
                message: format!("score {score:.0} ≥ {:.0} after {} intervals", self.cfg.pass_score, self.intervals),
            }
        } else {
            Decision::Continue
        }
    }
}

impl Judge for MannWhitneyJudge {
    fn observe(&mut self, canary: &Sample, stable: &Sample) -> Decision {
        let cap = self.cfg.max_samples;
        if canary.requests > 0 {
            self.canary_rates.push(canary.errors as f64 / canary.requests as f64);
        }
        if stable.requests > 0 {
            self.stable_rates.push(stable.errors as f64 / stable.requests as f64);
        }
        for &v in &canary.latencies_ms {
            self.canary_lat.add(v, cap);
        }
        for &v in &stable.latencies_ms {
            self.stable_lat.add(v, cap);
        }
        self.canary_requests += canary.requests;
        self.seen += 1;
        self.pending = true;
        if self.seen.is_multiple_of(self.cfg.windows_per_interval.max(1)) {
            self.evaluate(false)
        } else {
            Decision::Continue
        }
    }

    fn finish(&mut self) -> Decision {
        if self.canary_requests == 0 {
            return Decision::Inconclusive { message: "no canary traffic".into(), more_requests: None };
        }
        self.evaluate(true)
    }

    fn name(&self) -> &'static str {
        "mann-whitney"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(base: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| base + (i % 17) as f64).collect()
    }

    #[test]
    fn slower_canary_fails_on_latency_and_names_it() {
        let mut j = MannWhitneyJudge::new(MannWhitneyConfig::default());
        let d = j.observe(
            &Sample::new(200, 0).with_latencies(lat(30.0, 200)),
            &Sample::new(900, 0).with_latencies(lat(20.0, 900)),
        );
        match d {
            Decision::Fail { metric, message, .. } => {
                assert_eq!(metric, "latency_ms");
                assert!(message.starts_with("latency_ms: canary median"), "{message}");
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn effect_tolerance_and_identical_versions_pass() {
        let cfg = MannWhitneyConfig { effect_tolerance: 1.0, ..Default::default() };
        let mut j = MannWhitneyJudge::new(cfg);
        j.observe(
            &Sample::new(200, 0).with_latencies(lat(30.0, 200)),
            &Sample::new(900, 0).with_latencies(lat(20.0, 900)),
        );
        assert!(matches!(j.finish(), Decision::Pass { .. }));
        let mut j = MannWhitneyJudge::new(MannWhitneyConfig::default());
        for _ in 0..10 {
            j.observe(
                &Sample::new(100, 1).with_latencies(lat(20.0, 100)),
                &Sample::new(900, 9).with_latencies(lat(20.0, 900)),
            );
        }
        assert!(matches!(j.finish(), Decision::Pass { .. }));
    }

    #[test]
    fn error_rate_series_fail_and_nan_strategy() {
        let mut j = MannWhitneyJudge::new(MannWhitneyConfig::default());
        let mut last = Decision::Continue;
        for i in 0..20 {
            last = j.observe(&Sample::new(100, 10 + i % 3), &Sample::new(900, 9 + i % 2));
            if last.is_final() {
                break;
            }
        }
        assert!(matches!(last, Decision::Fail { ref metric, .. } if metric == "error_rate"), "{last:?}");
        // latency missing on the canary side: removed from the score, errors alone decide.
        let mut j = MannWhitneyJudge::new(MannWhitneyConfig::default());
        j.observe(&Sample::new(100, 1), &Sample::new(900, 9).with_latencies(lat(20.0, 900)));
        assert!(matches!(j.finish(), Decision::Pass { .. }));
    }
}
