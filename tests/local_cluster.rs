//! The engine on the real local cluster, checked with real requests through the router.

use std::sync::Arc;
use std::time::Duration;

use shipdeck::cluster::{Cluster, Target};
use shipdeck::config::Estate;
use shipdeck::engine::{Command, Event};
use shipdeck::host::Host;
use shipdeck::model::Status;

async fn finish(host: &Host, cmd: Command) -> shipdeck::model::Release {
    let mut rx = host.engine.subscribe();
    let id = host.engine.execute("alice", cmd).await.expect("accepted").release.expect("a release").id;
    let wait = async {
        loop {
            if let Ok(Event::Finished { release_id, .. }) = rx.recv().await
                && release_id == id
            {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait).await.expect("release finished in time");
    host.store.release(&id).expect("store").expect("release stored")
}

/// Versions that answered `n` requests sent through the app's router.
async fn versions_answering(host: &Host, target: &Target, n: usize) -> Vec<String> {
    let url = host.cluster.state(target).await.expect("state").entry_url.expect("router url");
    let client = shipdeck::http::client_builder().build().expect("an HTTP client");
    let mut seen = Vec::new();
    for _ in 0..n {
        let r = client.get(format!("{url}/api/v1/users")).send().await.expect("router answers");
        let v = r.headers().get("x-shipdeck-version").and_then(|v| v.to_str().ok()).unwrap_or("none").to_string();
        seen.push(v);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_canary_rolls_back_every_request_is_answered_by_stable() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(Arc::new(Estate::demo().unwrap()), dir.path(), false, "test").await.unwrap();
    let target = Target::new("dev", "checkout");
    let cmd = Command::Deploy {
        app: "checkout".into(),
        env: "dev".into(),
        version: "1.6.0-bad".into(),
        strategy: None,
        flags: Vec::new(),
    };
    let r = finish(&host, cmd).await;
    assert_eq!(r.status, Status::RolledBack);
    let seen = versions_answering(&host, &target, 100).await;
    assert!(seen.iter().all(|v| v == "1.4.0"), "{seen:?}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_come_back_at_their_recorded_versions_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let estate = Arc::new(Estate::demo().unwrap());
    let target = Target::new("staging", "search");
    {
        let host = Host::start(estate.clone(), dir.path(), false, "test").await.unwrap();
        let cmd = Command::Deploy {
            app: "search".into(),
            env: "staging".into(),
            version: "3.2.0".into(),
            strategy: None,
            flags: Vec::new(),
        };
        assert_eq!(finish(&host, cmd).await.status, Status::Verified);
        host.stop().await;
    }
    let host = Host::start(estate, dir.path(), false, "test").await.unwrap();
    let state = host.cluster.state(&target).await.unwrap();
    assert_eq!(state.replicas("3.2.0").ready, 3, "{state:?}");
    assert_eq!(state.replicas("3.1.0").desired, 0);
    let seen = versions_answering(&host, &target, 30).await;
    assert!(seen.iter().all(|v| v == "3.2.0"), "{seen:?}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_serve_prometheus_metrics_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(Arc::new(Estate::demo().unwrap()), dir.path(), false, "test").await.unwrap();
    let target = Target::new("dev", "payments");
    let req =
        shipdeck::cluster::ProbeRequest { method: "GET".into(), path: "/metrics".into(), body: None, timeout_ms: 2000 };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = host.cluster.probe(&target, "2.0.0", &req).await.unwrap();
        if m.body.contains("http_requests_total{") {
            assert!(m.body.contains(r#"version="2.0.0""#), "{}", m.body);
            assert!(m.body.contains(r#"le="+Inf""#), "{}", m.body);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no requests counted: {}", m.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    host.stop().await;
}

/// The variant of `new-checkout` the pods served to each of `n` requests through the router,
/// and how many of them failed.
async fn new_checkout_served(host: &Host, target: &Target, n: usize) -> (Vec<String>, usize) {
    let url = host.cluster.state(target).await.expect("state").entry_url.expect("router url");
    let client = shipdeck::http::client_builder().build().expect("an HTTP client");
    let (mut seen, mut failed) = (Vec::new(), 0);
    for i in 0..n {
        let r = client
            .get(format!("{url}/api/v1/users"))
            .header("x-user-id", format!("user-{i}"))
            .send()
            .await
            .expect("router answers");
        failed += usize::from(r.status().is_server_error());
        let v = r.headers().get("x-shipdeck-flag-new-checkout").and_then(|v| v.to_str().ok()).unwrap_or("none");
        seen.push(v.to_string());
    }
    (seen, failed)
}

/// Flag changes reach the pods a moment after the engine reports them: wait (bounded) until a
/// request is served `variant`.
async fn until_served(host: &Host, target: &Target, variant: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while new_checkout_served(host, target, 1).await.0 != [variant] {
        assert!(tokio::time::Instant::now() < deadline, "the pods never served {variant}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_changes_through_the_engine_reach_the_demo_pods_and_their_per_variant_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(Arc::new(Estate::demo().unwrap()), dir.path(), false, "test").await.unwrap();
    let target = Target::new("dev", "checkout");
    // The demo's harmful flag is off for everyone at first.
    let (seen, _) = new_checkout_served(&host, &target, 20).await;
    assert!(seen.iter().all(|v| v == "off"), "{seen:?}");

    host.engine.execute("alice", Command::SetFlagRollout { key: "new-checkout".into(), percent: 100 }).await.unwrap();
    until_served(&host, &target, "on").await;
    let (seen, failed) = new_checkout_served(&host, &target, 200).await;
    assert!(seen.iter().all(|v| v == "on"), "{seen:?}");
    // 14% of requests fail with `on` (4% without): 28 expected of 200.
    assert!((12..=50).contains(&failed), "{failed} of 200 failed");
    let m = host.cluster.flag_metrics(&target, "new-checkout", Duration::from_secs(60)).unwrap();
    assert!(m["on"].requests >= 200 && m["on"].errors >= failed as u64, "{m:?}");
    // What the console's Flags pane shows: served per variant, over every app and environment.
    let served = host.engine.flag_served(Duration::from_secs(60)).await;
    assert!(served["new-checkout"]["on"] >= m["on"].requests, "{served:?}");

    host.engine.execute("alice", Command::SetFlag { key: "new-checkout".into(), enabled: false }).await.unwrap();
    until_served(&host, &target, "<code default>").await;
    let (seen, _) = new_checkout_served(&host, &target, 20).await;
    assert!(seen.iter().all(|v| v == "<code default>"), "{seen:?}");
    host.stop().await;
}
