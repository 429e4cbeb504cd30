//! The console end to end: the real binary in a real terminal (tmux), driven with keys and read
//! from the screen. A bad canary started from the palette rolls back and the analysis pane says
//! why; a release in progress is aborted from the rollout pane after a confirmation; a flag is
//! toggled in the flagd file and given a targeting rule from the Flags pane; the help opens and closes; `q` leaves the terminal as it was; and
//! a keymap that puts `abort` on ctrl-d is refused before anything starts.
//!
//! Every wait polls the screen until the expected text appears or a deadline passes; a failure
//! shows the last screen. Each test has its own tmux server, data dir and config dir.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Shipdeck;
use serde_json::Value;

const WIDTH: u16 = 160;
const HEIGHT: u16 = 48;
const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

fn estate() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/estates/e2e.toml")
}

fn tmux_available() {
    let ok = Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(ok, "these tests drive the console through tmux; install it (Debian: apt-get install tmux)");
}

/// One tmux server (its own socket) running one `shipdeck` console in session `t`. Dropping
/// it kills the server, also when a test fails half-way.
struct Console {
    socket: String,
    shipdeck: Shipdeck,
    config: tempfile::TempDir,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.tmux_command(&["kill-server"]).stderr(Stdio::null()).status();
    }
}

impl Console {
    /// Opens the console on the e2e estate and waits for its first screen.
    fn open(name: &str) -> Console {
        let console = Console::start(name, &[]);
        console.wait_for("the Environments pane with web in dev and prod", |s| {
            s.contains("Environments — 1 apps × 2 environments")
                && s.contains("DEV")
                && s.contains("PROD")
                && line_with(s, "│web ").is_some_and(|l| l.matches("● 1.0.0 2/2").count() == 2)
        });
        console
    }

    /// Starts `shipdeck` with no subcommand (the console, at a terminal) on the e2e estate at
    /// 160×48, with fresh data and config dirs holding the given `config` files. `name` makes
    /// the tmux socket unique among this process's tests.
    fn start(name: &str, config: &[(&str, &str)]) -> Console {
        Console::start_on(name, config, Some(estate()))
    }

    /// [`Console::start`] on `estate`, or on the embedded demo estate when `None`.
    fn start_on(name: &str, config: &[(&str, &str)], estate: Option<PathBuf>) -> Console {
        tmux_available();
        let config_dir = tempfile::tempdir().expect("config dir");
        for (file, text) in config {
            common::file(config_dir.path(), file, text);
        }
        let console = Console {
            socket: format!("shipdeck-e2e-{}-{name}", std::process::id()),
            shipdeck: Shipdeck::new(),
            config: config_dir,
        };
        let bin = env!("CARGO_BIN_EXE_shipdeck");
        let (size_x, size_y) = (WIDTH.to_string(), HEIGHT.to_string());
        let config_env = format!("SHIPDECK_CONFIG_DIR={}", console.config.path().display());
        let data_dir = console.shipdeck.data_dir().to_str().expect("utf-8 data dir").to_string();
        let estate = estate.map(|e| e.to_str().expect("utf-8 estate path").to_string());
        // More than one word after new-session: tmux runs it without a shell, so no quoting.
        // tmux sets TERM from its default-terminal, hence `env` rather than the session's env.
        #[rustfmt::skip]
        let args = [
            "set-option", "-g", "remain-on-exit", "on", ";",
            "new-session", "-d", "-x", &size_x, "-y", &size_y, "-s", "t",
            "env", "-u", "SHIPDECK_DATA_DIR", "-u", "SHIPDECK_ESTATE", "-u", "NO_COLOR",
            &config_env, "SHIPDECK_USER=alice", "TERM=xterm-256color",
            bin, "--data-dir", &data_dir,
        ];
        let mut args: Vec<&str> = args.to_vec();
        if let Some(estate) = &estate {
            args.extend(["--estate", estate]);
        }
        console.tmux(&args);
        console
    }

