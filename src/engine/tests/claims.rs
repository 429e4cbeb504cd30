//! Driving a workload other consoles share: the claim (a Lease on Kubernetes) is taken before a
//! release moves anything, a release another console drives is not touched, and a release whose
//! claim is lost stops where it is and says so.

use async_trait::async_trait;
use tokio::sync::watch;

use super::*;
use crate::cluster::{Claim, ClaimStatus, ClusterError, ProbeRequest, ProbeResponse, WorkloadState};

/// The fake cluster, shared: `held_by` has the claim, or this process gets one whose status the
/// test sets.
struct Shared {
    inner: Arc<FakeCluster>,
    held_by: Option<String>,
    status: watch::Sender<ClaimStatus>,
    handed_back: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl Cluster for Shared {
    async fn scale(&self, t: &Target, v: &str, n: u32) -> Result<(), ClusterError> {
        self.inner.scale(t, v, n).await
    }
    async fn restart(&self, t: &Target, v: &str) -> Result<(), ClusterError> {
        self.inner.restart(t, v).await
    }
    async fn set_routing(&self, t: &Target, r: &Routing) -> Result<(), ClusterError> {
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
    async fn claim(&self, t: &Target, _holder: &str) -> Result<Option<Claim>, ClusterError> {
        match &self.held_by {
            Some(other) => Err(ClusterError::Kubernetes {
                target: t.to_string(),
                message: format!("{other} is driving this rollout (Lease shipdeck-web in namespace shop)"),
            }),
            None => {
                let handed_back = self.handed_back.clone();
                let hand_back = Box::pin(async move { handed_back.store(true, std::sync::atomic::Ordering::SeqCst) });
                Ok(Some(Claim::new(self.status.subscribe(), ()).on_hand_back(hand_back)))
            }
        }
    }
}

fn shared_world(held_by: Option<&str>) -> (World, watch::Sender<ClaimStatus>) {
    let (w, status, _) = shared_world_with_hand_back(held_by);
    (w, status)
}

fn shared_world_with_hand_back(
    held_by: Option<&str>,
) -> (World, watch::Sender<ClaimStatus>, Arc<std::sync::atomic::AtomicBool>) {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let estate = Arc::new(Estate::parse(ESTATE, "test estate").unwrap());
    let cluster = FakeCluster::new(&estate, &Default::default());
    let (status, _) = watch::channel(ClaimStatus::Held);
    let handed_back = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shared = Arc::new(Shared {
        inner: cluster.clone(),
        held_by: held_by.map(String::from),
        status: status.clone(),
        handed_back: handed_back.clone(),
    });
    let engine = Engine::new(estate.clone(), shared, cluster.clone(), store.clone(), false);
    (World { engine, cluster, store, estate }, status, handed_back)
}

#[tokio::test(start_paused = true)]
async fn a_finished_release_hands_its_claim_back_before_saying_it_finished() {
    let (w, _status, handed_back) = shared_world_with_hand_back(None);
    let r = w.run(deploy("1.1.0", StrategyKind::Rolling)).await;
    assert_eq!(r.status, Status::Verified, "{:?}", r.reason);
    assert!(handed_back.load(std::sync::atomic::Ordering::SeqCst), "the next command may claim at once");
}

#[tokio::test(start_paused = true)]
async fn a_release_whose_claim_is_lost_stops_where_it_is_and_says_who_took_it() {
    let (w, status) = shared_world(None);
    let mut rx = w.engine.subscribe();
    w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap();
    w.until_step(&mut rx, 1).await; // the 20s pause after set_weight 25
    status.send_replace(ClaimStatus::Lost { reason: "bob (pid 7) holds lease shipdeck-web now".into() });
    let paused = w.until_status(&mut rx, Status::Paused).await;
    let why = paused.reason.unwrap();
    assert!(why.starts_with("stopped driving at step 2/"), "{why}");
    assert!(why.contains("lost the right to drive it (bob (pid 7) holds lease shipdeck-web now)"), "{why}");
    assert_eq!(
        w.routing().weights.get("1.1.0"),
        Some(&25),
        "traffic is left as the step left it, and the release says so"
    );
}

#[tokio::test(start_paused = true)]
async fn a_release_another_console_drives_moves_nothing_and_names_the_holder() {
    let (w, _status) = shared_world(Some("bob (pid 7)"));
    let mut rx = w.engine.subscribe();
    w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap();
    let paused = w.until_status(&mut rx, Status::Paused).await;
    let why = paused.reason.unwrap();
    assert!(why.contains("not driven here") && why.contains("bob (pid 7) is driving this rollout"), "{why}");
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
    assert_eq!(w.replicas("1.1.0").await, 0, "no canary pod was started");
}

#[tokio::test(start_paused = true)]
async fn a_canary_on_kubernetes_judged_by_the_local_router_pauses_saying_to_use_prometheus() {
    let text = ESTATE.replacen(
        "name = \"dev\"\npromotes_to",
        "name = \"dev\"\ncluster = { kubernetes = { namespace = \"shop\" } }\npromotes_to",
        1,
    );
    assert_ne!(text, ESTATE);
    let store = Arc::new(Store::open_in_memory().unwrap());
    let estate = Arc::new(Estate::parse(&text, "test estate").unwrap());
    let cluster = FakeCluster::new(&estate, &Default::default());
    let engine = Engine::new(estate.clone(), cluster.clone(), cluster.clone(), store.clone(), false);
    let w = World { engine, cluster, store, estate };
    let mut rx = w.engine.subscribe();
    w.engine.execute("alice", deploy("1.1.0", StrategyKind::Canary)).await.unwrap();
    let paused = w.until_status(&mut rx, Status::Paused).await;
    let why = paused.reason.unwrap();
    assert!(why.contains("environment dev runs on Kubernetes") && why.contains("provider = \"prometheus\""), "{why}");
}
