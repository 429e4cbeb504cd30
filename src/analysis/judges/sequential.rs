//! shipdeck's default judge: always-valid sequential tests that decide as soon as the evidence is
//! enough, bound false rollbacks whenever they are looked at, and end *inconclusive* rather than
//! pass a canary they cannot judge.
//!
//! **Errors.** Given the total errors `n` of a window, the canary's share is Binomial(n, p) with
//! `p = r·c / (r·c + s)` (c, s: canary and stable requests, r: the ratio of their error rates),
//! whatever stable's rate is. For each r in a grid the product over windows of
//! `P(x | r) / P(x | r = 1)` is a nonnegative martingale under r = 1 (a supermartingale under r < 1),
//! and so is any mixture of them; by Ville's inequality the mixture reaches `1/α` with probability
//! at most α, however often it is checked. The mixture puts most weight on r = 2 (the regression
//! that matters most, as an SPRT for 2× would) and the rest on 1.5, 3, 5 and 10 for faster
//! detection of larger regressions.
//!
//! **Latency.** Stable's p99 is estimated from its histogram (an upper confidence bound, so that a
//! canary like stable exceeds it at most 1% of the time); the count of canary requests slower than
//! it is tested against 1% with a mixture of binomial likelihood ratios (exceedance 2%–20%).
//!
//! **Pass needs evidence.** The same construction run the other way: the likelihood ratio of
//! "as good as stable" against "2× the errors" (and against "3× the slow requests") reaching `1/β`
//! bounds the chance of passing such a regression by β. Without it the canary ends inconclusive,
//! with an estimate of how many more canary requests would settle it. A canary whose error rate is
//! negligible in absolute terms (its 95% upper bound below `negligible_error_rate`) passes on errors too.
//!
//! α is split between the error and latency tests, so false rollbacks stay at most `alpha` overall.

use super::stats::{kl_bernoulli, log_mixture};
use super::{Decision, Judge, Sample};
use crate::analysis::judges::stats::LogHistogram;

#[derive(Debug, Clone, PartialEq)]
pub struct SequentialConfig {
    /// Bound on false rollbacks for a canary as good as stable, over the whole analysis.
    pub alpha: f64,
    /// Share of α given to the latency test when latency is judged.
    pub latency_alpha_share: f64,
    /// Judge latency too (needs per-request latencies in the samples).
    pub judge_latency: bool,
    /// Bound on passing a canary whose regression is `pass_error_ratio` (errors) or `pass_exceedance` (latency).
    pub beta: f64,
    /// Error-rate ratios (> 1) and their mixture weights.
    pub error_mixture: Vec<(f64, f64)>,
    pub pass_error_ratio: f64,
    /// Latency quantile compared (0.99) and the exceedance shares of the alternatives with weights.
    pub latency_quantile: f64,
    pub latency_mixture: Vec<(f64, f64)>,
    pub pass_exceedance: f64,
    /// Standard errors added to stable's quantile estimate so the comparison errs towards the canary.
    pub quantile_margin_z: f64,
    /// Stable latencies needed before canary latencies are compared.
    pub min_stable_latencies: u64,
    /// An error rate this low (95% upper bound) passes whatever stable's is.
    pub negligible_error_rate: f64,
    /// Pass as soon as every test has pass evidence (the default: a canary is decided as soon as
    /// the evidence is enough either way, passing a 2× regression with probability at most β).
    pub early_pass: bool,
}

impl Default for SequentialConfig {
    fn default() -> Self {
        Self {
            alpha: 0.01,
            latency_alpha_share: 0.3,
            judge_latency: true,
            beta: 0.05,
            error_mixture: vec![(1.5, 0.03), (2.0, 0.9), (4.0, 0.04), (10.0, 0.03)],
            pass_error_ratio: 2.0,
            latency_quantile: 0.99,
            latency_mixture: vec![(0.02, 0.25), (0.03, 0.3), (0.05, 0.25), (0.1, 0.1), (0.2, 0.1)],
            pass_exceedance: 0.03,
            quantile_margin_z: 2.0,
            min_stable_latencies: 500,
            negligible_error_rate: 0.0005,
            early_pass: true,
        }
    }
}

