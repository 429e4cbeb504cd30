//! Abort latency on the local cluster: from the abort command to 100% of routed requests on
//! stable. Target: p99 under 50 ms over 100 aborts.
//!
//! Each round deploys the canary (50% of traffic, then an indefinite pause) through the
//! engine, keeps a few client connections sending requests back to back through the router,
//! issues `Command::Abort` at `t0`, and takes as the latency the send instant of the first
//! request from which every request was answered by stable, minus `t0` (clamped at 0).
//!
//! `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench abort_latency`

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{BUSY_MACHINE_PCT, CpuTimes, percentile};
use shipdeck::cluster::local::LocalCluster;
use shipdeck::cluster::{Cluster, Routing, Target};
use shipdeck::config::Estate;
use shipdeck::engine::{Command, Engine, Event};
use shipdeck::model::{Status, StrategyKind};
use shipdeck::store::Store;
use tokio::sync::broadcast;

const ENV: &str = "bench";
const APP: &str = "web";
const STABLE: &str = "1.0.0";
const CANARY: &str = "2.0.0";
const ABORTS: usize = 100;
/// Client connections sending back to back: four give sub-millisecond spacing between sends.
const CLIENTS: usize = 4;
/// Requests the clients complete before the abort, so their connections are warm.
const WARM_REQUESTS: usize = 40;
/// How long the clients keep sending after the abort.
const AFTER_ABORT: Duration = Duration::from_millis(200);
/// Background load from the cluster's own load generator.
const BACKGROUND_RPS: u32 = 200;
const TARGET_P99_MS: f64 = 50.0;
/// Bound on every wait (a release reaching its pause, finishing, pods leaving).
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
strategy = "canary"
initial_version = "{STABLE}"

[apps.canary]
abort_scale_down_delay = "0s"
steps = [{{ set_weight = 50 }}, {{ pause = {{}} }}]

[[apps.versions]]
version = "{STABLE}"
p50_ms = 1
p99_ms = 2
ready_after = "0s"

[[apps.versions]]
version = "{CANARY}"
p50_ms = 1
p99_ms = 2
ready_after = "0s"
"#
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Stable,
    Canary,
    /// An error, or an answer without a known version.
    Other,
}

struct Sample {
    sent: Instant,
    answer: Answer,
}

/// What one abort showed.
struct Round {
    latency: Duration,
    samples: usize,
    canary_before: usize,
    before: usize,
    errors: usize,
    /// Stable answers sent after the settle point: the evidence that it held.
    stable_after_settle: usize,
    /// How far the send before the settle point (or t0, if later) lies before it: the true
    /// latency is between `latency - bracket` and `latency`.
    bracket: Duration,
    /// Time `execute(Abort)` took to return.
    call: Duration,
}

/// Sends requests back to back until `stop`, noting when each was sent and who answered.
async fn client_loop(
    client: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> Vec<Sample> {
    let classify = |ok: bool, headers: &reqwest::header::HeaderMap| match (
        ok,
        headers.get("x-shipdeck-version").and_then(|v| v.to_str().ok()),
    ) {
        (true, Some(STABLE)) => Answer::Stable,
        (true, Some(CANARY)) => Answer::Canary,
        _ => Answer::Other,
    };
    let sent = common::send_until(stop, done, |_| client.get(&url), classify).await;
    sent.into_iter().map(|(sent, answer)| Sample { sent, answer }).collect()
}

/// Waits for the first event `pick` maps to `Some`.
async fn wait_event<T>(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<Result<T, String>>,
) -> Result<T, String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return Err(format!("timed out after {WAIT:?} waiting for {what}")),
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                return Err(format!("event stream closed waiting for {what}"));
            }
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                return Err(format!("missed {n} events waiting for {what}"));
            }
            Ok(Ok(event)) => {
                if let Some(r) = pick(&event) {
                    return r;
                }
            }
        }
    }
}

