//! Engine tests on the in-memory cluster with tokio's clock paused: every strategy's steps,
//! every user action, bad input, and a resume after the process was killed.

use std::sync::Arc;
use std::time::Duration;

use super::fake::FakeCluster;
use super::*;
use crate::config::Estate;
use crate::model::{ReleaseKind, Step, Verdict};

const ESTATE: &str = r#"
[[environments]]
name = "dev"
promotes_to = ["prod"]

[[environments]]
name = "prod"
approval_required = true

[[apps]]
name = "web"
replicas = 4
rps = 100
strategy = "canary"
initial_version = "1.0.0"
[apps.canary]
abort_scale_down_delay = "10s"
steps = [
  { set_weight = 25 },
  { pause = "20s" },
  { analysis = { judge = "standard", interval = "10s", count = 2 } },
  { set_weight = 50 },
  { pause = {} },
  { analysis = { judge = "standard", interval = "10s", count = 1 } },
]
[apps.blue_green]
auto_promotion = "15s"
scale_down_delay = "30s"
[apps.rolling]
max_surge = 1
progress_deadline = "60s"
[apps.ab]
duration = "60s"
audience = 0.5
[[apps.versions]]
version = "1.0.0"
ready_after = "2s"
[[apps.versions]]
version = "1.1.0"
ready_after = "2s"
[[apps.versions]]
version = "1.2.0-errors"
error_rate = 0.08
ready_after = "2s"
[[apps.versions]]
version = "1.3.0-crash"
crash = true
[[apps.versions]]
version = "1.4.0-nodb"
broken_dependencies = ["database"]
ready_after = "2s"
[[apps.versions]]
version = "1.5.0-slow"
p50_ms = 80
p99_ms = 200
ready_after = "2s"

[[apps]]
name = "api"
replicas = 2
rps = 100
strategy = "canary"
rollback_on_failure = false
[apps.canary]
steps = [{ set_weight = 20 }, { analysis = { judge = "standard", interval = "10s", count = 2 } }]
[[apps.versions]]
version = "1.0.0"
[[apps.versions]]
version = "1.1.0-errors"
error_rate = 0.08
"#;

struct World {
    engine: Engine,
    cluster: Arc<FakeCluster>,
    store: Arc<Store>,
    estate: Arc<Estate>,
}

fn world_with(store: Arc<Store>, restore: &std::collections::BTreeMap<Target, WorkloadSpec>) -> World {
    world_of(ESTATE, store, restore)
}

fn world_of(text: &str, store: Arc<Store>, restore: &std::collections::BTreeMap<Target, WorkloadSpec>) -> World {
    let estate = Arc::new(Estate::parse(text, "test estate").unwrap());
    let cluster = FakeCluster::new(&estate, restore);
    let engine = Engine::new(estate.clone(), cluster.clone(), cluster.clone(), store.clone(), false);
    World { engine, cluster, store, estate }
}

fn world() -> World {
    world_with(Arc::new(Store::open_in_memory().unwrap()), &Default::default())
}

fn dev() -> Target {
    Target::new("dev", "web")
}

fn deploy(version: &str, strategy: StrategyKind) -> Command {
    Command::Deploy {
        app: "web".into(),
        env: "dev".into(),
        version: version.into(),
        strategy: Some(strategy),
        flags: Vec::new(),
    }
}

impl World {
    async fn run(&self, cmd: Command) -> Release {
        let mut rx = self.engine.subscribe();
        let out = self.engine.execute("alice", cmd).await.unwrap();
        let id = out.release.unwrap().id;
        self.until_finished(&mut rx, &id).await
    }

