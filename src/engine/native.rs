//! Rolling and recreate through the app's own Deployment where the cluster rolls natively
//! (Kubernetes): the plan is one [`Step::NativeRollout`] (or [`Step::NativeUndo`] for a
//! rollback) whose progress is the controller's, read from [`WorkloadState::native`]; a
//! `ProgressDeadlineExceeded` fails the step, and the release is rolled back by undo.
//!
//! Where the previous version runs in its own Deployment (after a canary or blue-green), the
//! new version comes up in the app's Deployment beside it — both serve, as their ready pods
//! say — and the old Deployment is removed once the new one is complete: the app moves into
//! its own Deployment, and from then on releases are rolling updates of running pods.

use std::time::Duration;

use tokio::time::Instant;

use super::steps::{StepCtx, StepResult};
use super::{Event, Inner};
use crate::cluster::{NativeCondition, NativeRollout, NativeStatus, NativeStrategy, Routing, Target, UndoTarget};
use crate::model::{AppSettings, Release, Step, StrategyKind, VerifyPhase};

/// How long the engine waits without any change in what the cluster reports before it calls
/// the rollout stuck, beyond the Deployment's own progress deadline (the controller normally
/// reports `ProgressDeadlineExceeded` first).
const SILENCE_GRACE: Duration = Duration::from_secs(60);

fn strategy_of(kind: StrategyKind, s: &AppSettings) -> Option<NativeStrategy> {
    match kind {
        StrategyKind::Rolling => Some(rolling(s)),
        StrategyKind::Recreate => Some(NativeStrategy::Recreate),
        _ => None,
    }
}

fn rolling(s: &AppSettings) -> NativeStrategy {
    NativeStrategy::Rolling { max_surge: s.rolling.max_surge, max_unavailable: s.rolling.max_unavailable }
}

/// Does the app's own Deployment run `version` now?
fn base_runs(native: Option<&NativeStatus>, version: &str) -> bool {
    native.is_some_and(|n| n.version.as_deref() == Some(version) && n.desired > 0)
}

/// The plan of a rolling or recreate release where the cluster rolls natively; None elsewhere
/// (other strategies, a first deploy, clusters without native rollouts).
pub(crate) async fn plan(
    inner: &Inner,
    target: &Target,
    kind: StrategyKind,
    s: &AppSettings,
    previous: Option<&str>,
) -> Option<Vec<Step>> {
    let strategy = strategy_of(kind, s)?;
    let previous = previous?;
    if !inner.cluster.native_rollouts(target) {
        return None;
    }
    let state = inner.cluster.state(target).await.ok()?;
    let in_base = base_runs(state.native.as_ref(), previous);
    Some(vec![
        Step::NativeRollout { strategy, replicas: s.replicas, in_base },
        Step::Verify { phase: VerifyPhase::PostDeploy },
    ])
}

/// A rollback where the current version runs in the app's own Deployment: `kubectl rollout undo`
/// (to `revision` when one is given).
pub(crate) async fn rollback_plan(
    inner: &Inner,
    target: &Target,
    current: Option<&str>,
    revision: Option<i64>,
) -> Option<Vec<Step>> {
    let current = current?;
    if !inner.cluster.native_rollouts(target) {
        return None;
    }
    let state = inner.cluster.state(target).await.ok()?;
    base_runs(state.native.as_ref(), current)
        .then(|| vec![Step::NativeUndo { revision }, Step::Verify { phase: VerifyPhase::PostDeploy }])
}

/// Did this release move the app's own Deployment from the previous version (so going back is an undo)?
pub(crate) fn undoes(release: &Release) -> bool {
    release.plan.iter().any(|s| matches!(s, Step::NativeRollout { in_base: true, .. } | Step::NativeUndo { .. }))
}

fn rollout_of(ctx: &StepCtx<'_>, strategy: NativeStrategy, replicas: u32) -> NativeRollout {
    NativeRollout {
        strategy,
        replicas,
        progress_deadline_secs: ctx.settings.rolling.progress_deadline.0.as_secs().max(1),
        change_cause: format!("shipdeck release {} by {}", ctx.release.id, ctx.release.requested_by),
    }
}

macro_rules! try_step {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return StepResult::Fail(e.to_string()),
        }
    };
}

/// [`Step::NativeRollout`]: request the rollout, follow it to the end, then all traffic to it.
pub(crate) async fn roll(ctx: &StepCtx<'_>, strategy: NativeStrategy, replicas: u32, in_base: bool) -> StepResult {
    let (cluster, target) = (&ctx.inner.cluster, ctx.target);
    let new = ctx.release.version.as_str();
    let prev = ctx.release.previous_version.as_deref();
    if let Some(prev) = prev {
        if !in_base && strategy == NativeStrategy::Recreate {
            // Recreate: the old pods go before the new start, wherever the old ones run.
            try_step!(cluster.scale(target, prev, 0).await);
        }
        // While the controller replaces pods, the Service sends requests to both versions' ready pods.
        try_step!(cluster.set_routing(target, &Routing::follow_pods(prev, new)).await);
    }
    try_step!(cluster.native_rollout(target, new, &rollout_of(ctx, strategy, replicas)).await);
    ctx.inner.persist(target).await;
    let done = match follow(ctx, new).await {
        Ok(status) => status,
        Err(why) => return StepResult::Fail(why),
    };
    try_step!(cluster.set_routing(target, &Routing::all_to(new)).await);
    if let (Some(prev), false) = (prev, in_base) {
        // The previous version's own Deployment: the app now runs in its Deployment.
        try_step!(cluster.scale(target, prev, 0).await);
    }
    ctx.inner.persist(target).await;
    StepResult::Done(done_note(&done, new))
}

