//! Read-only commands: status, history and the environment report. They read the store
//! (safe next to a process that holds the data dir) and never start the cluster.

use serde_json::json;

use super::{Ctx, EXIT_BACKEND, EXIT_BAD_INPUT, EXIT_OK, fail};
use crate::cluster::{Target, WorkloadSpec};
use crate::config::paths;
use crate::host::DataDirLock;
use crate::model::{Release, Status};
use crate::store::{ReleaseFilter, Store};

fn open_store(ctx: &Ctx<'_>) -> Result<Store, i32> {
    Store::open(&paths::store_file(&ctx.data_dir)).map_err(|e| fail(ctx.cli, EXIT_BACKEND, &e.to_string()))
}

fn check_filters(ctx: &Ctx<'_>, env: Option<&str>, app: Option<&str>) -> Result<(), i32> {
    let estate = &ctx.estate;
    if let Some(e) = env.filter(|e| estate.env(e).is_none()) {
        let msg = format!("unknown environment `{e}` (environments: {})", estate.env_names().join(", "));
        return Err(fail(ctx.cli, EXIT_BAD_INPUT, &msg));
    }
    if let Some(a) = app.filter(|a| !estate.apps.iter().any(|x| x == a)) {
        return Err(fail(ctx.cli, EXIT_BAD_INPUT, &format!("unknown app `{a}` (apps: {})", estate.apps.join(", "))));
    }
    Ok(())
}

/// What the cluster is doing, and whether a process drives releases now.
fn cluster_line(ctx: &Ctx<'_>) -> (String, bool) {
    match DataDirLock::holder(&ctx.data_dir) {
        Some(h) => (format!("live in another shipdeck ({h})"), true),
        None => ("not running: pods start with the console or a release command".into(), false),
    }
}

/// What runs in a workload as recorded: the spec, or the estate's initial version.
pub(super) fn recorded(ctx: &Ctx<'_>, store: &Store, t: &Target) -> (WorkloadSpec, bool) {
    if let Ok(all) = store.workloads()
        && let Some(spec) = all.get(t)
    {
        return (spec.clone(), true);
    }
    let s = ctx.estate.settings(&t.env, &t.app);
    let init = s.and_then(|s| s.initial_version.clone().or_else(|| s.versions.first().map(|v| v.version.clone())));
    let mut spec = WorkloadSpec::default();
    if let (Some(v), Some(s)) = (init, s) {
        spec.replicas.insert(v.clone(), s.replicas);
        spec.routing = crate::cluster::Routing::all_to(&v);
    }
    (spec, false)
}

fn traffic(spec: &WorkloadSpec) -> String {
    let mut parts: Vec<String> =
        spec.routing.weights.iter().filter(|(_, w)| **w > 0).map(|(v, w)| format!("{v} {w}%")).collect();
    parts.extend(spec.routing.matches.iter().map(|m| format!("{}={}→{}", m.name, m.value, m.version)));
    if let Some(p) = &spec.routing.preview {
        parts.push(format!("preview→{p}"));
    }
    if parts.is_empty() { "none".into() } else { parts.join(" ") }
}

/// A release in progress with no process driving it is interrupted (its next start marks it
/// so in the store).
fn interrupted(r: &Release, driven: bool) -> bool {
    r.interrupted || (!driven && matches!(r.status, Status::InProgress | Status::Paused | Status::Deployed))
}

fn release_line(r: &Release, driven: bool) -> String {
    let mut s = format!("{} {} step {}/{}", r.id, r.status, (r.cursor + 1).min(r.plan.len()), r.plan.len());
    if interrupted(r, driven) {
        s.push_str(" (interrupted)");
    }
    s
}

pub(super) fn overview(ctx: &Ctx<'_>) -> i32 {
    let code = status(ctx, None, None);
    if code == EXIT_OK && !ctx.cli.json {
        println!();
        println!("The console opens when shipdeck runs in a terminal. From scripts, try:");
        println!("  shipdeck deploy checkout 1.5.0 --env dev          # a canary that ends verified");
        println!("  shipdeck deploy checkout 1.6.0-bad --env dev      # a canary that rolls back on its own");
        println!("  shipdeck history --app checkout                   # every transition, with its cause");
        println!("  shipdeck --help                                   # everything else");
    }
    code
}

