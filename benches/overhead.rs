//! Overhead of the local cluster: 30 apps × 3 environments, 4 pods each, load running.
//! Targets: resident memory under 150 MB, and CPU under 10% of one core per 1,000 req/s.
//!
//! CPU is the whole process's utime + stime (`/proc/self/stat`) over a 20 s window after a
//! 5 s warm-up, at two load levels; the achieved rate is the delta of
//! `LocalCluster::routed_requests()` over the same window. The load generator runs in this
//! process, so the CPU measured includes it.
//!
//! `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench overhead`

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::{BUSY_MACHINE_PCT, CpuTimes};
use shipdeck::cluster::local::LocalCluster;
use shipdeck::cluster::{Cluster, Target};
use shipdeck::config::Estate;

const ENVS: [&str; 3] = ["dev", "staging", "prod"];
const APPS: usize = 30;
const REPLICAS: u32 = 4;
/// Total requests/s across the 90 workloads; 0 measures the fixed cost of an idle cluster.
const LEVELS: [f64; 3] = [0.0, 500.0, 2_000.0];
const WARMUP: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(20);
const TARGET_RSS_MB: f64 = 150.0;
const TARGET_CPU_PER_1K: f64 = 10.0;

fn workloads() -> usize {
    APPS * ENVS.len()
}

fn estate_toml(total_rps: f64) -> String {
    let per_app = total_rps / workloads() as f64;
    let mut s = String::new();
    for env in ENVS {
        let _ = writeln!(s, "[[environments]]\nname = \"{env}\"\n");
    }
    for i in 0..APPS {
        let _ = writeln!(
            s,
            "[[apps]]\nname = \"app{i:02}\"\nreplicas = {REPLICAS}\nrps = {per_app}\n\n\
             [[apps.versions]]\nversion = \"1.0.0\"\np50_ms = 20\np99_ms = 40\n"
        );
    }
    s
}

/// A `kB` line of `/proc/self/status` (`VmRSS`, `VmHWM`), in MB.
fn status_mb(key: &str) -> Result<f64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("reading /proc/self/status: {e}"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .ok_or_else(|| format!("no {key} in /proc/self/status"))?;
    Ok(kb / 1024.0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

struct Row {
    level: f64,
    achieved: f64,
    cpu_pct: f64,
    rss_mb: f64,
    /// CPU the rest of the machine used over the window (% of one core): a noisy neighbour
    /// on a small machine slows this process down and inflates its CPU time.
    others_pct: f64,
    steal_pct: f64,
    /// The seconds of the window in which the rest of the machine was quiet (below
    /// `BUSY_MACHINE_PCT`), and this process's CPU and requests in them.
    quiet_secs: f64,
    quiet_cpu_secs: f64,
    quiet_requests: u64,
}

impl Row {
    /// None when idle: the targets are about loaded clusters.
    fn cpu_per_1k(&self) -> Option<f64> {
        (self.level > 0.0 && self.achieved > 0.0).then(|| self.cpu_pct * 1000.0 / self.achieved)
    }

    fn quiet_cpu_pct(&self) -> Option<f64> {
        (self.quiet_secs > 0.0).then(|| 100.0 * self.quiet_cpu_secs / self.quiet_secs)
    }

    fn quiet_cpu_per_1k(&self) -> Option<f64> {
        (self.level > 0.0 && self.quiet_requests > 0)
            .then(|| 100.0 * self.quiet_cpu_secs * 1000.0 / self.quiet_requests as f64)
    }
}

async fn wait_all_ready(cluster: &LocalCluster, targets: &[Target]) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for t in targets {
        let mut rx = cluster.watch(t).await.map_err(|e| format!("watching {t}: {e}"))?;
        while rx.borrow_and_update().replicas("1.0.0").ready < REPLICAS {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(format!("{t}: {REPLICAS} pods did not get ready within 30 s")),
            }
        }
    }
    Ok(())
}

async fn measure(cluster: &LocalCluster, targets: &[Target], level: f64) -> Result<Row, String> {
    let per_app = level / targets.len() as f64;
    for t in targets {
        cluster.set_load(t, per_app);
    }
    tokio::time::sleep(WARMUP).await;
    let (cpu0, req0, t0) = (CpuTimes::now()?, cluster.routed_requests(), Instant::now());
    // Second by second as well, to tell the seconds a neighbour was busy from the others.
    let (mut prev_cpu, mut prev_req, mut prev_t) = (cpu0, req0, t0);
    let (mut quiet_secs, mut quiet_cpu_secs, mut quiet_requests) = (0.0, 0.0, 0);
    for k in 1..=WINDOW.as_secs() {
        tokio::time::sleep_until(tokio::time::Instant::from_std(t0 + Duration::from_secs(k))).await;
        let (cpu, req, t) = (CpuTimes::now()?, cluster.routed_requests(), Instant::now());
        let secs = (t - prev_t).as_secs_f64();
        if cpu.others_pct(&prev_cpu, secs) + cpu.steal_pct(&prev_cpu, secs) < BUSY_MACHINE_PCT {
            quiet_secs += secs;
            quiet_cpu_secs += cpu.process - prev_cpu.process;
            quiet_requests += req - prev_req;
        }
        (prev_cpu, prev_req, prev_t) = (cpu, req, t);
    }
    let (cpu1, req1, secs) = (prev_cpu, prev_req, (prev_t - t0).as_secs_f64());
    Ok(Row {
        level,
        achieved: (req1 - req0) as f64 / secs,
        cpu_pct: cpu1.process_pct(&cpu0, secs),
        rss_mb: status_mb("VmRSS")?,
        others_pct: cpu1.others_pct(&cpu0, secs),
        steal_pct: cpu1.steal_pct(&cpu0, secs),
        quiet_secs,
        quiet_cpu_secs,
        quiet_requests,
    })
}

