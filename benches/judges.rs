//! Judge benchmark: simulated canaries, every judge on the same traffic, one row per scenario × judge.
//!
//! Each run lasts 300 s, checked every second. Canary requests per second are Poisson(rps), stable's
//! Poisson(9 × rps); errors are Binomial(requests, rate). In latency scenarios every request also
//! has a lognormal latency: stable p50 20 ms, p99 40 ms; the canary keeps p50 and has its p99
//! multiplied (a heavier tail). Error scenarios carry no latencies (so judges are judged on errors
//! alone, and `sequential` spends all of α on errors); latency scenarios use 1% errors for both.
//!
//! Judges: `standard` (every 30 s on the last 30 s, min 10 requests), `threshold` (every 60 s:
//! error rate ≤ 2× baseline, p99 ≤ 1.5× baseline p99 = 60 ms, failure limit 0 — bounds a user who
//! knows the baseline would set), `mann-whitney` (Kayenta defaults, an interval every 60 s),
//! `sequential` (defaults), and `reference-sprt` (H0 = stable's observed rate, H1 = 2×, α 1%,
//! β 5%; errors only, not run in latency scenarios).
//!
//! Columns: false rollback = share of good-canary runs failed; detected = share of bad-canary runs
//! failed; median and p90 seconds to detect are over the detected runs; inconclusive = share of runs
//! ending inconclusive (the rest passed).
//!
//! `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench judges` (env JUDGE_RUNS=N to change the 2,000 runs).

#[allow(dead_code)]
mod common;

use std::fmt::Write as _;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Binomial, Distribution, LogNormal, Poisson};
use shipdeck::analysis::judges::{
    Decision, Judge, MannWhitneyConfig, MannWhitneyJudge, ReferenceSprt, Sample, SequentialConfig, SequentialJudge,
    StandardJudge, ThresholdConfig, ThresholdJudge,
};

const SECONDS: u32 = 300;
const STABLE_FACTOR: f64 = 9.0;
const P50_MS: f64 = 20.0;
const P99_MS: f64 = 40.0;
const Z99: f64 = 2.326_347_874;
const LATENCY_ERROR_RATE: f64 = 0.01;

#[derive(Clone, Copy)]
struct Scenario {
    base_error: f64,
    rps: f64,
    error_mult: f64,
    p99_mult: f64,
    latency: bool,
}