/// Waits until no pod of `version` is left (terminating ones included) and all traffic is on
/// stable.
async fn wait_gone(cluster: &LocalCluster, target: &Target, version: &str) -> Result<(), String> {
    let mut rx = cluster.watch(target).await.map_err(|e| format!("watching {target}: {e}"))?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        {
            let s = rx.borrow_and_update();
            if s.pods.iter().all(|p| p.version != version) && s.routing == Routing::all_to(STABLE) {
                return Ok(());
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("the cluster stopped publishing state".into()),
            Err(_) => return Err(format!("timed out after {WAIT:?} waiting for the {version} pods to go")),
        }
    }
}

async fn one_round(
    engine: &Engine,
    cluster: &LocalCluster,
    client: &reqwest::Client,
    url: &str,
    target: &Target,
) -> Result<Round, String> {
    let mut events = engine.subscribe();
    let deploy = Command::Deploy {
        app: APP.into(),
        env: ENV.into(),
        version: CANARY.into(),
        strategy: Some(StrategyKind::Canary),
        flags: Vec::new(),
    };
    let outcome = engine.execute("bench", deploy).await.map_err(|e| format!("deploy: {e}"))?;
    let id = outcome.release.map(|r| r.id).ok_or("deploy returned no release")?;
    wait_event(&mut events, "the canary to pause at 50%", |e| match e {
        Event::Release { release, .. } if release.id == id && release.status == Status::Paused => {
            Some(if release.weight == 50 {
                Ok(())
            } else {
                Err(format!("paused at weight {} instead of 50", release.weight))
            })
        }
        Event::Finished { release_id, status } if *release_id == id => {
            Some(Err(format!("release {id} ended {status} before its pause")))
        }
        _ => None,
    })
    .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client_loop(client.clone(), url.to_string(), stop.clone(), done.clone())))
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
    let abort = engine.execute("bench", Command::Abort { app: APP.into(), env: ENV.into() }).await;
    let call = t0.elapsed();
    if let Err(e) = abort {
        stop.store(true, Ordering::Relaxed);
        return Err(format!("abort: {e}"));
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(t0 + AFTER_ABORT)).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for c in clients {
        samples.extend(c.await.map_err(|e| format!("client task: {e}"))?);
    }
    samples.sort_by_key(|s| s.sent);

    let before: Vec<&Sample> = samples.iter().filter(|s| s.sent < t0).collect();
    let canary_before = before.iter().filter(|s| s.answer == Answer::Canary).count();
    let errors = samples.iter().filter(|s| s.answer == Answer::Other).count();
    // The first request from which every request was answered by stable.
    let settle = match samples.iter().rposition(|s| s.answer != Answer::Stable) {
        None => 0,
        Some(i) if i + 1 == samples.len() => {
            return Err(format!(
                "traffic was not all on stable {AFTER_ABORT:?} after the abort (last request answered by {})",
                if samples[i].answer == Answer::Canary { "the canary" } else { "an error" }
            ));
        }
        Some(i) => i + 1,
    };
    let latency = samples[settle].sent.saturating_duration_since(t0);
    let lower = settle.checked_sub(1).map_or(t0, |i| samples[i].sent.max(t0));
    let bracket = samples[settle].sent.saturating_duration_since(lower);

    wait_event(&mut events, "the aborted release to finish", |e| match e {
        Event::Finished { release_id, status } if *release_id == id => Some(if *status == Status::Aborted {
            Ok(())
        } else {
            Err(format!("release {id} finished {status}, not aborted"))
        }),
        _ => None,
    })
    .await?;
    wait_gone(cluster, target, CANARY).await?;

    Ok(Round {
        latency,
        samples: samples.len(),
        canary_before,
        before: before.len(),
        errors,
        stable_after_settle: samples.len() - settle,
        bracket,
        call,
    })
}

