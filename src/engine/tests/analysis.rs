//! Analysis templates in the engine, on the fake cluster with the clock paused: each judge by
//! name, the outcomes (Successful, Failed, Inconclusive, Error) and the limits.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::*;
use crate::analysis::{MetricsError, VersionMetrics};
use crate::model::MetricsSource;

/// One app, canary at 25%, its only analysis step given by `analysis`; stable errs 1% of the time.
fn estate(rps: u32, analysis: &str) -> String {
    format!(
        r#"
[[environments]]
name = "dev"

[prometheus]
url = "http://127.0.0.1:9"

[analysis_templates.seq]
judge = "sequential"
interval = "10s"
count = 12

[analysis_templates.prom]
judge = "standard"
provider = "prometheus"
interval = "10s"
count = 4
consecutive_error_limit = 2

[[apps]]
name = "web"
replicas = 4
rps = {rps}
strategy = "canary"
initial_version = "1.0.0"
[apps.canary]
steps = [{{ set_weight = 25 }}, {{ analysis = {analysis} }}]
[[apps.versions]]
version = "1.0.0"
error_rate = 0.01
[[apps.versions]]
version = "1.1.0"
error_rate = 0.01
[[apps.versions]]
version = "1.2.0-errors"
error_rate = 0.08
"#
    )
}

fn world_for(rps: u32, analysis: &str) -> World {
    world_of(&estate(rps, analysis), Arc::new(Store::open_in_memory().unwrap()), &Default::default())
}

