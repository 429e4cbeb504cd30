//! The canary analysis step: measure every interval, hand each window to the template's judge,
//! check the metrics' conditions, and turn the outcome into Successful (next step), Failed
//! (the release recovers), Inconclusive or Error (the release pauses for a person).

use std::sync::Arc;
use std::time::Duration;

use super::steps::{StepCtx, StepResult, record_measurement};
use crate::analysis::conditions::{self, MetricOutcome};
use crate::analysis::judges::{self, Decision, Judge};
use crate::analysis::{MetricsProvider, VersionMetrics};
use crate::model::{AnalysisRules, MetricsSource, Verdict};

/// What an analysis has seen so far; kept while its release is paused on it, so a resume keeps
/// the judge's evidence.
#[derive(Default)]
pub(crate) struct AnalysisProgress {
    judge: Option<Box<dyn Judge>>,
    delayed: bool,
    measurements: u32,
    failures: u32,
    inconclusive: u32,
    consecutive_errors: u32,
}

impl std::fmt::Debug for AnalysisProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalysisProgress")
            .field("judge", &self.judge.as_ref().map(|j| j.name()))
            .field("measurements", &self.measurements)
            .field("failures", &self.failures)
            .field("inconclusive", &self.inconclusive)
            .field("consecutive_errors", &self.consecutive_errors)
            .finish()
    }
}

impl AnalysisProgress {
    /// A person resumed the release: count inconclusive and erroneous measurements afresh and
    /// give the analysis another `count` measurements, keeping the judge's evidence.
    pub fn resumed(&mut self) {
        self.measurements = 0;
        self.inconclusive = 0;
        self.consecutive_errors = 0;
    }
}

pub(crate) struct AnalysisStep<'a> {
    pub interval: Duration,
    pub count: u32,
    pub inconclusive_limit: u32,
    pub rules: &'a AnalysisRules,
}

pub(crate) async fn run(ctx: &StepCtx<'_>, prev: &str, step: AnalysisStep<'_>, p: &mut AnalysisProgress) -> StepResult {
    let rules = step.rules;
    let new = ctx.release.version.as_str();
    let provider = match ctx.inner.provider(ctx.target, ctx.settings, rules.provider) {
        Ok(p) => p,
        Err(e) if rules.dry_run => return StepResult::Done(format!("dry run, nothing enforced: analysis Error: {e}")),
        Err(e) => return StepResult::WaitForPerson(format!("analysis Error: {e}; nothing was promoted")),
    };
    if p.judge.is_none() {
        match judges::by_name(&rules.judge, 1, rules.min_requests) {
            Some(j) => p.judge = Some(j),
            None => return StepResult::Fail(format!("analysis: no judge is named `{}`", rules.judge)),
        }
    }
    if !p.delayed {
        tokio::time::sleep(Duration::from_secs(rules.initial_delay_secs)).await;
        p.delayed = true;
    }
    let dry = |r: StepResult| -> StepResult {
        match r {
            StepResult::Fail(why) | StepResult::WaitForPerson(why) if rules.dry_run => {
                StepResult::Done(format!("dry run, nothing enforced: {why}"))
            }
            r => r,
        }
    };
    // A dry run measures every window: the first thing it would have enforced is reported at the end.
    let mut unenforced: Option<StepResult> = None;
    while p.measurements < step.count {
        tokio::time::sleep(step.interval).await;
        p.measurements += 1;
        match measure(ctx, new, prev, provider.as_ref(), &step, p).await {
            Some(r @ (StepResult::Fail(_) | StepResult::WaitForPerson(_))) if rules.dry_run => {
                unenforced.get_or_insert(r);
            }
            Some(r) => return dry(r),
            None => {}
        }
    }
    if let Some(r) = unenforced {
        return dry(r);
    }
    let Some(judge) = p.judge.as_mut() else { return StepResult::Fail("analysis: no judge".into()) };
    dry(match judge.finish() {
        Decision::Pass { message } => {
            StepResult::Done(format!("analysis Successful after {} measurements: {message}", p.measurements))
        }
        Decision::Fail { message, .. } => StepResult::Fail(format!("analysis Failed: {message}")),
        Decision::Inconclusive { message, .. } => inconclusive_pause(&message),
        // `finish` never answers Continue; were it to, nothing was shown to be safe.
        Decision::Continue => inconclusive_pause("the judge did not decide"),
    })
}

fn inconclusive_pause(message: &str) -> StepResult {
    StepResult::WaitForPerson(format!(
        "analysis Inconclusive: {message}; nothing was promoted; resume to keep measuring, or abort"
    ))
}