    async fn until_finished(&self, rx: &mut broadcast::Receiver<Event>, id: &str) -> Release {
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(Event::Finished { release_id, .. }) if release_id == id => break,
                    Ok(_) => {}
                    Err(e) => panic!("event stream: {e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(3600), wait).await.expect("release never finished");
        self.store.release(id).unwrap().unwrap()
    }

    /// Wait until the release reaches step `index` (0-based).
    async fn until_step(&self, rx: &mut broadcast::Receiver<Event>, index: usize) {
        loop {
            match rx.recv().await.unwrap() {
                Event::Step { index: i, .. } if i == index => return,
                _ => {}
            }
        }
    }

    async fn until_status(&self, rx: &mut broadcast::Receiver<Event>, status: Status) -> Release {
        loop {
            if let Event::Release { release, .. } = rx.recv().await.unwrap()
                && release.status == status
            {
                return *release;
            }
        }
    }

    fn routing(&self) -> Routing {
        self.cluster.routing(&dev())
    }

    async fn replicas(&self, version: &str) -> u32 {
        self.cluster.state(&dev()).await.unwrap().replicas(version).desired
    }

    fn statuses(&self, id: &str) -> Vec<Status> {
        self.store.transitions(id).unwrap().iter().map(|t| t.to).collect()
    }
}

use crate::cluster::{Routing, WorkloadSpec};
use crate::store::Store;

mod analysis;
mod claims;
mod emergency;
mod flag_rollout;
mod foreign;
mod native;
mod traffic;

#[tokio::test(start_paused = true)]
async fn a_good_canary_walks_every_step_and_ends_verified() {
    let w = world();
    let mut rx = w.engine.subscribe();
    let out = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap();
    let id = out.release.unwrap().id;
    // The indefinite pause waits for a person.
    let paused = w.until_status(&mut rx, Status::Paused).await;
    assert!(paused.reason.unwrap().contains("paused until resumed"));
    assert_eq!(w.routing().weights.get("1.1.0"), Some(&50));
    w.engine.execute("bob", Command::Resume { app: "web".into(), env: "dev".into(), full: false }).await.unwrap();
    let r = w.until_finished(&mut rx, &id).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    assert_eq!(
        w.statuses(&id),
        vec![
            Status::Planned,
            Status::InProgress,
            Status::Paused,
            Status::InProgress,
            Status::Deployed,
            Status::Verified
        ]
    );
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));
    assert_eq!(w.replicas("1.0.0").await, 0);
    assert_eq!(w.replicas("1.1.0").await, 4);
    let ms = w.store.measurements(&id).unwrap();
    assert_eq!(ms.len(), 3);
    assert!(ms.iter().all(|m| m.verdict == Verdict::Pass));
    assert_eq!(w.store.steps(&id).unwrap().len(), r.plan.len());
}

#[tokio::test(start_paused = true)]
async fn a_canary_erroring_at_8_percent_rolls_back_naming_the_measurement() {
    let w = world();
    let r = w.run(deploy("1.2.0-errors", StrategyKind::Canary)).await;
    assert_eq!(r.status, Status::RolledBack);
    let why = r.reason.unwrap();
    assert!(
        why.contains("analysis Failed: error_rate: 0.0800 > 0.0000 (1.5 × stable 0.0000; 20 of 250 requests failed)"),
        "{why}"
    );
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
    assert_eq!(w.replicas("1.2.0-errors").await, 0);
    assert_eq!(w.replicas("1.0.0").await, 4);
    assert!(w.store.measurements(&r.id).unwrap().iter().any(|m| m.verdict == Verdict::Fail));
}

#[tokio::test(start_paused = true)]
async fn a_slow_canary_rolls_back_on_p99() {
    let w = world();
    let r = w.run(deploy("1.5.0-slow", StrategyKind::Canary)).await;
    assert_eq!(r.status, Status::RolledBack);
    let why = r.reason.unwrap();
    assert!(why.contains("analysis Failed: latency_p99_ms: "), "{why}");
}

#[tokio::test(start_paused = true)]
async fn blue_green_switches_after_auto_promotion_and_removes_the_old_colour() {
    let w = world();
    let r = w.run(deploy("1.1.0", StrategyKind::BlueGreen)).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));
    assert_eq!(w.replicas("1.0.0").await, 0);
}

