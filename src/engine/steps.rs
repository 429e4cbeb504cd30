//! What each kind of step does to the cluster. Every step can be run again from its start
//! (after a pause or a crash): targets are absolute replica counts and whole routings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use super::analysis::{self, AnalysisProgress, AnalysisStep};
use super::{Event, Inner, verify};
use crate::analysis::{VersionMetrics, standard};
use crate::cluster::{PodPhase, RouteMatch, Routing, Target};
use crate::model::{AppSettings, Measurement, Release, Step, Verdict, VerifyPhase};

pub(crate) struct StepCtx<'a> {
    pub inner: &'a Arc<Inner>,
    pub target: &'a Target,
    pub settings: &'a AppSettings,
    pub release: &'a Release,
}

/// What a step has done so far, kept across a pause of the same step.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Time already spent in a timed step before it was interrupted.
    pub elapsed: Duration,
    pub analysis: AnalysisProgress,
    /// Summary of the last verification, for the final transition's cause.
    pub verification: Option<String>,
}

impl Progress {
    pub fn reset_step(&mut self) {
        self.elapsed = Duration::ZERO;
        self.analysis = AnalysisProgress::default();
    }
}

pub(crate) enum StepResult {
    /// Done, with a short note of what it saw.
    Done(String),
    /// The step failed: the release recovers.
    Fail(String),
    /// A person must decide (a manual pause, an inconclusive analysis).
    WaitForPerson(String),
}

macro_rules! try_step {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return StepResult::Fail(e.to_string()),
        }
    };
}

