//! Flag propagation on the local cluster: from the engine's `Command::SetFlag { enabled: false }`
//! to the local pods serving the disabled value. Target: under 100 ms (p99, over 100 rounds).
//!
//! The flag store is a flagd file in a temporary directory, wired as the host wires it: the
//! engine saves the change and emits `Event::Flag`, `host::spawn_flag_sync` reloads the file
//! into a new evaluator and swaps it into the cluster. The pods evaluate the flag per request
//! (its version declares an effect for it) and name the variant served in
//! `x-shipdeck-flag-<flag>`. Each round turns the flag on, waits until the pods serve it,
//! keeps a few client connections sending requests back to back through the router (varied
//! `x-user-id` and plan), issues the disable at `t0`, and takes as the latency the send instant
//! of the first request from which every answer carried the disabled value (the code
//! default), minus `t0` (clamped at 0).
//!
//! `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench flag_propagation`

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{BUSY_MACHINE_PCT, CpuTimes, percentile};
use shipdeck::cluster::local::LocalCluster;
use shipdeck::cluster::local::flags::CODE_DEFAULT;
use shipdeck::cluster::{Cluster, Target};
use shipdeck::config::Estate;
use shipdeck::engine::{Command, Engine};
use shipdeck::flags::FileFlagStore;
use shipdeck::store::Store;

const ENV: &str = "bench";
const APP: &str = "web";
const VERSION: &str = "1.0.0";
const FLAG: &str = "new-checkout";
const HEADER: &str = "x-shipdeck-flag-new-checkout";
const ROUNDS: usize = 100;
/// Client connections sending back to back: four give sub-millisecond spacing between sends.
const CLIENTS: usize = 4;
/// Requests the clients complete before the change, so their connections are warm.
const WARM_REQUESTS: usize = 40;
/// How long the clients keep sending after the change.
const AFTER_CHANGE: Duration = Duration::from_millis(200);
/// Background load from the cluster's own load generator.
const BACKGROUND_RPS: u32 = 200;
const TARGET_MS: f64 = 100.0;
const WAIT: Duration = Duration::from_secs(15);

fn estate_toml() -> String {
    format!(
        r#"
[[environments]]
name = "{ENV}"

[[apps]]
name = "{APP}"
replicas = 2
rps = {BACKGROUND_RPS}
initial_version = "{VERSION}"

[[apps.versions]]
version = "{VERSION}"
p50_ms = 1
p99_ms = 2
ready_after = "0s"
flag_effects = [{{ flag = "{FLAG}", variant = "on", extra_latency_ms = 1 }}]
"#
    )
}

/// Paying plans get a 50/50 split, everyone else `off`: targeting and `fractional` both run.
fn flags_json() -> String {
    serde_json::json!({"flags": {FLAG: {
        "state": "ENABLED",
        "variants": {"on": true, "off": false},
        "defaultVariant": "off",
        "targeting": {"if": [
            {"in": [{"var": "plan"}, ["pro", "enterprise"]]},
            {"fractional": [["on", 50], ["off", 50]]},
            "off"
        ]}
    }}})
    .to_string()
}

struct Sample {
    sent: Instant,
    /// The answer carried the disabled value.
    disabled: bool,
    error: bool,
}