#[tokio::test(start_paused = true)]
async fn blue_green_keeps_traffic_on_the_old_colour_while_the_preview_is_verified() {
    let w = world();
    let mut rx = w.engine.subscribe();
    w.engine.execute("alice", deploy("1.1.0", StrategyKind::BlueGreen)).await.unwrap();
    w.until_step(&mut rx, 3).await; // await switch
    let routing = w.routing();
    assert_eq!(routing.preview.as_deref(), Some("1.1.0"));
    assert_eq!(routing.weights.get("1.0.0"), Some(&100));
    assert_eq!(w.replicas("1.1.0").await, 4);
    assert_eq!(w.replicas("1.0.0").await, 4);
}

#[tokio::test(start_paused = true)]
async fn blue_green_with_a_broken_dependency_never_takes_traffic() {
    let w = world();
    let r = w.run(deploy("1.4.0-nodb", StrategyKind::BlueGreen)).await;
    assert_eq!(r.status, Status::RolledBack);
    let why = r.reason.unwrap();
    assert!(why.contains("before the switch") && why.contains("database"), "{why}");
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
    assert_eq!(w.replicas("1.4.0-nodb").await, 0);
}

#[tokio::test(start_paused = true)]
async fn rolling_replaces_pods_batch_by_batch_and_ends_verified() {
    let w = world();
    let r = w.run(deploy("1.1.0", StrategyKind::Rolling)).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    assert_eq!(r.plan.iter().filter(|s| matches!(s, Step::RollingBatch { .. })).count(), 4);
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));
    assert_eq!(w.replicas("1.0.0").await, 0);
}

#[tokio::test(start_paused = true)]
async fn rolling_a_crashing_version_hits_the_progress_deadline_and_rolls_back() {
    let w = world();
    let r = w.run(deploy("1.3.0-crash", StrategyKind::Rolling)).await;
    assert_eq!(r.status, Status::RolledBack);
    let why = r.reason.unwrap();
    assert!(why.contains("progress deadline exceeded") && why.contains("CrashLoopBackOff"), "{why}");
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
    assert_eq!(w.replicas("1.0.0").await, 4);
    assert_eq!(w.replicas("1.3.0-crash").await, 0);
}

#[tokio::test(start_paused = true)]
async fn recreate_goes_down_then_up_and_ends_verified() {
    let w = world();
    let r = w.run(deploy("1.1.0", StrategyKind::Recreate)).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));
}

#[tokio::test(start_paused = true)]
async fn recreate_of_a_crashing_version_brings_the_old_one_back() {
    let w = world();
    let r = w.run(deploy("1.3.0-crash", StrategyKind::Recreate)).await;
    assert_eq!(r.status, Status::RolledBack);
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
    assert_eq!(w.replicas("1.0.0").await, 4);
}

#[tokio::test(start_paused = true)]
async fn ab_sends_the_audience_to_b_and_promotes_a_good_b() {
    let w = world();
    let mut rx = w.engine.subscribe();
    let out = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Ab)).await.unwrap();
    w.until_step(&mut rx, 1).await;
    tokio::task::yield_now().await;
    let r = w.until_finished(&mut rx, &out.release.unwrap().id).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));
}

#[tokio::test(start_paused = true)]
async fn ab_withdraws_a_worse_b() {
    let w = world();
    let r = w.run(deploy("1.2.0-errors", StrategyKind::Ab)).await;
    assert_eq!(r.status, Status::RolledBack);
    assert!(r.reason.unwrap().contains("A/B"));
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
    assert!(w.routing().matches.is_empty());
}

#[tokio::test(start_paused = true)]
async fn abort_at_every_canary_step_puts_all_traffic_back_on_stable() {
    let steps = world().estate.settings("dev", "web").unwrap().canary.steps.len() + 2;
    for at in 0..steps {
        let w = world();
        let mut rx = w.engine.subscribe();
        let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
        // Walk to step `at`, resuming the indefinite pause (step 5) on the way.
        loop {
            match rx.recv().await.unwrap() {
                Event::Step { index, .. } if index == at => break,
                Event::Release { release, .. } if release.status == Status::Paused && at > 4 => {
                    w.engine
                        .execute("bob", Command::Resume { app: "web".into(), env: "dev".into(), full: false })
                        .await
                        .unwrap();
                }
                _ => {}
            }
        }
        w.engine.execute("bob", Command::Abort { app: "web".into(), env: "dev".into() }).await.unwrap();
        let r = w.until_finished(&mut rx, &id).await;
        assert_eq!(r.status, Status::Aborted, "step {at}");
        assert!(r.reason.unwrap().contains("aborted by bob"));
        assert_eq!(w.routing(), Routing::all_to("1.0.0"), "step {at}");
        assert_eq!(w.replicas("1.0.0").await, 4);
        // The canary's pods stay for the abort delay, then go.
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(w.replicas("1.1.0").await, 0, "step {at}");
    }
}