    fn tmux_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-f", "/dev/null", "-L", &self.socket]).args(args).env_remove("TMUX").stdin(Stdio::null());
        c
    }

    fn tmux(&self, args: &[&str]) -> Output {
        let out = self.tmux_command(args).output().expect("run tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn data_dir(&self) -> &Path {
        self.shipdeck.data_dir()
    }

    /// The visible screen, as text.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    /// Everything the pane printed, scrollback included, wrapped lines joined.
    fn output(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"]).stdout).into_owned()
    }

    /// Named keys (`Enter`, `Escape`, `Space`, `j`…), one after the other.
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Literal text, as typed.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
    }

    fn display(&self, format: &str) -> String {
        String::from_utf8_lossy(&self.tmux(&["display-message", "-p", "-t", "t", format]).stdout).trim().to_string()
    }

    /// Polls the screen until `ok` holds; panics with the last screen after the deadline.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.wait_for_within(DEADLINE, what, ok)
    }

    /// [`Console::wait_for`] with its own deadline, for things that take minutes.
    fn wait_for_within(&self, deadline: Duration, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if start.elapsed() > deadline {
                panic!("waited {deadline:?} for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until every one of `texts` is on the screen.
    fn wait_text(&self, texts: &[&str]) -> String {
        self.wait_for(&format!("{texts:?} on the screen"), |s| texts.iter().all(|t| s.contains(t)))
    }

    /// Waits until the console's process has exited; returns `STATUS ALTERNATE_ON`, with
    /// STATUS `signal N` when a signal ended it.
    fn wait_exit(&self) -> String {
        let start = Instant::now();
        loop {
            // The pane is dead when its terminal closes, which can come before tmux has reaped
            // the process; the status is known only after that.
            let state = self.display("#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}|#{alternate_on}");
            match state.split('|').collect::<Vec<_>>()[..] {
                ["1", status, "", alt] if !status.is_empty() => return format!("{status} {alt}"),
                ["1", _, signal, alt] if !signal.is_empty() => return format!("signal {signal} {alt}"),
                // A tmux built with libutempter (Debian's) can miss the SIGCHLD of a process
                // that exits while utempter removes the pane's record, leaving it a zombie
                // (tmux/tmux#311); a SIGCHLD of our own makes the server reap it.
                ["1", "", "", _] => self.poke_server(),
                _ => {}
            }
            if start.elapsed() > DEADLINE {
                panic!("waited {DEADLINE:?} for the console to exit ({state}); the screen:\n{}", self.screen());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends SIGCHLD to this test's tmux server (by its pid), so it reaps exited panes.
    fn poke_server(&self) {
        let pid = self.display("#{pid}");
        assert!(!pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()), "tmux server pid: {pid:?}");
        let _ = Command::new("kill").args(["-s", "CHLD", &pid]).status();
    }

    /// `q`, then: the process ended with status 0 and left the alternate screen.
    fn quit_and_check_terminal_restored(&self) {
        self.keys(&["q"]);
        let state = self.wait_exit();
        assert_eq!(state, "0 0", "exit status 0 and the alternate screen left (`status alternate_on`)");
    }
}

/// The first line of the screen containing `text`.
fn line_with<'a>(screen: &'a str, text: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(text))
}

/// The text inside the dialog box whose title contains `title`, its lines joined with spaces
/// (the dialog wraps its body); None when no such dialog is on the screen.
fn dialog(screen: &str, title: &str) -> Option<String> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let title: Vec<char> = title.chars().collect();
    let (top, at) = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| l.windows(title.len()).position(|w| w == title.as_slice()).map(|p| (i, p)))?;
    let left = lines[top][..at].iter().rposition(|c| *c == '┌')?;
    let right = at + lines[top][at..].iter().position(|c| *c == '┐')?;
    let mut text = Vec::new();
    for l in &lines[top + 1..] {
        if l.get(left) == Some(&'└') || l.len() <= right {
            break;
        }
        let inner: String = l[left + 1..right].iter().collect();
        if !inner.trim().is_empty() {
            text.push(inner.trim().to_string());
        }
    }
    Some(text.join(" "))
}

