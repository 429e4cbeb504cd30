//! Canary judges over cumulative observations.
//!
//! A [`Judge`] is handed the newest window of traffic for the canary and for stable every
//! interval; it keeps what it needs and answers with a [`Decision`]. `finish` is called when the
//! analysis time is up, and must never turn "not enough data" into a pass.
//!
//! - [`standard`]: the standard's rule, window by window (`error rate > 1.5× stable`, `p99 > 1.2× stable`).
//! - [`threshold`]: fixed bounds on error rate and p99, Argo/Flagger style.
//! - [`mann_whitney`]: Kayenta style, Mann-Whitney U per metric, weighted groups, marginal and pass scores.
//! - [`sequential`]: shipdeck's default, always-valid sequential tests that bound false rollbacks.
//! - [`reference`]: the textbook SPRT on error rate, as a yardstick for the benchmark.

pub mod mann_whitney;
pub mod reference;
pub mod sequential;
pub mod standard;
pub mod stats;
pub mod threshold;

#[cfg(test)]
mod properties;

pub use mann_whitney::{MannWhitneyConfig, MannWhitneyJudge};
pub use reference::ReferenceSprt;
pub use sequential::{SequentialConfig, SequentialJudge};
pub use standard::StandardJudge;
pub use threshold::{ThresholdConfig, ThresholdJudge};

/// What one version answered over one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub requests: u64,
    /// Responses with a 5xx status or no response at all.
    pub errors: u64,
    /// Per-request latencies, when known (may be a sample of the requests, or empty).
    pub latencies_ms: Vec<f64>,
}

impl Sample {
    pub fn new(requests: u64, errors: u64) -> Self {
        Self { requests, errors: errors.min(requests), latencies_ms: Vec::new() }
    }

    pub fn with_latencies(mut self, latencies_ms: Vec<f64>) -> Self {
        self.latencies_ms = latencies_ms;
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not decided yet: keep the canary running.
    Continue,
    Pass {
        message: String,
    },
    /// Roll back. `message` names the metric, the condition and the value, e.g. `error_rate: 0.081 > 0.02`.
    Fail {
        metric: String,
        condition: String,
        value: f64,
        message: String,
    },
    /// Neither pass nor fail evidence suffices; `more_requests` estimates how many more canary requests would.
    Inconclusive {
        message: String,
        more_requests: Option<u64>,
    },
}

impl Decision {
    pub fn is_final(&self) -> bool {
        !matches!(self, Decision::Continue)
    }
}

pub trait Judge: Send + Sync {
    /// The newest window; called every interval.
    fn observe(&mut self, canary: &Sample, stable: &Sample) -> Decision;
    /// The analysis time is up: pass, fail or inconclusive, never `Continue`.
    fn finish(&mut self) -> Decision;
    fn name(&self) -> &'static str;
    /// A short human line on the evidence so far, shown with each measurement ("" when the judge has none).
    fn progress(&self) -> String {
        String::new()
    }
}

/// The judges a template can select, by name.
pub const JUDGE_NAMES: [&str; 4] = ["standard", "threshold", "mann-whitney", "sequential"];

/// A judge with its defaults, by the name a template uses. `windows_per_check` is how many
/// observed windows make one check for the interval-based judges (1 when each observation is one
/// analysis interval); `min_requests` is the canary traffic a check needs to count.
pub fn by_name(name: &str, windows_per_check: u32, min_requests: u64) -> Option<Box<dyn Judge>> {
    Some(match name {
        "standard" => Box::new(StandardJudge::new(min_requests, windows_per_check)),
        "threshold" => {
            Box::new(ThresholdJudge::new(ThresholdConfig { windows_per_check, min_requests, ..Default::default() }))
        }
        "mann-whitney" => Box::new(MannWhitneyJudge::new(MannWhitneyConfig {
            windows_per_interval: windows_per_check,
            ..Default::default()
        })),
        "sequential" => Box::new(SequentialJudge::new(SequentialConfig::default())),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_judge_exists_and_knows_its_name() {
        for name in JUDGE_NAMES {
            let judge = by_name(name, 1, 10).expect(name);
            assert_eq!(judge.name(), name);
        }
        assert!(by_name("nope", 1, 10).is_none());
    }

    #[test]
    fn no_judge_passes_a_canary_it_never_saw() {
        for name in JUDGE_NAMES {
            let mut judge = by_name(name, 1, 10).expect(name);
            assert!(matches!(judge.finish(), Decision::Inconclusive { .. }), "{name}");
        }
    }

    #[test]
    fn progress_defaults_to_nothing() {
        let j = ReferenceSprt::default();
        assert_eq!(j.progress(), "");
    }
}
