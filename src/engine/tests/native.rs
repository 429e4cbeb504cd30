//! Rolling and recreate through the app's own Deployment on a cluster that rolls natively (the
//! in-memory fake in its native mode, tokio's clock paused): the plan, completion, a progress
//! deadline undone with its cause, an abort, and a rollback by undo.

use super::*;
use crate::cluster::{NativeCondition, NativeStrategy};

fn native_world() -> World {
    let w = world();
    w.cluster.roll_natively();
    w
}

fn first_step(r: &Release) -> Step {
    r.plan.first().cloned().unwrap_or(Step::Promote)
}

#[tokio::test(start_paused = true)]
async fn a_native_rolling_release_moves_the_app_into_its_deployment_then_rolls_its_pods() {
    let w = native_world();
    let first = w.run(deploy("1.1.0", StrategyKind::Rolling)).await;
    assert_eq!(first.status, Status::Verified, "{:?}", first.reason);
    let rolling = NativeStrategy::Rolling { max_surge: 1, max_unavailable: 0 };
    // 1.0.0 ran in its own workload: 1.1.0 comes up in the app's Deployment beside it.
    assert_eq!(first_step(&first), Step::NativeRollout { strategy: rolling, replicas: 4, in_base: false });
    assert_eq!(first.plan.len(), 2, "{:?}", first.plan);
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));
    assert_eq!((w.replicas("1.0.0").await, w.replicas("1.1.0").await), (0, 4));

    let second = w.run(deploy("1.5.0-slow", StrategyKind::Rolling)).await;
    assert_eq!(second.status, Status::Verified, "{:?}", second.reason);
    assert_eq!(first_step(&second), Step::NativeRollout { strategy: rolling, replicas: 4, in_base: true });
    let state = w.cluster.state(&dev()).await.unwrap();
    let native = state.native.unwrap();
    assert!(native.complete_at("1.5.0-slow"), "{native:?}");
    assert_eq!(w.cluster.revisions(&dev()), vec![(1, "1.1.0".to_string()), (2, "1.5.0-slow".to_string())]);
    assert_eq!(w.routing(), Routing::all_to("1.5.0-slow"));
    assert_eq!(w.replicas("1.1.0").await, 0);
    let steps = w.store.steps(&second.id).unwrap();
    let note = steps[0].outcome.clone().unwrap_or_default();
    assert!(note.contains("deployment web revision 2: 1.5.0-slow 4/4 updated and available"), "{note}");
}

#[tokio::test(start_paused = true)]
async fn a_native_recreate_is_one_step_too() {
    let w = native_world();
    w.run(deploy("1.1.0", StrategyKind::Rolling)).await;
    let r = w.run(deploy("1.5.0-slow", StrategyKind::Recreate)).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    assert_eq!(first_step(&r), Step::NativeRollout { strategy: NativeStrategy::Recreate, replicas: 4, in_base: true });
    assert_eq!(w.replicas("1.1.0").await, 0);
}

#[tokio::test(start_paused = true)]
async fn a_native_rollout_past_its_progress_deadline_is_undone_with_the_cause() {
    let w = native_world();
    w.run(deploy("1.1.0", StrategyKind::Rolling)).await;
    let started = tokio::time::Instant::now();
    let r = w.run(deploy("1.3.0-crash", StrategyKind::Rolling)).await;
    assert_eq!(r.status, Status::RolledBack);
    let why = r.reason.unwrap_or_default();
    assert!(
        why.contains("deployment web exceeded its progress deadline: ReplicaSet \"web-")
            && why.contains("has timed out progressing.; rolled back to 1.1.0"),
        "{why}"
    );
    // The Deployment's own deadline (the estate's 60s) decided, not the engine's.
    assert!(started.elapsed() < Duration::from_secs(90), "{:?}", started.elapsed());
    // Undone: the revision that ran 1.1.0 comes back as the newest.
    assert_eq!(w.cluster.revisions(&dev()).last(), Some(&(3, "1.1.0".to_string())));
    let state = w.cluster.state(&dev()).await.unwrap();
    assert!(state.native.unwrap().complete_at("1.1.0"));
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));
    assert_eq!((w.replicas("1.1.0").await, w.replicas("1.3.0-crash").await), (4, 0));
}

