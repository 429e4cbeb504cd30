//! Executing an approved emergency: the fix's build and critical suites, then one release per
//! environment (in plan order) and affected app, driven by the engine's release machinery with
//! the plan's canary, monitoring and rollback threshold. A failure anywhere rolls back every
//! environment and app the emergency changed, newest first.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::broadcast::error::RecvError;

use super::process::{self, Ended};
use super::{log, note, transition};
use crate::cluster::{Routing, Target};
use crate::engine::{Action, EngineError, Event, Inner, plan};
use crate::model::{
    AppSettings, Emergency, EmergencyPlan, EmergencyStatus, HumanDuration, Release, ReleaseKind, Status, Step,
    StrategyKind, TestCounts, VerifyPhase,
};

/// Output lines of one command kept in the log; the rest are counted.
const MAX_LINES: usize = 200;

/// An environment and app the emergency deployed to, and what ran there before.
struct Touched {
    target: Target,
    previous: Option<String>,
    release_id: String,
}

pub(super) struct Exec {
    inner: Arc<Inner>,
    e: Emergency,
    actor: String,
    touched: Vec<Touched>,
}

/// Why an execution stopped.
enum Stop {
    /// Before anything was deployed: the build or a suite failed.
    Untouched(String),
    /// While deploying: what the emergency changed is rolled back.
    Deploy(String),
}

impl Exec {
    pub fn new(inner: Arc<Inner>, e: Emergency, actor: String) -> Self {
        Self { inner, e, actor, touched: Vec::new() }
    }

    pub async fn run(mut self) {
        let outcome = match self.build_and_test().await {
            Err(why) => Err(Stop::Untouched(why)),
            Ok(()) => self.deploy_all().await.map_err(Stop::Deploy),
        };
        let ended = match outcome {
            Ok(()) => {
                let envs = self.e.plan.environments.join(", ");
                let apps = self.e.affected_services.join(", ");
                let cause = format!("fix {} verified in {envs} for {apps}", self.e.fix_version);
                self.end(EmergencyStatus::Completed, cause)
            }
            Err(Stop::Untouched(why)) => self.end(EmergencyStatus::Failed, format!("{why}; nothing was deployed")),
            Err(Stop::Deploy(why)) => match self.undo(&why).await {
                Ok(summary) => self.end(EmergencyStatus::RolledBack, format!("{why}; rolled back: {summary}")),
                Err(left) => self.end(
                    EmergencyStatus::Failed,
                    format!("{why}; the rollback did not finish, a person must look: {left}"),
                ),
            },
        };
        if let Err(e) = ended {
            tracing::error!("emergency {}: {e}", self.e.id);
        }
    }

    fn end(&mut self, to: EmergencyStatus, cause: String) -> Result<(), EngineError> {
        if to != EmergencyStatus::Completed {
            self.e.cause = Some(cause.clone());
        }
        transition(&self.inner, &mut self.e, to, &cause)
    }

    fn note(&mut self, step: &str, ok: bool, message: impl Into<String>) {
        note(&self.inner, &mut self.e, log(step, ok, message));
    }

