//! Turning a strategy and its settings into an explicit plan of steps.

use crate::model::{AnalysisRules, AnalysisSpec, AppSettings, CanaryStep, Step, StrategyKind, VerifyPhase};

/// The plan for moving an app from `previous` (None on a first deploy) to a new version.
pub fn build(strategy: StrategyKind, s: &AppSettings, previous: Option<&str>) -> Vec<Step> {
    let n = s.replicas;
    let verify = Step::Verify { phase: VerifyPhase::PostDeploy };
    if previous.is_none() {
        // Nothing runs yet: bring the version up and send it the traffic, whatever the strategy.
        return vec![Step::ScaleNew { replicas: n }, Step::SetWeight { weight: 100 }, verify];
    }
    let mut plan = match strategy {
        StrategyKind::Rolling => rolling(n, s.rolling.max_surge, s.rolling.max_unavailable),
        StrategyKind::Recreate => {
            vec![Step::ScaleOld { replicas: 0 }, Step::ScaleNew { replicas: n }, Step::SetWeight { weight: 100 }]
        }
        StrategyKind::BlueGreen => {
            let secs = s.blue_green.auto_promotion.map(|d| d.0.as_secs());
            return vec![
                Step::ScaleNew { replicas: n },
                Step::Preview,
                Step::Verify { phase: VerifyPhase::PrePromotion },
                Step::AwaitSwitch { seconds: secs },
                Step::Switch,
                Step::Verify { phase: VerifyPhase::PostPromotion },
                Step::RemoveOld { delay_secs: s.blue_green.scale_down_delay.0.as_secs() },
            ];
        }
        StrategyKind::Canary => {
            let mut steps: Vec<Step> = s
                .canary
                .steps
                .iter()
                .map(|c| match c {
                    CanaryStep::SetWeight(w) => Step::SetWeight { weight: *w },
                    CanaryStep::Pause(p) => Step::Pause { seconds: p.duration().map(|d| d.as_secs()) },
                    CanaryStep::Analysis(a) => analysis_step(s, a),
                })
                .collect();
            steps.push(Step::Promote);
            steps
        }
        StrategyKind::Ab => {
            let b = ((n as f64 * s.ab.audience).ceil() as u32).clamp(1, n);
            vec![
                Step::ScaleNew { replicas: b },
                Step::AbExperiment { seconds: s.ab.duration.0.as_secs().max(1) },
                Step::Promote,
            ]
        }
    };
    plan.push(verify);
    plan
}

/// An analysis step with its template resolved, so the stored plan says exactly what it runs.
/// The estate was checked when it was loaded: every template a step names exists.
fn analysis_step(s: &AppSettings, spec: &AnalysisSpec) -> Step {
    let t = s.analysis_template(spec).unwrap_or_default();
    Step::Analysis {
        interval_secs: t.interval.0.as_secs().max(1),
        count: t.count.max(1),
        inconclusive_limit: t.inconclusive_limit,
        rules: AnalysisRules {
            template: spec.template.clone().unwrap_or_default(),
            judge: t.judge,
            provider: t.provider,
            initial_delay_secs: t.initial_delay.0.as_secs(),
            failure_limit: t.failure_limit,
            consecutive_error_limit: t.consecutive_error_limit,
            dry_run: t.dry_run,
            min_requests: t.min_requests.unwrap_or(s.canary.min_requests),
            metrics: t.metrics,
        },
    }
}

/// Batches of a rolling update of `n` replicas, as a Deployment controller would take them:
/// never more than `n + surge` pods, never fewer than `n - unavailable` available.
pub fn rolling(n: u32, surge: u32, unavailable: u32) -> Vec<Step> {
    let (mut new, mut old) = (0u32, n);
    let mut steps = Vec::new();
    while new < n || old > 0 {
        let old_before = old.min(n.saturating_sub(unavailable).saturating_sub(new));
        let new_t = n.min((n + surge).saturating_sub(old_before)).max(new);
        let old_after = old_before.min(n.saturating_sub(unavailable).saturating_sub(new_t));
        if new_t == new && old_after == old {
            // Settings validation forbids surge = unavailable = 0, the only way to get here.
            break;
        }
        steps.push(Step::RollingBatch { new: new_t, old_before, old_after });
        new = new_t;
        old = old_after;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(n: u32, s: u32, u: u32) -> Vec<(u32, u32, u32)> {
        rolling(n, s, u)
            .into_iter()
            .map(|st| match st {
                Step::RollingBatch { new, old_before, old_after } => (new, old_before, old_after),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn surge_one_replaces_one_pod_at_a_time_without_losing_capacity() {
        assert_eq!(batches(4, 1, 0), vec![(1, 4, 3), (2, 3, 2), (3, 2, 1), (4, 1, 0)]);
    }

    #[test]
    fn unavailable_one_scales_old_down_before_new_comes_up() {
        let b = batches(4, 0, 1);
        assert_eq!(b.first(), Some(&(1, 3, 2)));
        assert_eq!(b.last().map(|x| (x.0, x.2)), Some((4, 0)));
        for (new, old_before, _) in &b {
            assert!(new + old_before <= 4, "{b:?}");
        }
    }

    #[test]
    fn a_large_surge_replaces_everything_in_one_batch() {
        assert_eq!(batches(3, 3, 0), vec![(3, 3, 0)]);
    }

    #[test]
    fn every_plan_ends_with_verification() {
        let s = crate::config::Estate::demo().unwrap().settings("prod", "checkout").unwrap().clone();
        for k in StrategyKind::ALL {
            let plan = build(k, &s, Some("1.4.0"));
            let last_verify = plan.iter().rposition(|st| matches!(st, Step::Verify { .. }));
            assert!(last_verify.is_some(), "{k}: {plan:?}");
        }
    }
}