impl SequentialConfig {
    fn alpha_errors(&self) -> f64 {
        if self.judge_latency { self.alpha * (1.0 - self.latency_alpha_share) } else { self.alpha }
    }
    fn alpha_latency(&self) -> f64 {
        self.alpha * self.latency_alpha_share
    }
}

pub struct SequentialJudge {
    cfg: SequentialConfig,
    err_weights: Vec<f64>,
    err_log_lr: Vec<f64>,
    /// log LR of r = 1 against r = pass_error_ratio.
    err_pass_log_lr: f64,
    canary: (u64, u64),
    stable: (u64, u64),
    lat_weights: Vec<f64>,
    lat_log_lr: Vec<f64>,
    lat_pass_log_lr: f64,
    stable_hist: LogHistogram,
    lat_compared: u64,
    lat_exceeded: u64,
    last_threshold: Option<f64>,
    decided: Option<Decision>,
}

impl SequentialJudge {
    pub fn new(cfg: SequentialConfig) -> Self {
        let norm = |m: &[(f64, f64)]| {
            let total: f64 = m.iter().map(|x| x.1).sum();
            m.iter().map(|x| x.1 / total).collect::<Vec<_>>()
        };
        Self {
            err_weights: norm(&cfg.error_mixture),
            err_log_lr: vec![0.0; cfg.error_mixture.len()],
            lat_weights: norm(&cfg.latency_mixture),
            lat_log_lr: vec![0.0; cfg.latency_mixture.len()],
            cfg,
            err_pass_log_lr: 0.0,
            canary: (0, 0),
            stable: (0, 0),
            lat_pass_log_lr: 0.0,
            stable_hist: LogHistogram::default(),
            lat_compared: 0,
            lat_exceeded: 0,
            last_threshold: None,
            decided: None,
        }
    }

    /// The error test's mixture likelihood ratio against "canary no worse than stable".
    pub fn error_evidence(&self) -> f64 {
        log_mixture(&self.err_weights, &self.err_log_lr).exp()
    }

    /// The latency test's mixture likelihood ratio against "canary's tail no worse than stable's".
    pub fn latency_evidence(&self) -> f64 {
        log_mixture(&self.lat_weights, &self.lat_log_lr).exp()
    }

    fn rates(&self) -> (f64, f64) {
        let r = |(n, e): (u64, u64)| if n == 0 { 0.0 } else { e as f64 / n as f64 };
        (r(self.canary), r(self.stable))
    }

    fn observe_errors(&mut self, canary: &Sample, stable: &Sample) {
        let (c, s) = (canary.requests as f64, stable.requests as f64);
        let (x, y) = (canary.errors.min(canary.requests), stable.errors.min(stable.requests));
        self.canary.0 += canary.requests;
        self.canary.1 += x;
        self.stable.0 += stable.requests;
        self.stable.1 += y;
        if c == 0.0 || s == 0.0 || x + y == 0 {
            return;
        }
        let (x, y) = (x as f64, y as f64);
        let p0 = c / (c + s);
        let log_lr = |r: f64| {
            let p = r * c / (r * c + s);
            x * (p / p0).ln() + y * ((1.0 - p) / (1.0 - p0)).ln()
        };
        for (l, (r, _)) in self.err_log_lr.iter_mut().zip(&self.cfg.error_mixture) {
            *l += log_lr(*r);
        }
        self.err_pass_log_lr -= log_lr(self.cfg.pass_error_ratio);
    }

    fn observe_latency(&mut self, canary: &Sample, stable: &Sample) {
        let q0 = 1.0 - self.cfg.latency_quantile;
        if self.stable_hist.total() >= self.cfg.min_stable_latencies && !canary.latencies_ms.is_empty() {
            let threshold = self.stable_hist.quantile_upper(self.cfg.latency_quantile, self.cfg.quantile_margin_z);
            if let Some(t) = threshold {
                let n = canary.latencies_ms.len() as f64;
                let k = canary.latencies_ms.iter().filter(|v| **v > t).count() as f64;
                let log_lr = |q: f64| k * (q / q0).ln() + (n - k) * ((1.0 - q) / (1.0 - q0)).ln();
                for (l, (q, _)) in self.lat_log_lr.iter_mut().zip(&self.cfg.latency_mixture) {
                    *l += log_lr(*q);
                }
                self.lat_pass_log_lr -= log_lr(self.cfg.pass_exceedance);
                self.lat_compared += n as u64;
                self.lat_exceeded += k as u64;
                self.last_threshold = Some(t);
            }
        }
        for &v in &stable.latencies_ms {
            self.stable_hist.add(v);
        }
    }

