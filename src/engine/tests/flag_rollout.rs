//! Progressive flag rollouts on the fake cluster with the clock paused: a harmless flag reaches
//! 100%, a harmful one is turned back at its first stage, and both are in the flag's history.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::*;
use crate::analysis::{FlagMetrics, MetricsError, VersionMetrics};
use crate::flags::{DEMO_FLAGS, FileFlagStore};

/// 1,000 req/s split between `on` and `off` by the flag's current rollout; `off` fails 1% of
/// requests, `on` fails `on_error_rate` of them.
struct Traffic {
    flags: Arc<FileFlagStore>,
    on_error_rate: f64,
}

#[async_trait]
impl FlagMetrics for Traffic {
    async fn variant_metrics(
        &self,
        _target: &Target,
        flag: &str,
        window: Duration,
    ) -> Result<BTreeMap<String, VersionMetrics>, MetricsError> {
        let set = self.flags.load().map_err(|e| MetricsError { target: flag.into(), message: e.to_string() })?.0;
        let view = set.views().into_iter().find(|v| v.key == flag);
        let on_share = view.filter(|v| v.enabled).and_then(|v| v.rollout).unwrap_or(0) as f64 / 100.0;
        let total = 1000.0 * window.as_secs_f64();
        let m = |share: f64, rate: f64| {
            let requests = (total * share).round() as u64;
            VersionMetrics { requests, errors: (requests as f64 * rate).round() as u64, ..Default::default() }
        };
        Ok(BTreeMap::from([
            ("on".to_string(), m(on_share, self.on_error_rate)),
            ("off".to_string(), m(1.0 - on_share, 0.01)),
        ]))
    }
}

fn rollout_world(on_error_rate: f64) -> (World, Arc<FileFlagStore>, tempfile::TempDir) {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let flags = Arc::new(FileFlagStore::open(&dir.path().join("flags.json"), Some(DEMO_FLAGS)).unwrap());
    w.engine.attach_flags(flags.clone());
    w.engine.attach_flag_metrics(Arc::new(Traffic { flags: flags.clone(), on_error_rate }));
    (w, flags, dir)
}

fn rollout(stages: &str) -> Command {
    Command::FlagRollout {
        key: "new-checkout-flow".into(),
        app: "web".into(),
        env: "dev".into(),
        stages: Some(crate::engine::flag_rollout::parse_stages(stages).unwrap()),
        template: None,
    }
}

