//! A release another console drives, as the cluster's watches show it: this engine leaves it
//! alone while that console holds the lease, and may abort it once the lease lapsed.

use async_trait::async_trait;
use tokio::sync::watch;

use super::*;
use crate::cluster::{ClusterError, ClusterNews, Driver, ProbeRequest, ProbeResponse, WorkloadState};

/// The fake cluster, with the news the test sets.
struct Watched {
    inner: Arc<FakeCluster>,
    news: std::sync::Mutex<ClusterNews>,
}

#[async_trait]
impl Cluster for Watched {
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
    fn news(&self, _t: &Target) -> ClusterNews {
        self.news.lock().unwrap().clone()
    }
}

/// A canary at 25% that alice's console drives (its state copied from the cluster).
async fn driven_by_alice(lapsed: bool) -> (World, Release) {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let estate = Arc::new(Estate::parse(ESTATE, "test estate").unwrap());
    let cluster = FakeCluster::new(&estate, &Default::default());
    cluster.scale(&dev(), "1.1.0", 1).await.unwrap();
    cluster.set_routing(&dev(), &Routing::split("1.0.0", "1.1.0", 25)).await.unwrap();
    let renewed = Utc::now() - chrono::Duration::seconds(if lapsed { 60 } else { 2 });
    let driver = Driver { holder: "alice (pid 4711) on host-x".into(), mine: false, lapsed, renewed: Some(renewed) };
    let news = ClusterNews { driver: Some(driver), rollout: None };
    let watched = Arc::new(Watched { inner: cluster.clone(), news: std::sync::Mutex::new(news) });
    let engine = Engine::new(estate.clone(), watched, cluster.clone(), store.clone(), false);
    let settings = estate.settings("dev", "web").unwrap().clone();
    let plan = plan::build(StrategyKind::Canary, &settings, Some("1.0.0"));
    let at = Utc::now();
    let r = Release {
        id: "dev-web-1.1.0-20270115080000".into(),
        app: "web".into(),
        env: "dev".into(),
        version: "1.1.0".into(),
        previous_version: Some("1.0.0".into()),
        strategy: StrategyKind::Canary,
        kind: ReleaseKind::Deploy,
        promoted_from: None,
        status: Status::InProgress,
        plan,
        cursor: 1,
        requested_by: "alice".into(),
        created_at: at,
        updated_at: at,
        reason: None,
        interrupted: false,
        weight: 25,
    };
    store.insert_release(&r, "taken from the cluster's shipdeck.dev/rollout annotation").unwrap();
    (World { engine, cluster, store, estate }, r)
}

#[tokio::test(start_paused = true)]
async fn a_release_another_console_drives_is_not_aborted_resumed_or_paused_from_here() {
    let (w, r) = driven_by_alice(false).await;
    for command in [
        Command::Abort { app: "web".into(), env: "dev".into() },
        Command::Rollback { app: "web".into(), env: "dev".into(), to: None },
        Command::Resume { app: "web".into(), env: "dev".into(), full: true },
        Command::Pause { app: "web".into(), env: "dev".into() },
    ] {
        let name = command.name();
        let err = w.engine.execute("bob", command).await.unwrap_err();
        assert!(matches!(err, EngineError::Refused(_)), "{name}: {err:?}");
        let text = err.to_string();
        assert!(text.contains("alice (pid 4711) on host-x is driving release dev-web-1.1.0"), "{name}: {text}");
        assert!(text.contains("once that console stops and its lease lapses (15s"), "{name}: {text}");
    }
    assert!(!w.engine.is_running(&dev()), "no task was started");
    assert_eq!(w.store.release(&r.id).unwrap().unwrap().status, Status::InProgress, "nothing written");
    assert_eq!(w.routing().weights.get("1.1.0"), Some(&25), "no traffic moved");
}

#[tokio::test(start_paused = true)]
async fn once_the_other_consoles_lease_lapsed_an_abort_from_here_moves_the_traffic_back() {
    let (w, r) = driven_by_alice(true).await;
    let mut rx = w.engine.subscribe();
    let out = w.engine.execute("bob", Command::Abort { app: "web".into(), env: "dev".into() }).await.unwrap();
    assert!(out.running, "{}", out.message);
    let done = w.until_finished(&mut rx, &r.id).await;
    assert_eq!(done.status, Status::Aborted, "{:?}", done.reason);
    assert_eq!(w.routing(), Routing::all_to("1.0.0"));
}
