//! `shipdeck emergency …`: create, approve, execute, show, list and report emergency releases.
//! Changes go to the engine of the shipdeck that holds the data dir (this process, or another
//! one over its control socket); reads come from the store.

use std::time::Duration;

use clap::Subcommand;
use tokio::time::Instant;

use super::{Ctx, EXIT_BACKEND, EXIT_BAD_INPUT, EXIT_OK, EXIT_RELEASE_FAILED, fail};
use crate::config::paths;
use crate::engine::Command;
use crate::model::{Emergency, EmergencyStatus, EmergencyType, Severity};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum EmergencyCmd {
    /// Open an emergency release and print its plan; nothing runs until `emergency execute`.
    Create {
        /// security_patch, critical_bug, data_corruption, service_outage or compliance_issue.
        #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
        kind: EmergencyType,
        /// P0 (immediate, no approval), P1 (rapid) or P2 (controlled).
        #[arg(long, value_parser = parse_severity)]
        severity: Severity,
        /// What is broken and what the fix does.
        #[arg(long)]
        description: String,
        /// An affected app, as in the estate (repeatable).
        #[arg(long = "service", value_name = "APP", required = true)]
        services: Vec<String>,
        /// The version that fixes it; a version the estate knows for every affected app.
        #[arg(long)]
        fix_version: String,
    },
    /// Approve an emergency as `--as NAME` (P1 and P2 need two people other than the requester).
    Approve { id: String },
    /// Build, test and roll out an approved emergency's fix, following its log to the end
    /// (exit 0 completed, 1 failed or rolled back). A P0 asks for confirmation (or --yes).
    Execute { id: String },
    /// An emergency with its plan, approvals, status changes and execution log.
    Show { id: String },
    /// Emergencies, newest first.
    List {
        /// Only those with this status (pending_approval, approved, executing, completed, failed, rolled_back).
        #[arg(long, value_parser = parse_status)]
        status: Option<EmergencyStatus>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// By type and severity, average time to resolve, success rate, most affected services,
    /// trend by ISO week.
    Report,
}

fn parse_type(s: &str) -> Result<EmergencyType, String> {
    EmergencyType::parse(s).ok_or_else(|| {
        let all: Vec<&str> = EmergencyType::ALL.iter().map(|t| t.name()).collect();
        format!("unknown emergency type `{s}` (one of: {})", all.join(", "))
    })
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| format!("unknown severity `{s}` (one of: P0, P1, P2)"))
}

fn parse_status(s: &str) -> Result<EmergencyStatus, String> {
    EmergencyStatus::parse(s).ok_or_else(|| {
        let all: Vec<&str> = EmergencyStatus::ALL.iter().map(|t| t.as_str()).collect();
        format!("unknown status `{s}` (one of: {})", all.join(", "))
    })
}

pub(super) async fn run(ctx: &Ctx<'_>, what: &EmergencyCmd) -> i32 {
    match what {
        EmergencyCmd::Create { kind, severity, description, services, fix_version } => {
            let command = Command::CreateEmergency {
                kind: *kind,
                severity: *severity,
                description: description.clone(),
                affected_services: services.clone(),
                fix_version: fix_version.clone(),
            };
            change(ctx, command).await
        }
        EmergencyCmd::Approve { id } => change(ctx, Command::ApproveEmergency { id: id.clone() }).await,
        EmergencyCmd::Execute { id } => {
            let store = match open_store(ctx) {
                Ok(s) => s,
                Err(code) => return code,
            };
            if let Ok(Some(e)) = store.emergency(id)
                && e.severity == Severity::P0
                && e.status == EmergencyStatus::Approved
            {
                let what = format!(
                    "roll out the P0 fix {} of {} at once, without a canary, to {}",
                    e.fix_version,
                    e.affected_services.join(", "),
                    e.plan.environments.join(", ")
                );
                if let Err(why) = super::confirm(ctx.cli, &what) {
                    return fail(ctx.cli, EXIT_BAD_INPUT, &why);
                }
            }
            change(ctx, Command::ExecuteEmergency { id: id.clone() }).await
        }
        EmergencyCmd::Show { id } => show(ctx, id),
        EmergencyCmd::List { status, limit } => list(ctx, *status, *limit),
        EmergencyCmd::Report => report(ctx),
    }
}

