//! The task that drives one release through its plan: a loop over steps that races each step
//! against the user's actions, persisting every transition before acting on it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::steps::{self, Progress, StepCtx, StepResult};
use super::{Action, EngineError, Event, Inner};
use crate::cluster::{Routing, Target};
use crate::model::{AppSettings, Release, Status, Step, StepRecord, VerifyPhase};

pub(crate) struct Run {
    inner: Arc<Inner>,
    target: Target,
    settings: Option<AppSettings>,
    release: Release,
    actions: mpsc::UnboundedReceiver<Action>,
    progress: Progress,
    /// The right to drive the workload, on clusters other consoles share.
    claim: Option<crate::cluster::Claim>,
}

enum Next {
    Step(StepResult),
    Action(Option<Action>),
    /// Another console took the right to drive this workload.
    Lost(String),
}

/// Resolves with the reason once the claim is lost; never without one.
async fn lost(claim: &mut Option<crate::cluster::Claim>) -> String {
    match claim {
        Some(c) => c.lost().await,
        None => std::future::pending().await,
    }
}

impl Run {
    pub fn new(inner: Arc<Inner>, release: Release, actions: mpsc::UnboundedReceiver<Action>) -> Self {
        let target = Target::new(&release.env, &release.app);
        let settings = inner.estate.settings(&release.env, &release.app).cloned();
        Self { inner, target, settings, release, actions, progress: Progress::default(), claim: None }
    }

    pub async fn drive(mut self) {
        if let Err(e) = self.drive_steps().await {
            tracing::error!("release {}: {e}", self.release.id);
            self.inner
                .emit(Event::Note { release_id: Some(self.release.id.clone()), message: format!("engine error: {e}") });
        }
        // Handed back before anyone hears the task ended: the next command may claim at once.
        if let Some(claim) = self.claim.take() {
            claim.hand_back().await;
        }
        self.inner.emit(Event::Finished { release_id: self.release.id.clone(), status: self.release.status });
    }

    async fn drive_steps(&mut self) -> Result<(), EngineError> {
        let Some(settings) = self.settings.clone() else {
            let why = format!("app {} in {} is no longer in the estate", self.release.app, self.release.env);
            return self.set_status(Status::Failed, &why);
        };
        if self.release.interrupted {
            self.release.interrupted = false;
            self.inner.store.save_release(&self.release)?;
        }
        // On a cluster other consoles share, only the holder of the workload's claim drives it.
        let holder = crate::cluster::kube::live::holder_identity();
        self.claim = match self.inner.cluster.claim(&self.target, &holder).await {
            Ok(claim) => claim,
            Err(e) if self.release.status.is_terminal() => {
                let message = format!("not driven here: {e}");
                self.inner.emit(Event::Note { release_id: Some(self.release.id.clone()), message });
                return Ok(());
            }
            Err(e) => return self.set_status(Status::Paused, &format!("not driven here: {e}; resume once it is free")),
        };
        if self.release.status == Status::Failed {
            // Only an abort or rollback of a failed release that left traffic behind gets here.
            return match self.actions.try_recv() {
                Ok(Action::Abort { actor }) => self.abort(&settings, &actor, false).await,
                Ok(Action::Rollback { actor }) => self.abort(&settings, &actor, true).await,
                _ => Ok(()),
            };
        }
        loop {
            match self.release.status {
                Status::Planned => self.set_status(Status::InProgress, "started")?,
                Status::Paused => {
                    let next = tokio::select! {
                        biased;
                        a = self.actions.recv() => Next::Action(a),
                        reason = lost(&mut self.claim) => Next::Lost(reason),
                    };
                    let action = match next {
                        Next::Action(a) => a,
                        Next::Lost(reason) => return self.lose(&reason),
                        Next::Step(_) => None,
                    };
                    match action {
                        None => return Ok(()),
                        Some(Action::Resume { actor, full }) => self.resume(&actor, full)?,
                        Some(Action::Abort { actor }) => return self.abort(&settings, &actor, false).await,
                        Some(Action::Rollback { actor }) => return self.abort(&settings, &actor, true).await,
                        Some(Action::Pause { .. }) => {}
                    }
                    continue;
                }
                s if s.is_terminal() => return Ok(()),
                _ => {}
            }
            let Some(step) = self.release.current_step().cloned() else {
                let cause = self.progress.verification.take().unwrap_or_else(|| "all steps done".into());
                return self.set_status(Status::Verified, &cause);
            };
            if matches!(step, Step::Verify { phase: VerifyPhase::PostDeploy | VerifyPhase::PostPromotion })
                && self.release.status == Status::InProgress
            {
                let cause = format!("all traffic on {}", self.release.version);
                self.set_status(Status::Deployed, &cause)?;
            }
            self.start_step(&step)?;
            let started = Instant::now();
            let next = {
                let Run { inner, target, release, actions, progress, claim, .. } = self;
                let ctx = StepCtx { inner, target, settings: &settings, release };
                tokio::select! {
                    biased;
                    a = actions.recv() => Next::Action(a),
                    reason = lost(claim) => Next::Lost(reason),
                    r = steps::execute(&ctx, &step, progress) => Next::Step(r),
                }
            };
            match next {
                Next::Step(StepResult::Done(note)) => self.finish_step(&step, &note)?,
                Next::Step(StepResult::Fail(why)) => {
                    self.record_step_end(&format!("failed: {why}"));
                    return self.recover(&settings, &why).await;
                }
                Next::Step(StepResult::WaitForPerson(why)) => {
                    self.progress.elapsed += started.elapsed();
                    self.set_status(Status::Paused, &why)?;
                }
                Next::Lost(reason) => {
                    self.progress.elapsed += started.elapsed();
                    return self.lose(&reason);
                }
                Next::Action(None) => return Ok(()),
                Next::Action(Some(action)) => {
                    self.progress.elapsed += started.elapsed();
                    match action {
                        Action::Pause { actor } => {
                            let why = format!(
                                "paused by {actor} at step {}/{}",
                                self.release.cursor + 1,
                                self.release.plan.len()
                            );
                            self.set_status(Status::Paused, &why)?;
                        }
                        Action::Resume { actor, full: true } => self.resume(&actor, true)?,
                        Action::Resume { .. } => {}
                        Action::Abort { actor } => return self.abort(&settings, &actor, false).await,
                        Action::Rollback { actor } => return self.abort(&settings, &actor, true).await,
                    }
                }
            }
        }
    }

