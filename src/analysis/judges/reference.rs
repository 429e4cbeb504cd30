//! The textbook Wald SPRT on the canary's error rate, as a yardstick: H0 canary rate = stable's
//! observed rate, H1 = twice it, α = 1%, β = 5%, on cumulative counts. It assumes stable's rate is
//! known (it plugs in the running estimate), so its error bounds are nominal only; it accepts H0
//! (passes) at the lower boundary, and ignores latency.

use super::{Decision, Judge, Sample};

pub struct ReferenceSprt {
    pub alpha: f64,
    pub beta: f64,
    pub ratio: f64,
    canary: (u64, u64),
    stable: (u64, u64),
    llr: f64,
}

impl Default for ReferenceSprt {
    fn default() -> Self {
        Self { alpha: 0.01, beta: 0.05, ratio: 2.0, canary: (0, 0), stable: (0, 0), llr: 0.0 }
    }
}

impl ReferenceSprt {
    /// The log-likelihood ratio of H1 vs H0 for the cumulative counts, or None until stable has shown an error.
    pub fn log_likelihood_ratio(&self) -> Option<f64> {
        let (c, x) = self.canary;
        let (s, y) = self.stable;
        if y == 0 || s == 0 {
            return None;
        }
        let p0 = y as f64 / s as f64;
        let p1 = (p0 * self.ratio).min(0.999_999);
        Some(x as f64 * (p1 / p0).ln() + (c - x) as f64 * ((1.0 - p1) / (1.0 - p0)).ln())
    }
}

impl Judge for ReferenceSprt {
    fn observe(&mut self, canary: &Sample, stable: &Sample) -> Decision {
        self.canary.0 += canary.requests;
        self.canary.1 += canary.errors.min(canary.requests);
        self.stable.0 += stable.requests;
        self.stable.1 += stable.errors.min(stable.requests);
        let Some(llr) = self.log_likelihood_ratio() else { return Decision::Continue };
        self.llr = llr;
        let upper = ((1.0 - self.beta) / self.alpha).ln();
        let lower = (self.beta / (1.0 - self.alpha)).ln();
        let rate = self.canary.1 as f64 / self.canary.0.max(1) as f64;
        let stable_rate = self.stable.1 as f64 / self.stable.0 as f64;
        if llr >= upper {
            Decision::Fail {
                metric: "error_rate".into(),
                condition: format!("SPRT log-LR ≥ {upper:.2}"),
                value: rate,
                message: format!(
                    "error_rate: {rate:.4} > {stable_rate:.4} (SPRT for ×{}, log-LR {llr:.2} ≥ {upper:.2})",
                    self.ratio
                ),
            }
        } else if llr <= lower {
            Decision::Pass {
                message: format!("error_rate {rate:.4} vs {stable_rate:.4}: SPRT accepts H0 (log-LR {llr:.2})"),
            }
        } else {
            Decision::Continue
        }
    }

    fn finish(&mut self) -> Decision {
        Decision::Inconclusive { message: format!("SPRT undecided (log-LR {:.2})", self.llr), more_requests: None }
    }

    fn name(&self) -> &'static str {
        "reference-sprt"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_both_ways() {
        let mut j = ReferenceSprt::default();
        assert!(matches!(j.observe(&Sample::new(1000, 30), &Sample::new(9000, 90)), Decision::Fail { .. }));
        let mut j = ReferenceSprt::default();
        assert!(matches!(j.observe(&Sample::new(1000, 8), &Sample::new(9000, 90)), Decision::Pass { .. }));
        let mut j = ReferenceSprt::default();
        assert_eq!(j.observe(&Sample::new(10, 0), &Sample::new(90, 0)), Decision::Continue);
        assert!(matches!(j.finish(), Decision::Inconclusive { .. }));
    }
}