    fn error_failure(&self) -> Option<Decision> {
        let threshold = 1.0 / self.cfg.alpha_errors();
        let lr = self.error_evidence();
        if lr < threshold {
            return None;
        }
        let (cr, sr) = self.rates();
        Some(Decision::Fail {
            metric: "error_rate".into(),
            condition: format!("> stable's (likelihood ratio {lr:.0} ≥ {threshold:.0} = 1/α)"),
            value: cr,
            message: format!(
                "error_rate: {cr:.4} > {sr:.4} (stable's; ≈{:.1}× it, {} of {} canary requests failed; \
                 likelihood ratio {lr:.0} ≥ {threshold:.0}, false-rollback bound {:.2}%)",
                if sr > 0.0 { cr / sr } else { f64::INFINITY },
                self.canary.1,
                self.canary.0,
                100.0 * self.cfg.alpha_errors()
            ),
        })
    }

    fn latency_failure(&self) -> Option<Decision> {
        let threshold = 1.0 / self.cfg.alpha_latency();
        let lr = self.latency_evidence();
        if !self.cfg.judge_latency || lr < threshold {
            return None;
        }
        let share = self.lat_exceeded as f64 / self.lat_compared.max(1) as f64;
        let q0 = 1.0 - self.cfg.latency_quantile;
        let t = self.last_threshold.unwrap_or(f64::NAN);
        Some(Decision::Fail {
            metric: "latency_slow_share".into(),
            condition: format!("> {q0} above stable's p{:.0} ({t:.1} ms)", 100.0 * self.cfg.latency_quantile),
            value: share,
            message: format!(
                "latency_slow_share: {share:.4} > {q0} ({} of {} canary requests slower than stable's p{:.0} {t:.1} ms; \
                 likelihood ratio {lr:.0} ≥ {threshold:.0})",
                self.lat_exceeded,
                self.lat_compared,
                100.0 * self.cfg.latency_quantile
            ),
        })
    }

    /// Pass evidence for errors, or the canary requests still needed for it.
    fn errors_pass(&self) -> Result<String, u64> {
        let need = (1.0 / self.cfg.beta).ln();
        let (cr, sr) = self.rates();
        if self.err_pass_log_lr >= need {
            return Ok(format!(
                "error_rate {cr:.4} vs {sr:.4}: evidence against a {}× regression",
                self.cfg.pass_error_ratio
            ));
        }
        let (c, x) = self.canary;
        if c > 0 {
            let upper = (x as f64 + 1.645 * (x as f64 + 1.0).sqrt() + 2.0) / c as f64;
            if upper <= self.cfg.negligible_error_rate {
                return Ok(format!(
                    "error_rate {cr:.4}: below {} (95% bound {upper:.5})",
                    self.cfg.negligible_error_rate
                ));
            }
        }
        // Expected growth of the pass evidence per canary request if the canary is like stable.
        let (s, y) = self.stable;
        let (cf, sf) = (c.max(1) as f64, s.max(1) as f64);
        let pooled = ((x + y) as f64).max(1.0) / (cf + sf);
        let errors_per_canary_request = pooled * (cf + sf) / cf;
        let p0 = cf / (cf + sf);
        let r = self.cfg.pass_error_ratio;
        let per_error = kl_bernoulli(p0, r * cf / (r * cf + sf));
        let more = (need - self.err_pass_log_lr) / (errors_per_canary_request * per_error).max(1e-12);
        Err(more.ceil().min(1e15) as u64)
    }

