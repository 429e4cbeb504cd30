//! Emergency releases, as the standard's Emergency Release Procedures prescribe: created with
//! the plan of their severity, approved by two people other than the requester (P1, P2; a P0
//! needs none and notifies instead), then executed by a task ([`exec`]) that builds the fix,
//! runs only the critical suites and deploys it environment by environment, rolling back
//! everything it changed when anything fails. Every change is stored, then published as
//! [`Event::Emergency`].

mod exec;
pub(crate) mod process;

use std::sync::Arc;

use chrono::{Duration as ChronoDuration, Utc};
use serde::Serialize;

use super::{Command, EngineError, Event, Inner};
use crate::model::{Emergency, EmergencyLogEntry, EmergencyStatus, EmergencyType, Severity};

/// What an emergency command did, with the emergency as it is now.
#[derive(Debug, Clone, Serialize)]
pub struct EmergencyOutcome {
    pub message: String,
    pub emergency: Emergency,
    /// True when a task now executes it.
    pub running: bool,
}

/// Carries out one of the emergency commands.
pub(crate) async fn execute(
    inner: &Arc<Inner>,
    actor: &str,
    command: Command,
) -> Result<EmergencyOutcome, EngineError> {
    match command {
        Command::CreateEmergency { kind, severity, description, affected_services, fix_version } => {
            create(inner, actor, kind, severity, &description, affected_services, &fix_version)
        }
        Command::ApproveEmergency { id } => approve(inner, actor, &id),
        Command::ExecuteEmergency { id } => start(inner, actor, &id).await,
        other => Err(EngineError::BadInput(format!("`{}` is not an emergency command", other.name()))),
    }
}

/// The emergency with this id, or a message saying how to find one.
pub(crate) fn get(inner: &Inner, id: &str) -> Result<Emergency, EngineError> {
    inner
        .store
        .emergency(id)?
        .ok_or_else(|| EngineError::BadInput(format!("no emergency with id `{id}` (see `shipdeck emergency list`)")))
}

fn log(at_step: &str, ok: bool, message: impl Into<String>) -> EmergencyLogEntry {
    EmergencyLogEntry { at: Utc::now(), step: at_step.to_string(), ok, message: message.into() }
}

/// Stores a log line, adds it to `e` and publishes the emergency with it.
pub(crate) fn note(inner: &Inner, e: &mut Emergency, entry: EmergencyLogEntry) {
    if let Err(err) = inner.store.add_emergency_log(&e.id, &entry) {
        tracing::error!("emergency {}: log line lost: {err}", e.id);
    }
    let message = format!("{}: {}", entry.step, entry.message);
    e.log.push(entry);
    inner.emit(Event::Emergency { emergency: Box::new(e.clone()), message });
}

/// Moves `e` to `to`, stored with `cause` before it is published.
pub(crate) fn transition(
    inner: &Inner,
    e: &mut Emergency,
    to: EmergencyStatus,
    cause: &str,
) -> Result<(), EngineError> {
    let from = e.status;
    e.status = to;
    if to.is_terminal() {
        e.ended_at = Some(Utc::now());
    }
    inner.store.emergency_transition(e, from, cause)?;
    note(
        inner,
        e,
        log(
            "status",
            !matches!(to, EmergencyStatus::Failed | EmergencyStatus::RolledBack),
            format!("{} → {}: {cause}", from.as_str(), to.as_str()),
        ),
    );
    Ok(())
}

