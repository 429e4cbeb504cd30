//! Property tests over every judge.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Binomial, Distribution, Poisson};

use super::*;

fn all_judges() -> Vec<Box<dyn Judge>> {
    vec![
        Box::new(StandardJudge::new(10, 5)),
        Box::new(ThresholdJudge::new(ThresholdConfig {
            max_error_rate: 0.2,
            windows_per_check: 5,
            ..Default::default()
        })),
        Box::new(MannWhitneyJudge::new(MannWhitneyConfig { windows_per_interval: 5, ..Default::default() })),
        Box::new(SequentialJudge::new(SequentialConfig::default())),
        Box::new(ReferenceSprt::default()),
    ]
}

/// The first window at which the judge fails, if any, over `windows` deterministic windows.
fn first_fail(judge: &mut dyn Judge, windows: &[(Sample, Sample)]) -> Option<usize> {
    for (i, (c, s)) in windows.iter().enumerate() {
        match judge.observe(c, s) {
            Decision::Fail { .. } => return Some(i),
            Decision::Continue => {}
            _ => return None,
        }
    }
    matches!(judge.finish(), Decision::Fail { .. }).then_some(windows.len())
}

/// Simulated identical versions: stable gets 9× the canary's traffic, same error rate.
fn false_fails(make: impl Fn() -> Box<dyn Judge>, seeds: u64, rps: f64, rate: f64, windows: u32) -> u64 {
    let mut fails = 0;
    for seed in 0..seeds {
        let mut rng = SmallRng::seed_from_u64(seed);
        let (Ok(pc), Ok(ps)) = (Poisson::new(rps), Poisson::new(9.0 * rps)) else { return u64::MAX };
        let mut judge = make();
        let draw = |n: u64, rng: &mut SmallRng| Binomial::new(n, rate).map(|b| b.sample(rng)).unwrap_or(0);
        let mut failed = false;
        for _ in 0..windows {
            let (c, s) = (pc.sample(&mut rng) as u64, ps.sample(&mut rng) as u64);
            let canary = Sample::new(c, draw(c, &mut rng));
            let stable = Sample::new(s, draw(s, &mut rng));
            match judge.observe(&canary, &stable) {
                Decision::Fail { .. } => {
                    failed = true;
                    break;
                }
                Decision::Continue => {}
                _ => break,
            }
        }
        fails += u64::from(failed);
    }
    fails
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A canary whose every window is exactly stable's (scaled) never fails, whatever the judge.
    #[test]
    fn a_canary_identical_to_stable_never_fails(requests in 0u64..500, error_pml in 0u64..200, lat in 1.0f64..200.0) {
        let errors = requests * error_pml / 1000;
        let lats: Vec<f64> = (0..requests).map(|i| lat * (1.0 + (i % 13) as f64 / 10.0)).collect();
        let stable_lats: Vec<f64> = lats.iter().cycle().take(lats.len() * 9).copied().collect();
        let windows: Vec<_> = (0..20)
            .map(|_| (Sample::new(requests, errors).with_latencies(lats.clone()), Sample::new(requests * 9, errors * 9).with_latencies(stable_lats.clone())))
            .collect();
        for mut judge in all_judges() {
            prop_assert_eq!(first_fail(judge.as_mut(), &windows), None, "{}", judge.name());
        }
    }

    /// More canary errors never make a judge fail later (or not at all).
    #[test]
    fn monotone_in_effect_size(requests in 20u64..400, stable_pml in 1u64..100, extra in 0u64..30, pattern in prop::collection::vec(0u64..3, 30)) {
        let stable_errors = requests * 9 * stable_pml / 1000;
        let base = requests * stable_pml / 1000;
        let run = |bump: u64, judge: &mut dyn Judge| {
            let windows: Vec<_> = pattern.iter().map(|p| {
                let e = (base + p + bump).min(requests);
                (Sample::new(requests, e), Sample::new(requests * 9, stable_errors))
            }).collect();
            first_fail(judge, &windows)
        };
        for (mut a, mut b) in all_judges().into_iter().zip(all_judges()) {
            let (small, large) = (run(0, a.as_mut()), run(extra, b.as_mut()));
            let later = |x: Option<usize>| x.unwrap_or(usize::MAX);
            prop_assert!(later(large) <= later(small), "{}: {small:?} then {large:?}", a.name());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// Over many seeds, `sequential` fails an identical canary at most about α of the time
    /// (bound: 9 of 300 runs, far above the 3 expected at α = 1%; P(≥ 9) < 0.5% at α).
    #[test]
    fn sequential_false_rollbacks_stay_within_alpha(rps in 5.0f64..200.0, rate in 0.005f64..0.1) {
        let make = || Box::new(SequentialJudge::new(SequentialConfig { judge_latency: false, ..Default::default() })) as Box<dyn Judge>;
        let fails = false_fails(make, 300, rps, rate, 60);
        prop_assert!(fails <= 9, "{fails} of 300 at {rps} rps, rate {rate}");
    }

    /// Mann-Whitney at 98%, one interval of 5 windows over 20: at most 4 looks × 1% one-sided, plus slack.
    #[test]
    fn mann_whitney_false_rollbacks_stay_within_its_looks(rps in 5.0f64..100.0, rate in 0.01f64..0.1) {
        let make = || Box::new(MannWhitneyJudge::new(MannWhitneyConfig { windows_per_interval: 5, ..Default::default() })) as Box<dyn Judge>;
        let fails = false_fails(make, 200, rps, rate, 20);
        prop_assert!(fails <= 16, "{fails} of 200");
    }
}

#[test]
fn sequential_evidence_grows_with_the_regression() {
    let mut last = 0.0;
    for x in 0..=20 {
        let mut j = SequentialJudge::new(SequentialConfig { judge_latency: false, ..Default::default() });
        j.observe(&Sample::new(1000, x), &Sample::new(9000, 90));
        let lr = j.error_evidence();
        assert!(lr >= last, "{x}: {lr} < {last}");
        last = lr;
    }
}