fn analysis_outcome(w: &World, id: &str) -> String {
    let steps = w.store.steps(id).unwrap();
    steps.get(1).and_then(|s| s.outcome.clone()).unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn the_sequential_template_passes_a_good_canary_explaining_each_measurement() {
    let w = world_for(1000, r#"{ template = "seq" }"#);
    let r = w.run(deploy("1.1.0", StrategyKind::Canary)).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    let ms = w.store.measurements(&r.id).unwrap();
    assert!((2..12).contains(&ms.len()), "passed as soon as the evidence was enough: {} measurements", ms.len());
    for m in &ms {
        assert_eq!(m.verdict, Verdict::Pass, "{}", m.detail);
        assert!(m.detail.contains("error_rate 0.010 vs 0.010 (2500 vs 7500 requests)"), "{}", m.detail);
        assert!(m.detail.contains("· sequential"), "{}", m.detail);
    }
    let outcome = analysis_outcome(&w, &r.id);
    assert!(
        outcome.starts_with(&format!("analysis Successful after {} measurements: error_rate", ms.len())),
        "{outcome}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_sequential_template_rolls_a_bad_canary_back_as_soon_as_the_evidence_is_enough() {
    let w = world_for(1000, r#"{ template = "seq" }"#);
    let r = w.run(deploy("1.2.0-errors", StrategyKind::Canary)).await;
    assert_eq!(r.status, Status::RolledBack);
    let why = r.reason.unwrap();
    assert!(why.contains("analysis Failed: error_rate"), "{why}");
    let ms = w.store.measurements(&r.id).unwrap();
    assert_eq!(ms.len(), 1, "decided on the first window: {ms:?}");
    assert_eq!(ms[0].verdict, Verdict::Fail);
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
}

#[tokio::test(start_paused = true)]
async fn a_good_canary_too_small_to_judge_ends_inconclusive_and_paused_not_passed() {
    // 20 req/s, a quarter to the canary: 50 requests a window, a handful of errors in all.
    let w = world_for(20, r#"{ template = "seq", count = 3, min_requests = 1 }"#);
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    let paused = w.until_status(&mut rx, Status::Paused).await;
    let why = paused.reason.unwrap();
    assert!(why.starts_with("analysis Inconclusive: inconclusive: not enough traffic (about "), "{why}");
    assert!(why.contains("nothing was promoted"), "{why}");
    assert_eq!(w.routing().weights.get("1.1.0"), Some(&25), "still a canary");
    assert_eq!(w.store.measurements(&id).unwrap().len(), 3);
    // A person resumes: the judge keeps its evidence and measures `count` more times.
    w.engine.execute("bob", Command::Resume { app: "web".into(), env: "dev".into(), full: false }).await.unwrap();
    w.until_status(&mut rx, Status::Paused).await;
    assert_eq!(w.store.measurements(&id).unwrap().len(), 6);
}

#[tokio::test(start_paused = true)]
async fn too_many_inconclusive_windows_pause_the_release_after_the_limit() {
    // 2 req/s: about 5 canary requests per window, below the 10 a window needs.
    let w = world_for(2, r#"{ judge = "standard", interval = "10s", count = 10, inconclusive_limit = 1 }"#);
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    let paused = w.until_status(&mut rx, Status::Paused).await;
    let why = paused.reason.unwrap();
    assert!(why.contains("2 inconclusive measurements (inconclusive_limit 1)"), "{why}");
    assert!(why.contains("not enough canary traffic: 5 requests, 10 needed (about 5 more)"), "{why}");
    let ms = w.store.measurements(&id).unwrap();
    assert!(ms.iter().all(|m| m.verdict == Verdict::Inconclusive), "{ms:?}");
}

#[tokio::test(start_paused = true)]
async fn a_metric_condition_fails_after_failure_limit_naming_metric_condition_and_value() {
    // Both versions have a p99 of 40 ms: the judge sees no difference, the condition fails every window.
    let w = world_for(
        1000,
        r#"{ judge = "standard", interval = "10s", count = 5, failure_limit = 1, metrics = [{ name = "p99_ms", failure_condition = "result > 30" }] }"#,
    );
    let r = w.run(deploy("1.1.0", StrategyKind::Canary)).await;
    assert_eq!(r.status, Status::RolledBack);
    let why = r.reason.unwrap();
    assert!(
        why.contains(
            "analysis Failed: p99_ms: 40 (failure condition `result > 30`) (2 failed measurements, failure_limit 1)"
        ),
        "{why}"
    );
    let ms = w.store.measurements(&r.id).unwrap();
    assert_eq!(ms.iter().map(|m| m.verdict).collect::<Vec<_>>(), vec![Verdict::Fail, Verdict::Fail]);
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_records_the_failure_and_enforces_nothing() {
    let w = world_for(1000, r#"{ judge = "standard", interval = "10s", count = 3, dry_run = true }"#);
    let r = w.run(deploy("1.2.0-errors", StrategyKind::Canary)).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    assert!(w.store.measurements(&r.id).unwrap().iter().any(|m| m.verdict == Verdict::Fail));
    let outcome = analysis_outcome(&w, &r.id);
    assert!(outcome.starts_with("dry run, nothing enforced: analysis Failed: error_rate"), "{outcome}");
}

/// The fake cluster's numbers, or an error while `down` is set: a Prometheus that went away.
struct Flaky {
    inner: Arc<FakeCluster>,
    down: AtomicBool,
}

#[async_trait]
impl MetricsProvider for Flaky {
    async fn version_metrics(
        &self,
        target: &Target,
        version: &str,
        window: Duration,
    ) -> Result<VersionMetrics, MetricsError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(MetricsError {
                target: target.to_string(),
                message: "http://127.0.0.1:9/api/v1/query: connection refused".into(),
            });
        }
        self.inner.version_metrics(target, version, window).await
    }
}

#[tokio::test(start_paused = true)]
async fn provider_errors_are_error_measurements_and_pause_after_the_consecutive_limit() {
    let w = world_for(1000, r#"{ template = "prom" }"#);
    let flaky = Arc::new(Flaky { inner: w.cluster.clone(), down: AtomicBool::new(true) });
    w.engine.set_provider(MetricsSource::Prometheus, flaky.clone());
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    let paused = w.until_status(&mut rx, Status::Paused).await;
    let why = paused.reason.unwrap();
    assert!(why.starts_with("analysis Error: 3 measurement errors in a row (consecutive_error_limit 2)"), "{why}");
    assert!(why.contains("connection refused") && why.contains("nothing was promoted"), "{why}");
    let ms = w.store.measurements(&id).unwrap();
    assert_eq!(ms.len(), 3);
    assert!(ms.iter().all(|m| m.verdict == Verdict::Error && m.detail.contains("measurement error")), "{ms:?}");
    assert_eq!(w.routing().weights.get("1.1.0"), Some(&25), "nothing promoted");
    assert_eq!(w.replicas("1.0.0").await, 4);

    // Prometheus is back; a person resumes and the analysis completes.
    flaky.down.store(false, Ordering::SeqCst);
    w.engine.execute("bob", Command::Resume { app: "web".into(), env: "dev".into(), full: false }).await.unwrap();
    let r = w.until_finished(&mut rx, &id).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
}

#[tokio::test(start_paused = true)]
async fn initial_delay_postpones_the_first_measurement() {
    let w = world_for(1000, r#"{ judge = "standard", interval = "10s", count = 1, initial_delay = "30s" }"#);
    let mut rx = w.engine.subscribe();
    w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap();
    w.until_step(&mut rx, 1).await;
    let started = tokio::time::Instant::now();
    loop {
        if let Event::Measurement { .. } = rx.recv().await.unwrap() {
            break;
        }
    }
    assert_eq!(started.elapsed(), Duration::from_secs(40));
}

#[tokio::test(start_paused = true)]
async fn every_judge_can_be_chosen_and_each_rolls_back_an_8_percent_canary() {
    for judge in crate::analysis::judges::JUDGE_NAMES {
        let w = world_for(1000, &format!(r#"{{ judge = "{judge}", interval = "10s", count = 6 }}"#));
        let r = w.run(deploy("1.2.0-errors", StrategyKind::Canary)).await;
        assert_eq!(r.status, Status::RolledBack, "{judge}: {:?}", r.reason);
        assert!(r.reason.as_deref().unwrap_or_default().contains("analysis Failed"), "{judge}: {:?}", r.reason);
        let detail = &w.store.measurements(&r.id).unwrap()[0].detail;
        assert!(detail.contains(&format!("· {judge}")), "{judge}: {detail}");
    }
}

// ---- review tests ----

#[tokio::test(start_paused = true)]
async fn a_dry_run_measures_every_window_not_just_up_to_the_first_failure() {
    // README: "With `dry_run` everything is measured and stored and nothing fails or pauses."
    let w = world_for(1000, r#"{ judge = "standard", interval = "10s", count = 3, dry_run = true }"#);
    let r = w.run(deploy("1.2.0-errors", StrategyKind::Canary)).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    let ms = w.store.measurements(&r.id).unwrap();
    assert_eq!(ms.len(), 3, "dry run stopped measuring (and promoted) after the first failed window: {ms:?}");
}

/// The release once it pauses or finishes, whichever comes first.
async fn paused_or_finished(w: &World, rx: &mut broadcast::Receiver<Event>, id: &str) -> Release {
    let wait = async {
        loop {
            match rx.recv().await.unwrap() {
                Event::Release { release, .. } if release.status == Status::Paused => return *release,
                Event::Finished { release_id, .. } if release_id == id => return w.store.release(id).unwrap().unwrap(),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(600), wait).await.expect("neither paused nor finished")
}

#[tokio::test(start_paused = true)]
async fn the_standard_judge_honours_the_template_s_min_requests() {
    // 2 req/s: about 5 canary requests a window; the template says 3 are enough, so every
    // window is a Pass measurement, and the standard judge should pass the canary at the end.
    let w = world_for(2, r#"{ judge = "standard", interval = "10s", count = 3, min_requests = 3 }"#);
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    let r = paused_or_finished(&w, &mut rx, &id).await;
    let ms = w.store.measurements(&id).unwrap();
    assert!(ms.iter().all(|m| m.verdict == Verdict::Pass), "{ms:?}");
    assert_eq!(r.status, Status::Verified, "every measurement passed, yet: {:?}", r.reason);
}

#[tokio::test(start_paused = true)]
async fn the_standard_judge_does_not_fail_windows_the_template_calls_too_small() {
    // 10 req/s: 25 canary requests a window at 8% errors; the template needs 50 a window, so
    // every measurement is inconclusive, and the release should pause, not roll back.
    let w = world_for(
        10,
        r#"{ judge = "standard", interval = "10s", count = 3, min_requests = 50, inconclusive_limit = 1 }"#,
    );
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.2.0-errors", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    let r = paused_or_finished(&w, &mut rx, &id).await;
    assert_eq!(r.status, Status::Paused, "{:?}", r.reason);
}

#[test]
fn a_stored_plan_from_before_templates_reads_back() {
    let json = r#"[{"type":"analysis","interval_secs":30,"count":3,"inconclusive_limit":3}]"#;
    let plan: Vec<Step> = serde_json::from_str(json).unwrap();
    let Step::Analysis { rules, .. } = &plan[0] else { panic!() };
    assert_eq!(rules.judge, "standard");
}