/// One measurement, stored and published. `Some` when it ends the step.
async fn measure(
    ctx: &StepCtx<'_>,
    new: &str,
    prev: &str,
    provider: &dyn MetricsProvider,
    step: &AnalysisStep<'_>,
    p: &mut AnalysisProgress,
) -> Option<StepResult> {
    let rules = step.rules;
    let canary = provider.version_metrics(ctx.target, new, step.interval).await;
    let stable = match canary {
        Ok(_) => provider.version_metrics(ctx.target, prev, step.interval).await,
        Err(_) => Ok(VersionMetrics::default()),
    };
    let (c, s) = match (canary, stable) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => {
            p.consecutive_errors += 1;
            let detail = format!("measurement error: {e}");
            record_measurement(ctx, Verdict::Error, &VersionMetrics::default(), &VersionMetrics::default(), &detail);
            if p.consecutive_errors > rules.consecutive_error_limit {
                return Some(StepResult::WaitForPerson(format!(
                    "analysis Error: {} measurement errors in a row (consecutive_error_limit {}), last: {e}; \
                     nothing was promoted; resume to measure again, or abort",
                    p.consecutive_errors, rules.consecutive_error_limit
                )));
            }
            return None;
        }
    };
    p.consecutive_errors = 0;
    let judge = p.judge.as_mut()?;
    let decision = judge.observe(&c.sample(), &s.sample());

    let mut failed = Vec::new();
    let mut unsure = Vec::new();
    let mut notes = Vec::new();
    for m in &rules.metrics {
        let value = conditions::value(m.name, &c, &s);
        match conditions::check(m, value) {
            Ok(MetricOutcome::Successful) => {}
            Ok(MetricOutcome::Failed(why)) if m.dry_run => notes.push(format!("{why} (dry run)")),
            Ok(MetricOutcome::Failed(why)) => failed.push(why),
            Ok(MetricOutcome::Inconclusive(why)) if m.dry_run => notes.push(format!("{why} (dry run)")),
            Ok(MetricOutcome::Inconclusive(why)) => unsure.push(why),
            Err(e) if m.dry_run => notes.push(format!("{}: {e} (dry run)", m.name.as_str())),
            Err(e) => unsure.push(format!("{}: {e}", m.name.as_str())),
        }
    }
    let figures = figures(&c, &s);
    let progress = judge.progress();
    let judged = if progress.is_empty() { judge.name().to_string() } else { format!("{}: {progress}", judge.name()) };
    let (verdict, headline) = if let Decision::Fail { message, .. } = &decision {
        (Verdict::Fail, message.clone())
    } else if !failed.is_empty() {
        (Verdict::Fail, failed.join("; "))
    } else if c.requests == 0 {
        (Verdict::NoData, "no canary requests in the window".to_string())
    } else if s.requests == 0 {
        (Verdict::NoData, "no stable requests in the window to compare with".to_string())
    } else if c.requests < rules.min_requests {
        let more = rules.min_requests - c.requests;
        (
            Verdict::Inconclusive,
            format!(
                "not enough canary traffic: {} requests, {} needed (about {more} more)",
                c.requests, rules.min_requests
            ),
        )
    } else if !unsure.is_empty() {
        (Verdict::Inconclusive, unsure.join("; "))
    } else {
        (Verdict::Pass, figures.clone())
    };
    let mut detail = headline.clone();
    if verdict != Verdict::Pass {
        detail.push_str(&format!(" [{figures}]"));
    }
    detail.push_str(&format!(" · {judged}"));
    if !notes.is_empty() {
        detail.push_str(&format!(" · {}", notes.join("; ")));
    }
    if rules.provider != MetricsSource::Local {
        detail.push_str(&format!(" · from {}", rules.provider.as_str()));
    }
    record_measurement(ctx, verdict, &c, &s, &detail);

    match decision {
        Decision::Fail { message, .. } => return Some(StepResult::Fail(format!("analysis Failed: {message}"))),
        // The judge has its evidence; a metric condition failing in this same window still counts below.
        Decision::Pass { message } if verdict != Verdict::Fail => {
            return Some(StepResult::Done(format!(
                "analysis Successful after {} measurements: {message}",
                p.measurements
            )));
        }
        Decision::Pass { .. } => {}
        Decision::Inconclusive { message, .. } => return Some(inconclusive_pause(&message)),
        Decision::Continue => {}
    }
    match verdict {
        Verdict::Fail => {
            p.failures += 1;
            if p.failures > rules.failure_limit {
                return Some(StepResult::Fail(format!(
                    "analysis Failed: {headline} ({} failed measurements, failure_limit {})",
                    p.failures, rules.failure_limit
                )));
            }
        }
        Verdict::Inconclusive | Verdict::NoData => {
            p.inconclusive += 1;
            if p.inconclusive > step.inconclusive_limit {
                return Some(inconclusive_pause(&format!(
                    "{} inconclusive measurements (inconclusive_limit {}), last: {headline}",
                    p.inconclusive, step.inconclusive_limit
                )));
            }
        }
        Verdict::Pass | Verdict::Error => {}
    }
    None
}

/// The window's figures, canary against stable.
pub(crate) fn figures(c: &VersionMetrics, s: &VersionMetrics) -> String {
    let rate = |m: &VersionMetrics| m.error_rate().map_or("–".to_string(), |r| format!("{r:.3}"));
    let mut out = format!("error_rate {} vs {} ({} vs {} requests)", rate(c), rate(s), c.requests, s.requests);
    if let (Some(cp), Some(sp)) = (c.p99_ms, s.p99_ms) {
        out.push_str(&format!(", p99 {cp:.1} ms vs {sp:.1} ms"));
    }
    out
}

/// A provider by source for this target: the local cluster, or Prometheus with the app's queries.
pub(crate) fn prometheus_provider(
    settings: &crate::model::PrometheusSettings,
    app: &crate::model::AppSettings,
) -> Arc<dyn MetricsProvider> {
    use crate::analysis::prometheus::{PrometheusProvider, Queries};
    let mut q = Queries::default();
    let over = &app.prometheus_queries;
    for (slot, value) in [
        (&mut q.requests, &over.requests),
        (&mut q.errors, &over.errors),
        (&mut q.p50_ms, &over.p50_ms),
        (&mut q.p99_ms, &over.p99_ms),
        (&mut q.histogram, &over.histogram),
    ] {
        if let Some(v) = value {
            *slot = v.clone();
        }
    }
    Arc::new(PrometheusProvider::new(&settings.url, q, settings.timeout.0))
}