async fn run() -> Result<(), String> {
    let estate = Estate::parse(&estate_toml(), "abort-latency bench estate").map_err(|e| e.to_string())?;
    let estate = Arc::new(estate);
    let target = Target::new(ENV, APP);
    let cluster = LocalCluster::start(estate.targets(), BTreeMap::new())
        .await
        .map_err(|e| format!("starting the local cluster: {e}"))?;
    let store = Arc::new(Store::open_in_memory().map_err(|e| format!("opening the store: {e}"))?);
    let engine = Engine::new(estate.clone(), cluster.clone(), cluster.clone(), store, false);

    // Stable must be up before the first deploy's health check.
    let mut rx = cluster.watch(&target).await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while rx.borrow_and_update().replicas(STABLE).ready < 2 {
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return Err("stable pods did not get ready".into()),
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
    let mut rounds = Vec::with_capacity(ABORTS);
    for i in 0..ABORTS {
        let round = one_round(&engine, &cluster, &client, &url, &target)
            .await
            .map_err(|e| format!("abort {}/{ABORTS}: {e}", i + 1))?;
        rounds.push(round);
    }
    let elapsed = started.elapsed();
    let cpu1 = CpuTimes::now()?;
    let others = cpu1.others_pct(&cpu0, elapsed.as_secs_f64()) + cpu1.steal_pct(&cpu0, elapsed.as_secs_f64());
    engine.shutdown().await;
    cluster.shutdown();

    let mut ms: Vec<f64> = rounds.iter().map(|r| r.latency.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let p99 = percentile(&ms, 99.0);
    let pass = p99 < TARGET_P99_MS;
    let samples: usize = rounds.iter().map(|r| r.samples).sum();
    let before: usize = rounds.iter().map(|r| r.before).sum();
    let canary_before: usize = rounds.iter().map(|r| r.canary_before).sum();
    let errors: usize = rounds.iter().map(|r| r.errors).sum();
    let fewest_after = rounds.iter().map(|r| r.stable_after_settle).min().unwrap_or(0);
    let sorted_ms = |f: fn(&Round) -> Duration| {
        let mut v: Vec<f64> = rounds.iter().map(|r| f(r).as_secs_f64() * 1000.0).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let brackets = sorted_ms(|r| r.bracket);
    let calls = sorted_ms(|r| r.call);

    println!("## Abort latency: abort command to 100% of routed requests on stable (local cluster)\n");
    println!("{}", common::machine_table());
    println!(
        "Setup: one app, 2 replicas, versions with p50 1 ms / p99 2 ms, background load {BACKGROUND_RPS} req/s; \
         canary steps `set_weight = 50`, `pause = {{}}`; `abort_scale_down_delay = \"0s\"`. Each round deploys \
         the canary through the engine, waits for the pause at 50%, keeps {CLIENTS} client connections sending \
         back to back through the router, issues `Command::Abort` at t0 and keeps sending for {} ms. Latency = \
         send instant of the first request from which every request was answered by stable, minus t0 (clamped \
         at 0).\n",
        AFTER_ABORT.as_millis()
    );
    println!("| aborts | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | target | result |");
    println!("|---:|---:|---:|---:|---:|---|---|");
    println!(
        "| {} | {:.2} | {:.2} | {:.2} | {:.2} | p99 < {TARGET_P99_MS:.0} ms | {} |",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        p99,
        ms.last().copied().unwrap_or(f64::NAN),
        if pass { "PASS" } else { "FAIL" }
    );
    println!();
    println!(
        "| client requests | answered by the canary before the abort | errors | resolution: gap before the settle point, p50 / max (ms) | `execute(Abort)` returned, p50 / max (ms) | fewest stable answers after settling, per round | wall time (s) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {samples} | {canary_before} of {before} ({:.0}%) | {errors} | {:.2} / {:.2} | {:.2} / {:.2} | {fewest_after} | {:.1} |",
        100.0 * canary_before as f64 / before.max(1) as f64,
        percentile(&brackets, 50.0),
        brackets.last().copied().unwrap_or(f64::NAN),
        percentile(&calls, 50.0),
        calls.last().copied().unwrap_or(f64::NAN),
        elapsed.as_secs_f64()
    );
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
        eprintln!("abort_latency bench failed: {e}");
        std::process::exit(1);
    }
}
