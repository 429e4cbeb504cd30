//! An experiment on a flag: users split 50/50 between a control and a treatment variant for a
//! duration, on the real traffic of one app in one environment. Each variant's requests,
//! errors and latency are summed from the pods' per-variant counts; the treatment is judged
//! against the control by the sequential judge, which stops the experiment at once if the
//! treatment does harm. Afterwards the flag is put back as it was and the result is stored.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Event, Inner};
use crate::analysis::VersionMetrics;
use crate::analysis::judges::stats::quantile;
use crate::analysis::judges::{self, Decision};
use crate::cluster::Target;
use crate::flags::change;
use crate::model::{ExperimentResult, VariantResult, Verdict};

/// Latencies kept per variant for its quantiles.
const LATENCY_CAP: usize = 200_000;

pub(crate) struct Experiment {
    pub key: String,
    pub target: Target,
    pub control: String,
    pub treatment: String,
    pub duration: Duration,
    pub hypothesis: String,
    pub actor: String,
    pub min_requests: u64,
}

#[derive(Default)]
struct Totals {
    requests: u64,
    errors: u64,
    latencies: Vec<f64>,
}

impl Totals {
    fn add(&mut self, m: &VersionMetrics) {
        self.requests += m.requests;
        self.errors += m.errors;
        let room = LATENCY_CAP.saturating_sub(self.latencies.len());
        self.latencies.extend(m.latencies_ms.iter().take(room));
    }

    fn result(mut self, variant: &str) -> VariantResult {
        VariantResult {
            variant: variant.to_string(),
            requests: self.requests,
            errors: self.errors,
            error_rate: (self.requests > 0).then(|| self.errors as f64 / self.requests as f64),
            p50_ms: quantile(&mut self.latencies, 0.5),
            p99_ms: quantile(&mut self.latencies, 0.99),
        }
    }
}

pub(crate) async fn run(inner: Arc<Inner>, e: Experiment) {
    let end = |message: String| Event::FlagRollout { key: e.key.clone(), finished: true, ok: false, message };
    let (Some(flags), Some(metrics)) = (inner.flags.get(), inner.flag_metrics()) else {
        inner.emit(end("no flag store or no flag metrics: nothing was changed".into()));
        return;
    };
    let started_at = Utc::now();
    let mut before = None;
    let action = format!(
        "experiment started: {} vs {}, 50/50 for {}: {}",
        e.control,
        e.treatment,
        crate::model::HumanDuration(e.duration),
        e.hypothesis
    );
    let split = [(e.control.clone(), 50), (e.treatment.clone(), 50)];
    let mut written = None;
    let started = change::apply(flags.as_ref(), &inner.store, &e.actor, &e.key, &action, |s| {
        before = s.flag(&e.key).cloned();
        s.set_enabled(&e.key, true)?;
        s.set_weights(&e.key, &split)?;
        written = s.flag(&e.key).cloned();
        Ok(())
    })
    .await;
    match started {
        Ok(flag) => inner.emit(Event::Flag { flag, by: e.actor.clone() }),
        Err(err) => {
            inner.emit(end(format!("the experiment could not start: {err}")));
            return;
        }
    }
    inner.emit(Event::FlagRollout { key: e.key.clone(), finished: false, ok: true, message: action });

    let (verdict, conclusion, control, treatment) = measure(&e, metrics.as_ref()).await;

    let put_back = format!("experiment ended ({}): flag back as before", verdict_word(verdict));
    let restored = match before.clone() {
        // Changed by someone else meanwhile (a kill switch, say): left as it is.
        Some(b) => {
            change::apply(flags.as_ref(), &inner.store, &e.actor, &e.key, &put_back, |s| {
                super::flag_rollout::unchanged_since(s, &e.key, &written)?;
                s.restore_flag(&e.key, b)
            })
            .await
        }
        None => Err(change::ChangeError::Flag(crate::flags::FlagError::Unknown {
            key: e.key.clone(),
            known: String::new(),
        })),
    };
    if let Ok(flag) = &restored {
        inner.emit(Event::Flag { flag: flag.clone(), by: e.actor.clone() });
    }
    let mut conclusion = conclusion;
    if let Err(err) = restored {
        conclusion.push_str(&format!("; putting the flag back FAILED: {err}"));
    }
    let result = ExperimentResult {
        flag: e.key.clone(),
        app: e.target.app.clone(),
        env: e.target.env.clone(),
        hypothesis: e.hypothesis.clone(),
        control: e.control.clone(),
        treatment: e.treatment.clone(),
        started_at,
        ended_at: Utc::now(),
        variants: vec![control.result(&e.control), treatment.result(&e.treatment)],
        conclusion,
        verdict,
    };
    if let Err(err) = inner.store.add_experiment(&result) {
        tracing::error!("experiment result lost: {err}");
    }
    inner.emit(Event::Experiment { result: Box::new(result) });
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Fail => "treatment worse",
        Verdict::Pass => "treatment no worse",
        _ => "inconclusive",
    }
}

/// Runs the experiment's measurements; stops early when the treatment does harm.
async fn measure(e: &Experiment, metrics: &dyn crate::analysis::FlagMetrics) -> (Verdict, String, Totals, Totals) {
    let (mut control, mut treatment) = (Totals::default(), Totals::default());
    let Some(mut judge) = judges::by_name("sequential", 1, e.min_requests) else {
        return (Verdict::Inconclusive, "no sequential judge".into(), control, treatment);
    };
    let interval = Duration::from_secs(5).min(e.duration).max(Duration::from_secs(1));
    let mut held = Duration::ZERO;
    let mut passed = None;
    while held < e.duration {
        let step = interval.min(e.duration - held);
        tokio::time::sleep(step).await;
        held += step;
        let Ok(by_variant) = metrics.variant_metrics(&e.target, &e.key, step).await else { continue };
        let get = |v: &str| by_variant.get(v).cloned().unwrap_or_default();
        let (c, t) = (get(&e.control), get(&e.treatment));
        control.add(&c);
        treatment.add(&t);
        match judge.observe(&t.sample(), &c.sample()) {
            Decision::Fail { message, .. } => {
                return (Verdict::Fail, format!("treatment does harm, stopped early: {message}"), control, treatment);
            }
            Decision::Pass { message } => passed = passed.or(Some(message)),
            _ => {}
        }
    }
    if let Some(message) = passed {
        return (Verdict::Pass, format!("treatment no worse than control: {message}"), control, treatment);
    }
    match judge.finish() {
        Decision::Pass { message } => {
            (Verdict::Pass, format!("treatment no worse than control: {message}"), control, treatment)
        }
        Decision::Fail { message, .. } => {
            (Verdict::Fail, format!("treatment does harm: {message}"), control, treatment)
        }
        Decision::Inconclusive { message, .. } => {
            (Verdict::Inconclusive, format!("no conclusion: {message}"), control, treatment)
        }
        Decision::Continue => (Verdict::Inconclusive, "no conclusion".into(), control, treatment),
    }
}