fn open_store(ctx: &Ctx<'_>) -> Result<Store, i32> {
    Store::open(&paths::store_file(&ctx.data_dir)).map_err(|e| fail(ctx.cli, EXIT_BACKEND, &e.to_string()))
}

/// Carries out a command here, or in the shipdeck that holds the data dir, and prints the
/// emergency; `execute` then follows its log to the end.
async fn change(ctx: &Ctx<'_>, command: Command) -> i32 {
    let cli = ctx.cli;
    if cli.readonly {
        return fail(cli, EXIT_BAD_INPUT, &format!("read-only: `{}` would change the estate", command.name()));
    }
    let follow = matches!(command, Command::ExecuteEmergency { .. });
    match ctx.start_host(false, command.name()).await {
        Ok(host) => {
            let code = match host.engine.execute_emergency(&ctx.actor, command).await {
                Ok(o) => {
                    print_outcome(ctx, &o.message, &o.emergency, None, follow);
                    if follow { follow_log(ctx, &host.store, &o.emergency.id, true).await } else { EXIT_OK }
                }
                Err(e) => super::engine_fail(cli, &e),
            };
            host.stop().await;
            code
        }
        Err(busy @ crate::host::HostError::Busy { .. }) => {
            let Some(reply) = crate::control::send(&ctx.data_dir, &ctx.actor, command).await else {
                return fail(cli, EXIT_BACKEND, &busy.to_string());
            };
            if !reply.ok {
                return fail(cli, reply.exit_code, &reply.message);
            }
            let Some(e) = reply.emergency else {
                return fail(cli, EXIT_BACKEND, "the other shipdeck sent no emergency");
            };
            print_outcome(ctx, &reply.message, &e, Some("control socket"), follow);
            if !follow {
                return EXIT_OK;
            }
            match open_store(ctx) {
                Ok(store) => follow_log(ctx, &store, &e.id, false).await,
                Err(code) => code,
            }
        }
        Err(e) => fail(cli, e.exit_code(), &e.to_string()),
    }
}

/// The command's message and the emergency (its head only when its log is not followed next).
fn print_outcome(ctx: &Ctx<'_>, message: &str, e: &Emergency, via: Option<&str>, following: bool) {
    if ctx.cli.json {
        let mut line = serde_json::json!({"type": "accepted", "message": message, "emergency": e});
        if let Some(via) = via {
            line["via"] = via.into();
        }
        println!("{line}");
        return;
    }
    println!("{message}");
    if !following {
        print_head(e);
    }
}

fn print_head(e: &Emergency) {
    println!("emergency {}  {} {}  {}", e.id, e.severity.name(), e.kind.name(), e.status.as_str());
    println!(
        "  requested by {} at {}: {}",
        e.requested_by,
        e.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        e.description
    );
    println!("  fix {} for {}", e.fix_version, e.affected_services.join(", "));
    println!("  plan: {}", e.plan.summary());
    if e.plan.approval_required {
        let who = if e.approvers.is_empty() { "none yet".to_string() } else { e.approvers.join(", ") };
        println!("  approvals: {}/{} ({who})", e.approvers.len(), e.plan.approvals_needed);
    }
    if let Some(t) = e.tests {
        println!("  critical suites: {} passed, {} failed, {} skipped", t.passed, t.failed, t.skipped);
    }
    if let Some(cause) = &e.cause {
        println!("  cause: {cause}");
    }
}

/// Prints the log as it grows until the emergency ends. `owner`: this process executes it, so
/// leaving stops it (the next start marks it failed, interrupted).
async fn follow_log(ctx: &Ctx<'_>, store: &Store, id: &str, owner: bool) -> i32 {
    let json = ctx.cli.json;
    let started = Instant::now();
    let mut shown = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => {
                let msg = if owner {
                    format!("interrupted: emergency {id} stops with this process and will show as failed (interrupted)")
                } else {
                    format!("stopped following; emergency {id} goes on in the shipdeck that holds the data dir")
                };
                if json {
                    println!("{}", serde_json::json!({"type": "detached", "emergency_id": id, "message": msg}));
                } else {
                    eprintln!("{msg}");
                }
                return EXIT_RELEASE_FAILED;
            }
        }
        let e = match store.emergency(id) {
            Ok(Some(e)) => e,
            Ok(None) => return fail(ctx.cli, EXIT_BACKEND, &format!("emergency {id} disappeared from the store")),
            Err(err) => return fail(ctx.cli, EXIT_BACKEND, &err.to_string()),
        };
        for entry in e.log.iter().skip(shown) {
            if json {
                println!("{}", serde_json::json!({"type": "emergency_log", "emergency_id": id, "entry": entry}));
            } else {
                let mark = if entry.ok { "" } else { "FAILED " };
                println!("[{:>6.1}s] {}: {mark}{}", started.elapsed().as_secs_f64(), entry.step, entry.message);
            }
        }
        shown = e.log.len();
        if e.status.is_terminal() {
            let transitions = store.emergency_transitions(id).unwrap_or_default();
            if json {
                println!("{}", serde_json::json!({"type": "summary", "emergency": e, "transitions": transitions}));
            } else {
                print_head(&e);
            }
            return if e.status == EmergencyStatus::Completed { EXIT_OK } else { EXIT_RELEASE_FAILED };
        }
    }
}