fn done_note(s: &NativeStatus, version: &str) -> String {
    let revision = s.revision.map(|r| format!(" revision {r}")).unwrap_or_default();
    format!("deployment {}{revision}: {version} {}/{} updated and available", s.deployment, s.available, s.desired)
}

/// [`Step::NativeUndo`]: back to `revision`, or to the newest revision that ran the release's
/// version (or, when none did, a rollout to it), followed to the end.
pub(crate) async fn undo(ctx: &StepCtx<'_>, revision: Option<i64>) -> StepResult {
    let (cluster, target) = (&ctx.inner.cluster, ctx.target);
    let version = ctx.release.version.as_str();
    if let Some(current) = ctx.release.previous_version.as_deref() {
        try_step!(cluster.set_routing(target, &Routing::follow_pods(current, version)).await);
    }
    let to = match revision {
        Some(r) => UndoTarget::Revision(r),
        None => UndoTarget::Version(version.to_string()),
    };
    let how = match try_step!(cluster.native_undo(target, &to).await) {
        Some(o) => format!("undone to revision {}", o.revision),
        None => {
            let rollout = rollout_of(ctx, rolling(ctx.settings), ctx.settings.replicas);
            try_step!(cluster.native_rollout(target, version, &rollout).await);
            format!("no revision ran {version}: rolled out to it")
        }
    };
    ctx.inner.persist(target).await;
    let done = match follow(ctx, version).await {
        Ok(status) => status,
        Err(why) => return StepResult::Fail(why),
    };
    try_step!(cluster.set_routing(target, &Routing::all_to(version)).await);
    ctx.inner.persist(target).await;
    StepResult::Done(format!("{how}; {}", done_note(&done, version)))
}

/// Until the app's Deployment has completely rolled out `version`, as `kubectl rollout status`
/// decides it; `ProgressDeadlineExceeded` (or no news at all for longer than the deadline) is
/// the failure, in words.
pub(crate) async fn follow(ctx: &StepCtx<'_>, version: &str) -> Result<NativeStatus, String> {
    let silence = ctx.settings.rolling.progress_deadline.0 + SILENCE_GRACE;
    let mut rx = ctx.inner.cluster.watch(ctx.target).await.map_err(|e| e.to_string())?;
    let mut last = Instant::now();
    let mut shown = String::new();
    loop {
        let waiting = {
            let state = rx.borrow_and_update();
            match state.native.as_ref() {
                Some(n) if n.version.as_deref() == Some(version) => match &n.condition {
                    NativeCondition::Complete => return Ok(n.clone()),
                    NativeCondition::DeadlineExceeded { message } => {
                        return Err(format!("deployment {} exceeded its progress deadline: {message}", n.deployment));
                    }
                    NativeCondition::Progressing { message } => format!("deployment {}: {message}", n.deployment),
                },
                Some(n) => format!("deployment {}: waiting for the rollout of {version} to show", n.deployment),
                None => format!("waiting for the app's deployment to show the rollout of {version}"),
            }
        };
        if waiting != shown {
            ctx.inner.emit(Event::Note { release_id: Some(ctx.release.id.clone()), message: waiting.clone() });
            shown = waiting;
        }
        match tokio::time::timeout_at(last + silence, rx.changed()).await {
            Ok(Ok(())) => last = Instant::now(),
            Ok(Err(_)) => return Err(format!("{version}: the cluster stopped reporting state")),
            Err(_) => {
                return Err(format!("no progress reported for {}: {shown}", crate::model::HumanDuration(silence)));
            }
        }
    }
}

/// Going back on a release that moved the app's own Deployment: undo to the previous version's
/// revision, traffic on it as soon as it has a ready pod, followed to the end. Problems are
/// returned as notes (the caller's release is already failing).
/// The notes to show, and whether all traffic is back on `prev` (else why not).
pub(crate) async fn restore(ctx: &StepCtx<'_>, prev: &str) -> (Vec<String>, Result<(), String>) {
    let (cluster, target) = (&ctx.inner.cluster, ctx.target);
    let mut notes = Vec::new();
    match cluster.native_undo(target, &UndoTarget::Version(prev.to_string())).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let rollout = rollout_of(ctx, rolling(ctx.settings), ctx.settings.replicas);
            if let Err(e) = cluster.native_rollout(target, prev, &rollout).await {
                notes.push(format!("rolling the deployment back to {prev} failed: {e}"));
            }
        }
        Err(e) => notes.push(format!("undoing the deployment's rollout failed: {e}")),
    }
    let ready_now = cluster.state(target).await.map(|s| s.replicas(prev).ready).unwrap_or(0);
    if ready_now > 0
        && let Err(e) = cluster.set_routing(target, &Routing::all_to(prev)).await
    {
        notes.push(format!("moving traffic back to {prev} failed: {e}"));
    }
    ctx.inner.persist(target).await;
    if let Err(why) = follow(ctx, prev).await {
        notes.push(format!("{prev} is not back at full size: {why}"));
    }
    let moved = cluster.set_routing(target, &Routing::all_to(prev)).await.map_err(|e| e.to_string());
    if let Err(e) = &moved {
        notes.push(format!("moving traffic back to {prev} failed: {e}"));
    }
    ctx.inner.persist(target).await;
    (notes, moved)
}
