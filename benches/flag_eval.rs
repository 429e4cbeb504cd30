//! Flag evaluation throughput on one thread: the flag with targeting and a fractional
//! rollout, `{"if": [{"in": [{"var": "plan"}, ["pro", "enterprise"]]}, {"fractional": [["on",
//! 25], ["off", 75]]}, "off"]}`, over 1,000,000 distinct contexts (targeting key and plan),
//! built before the clock starts. The rule is compiled once, when the document is loaded.
//! Target: at least 4 million evaluations/s.
//!
//! The side-by-side `flagd-evaluation-engine` figure (the 40× comparison) is not
//! measured yet: whether that crate builds here has not been tried.
//!
//! `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench flag_eval`

#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{BUSY_MACHINE_PCT, CpuTimes};
use serde_json::{Value, json};
use shipdeck::flags::FlagSet;
use shipdeck::flags::eval::{Context, FlagEvaluator};

const CONTEXTS: usize = 1_000_000;
const ROUNDS: usize = 3;
const TARGET_PER_SEC: f64 = 4_000_000.0;

fn main() {
    let doc = json!({"flags": {"new-checkout-flow": {
        "state": "ENABLED",
        "variants": {"on": true, "off": false},
        "defaultVariant": "off",
        "targeting": {"if": [{"in": [{"var": "plan"}, ["pro", "enterprise"]]},
            {"fractional": [["on", 25], ["off", 75]]}, "off"]}
    }}});
    let set = match FlagSet::parse(&doc.to_string(), "bench") {
        Ok(s) => s,
        Err(e) => return eprintln!("flag document refused: {e}"),
    };
    let evaluator = match FlagEvaluator::new(&set) {
        Ok(e) => e,
        Err(e) => return eprintln!("flag document refused: {e}"),
    };
    let plans = ["free", "pro", "enterprise", "team"];
    let contexts: Vec<Context> = (0..CONTEXTS)
        .map(|i| {
            Context::from_iter([
                ("targetingKey", Value::String(format!("user-{i}"))),
                ("plan", Value::String(plans[i % plans.len()].into())),
            ])
        })
        .collect();

    println!("## Flag evaluation, one thread, {CONTEXTS} distinct contexts\n");
    println!("{}", common::machine_table());
    println!("| round | evaluations/s | ns/evaluation | `on` share | others' CPU | target ≥ 4M/s |");
    println!("|---:|---:|---:|---:|---:|---|");
    let mut best = 0.0f64;
    for round in 1..=ROUNDS {
        let cpu0 = CpuTimes::now().ok();
        let start = Instant::now();
        let mut on = 0usize;
        for c in &contexts {
            let r = evaluator.evaluate(black_box("new-checkout-flow"), c);
            on += usize::from(r.variant == Some("on"));
        }
        let secs = start.elapsed().as_secs_f64();
        let others = cpu0.zip(CpuTimes::now().ok()).map(|(a, b)| b.others_pct(&a, secs));
        let rate = CONTEXTS as f64 / secs;
        best = best.max(rate);
        let busy = others.map_or("?".to_string(), |o| {
            format!("{o:.0}%{}", if o > BUSY_MACHINE_PCT { " (busy machine)" } else { "" })
        });
        println!(
            "| {round} | {:.2}M | {:.0} | {:.1}% | {busy} | {} |",
            rate / 1e6,
            1e9 / rate,
            100.0 * on as f64 / CONTEXTS as f64,
            if rate >= TARGET_PER_SEC { "met" } else { "not met" }
        );
    }
    println!("\nBest: {:.2}M evaluations/s.", best / 1e6);
}
