//! Never traffic half-moved without the release saying so: when moving traffic fails (the API
//! server stops answering mid-canary), the release does not claim it rolled back or aborted;
//! it fails saying where traffic is, keeps the pods that serve it, and abort finishes the job.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tokio::sync::watch;

use super::*;
use crate::cluster::{ClusterError, ProbeRequest, ProbeResponse, WorkloadState};

/// The in-memory cluster, whose routing changes fail while `down` is set.
struct Flaky {
    inner: Arc<FakeCluster>,
    down: AtomicBool,
}

#[async_trait]
impl Cluster for Flaky {
    async fn scale(&self, t: &Target, v: &str, n: u32) -> Result<(), ClusterError> {
        self.inner.scale(t, v, n).await
    }
    async fn restart(&self, t: &Target, v: &str) -> Result<(), ClusterError> {
        self.inner.restart(t, v).await
    }
    async fn set_routing(&self, t: &Target, r: &Routing) -> Result<(), ClusterError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ClusterError::Unreachable {
                target: t.to_string(),
                message: "the Kubernetes API server did not answer patch httproutes web within 10s".into(),
            });
        }
        self.inner.set_routing(t, r).await
    }
    async fn state(&self, t: &Target) -> Result<WorkloadState, ClusterError> {
        self.inner.state(t).await
    }
    async fn watch(&self, t: &Target) -> Result<watch::Receiver<WorkloadState>, ClusterError> {
        self.inner.watch(t).await
    }
    async fn probe(&self, t: &Target, v: &str, r: &ProbeRequest) -> Result<ProbeResponse, ClusterError> {
        self.inner.probe(t, v, r).await
    }
}

fn flaky_world() -> (World, Arc<Flaky>) {
    let estate = Arc::new(Estate::parse(ESTATE, "test estate").unwrap());
    let fake = FakeCluster::new(&estate, &Default::default());
    let flaky = Arc::new(Flaky { inner: fake.clone(), down: AtomicBool::new(false) });
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = Engine::new(estate.clone(), flaky.clone(), fake.clone(), store.clone(), false);
    (World { engine, cluster: fake, store, estate }, flaky)
}

/// The canary is at 25% when the API server stops answering; its next weight change fails and
/// so does the rollback's: the release fails saying traffic is still split, and keeps the
/// canary's pods (they serve a quarter of it). Once the cluster answers, abort puts it back.
#[tokio::test(start_paused = true)]
async fn a_weight_change_and_its_rollback_that_fail_say_where_traffic_is() {
    let (w, flaky) = flaky_world();
    let mut rx = w.engine.subscribe();
    let out = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap();
    let id = out.release.unwrap().id;
    w.until_step(&mut rx, 1).await;
    assert_eq!(w.routing(), Routing::split("1.0.0", "1.1.0", 25));
    flaky.down.store(true, Ordering::SeqCst);
    let r = w.until_finished(&mut rx, &id).await;
    assert_eq!(r.status, Status::Failed, "not rolled back: traffic is not back");
    let why = r.reason.unwrap_or_default();
    assert!(why.contains("did not answer patch httproutes web"), "{why}");
    assert!(why.contains("rolling back to 1.0.0 failed"), "{why}");
    assert!(why.contains("traffic now: 1.0.0 75%, 1.1.0 25%"), "{why}");
    assert!(w.replicas("1.1.0").await > 0, "the canary's pods still serve its share");
    assert!(!w.statuses(&id).contains(&Status::RolledBack));

    flaky.down.store(false, Ordering::SeqCst);
    let mut rx = w.engine.subscribe();
    w.engine.execute("bob", Command::Abort { app: "web".into(), env: "dev".into() }).await.unwrap();
    let r = w.until_finished(&mut rx, &id).await;
    assert_eq!(r.status, Status::Aborted);
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
}

/// An abort that cannot move traffic back is not an abort: failed, saying where traffic is;
/// abort again once the cluster answers.
#[tokio::test(start_paused = true)]
async fn an_abort_that_cannot_move_traffic_back_fails_saying_where_it_is() {
    let (w, flaky) = flaky_world();
    let mut rx = w.engine.subscribe();
    let out = w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap();
    let id = out.release.unwrap().id;
    w.until_step(&mut rx, 1).await;
    flaky.down.store(true, Ordering::SeqCst);
    w.engine.execute("bob", Command::Abort { app: "web".into(), env: "dev".into() }).await.unwrap();
    let r = w.until_finished(&mut rx, &id).await;
    assert_eq!(r.status, Status::Failed);
    let why = r.reason.unwrap_or_default();
    assert!(why.contains("aborted by bob at step 2/8, but moving traffic back to 1.0.0 failed"), "{why}");
    assert!(why.contains("traffic now: 1.0.0 75%, 1.1.0 25%"), "{why}");
    assert!(why.contains("`shipdeck abort web --env dev` again"), "{why}");
    assert_eq!(w.routing(), Routing::split("1.0.0", "1.1.0", 25));
    assert!(w.replicas("1.1.0").await > 0);

    flaky.down.store(false, Ordering::SeqCst);
    let mut rx = w.engine.subscribe();
    w.engine.execute("bob", Command::Abort { app: "web".into(), env: "dev".into() }).await.unwrap();
    let r = w.until_finished(&mut rx, &id).await;
    assert_eq!(r.status, Status::Aborted);
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
}

/// A release that does not roll back on failure says where it left traffic.
#[tokio::test(start_paused = true)]
async fn a_failure_without_rollback_says_where_traffic_stays() {
    let (w, flaky) = flaky_world();
    flaky.down.store(true, Ordering::SeqCst);
    let cmd = Command::Deploy {
        app: "api".into(),
        env: "dev".into(),
        version: "1.1.0-errors".into(),
        strategy: None,
        flags: Vec::new(),
    };
    let r = w.run(cmd).await;
    assert_eq!(r.status, Status::Failed);
    let why = r.reason.unwrap_or_default();
    assert!(why.contains("traffic now: 1.0.0 100%"), "{why}");
}

#[test]
fn routing_in_words() {
    use crate::engine::run::describe_routing;
    assert_eq!(describe_routing(&Routing::split("1.0.0", "1.1.0", 10)), "1.0.0 90%, 1.1.0 10%");
    assert_eq!(describe_routing(&Routing::default()), "no version");
    let mut r = Routing::all_to("1.0.0");
    r.preview = Some("1.1.0".into());
    assert_eq!(describe_routing(&r), "1.0.0 100%, preview on 1.1.0");
}