pub(super) fn status(ctx: &Ctx<'_>, env: Option<&str>, app: Option<&str>) -> i32 {
    if let Err(c) = check_filters(ctx, env, app) {
        return c;
    }
    let store = match open_store(ctx) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let (cluster, driven) = cluster_line(ctx);
    let mut rows = Vec::new();
    for (t, s) in ctx.estate.targets() {
        if env.is_some_and(|e| e != t.env) || app.is_some_and(|a| a != t.app) {
            continue;
        }
        let (spec, was_recorded) = recorded(ctx, &store, &t);
        let release = store.active_release(&t.env, &t.app).ok().flatten();
        rows.push((t, s, spec, was_recorded, release));
    }
    if ctx.cli.json {
        let workloads: Vec<_> = rows
            .iter()
            .map(|(t, s, spec, rec, r)| {
                // Every measurement of the release in flight, with its verdict and message.
                let measurements =
                    r.as_ref().map(|r| store.measurements(&r.id).unwrap_or_default()).unwrap_or_default();
                json!({"env": t.env, "app": t.app, "declared_replicas": s.replicas, "replicas": spec.replicas,
                       "routing": spec.routing, "recorded": rec, "release": r, "measurements": measurements,
                       "interrupted": r.as_ref().is_some_and(|r| interrupted(r, driven))})
            })
            .collect();
        println!(
            "{}",
            json!({"type": "status", "estate": ctx.estate.source, "data_dir": ctx.data_dir, "cluster": cluster, "workloads": workloads})
        );
        return EXIT_OK;
    }
    println!("estate: {}   data dir: {}", ctx.estate.source, ctx.data_dir.display());
    println!("cluster: {cluster}");
    println!("{:<10} {:<10} {:<22} {:<26} RELEASE", "ENV", "APP", "PODS", "TRAFFIC");
    for (t, _, spec, _, r) in rows {
        let pods: Vec<String> = spec.replicas.iter().map(|(v, n)| format!("{v}×{n}")).collect();
        let rel = r.as_ref().map_or("-".to_string(), |r| release_line(r, driven));
        println!("{:<10} {:<10} {:<22} {:<26} {rel}", t.env, t.app, pods.join(" "), traffic(&spec));
    }
    EXIT_OK
}

pub(super) fn history(ctx: &Ctx<'_>, env: Option<&str>, app: Option<&str>, limit: usize) -> i32 {
    if let Err(c) = check_filters(ctx, env, app) {
        return c;
    }
    let store = match open_store(ctx) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let filter = ReleaseFilter { env: env.map(Into::into), app: app.map(Into::into), limit: Some(limit) };
    let releases = match store.releases(&filter) {
        Ok(r) => r,
        Err(e) => return fail(ctx.cli, EXIT_BACKEND, &e.to_string()),
    };
    for r in &releases {
        let transitions = store.transitions(&r.id).unwrap_or_default();
        if ctx.cli.json {
            let steps = store.steps(&r.id).unwrap_or_default();
            let measurements = store.measurements(&r.id).unwrap_or_default();
            let approvals = store.approvals(&r.id).unwrap_or_default();
            println!(
                "{}",
                json!({"type": "release", "release": r, "transitions": transitions, "steps": steps,
                       "measurements": measurements, "approvals": approvals})
            );
            continue;
        }
        let from = r.previous_version.as_deref().unwrap_or("nothing");
        println!(
            "{}  {} {from} → {} in {}  {}  {}{}{}  by {}",
            r.id,
            r.app,
            r.version,
            r.env,
            r.strategy,
            r.status,
            if r.interrupted { " (interrupted)" } else { "" },
            r.kind_label(),
            r.requested_by
        );
        for t in transitions {
            println!("    {}  {:<12} {}", t.at.format("%Y-%m-%d %H:%M:%S"), t.to.as_str(), t.cause);
        }
    }
    if ctx.cli.json {
        println!("{}", json!({"type": "summary", "count": releases.len()}));
    } else if releases.is_empty() {
        println!("no releases yet");
    }
    EXIT_OK
}