    /// Stop driving: another console holds the workload now. Traffic stays as the last step left it.
    fn lose(&mut self, reason: &str) -> Result<(), EngineError> {
        let why = format!(
            "stopped driving at step {}/{}: this console lost the right to drive it ({reason}); traffic is as \
             that step left it — resume here once the other console is done",
            (self.release.cursor + 1).min(self.release.plan.len()),
            self.release.plan.len()
        );
        self.set_status(Status::Paused, &why)
    }

    fn set_status(&mut self, to: Status, cause: &str) -> Result<(), EngineError> {
        let from = self.release.status;
        self.release.status = to;
        self.release.reason = (to != Status::InProgress).then(|| cause.to_string());
        self.release.updated_at = Utc::now();
        self.inner.store.transition(&self.release, from, cause)?;
        self.inner.emit(Event::Release { release: Box::new(self.release.clone()), cause: cause.to_string() });
        Ok(())
    }

    fn start_step(&mut self, step: &Step) -> Result<(), EngineError> {
        self.release.updated_at = Utc::now();
        self.inner.store.save_release(&self.release)?;
        let description = step.describe();
        self.inner.store.step_started(&StepRecord {
            release_id: self.release.id.clone(),
            index: self.release.cursor,
            description: description.clone(),
            started_at: Utc::now(),
            finished_at: None,
            outcome: None,
        })?;
        self.inner.emit(Event::Step {
            release_id: self.release.id.clone(),
            index: self.release.cursor,
            total: self.release.plan.len(),
            description,
        });
        Ok(())
    }

    fn record_step_end(&self, outcome: &str) {
        if let Err(e) = self.inner.store.step_finished(&self.release.id, self.release.cursor, Utc::now(), outcome) {
            tracing::error!("recording step end: {e}");
        }
    }

    fn finish_step(&mut self, step: &Step, note: &str) -> Result<(), EngineError> {
        self.record_step_end(if note.is_empty() { "done" } else { note });
        let n = self.release.plan.len();
        match step {
            Step::SetWeight { weight } => self.release.weight = *weight,
            Step::Promote | Step::Switch | Step::NativeRollout { .. } | Step::NativeUndo { .. } => {
                self.release.weight = 100
            }
            Step::RollingBatch { new, .. } => {
                let total = self.settings.as_ref().map_or(1, |s| s.replicas.max(1));
                self.release.weight = (new * 100 / total).min(100);
            }
            _ => {}
        }
        self.release.cursor = (self.release.cursor + 1).min(n);
        self.progress.reset_step();
        self.release.updated_at = Utc::now();
        self.inner.store.save_release(&self.release)?;
        self.inner.emit(Event::Release {
            release: Box::new(self.release.clone()),
            cause: format!("step {} done: {}", self.release.cursor, step.describe()),
        });
        Ok(())
    }