    /// Every app's build, then every app's critical suites; the first failure stops.
    async fn build_and_test(&mut self) -> Result<(), String> {
        let apps = self.e.affected_services.clone();
        let Some(first_env) = self.e.plan.environments.first().cloned() else {
            return Err("the plan has no environment".into());
        };
        // The fix is built and tested once, with the commands of the first environment it goes
        // to (an environment's overrides may change them).
        let settings: Vec<AppSettings> =
            apps.iter().filter_map(|a| self.inner.estate.settings(&first_env, a).cloned()).collect();
        for s in &settings {
            let step = format!("build {}", s.name);
            match s.emergency.build.clone() {
                None => self.note(&step, true, "no build command in the estate; nothing to build"),
                Some(cmd) => {
                    let ended = self.command(&step, &cmd, s, "build", s.emergency.build_timeout.0).await;
                    if ended != Ended::Passed {
                        return Err(format!("build of {} {} failed: {}", s.name, self.e.fix_version, words(&ended)));
                    }
                }
            }
        }
        let mut counts = TestCounts { skipped: 4 * settings.len() as u32, ..Default::default() };
        let mut failure = None;
        'apps: for s in &settings {
            let step = format!("tests {}", s.name);
            for (suite, cmd) in s.emergency.critical_tests.suites() {
                let Some(cmd) = cmd else {
                    self.note(&step, true, format!("{suite}: skipped (no command in the estate)"));
                    continue;
                };
                let ended = self.command(&step, cmd, s, suite, s.emergency.test_timeout.0).await;
                counts.skipped -= 1;
                if ended == Ended::Passed {
                    counts.passed += 1;
                } else {
                    counts.failed += 1;
                    failure = Some(format!("critical suite {suite} of {} failed: {}", s.name, words(&ended)));
                    break 'apps;
                }
            }
        }
        self.e.tests = Some(counts);
        if let Err(e) = self.inner.store.save_emergency(&self.e) {
            tracing::error!("emergency {}: {e}", self.e.id);
        }
        let line = format!("{} passed, {} failed, {} skipped", counts.passed, counts.failed, counts.skipped);
        self.note("tests", failure.is_none(), line);
        failure.map_or(Ok(()), Err)
    }

    /// Runs one command, its output line by line into the log.
    async fn command(&mut self, step: &str, cmd: &str, s: &AppSettings, suite: &str, timeout: Duration) -> Ended {
        self.note(step, true, format!("{suite}: `{cmd}` (timeout {})", HumanDuration(timeout)));
        let fix = self.e.fix_version.clone();
        let env = [("SHIPDECK_APP", s.name.as_str()), ("SHIPDECK_VERSION", fix.as_str()), ("SHIPDECK_SUITE", suite)];
        let (inner, e) = (&self.inner, &mut self.e);
        let mut lines = 0usize;
        let ended = process::run(cmd, &env, timeout, |line, _stderr| {
            lines += 1;
            if lines <= MAX_LINES {
                note(inner, e, log(step, true, format!("{suite}| {line}")));
            }
        })
        .await;
        if lines > MAX_LINES {
            self.note(step, true, format!("{suite}: {} more output lines not kept", lines - MAX_LINES));
        }
        let ok = ended == Ended::Passed;
        self.note(step, ok, format!("{suite}: {}", words(&ended)));
        ended
    }

    async fn deploy_all(&mut self) -> Result<(), String> {
        for env in self.e.plan.environments.clone() {
            for app in self.e.affected_services.clone() {
                self.deploy(&env, &app).await?;
            }
            let apps = self.e.affected_services.join(", ");
            self.note(&format!("deploy {env}"), true, format!("{} verified in {env} for {apps}", self.e.fix_version));
        }
        Ok(())
    }

    /// One release of the fix of `app` into `env`, driven to its end.
    async fn deploy(&mut self, env: &str, app: &str) -> Result<(), String> {
        let step = format!("deploy {env}");
        let target = Target::new(env, app);
        let fix = self.e.fix_version.clone();
        let settings =
            self.inner.estate.settings(env, app).cloned().ok_or_else(|| format!("{app} does not run in {env}"))?;
        let current = self.inner.current_version(&target).await.map_err(|e| format!("{env}/{app}: {e}"))?;
        if current.as_deref() == Some(fix.as_str()) {
            self.note(&step, true, format!("{app} already runs {fix} in {env}; nothing to do"));
            return Ok(());
        }
        if let Ok(Some(r)) = self.inner.store.active_release(env, app) {
            return Err(format!("{env}/{app}: release {} is {} and holds the app", r.id, r.status));
        }
        let steps = fix_plan(&self.e.plan, &settings, current.is_some());
        let strategy = if current.is_none() || self.e.plan.canary_percent > 0 {
            StrategyKind::Canary
        } else {
            StrategyKind::BlueGreen
        };
        let release = self.new_release(env, app, &fix, current.clone(), strategy, ReleaseKind::Deploy, steps)?;
        let list: Vec<String> = release.plan.iter().map(|s| s.describe()).collect();
        self.note(
            &step,
            true,
            format!(
                "{app} {} → {fix}: release {} ({})",
                current.as_deref().unwrap_or("nothing"),
                release.id,
                list.join(", ")
            ),
        );
        self.touched.push(Touched { target, previous: current, release_id: release.id.clone() });
        let done = self.drive(release, None).await;
        let why = done.reason.clone().unwrap_or_else(|| done.status.to_string());
        // The canary's and the monitoring's verdicts, as the release's steps recorded them.
        for rec in self.inner.store.steps(&done.id).unwrap_or_default() {
            if let (Some(Step::Monitor { .. }), Some(outcome)) = (done.plan.get(rec.index), rec.outcome) {
                let ok = !outcome.starts_with("failed");
                self.note(&step, ok, format!("{app}: {}: {outcome}", rec.description));
            }
        }
        if done.status == Status::Verified {
            self.note(&step, true, format!("{app}: verified: {why}"));
            Ok(())
        } else {
            self.note(&step, false, format!("{app}: {}: {why}", done.status));
            Err(format!("{env}/{app}: {why}"))
        }
    }

    /// A release stored and ready to drive; the id is unique (a second within the same
    /// second gets a suffix, as the deploy command does).
    #[allow(clippy::too_many_arguments)]
    fn new_release(
        &self,
        env: &str,
        app: &str,
        version: &str,
        previous: Option<String>,
        strategy: StrategyKind,
        kind: ReleaseKind,
        steps: Vec<Step>,
    ) -> Result<Release, String> {
        let now = Utc::now();
        let base = Release::make_id(env, app, version, now);
        let mut id = base.clone();
        let mut n = 2;
        while self.inner.store.release(&id).map_err(|e| e.to_string())?.is_some() {
            id = format!("{base}-{n}");
            n += 1;
        }
        let release = Release {
            id,
            app: app.to_string(),
            env: env.to_string(),
            version: version.to_string(),
            previous_version: previous,
            strategy,
            kind,
            promoted_from: None,
            status: Status::Planned,
            plan: steps,
            cursor: 0,
            requested_by: self.actor.clone(),
            created_at: now,
            updated_at: now,
            reason: None,
            interrupted: false,
            weight: 0,
        };
        let verb = if kind == ReleaseKind::Rollback { "rollback" } else { "fix" };
        let cause = format!("{verb} of emergency {} executed by {}", self.e.id, self.actor);
        self.inner.store.insert_release(&release, &cause).map_err(|e| e.to_string())?;
        self.inner.audit(
            &self.actor,
            "emergency deploy",
            &format!("{env}/{app}"),
            &format!("{} {version}", release.id),
        );
        self.inner.emit(Event::Release { release: Box::new(release.clone()), cause });
        Ok(release)
    }

    /// Puts back what ran before in every environment and app the emergency deployed to,
    /// newest first. Ok(summary), or Err(what is left) when a rollback failed.
    async fn undo(&mut self, why: &str) -> Result<String, String> {
        self.note("rollback", false, format!("rolling back everything this emergency changed: {why}"));
        let mut done = Vec::new();
        let mut left = Vec::new();
        let touched = std::mem::take(&mut self.touched);
        for t in touched.iter().rev() {
            match self.undo_one(t, why).await {
                Ok(line) => {
                    self.note("rollback", true, line.clone());
                    done.push(line);
                }
                Err(line) => {
                    self.note("rollback", false, line.clone());
                    left.push(line);
                }
            }
        }
        if left.is_empty() { Ok(done.join("; ")) } else { Err(left.join("; ")) }
    }

    async fn undo_one(&mut self, t: &Touched, why: &str) -> Result<String, String> {
        let (env, app) = (t.target.env.as_str(), t.target.app.as_str());
        let fix = self.e.fix_version.clone();
        let release = self.inner.store.release(&t.release_id).ok().flatten();
        let Some(mut release) = release else { return Err(format!("{env}/{app}: release {} is gone", t.release_id)) };
        let prev_word = t.previous.clone().unwrap_or_else(|| "nothing".into());
        match release.status {
            // It rolled itself back when it failed.
            Status::RolledBack | Status::Aborted => Ok(format!("{env}/{app} back on {prev_word}")),
            Status::Verified => {
                let Some(prev) = t.previous.clone() else {
                    return self.remove_fix(&t.target).await;
                };
                let settings =
                    self.inner.estate.settings(env, app).cloned().ok_or_else(|| format!("{app} is not in {env}"))?;
                let n = settings.replicas;
                let mut steps = plan::rolling(n, n, 0);
                steps.push(Step::Verify { phase: VerifyPhase::PostDeploy });
                let back = self.new_release(
                    env,
                    app,
                    &prev,
                    Some(fix.clone()),
                    StrategyKind::Rolling,
                    ReleaseKind::Rollback,
                    steps,
                )?;
                // The fix's release says what happened to it.
                let cause = format!("rolled back to {prev} with emergency {}: {why}", self.e.id);
                release.status = Status::RolledBack;
                release.reason = Some(cause.clone());
                release.updated_at = Utc::now();
                if let Err(e) = self.inner.store.transition(&release, Status::Verified, &cause) {
                    tracing::error!("release {}: {e}", release.id);
                }
                self.inner.emit(Event::Release { release: Box::new(release), cause });
                let ended = self.drive(back, None).await;
                if ended.status == Status::Verified {
                    Ok(format!("{env}/{app} back on {prev} (release {})", ended.id))
                } else {
                    Err(format!(
                        "{env}/{app}: rollback release {} {}: {}",
                        ended.id,
                        ended.status,
                        ended.reason.unwrap_or_default()
                    ))
                }
            }
            // Failed with its traffic left where it was (rollback_on_failure = false), or stopped
            // half-way: the release's own rollback puts the previous version back.
            _ => {
                let action = Action::Rollback { actor: self.actor.clone() };
                let mut rx = self.inner.events.subscribe();
                let ended = if self.inner.send_action(&t.target, &release.id, action.clone()) {
                    self.wait(&mut rx, &release.id).await.unwrap_or_else(|| unreadable(release))
                } else {
                    self.drive(release, Some(action)).await
                };
                match ended.status {
                    Status::RolledBack | Status::Aborted => Ok(format!("{env}/{app} back on {prev_word}")),
                    s => Err(format!("{env}/{app}: release {} is {s} after its rollback", ended.id)),
                }
            }
        }
    }

    /// Starts a task driving `release` and waits for it to end.
    async fn drive(&mut self, release: Release, first: Option<Action>) -> Release {
        let mut rx = self.inner.events.subscribe();
        let id = release.id.clone();
        let fallback = release.clone();
        self.inner.spawn(release, first);
        self.wait(&mut rx, &id).await.unwrap_or_else(|| unreadable(fallback))
    }

    /// Waits until the task driving release `id` finishes or the release stops for a person (a
    /// pause: the emergency treats it as a failure), logging each step as it starts. Returns
    /// the release as stored.
    async fn wait(&mut self, rx: &mut tokio::sync::broadcast::Receiver<Event>, id: &str) -> Option<Release> {
        loop {
            match rx.recv().await {
                Ok(Event::Finished { release_id, .. }) if release_id == id => break,
                Ok(Event::Release { release, .. }) if release.id == id && release.status == Status::Paused => break,
                Ok(Event::Step { release_id, index, total, description }) if release_id == id => {
                    let what = format!("{id}: step {}/{total} {description}", index + 1);
                    self.note("release", true, what);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    if self.inner.store.release(id).ok().flatten().is_some_and(|r| r.status.is_terminal()) {
                        break;
                    }
                }
                Err(RecvError::Closed) => break,
            }
        }
        self.inner.store.release(id).ok().flatten()
    }

    /// Nothing ran before the fix: take its traffic and pods away.
    async fn remove_fix(&self, target: &Target) -> Result<String, String> {
        let cluster = &self.inner.cluster;
        cluster.set_routing(target, &Routing::default()).await.map_err(|e| format!("{target}: {e}"))?;
        cluster.scale(target, &self.e.fix_version, 0).await.map_err(|e| format!("{target}: {e}"))?;
        self.inner.persist(target).await;
        Ok(format!("{target}: {} removed (nothing ran before it)", self.e.fix_version))
    }
}