/// Sends requests back to back until `stop`, noting when each was sent and what it was served.
async fn client_loop(
    client: reqwest::Client,
    url: String,
    seed: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> Vec<Sample> {
    const PLANS: [&str; 3] = ["free", "pro", "enterprise"];
    let base = seed * 7919;
    let request = |n: usize| {
        let n = base + n;
        client
            .get(&url)
            .header("x-user-id", format!("user-{}", n % 10_000))
            .header("x-shipdeck-ctx-plan", PLANS[n % PLANS.len()])
    };
    let classify = |ok: bool, headers: &reqwest::header::HeaderMap| {
        let variant = headers.get(HEADER).and_then(|v| v.to_str().ok());
        (variant == Some(CODE_DEFAULT), !ok || variant.is_none())
    };
    let sent = common::send_until(stop, done, request, classify).await;
    sent.into_iter().map(|(sent, (disabled, error))| Sample { sent, disabled, error }).collect()
}

struct Round {
    latency: Duration,
    samples: usize,
    errors: usize,
    /// Disabled answers sent after the settle point: the evidence that it held.
    disabled_after_settle: usize,
    /// How far the send before the settle point (or t0, if later) lies before it.
    bracket: Duration,
    /// Time `execute(SetFlag)` took to return.
    call: Duration,
}

/// Sends single requests until one is served something other than the disabled value.
async fn until_enabled(client: &reqwest::Client, url: &str) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    let mut n = 0usize;
    loop {
        n += 1;
        let resp = client
            .get(url)
            .header("x-user-id", format!("user-{n}"))
            .header("x-shipdeck-ctx-plan", "pro")
            .send()
            .await
            .map_err(|e| format!("request: {e}"))?;
        let variant = resp.headers().get(HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let _ = resp.bytes().await;
        if variant.is_some_and(|v| v != CODE_DEFAULT) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the pods did not serve the enabled flag within {WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn one_round(engine: &Engine, client: &reqwest::Client, url: &str) -> Result<Round, String> {
    engine
        .execute("bench", Command::SetFlag { key: FLAG.into(), enabled: true })
        .await
        .map_err(|e| format!("enable: {e}"))?;
    until_enabled(client, url).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(client_loop(client.clone(), url.to_string(), i, stop.clone(), done.clone())))
        .collect();
    let warm_deadline = Instant::now() + WAIT;
    while done.load(Ordering::Relaxed) < WARM_REQUESTS {
        if Instant::now() > warm_deadline {
            stop.store(true, Ordering::Relaxed);
            return Err("the clients got no answers through the router".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let t0 = Instant::now();
    let disable = engine.execute("bench", Command::SetFlag { key: FLAG.into(), enabled: false }).await;
    let call = t0.elapsed();
    if let Err(e) = disable {
        stop.store(true, Ordering::Relaxed);
        return Err(format!("disable: {e}"));
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(t0 + AFTER_CHANGE)).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for c in clients {
        samples.extend(c.await.map_err(|e| format!("client task: {e}"))?);
    }
    samples.sort_by_key(|s| s.sent);
    if samples.iter().any(|s| s.sent < t0 && s.disabled) {
        return Err("a request sent before the disable was served the disabled value".into());
    }
    let errors = samples.iter().filter(|s| s.error).count();
    let settle = match samples.iter().rposition(|s| !s.disabled) {
        None => 0,
        Some(i) if i + 1 == samples.len() => {
            return Err(format!("the pods still served the enabled flag {AFTER_CHANGE:?} after the disable"));
        }
        Some(i) => i + 1,
    };
    let latency = samples[settle].sent.saturating_duration_since(t0);
    let lower = settle.checked_sub(1).map_or(t0, |i| samples[i].sent.max(t0));
    let bracket = samples[settle].sent.saturating_duration_since(lower);
    Ok(Round { latency, samples: samples.len(), errors, disabled_after_settle: samples.len() - settle, bracket, call })
}

async fn run() -> Result<(), String> {
    let estate = Estate::parse(&estate_toml(), "flag-propagation bench estate").map_err(|e| e.to_string())?;
    let estate = Arc::new(estate);
    let target = Target::new(ENV, APP);
    let cluster = LocalCluster::start(estate.targets(), BTreeMap::new())
        .await
        .map_err(|e| format!("starting the local cluster: {e}"))?;
    let store = Arc::new(Store::open_in_memory().map_err(|e| format!("opening the store: {e}"))?);
    let engine = Engine::new(estate.clone(), cluster.clone(), cluster.clone(), store, false);
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let flags = FileFlagStore::open(&dir.path().join("flags.json"), Some(&flags_json())).map_err(|e| e.to_string())?;
    let flags = Arc::new(flags);
    engine.attach_flags(flags.clone());
    let sync = shipdeck::host::spawn_flag_sync(&engine, cluster.clone(), flags).await;

    let mut rx = cluster.watch(&target).await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while rx.borrow_and_update().replicas(VERSION).ready < 2 {
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return Err("the pods did not get ready".into()),
        }
    }
    let entry = cluster.state(&target).await.map_err(|e| e.to_string())?.entry_url.ok_or("no entry URL")?;
    let url = format!("{entry}/api/v1/users");
    let client = shipdeck::http::client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;

    let started = Instant::now();
    let cpu0 = CpuTimes::now()?;
    let mut rounds = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let round = one_round(&engine, &client, &url).await.map_err(|e| format!("round {}/{ROUNDS}: {e}", i + 1))?;
        rounds.push(round);
    }
    let elapsed = started.elapsed();
    let cpu1 = CpuTimes::now()?;
    let others = cpu1.others_pct(&cpu0, elapsed.as_secs_f64()) + cpu1.steal_pct(&cpu0, elapsed.as_secs_f64());
    let per_variant = cluster.flag_metrics(&target, FLAG, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    sync.abort();
    engine.shutdown().await;
    cluster.shutdown();

    let mut ms: Vec<f64> = rounds.iter().map(|r| r.latency.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let p99 = percentile(&ms, 99.0);
    let pass = p99 < TARGET_MS;
    let samples: usize = rounds.iter().map(|r| r.samples).sum();
    let errors: usize = rounds.iter().map(|r| r.errors).sum();
    let fewest_after = rounds.iter().map(|r| r.disabled_after_settle).min().unwrap_or(0);
    let sorted_ms = |f: fn(&Round) -> Duration| {
        let mut v: Vec<f64> = rounds.iter().map(|r| f(r).as_secs_f64() * 1000.0).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let brackets = sorted_ms(|r| r.bracket);
    let calls = sorted_ms(|r| r.call);

    println!("## Flag propagation: `SetFlag {{ enabled: false }}` to the local pods serving the disabled value\n");
    println!("{}", common::machine_table());
    println!(
        "Setup: one app, 2 replicas (p50 1 ms / p99 2 ms), background load {BACKGROUND_RPS} req/s; the flag \
         `{FLAG}` targets paying plans with a 50/50 `fractional` split, in a flagd file; the engine saves the \
         change and emits `Event::Flag`, `host::spawn_flag_sync` reloads the file and swaps the evaluator into \
         the cluster. Each round enables the flag and waits until a pod serves it, keeps {CLIENTS} client \
         connections sending back to back through the router (varied `x-user-id`, `x-shipdeck-ctx-plan`), \
         issues the disable through `Engine::execute` at t0 and keeps sending for {} ms. Latency = send instant \
         of the first request from which every answer carried `{HEADER}: {CODE_DEFAULT}`, minus t0 (clamped \
         at 0).\n",
        AFTER_CHANGE.as_millis()
    );
    println!("| rounds | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | target | result |");
    println!("|---:|---:|---:|---:|---:|---|---|");
    println!(
        "| {} | {:.2} | {:.2} | {:.2} | {:.2} | p99 < {TARGET_MS:.0} ms | {} |",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        p99,
        ms.last().copied().unwrap_or(f64::NAN),
        if pass { "PASS" } else { "FAIL" }
    );
    println!();
    println!(
        "| client requests | errors | resolution: gap before the settle point, p50 / max (ms) | `execute(SetFlag)` returned, p50 / max (ms) | fewest disabled answers after settling, per round | wall time (s) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {samples} | {errors} | {:.2} / {:.2} | {:.2} / {:.2} | {fewest_after} | {:.1} |",
        percentile(&brackets, 50.0),
        brackets.last().copied().unwrap_or(f64::NAN),
        percentile(&calls, 50.0),
        calls.last().copied().unwrap_or(f64::NAN),
        elapsed.as_secs_f64()
    );
    let counts: Vec<String> = per_variant.iter().map(|(v, m)| format!("`{v}` {}", m.requests)).collect();
    println!("\nRequests per variant the router recorded over the last 60 s: {}.", counts.join(", "));
    println!(
        "\nThis process used {:.0}% of one core during the run; other processes and steal {others:.0}%.",
        cpu1.process_pct(&cpu0, elapsed.as_secs_f64())
    );
    if others > BUSY_MACHINE_PCT {
        println!("\n**Warning: the machine was busy with other work during the run; latencies may be inflated.**");
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("flag_propagation bench failed: {e}");
        std::process::exit(1);
    }
}