fn create(
    inner: &Arc<Inner>,
    actor: &str,
    kind: EmergencyType,
    severity: Severity,
    description: &str,
    services: Vec<String>,
    fix_version: &str,
) -> Result<EmergencyOutcome, EngineError> {
    let estate = &inner.estate;
    let description = description.trim();
    if description.is_empty() {
        return Err(EngineError::BadInput("describe the emergency: what is broken, and what the fix does".into()));
    }
    let mut affected: Vec<String> = Vec::new();
    for s in services {
        let s = s.trim().to_string();
        if !estate.apps.contains(&s) {
            return Err(EngineError::BadInput(format!(
                "unknown service `{s}` (apps in {}: {})",
                estate.source,
                estate.apps.join(", ")
            )));
        }
        if !affected.contains(&s) {
            affected.push(s);
        }
    }
    if affected.is_empty() {
        return Err(EngineError::BadInput(format!(
            "name at least one affected service (apps in {}: {})",
            estate.source,
            estate.apps.join(", ")
        )));
    }
    for app in &affected {
        let settings = estate.targets().into_iter().map(|(_, s)| s).find(|s| &s.name == app);
        let Some(settings) = settings else { continue };
        if settings.profile(fix_version).is_none() {
            return Err(EngineError::BadInput(format!(
                "fix version `{fix_version}` is not a known version of {app} (known versions of {app}: {})",
                settings.known_versions().join(", ")
            )));
        }
    }
    let mut plan = estate.emergency_plan(severity);
    let missing: Vec<String> = plan.environments.iter().filter(|e| estate.env(e).is_none()).cloned().collect();
    plan.environments.retain(|e| estate.env(e).is_some());
    if plan.environments.is_empty() {
        return Err(EngineError::BadInput(format!(
            "none of the {} plan's environments ({}) is in {}; name yours with [emergency.{}] environments = [...]",
            severity.name(),
            missing.join(", "),
            estate.source,
            severity.name()
        )));
    }
    let now = Utc::now();
    let mut e = Emergency {
        id: Emergency::id_for(now),
        kind,
        severity,
        description: description.to_string(),
        affected_services: affected,
        fix_version: fix_version.to_string(),
        requested_by: actor.to_string(),
        created_at: now,
        approvers: Vec::new(),
        status: EmergencyStatus::PendingApproval,
        plan,
        log: Vec::new(),
        ended_at: None,
        cause: None,
        tests: None,
    };
    e.log.push(log(
        "created",
        true,
        format!(
            "{} {} by {actor}: {}; fix {} of {}",
            severity.name(),
            kind.name(),
            e.description,
            e.fix_version,
            e.affected_services.join(", ")
        ),
    ));
    e.log.push(log("plan", true, e.plan.summary()));
    if !missing.is_empty() {
        e.log.push(log("plan", true, format!("not in the estate, left out of the plan: {}", missing.join(", "))));
    }
    let cause = format!("created by {actor}");
    // Ids are `ER-<UTC second>`: a second emergency within the same second takes the next free
    // second, so ids stay unique and keep their creation order (created_at keeps the real time).
    let mut stored = false;
    for bump in 0..3600 {
        e.id = Emergency::id_for(now + ChronoDuration::seconds(bump));
        if inner.store.insert_emergency(&e, &cause)? {
            stored = true;
            break;
        }
    }
    if !stored {
        return Err(EngineError::Refused("no free emergency id within the next hour".into()));
    }
    inner.audit(actor, "emergency create", &e.id, &format!("{} {} {}", severity.name(), kind.name(), e.fix_version));
    inner.emit(Event::Emergency { emergency: Box::new(e.clone()), message: format!("created by {actor}") });
    let message = if e.plan.approval_required {
        let hint = format!(
            "waiting for {} approvals from people other than {actor}: `shipdeck emergency approve {} --as NAME`",
            e.plan.approvals_needed, e.id
        );
        note(inner, &mut e, log("approval", true, hint.clone()));
        format!("emergency {} created; {hint}", e.id)
    } else {
        transition(inner, &mut e, EmergencyStatus::Approved, "P0: no approval needed, notified instead")?;
        format!("emergency {} created; P0: no approval needed; run it with `shipdeck emergency execute {}`", e.id, e.id)
    };
    Ok(EmergencyOutcome { message, emergency: e, running: false })
}

