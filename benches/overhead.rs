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

use shipdeck::cluster::local::LocalCluster;
use shipdeck::cluster::{Cluster, Target};
use shipdeck::config::Estate;

const ENVS: [&str; 3] = ["dev", "staging", "prod"];
const APPS: usize = 30;
const REPLICAS: u32 = 4;
/// Total requests/s across the 90 workloads.
const LEVELS: [f64; 2] = [500.0, 2_000.0];
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

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> Result<f64, String> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| format!("reading /proc/self/stat: {e}"))?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("/proc/self/stat has no ')'")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); `rest` starts at field 3 (state).
    let ticks = |i: usize| -> Result<f64, String> {
        fields.get(i).and_then(|f| f.parse::<f64>().ok()).ok_or_else(|| format!("/proc/self/stat field {}", i + 3))
    };
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return Err("sysconf(_SC_CLK_TCK) failed".into());
    }
    Ok((ticks(11)? + ticks(12)?) / hz as f64)
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
}

impl Row {
    fn cpu_per_1k(&self) -> f64 {
        self.cpu_pct * 1000.0 / self.achieved.max(f64::MIN_POSITIVE)
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
    let (cpu0, req0, t0) = (cpu_seconds()?, cluster.routed_requests(), Instant::now());
    tokio::time::sleep(WINDOW).await;
    let (cpu1, req1, secs) = (cpu_seconds()?, cluster.routed_requests(), t0.elapsed().as_secs_f64());
    Ok(Row {
        level,
        achieved: (req1 - req0) as f64 / secs,
        cpu_pct: 100.0 * (cpu1 - cpu0) / secs,
        rss_mb: status_mb("VmRSS")?,
    })
}

async fn run() -> Result<(), String> {
    let rss_before = status_mb("VmRSS")?;
    let estate = Estate::parse(&estate_toml(LEVELS[0]), "overhead bench estate").map_err(|e| e.to_string())?;
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
         workloads (per-app `rps` = total / {}). CPU = utime + stime of the whole process (/proc/self/stat) over a \
         {} s window after a {} s warm-up, **including the load generator, which runs in the same process** (as \
         it does in `shipdeck`); achieved req/s = `routed_requests()` delta over the same window. RSS = VmRSS at \
         the end of the window. {threads} threads; all pods ready {:.1} s after start; RSS before the cluster \
         started {rss_before:.1} MB, peak (VmHWM) {peak:.1} MB.\n",
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
    for r in &rows {
        let cpu_ok = r.cpu_per_1k() < TARGET_CPU_PER_1K;
        let rss_ok = r.rss_mb < TARGET_RSS_MB;
        println!(
            "| {:.0} | {:.0} | {:.1} | {:.2} | {:.1} | {} | {} |",
            r.level,
            r.achieved,
            r.cpu_pct,
            r.cpu_per_1k(),
            r.rss_mb,
            if cpu_ok { "PASS" } else { "FAIL" },
            if rss_ok { "PASS" } else { "FAIL" }
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