pub(crate) async fn execute(ctx: &StepCtx<'_>, step: &Step, progress: &mut Progress) -> StepResult {
    let (cluster, target) = (&ctx.inner.cluster, ctx.target);
    let new = ctx.release.version.as_str();
    let prev = ctx.release.previous_version.as_deref();
    let n = ctx.settings.replicas;
    match step {
        Step::ScaleNew { replicas } => {
            try_step!(cluster.scale(target, new, *replicas).await);
            ctx.inner.persist(target).await;
            try_step!(wait_ready(ctx, new, *replicas).await);
            StepResult::Done(format!("{new}: {replicas} ready"))
        }
        Step::ScaleOld { replicas } => {
            let Some(prev) = prev else { return StepResult::Done(String::new()) };
            try_step!(cluster.scale(target, prev, *replicas).await);
            ctx.inner.persist(target).await;
            if *replicas > 0 {
                try_step!(wait_ready(ctx, prev, *replicas).await);
            }
            StepResult::Done(format!("{prev}: {replicas}"))
        }
        Step::RollingBatch { new: k, old_before, old_after } => {
            if let Some(prev) = prev {
                let desired = try_step!(cluster.state(target).await).replicas(prev).desired;
                if *old_before < desired {
                    try_step!(cluster.scale(target, prev, *old_before).await);
                }
            }
            try_step!(cluster.scale(target, new, *k).await);
            ctx.inner.persist(target).await;
            try_step!(wait_ready(ctx, new, *k).await);
            // Traffic follows the pods, as a Service spreads it over ready endpoints.
            let routing = match prev {
                Some(prev) => Routing::split(prev, new, k * 100 / (k + old_after).max(1)),
                None => Routing::all_to(new),
            };
            try_step!(cluster.set_routing(target, &routing).await);
            if let Some(prev) = prev {
                try_step!(cluster.scale(target, prev, *old_after).await);
            }
            ctx.inner.persist(target).await;
            StepResult::Done(format!("{new} {k}/{n}, old {old_after}"))
        }
        Step::SetWeight { weight } => {
            let w = (*weight).min(100);
            let state = try_step!(cluster.state(target).await);
            let sized = ((n as u64 * w as u64).div_ceil(100) as u32).clamp(1, n);
            let pods = state.replicas(new).desired.max(sized);
            try_step!(cluster.scale(target, new, pods).await);
            ctx.inner.persist(target).await;
            try_step!(wait_ready(ctx, new, pods).await);
            let routing = match prev {
                Some(prev) => Routing::split(prev, new, w),
                None => Routing::all_to(new),
            };
            try_step!(cluster.set_routing(target, &routing).await);
            ctx.inner.persist(target).await;
            StepResult::Done(format!("weight {w}%, {pods} canary pods"))
        }
        Step::Pause { seconds: Some(s) } => {
            wait_rest(Duration::from_secs(*s), progress).await;
            StepResult::Done(String::new())
        }
        Step::Pause { seconds: None } => StepResult::WaitForPerson(format!(
            "step {}/{}: paused until resumed (`shipdeck resume {} --env {}`)",
            ctx.release.cursor + 1,
            ctx.release.plan.len(),
            ctx.release.app,
            ctx.release.env
        )),
        Step::Analysis { interval_secs, count, inconclusive_limit, rules } => {
            let Some(prev) = prev else { return StepResult::Done("nothing to compare with".into()) };
            let step = AnalysisStep {
                interval: Duration::from_secs((*interval_secs).max(1)),
                count: *count,
                inconclusive_limit: *inconclusive_limit,
                rules,
            };
            analysis::run(ctx, prev, step, &mut progress.analysis).await
        }
        Step::Promote => {
            try_step!(cluster.scale(target, new, n).await);
            ctx.inner.persist(target).await;
            try_step!(wait_ready(ctx, new, n).await);
            try_step!(cluster.set_routing(target, &Routing::all_to(new)).await);
            if let Some(prev) = prev {
                try_step!(cluster.scale(target, prev, 0).await);
            }
            ctx.inner.persist(target).await;
            StepResult::Done(format!("all traffic on {new}"))
        }
        Step::Preview => {
            let mut routing = try_step!(cluster.state(target).await).routing;
            routing.preview = Some(new.to_string());
            try_step!(cluster.set_routing(target, &routing).await);
            ctx.inner.persist(target).await;
            StepResult::Done(format!("preview entry on {new}"))
        }
        Step::Verify { phase } => {
            let report = verify::verify(cluster.as_ref(), target, new, &ctx.settings.verification.checks).await;
            for result in &report.checks {
                ctx.inner.emit(Event::Check { release_id: ctx.release.id.clone(), result: result.clone() });
            }
            let summary = report.summary();
            if report.critical_failures().is_empty() {
                progress.verification = Some(summary.clone());
                StepResult::Done(summary)
            } else {
                let when = match phase {
                    VerifyPhase::PrePromotion => "before the switch",
                    VerifyPhase::PostPromotion => "after the switch",
                    VerifyPhase::PostDeploy => "after the deploy",
                };
                StepResult::Fail(format!("verification {when} failed: {summary}"))
            }
        }
        Step::AwaitSwitch { seconds: Some(s) } => {
            wait_rest(Duration::from_secs(*s), progress).await;
            StepResult::Done(String::new())
        }
        Step::AwaitSwitch { seconds: None } => StepResult::WaitForPerson(format!(
            "{new} is up behind the preview entry and verified; resume to switch traffic to it"
        )),
        Step::Switch => {
            // After a resume --full the new colour may still be coming up: never switch to
            // pods that are not ready.
            try_step!(cluster.scale(target, new, n).await);
            try_step!(wait_ready(ctx, new, n).await);
            try_step!(cluster.set_routing(target, &Routing::all_to(new)).await);
            ctx.inner.persist(target).await;
            StepResult::Done(format!("active entry on {new}"))
        }
        Step::RemoveOld { delay_secs } => {
            wait_rest(Duration::from_secs(*delay_secs), progress).await;
            if let Some(prev) = prev {
                try_step!(cluster.scale(target, prev, 0).await);
                ctx.inner.persist(target).await;
            }
            StepResult::Done(String::new())
        }
        Step::Monitor { seconds, interval_secs, max_error_rate, min_requests } => {
            let watch = Watch {
                total: Duration::from_secs(*seconds),
                interval: Duration::from_secs((*interval_secs).max(1)),
                max_error_rate: *max_error_rate,
                min_requests: *min_requests,
            };
            monitor(ctx, &watch, progress).await
        }
        Step::NativeRollout { strategy, replicas, in_base } => {
            super::native::roll(ctx, *strategy, *replicas, *in_base).await
        }
        Step::NativeUndo { revision } => super::native::undo(ctx, *revision).await,
        Step::ApplyFlags { changes } => apply_flags(ctx, changes).await,
        Step::RevertFlags { release_id } => revert_flags(ctx, release_id).await,
        Step::AbExperiment { seconds } => {
            let Some(prev) = prev else { return StepResult::Done("nothing to compare with".into()) };
            let ab = &ctx.settings.ab;
            let mut routing = Routing::all_to(prev);
            routing.matches.push(RouteMatch {
                kind: ab.match_kind,
                name: ab.match_name.clone(),
                value: ab.match_value.clone(),
                version: new.to_string(),
            });
            try_step!(cluster.set_routing(target, &routing).await);
            ctx.inner.persist(target).await;
            let total = Duration::from_secs(*seconds);
            wait_rest(total, progress).await;
            let (verdict, detail) = measure(ctx, new, prev, total, ab.min_requests).await;
            match verdict {
                Verdict::Pass => StepResult::Done(format!("B as good as A: {detail}")),
                Verdict::Fail => StepResult::Fail(format!("A/B: B ({new}) is worse than A ({prev}): {detail}")),
                _ => StepResult::WaitForPerson(format!("A/B inconclusive: {detail}; resume to run it again, or abort")),
            }
        }
    }
}