    fn resume(&mut self, actor: &str, full: bool) -> Result<(), EngineError> {
        let step = self.release.current_step().cloned();
        let mut cause = format!("resumed by {actor}");
        if full {
            let skip_to = self.release.plan[self.release.cursor.min(self.release.plan.len())..]
                .iter()
                .position(|s| matches!(s, Step::Promote | Step::Switch))
                .map(|i| i + self.release.cursor);
            if let Some(i) = skip_to {
                cause = format!("resumed in full by {actor}: skipped steps {}..{}", self.release.cursor + 1, i);
                self.release.cursor = i;
                self.progress.reset_step();
            }
        } else if matches!(step, Some(Step::Pause { seconds: None } | Step::AwaitSwitch { seconds: None })) {
            self.record_step_end(&format!("resumed by {actor}"));
            self.release.cursor += 1;
            self.progress.reset_step();
        }
        self.progress.analysis.resumed();
        self.set_status(Status::InProgress, &cause)
    }

    /// After a failed step: traffic back on the previous version and the new one removed, when
    /// the app rolls back on failure; otherwise the release stops where it is.
    async fn recover(&mut self, settings: &AppSettings, why: &str) -> Result<(), EngineError> {
        match self.release.previous_version.clone().filter(|_| settings.rollback_on_failure) {
            Some(prev) => {
                self.record_intent(&format!("rolling back to {prev}: {why}"))?;
                if let Err(failed) = self.restore(settings, &prev).await {
                    // Traffic is not (all) back: the new version's pods stay, and the release
                    // says where traffic is, so a person can finish the rollback.
                    let cause = format!(
                        "{why}; rolling back to {prev} failed ({failed}); traffic now: {} — `shipdeck rollback {} \
                         --env {}` once the cluster answers",
                        self.traffic_now().await,
                        self.release.app,
                        self.release.env
                    );
                    return self.set_status(Status::Failed, &cause);
                }
                self.remove_new(Duration::ZERO).await;
                self.set_status(Status::RolledBack, &format!("{why}; rolled back to {prev}"))
            }
            None => {
                let cause = format!("{why}; traffic now: {}", self.traffic_now().await);
                self.set_status(Status::Failed, &cause)
            }
        }
    }

    /// Where traffic is, as the cluster shows it now: `1.0.0 90%, 1.1.0 10%`.
    async fn traffic_now(&self) -> String {
        match self.inner.cluster.state(&self.target).await {
            Ok(state) => describe_routing(&state.routing),
            Err(e) => format!("unknown, the cluster cannot be read ({e})"),
        }
    }

    /// Abort (traffic back now, new pods removed after the abort delay) or roll back (the
    /// same, pods removed at once).
    async fn abort(&mut self, settings: &AppSettings, actor: &str, rollback: bool) -> Result<(), EngineError> {
        let (to, verb, delay) = if rollback {
            (Status::RolledBack, "rolled back", Duration::ZERO)
        } else {
            (Status::Aborted, "aborted", settings.canary.abort_scale_down_delay.0)
        };
        let cause = match &self.release.previous_version {
            Some(prev) => format!(
                "{verb} by {actor} at step {}/{}; traffic back on {prev}",
                self.release.cursor + 1,
                self.release.plan.len()
            ),
            None => format!("{verb} by {actor}; nothing ran before, so the new version is removed"),
        };
        self.record_intent(&format!("{}: {cause}", if rollback { "rolling back" } else { "aborting" }))?;
        self.record_step_end(&cause);
        match self.release.previous_version.clone() {
            Some(prev) => {
                if let Err(failed) = self.restore(settings, &prev).await {
                    // Not aborted while traffic is elsewhere: failed, saying where it is, and
                    // the new version's pods kept; abort again finishes the job.
                    let cause = format!(
                        "{verb} by {actor} at step {}/{}, but moving traffic back to {prev} failed ({failed}); \
                         traffic now: {} — `shipdeck {} {} --env {}` again once the cluster answers",
                        self.release.cursor + 1,
                        self.release.plan.len(),
                        self.traffic_now().await,
                        if rollback { "rollback" } else { "abort" },
                        self.release.app,
                        self.release.env
                    );
                    return self.set_status(Status::Failed, &cause);
                }
                self.remove_new(delay).await;
            }
            None => {
                let _ = self.inner.cluster.set_routing(&self.target, &Routing::default()).await;
                self.remove_new(Duration::ZERO).await;
            }
        }
        // The final status is stored once traffic is back: a process that dies on the way
        // leaves the release active (and interrupted), so `abort` can finish the job.
        self.set_status(to, &cause)
    }

