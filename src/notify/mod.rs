//! Telling people: release notes made from git when a release starts (stored with it), webhook
//! notifications routed by event and, for emergencies, by severity, and the operational
//! metrics served on `/metrics`. All of it follows the engine's events from tasks of its own,
//! so nothing here can slow a release or a rollback.

pub mod metrics;
pub mod notes;
pub mod webhook;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::Estate;
use crate::engine::Event;
use crate::model::{Audience, Emergency, NotifyEvent, Release, ReleaseKind, ReleaseNotes, Severity, Status, fmt_secs};
use crate::store::Store;
use webhook::{About, Deliverer, Message, Report};

/// The audiences an emergency of a severity reaches (the standard's notification matrix).
pub fn audiences(severity: Severity) -> &'static [Audience] {
    match severity {
        Severity::P0 => &[Audience::Oncall, Audience::Executives],
        Severity::P1 => &[Audience::TechLeads, Audience::Oncall],
        Severity::P2 => &[Audience::Standard],
    }
}

/// The notifier: a task that follows the engine's events, and the webhook workers it feeds.
pub struct Notifier {
    router: tokio::task::JoinHandle<()>,
    flush: mpsc::UnboundedSender<oneshot::Sender<()>>,
    deliverer: Arc<Deliverer>,
}

impl Notifier {
    /// Follow `events`: make and store release notes, and send the estate's channels what
    /// concerns them. `report` shows a delivery that was given up (as an engine note).
    pub fn spawn(estate: Arc<Estate>, store: Arc<Store>, events: broadcast::Receiver<Event>, report: Report) -> Self {
        let deliverer = Arc::new(Deliverer::start(&estate.notifications, store.clone(), report));
        let (flush, flush_rx) = mpsc::unbounded_channel();
        let router = Router {
            estate,
            store,
            deliverer: deliverer.clone(),
            seen: HashMap::new(),
            emergencies: HashMap::new(),
            notes: HashMap::new(),
        };
        Self { router: tokio::spawn(router.run(events, flush_rx)), flush, deliverer }
    }

    /// Handle every event published so far, then wait (at most `limit`) until every message is
    /// delivered or given up. True when everything settled in time.
    pub async fn flush(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let (tx, rx) = oneshot::channel();
        if self.flush.send(tx).is_ok() && tokio::time::timeout_at(deadline, rx).await.is_err() {
            return false;
        }
        self.deliverer.settle(deadline.saturating_duration_since(tokio::time::Instant::now())).await
    }

    /// Messages queued or being tried now.
    pub fn pending(&self) -> usize {
        self.deliverer.pending()
    }

    pub fn stop(&self) {
        self.router.abort();
        self.deliverer.stop();
    }
}

struct Router {
    estate: Arc<Estate>,
    store: Arc<Store>,
    deliverer: Arc<Deliverer>,
    /// The last status seen per release: only a change is news.
    seen: HashMap<String, Status>,
    /// Per emergency: (created told, completed told).
    emergencies: HashMap<String, (bool, bool)>,
    /// Notes per release, once made or read.
    notes: HashMap<String, Option<Arc<ReleaseNotes>>>,
}

impl Router {
    async fn run(
        mut self,
        mut events: broadcast::Receiver<Event>,
        mut flush: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    ) {
        use broadcast::error::{RecvError, TryRecvError};
        loop {
            tokio::select! {
                biased;
                e = events.recv() => match e {
                    Ok(event) => self.on_event(event).await,
                    Err(RecvError::Lagged(n)) => tracing::warn!("notifier missed {n} engine events"),
                    Err(RecvError::Closed) => break,
                },
                Some(done) = flush.recv() => {
                    loop {
                        match events.try_recv() {
                            Ok(event) => self.on_event(event).await,
                            Err(TryRecvError::Lagged(_)) => continue,
                            Err(_) => break,
                        }
                    }
                    let _ = done.send(());
                }
            }
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Release { release, .. } => self.on_release(*release).await,
            Event::Emergency { emergency, .. } => self.on_emergency(&emergency),
            _ => {}
        }
    }

    async fn on_release(&mut self, r: Release) {
        let before = self.seen.insert(r.id.clone(), r.status);
        if before == Some(r.status) {
            return;
        }
        let notes = self.notes_of(&r).await;
        let approval = self.estate.env(&r.env).is_some_and(|e| e.approval_required) && r.kind != ReleaseKind::Rollback;
        let event = match r.status {
            Status::Planned if before.is_none() && approval => NotifyEvent::ApprovalRequested,
            Status::InProgress if matches!(before, None | Some(Status::Planned)) => NotifyEvent::ReleaseStarted,
            Status::Verified => NotifyEvent::ReleaseVerified,
            Status::Failed => NotifyEvent::ReleaseFailed,
            Status::RolledBack => NotifyEvent::RolledBack,
            Status::Aborted => NotifyEvent::ReleaseAborted,
            _ => return,
        };
        let severity = match event {
            NotifyEvent::ReleaseFailed | NotifyEvent::RolledBack => "error",
            NotifyEvent::ReleaseAborted => "warning",
            _ => "info",
        };
        let about = About::Release(json!({
            "id": r.id, "app": r.app, "env": r.env, "version": r.version,
            "previous_version": r.previous_version, "status": r.status, "strategy": r.strategy,
            "kind": r.kind, "requested_by": r.requested_by, "reason": r.reason,
        }));
        let text = release_text(event, &r);
        for c in &self.estate.notifications {
            if !c.events.contains(&event) || !(c.environments.is_empty() || c.environments.contains(&r.env)) {
                continue;
            }
            let body = webhook::body(c.format, event, severity, &about, &text, notes.as_deref());
            let m = Message { event, subject: r.id.clone(), release_id: Some(r.id.clone()), body };
            self.deliverer.send(&c.name, m);
        }
    }