    fn latency_pass(&self) -> Result<String, u64> {
        if !self.cfg.judge_latency {
            return Ok(String::new());
        }
        if self.lat_compared == 0 && self.stable_hist.total() == 0 {
            // The provider gave no latencies at all: say so rather than wait forever.
            return Ok("; latency not judged (no latencies were measured)".into());
        }
        let need = (1.0 / self.cfg.beta).ln();
        let share = self.lat_exceeded as f64 / self.lat_compared.max(1) as f64;
        if self.lat_pass_log_lr >= need {
            return Ok(format!(
                "; {share:.4} of canary requests slower than stable's p{:.0}",
                100.0 * self.cfg.latency_quantile
            ));
        }
        let per = kl_bernoulli(1.0 - self.cfg.latency_quantile, self.cfg.pass_exceedance);
        let more = (need - self.lat_pass_log_lr) / per.max(1e-12);
        Err(more.ceil().min(1e15) as u64 + self.cfg.min_stable_latencies.saturating_sub(self.stable_hist.total()) / 9)
    }
}

impl Judge for SequentialJudge {
    fn observe(&mut self, canary: &Sample, stable: &Sample) -> Decision {
        if let Some(d) = &self.decided {
            return d.clone();
        }
        self.observe_errors(canary, stable);
        if self.cfg.judge_latency {
            self.observe_latency(canary, stable);
        }
        if let Some(fail) = self.error_failure().or_else(|| self.latency_failure()) {
            self.decided = Some(fail.clone());
            return fail;
        }
        if self.cfg.early_pass
            && let (Ok(e), Ok(l)) = (self.errors_pass(), self.latency_pass())
        {
            let pass = Decision::Pass { message: format!("{e}{l}") };
            self.decided = Some(pass.clone());
            return pass;
        }
        Decision::Continue
    }

    fn finish(&mut self) -> Decision {
        if let Some(d) = &self.decided {
            return d.clone();
        }
        match (self.errors_pass(), self.latency_pass()) {
            (Ok(e), Ok(l)) => Decision::Pass { message: format!("{e}{l}") },
            (e, l) => {
                let more = e.err().unwrap_or(0).max(l.err().unwrap_or(0));
                let (cr, sr) = self.rates();
                Decision::Inconclusive {
                    message: format!(
                        "inconclusive: not enough traffic (about {more} more canary requests needed; \
                         {} seen, error_rate {cr:.4} vs {sr:.4})",
                        self.canary.0
                    ),
                    more_requests: Some(more),
                }
            }
        }
    }