impl Scenario {
    fn good(&self) -> bool {
        self.error_mult == 1.0 && self.p99_mult == 1.0
    }
    fn label(&self) -> String {
        if self.latency {
            format!("latency p99 ×{} @ {} rps", self.p99_mult, self.rps)
        } else {
            format!("errors {}% ×{} @ {} rps", self.base_error * 100.0, self.error_mult, self.rps)
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    Fail(u32),
    Pass,
    Inconclusive,
}

const JUDGES: [&str; 5] = ["standard", "threshold", "mann-whitney", "sequential", "reference-sprt"];

fn judges(sc: &Scenario) -> Vec<Option<Box<dyn Judge>>> {
    let threshold = ThresholdConfig {
        max_error_rate: 2.0 * sc.base_error,
        max_p99_ms: 1.5 * P99_MS,
        windows_per_check: 60,
        ..Default::default()
    };
    vec![
        Some(Box::new(StandardJudge::new(10, 30))),
        Some(Box::new(ThresholdJudge::new(threshold))),
        Some(Box::new(MannWhitneyJudge::new(MannWhitneyConfig { windows_per_interval: 60, ..Default::default() }))),
        Some(Box::new(SequentialJudge::new(SequentialConfig { judge_latency: sc.latency, ..Default::default() }))),
        (!sc.latency).then(|| Box::new(ReferenceSprt::default()) as Box<dyn Judge>),
    ]
}

fn seed(scenario: usize, run: usize) -> u64 {
    (scenario as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (run as u64).wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5EED
}

fn errors(rng: &mut SmallRng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    Binomial::new(n, p.min(1.0)).map(|d| d.sample(rng)).unwrap_or(0)
}

fn run_once(sc: &Scenario, seed: u64) -> Vec<Option<Outcome>> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let canary_poisson = Poisson::new(sc.rps).ok();
    let stable_poisson = Poisson::new(sc.rps * STABLE_FACTOR).ok();
    let sigma = (P99_MS / P50_MS).ln() / Z99;
    let stable_lat = LogNormal::new(P50_MS.ln(), sigma).ok();
    let canary_lat = LogNormal::new(P50_MS.ln(), (sc.p99_mult * P99_MS / P50_MS).ln() / Z99).ok();
    let base = if sc.latency { LATENCY_ERROR_RATE } else { sc.base_error };
    let canary_rate = base * if sc.latency { 1.0 } else { sc.error_mult };
    let mut js = judges(sc);
    let mut out: Vec<Option<Outcome>> = js.iter().map(|_| None).collect();
    let mut canary = Sample::default();
    let mut stable = Sample::default();
    for t in 1..=SECONDS {
        let c = canary_poisson.as_ref().map(|d| d.sample(&mut rng) as u64).unwrap_or(0);
        let s = stable_poisson.as_ref().map(|d| d.sample(&mut rng) as u64).unwrap_or(0);
        canary.requests = c;
        canary.errors = errors(&mut rng, c, canary_rate);
        stable.requests = s;
        stable.errors = errors(&mut rng, s, base);
        canary.latencies_ms.clear();
        stable.latencies_ms.clear();
        if let (true, Some(cl), Some(sl)) = (sc.latency, canary_lat, stable_lat) {
            canary.latencies_ms.extend((0..c).map(|_| cl.sample(&mut rng)));
            stable.latencies_ms.extend((0..s).map(|_| sl.sample(&mut rng)));
        }
        let mut open = false;
        for (j, o) in js.iter_mut().zip(out.iter_mut()) {
            let Some(judge) = j else { continue };
            if o.is_some() {
                continue;
            }
            match judge.observe(&canary, &stable) {
                Decision::Continue => open = true,
                Decision::Fail { .. } => *o = Some(Outcome::Fail(t)),
                Decision::Pass { .. } => *o = Some(Outcome::Pass),
                Decision::Inconclusive { .. } => *o = Some(Outcome::Inconclusive),
            }
        }
        if !open {
            break;
        }
    }
    for (j, o) in js.iter_mut().zip(out.iter_mut()) {
        let Some(judge) = j else { continue };
        if o.is_none() {
            *o = Some(match judge.finish() {
                Decision::Fail { .. } => Outcome::Fail(SECONDS),
                Decision::Pass { .. } => Outcome::Pass,
                Decision::Inconclusive { .. } | Decision::Continue => Outcome::Inconclusive,
            });
        }
    }
    out
}

fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn main() {
    let runs: usize = std::env::var("JUDGE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let mut scenarios = Vec::new();
    for base_error in [0.001, 0.01, 0.05] {
        for rps in [1.0, 10.0, 100.0] {
            for error_mult in [1.0, 2.0, 5.0] {
                scenarios.push(Scenario { base_error, rps, error_mult, p99_mult: 1.0, latency: false });
            }
        }
    }
    for rps in [10.0, 100.0] {
        for p99_mult in [1.0, 1.5, 3.0] {
            scenarios.push(Scenario { base_error: LATENCY_ERROR_RATE, rps, error_mult: 1.0, p99_mult, latency: true });
        }
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let started = Instant::now();
    let mut table = String::new();
    let _ =
        writeln!(table, "Judge benchmark: {runs} seeded runs per scenario, 300 s each\n\n{}", common::machine_table());
    let _ = writeln!(
        table,
        "| scenario | judge | false rollback | detected | median s | p90 s | inconclusive | passed |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for (si, sc) in scenarios.iter().enumerate() {
        let outcomes: Vec<Vec<Option<Outcome>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        (t..runs).step_by(threads).map(|r| run_once(sc, seed(si, r))).collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        });
        let n = outcomes.len().max(1) as f64;
        for (ji, name) in JUDGES.iter().enumerate() {
            let per: Vec<Outcome> = outcomes.iter().filter_map(|o| o.get(ji).copied().flatten()).collect();
            if per.is_empty() {
                continue;
            }
            let mut times: Vec<u32> =
                per.iter().filter_map(|o| if let Outcome::Fail(t) = o { Some(*t) } else { None }).collect();
            times.sort_unstable();
            let share = |k: usize| format!("{:.1}%", 100.0 * k as f64 / n);
            let fails = share(times.len());
            let inconclusive = share(per.iter().filter(|o| **o == Outcome::Inconclusive).count());
            let passed = share(per.iter().filter(|o| **o == Outcome::Pass).count());
            let t = |q| percentile(&times, q).map_or("—".to_string(), |v| v.to_string());
            let (fr, det, med, p90) =
                if sc.good() { (fails, "".into(), "".into(), "".into()) } else { ("".into(), fails, t(0.5), t(0.9)) };
            let _ = writeln!(
                table,
                "| {} | {name} | {fr} | {det} | {med} | {p90} | {inconclusive} | {passed} |",
                sc.label()
            );
        }
        eprintln!("{} done after {:.0?}", sc.label(), started.elapsed());
    }
    let _ = writeln!(table, "\nTotal time {:.0?} on {threads} threads.", started.elapsed());
    println!("{table}");
}
