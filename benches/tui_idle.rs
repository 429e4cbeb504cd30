//! The real console in a pseudo-terminal (tmux): start to first frame, and CPU while idle.
//!
//! Runs the release binary (`shipdeck --data-dir TMP --estate ESTATE`, no subcommand: the
//! console) in a detached 160×48 tmux session on a private server socket, over the demo
//! estate with `rps = 0` for every app so that no load generator runs:
//!
//! - start to first frame: from launching the session to the first `capture-pane` that shows
//!   the header ` shipdeck ` (polled every 2 ms), over 10 starts, each with a new data dir;
//!   target < 200 ms;
//! - idle CPU: the console's utime + stime from `/proc/<pid>/stat` over 20 s with nothing
//!   happening, in % of one core; target < 1%.
//!
//! Run: `cargo bench --bench tui_idle` (needs tmux; without it, says so and exits 0). Prints
//! Markdown tables.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SOCKET: &str = "shipdeck-benchsock";
const STARTS: usize = 10;
const POLL: Duration = Duration::from_millis(2);
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
const SETTLE: Duration = Duration::from_secs(3);
const IDLE: Duration = Duration::from_secs(20);
const FIRST_FRAME_TARGET: Duration = Duration::from_millis(200);
const IDLE_TARGET_PCT: f64 = 1.0;
const HEADER: &str = " shipdeck ";

fn main() {
    if Command::new("tmux").arg("-V").output().map(|o| !o.status.success()).unwrap_or(true) {
        println!(
            "tmux is not installed: the idle and start-up bench needs it to give the console a terminal. Skipped."
        );
        return;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_shipdeck"));
    let work = tempfile::tempdir().expect("temp dir");
    let estate = work.path().join("idle-estate.toml");
    std::fs::write(&estate, idle_estate()).expect("write the estate");
    let tmux = Tmux::start(work.path());

    println!("## Console start-up and idle bench (`cargo bench --bench tui_idle`)\n");
    println!("{}", common::machine_table());
    println!(
        "Binary: `{}`. Terminal: tmux {} session, 160×48. Estate: the demo estate (3 apps × 3 environments) with `rps = 0`.\n",
        bin.display(),
        tmux.version()
    );

    // Start to first frame: the demo estate as shipped (but no load), and again without the
    // local cluster's simulated pod start-up (`ready_after`), which the host waits for before
    // the console opens; the difference is that wait.
    println!("### Start to first frame ({STARTS} starts each, new data dir each; target < 200 ms)\n");
    println!("| estate | median | min | max | result |\n|---|---|---|---|---|");
    let instant = work.path().join("instant-pods-estate.toml");
    std::fs::write(&instant, without_pod_start(&idle_estate())).expect("write the estate");
    let mut all_starts = Vec::new();
    for (label, file) in [("demo, `rps = 0`", &estate), ("demo, `rps = 0`, `ready_after = \"0s\"`", &instant)] {
        let mut starts = Vec::new();
        for i in 0..STARTS {
            let data = work.path().join(format!("data-{}-{i}", all_starts.len()));
            let session = format!("start{}-{i}", all_starts.len());
            let t = Instant::now();
            tmux.new_session(&session, &console_command(&bin, &data, file));
            match tmux.wait_for(&session, HEADER, FIRST_FRAME_TIMEOUT) {
                Ok(()) => starts.push(t.elapsed()),
                Err(screen) => {
                    println!("The console showed no frame within {FIRST_FRAME_TIMEOUT:?}; the pane shows:\n\n{screen}");
                    std::process::exit(1);
                }
            }
            let pid = tmux.pane_pid(&session);
            tmux.kill_session(&session);
            wait_gone(pid);
        }
        starts.sort();
        let (median, max) = (starts[starts.len() / 2], starts[starts.len() - 1]);
        println!(
            "| {label} | {} | {} | {} | {} |",
            ms(median),
            ms(starts[0]),
            ms(max),
            if median < FIRST_FRAME_TARGET && max < FIRST_FRAME_TARGET { "PASS" } else { "FAIL" }
        );
        all_starts.push((label, starts));
    }
    println!("\nEvery start, from launching the tmux session to the first `capture-pane` showing the header:\n");
    for (label, starts) in &all_starts {
        println!("- {label}: {}", starts.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", "));
    }
    println!();

    // Idle CPU.
    let data = work.path().join("data-idle");
    tmux.new_session("idle", &console_command(&bin, &data, &estate));
    if let Err(screen) = tmux.wait_for("idle", HEADER, FIRST_FRAME_TIMEOUT) {
        println!("The console showed no frame; the pane shows:\n\n{screen}");
        std::process::exit(1);
    }
    let pid = tmux.pane_pid("idle");
    let server = tmux.server_pid();
    std::thread::sleep(SETTLE);
    let hz = clock_ticks();
    let (c0, s0, m0, t0) = (cpu_ticks(pid), cpu_ticks(server), common::CpuTimes::now(), Instant::now());
    std::thread::sleep(IDLE);
    let (c1, s1, m1, secs) = (cpu_ticks(pid), cpu_ticks(server), common::CpuTimes::now(), t0.elapsed().as_secs_f64());
    let pct = |a: u64, b: u64| 100.0 * (b.saturating_sub(a)) as f64 / hz / secs;
    let console = pct(c0, c1);
    let others = match (m0, m1) {
        (Ok(a), Ok(b)) => format!("{:.1}%", b.others_pct(&a, secs)),
        _ => "?".into(),
    };
    let screen = tmux.capture("idle");
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0);
    println!(
        "### Idle CPU ({:.0} s with nothing happening, after {:.0} s to settle; target < 1% of one core)\n",
        IDLE.as_secs_f64(),
        SETTLE.as_secs_f64()
    );
    println!(
        "| console (utime+stime) | CPU ticks | tmux server (redraw traffic) | machine busy meanwhile, but this bench | result |\n|---|---|---|---|---|"
    );
    println!(
        "| {console:.2}% of a core | {} ticks of 1/{hz:.0} s | {:.2}% | {others} of a core | {} |",
        c1.saturating_sub(c0),
        pct(s0, s1),
        if console < IDLE_TARGET_PCT { "PASS" } else { "FAIL" }
    );
    println!("\nThe console process had {threads} threads; still on screen at the end: {}.", screen.contains(HEADER));
    tmux.kill_session("idle");
    wait_gone(pid);
}