async fn run() -> Result<(), String> {
    let rss_before = status_mb("VmRSS")?;
    let estate = Estate::parse(&estate_toml(0.0), "overhead bench estate").map_err(|e| e.to_string())?;
    let apps = estate.targets();
    let targets: Vec<Target> = apps.iter().map(|(t, _)| t.clone()).collect();
    let started = Instant::now();
    let cluster =
        LocalCluster::start(apps, BTreeMap::new()).await.map_err(|e| format!("starting the local cluster: {e}"))?;
    wait_all_ready(&cluster, &targets).await?;
    let ready_after = started.elapsed();

    let mut rows = Vec::new();
    for level in LEVELS {
        rows.push(measure(&cluster, &targets, level).await?);
    }
    let peak = status_mb("VmHWM")?;
    let threads = threads();
    let pods: usize = {
        let mut n = 0;
        for t in &targets {
            n += cluster.state(t).await.map_err(|e| e.to_string())?.pods.len();
        }
        n
    };
    cluster.shutdown();

    println!("## Local cluster overhead: {APPS} apps × {} environments, {REPLICAS} pods each\n", ENVS.len());
    println!("{}", common::machine_table());
    println!(
        "Setup: {} workloads, {pods} pods, versions with p50 20 ms / p99 40 ms; the load is spread evenly over the \
         workloads (each workload's rate = total / {}, set with `LocalCluster::set_load`). CPU = utime + stime of \
         the whole process (/proc/self/stat) over a {} s window after a {} s warm-up, **including the load \
         generator, which runs in the same process** (as it does in `shipdeck`); achieved req/s = \
         `routed_requests()` delta over the same window; RSS = VmRSS at the end of the window. {threads} threads; \
         all pods ready {:.1} s after start; RSS before the cluster started {rss_before:.1} MB, peak (VmHWM) \
         {peak:.1} MB.\n",
        targets.len(),
        targets.len(),
        WINDOW.as_secs(),
        WARMUP.as_secs(),
        ready_after.as_secs_f64(),
    );
    println!(
        "| load (req/s) | achieved (req/s) | CPU (% of one core) | CPU per 1,000 req/s (% of one core) | RSS (MB) | CPU target (< {TARGET_CPU_PER_1K:.0}% per 1,000 req/s) | RSS target (< {TARGET_RSS_MB:.0} MB) |"
    );
    println!("|---:|---:|---:|---:|---:|---|---|");
    let opt = |x: Option<f64>, digits: usize| x.map_or_else(|| "—".to_string(), |x| format!("{x:.digits$}"));
    for r in &rows {
        let cpu_verdict = match r.cpu_per_1k() {
            Some(x) if x < TARGET_CPU_PER_1K => "PASS",
            Some(_) => "FAIL",
            None => "— (idle)",
        };
        println!(
            "| {:.0} | {:.0} | {:.1} | {} | {:.1} | {cpu_verdict} | {} |",
            r.level,
            r.achieved,
            r.cpu_pct,
            opt(r.cpu_per_1k(), 2),
            r.rss_mb,
            if r.rss_mb < TARGET_RSS_MB { "PASS" } else { "FAIL" },
        );
    }
    println!(
        "\nThe rest of the machine over the same windows (a busy neighbour on a small machine slows this process \
         down and inflates its CPU time), and the figures from only the seconds in which other processes and steal \
         stayed below {BUSY_MACHINE_PCT:.0}% of a core:\n"
    );
    println!(
        "| load (req/s) | other processes (% of one core) | steal (% of one core) | quiet seconds (of {}) | CPU in quiet seconds (% of one core) | CPU per 1,000 req/s in quiet seconds |",
        WINDOW.as_secs()
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {:.0} | {:.1} | {:.1} | {:.0} | {} | {} |",
            r.level,
            r.others_pct,
            r.steal_pct,
            r.quiet_secs,
            opt(r.quiet_cpu_pct(), 1),
            opt(r.quiet_cpu_per_1k(), 2)
        );
    }
    let busiest = rows.iter().map(|r| r.others_pct + r.steal_pct).fold(0.0, f64::max);
    if busiest > BUSY_MACHINE_PCT {
        println!(
            "\n**Warning: other processes used up to {busiest:.0}% of a core during a window: the machine was busy \
             and the whole-window CPU figures are inflated; see the quiet seconds, or run again on a quiet machine.**"
        );
    }
    let loaded: Vec<&Row> = rows.iter().filter(|r| r.level > 0.0).collect();
    if let (Some(lo), Some(hi)) = (loaded.first(), loaded.last())
        && hi.achieved > lo.achieved
    {
        let marginal = (hi.cpu_pct - lo.cpu_pct) * 1000.0 / (hi.achieved - lo.achieved);
        println!(
            "\nMarginal cost between {:.0} and {:.0} req/s: {marginal:.2}% of one core per 1,000 req/s; \
             the rest of each level's figure is the fixed cost the idle row shows.",
            lo.level, hi.level
        );
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("overhead bench failed: {e}");
        std::process::exit(1);
    }
}