/// The flag changes a release carries, in one save; a release run again (after a crash)
/// applies them again, which changes nothing the second time.
async fn apply_flags(ctx: &StepCtx<'_>, changes: &[crate::model::FlagSetting]) -> StepResult {
    let Some(store) = ctx.inner.flags.get() else { return StepResult::Fail("no flag store is configured".into()) };
    let id = &ctx.release.id;
    let edits: Vec<(String, String)> =
        changes.iter().map(|c| (c.flag.clone(), format!("{c} with release {id}"))).collect();
    let by = &ctx.release.requested_by;
    let applied = crate::flags::change::apply_many(store.as_ref(), &ctx.inner.store, by, Some(id), &edits, |s| {
        changes.iter().try_for_each(|c| crate::flags::change::set(s, c))
    })
    .await;
    match applied {
        Ok(views) => {
            for flag in views {
                ctx.inner.emit(Event::Flag { flag, by: ctx.release.requested_by.clone() });
            }
            let list: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
            StepResult::Done(format!("flags {}", list.join(", ")))
        }
        Err(e) => StepResult::Fail(format!("the release's flag changes could not be applied: {e}")),
    }
}

/// Puts back, in one save, every flag release `of` changed, as it was before that release.
async fn revert_flags(ctx: &StepCtx<'_>, of: &str) -> StepResult {
    let Some(store) = ctx.inner.flags.get() else { return StepResult::Fail("no flag store is configured".into()) };
    let changes = match ctx.inner.store.flag_changes_of_release(of) {
        Ok(c) => c,
        Err(e) => return StepResult::Fail(e.to_string()),
    };
    // Oldest first, so a flag changed twice ends as it was before the first change.
    let mut restore: Vec<(String, Option<serde_json::Value>)> = Vec::new();
    for c in changes.into_iter().rev() {
        if !restore.iter().any(|(k, _)| *k == c.flag) {
            restore.push((c.flag, c.before));
        }
    }
    // A flag deleted since is left out (and named), not a reason to undo the rollback.
    let present = store.load().await.map(|(set, _)| set.keys()).unwrap_or_default();
    let gone: Vec<String> = restore.iter().filter(|(k, _)| !present.contains(k)).map(|(k, _)| k.clone()).collect();
    restore.retain(|(k, _)| present.contains(k));
    let gone_note = if gone.is_empty() { String::new() } else { format!("; {} no longer exist", gone.join(", ")) };
    if restore.is_empty() {
        return StepResult::Done(format!("{of} changed no flags that still exist{gone_note}"));
    }
    let id = &ctx.release.id;
    let edits: Vec<(String, String)> =
        restore.iter().map(|(k, _)| (k.clone(), format!("reverted with release {id}, as before {of}"))).collect();
    let by = &ctx.release.requested_by;
    let reverted = crate::flags::change::apply_many(store.as_ref(), &ctx.inner.store, by, Some(id), &edits, |s| {
        restore.iter().filter_map(|(k, b)| b.clone().map(|b| (k, b))).try_for_each(|(k, b)| s.restore_flag(k, b))
    })
    .await;
    match reverted {
        Ok(views) => {
            let names: Vec<String> = views.iter().map(|v| v.key.clone()).collect();
            for flag in views {
                ctx.inner.emit(Event::Flag { flag, by: ctx.release.requested_by.clone() });
            }
            StepResult::Done(format!("flags {} as before {of}{gone_note}", names.join(", ")))
        }
        // The pods are already back; a flag problem must never move them forward again.
        Err(e) => StepResult::WaitForPerson(format!(
            "the flags of {of} could not be put back: {e}; fix the flag file and resume, or put them back by hand"
        )),
    }
}