pub(super) fn env_report(ctx: &Ctx<'_>) -> i32 {
    let store = match open_store(ctx) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let (_, driven) = cluster_line(ctx);
    let mut envs = Vec::new();
    for env in &ctx.estate.environments {
        let mut apps = Vec::new();
        for app in &ctx.estate.apps {
            let t = Target::new(&env.name, app);
            let Some(s) = ctx.estate.settings(&env.name, app) else { continue };
            let (spec, _) = recorded(ctx, &store, &t);
            let filter = ReleaseFilter { env: Some(env.name.clone()), app: Some(app.clone()), limit: None };
            let releases = store.releases(&filter).unwrap_or_default();
            let last_verified = releases.iter().find(|r| r.status == Status::Verified).map(|r| r.version.clone());
            let active = releases.iter().find(|r| r.status.is_active()).cloned();
            let main =
                spec.routing.weights.iter().filter(|(_, w)| **w > 0).max_by_key(|(_, w)| **w).map(|(v, _)| v.clone());
            let mut drift = Vec::new();
            if active.is_none() {
                let running: u32 = main.as_ref().and_then(|v| spec.replicas.get(v)).copied().unwrap_or(0);
                if running != s.replicas {
                    drift.push(format!("declares {} replicas, {running} run", s.replicas));
                }
                if spec.routing.weights.values().filter(|w| **w > 0).count() > 1 || !spec.routing.matches.is_empty() {
                    drift.push(format!("traffic is split ({}) with no release in progress", traffic(&spec)));
                }
                if let (Some(v), Some(m)) = (&last_verified, &main)
                    && v != m
                {
                    drift.push(format!("runs {m}, but the last verified release is {v}"));
                }
            }
            let pending: Vec<&Release> = releases.iter().filter(|r| r.status == Status::Planned).collect();
            apps.push(json!({
                "app": app,
                "runs": main,
                "pods": spec.replicas,
                "traffic": traffic(&spec),
                "last_verified": last_verified,
                "release_in_progress": active.as_ref().map(|r| release_line(r, driven)),
                "settings": {"replicas": s.replicas, "rps": s.rps, "strategy": s.strategy, "rollback_on_failure": s.rollback_on_failure,
                             "checks": s.verification.checks.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
                             "overrides": s.overrides.get(&env.name).map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()},
                "drift": drift,
                "pending_approvals": pending.iter().map(|r| json!({"release": r.id, "version": r.version, "requested_by": r.requested_by})).collect::<Vec<_>>(),
            }));
        }
        envs.push(json!({"name": env.name, "approval_required": env.approval_required, "approvers": env.approvers,
                         "promotes_to": env.promotes_to, "apps": apps}));
    }
    // Versions that differ between environments, in promotion order.
    let mut across = Vec::new();
    for app in &ctx.estate.apps {
        let runs: Vec<String> = envs
            .iter()
            .filter_map(|e| {
                let a = e["apps"].as_array()?.iter().find(|a| a["app"] == app.as_str())?;
                Some(format!("{} {}", e["name"].as_str()?, a["runs"].as_str().unwrap_or("-")))
            })
            .collect();
        let versions: std::collections::BTreeSet<&str> = runs.iter().filter_map(|r| r.split(' ').nth(1)).collect();
        if versions.len() > 1 {
            across.push(format!("{app}: {}", runs.join(", ")));
        }
    }
    if ctx.cli.json {
        println!(
            "{}",
            json!({"type": "env_report", "estate": ctx.estate.source, "environments": envs, "drift_between_environments": across})
        );
        return EXIT_OK;
    }
    for e in &envs {
        let gate = if e["approval_required"].as_bool() == Some(true) { "approval required" } else { "no approval" };
        let to = e["promotes_to"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        println!(
            "{} ({gate}; promotes to {})",
            e["name"].as_str().unwrap_or(""),
            if to.is_empty() { "nothing" } else { &to }
        );
        for a in e["apps"].as_array().into_iter().flatten() {
            let st = &a["settings"];
            println!(
                "  {:<10} runs {:<12} traffic {:<22} | {} × {} rps, {}{}",
                a["app"].as_str().unwrap_or(""),
                a["runs"].as_str().unwrap_or("-"),
                a["traffic"].as_str().unwrap_or(""),
                st["replicas"],
                st["rps"],
                st["strategy"].as_str().unwrap_or(""),
                match st["overrides"].as_array() {
                    Some(o) if !o.is_empty() =>
                        format!(" (overrides: {})", o.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")),
                    _ => String::new(),
                }
            );
            if let Some(r) = a["release_in_progress"].as_str() {
                println!("      release: {r}");
            }
            for d in a["drift"].as_array().into_iter().flatten() {
                println!("      drift: {}", d.as_str().unwrap_or(""));
            }
            for p in a["pending_approvals"].as_array().into_iter().flatten() {
                println!(
                    "      pending approval: {} ({} requested by {})",
                    p["release"].as_str().unwrap_or(""),
                    p["version"].as_str().unwrap_or(""),
                    p["requested_by"].as_str().unwrap_or("")
                );
            }
        }
    }
    if !across.is_empty() {
        println!("between environments:");
        for a in across {
            println!("  {a}");
        }
    }
    EXIT_OK
}