    /// The release's notes: stored ones, else made now from git and stored. None for a rollback.
    async fn notes_of(&mut self, r: &Release) -> Option<Arc<ReleaseNotes>> {
        if let Some(n) = self.notes.get(&r.id) {
            return n.clone();
        }
        let notes = match self.store.release_notes(&r.id) {
            Ok(Some(n)) => Some(Arc::new(n)),
            _ if r.kind == ReleaseKind::Rollback => None,
            _ => {
                let made = match self.estate.settings(&r.env, &r.app) {
                    Some(s) => notes::generate(s, r.previous_version.as_deref(), &r.version).await,
                    None => ReleaseNotes::unavailable(&r.app, &r.version, None, "the app is not in the estate"),
                };
                if let Err(e) = self.store.save_release_notes(&r.id, &made) {
                    tracing::error!("saving release notes of {}: {e}", r.id);
                }
                Some(Arc::new(made))
            }
        };
        self.notes.insert(r.id.clone(), notes.clone());
        notes
    }

    fn on_emergency(&mut self, e: &Emergency) {
        let told = self.emergencies.entry(e.id.clone()).or_default();
        let event = if e.status.is_terminal() {
            if told.1 {
                return;
            }
            told.1 = true;
            NotifyEvent::EmergencyCompleted
        } else {
            if told.0 {
                return;
            }
            told.0 = true;
            NotifyEvent::EmergencyCreated
        };
        let reach = audiences(e.severity);
        let action = if e.plan.approval_required { "APPROVAL" } else { "NOTIFICATION" };
        let about = About::Emergency(json!({
            "id": e.id, "type": e.kind, "severity": e.severity, "description": e.description,
            "affected_services": e.affected_services, "fix_version": e.fix_version,
            "requested_by": e.requested_by, "status": e.status, "cause": e.cause,
            "action_required": action,
        }));
        let text = emergency_text(event, e);
        for c in &self.estate.notifications {
            if !c.events.contains(&event) || !c.audience.iter().any(|a| reach.contains(a)) {
                continue;
            }
            let body = webhook::body(c.format, event, e.severity.name(), &about, &text, None);
            self.deliverer.send(&c.name, Message { event, subject: e.id.clone(), release_id: None, body });
        }
    }
}

fn release_text(event: NotifyEvent, r: &Release) -> String {
    let what = format!("{} {} in {}{}", r.app, r.version, r.env, r.kind_label());
    let why = r.reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
    let took = fmt_secs((r.updated_at - r.created_at).num_seconds().max(0) as u64);
    let text = match event {
        NotifyEvent::ApprovalRequested => format!("{what} waits for approval (requested by {}){why}", r.requested_by),
        NotifyEvent::ReleaseStarted => format!(
            "{what} started ({}, replacing {}), requested by {}",
            r.strategy,
            r.previous_version.as_deref().unwrap_or("nothing"),
            r.requested_by
        ),
        NotifyEvent::ReleaseVerified => format!("{what} is verified (took {took})"),
        NotifyEvent::ReleaseFailed => format!("{what} FAILED{why}"),
        NotifyEvent::RolledBack => format!("{what} was ROLLED BACK{why}"),
        NotifyEvent::ReleaseAborted => format!("{what} was aborted{why}"),
        _ => what,
    };
    format!("{text} [{}]", r.id)
}

fn emergency_text(event: NotifyEvent, e: &Emergency) -> String {
    let services = e.affected_services.join(", ");
    match event {
        NotifyEvent::EmergencyCreated => {
            let action = if e.plan.approval_required {
                format!("needs {} approvals: `shipdeck emergency approve {}`", e.plan.approvals_needed, e.id)
            } else {
                "runs now, no approval needed".into()
            };
            format!(
                "[{} EMERGENCY {}] {}: {}; affects {services}; fix {} requested by {}; {action}",
                e.severity.name(),
                e.id,
                e.kind.name(),
                e.description,
                e.fix_version,
                e.requested_by
            )
        }
        _ => {
            let status = serde_json::to_value(e.status).ok().and_then(|v| v.as_str().map(String::from));
            let cause = e.cause.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
            format!(
                "[{} EMERGENCY {}] {} fix {} for {services} ended {}{cause}",
                e.severity.name(),
                e.id,
                e.kind.name(),
                e.fix_version,
                status.unwrap_or_default()
            )
        }
    }
}