/// The STATE cell (`ON`/`OFF`) of a flag's row on the Flags pane.
fn flag_state(screen: &str, key: &str) -> Option<String> {
    let row = screen.lines().find(|l| l.trim_start_matches('│').split_whitespace().next() == Some(key))?;
    row.trim_start_matches('│').split_whitespace().nth(1).map(String::from)
}

/// Each flag's `state` in the flagd file.
fn flag_file_states(data_dir: &Path) -> Vec<(String, String)> {
    let path = data_dir.join("flags.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}\n{text}", path.display()));
    let flags = doc["flags"].as_object().unwrap_or_else(|| panic!("no `flags` object in {text}"));
    flags.iter().map(|(k, f)| (k.clone(), f["state"].as_str().unwrap_or("").to_string())).collect()
}

/// Polls the flag file until `key` has `state` (the console saves before it reports); returns
/// every flag's state.
fn wait_flag_file(data_dir: &Path, key: &str, state: &str) -> Vec<(String, String)> {
    let start = Instant::now();
    loop {
        let states = flag_file_states(data_dir);
        if states.iter().any(|(k, s)| k == key && s == state) {
            return states;
        }
        if start.elapsed() > DEADLINE {
            panic!("waited {DEADLINE:?} for {key} to be {state} in flags.json: {states:?}");
        }
        std::thread::sleep(POLL);
    }
}

