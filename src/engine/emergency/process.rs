//! Running a fix's build or one critical suite: `sh -c COMMAND` in its own process group, every
//! line of its output (stdout and stderr) handed over as it comes, the whole group killed when
//! the timeout passes.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Exit status 0.
    Passed,
    /// A non-zero exit status, or killed by a signal: the words say which.
    Failed(String),
    /// Still running after the timeout: the process group was killed.
    TimedOut(Duration),
    /// It could not be started at all.
    NotStarted(String),
}

/// Runs `command` with `sh -c`, with `env` set, calling `line` for each line of output.
pub(crate) async fn run(
    command: &str,
    env: &[(&str, &str)],
    timeout: Duration,
    mut line: impl FnMut(&str, bool),
) -> Ended {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ended::NotStarted(format!("cannot start `sh -c {command}`: {e}")),
    };
    let pid = child.id();
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Ended::NotStarted("the command's output could not be read".into());
    };
    let mut out = BufReader::new(out).lines();
    let mut err = BufReader::new(err).lines();
    let (mut out_open, mut err_open) = (true, true);
    let mut deadline = wall_clock_deadline(timeout);
    let mut status = None;
    // Until the process has exited and both pipes are closed (output written just before the
    // exit is still read).
    while status.is_none() || out_open || err_open {
        tokio::select! {
            l = out.next_line(), if out_open => match l {
                Ok(Some(l)) => line(&l, false),
                _ => out_open = false,
            },
            l = err.next_line(), if err_open => match l {
                Ok(Some(l)) => line(&l, true),
                _ => err_open = false,
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s);
            }
            _ = &mut deadline.fired => {
                kill_group(pid);
                let _ = child.kill().await;
                return Ended::TimedOut(timeout);
            }
        }
    }
    match status {
        Some(Ok(s)) if s.success() => Ended::Passed,
        Some(Ok(s)) => Ended::Failed(match s.code() {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".into(),
        }),
        Some(Err(e)) => Ended::Failed(format!("waiting for it failed: {e}")),
        None => Ended::Failed("it did not end".into()),
    }
}

/// The whole process group: `sh` and whatever it started (a `sleep` would otherwise keep the
/// output pipe open after `sh` is gone).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// A deadline on the wall clock, not tokio's: a command takes real time whatever tokio's clock
/// does, and in tests that clock is paused and jumps ahead while the runtime only waits for a
/// process, which would time every command out at once. The thread ends as soon as the
/// deadline is dropped.
pub(crate) struct WallClockDeadline {
    pub fired: tokio::sync::oneshot::Receiver<()>,
    _cancel: std::sync::mpsc::Sender<()>,
}

pub(crate) fn wall_clock_deadline(limit: Duration) -> WallClockDeadline {
    let (cancel_tx, cancel_rx) = std::sync::mpsc::channel::<()>();
    let (fire_tx, fire_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = cancel_rx.recv_timeout(limit) {
            let _ = fire_tx.send(());
        }
    });
    WallClockDeadline { fired: fire_rx, _cancel: cancel_tx }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(command: &str, timeout: Duration) -> (Ended, Vec<String>) {
        let mut seen = Vec::new();
        let ended = run(command, &[("SHIPDECK_VERSION", "1.2.3")], timeout, |l, err| {
            seen.push(format!("{}{l}", if err { "! " } else { "" }))
        })
        .await;
        (ended, seen)
    }

    #[tokio::test(start_paused = true)]
    async fn output_is_streamed_line_by_line_and_the_exit_status_decides() {
        let (ended, seen) =
            lines_of("echo building $SHIPDECK_VERSION; echo oops >&2; echo done", Duration::from_secs(30)).await;
        assert_eq!(ended, Ended::Passed);
        assert!(seen.contains(&"building 1.2.3".to_string()) && seen.contains(&"! oops".to_string()), "{seen:?}");
        assert_eq!(seen.iter().rfind(|l| !l.starts_with('!')).map(String::as_str), Some("done"));
        let (ended, seen) = lines_of("echo 'FAIL: token check'; exit 3", Duration::from_secs(30)).await;
        assert_eq!(ended, Ended::Failed("exit status 3".into()));
        assert_eq!(seen, ["FAIL: token check"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_past_its_timeout_is_killed_with_its_children() {
        let started = std::time::Instant::now();
        let (ended, seen) = lines_of("echo started; sleep 30; echo never", Duration::from_millis(300)).await;
        assert_eq!(ended, Ended::TimedOut(Duration::from_millis(300)));
        assert_eq!(seen, ["started"]);
        assert!(started.elapsed() < Duration::from_secs(10), "the sleep was killed, not waited for");
    }
}