    fn name(&self) -> &'static str {
        "sequential"
    }

    fn progress(&self) -> String {
        // Share of the way (log scale) from no evidence to the boundary, 0–100%.
        let way = |log_now: f64, boundary: f64| (100.0 * log_now / boundary.ln()).clamp(0.0, 100.0);
        let (c, s) = (self.canary, self.stable);
        let mut out = format!(
            "errors: canary {}/{} vs stable {}/{}, evidence to roll back {:.0}% of the way, to pass {:.0}%",
            c.1,
            c.0,
            s.1,
            s.0,
            way(log_mixture(&self.err_weights, &self.err_log_lr), 1.0 / self.cfg.alpha_errors()),
            way(self.err_pass_log_lr, 1.0 / self.cfg.beta),
        );
        if self.cfg.judge_latency && self.lat_compared > 0 {
            out.push_str(&format!(
                "; latency: {}/{} canary requests above stable's p{:.0}, to roll back {:.0}%, to pass {:.0}%",
                self.lat_exceeded,
                self.lat_compared,
                100.0 * self.cfg.latency_quantile,
                way(log_mixture(&self.lat_weights, &self.lat_log_lr), 1.0 / self.cfg.alpha_latency()),
                way(self.lat_pass_log_lr, 1.0 / self.cfg.beta),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_only() -> SequentialJudge {
        SequentialJudge::new(SequentialConfig { judge_latency: false, ..Default::default() })
    }

    #[test]
    fn progress_tells_how_far_the_evidence_has_come() {
        let mut j = errors_only();
        j.observe(&Sample::new(1000, 10), &Sample::new(9000, 90));
        let p = j.progress();
        assert!(
            p.starts_with("errors: canary 10/1000 vs stable 90/9000, evidence to roll back 0% of the way, to pass "),
            "{p}"
        );
        let mut bad = errors_only();
        bad.observe(&Sample::new(1000, 30), &Sample::new(9000, 90));
        assert!(!bad.progress().contains("roll back 0%"), "3x the errors moves towards a rollback: {}", bad.progress());
    }

    #[test]
    fn a_clear_error_regression_fails_naming_metric_condition_and_value() {
        let mut j = errors_only();
        let mut last = Decision::Continue;
        for _ in 0..30 {
            last = j.observe(&Sample::new(100, 5), &Sample::new(900, 9));
            if last.is_final() {
                break;
            }
        }
        match last {
            Decision::Fail { metric, value, message, .. } => {
                assert_eq!(metric, "error_rate");
                assert_eq!(value, 0.05);
                assert!(message.starts_with("error_rate: 0.0500 > 0.0100"), "{message}");
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn a_good_canary_passes_as_soon_as_the_evidence_is_enough_or_at_the_end() {
        let mut j = errors_only();
        let mut passed_at = None;
        for i in 0..300 {
            if let Decision::Pass { .. } = j.observe(&Sample::new(100, 1), &Sample::new(900, 9)) {
                passed_at = Some(i);
                break;
            }
        }
        assert!(passed_at.is_some_and(|i| i > 5), "needs evidence first, then passes early: {passed_at:?}");
        let mut late =
            SequentialJudge::new(SequentialConfig { judge_latency: false, early_pass: false, ..Default::default() });
        for _ in 0..300 {
            assert_eq!(late.observe(&Sample::new(100, 1), &Sample::new(900, 9)), Decision::Continue);
        }
        assert!(matches!(late.finish(), Decision::Pass { .. }), "{:?}", late.finish());
    }

    #[test]
    fn too_little_traffic_is_inconclusive_with_an_estimate() {
        let mut j = errors_only();
        for _ in 0..300 {
            j.observe(&Sample::new(1, 0), &Sample::new(9, 0));
        }
        j.observe(&Sample::new(1, 0), &Sample::new(9, 1));
        match j.finish() {
            Decision::Inconclusive { more_requests: Some(n), message } => {
                assert!(n > 1_000, "{n}");
                assert!(message.contains("not enough traffic"), "{message}");
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn early_pass_when_configured_and_negligible_errors() {
        let cfg = SequentialConfig { judge_latency: false, early_pass: true, ..Default::default() };
        let mut j = SequentialJudge::new(cfg);
        let mut last = Decision::Continue;
        for _ in 0..300 {
            last = j.observe(&Sample::new(1000, 10), &Sample::new(9000, 90));
            if last.is_final() {
                break;
            }
        }
        assert!(matches!(last, Decision::Pass { .. }), "{last:?}");
        let mut j = errors_only();
        j.observe(&Sample::new(100_000, 0), &Sample::new(900_000, 0));
        assert!(matches!(j.finish(), Decision::Pass { .. }));
    }

    #[test]
    fn a_slow_tail_fails_on_latency_and_a_like_one_passes() {
        let stable: Vec<f64> = (0..900).map(|i| 10.0 + f64::from(i % 100)).collect(); // p99 ≈ 109
        let slow: Vec<f64> = (0..100).map(|i| if i % 10 == 0 { 200.0 } else { 20.0 }).collect();
        let like: Vec<f64> = (0..100).map(|i| 10.0 + f64::from(i)).collect();
        let mut j = SequentialJudge::new(SequentialConfig::default());
        let mut last = Decision::Continue;
        for _ in 0..60 {
            last = j.observe(
                &Sample::new(100, 1).with_latencies(slow.clone()),
                &Sample::new(900, 9).with_latencies(stable.clone()),
            );
            if last.is_final() {
                break;
            }
        }
        assert!(matches!(last, Decision::Fail { ref metric, .. } if metric == "latency_slow_share"), "{last:?}");
        let mut j = SequentialJudge::new(SequentialConfig::default());
        let mut last = Decision::Continue;
        for _ in 0..300 {
            last = j.observe(
                &Sample::new(100, 1).with_latencies(like.clone()),
                &Sample::new(900, 9).with_latencies(stable.clone()),
            );
            assert!(!matches!(last, Decision::Fail { .. }), "{last:?}");
            if last.is_final() {
                break;
            }
        }
        assert!(matches!(last, Decision::Pass { .. }), "{last:?}");
    }
}
