//! What the benches share: the machine they ran on, and CPU accounting.

/// A Markdown table with `nproc`, the CPU model from `/proc/cpuinfo` and the date.
pub fn machine_table() -> String {
    let nproc = std::process::Command::new("nproc")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.to_string()))
        .unwrap_or_else(|| "?".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    format!("| nproc | CPU | date |\n|---|---|---|\n| {nproc} | {cpu} | {date} |\n")
}

/// CPU time used so far, in seconds: by this process (utime + stime of `/proc/self/stat`) and
/// by the whole machine (busy and steal time of `/proc/stat`).
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    pub process: f64,
    pub machine_busy: f64,
    pub machine_steal: f64,
}

impl CpuTimes {
    pub fn now() -> Result<Self, String> {
        let hz = clock_ticks()?;
        let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| format!("reading /proc/self/stat: {e}"))?;
        // The command name may hold spaces and parentheses: count fields after the last ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("/proc/self/stat has no ')'")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 (utime) and 15 (stime) of proc(5); `rest` starts at field 3 (state).
        let field = |i: usize| -> Result<f64, String> {
            fields.get(i).and_then(|f| f.parse::<f64>().ok()).ok_or_else(|| format!("/proc/self/stat field {}", i + 3))
        };
        let process = (field(11)? + field(12)?) / hz;

        let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("reading /proc/stat: {e}"))?;
        let cpu: Vec<f64> = stat
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .ok_or("/proc/stat has no cpu line")?
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        if cpu.len() < 8 {
            return Err("/proc/stat's cpu line is short".into());
        }
        let busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6];
        Ok(Self { process, machine_busy: busy / hz, machine_steal: cpu[7] / hz })
    }

    /// This process's CPU since `earlier`, in % of one core over `secs`.
    pub fn process_pct(&self, earlier: &CpuTimes, secs: f64) -> f64 {
        100.0 * (self.process - earlier.process) / secs
    }

    /// Everything else the machine ran since `earlier`, in % of one core over `secs`: on a
    /// small machine a busy neighbour slows this process down and inflates its figures.
    pub fn others_pct(&self, earlier: &CpuTimes, secs: f64) -> f64 {
        let others = (self.machine_busy - earlier.machine_busy) - (self.process - earlier.process);
        (100.0 * others / secs).max(0.0)
    }

    pub fn steal_pct(&self, earlier: &CpuTimes, secs: f64) -> f64 {
        100.0 * (self.machine_steal - earlier.machine_steal) / secs
    }
}

fn clock_ticks() -> Result<f64, String> {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return Err("sysconf(_SC_CLK_TCK) failed".into());
    }
    Ok(hz as f64)
}

/// Above this much CPU used by other processes (% of one core), a bench says its figures are
/// not to be trusted.
pub const BUSY_MACHINE_PCT: f64 = 20.0;

/// Nearest-rank percentile of sorted values.
#[allow(dead_code)]
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sends the `n`th request `request(n)` back to back until `stop`, noting when each was sent
/// and what `classify` makes of its answer (whether it succeeded with its body read, and its
/// headers; a request that got no answer is classified as failed with no headers).
#[allow(dead_code)]
pub async fn send_until<T>(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    request: impl Fn(usize) -> reqwest::RequestBuilder,
    classify: impl Fn(bool, &reqwest::header::HeaderMap) -> T,
) -> Vec<(std::time::Instant, T)> {
    use std::sync::atomic::Ordering;
    let mut out = Vec::with_capacity(1024);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let req = request(n);
        let sent = std::time::Instant::now();
        let answer = match req.send().await {
            Ok(resp) => {
                let headers = resp.headers().clone();
                // Read the body so the connection goes back to the pool.
                let ok = resp.status().is_success() && resp.bytes().await.is_ok();
                classify(ok, &headers)
            }
            Err(_) => classify(false, &reqwest::header::HeaderMap::new()),
        };
        out.push((sent, answer));
        done.fetch_add(1, Ordering::Relaxed);
    }
    out
}