    /// Store what is about to happen before doing it; the status changes once it is done.
    fn record_intent(&mut self, what: &str) -> Result<(), EngineError> {
        self.release.reason = Some(what.to_string());
        self.release.updated_at = Utc::now();
        self.inner.store.save_release(&self.release)?;
        self.inner.emit(Event::Release { release: Box::new(self.release.clone()), cause: what.to_string() });
        Ok(())
    }

    /// All traffic to `prev` as soon as it has a ready pod, and `prev` back to full size; the
    /// reason when traffic could not be put (all) on `prev`.
    async fn restore(&mut self, settings: &AppSettings, prev: &str) -> Result<(), String> {
        if super::native::undoes(&self.release) {
            // The app's own Deployment ran `prev`: `kubectl rollout undo` brings it back.
            let ctx = StepCtx { inner: &self.inner, target: &self.target, settings, release: &self.release };
            let (notes, moved) = super::native::restore(&ctx, prev).await;
            for note in notes {
                self.note(note);
            }
            if moved.is_ok() {
                self.release.weight = 0;
                let _ = self.inner.store.save_release(&self.release);
            }
            return moved;
        }
        let cluster = &self.inner.cluster;
        let target = &self.target;
        let all_prev = Routing::all_to(prev);
        if let Err(e) = cluster.scale(target, prev, settings.replicas).await {
            self.note(format!("scaling {prev} back up failed: {e}"));
        }
        let ready_now = cluster.state(target).await.map(|s| s.replicas(prev).ready).unwrap_or(0);
        if ready_now > 0
            && let Err(e) = cluster.set_routing(target, &all_prev).await
        {
            self.note(format!("moving traffic back to {prev} failed: {e}"));
        }
        self.inner.persist(target).await;
        let ctx = StepCtx { inner: &self.inner, target, settings, release: &self.release };
        if let Err(why) = steps::wait_ready(&ctx, prev, settings.replicas).await {
            self.note(format!("{prev} is not back at full size: {why}"));
        }
        let moved = self.inner.cluster.set_routing(target, &all_prev).await.map_err(|e| e.to_string());
        if let Err(e) = &moved {
            self.note(format!("moving traffic back to {prev} failed: {e}"));
        } else {
            self.release.weight = 0;
            let _ = self.inner.store.save_release(&self.release);
        }
        self.inner.persist(target).await;
        moved
    }

    async fn remove_new(&self, delay: Duration) {
        let version = self.release.version.clone();
        // After an undo the app's own Deployment replaced the new pods itself: nothing to remove.
        if self.release.previous_version.as_deref() == Some(version.as_str()) || super::native::undoes(&self.release) {
            return;
        }
        if delay.is_zero() {
            if let Err(e) = self.inner.cluster.scale(&self.target, &version, 0).await {
                self.note(format!("removing {version} failed: {e}"));
            }
            self.inner.persist(&self.target).await;
        } else {
            self.inner.schedule_removal(self.target.clone(), version, delay);
        }
    }

    fn note(&self, message: String) {
        tracing::warn!("release {}: {message}", self.release.id);
        self.inner.emit(Event::Note { release_id: Some(self.release.id.clone()), message });
    }
}

/// `1.0.0 90%, 1.1.0 10%`, then header/cookie matches and the preview entry, if any.
pub(crate) fn describe_routing(r: &Routing) -> String {
    let total: u32 = r.weights.values().sum();
    let mut parts: Vec<String> = r
        .weights
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(v, w)| format!("{v} {}%", (*w as u64 * 100).checked_div(total as u64).unwrap_or(0)))
        .collect();
    if parts.is_empty() {
        parts.push("no version".into());
    }
    for m in &r.matches {
        let kind = match m.kind {
            crate::cluster::MatchKind::Header => "header",
            crate::cluster::MatchKind::Cookie => "cookie",
        };
        parts.push(format!("{kind} {}={} to {}", m.name, m.value, m.version));
    }
    if let Some(p) = &r.preview {
        parts.push(format!("preview on {p}"));
    }
    parts.join(", ")
}