#[tokio::test(start_paused = true)]
async fn aborting_a_native_rollout_stops_following_and_undoes() {
    let w = native_world();
    w.run(deploy("1.1.0", StrategyKind::Rolling)).await;
    let mut rx = w.engine.subscribe();
    let id = w.engine.execute("alice", deploy("1.3.0-crash", StrategyKind::Rolling)).await.unwrap().release.unwrap().id;
    w.until_step(&mut rx, 0).await;
    // The rollout is under way (and would only end at its deadline).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while w.cluster.state(&dev()).await.unwrap().native.and_then(|n| n.version).as_deref() != Some("1.3.0-crash") {
        assert!(tokio::time::Instant::now() < deadline, "the rollout was never requested");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let asked = tokio::time::Instant::now();
    w.engine.execute("bob", Command::Abort { app: "web".into(), env: "dev".into() }).await.unwrap();
    let r = w.until_finished(&mut rx, &id).await;
    assert_eq!(r.status, Status::Aborted, "{:?}", r.reason);
    assert!(asked.elapsed() < Duration::from_secs(30), "stopped following at once: {:?}", asked.elapsed());
    let native = w.cluster.state(&dev()).await.unwrap().native.unwrap();
    assert_eq!((native.version.as_deref(), native.condition), (Some("1.1.0"), NativeCondition::Complete));
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));
    assert_eq!((w.replicas("1.1.0").await, w.replicas("1.3.0-crash").await), (4, 0));
}

#[tokio::test(start_paused = true)]
async fn rolling_back_a_native_release_is_a_rollout_undo() {
    let w = native_world();
    w.run(deploy("1.1.0", StrategyKind::Rolling)).await;
    w.run(deploy("1.5.0-slow", StrategyKind::Rolling)).await;
    let back = w.run(Command::Rollback { app: "web".into(), env: "dev".into(), to: None }).await;
    assert_eq!((back.version.as_str(), back.status), ("1.1.0", Status::Verified), "{:?}", back.reason);
    assert_eq!(first_step(&back), Step::NativeUndo { revision: None });
    assert_eq!(w.cluster.revisions(&dev()).last(), Some(&(3, "1.1.0".to_string())));
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));
    assert_eq!(w.replicas("1.5.0-slow").await, 0);
}

#[tokio::test(start_paused = true)]
async fn other_strategies_and_clusters_without_native_rollouts_keep_the_batches() {
    let w = native_world();
    let canary = w.run(deploy("1.1.0", StrategyKind::BlueGreen)).await;
    assert!(!canary.plan.iter().any(|s| matches!(s, Step::NativeRollout { .. })));
    let plain = world();
    let r = plain.run(deploy("1.1.0", StrategyKind::Rolling)).await;
    assert!(r.plan.iter().all(|s| !matches!(s, Step::NativeRollout { .. })) && r.status == Status::Verified);
}

#[tokio::test(start_paused = true)]
async fn rollout_undo_to_a_revision_goes_back_to_what_it_ran() {
    let w = native_world();
    w.run(deploy("1.1.0", StrategyKind::Rolling)).await;
    w.run(deploy("1.5.0-slow", StrategyKind::Rolling)).await;
    let undo = |revision| Command::RolloutUndo { app: "web".into(), env: "dev".into(), revision };
    let e = w.engine.execute("bob", undo(9)).await.unwrap_err().to_string();
    assert!(e.contains("the Deployment has no revision 9 (its revisions: 1 (1.1.0), 2 (1.5.0-slow))"), "{e}");
    let e = w.engine.execute("bob", undo(2)).await.unwrap_err().to_string();
    assert!(e.contains("already runs"), "{e}");
    let back = w.run(undo(1)).await;
    assert_eq!((back.version.as_str(), back.kind, back.status), ("1.1.0", ReleaseKind::Rollback, Status::Verified));
    assert_eq!(first_step(&back), Step::NativeUndo { revision: Some(1) });
    assert_eq!(w.cluster.revisions(&dev()).last(), Some(&(3, "1.1.0".to_string())));
    assert_eq!(w.routing(), Routing::all_to("1.1.0"));

    let plain = world();
    let e = plain.engine.execute("bob", undo(1)).await.unwrap_err().to_string();
    assert!(e.contains("does not roll out natively") && e.contains("--to VERSION"), "{e}");
}