fn show(ctx: &Ctx<'_>, id: &str) -> i32 {
    let store = match open_store(ctx) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let e = match store.emergency(id) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return fail(
                ctx.cli,
                EXIT_BAD_INPUT,
                &format!("no emergency with id `{id}` (see `shipdeck emergency list`)"),
            );
        }
        Err(err) => return fail(ctx.cli, EXIT_BACKEND, &err.to_string()),
    };
    let transitions = store.emergency_transitions(id).unwrap_or_default();
    if ctx.cli.json {
        println!("{}", serde_json::json!({"type": "emergency", "emergency": e, "transitions": transitions}));
        return EXIT_OK;
    }
    print_head(&e);
    println!("  status changes:");
    for t in &transitions {
        let from = t.from.map_or("-", |s| s.as_str());
        println!("    {}  {from} → {}: {}", t.at.format("%H:%M:%S"), t.to.as_str(), t.cause);
    }
    println!("  log:");
    for l in &e.log {
        let mark = if l.ok { "" } else { "FAILED " };
        println!("    {}  {}: {mark}{}", l.at.format("%H:%M:%S"), l.step, l.message);
    }
    EXIT_OK
}

fn list(ctx: &Ctx<'_>, status: Option<EmergencyStatus>, limit: usize) -> i32 {
    let store = match open_store(ctx) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let all = match store.emergencies(status, Some(limit)) {
        Ok(a) => a,
        Err(err) => return fail(ctx.cli, EXIT_BACKEND, &err.to_string()),
    };
    for mut e in all {
        if ctx.cli.json {
            e.log.clear();
            println!("{}", serde_json::json!({"type": "emergency", "emergency": e}));
        } else {
            println!(
                "{}  {} {:<16} {:<16} fix {} for {}  by {}",
                e.id,
                e.severity.name(),
                e.kind.name(),
                e.status.as_str(),
                e.fix_version,
                e.affected_services.join(","),
                e.requested_by
            );
        }
    }
    EXIT_OK
}

fn report(ctx: &Ctx<'_>) -> i32 {
    let store = match open_store(ctx) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let r = match store.emergency_report() {
        Ok(r) => r,
        Err(err) => return fail(ctx.cli, EXIT_BACKEND, &err.to_string()),
    };
    if ctx.cli.json {
        println!("{}", serde_json::json!({"type": "emergency_report", "report": r}));
        return EXIT_OK;
    }
    let counts = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    };
    println!("emergencies: {}", r.total);
    println!("  by type:     {}", counts(&r.by_type));
    println!("  by severity: {}", counts(&r.by_severity));
    println!("  by status:   {}", counts(&r.by_status));
    let avg = r
        .average_resolution_secs
        .map_or("-".to_string(), |s| crate::model::HumanDuration(Duration::from_secs(s.round() as u64)).to_string());
    println!("  average time to resolve (completed): {avg}");
    let rate = r.success_rate.map_or("-".to_string(), |x| format!("{:.0}%", x * 100.0));
    println!("  success rate (completed of executed): {rate}");
    let top: Vec<String> = r.top_affected_services.iter().map(|s| format!("{} {}", s.service, s.emergencies)).collect();
    println!("  most affected services: {}", top.join(", "));
    println!("  by week:");
    for w in &r.trend {
        println!("    {}  {} total, {} completed, {} failed", w.week, w.total, w.completed, w.failed);
    }
    EXIT_OK
}