#[test]
fn a_bad_canary_rolls_back_and_a_release_in_progress_is_aborted_from_the_keyboard() {
    let c = Console::open("releases");

    // A canary of the bad version, from the palette.
    c.keys(&[":"]);
    c.wait_for("the palette", |s| s.lines().any(|l| l.starts_with(':')));
    c.type_text("deploy web 1.1.0-bad dev canary");
    c.wait_text(&[":deploy web 1.1.0-bad dev canary"]);
    c.keys(&["Enter"]);
    c.wait_text(&["release dev-web-1.1.0-bad-", " started"]);

    // The rollout pane (dev/web is selected at start): the analysis fails, the release rolls back.
    c.keys(&["2"]);
    let s = c.wait_for("the bad canary rolled back on the Rollout pane", |s| {
        s.contains("Rollout — dev/web") && s.contains(" rolled_back  canary  1.0.0 → 1.1.0-bad")
    });
    let why = line_with(&s, "analysis Failed").unwrap_or_else(|| panic!("no reason for the rollback:\n{s}"));
    assert!(why.contains("error_rate: 0.") && why.contains("1.5 × stable"), "{why}\n{s}");
    assert!(
        line_with(&s, "analysis 2×1s standard").is_some_and(|l| l.contains('✗')),
        "the failed step is marked:\n{s}"
    );

    // The analysis pane: a failed measurement naming the error rate.
    c.keys(&["3"]);
    let s = c.wait_text(&["Canary analysis — dev-web-1.1.0-bad-", "VERDICT", "Error rate %"]);
    let fail = s
        .lines()
        .find(|l| l.contains("FAIL"))
        .unwrap_or_else(|| panic!("no FAIL measurement on the Analysis pane:\n{s}"));
    assert!(fail.contains("error_rate: 0.") && fail.contains("requests failed"), "{fail}\n{s}");

    // The environments pane: dev is back on 1.0.0, its release rolled back.
    c.keys(&["1"]);
    let s = c.wait_text(&["Environments —", "rolled back 1.1.0-bad"]);
    let web = line_with(&s, "│web ").unwrap_or_else(|| panic!("no row for web:\n{s}"));
    assert!(web.contains("● 1.0.0 2/2"), "dev runs 1.0.0 again: {web}");

    // A good release in prod, which pauses for ten minutes after its first step.
    c.keys(&[":"]);
    c.wait_for("the palette", |s| s.lines().any(|l| l.starts_with(':')));
    c.type_text("deploy web 1.2.0 prod");
    c.wait_text(&[":deploy web 1.2.0 prod"]);
    c.keys(&["Enter"]);
    c.wait_text(&["release prod-web-1.2.0-", " started"]);
    c.wait_text(&["running 2/4 1.2.0"]);

    // Select prod (one to the right of dev), open its rollout and abort it.
    c.keys(&["l"]);
    c.keys(&["2"]);
    c.wait_text(&["Rollout — prod/web", " in_progress  canary  1.0.0 → 1.2.0", "pause 10m —"]);
    c.keys(&["a"]);
    let s = c.wait_text(&["abort — are you sure?"]);
    let body = dialog(&s, "abort — are you sure?").unwrap_or_else(|| panic!("no dialog box:\n{s}"));
    assert!(
        body.contains(
            "Abort the release of web in prod: all traffic goes back to 1.0.0 now; the new pods are removed after 1s."
        ),
        "the confirmation says what will happen: {body}\n{s}"
    );
    assert!(body.contains("y  confirm") && body.contains("n  cancel"), "{body}");
    c.keys(&["y"]);
    let s = c.wait_text(&[" aborted  canary  1.0.0 → 1.2.0", "aborted by alice at step 2/4; traffic back on 1.0.0"]);
    assert!(!s.contains("are you sure?"), "the dialog closed:\n{s}");
    // The canary pods go after abort_scale_down_delay (1s): only 1.0.0 is left in Replicas.
    c.wait_for("1.2.0 gone from the Replicas table", |s| {
        let replicas: Vec<&str> = s.lines().skip_while(|l| !l.contains("VERSION ")).collect();
        replicas.iter().any(|l| l.starts_with("│1.0.0 ")) && !replicas.iter().any(|l| l.starts_with("│1.2.0 "))
    });
    c.keys(&["1"]);
    let s = c.wait_text(&["Environments —", "aborted 1.2.0"]);
    let status = s.lines().skip_while(|l| !l.contains("│web ")).nth(1).unwrap_or("");
    assert!(status.contains("rolled back 1.1.0-bad") && status.contains("aborted 1.2.0"), "{status}\n{s}");

    c.quit_and_check_terminal_restored();

    // What the console did is what the store holds.
    let (code, lines) =
        c.shipdeck.json(&["--estate", estate().to_str().unwrap(), "history", "--app", "web", "--limit", "10"]);
    assert_eq!(code, 0);
    let status_of = |prefix: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["type"] == "release")
            .map(|l| &l["release"])
            .filter(|r| r["id"].as_str().is_some_and(|id| id.starts_with(prefix)))
            .map(|r| r["status"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(status_of("dev-web-1.1.0-bad-"), ["rolled_back"], "{lines:?}");
    assert_eq!(status_of("prod-web-1.2.0-"), ["aborted"], "{lines:?}");
}

#[test]
fn a_flag_is_toggled_in_the_flagd_file_and_the_help_opens_and_closes() {
    let c = Console::open("flags");
    let key = "payments-kill-switch";
    let before = flag_file_states(c.data_dir());
    assert!(before.iter().any(|(k, s)| k == key && s == "DISABLED"), "the demo flags start with {key} off: {before:?}");

    c.keys(&["4"]);
    let title = format!("Flags — {}", before.len());
    let s = c.wait_for(&format!("{key} OFF on the Flags pane"), |s| {
        s.contains(&title) && s.contains("(flagd format)") && flag_state(s, key).as_deref() == Some("OFF")
    });
    // Move the selection down to the flag's row.
    let rows: Vec<&str> = s.lines().skip_while(|l| !l.contains("FLAG ")).skip(1).collect();
    let row = rows.iter().position(|l| flag_state(l, key).is_some()).expect("the flag's row");
    let downs = vec!["j"; row];
    if !downs.is_empty() {
        c.keys(&downs);
    }

    // Turn it on.
    c.keys(&["Space"]);
    let s = c.wait_text(&["flag — are you sure?"]);
    let body = dialog(&s, "flag — are you sure?").unwrap_or_else(|| panic!("no dialog box:\n{s}"));
    assert!(body.contains(&format!("Turn flag {key} on: its targeting applies again.")), "{body}\n{s}");
    c.keys(&["y"]);
    c.wait_for(&format!("{key} ON"), |s| !s.contains("are you sure?") && flag_state(s, key).as_deref() == Some("ON"));
    c.wait_text(&[&format!("flag {key} turned on by alice")]);
    let after = wait_flag_file(c.data_dir(), key, "ENABLED");
    let changed: Vec<_> = after.iter().filter(|f| !before.contains(f)).collect();
    assert_eq!(changed, [&(key.to_string(), "ENABLED".to_string())], "only {key} changed: {before:?} → {after:?}");

    // And off again.
    c.keys(&["Space"]);
    let s = c.wait_text(&["flag — are you sure?"]);
    let body = dialog(&s, "flag — are you sure?").unwrap_or_else(|| panic!("no dialog box:\n{s}"));
    assert!(body.contains(&format!("Turn flag {key} off: every user gets the default variant.")), "{body}\n{s}");
    c.keys(&["y"]);
    c.wait_for(&format!("{key} OFF"), |s| !s.contains("are you sure?") && flag_state(s, key).as_deref() == Some("OFF"));
    assert_eq!(wait_flag_file(c.data_dir(), key, "DISABLED"), before, "back as it was");

    // A targeting rule from the pane: `t` opens the palette with the command filled in.
    c.keys(&["t"]);
    c.wait_text(&[&format!("flags target {key} --serve on --rule")]);
    c.type_text("\"plan in_segment pro,enterprise\"");
    c.keys(&["Enter"]);
    let s = c.wait_text(&["flag edit — are you sure?"]);
    let body = dialog(&s, "flag edit — are you sure?").unwrap_or_else(|| panic!("no dialog box:\n{s}"));
    assert!(body.contains("targeting rule added"), "{body}\n{s}");
    c.keys(&["y"]);
    c.wait_text(&["rule 1", "plan in_segment pro,enterprise"]);
    let deadline = std::time::Instant::now() + DEADLINE;
    let targeting = loop {
        let text = std::fs::read_to_string(c.data_dir().join("flags.json")).unwrap_or_default();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let t = doc["flags"][key]["targeting"].clone();
        if !t.is_null() || std::time::Instant::now() > deadline {
            break t;
        }
    };
    assert_eq!(targeting["if"][0]["and"][0]["in"][0]["var"], "plan", "compiled to JsonLogic: {targeting}");

    // The help, for the keys of this pane; esc closes it.
    c.keys(&["?"]);
    let s = c.wait_text(&["Help — esc closes", "Keys in Flags"]);
    assert!(line_with(&s, "space ").is_some_and(|l| l.contains("Turn the selected flag on or off")), "{s}");
    c.keys(&["Escape"]);
    let s = c.wait_for("the help to close", |s| !s.contains("Help —") && !s.contains("Keys in Flags"));
    assert!(s.contains(&title) && s.contains("(flagd format)"), "back on the Flags pane:\n{s}");

    c.quit_and_check_terminal_restored();
}

#[test]
fn a_keymap_that_puts_abort_on_ctrl_d_is_refused_before_the_console_starts() {
    let keymap = "[[rollout]]\non = \"ctrl-d\"\nrun = \"abort\"\n";
    let expect = ["[[rollout]] #1", "`ctrl-d` runs `abort`", "ctrl-d must never do something destructive"];

    // Not at a terminal: the keymap is read before the console decides to print the status.
    let s = Shipdeck::new();
    let config = tempfile::tempdir().unwrap();
    let path = common::file(config.path(), "keymap.toml", keymap);
    let out = s
        .cmd(&["--estate", estate().to_str().unwrap()])
        .env("SHIPDECK_CONFIG_DIR", config.path())
        .output()
        .expect("run shipdeck");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("keymap file {}", path.display())), "names the file: {stderr}");
    for e in expect {
        assert!(stderr.contains(e), "names the clash ({e}): {stderr}");
    }
    assert!(stdout.is_empty(), "prints no status: {stdout}");
    for file in ["shipdeck.db", "flags.json"] {
        assert!(!s.data_dir().join(file).exists(), "nothing started, so no {file}");
    }

    // At a terminal: the same refusal, and the terminal never switched screens.
    let c = Console::start("keymap", &[("keymap.toml", keymap)]);
    assert_eq!(c.wait_exit(), "2 0", "exit status 2, never on the alternate screen");
    let output = c.output();
    assert!(output.contains("keymap.toml") && expect.iter().all(|e| output.contains(e)), "{output}");
}

