//! What every bench prints about the machine it ran on.

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