#[tokio::test(start_paused = true)]
async fn pause_holds_a_timed_pause_and_resume_finishes_it() {
    let w = world();
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    w.until_step(&mut rx, 1).await;
    w.engine.execute("bob", Command::Pause { app: "web".into(), env: "dev".into() }).await.unwrap();
    let p = w.until_status(&mut rx, Status::Paused).await;
    assert!(p.reason.unwrap().contains("paused by bob at step 2/"));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(w.store.release(&id).unwrap().unwrap().cursor, 1, "a paused release does not move");
    w.engine.execute("bob", Command::Resume { app: "web".into(), env: "dev".into(), full: false }).await.unwrap();
    w.until_status(&mut rx, Status::Paused).await; // the indefinite pause
    w.engine.execute("bob", Command::Resume { app: "web".into(), env: "dev".into(), full: false }).await.unwrap();
    assert_eq!(w.until_finished(&mut rx, &id).await.status, Status::Verified);
}

#[tokio::test(start_paused = true)]
async fn resume_full_skips_the_remaining_steps_and_analysis() {
    let w = world();
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    w.until_step(&mut rx, 1).await;
    w.engine.execute("bob", Command::Resume { app: "web".into(), env: "dev".into(), full: true }).await.unwrap();
    let r = w.until_finished(&mut rx, &id).await;
    assert_eq!(r.status, Status::Verified);
    assert!(w.store.measurements(&id).unwrap().is_empty(), "no analysis ran");
    let causes: Vec<String> = w.store.transitions(&id).unwrap().into_iter().map(|t| t.cause).collect();
    assert!(causes.iter().any(|c| c.contains("resumed in full by bob")), "{causes:?}");
}

#[tokio::test(start_paused = true)]
async fn an_aborted_release_can_be_retried_to_verified() {
    let w = world();
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Rolling)).await.unwrap().release.unwrap().id;
    w.until_step(&mut rx, 2).await;
    w.engine.execute("bob", Command::Abort { app: "web".into(), env: "dev".into() }).await.unwrap();
    assert_eq!(w.until_finished(&mut rx, &id).await.status, Status::Aborted);
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
    w.engine.execute("bob", Command::Retry { app: "web".into(), env: "dev".into() }).await.unwrap();
    let r = w.until_finished(&mut rx, &id).await;
    assert_eq!(r.status, Status::Verified);
    assert!(w.statuses(&id).contains(&Status::Aborted));
}

#[tokio::test(start_paused = true)]
async fn rollback_of_a_running_release_restores_stable_at_once() {
    let w = world();
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    w.until_step(&mut rx, 2).await;
    w.engine.execute("bob", Command::Rollback { app: "web".into(), env: "dev".into(), to: None }).await.unwrap();
    let r = w.until_finished(&mut rx, &id).await;
    assert_eq!(r.status, Status::RolledBack);
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
    assert_eq!(w.replicas("1.1.0").await, 0);
}

#[tokio::test(start_paused = true)]
async fn rollback_after_a_verified_release_returns_to_the_previous_verified_version() {
    let w = world();
    assert_eq!(w.run(deploy("1.1.0", StrategyKind::Rolling)).await.status, Status::Verified);
    let second = w.run(deploy("1.5.0-slow", StrategyKind::Rolling)).await;
    assert_eq!(second.status, Status::Verified);
    let back = w.run(Command::Rollback { app: "web".into(), env: "dev".into(), to: None }).await;
    assert_eq!(back.kind, ReleaseKind::Rollback);
    assert_eq!(back.version, "1.1.0");
    assert_eq!(back.status, Status::Verified);
    assert_eq!(w.store.release(&second.id).unwrap().unwrap().status, Status::RolledBack);
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));
    let to = w.run(Command::Rollback { app: "web".into(), env: "dev".into(), to: Some("1.0.0".into()) }).await;
    assert_eq!((to.version.as_str(), to.status), ("1.0.0", Status::Verified));
}