fn approve(inner: &Arc<Inner>, actor: &str, id: &str) -> Result<EmergencyOutcome, EngineError> {
    let mut e = get(inner, id)?;
    match e.status {
        EmergencyStatus::PendingApproval => {}
        EmergencyStatus::Approved if !e.plan.approval_required => {
            return Err(EngineError::BadInput(format!(
                "emergency {id} is {}: it needs no approval",
                e.severity.name()
            )));
        }
        EmergencyStatus::Approved => {
            return Err(EngineError::BadInput(format!(
                "emergency {id} already has its approvals ({}); run it with `shipdeck emergency execute {id}`",
                e.approvers.join(", ")
            )));
        }
        s => return Err(EngineError::BadInput(format!("emergency {id} is {}; approvals are closed", s.as_str()))),
    }
    if e.requested_by == actor {
        return Err(EngineError::BadInput(format!(
            "{actor} requested emergency {id} and cannot approve it; {} other people must (`--as NAME` or SHIPDECK_USER)",
            e.plan.approvals_needed
        )));
    }
    if e.approvers.iter().any(|a| a == actor) {
        return Err(EngineError::BadInput(format!(
            "{actor} already approved emergency {id}; it needs {} more from someone other than {}",
            e.approvals_missing(),
            not_these(&e)
        )));
    }
    inner.store.add_emergency_approval(id, actor, Utc::now())?;
    e.approvers.push(actor.to_string());
    inner.audit(actor, "emergency approve", id, "");
    let have = e.approvers.len();
    let need = e.plan.approvals_needed as usize;
    note(inner, &mut e, log("approval", true, format!("approved by {actor} ({have}/{need})")));
    let message = if e.approvals_missing() == 0 {
        let cause = format!("approved by {}", e.approvers.join(" and "));
        transition(inner, &mut e, EmergencyStatus::Approved, &cause)?;
        format!("emergency {id} {cause}; run it with `shipdeck emergency execute {id}`")
    } else {
        format!(
            "emergency {id} approved by {actor}; {} more approval needed from someone other than {}",
            e.approvals_missing(),
            not_these(&e)
        )
    };
    Ok(EmergencyOutcome { message, emergency: e, running: false })
}

/// `alice (who requested it) or bob`: who may not give the next approval.
fn not_these(e: &Emergency) -> String {
    let mut who = vec![format!("{} (who requested it)", e.requested_by)];
    who.extend(e.approvers.iter().cloned());
    who.join(" or ")
}

async fn start(inner: &Arc<Inner>, actor: &str, id: &str) -> Result<EmergencyOutcome, EngineError> {
    let mut e = get(inner, id)?;
    match e.status {
        EmergencyStatus::Approved => {}
        EmergencyStatus::PendingApproval => {
            return Err(EngineError::Refused(format!(
                "emergency {id} cannot run yet: it needs {} more approval{} (has {}), from someone other than {}",
                e.approvals_missing(),
                if e.approvals_missing() == 1 { "" } else { "s" },
                e.approvers.len(),
                not_these(&e)
            )));
        }
        EmergencyStatus::Executing => {
            return Err(EngineError::Refused(format!(
                "emergency {id} is already executing; follow it with `shipdeck emergency show {id}`"
            )));
        }
        s => return Err(EngineError::Refused(format!("emergency {id} has ended ({}); create a new one", s.as_str()))),
    }
    // Nothing may be in flight where the fix goes: it would fight the emergency's release.
    for env in &e.plan.environments {
        for app in &e.affected_services {
            if inner.estate.settings(env, app).is_none() {
                return Err(EngineError::Refused(format!(
                    "{app} does not run in {env}; the plan cannot deploy it there"
                )));
            }
            if let Some(r) = inner.store.active_release(env, app)? {
                return Err(EngineError::Refused(format!(
                    "release {} of {app} in {env} is {}; abort it first (`shipdeck abort {app} --env {env}`)",
                    r.id, r.status
                )));
            }
        }
    }
    inner.audit(actor, "emergency execute", id, &e.plan.summary());
    transition(inner, &mut e, EmergencyStatus::Executing, &format!("executed by {actor}"))?;
    let task = tokio::spawn(exec::Exec::new(inner.clone(), e.clone(), actor.to_string()).run());
    inner.track_emergency(task);
    Ok(EmergencyOutcome {
        message: format!("emergency {id} executing: {}", e.plan.summary()),
        emergency: e,
        running: true,
    })
}
