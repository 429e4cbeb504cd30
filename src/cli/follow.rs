//! Running a command and following its release to the end, printing live progress.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::{Ctx, EXIT_OK, EXIT_RELEASE_FAILED, engine_fail};
use crate::cluster::{Cluster, Target};
use crate::engine::{Command, Event};
use crate::host::Host;
use crate::model::{Release, Status};

pub(super) async fn execute_and_follow(ctx: &Ctx<'_>, host: &Host, command: Command) -> i32 {
    let json = ctx.cli.json;
    let mut rx = host.engine.subscribe();
    let asked_to_stop = matches!(command, Command::Abort { .. } | Command::Rollback { .. });
    let restart = match &command {
        Command::Restart { app, env, .. } => Some(Target::new(env, app)),
        _ => None,
    };
    for r in &host.interrupted {
        if !json {
            println!(
                "note: release {} of {} in {} was interrupted at step {}/{} ({})",
                r.id,
                r.app,
                r.env,
                r.cursor + 1,
                r.plan.len(),
                r.status
            );
        }
    }
    let outcome = match host.engine.execute(&ctx.actor, command).await {
        Ok(o) => o,
        Err(e) => return engine_fail(ctx.cli, &e),
    };
    if json {
        println!("{}", serde_json::json!({"type": "accepted", "message": outcome.message, "release": outcome.release}));
    } else {
        println!("{}", outcome.message);
    }
    let Some(release) = outcome.release.clone().filter(|_| outcome.running) else {
        if let Some(target) = restart {
            wait_restarted(host, &target, json).await;
        }
        if let Some(Ok(Some(r))) = outcome.release.as_ref().map(|r| host.store.release(&r.id)) {
            summary(json, &r, host);
        }
        return EXIT_OK;
    };
    let id = release.id.clone();
    let target = Target::new(&release.env, &release.app);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    let mut step_line = String::new();
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    let done = match &ev {
                        Event::Finished { release_id, .. } => release_id == &id,
                        Event::Release { release, .. } => release.id == id && release.status == Status::Paused,
                        _ => false,
                    };
                    if json {
                        println!("{}", serde_json::to_string(&ev).unwrap_or_default());
                    } else if let Some(line) = describe(&ev, &id) {
                        if let Event::Step { .. } = ev {
                            step_line = line.clone();
                            println!("[{:>6.1}s] {line}  {}", started.elapsed().as_secs_f64(), progress(host, &target).await);
                        } else {
                            println!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
                        }
                    }
                    if done {
                        break;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            },
            _ = tick.tick() => {
                if !json && !step_line.is_empty() {
                    println!("[{:>6.1}s] … {step_line}  {}", started.elapsed().as_secs_f64(), progress(host, &target).await);
                }
            }
            _ = tokio::signal::ctrl_c() => {
                let msg = format!("interrupted: release {id} stays {}; `shipdeck resume {} --env {}` or `shipdeck abort {} --env {}` continues it", "in progress", release.app, release.env, release.app, release.env);
                if json {
                    println!("{}", serde_json::json!({"type": "detached", "release_id": id, "message": msg}));
                } else {
                    eprintln!("{msg}");
                }
                return EXIT_RELEASE_FAILED;
            }
        }
    }
    let Ok(Some(last)) = host.store.release(&id) else { return EXIT_RELEASE_FAILED };
    summary(json, &last, host);
    match last.status {
        Status::Verified | Status::Paused | Status::Planned | Status::InProgress | Status::Deployed => EXIT_OK,
        // Stopping a release is what abort/rollback asked for; a rollback *release* that
        // itself failed is a failure.
        Status::Aborted | Status::RolledBack if asked_to_stop && last.kind != crate::model::ReleaseKind::Rollback => {
            EXIT_OK
        }
        Status::Aborted | Status::RolledBack | Status::Failed => EXIT_RELEASE_FAILED,
    }
}

/// Wait until the restarted version is back at full strength (or 60 s pass).
async fn wait_restarted(host: &Host, target: &Target, json: bool) {
    let Ok(mut rx) = host.cluster.watch(target).await else { return };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = {
            let s = rx.borrow_and_update();
            s.versions.values().all(|r| r.ready >= r.desired) && s.pods.iter().all(|p| p.ready)
        };
        if done {
            if !json {
                println!("all pods ready again  {}", progress(host, target).await);
            }
            return;
        }
        if !matches!(tokio::time::timeout_at(deadline, rx.changed()).await, Ok(Ok(()))) {
            return;
        }
    }
}

/// `weight 20% (actual 19.4%) | 1.5.0 1/1 ready | 1.4.0 2/2 ready`
async fn progress(host: &Host, target: &Target) -> String {
    let Ok(state) = host.cluster.state(target).await else { return String::new() };
    let mut parts = Vec::new();
    let weights: Vec<String> = state
        .routing
        .weights
        .iter()
        .map(|(v, w)| {
            let actual = state.actual_weights.get(v).copied().unwrap_or(0.0);
            format!("{v} {w}% (actual {actual:.1}%)")
        })
        .collect();
    if !weights.is_empty() {
        parts.push(weights.join(", "));
    }
    for m in &state.routing.matches {
        parts.push(format!("{}={} → {}", m.name, m.value, m.version));
    }
    if let Some(p) = &state.routing.preview {
        parts.push(format!("preview → {p}"));
    }
    for (v, r) in &state.versions {
        parts.push(format!("{v} {}/{} ready", r.ready, r.desired));
    }
    parts.join(" | ")
}

fn describe(ev: &Event, id: &str) -> Option<String> {
    match ev {
        Event::Step { release_id, index, total, description } if release_id == id => {
            Some(format!("step {}/{total} {description}", index + 1))
        }
        Event::Release { release, cause } if release.id == id => {
            if cause.starts_with("step ") {
                None
            } else {
                Some(format!("{}: {cause}", release.status))
            }
        }
        Event::Measurement { measurement: m } if m.release_id == id => {
            let v = m.verdict.label();
            Some(format!(
                "measurement {v}: {} (canary {} req, stable {} req)",
                m.detail, m.canary_requests, m.stable_requests
            ))
        }
        Event::Check { release_id, result } if release_id == id => Some(format!(
            "check {} {}{}: {}",
            result.name,
            if result.passed { "passed" } else { "FAILED" },
            if result.critical || result.passed { "" } else { " (warning)" },
            result.detail
        )),
        Event::Note { release_id, message } if release_id.as_deref().is_none_or(|r| r == id) => Some(message.clone()),
        _ => None,
    }
}

fn summary(json: bool, r: &Release, host: &Host) {
    let transitions = host.store.transitions(&r.id).unwrap_or_default();
    if json {
        println!("{}", serde_json::json!({"type": "summary", "release": r, "transitions": transitions}));
        return;
    }
    println!("release {} → {}", r.id, r.status);
    if let Some(reason) = &r.reason {
        println!("  {reason}");
    }
    if r.status == Status::Paused {
        println!(
            "  continue with `shipdeck resume {} --env {}`, or `shipdeck abort {} --env {}`",
            r.app, r.env, r.app, r.env
        );
    }
}