/// The steps of the fix's release in one environment: with something running, the plan's
/// canary (P0: none, the fix comes up at full size and takes all traffic at once), then
/// verification, then monitoring against the rollback threshold.
pub(crate) fn fix_plan(p: &EmergencyPlan, s: &AppSettings, has_previous: bool) -> Vec<Step> {
    let n = s.replicas;
    let monitor = |d: HumanDuration| {
        let seconds = d.0.as_secs().max(1);
        Step::Monitor {
            seconds,
            interval_secs: (seconds / 6).clamp(5, 60).min(seconds),
            max_error_rate: p.rollback_threshold,
            min_requests: s.canary.min_requests,
        }
    };
    let verify = Step::Verify { phase: VerifyPhase::PostDeploy };
    let mut steps = if !has_previous {
        vec![Step::ScaleNew { replicas: n }, Step::SetWeight { weight: 100 }]
    } else if p.canary_percent == 0 {
        vec![Step::ScaleNew { replicas: n }, Step::Promote]
    } else {
        vec![Step::SetWeight { weight: p.canary_percent.min(100) }, monitor(p.canary_duration), Step::Promote]
    };
    steps.push(verify);
    steps.push(monitor(p.monitoring_duration));
    steps
}

/// A release the store could not give back: counted as failed.
fn unreadable(mut r: Release) -> Release {
    r.status = Status::Failed;
    r.reason = Some("the release could not be read back from the store".into());
    r
}

fn words(e: &Ended) -> String {
    match e {
        Ended::Passed => "passed".into(),
        Ended::Failed(why) => format!("failed ({why})"),
        Ended::TimedOut(d) => format!("timed out after {}, killed", HumanDuration(*d)),
        Ended::NotStarted(why) => format!("did not start: {why}"),
    }
}