struct Watch {
    total: Duration,
    interval: Duration,
    max_error_rate: f64,
    min_requests: u64,
}

/// The new version's error rate, window by window for what remains of the watch: a window
/// with enough requests above the threshold fails the step. Every window is a stored
/// measurement (the stable side is the previous version's traffic, when it still has some).
async fn monitor(ctx: &StepCtx<'_>, w: &Watch, progress: &mut Progress) -> StepResult {
    let new = ctx.release.version.as_str();
    let metrics = &ctx.inner.metrics;
    let (mut windows, mut requests, mut worst) = (0u32, 0u64, None::<f64>);
    while progress.elapsed < w.total {
        let window = w.interval.min(w.total - progress.elapsed);
        let start = Instant::now();
        tokio::time::sleep(window).await;
        progress.elapsed += start.elapsed();
        let c = match metrics.version_metrics(ctx.target, new, window).await {
            Ok(c) => c,
            Err(e) => {
                let (none, detail) = (VersionMetrics::default(), format!("measurement error: {e}"));
                record_measurement(ctx, Verdict::Error, &none, &none, &detail);
                continue;
            }
        };
        let s = match ctx.release.previous_version.as_deref() {
            Some(prev) => metrics.version_metrics(ctx.target, prev, window).await.unwrap_or_default(),
            None => VersionMetrics::default(),
        };
        let shown = crate::model::HumanDuration(window);
        let (verdict, detail) = match c.error_rate() {
            Some(rate) if c.requests >= w.min_requests => {
                windows += 1;
                requests += c.requests;
                worst = Some(worst.map_or(rate, |x: f64| x.max(rate)));
                if rate > w.max_error_rate {
                    (
                        Verdict::Fail,
                        format!("error rate {rate:.3} > rollback threshold {} over {shown}", w.max_error_rate),
                    )
                } else {
                    (Verdict::Pass, format!("error rate {rate:.3} ≤ {} over {shown}", w.max_error_rate))
                }
            }
            _ => (Verdict::NoData, format!("{} requests in {shown}, {} needed to judge", c.requests, w.min_requests)),
        };
        record_measurement(ctx, verdict, &c, &s, &detail);
        if verdict == Verdict::Fail {
            return StepResult::Fail(format!("{new}: {detail} ({} requests)", c.requests));
        }
    }
    StepResult::Done(match worst {
        Some(x) => format!(
            "error rate at most {x:.3} (threshold {}) over {windows} windows, {requests} requests",
            w.max_error_rate
        ),
        None => format!("no window had {} requests to judge; nothing seen above the threshold", w.min_requests),
    })
}