#[tokio::test(start_paused = true)]
async fn restart_replaces_the_pods_of_the_current_version() {
    let w = world();
    let before: Vec<String> = w.cluster.state(&dev()).await.unwrap().pods.into_iter().map(|p| p.name).collect();
    w.engine.execute("bob", Command::Restart { app: "web".into(), env: "dev".into(), version: None }).await.unwrap();
    let after = w.cluster.state(&dev()).await.unwrap().pods;
    assert_eq!(after.len(), 4);
    assert!(after.iter().all(|p| !before.contains(&p.name)));
}

#[tokio::test(start_paused = true)]
async fn a_release_interrupted_by_a_killed_process_resumes_in_a_new_one() {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let w = world_with(store.clone(), &Default::default());
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    w.until_step(&mut rx, 2).await;
    // The process dies: its tasks stop where they are, nothing is cleaned up.
    for h in w.engine.inner.lock_runs().drain() {
        h.1.task.abort();
    }
    let interrupted = store.mark_interrupted().unwrap();
    assert_eq!(interrupted.len(), 1);
    assert!(interrupted[0].interrupted);
    // A new process: the cluster comes back as recorded.
    let w2 = world_with(store.clone(), &store.workloads().unwrap());
    assert_eq!(w2.routing().weights.get("1.1.0"), Some(&25), "the canary weight survived");
    let mut rx2 = w2.engine.subscribe();
    w2.engine.execute("carol", Command::Resume { app: "web".into(), env: "dev".into(), full: false }).await.unwrap();
    w2.until_status(&mut rx2, Status::Paused).await;
    w2.engine.execute("carol", Command::Resume { app: "web".into(), env: "dev".into(), full: false }).await.unwrap();
    let r = w2.until_finished(&mut rx2, &id).await;
    assert_eq!(r.status, Status::Verified);
    assert!(!r.interrupted);
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_release_can_be_aborted_in_a_new_process() {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let w = world_with(store.clone(), &Default::default());
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    w.until_step(&mut rx, 1).await;
    for h in w.engine.inner.lock_runs().drain() {
        h.1.task.abort();
    }
    store.mark_interrupted().unwrap();
    let w2 = world_with(store.clone(), &store.workloads().unwrap());
    let mut rx2 = w2.engine.subscribe();
    w2.engine.execute("carol", Command::Abort { app: "web".into(), env: "dev".into() }).await.unwrap();
    assert_eq!(w2.until_finished(&mut rx2, &id).await.status, Status::Aborted);
    assert_eq!(w2.routing(), Routing::all_to("1.0.0"));
}

#[tokio::test(start_paused = true)]
async fn a_promotion_into_prod_waits_for_someone_elses_approval() {
    let w = world();
    assert_eq!(w.run(deploy("1.1.0", StrategyKind::Rolling)).await.status, Status::Verified);
    let promote = Command::Promote { app: "web".into(), from: "dev".into(), to: "prod".into() };
    let out = w.engine.execute("alice", promote).await.unwrap();
    let r = out.release.unwrap();
    assert_eq!((r.status, r.kind, out.running), (Status::Planned, ReleaseKind::Promotion, false));
    assert_eq!(r.version, "1.1.0");
    let own = w.engine.execute("alice", Command::Approve { release_id: r.id.clone() }).await.unwrap_err();
    assert_eq!(own.exit_code(), 2);
    assert!(own.to_string().contains("cannot approve"), "{own}");
    assert!(w.store.approvals(&r.id).unwrap().is_empty());
    let mut rx = w.engine.subscribe();
    w.engine.execute("bob", Command::Approve { release_id: r.id.clone() }).await.unwrap();
    w.until_status(&mut rx, Status::Paused).await; // prod's canary has a manual pause
    w.engine.execute("bob", Command::Resume { app: "web".into(), env: "prod".into(), full: false }).await.unwrap();
    assert_eq!(w.until_finished(&mut rx, &r.id).await.status, Status::Verified);
    assert_eq!(w.store.approvals(&r.id).unwrap()[0].by, "bob");
    let again = w.engine.execute("carol", Command::Approve { release_id: r.id.clone() }).await.unwrap_err();
    assert_eq!(again.exit_code(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_promotion_along_no_declared_path_is_refused_naming_the_allowed_targets() {
    let w = world();
    let err = w
        .engine
        .execute("alice", Command::Promote { app: "web".into(), from: "prod".into(), to: "dev".into() })
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("prod promotes only to nowhere"), "{err}");
    let err = w
        .engine
        .execute("alice", Command::Promote { app: "web".into(), from: "dev".into(), to: "prod".into() })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nothing verified to promote"), "{err}");
    assert!(w.store.releases(&Default::default()).unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn unknown_app_environment_or_version_is_bad_input_and_stores_nothing() {
    let w = world();
    for (cmd, expect) in [
        (
            Command::Deploy {
                app: "nope".into(),
                env: "dev".into(),
                version: "1.1.0".into(),
                strategy: None,
                flags: Vec::new(),
            },
            "unknown app `nope`",
        ),
        (
            Command::Deploy {
                app: "web".into(),
                env: "qa".into(),
                version: "1.1.0".into(),
                strategy: None,
                flags: Vec::new(),
            },
            "unknown environment `qa`",
        ),
        (deploy("9.9.9", StrategyKind::Canary), "image web:9.9.9 cannot be pulled"),
    ] {
        let err = w.engine.execute("alice", cmd).await.unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains(expect), "{err}");
    }
    assert!(w.store.releases(&Default::default()).unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_second_release_of_the_same_app_is_refused_while_one_runs() {
    let w = world();
    w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap();
    let err = w.engine.execute("bob", deploy("1.5.0-slow", StrategyKind::Canary)).await.unwrap_err();
    assert!(err.to_string().contains("already has release"), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test(start_paused = true)]
async fn readonly_refuses_every_change() {
    let w = world();
    let ro = Engine::new(w.estate.clone(), w.cluster.clone(), w.cluster.clone(), w.store.clone(), true);
    let err = ro.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap_err();
    assert!(err.to_string().contains("read-only"));
}

#[tokio::test(start_paused = true)]
async fn switching_kubernetes_is_allowed_read_only_but_not_under_a_running_release() {
    let switch = || Command::SwitchKubernetes { env: "dev".into(), context: Some("kind-b".into()), namespace: None };
    let w = world();
    let ro = Engine::new(w.estate.clone(), w.cluster.clone(), w.cluster.clone(), w.store.clone(), true);
    let err = ro.execute("alice", switch()).await.unwrap_err().to_string();
    assert!(err.contains("no environment runs on Kubernetes"), "not refused as a change: {err}");

    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    let err = w.engine.execute("alice", switch()).await.unwrap_err().to_string();
    assert!(err.contains(&id) && err.contains("is running"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn abort_at_every_step_of_every_strategy_restores_stable() {
    for strategy in [StrategyKind::Rolling, StrategyKind::Recreate, StrategyKind::BlueGreen, StrategyKind::Ab] {
        let settings = world().estate.settings("dev", "web").unwrap().clone();
        let steps = plan::build(strategy, &settings, Some("1.0.0")).len();
        for at in 0..steps {
            let w = world();
            let mut rx = w.engine.subscribe();
            let id = w.engine.execute("alice", deploy("1.1.0", strategy)).await.unwrap().release.unwrap().id;
            w.until_step(&mut rx, at).await;
            w.engine.execute("bob", Command::Abort { app: "web".into(), env: "dev".into() }).await.unwrap();
            let r = w.until_finished(&mut rx, &id).await;
            assert_eq!(r.status, Status::Aborted, "{strategy} step {at}: {:?}", r.reason);
            assert_eq!(w.routing(), Routing::all_to("1.0.0"), "{strategy} step {at}");
            assert_eq!(w.replicas("1.0.0").await, 4, "{strategy} step {at}");
            tokio::time::sleep(Duration::from_secs(11)).await;
            assert_eq!(w.replicas("1.1.0").await, 0, "{strategy} step {at}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn deploying_a_version_again_right_after_aborting_it_keeps_its_pods() {
    let w = world();
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap().release.unwrap().id;
    w.until_step(&mut rx, 1).await;
    w.engine.execute("bob", Command::Abort { app: "web".into(), env: "dev".into() }).await.unwrap();
    assert_eq!(w.until_finished(&mut rx, &id).await.status, Status::Aborted);
    // Within the abort delay, the same version again, as a new release.
    let r = w.run(deploy("1.1.0", StrategyKind::Recreate)).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(w.replicas("1.1.0").await, 4, "the old abort's removal must not take the new release's pods");
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));
}

#[tokio::test(start_paused = true)]
async fn blue_green_resume_full_before_the_new_colour_is_ready_waits_for_it() {
    let w = world();
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.1.0", StrategyKind::BlueGreen)).await.unwrap().release.unwrap().id;
    w.until_step(&mut rx, 0).await;
    w.engine.execute("bob", Command::Resume { app: "web".into(), env: "dev".into(), full: true }).await.unwrap();
    loop {
        match rx.recv().await.unwrap() {
            Event::Finished { release_id, .. } if release_id == id => break,
            Event::Step { .. } | Event::Release { .. } => {
                let state = w.cluster.state(&dev()).await.unwrap();
                if state.routing.weights.get("1.1.0") == Some(&100) {
                    assert_eq!(state.replicas("1.1.0").ready, 4, "traffic switched to pods that were not ready");
                }
            }
            _ => {}
        }
    }
    assert_eq!(w.store.release(&id).unwrap().unwrap().status, Status::Verified);
}

#[tokio::test(start_paused = true)]
async fn a_failed_release_that_left_traffic_behind_can_still_be_rolled_back() {
    let w = world();
    let api = Target::new("dev", "api");
    let cmd = Command::Deploy {
        app: "api".into(),
        env: "dev".into(),
        version: "1.1.0-errors".into(),
        strategy: None,
        flags: Vec::new(),
    };
    let r = w.run(cmd).await;
    assert_eq!(r.status, Status::Failed, "rollback_on_failure = false stops where it is");
    assert_eq!(w.cluster.routing(&api).weights.get("1.1.0-errors"), Some(&20));
    let mut rx = w.engine.subscribe();
    w.engine.execute("bob", Command::Rollback { app: "api".into(), env: "dev".into(), to: None }).await.unwrap();
    let back = w.until_finished(&mut rx, &r.id).await;
    assert_eq!(back.status, Status::RolledBack);
    assert_eq!(w.cluster.routing(&api), Routing::all_to("1.0.0"));
}

#[tokio::test(start_paused = true)]
async fn retrying_a_release_aborted_before_its_approval_waits_for_one() {
    let w = world();
    let cmd = Command::Deploy {
        app: "web".into(),
        env: "prod".into(),
        version: "1.1.0".into(),
        strategy: None,
        flags: Vec::new(),
    };
    let r = w.engine.execute("alice", cmd).await.unwrap().release.unwrap();
    assert_eq!(r.status, Status::Planned);
    w.engine.execute("alice", Command::Abort { app: "web".into(), env: "prod".into() }).await.unwrap();
    let out = w.engine.execute("alice", Command::Retry { app: "web".into(), env: "prod".into() }).await.unwrap();
    assert!(!out.running);
    assert_eq!(w.store.release(&r.id).unwrap().unwrap().status, Status::Planned);
    assert!(out.message.contains("waiting for approval"), "{}", out.message);
}

#[tokio::test(start_paused = true)]
async fn rollback_to_a_version_never_verified_there_is_refused() {
    let w = world();
    let err = w
        .engine
        .execute("mallory", Command::Rollback { app: "web".into(), env: "prod".into(), to: Some("1.1.0".into()) })
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("never verified in prod"), "{err}");
    assert!(w.store.releases(&Default::default()).unwrap().is_empty());
}