/// The demo estate with no load generator: every `rps` set to 0.
fn idle_estate() -> String {
    shipdeck::config::estate::DEMO_ESTATE
        .lines()
        .map(|l| if l.trim_start().starts_with("rps =") { "rps = 0".to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The same estate with every version ready at once.
fn without_pod_start(estate: &str) -> String {
    estate
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("ready_after =") { "ready_after = \"0s\"".to_string() } else { l.to_string() }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn console_command(bin: &Path, data: &Path, estate: &Path) -> String {
    // `exec`, so that the pane's pid is the console's, not a shell's.
    format!("exec '{}' --data-dir '{}' --estate '{}'", bin.display(), data.display(), estate.display())
}

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    config: PathBuf,
}

impl Tmux {
    fn start(dir: &Path) -> Self {
        let config = dir.join("tmux.conf");
        // Keep a dead pane on screen, so that a console that fails says why.
        std::fs::write(&config, "set -g remain-on-exit on\nset -g status off\n").expect("tmux config");
        let t = Self { config };
        // The server starts with a placeholder session, so no start below pays for it.
        t.run(&["new-session", "-d", "-s", "keep", "-x", "160", "-y", "48", "sleep 3600"]);
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        let out =
            Command::new("tmux").args(["-L", SOCKET, "-f"]).arg(&self.config).args(args).output().expect("run tmux");
        if !out.status.success() && args[0] != "kill-session" && args[0] != "kill-server" {
            panic!("tmux {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        out
    }

    fn version(&self) -> String {
        let out = Command::new("tmux").arg("-V").output().expect("tmux -V");
        String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("tmux ").to_string()
    }

    fn new_session(&self, name: &str, command: &str) {
        self.run(&["new-session", "-d", "-s", name, "-x", "160", "-y", "48", command]);
    }

    fn capture(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", name]).stdout).into_owned()
    }

    fn display(&self, name: &str, format: &str) -> String {
        String::from_utf8_lossy(&self.run(&["display-message", "-p", "-t", name, format]).stdout).trim().to_string()
    }

    /// Poll until the pane shows `text`; the screen as it is when it does not in time.
    fn wait_for(&self, name: &str, text: &str, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let screen = self.capture(name);
            if screen.contains(text) {
                return Ok(());
            }
            if start.elapsed() > timeout || self.display(name, "#{pane_dead}") == "1" {
                return Err(screen);
            }
            std::thread::sleep(POLL);
        }
    }

    fn pane_pid(&self, name: &str) -> u32 {
        self.display(name, "#{pane_pid}").parse().expect("pane pid")
    }

    fn server_pid(&self) -> u32 {
        self.display("keep", "#{pid}").parse().expect("server pid")
    }

    fn kill_session(&self, name: &str) {
        self.run(&["kill-session", "-t", name]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// Wait (up to 5 s) until the process has exited, so the next start does not share the CPU.
fn wait_gone(pid: u32) {
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// utime + stime of a process (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: count fields after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    // Fields 14 (utime) and 15 (stime) of proc(5); the slice starts at field 3.
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