async fn until_rollout_ends(rx: &mut broadcast::Receiver<Event>) -> (bool, String, Vec<String>) {
    let mut stages = Vec::new();
    loop {
        match rx.recv().await.unwrap() {
            Event::FlagRollout { finished: true, ok, message, .. } => return (ok, message, stages),
            Event::FlagRollout { message, .. } => stages.push(message),
            _ => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_harmless_flag_advances_stage_by_stage_to_100_percent() {
    let (w, flags, _dir) = rollout_world(0.01);
    let mut rx = w.engine.subscribe();
    let out = w.engine.execute("alice", rollout("10:2m,25:2m,50:2m,100")).await.unwrap();
    assert!(out.message.contains("10% for 2m → 25% for 2m → 50% for 2m → 100%"), "{}", out.message);
    let started = tokio::time::Instant::now();
    let (ok, message, stages) = until_rollout_ends(&mut rx).await;
    assert!(ok, "{message}");
    assert_eq!(stages.len(), 4, "{stages:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(360), "each stage held its time");
    let view = flags.load().unwrap().0.views().into_iter().find(|v| v.key == "new-checkout-flow").unwrap();
    assert_eq!((view.enabled, view.rollout), (true, Some(100)));
    let history = w.store.flag_changes(Some("new-checkout-flow"), 10).unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(history[0].action, "progressive rollout stage 4/4: 100%");
}

#[tokio::test(start_paused = true)]
async fn a_harmful_flag_is_turned_back_at_its_first_stage_and_the_history_says_why() {
    let (w, flags, _dir) = rollout_world(0.2);
    let before = flags.load().unwrap().0.flag("new-checkout-flow").cloned();
    let mut rx = w.engine.subscribe();
    w.engine.execute("alice", rollout("25:5m,50:5m,100")).await.unwrap();
    let (ok, message, _) = until_rollout_ends(&mut rx).await;
    assert!(!ok);
    assert!(
        message.starts_with("progressive rollout failed at 25% (stage 1/3): `on` is worse than `off`: error_rate"),
        "{message}"
    );
    assert!(message.ends_with("turned back to its state before the rollout"), "{message}");
    assert_eq!(flags.load().unwrap().0.flag("new-checkout-flow").cloned(), before, "exactly as before");
    let history = w.store.flag_changes(Some("new-checkout-flow"), 10).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].after, before);
    assert!(history[0].action.contains("failed at 25%"));
}

#[tokio::test(start_paused = true)]
async fn a_rollout_of_an_unknown_flag_or_template_is_refused_before_anything_changes() {
    let (w, flags, _dir) = rollout_world(0.01);
    let on_disk = flags.load().unwrap().0;
    let mut bad = rollout("10:1m,100");
    if let Command::FlagRollout { key, .. } = &mut bad {
        *key = "nope".into();
    }
    assert!(w.engine.execute("alice", bad).await.unwrap_err().to_string().contains("no flag named `nope`"));
    let mut bad = rollout("10:1m,100");
    if let Command::FlagRollout { template, .. } = &mut bad {
        *template = Some("missing".into());
    }
    assert!(w.engine.execute("alice", bad).await.unwrap_err().to_string().contains("no analysis template `missing`"));
    assert_eq!(flags.load().unwrap().0, on_disk);
    assert!(w.store.flag_changes(None, 10).unwrap().is_empty());
}

fn deploy_with_flags(version: &str, flags: &[&str]) -> Command {
    Command::Deploy {
        app: "web".into(),
        env: "dev".into(),
        version: version.into(),
        strategy: Some(StrategyKind::Recreate),
        flags: flags.iter().map(|f| crate::model::FlagSetting::parse(f).unwrap()).collect(),
    }
}

fn state(flags: &FileFlagStore, key: &str) -> (bool, Option<u32>) {
    let v = flags.load().unwrap().0.views().into_iter().find(|v| v.key == key).unwrap();
    (v.enabled, v.rollout)
}

#[tokio::test(start_paused = true)]
async fn flags_travel_with_a_release_applied_when_verified_and_put_back_by_its_rollback() {
    let (w, flags, _dir) = rollout_world(0.01);
    assert_eq!(state(&flags, "dark-mode"), (true, None));
    let r = w.run(deploy_with_flags("1.1.0", &["dark-mode=off", "new-checkout-flow=40%"])).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    assert!(matches!(r.plan.last(), Some(Step::ApplyFlags { .. })), "after the verification: {:?}", r.plan);
    assert_eq!(state(&flags, "dark-mode"), (false, None));
    assert_eq!(state(&flags, "new-checkout-flow"), (true, Some(40)));
    assert_eq!(w.store.flag_changes_of_release(&r.id).unwrap().len(), 2);

    let back = w.run(Command::Rollback { app: "web".into(), env: "dev".into(), to: Some("1.0.0".into()) }).await;
    assert_eq!(back.status, Status::Verified, "{:?}", back.reason);
    assert!(matches!(back.plan.last(), Some(Step::RevertFlags { release_id }) if *release_id == r.id));
    assert_eq!(state(&flags, "dark-mode"), (true, None), "as before the release");
    assert_eq!(state(&flags, "new-checkout-flow"), (true, Some(10)));
    let history = w.store.flag_changes(Some("dark-mode"), 10).unwrap();
    assert!(history[0].action.starts_with(&format!("reverted with release {}", back.id)), "{history:?}");
}

#[tokio::test(start_paused = true)]
async fn a_release_whose_flag_change_cannot_apply_is_refused_before_anything_moves() {
    let (w, flags, _dir) = rollout_world(0.01);
    let before = flags.load().unwrap().0;
    let err = w.engine.execute("alice", deploy_with_flags("1.1.0", &["dark-mode=off", "nope=on"])).await.unwrap_err();
    assert!(err.to_string().contains("flag change nope=on: no flag named `nope`"), "{err}");
    assert_eq!(w.replicas("1.1.0").await, 0, "nothing started");
    assert_eq!(flags.load().unwrap().0, before, "no flag changed");
    assert!(w.store.releases(&Default::default()).unwrap().is_empty(), "no release stored");
}

fn experiment(seconds: u64) -> Command {
    Command::FlagExperiment {
        key: "new-checkout-flow".into(),
        app: "web".into(),
        env: "dev".into(),
        control: "off".into(),
        treatment: "on".into(),
        duration_secs: seconds,
        hypothesis: "the new flow fails no more often".into(),
    }
}

async fn until_experiment_ends(rx: &mut broadcast::Receiver<Event>) -> crate::model::ExperimentResult {
    loop {
        if let Event::Experiment { result } = rx.recv().await.unwrap() {
            return *result;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_experiment_reports_each_variant_and_stops_early_when_the_treatment_does_harm() {
    let (w, flags, _dir) = rollout_world(0.2);
    let before = flags.load().unwrap().0.flag("new-checkout-flow").cloned();
    let mut rx = w.engine.subscribe();
    let started = tokio::time::Instant::now();
    w.engine.execute("alice", experiment(600)).await.unwrap();
    let r = until_experiment_ends(&mut rx).await;
    assert!(started.elapsed() < Duration::from_secs(60), "stopped early: {:?}", started.elapsed());
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.conclusion);
    assert!(r.conclusion.starts_with("treatment does harm, stopped early: error_rate"), "{}", r.conclusion);
    assert_eq!(r.variants.iter().map(|v| v.variant.as_str()).collect::<Vec<_>>(), ["off", "on"]);
    let (off, on) = (&r.variants[0], &r.variants[1]);
    assert!(off.requests > 0 && on.requests > 0);
    assert_eq!(off.error_rate, Some(0.01));
    assert_eq!(on.error_rate, Some(0.2));
    assert_eq!(flags.load().unwrap().0.flag("new-checkout-flow").cloned(), before, "flag back as before");
    assert_eq!(w.store.experiments("new-checkout-flow").unwrap(), vec![r]);
}

#[tokio::test(start_paused = true)]
async fn a_harmless_treatment_is_found_no_worse() {
    let (w, _flags, _dir) = rollout_world(0.01);
    let mut rx = w.engine.subscribe();
    w.engine.execute("alice", experiment(300)).await.unwrap();
    let r = until_experiment_ends(&mut rx).await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.conclusion);
    assert!(r.conclusion.starts_with("treatment no worse than control"), "{}", r.conclusion);
}

#[tokio::test(start_paused = true)]
async fn a_kill_switch_during_a_progressive_rollout_stays_off() {
    let (w, flags, _dir) = rollout_world(0.01);
    let mut rx = w.engine.subscribe();
    w.engine.execute("alice", rollout("10:5m,50:5m,100")).await.unwrap();
    loop {
        if let Event::FlagRollout { finished: false, .. } = rx.recv().await.unwrap() {
            break;
        }
    }
    w.engine.execute("bob", Command::SetFlag { key: "new-checkout-flow".into(), enabled: false }).await.unwrap();
    let (ok, message, _) = until_rollout_ends(&mut rx).await;
    assert!(!ok);
    assert!(message.contains("changed by someone else during the rollout"), "{message}");
    assert!(!state(&flags, "new-checkout-flow").0, "the kill switch holds");
}

#[tokio::test(start_paused = true)]
async fn a_rollback_leaves_out_a_flag_deleted_since_its_release_and_still_completes() {
    let (w, flags, _dir) = rollout_world(0.01);
    let r = w.run(deploy_with_flags("1.1.0", &["dark-mode=off", "new-checkout-flow=40%"])).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    // Someone removes dark-mode from the file by hand.
    let (set, rev) = flags.load().unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&set.to_json()).unwrap();
    doc["flags"].as_object_mut().unwrap().remove("dark-mode");
    let edited = crate::flags::FlagSet::parse(&doc.to_string(), "test").unwrap();
    flags.save(&edited, &rev).unwrap();

    let back = w.run(Command::Rollback { app: "web".into(), env: "dev".into(), to: Some("1.0.0".into()) }).await;
    assert_eq!(back.status, Status::Verified, "{:?}", back.reason);
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
    assert_eq!(state(&flags, "new-checkout-flow"), (true, Some(10)), "the flag that still exists is put back");
    let steps = w.store.steps(&back.id).unwrap();
    let note = steps.last().and_then(|s| s.outcome.clone()).unwrap_or_default();
    assert!(note.contains("dark-mode no longer exist"), "{note}");
}
