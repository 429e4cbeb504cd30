//! Fixed bounds, Argo Rollouts / Flagger style: every check, the canary's error rate and p99 over
//! that check's window are compared with configured maxima; more than `failure_limit` failed checks
//! roll back.

use super::stats::quantile;
use super::{Decision, Judge, Sample};

#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdConfig {
    /// Fail a check when the canary's error rate is above this (Flagger's default success rate is 99%).
    pub max_error_rate: f64,
    /// Fail a check when the canary's p99 latency is above this many milliseconds (Flagger's default is 500).
    pub max_p99_ms: f64,
    /// Checks with fewer canary requests are skipped (Argo's "inconclusive").
    pub min_requests: u64,
    /// Failed checks tolerated before rolling back (Argo's `failureLimit`, default 0).
    pub failure_limit: u32,
    pub windows_per_check: u32,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        Self { max_error_rate: 0.01, max_p99_ms: 500.0, min_requests: 10, failure_limit: 0, windows_per_check: 1 }
    }
}

pub struct ThresholdJudge {
    cfg: ThresholdConfig,
    seen: u32,
    requests: u64,
    errors: u64,
    latencies: Vec<f64>,
    failures: u32,
    passes: u32,
    canary_total: u64,
}

impl ThresholdJudge {
    pub fn new(cfg: ThresholdConfig) -> Self {
        Self { cfg, seen: 0, requests: 0, errors: 0, latencies: Vec::new(), failures: 0, passes: 0, canary_total: 0 }
    }

    fn check(&mut self) -> Decision {
        let (requests, errors) = (std::mem::take(&mut self.requests), std::mem::take(&mut self.errors));
        let mut lat = std::mem::take(&mut self.latencies);
        if requests < self.cfg.min_requests.max(1) {
            return Decision::Continue;
        }
        let rate = errors as f64 / requests as f64;
        let failed = if rate > self.cfg.max_error_rate {
            Some(("error_rate", rate, self.cfg.max_error_rate))
        } else {
            quantile(&mut lat, 0.99)
                .filter(|p99| *p99 > self.cfg.max_p99_ms)
                .map(|p| ("latency_p99_ms", p, self.cfg.max_p99_ms))
        };
        let Some((metric, value, bound)) = failed else {
            self.passes += 1;
            return Decision::Continue;
        };
        self.failures += 1;
        if self.failures <= self.cfg.failure_limit {
            return Decision::Continue;
        }
        Decision::Fail {
            metric: metric.into(),
            condition: format!("> {bound}"),
            value,
            message: format!(
                "{metric}: {value:.4} > {bound} ({} failed checks, limit {})",
                self.failures, self.cfg.failure_limit
            ),
        }
    }
}

impl Judge for ThresholdJudge {
    fn observe(&mut self, canary: &Sample, _stable: &Sample) -> Decision {
        self.requests += canary.requests;
        self.errors += canary.errors;
        self.canary_total += canary.requests;
        self.latencies.extend_from_slice(&canary.latencies_ms);
        self.seen += 1;
        if self.seen.is_multiple_of(self.cfg.windows_per_check.max(1)) { self.check() } else { Decision::Continue }
    }

    fn finish(&mut self) -> Decision {
        if self.requests > 0 {
            let d = self.check();
            if d.is_final() {
                return d;
            }
        }
        if self.passes > 0 {
            Decision::Pass { message: format!("{} checks within bounds, {} failed", self.passes, self.failures) }
        } else {
            Decision::Inconclusive {
                message: "no check had enough canary traffic".into(),
                more_requests: Some(self.cfg.min_requests.saturating_sub(self.canary_total).max(1)),
            }
        }
    }

    fn name(&self) -> &'static str {
        "threshold"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_above_the_bound_after_the_failure_limit() {
        let cfg = ThresholdConfig { max_error_rate: 0.02, failure_limit: 1, ..Default::default() };
        let mut j = ThresholdJudge::new(cfg);
        let stable = Sample::new(900, 0);
        assert_eq!(j.observe(&Sample::new(100, 8), &stable), Decision::Continue);
        match j.observe(&Sample::new(100, 8), &stable) {
            Decision::Fail { message, value, .. } => {
                assert!(message.starts_with("error_rate: 0.0800 > 0.02"), "{message}");
                assert_eq!(value, 0.08);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn p99_bound_and_pass_and_inconclusive() {
        let mut j = ThresholdJudge::new(ThresholdConfig { max_p99_ms: 50.0, ..Default::default() });
        let slow = Sample::new(100, 0).with_latencies(vec![60.0; 100]);
        assert!(
            matches!(j.observe(&slow, &Sample::default()), Decision::Fail { ref metric, .. } if metric == "latency_p99_ms")
        );
        let mut j = ThresholdJudge::new(ThresholdConfig::default());
        j.observe(&Sample::new(100, 0), &Sample::default());
        assert!(matches!(j.finish(), Decision::Pass { .. }));
        let mut j = ThresholdJudge::new(ThresholdConfig::default());
        j.observe(&Sample::new(2, 0), &Sample::default());
        assert!(matches!(j.finish(), Decision::Inconclusive { .. }));
    }
}
