//! The standard's canary rule: roll back when the canary's error rate is above 1.5× stable's,
//! or its p99 latency above 1.2× stable's. A window with too little canary traffic is
//! inconclusive, never a pass.

use super::VersionMetrics;
use crate::model::Verdict;

pub const ERROR_RATE_FACTOR: f64 = 1.5;
pub const P99_FACTOR: f64 = 1.2;

/// The verdict and, for anything but a pass, the condition and the values behind it.
pub fn judge(canary: &VersionMetrics, stable: &VersionMetrics, min_requests: u64) -> (Verdict, String) {
    if canary.requests == 0 {
        return (Verdict::NoData, "no canary requests in the window".into());
    }
    if stable.requests == 0 {
        return (Verdict::NoData, "no stable requests in the window to compare with".into());
    }
    if canary.requests < min_requests {
        return (
            Verdict::Inconclusive,
            format!(
                "not enough canary traffic: {} requests, {} needed (about {} more)",
                canary.requests,
                min_requests,
                min_requests - canary.requests
            ),
        );
    }
    let (ce, se) = (rate(canary), rate(stable));
    if ce > se * ERROR_RATE_FACTOR {
        return (
            Verdict::Fail,
            format!(
                "error_rate: canary {ce:.3} > {ERROR_RATE_FACTOR} × stable {se:.3} ({} of {} requests failed)",
                canary.errors, canary.requests
            ),
        );
    }
    if let (Some(cp), Some(sp)) = (canary.p99_ms, stable.p99_ms)
        && cp > sp * P99_FACTOR
    {
        return (Verdict::Fail, format!("p99 latency: canary {cp:.1} ms > {P99_FACTOR} × stable {sp:.1} ms"));
    }
    let p99 = match (canary.p99_ms, stable.p99_ms) {
        (Some(c), Some(s)) => format!(", p99 {c:.1} ms vs {s:.1} ms"),
        _ => String::new(),
    };
    (Verdict::Pass, format!("error_rate {ce:.3} vs {se:.3}{p99}"))
}

fn rate(m: &VersionMetrics) -> f64 {
    m.error_rate().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(requests: u64, errors: u64, p99: f64) -> VersionMetrics {
        VersionMetrics { requests, errors, p50_ms: Some(p99 / 2.0), p99_ms: Some(p99), ..Default::default() }
    }

    #[test]
    fn a_canary_as_good_as_stable_passes() {
        assert_eq!(judge(&m(100, 1, 20.0), &m(900, 9, 20.0), 10).0, Verdict::Pass);
    }

    #[test]
    fn errors_above_one_and_a_half_times_stable_fail_and_name_the_values() {
        let (v, why) = judge(&m(100, 8, 20.0), &m(900, 0, 20.0), 10);
        assert_eq!(v, Verdict::Fail);
        assert!(why.contains("error_rate: canary 0.080 > 1.5 × stable 0.000"), "{why}");
    }

    #[test]
    fn p99_above_one_point_two_times_stable_fails() {
        let (v, why) = judge(&m(100, 0, 30.0), &m(900, 0, 20.0), 10);
        assert_eq!(v, Verdict::Fail);
        assert!(why.starts_with("p99 latency"), "{why}");
    }

    #[test]
    fn too_little_canary_traffic_is_inconclusive_not_a_pass() {
        let (v, why) = judge(&m(3, 0, 20.0), &m(900, 0, 20.0), 10);
        assert_eq!(v, Verdict::Inconclusive);
        assert!(why.contains("about 7 more"), "{why}");
        assert_eq!(judge(&m(0, 0, 0.0), &m(900, 0, 20.0), 10).0, Verdict::NoData);
    }
}
