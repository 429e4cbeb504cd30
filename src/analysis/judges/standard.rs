//! The standard's rule as a [`Judge`]: every check (e.g. 30 s) it looks at that check's window
//! alone and rolls back when the canary's error rate is above 1.5× stable's or its p99 above
//! 1.2× stable's. A window with too little canary traffic is skipped; a canary never judged ends
//! inconclusive.

use super::stats::quantile;
use super::{Decision, Judge, Sample};
use crate::analysis::standard::{ERROR_RATE_FACTOR, P99_FACTOR};

#[derive(Debug, Default)]
struct Window {
    requests: u64,
    errors: u64,
    latencies: Vec<f64>,
}

impl Window {
    fn add(&mut self, s: &Sample) {
        self.requests += s.requests;
        self.errors += s.errors;
        self.latencies.extend_from_slice(&s.latencies_ms);
    }
    fn rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 }
    }
}

pub struct StandardJudge {
    min_requests: u64,
    windows_per_check: u32,
    seen: u32,
    canary: Window,
    stable: Window,
    passed_checks: u32,
    canary_total: u64,
    last: String,
}

impl StandardJudge {
    /// `min_requests`: fewer canary requests in a check's window make it inconclusive (the engine's default is 10).
    pub fn new(min_requests: u64, windows_per_check: u32) -> Self {
        Self {
            min_requests,
            windows_per_check: windows_per_check.max(1),
            seen: 0,
            canary: Window::default(),
            stable: Window::default(),
            passed_checks: 0,
            canary_total: 0,
            last: String::new(),
        }
    }

    fn check(&mut self) -> Decision {
        let canary = std::mem::take(&mut self.canary);
        let mut stable = std::mem::take(&mut self.stable);
        let mut canary_lat = canary.latencies;
        if canary.requests < self.min_requests.max(1) {
            self.last = format!("last window had {} canary requests, {} needed", canary.requests, self.min_requests);
            return Decision::Continue;
        }
        if stable.requests == 0 {
            self.last = "last window had no stable requests to compare with".to_string();
            return Decision::Continue;
        }
        let (ce, se) = (canary.errors as f64 / canary.requests as f64, stable.rate());
        if ce > se * ERROR_RATE_FACTOR {
            let bound = se * ERROR_RATE_FACTOR;
            return Decision::Fail {
                metric: "error_rate".into(),
                condition: format!("> {ERROR_RATE_FACTOR} × stable"),
                value: ce,
                message: format!(
                    "error_rate: {ce:.4} > {bound:.4} ({ERROR_RATE_FACTOR} × stable {se:.4}; {} of {} requests failed)",
                    canary.errors, canary.requests
                ),
            };
        }
        if let (Some(cp), Some(sp)) = (quantile(&mut canary_lat, 0.99), quantile(&mut stable.latencies, 0.99))
            && cp > sp * P99_FACTOR
        {
            return Decision::Fail {
                metric: "latency_p99_ms".into(),
                condition: format!("> {P99_FACTOR} × stable"),
                value: cp,
                message: format!("latency_p99_ms: {cp:.1} > {:.1} ({P99_FACTOR} × stable {sp:.1})", sp * P99_FACTOR),
            };
        }
        self.passed_checks += 1;
        self.last = format!("error_rate {ce:.4} vs stable {se:.4}");
        Decision::Continue
    }
}

impl Judge for StandardJudge {
    fn observe(&mut self, canary: &Sample, stable: &Sample) -> Decision {
        self.canary.add(canary);
        self.stable.add(stable);
        self.canary_total += canary.requests;
        self.seen += 1;
        if self.seen.is_multiple_of(self.windows_per_check) { self.check() } else { Decision::Continue }
    }

    fn finish(&mut self) -> Decision {
        if self.canary.requests > 0 {
            let d = self.check();
            if d.is_final() {
                return d;
            }
        }
        if self.passed_checks > 0 {
            Decision::Pass { message: format!("{} checks passed; {}", self.passed_checks, self.last) }
        } else {
            Decision::Inconclusive {
                message: format!("no window could be judged ({})", self.last),
                more_requests: Some(self.min_requests.saturating_sub(self.canary_total).max(1)),
            }
        }
    }

    fn name(&self) -> &'static str {
        "standard"
    }

    fn progress(&self) -> String {
        self.last.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_above_one_and_a_half_times_stable_fail_with_the_values() {
        let mut j = StandardJudge::new(10, 1);
        match j.observe(&Sample::new(100, 8), &Sample::new(900, 9)) {
            Decision::Fail { metric, message, .. } => {
                assert_eq!(metric, "error_rate");
                assert!(message.starts_with("error_rate: 0.0800 > 0.0150"), "{message}");
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn checks_every_n_windows_and_passes_a_good_canary() {
        let mut j = StandardJudge::new(10, 3);
        for _ in 0..6 {
            let c = Sample::new(10, 0).with_latencies(vec![20.0; 10]);
            let s = Sample::new(90, 1).with_latencies(vec![20.0; 90]);
            assert_eq!(j.observe(&c, &s), Decision::Continue);
        }
        assert!(matches!(j.finish(), Decision::Pass { .. }));
    }

    #[test]
    fn slow_p99_fails_and_tiny_traffic_is_inconclusive() {
        let mut j = StandardJudge::new(10, 1);
        let c = Sample::new(100, 0).with_latencies(vec![30.0; 100]);
        let s = Sample::new(900, 0).with_latencies(vec![20.0; 900]);
        assert!(matches!(j.observe(&c, &s), Decision::Fail { ref metric, .. } if metric == "latency_p99_ms"));
        let mut j = StandardJudge::new(10, 1);
        assert_eq!(j.observe(&Sample::new(3, 0), &Sample::new(900, 0)), Decision::Continue);
        assert!(matches!(j.finish(), Decision::Inconclusive { more_requests: Some(7), .. }));
    }

    #[test]
    fn progress_is_the_last_windows_note() {
        let mut j = StandardJudge::new(10, 1);
        assert_eq!(j.progress(), "");
        j.observe(&Sample::new(100, 1), &Sample::new(900, 9));
        assert_eq!(j.progress(), "error_rate 0.0100 vs stable 0.0100");
        j.observe(&Sample::new(3, 0), &Sample::new(900, 0));
        assert_eq!(j.progress(), "last window had 3 canary requests, 10 needed");
    }
}

#[cfg(test)]
mod review_tests {
    use super::*;

    #[test]
    fn an_idle_stable_is_not_blamed_on_canary_traffic() {
        let mut j = StandardJudge::new(10, 1);
        j.observe(&Sample::new(500, 40), &Sample::new(0, 0));
        let p = j.progress();
        assert!(!p.contains("500 canary requests, 10 needed"), "{p}");
        let d = j.finish();
        assert!(
            !matches!(&d, Decision::Inconclusive { message, .. } if message.contains("no window had enough canary traffic")),
            "{d:?}"
        );
    }
}