/// Sleep what remains of `total` after what the step already spent before a pause.
async fn wait_rest(total: Duration, progress: &mut Progress) {
    let rest = total.saturating_sub(progress.elapsed);
    let start = Instant::now();
    tokio::time::sleep(rest).await;
    progress.elapsed += start.elapsed();
}

/// One A/B measurement of `new` against `prev` over the last `window` by the standard's rule,
/// stored and published.
async fn measure(ctx: &StepCtx<'_>, new: &str, prev: &str, window: Duration, min_requests: u64) -> (Verdict, String) {
    let metrics = &ctx.inner.metrics;
    let canary = metrics.version_metrics(ctx.target, new, window).await;
    let stable = metrics.version_metrics(ctx.target, prev, window).await;
    let (verdict, detail, c, s) = match (canary, stable) {
        (Ok(c), Ok(s)) => {
            let (v, d) = standard::judge(&c, &s, min_requests);
            (v, d, c, s)
        }
        (Err(e), _) | (_, Err(e)) => {
            (Verdict::Error, format!("measurement error: {e}"), VersionMetrics::default(), VersionMetrics::default())
        }
    };
    record_measurement(ctx, verdict, &c, &s, &detail);
    (verdict, detail)
}

/// Stores one measurement of the current step and publishes it.
pub(crate) fn record_measurement(
    ctx: &StepCtx<'_>,
    verdict: Verdict,
    c: &VersionMetrics,
    s: &VersionMetrics,
    detail: &str,
) {
    let m = Measurement {
        release_id: ctx.release.id.clone(),
        step: ctx.release.cursor,
        at: Utc::now(),
        verdict,
        canary_requests: c.requests,
        canary_error_rate: c.error_rate(),
        canary_p99_ms: c.p99_ms,
        stable_requests: s.requests,
        stable_error_rate: s.error_rate(),
        stable_p99_ms: s.p99_ms,
        detail: detail.to_string(),
    };
    if let Err(e) = ctx.inner.store.add_measurement(&m) {
        tracing::error!("storing measurement: {e}");
    }
    ctx.inner.emit(Event::Measurement { measurement: m });
}

/// Wait until `version` has `n` ready pods, or fail when the progress deadline passes with a
/// description of what the pods are doing.
pub(crate) async fn wait_ready(ctx: &StepCtx<'_>, version: &str, n: u32) -> Result<(), String> {
    let deadline_len = ctx.settings.rolling.progress_deadline.0;
    let deadline = Instant::now() + deadline_len;
    let mut rx = ctx.inner.cluster.watch(ctx.target).await.map_err(|e| e.to_string())?;
    loop {
        let why_not = {
            let state = rx.borrow_and_update();
            let r = state.replicas(version);
            if r.ready >= n {
                return Ok(());
            }
            let mut phases: BTreeMap<String, u32> = BTreeMap::new();
            let mut restarts = 0;
            for p in state.pods.iter().filter(|p| p.version == version && !p.ready) {
                *phases.entry(phase_name(p.phase).to_string()).or_default() += 1;
                restarts += p.restarts;
            }
            let mut s =
                format!("{version}: {}/{n} pods ready after {}", r.ready, crate::model::HumanDuration(deadline_len));
            if !phases.is_empty() {
                let list: Vec<String> = phases.iter().map(|(k, v)| format!("{v} {k}")).collect();
                s.push_str(&format!(" ({}", list.join(", ")));
                if restarts > 0 {
                    s.push_str(&format!(", {restarts} restarts"));
                }
                s.push(')');
            }
            s
        };
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return Err(format!("{version}: the cluster stopped reporting state")),
            Err(_) => return Err(format!("progress deadline exceeded: {why_not}")),
        }
    }
}

fn phase_name(p: PodPhase) -> &'static str {
    match p {
        PodPhase::Starting => "starting",
        PodPhase::Running => "running",
        PodPhase::CrashLoopBackOff => "CrashLoopBackOff",
        PodPhase::ImagePullBackOff => "ImagePullBackOff",
        PodPhase::Terminating => "terminating",
    }
}