/// The hotfix wizard for a P1 on the demo estate: each field entered as a person would, the
/// plan confirmed once, two approvals given from the command line while the wizard waits, and
/// the fix executed by the wizard through to verified in prod and staging.
#[test]
fn the_hotfix_wizard_walks_a_p1_through_cli_approvals_to_a_verified_fix() {
    let c = Console::start_on("wizard", &[], None);
    c.wait_text(&["Environments — 3 apps × 3 environments"]);
    c.keys(&["5"]);
    c.wait_text(&["Emergency release plans", "none yet; n starts the hotfix wizard"]);
    c.keys(&["n"]);
    c.wait_text(&["Hotfix wizard", "security patch"]);
    c.keys(&["Down", "Enter"]); // critical bug
    c.wait_text(&["▶ P1  rapid"]);
    c.keys(&["Enter"]);
    c.wait_text(&["description — type, enter next"]);
    c.type_text("short");
    c.keys(&["Enter"]);
    c.wait_text(&["at least 10 characters"]);
    c.type_text(" payments charge twice on retry");
    c.keys(&["Enter"]);
    c.wait_text(&["[ ] payments"]);
    c.keys(&["Down", "Space", "Enter"]);
    c.wait_text(&["fix version — type, enter next", "payments: 2.0.0, 2.1.0"]);
    c.type_text("9.9.9");
    c.keys(&["Enter"]);
    c.wait_text(&["payments has no version 9.9.9"]);
    c.keys(&["BSpace", "BSpace", "BSpace", "BSpace", "BSpace"]);
    c.type_text("2.1.0");
    c.keys(&["Enter"]);
    c.wait_text(&["environments, in order", "prod → staging", "Nothing has run yet"]);
    assert_eq!(emergency_count(&c), 0, "nothing is created before the confirmation");
    c.keys(&["Enter"]);
    let s = c.wait_text(&["P1 critical bug emergency"]);
    let body = dialog(&s, "P1 critical bug emergency").unwrap_or_else(|| panic!("no dialog box:\n{s}"));
    assert!(body.contains("2 approvals") && body.contains("2.1.0 of payments"), "{body}");
    c.keys(&["y"]);
    let s = c.wait_text(&["approvals 0/2: nobody yet", "waiting: `shipdeck emergency approve ER-"]);
    let id = s
        .split("approve ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the emergency id on screen")
        .to_string();
    assert!(id.starts_with("ER-") && id.len() == 17, "{id}");

    // The requester cannot approve; two others can, from the command line, while the wizard waits.
    let (code, _, err) = c.shipdeck.sh(&["--as", "alice", "emergency", "approve", &id]);
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = c.shipdeck.sh(&["--as", "bob", "emergency", "approve", &id]);
    assert_eq!(code, 0, "{out}{err}");
    c.wait_text(&["approvals 1/2: bob"]);
    let (code, out, err) = c.shipdeck.sh(&["--as", "carol", "emergency", "approve", &id]);
    assert_eq!(code, 0, "{out}{err}");

    // Approved: the wizard runs it; the log streams; the fix reaches both environments.
    c.wait_for("the execution", |s| s.contains("▶ 8. execution") || s.contains("▶ 9. outcome"));
    let s = c.wait_for_within(Duration::from_secs(420), "the outcome", |s| s.contains("▶ 9. outcome"));
    assert!(s.contains("The fix is out and verified everywhere."), "{s}");
    let (code, lines) = c.shipdeck.json(&["emergency", "show", &id]);
    assert_eq!(code, 0);
    let e = &lines[0]["emergency"];
    assert_eq!(e["status"], "completed", "{e}");
    assert_eq!(e["approvers"], serde_json::json!(["bob", "carol"]), "{e}");
    c.keys(&["Enter"]);
    c.wait_text(&["completed"]);
    c.quit_and_check_terminal_restored();
}

fn emergency_count(c: &Console) -> usize {
    let (code, lines) = c.shipdeck.json(&["emergency", "list"]);
    assert_eq!(code, 0);
    lines.iter().filter(|l| l["emergency"].is_object()).count()
}
