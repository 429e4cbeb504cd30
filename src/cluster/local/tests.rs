//! End-to-end tests over real loopback HTTP. Nothing sleeps to wait for a condition: they
//! watch the state channel or poll with a deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::LocalCluster;
use crate::analysis::MetricsProvider;
use crate::cluster::{
    Cluster, ClusterError, MatchKind, PodPhase, ProbeRequest, RouteMatch, Routing, Target, WorkloadSpec, WorkloadState,
};
use crate::model::{AbSettings, AppSettings, HumanDuration, StrategyKind, VersionProfile};

const DEADLINE: Duration = Duration::from_secs(5);

fn profile(version: &str) -> VersionProfile {
    VersionProfile {
        version: version.into(),
        error_rate: 0.0,
        p50_ms: 1.0,
        p99_ms: 2.0,
        ready_after: HumanDuration(Duration::ZERO),
        crash: false,
        broken_dependencies: Vec::new(),
        flag_effects: Vec::new(),
        flags: Vec::new(),
    }
}

fn app(name: &str, versions: Vec<VersionProfile>, replicas: u32, rps: f64) -> AppSettings {
    AppSettings {
        name: name.into(),
        replicas,
        rps,
        strategy: StrategyKind::Canary,
        rollback_on_failure: true,
        rolling: Default::default(),
        blue_green: Default::default(),
        canary: Default::default(),
        ab: AbSettings::default(),
        verification: Default::default(),
        analysis_templates: BTreeMap::new(),
        prometheus_queries: Default::default(),
        versions,
        initial_version: None,
        emergency: Default::default(),
        overrides: BTreeMap::new(),
        repo: None,
        tag: None,
        kubernetes: Default::default(),
    }
}

fn target() -> Target {
    Target::new("staging", "checkout")
}

async fn start_one(settings: AppSettings) -> Arc<LocalCluster> {
    match LocalCluster::start(vec![(target(), settings)], BTreeMap::new()).await {
        Ok(c) => c,
        Err(e) => panic!("cluster did not start: {e}"),
    }
}

/// Waits (on the watch channel) until `pred` holds, failing after the deadline.
async fn wait_state(c: &LocalCluster, what: &str, pred: impl Fn(&WorkloadState) -> bool) -> WorkloadState {
    let mut rx = c.watch(&target()).await.expect("known target");
    let deadline = Instant::now() + DEADLINE;
    loop {
        {
            let s = rx.borrow_and_update();
            if pred(&s) {
                return s.clone();
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!("timed out waiting for {what}: {:#?}", c.state(&target()).await.ok()),
        }
    }
}

async fn ready(c: &LocalCluster, version: &str, n: u32) -> WorkloadState {
    wait_state(c, &format!("{n} ready pods of {version}"), |s| s.replicas(version).ready == n).await
}

/// Polls until the entries have routed `n` more requests.
async fn more_traffic(c: &LocalCluster, n: u64) {
    let from = c.routed_requests();
    let deadline = Instant::now() + DEADLINE;
    while c.routed_requests() < from + n {
        assert!(Instant::now() < deadline, "no traffic");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn http() -> reqwest::Client {
    crate::http::client_builder().no_proxy().build().expect("client")
}

/// Sends one request through the entry; returns the status and the version that answered.
async fn through(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = client.get(format!("{url}/api/v1/users"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("router answers");
    let version = resp.headers().get("x-shipdeck-version").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (resp.status().as_u16(), version)
}

fn get(path: &str) -> ProbeRequest {
    ProbeRequest { method: "GET".into(), path: path.into(), body: None, timeout_ms: 2_000 }
}

#[tokio::test]
async fn pods_answer_health_dependencies_api_and_metrics() {
    let mut v1 = profile("1.0.0");
    v1.broken_dependencies = vec!["payments".into()];
    let c = start_one(app("checkout", vec![v1], 2, 0.0)).await;
    let t = target();
    ready(&c, "1.0.0", 2).await;

    let health = c.probe(&t, "1.0.0", &get("/health")).await.expect("probe");
    assert_eq!(health.status, 200);
    let body: serde_json::Value = serde_json::from_str(&health.body).expect("json");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], "1.0.0");

    let deps = c.probe(&t, "1.0.0", &get("/health/dependencies")).await.expect("probe");
    assert_eq!(deps.status, 503);
    let body: serde_json::Value = serde_json::from_str(&deps.body).expect("json");
    let list = body["dependencies"].as_array().expect("list");
    assert!(list.iter().any(|d| d["name"] == "database" && d["healthy"] == true));
    assert!(list.iter().any(|d| d["name"] == "payments" && d["healthy"] == false));

    // A user created through one pod can be read through the other (round-robin).
    let create = ProbeRequest {
        method: "POST".into(),
        path: "/api/v1/users".into(),
        body: Some(r#"{"name":"Grace","email":"grace@example.com"}"#.into()),
        timeout_ms: 2_000,
    };
    let created = c.probe(&t, "1.0.0", &create).await.expect("probe");
    assert_eq!(created.status, 201);
    let id = serde_json::from_str::<serde_json::Value>(&created.body).expect("json")["id"].as_u64().expect("id");
    for _ in 0..2 {
        let read = c.probe(&t, "1.0.0", &get(&format!("/api/v1/users/{id}"))).await.expect("probe");
        assert_eq!(read.status, 200, "{}", read.body);
        assert!(read.body.contains("Grace"));
    }
    assert_eq!(c.probe(&t, "1.0.0", &get("/api/v1/users/1")).await.expect("probe").status, 200);
    assert_eq!(c.probe(&t, "1.0.0", &get("/api/v1/users/999999")).await.expect("probe").status, 404);
    assert_eq!(c.probe(&t, "1.0.0", &get("/api/v1/users")).await.expect("probe").status, 200);

    // Both pods have served API requests by now (round-robin), so either one's metrics show them.
    let metrics = c.probe(&t, "1.0.0", &get("/metrics")).await.expect("probe");
    assert_eq!(metrics.status, 200);
    let text = metrics.body;
    assert!(text.contains("# TYPE http_requests_total counter"), "{text}");
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"), "{text}");
    assert!(text.contains(r#"version="1.0.0""#), "{text}");
    assert!(text.contains(r#"app="checkout",env="staging""#), "{text}");
    assert!(text.contains(r#"code="200""#), "{text}");
    assert!(text.lines().any(|l| l.starts_with("http_request_duration_seconds_bucket{") && l.contains(r#"le="+Inf""#)));
    assert!(text.contains("http_request_duration_seconds_count{"));
}

#[tokio::test]
async fn readiness_waits_for_ready_after() {
    let mut slow = profile("1.0.0");
    slow.ready_after = HumanDuration(Duration::from_millis(400));
    let started = Instant::now();
    let c = start_one(app("checkout", vec![slow], 1, 0.0)).await;
    let t = target();

    let s = c.state(&t).await.expect("state");
    assert_eq!(s.replicas("1.0.0").updated, 1);
    assert_eq!(s.replicas("1.0.0").ready, 0);
    assert_eq!(s.pods[0].phase, PodPhase::Starting);
    assert!(matches!(c.probe(&t, "1.0.0", &get("/health")).await, Err(ClusterError::NoReadyPod { .. })));
    // The pod itself says it is not ready yet.
    let addr = s.pods[0].address.clone().expect("address");
    let resp = http().get(format!("http://{addr}/ready")).send().await.expect("pod answers");
    assert_eq!(resp.status().as_u16(), 503);

    let s = ready(&c, "1.0.0", 1).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(s.pods[0].phase, PodPhase::Running);
    assert_eq!(s.replicas("1.0.0").available, 1);
    let resp = http().get(format!("http://{addr}/ready")).send().await.expect("pod answers");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn crashing_and_unknown_versions_never_get_ready() {
    let mut broken = profile("2.0.0");
    broken.crash = true;
    let c = start_one(app("checkout", vec![profile("1.0.0"), broken], 1, 0.0)).await;
    let t = target();
    c.scale(&t, "2.0.0", 1).await.expect("scale");
    c.scale(&t, "9.9.9", 1).await.expect("scale");

    let s = c.state(&t).await.expect("state");
    let phase = |s: &WorkloadState, v: &str| s.pods.iter().find(|p| p.version == v).map(|p| p.phase);
    assert_eq!(phase(&s, "2.0.0"), Some(PodPhase::CrashLoopBackOff));
    assert_eq!(phase(&s, "9.9.9"), Some(PodPhase::ImagePullBackOff));

    // The first back-off is a second; the crash-looping pod restarts and stays unready.
    let s = wait_state(&c, "a restart", |s| s.pods.iter().any(|p| p.version == "2.0.0" && p.restarts >= 1)).await;
    assert_eq!(s.replicas("2.0.0"), crate::cluster::VersionReplicas { desired: 1, updated: 1, ready: 0, available: 0 });
    assert_eq!(s.replicas("9.9.9").ready, 0);
    assert_eq!(phase(&s, "9.9.9"), Some(PodPhase::ImagePullBackOff));
    assert!(s.pods.iter().filter(|p| p.version != "1.0.0").all(|p| !p.ready && p.address.is_none()));
    assert!(s.pods.iter().all(|p| p.name.starts_with(&format!("checkout-{}-", p.version))));
}

#[tokio::test]
async fn weights_route_and_a_routing_change_applies_to_the_next_request() {
    let c = start_one(app("checkout", vec![profile("1.0.0"), profile("1.1.0")], 1, 0.0)).await;
    let t = target();
    c.scale(&t, "1.1.0", 1).await.expect("scale");
    ready(&c, "1.1.0", 1).await;
    let s = ready(&c, "1.0.0", 1).await;
    let url = s.entry_url.expect("entry");
    let client = http();

    for _ in 0..20 {
        assert_eq!(through(&client, &url, &[]).await, (200, "1.0.0".into()));
    }
    c.set_routing(&t, &Routing::all_to("1.1.0")).await.expect("routing");
    for _ in 0..20 {
        assert_eq!(through(&client, &url, &[]).await, (200, "1.1.0".into()));
    }
    c.set_routing(&t, &Routing::split("1.0.0", "1.1.0", 50)).await.expect("routing");
    let mut seen = BTreeMap::new();
    for _ in 0..100 {
        *seen.entry(through(&client, &url, &[]).await.1).or_insert(0) += 1;
    }
    assert!(seen.get("1.0.0").copied().unwrap_or(0) > 20 && seen.get("1.1.0").copied().unwrap_or(0) > 20, "{seen:?}");
    let shares = c.state(&t).await.expect("state").actual_weights;
    assert!((shares.values().sum::<f64>() - 100.0).abs() < 1e-6, "{shares:?}");
    assert!(shares["1.0.0"] > 0.0 && shares["1.1.0"] > 0.0);
}

#[tokio::test]
async fn header_and_cookie_matches_win_over_weights() {
    let c = start_one(app("checkout", vec![profile("1.0.0"), profile("1.1.0")], 1, 0.0)).await;
    let t = target();
    c.scale(&t, "1.1.0", 1).await.expect("scale");
    ready(&c, "1.1.0", 1).await;
    let url = ready(&c, "1.0.0", 1).await.entry_url.expect("entry");
    let mut routing = Routing::all_to("1.0.0");
    routing.matches = vec![
        RouteMatch {
            kind: MatchKind::Header,
            name: "x-shipdeck-group".into(),
            value: "b".into(),
            version: "1.1.0".into(),
        },
        RouteMatch { kind: MatchKind::Cookie, name: "group".into(), value: "beta".into(), version: "1.1.0".into() },
    ];
    c.set_routing(&t, &routing).await.expect("routing");
    let client = http();
    for _ in 0..5 {
        assert_eq!(through(&client, &url, &[("x-shipdeck-group", "b")]).await.1, "1.1.0");
        assert_eq!(through(&client, &url, &[("cookie", "theme=dark; group=beta")]).await.1, "1.1.0");
        assert_eq!(through(&client, &url, &[("x-shipdeck-group", "a")]).await.1, "1.0.0");
        assert_eq!(through(&client, &url, &[("cookie", "group=alpha")]).await.1, "1.0.0");
        assert_eq!(through(&client, &url, &[]).await.1, "1.0.0");
    }
    let s = c.state(&t).await.expect("state");
    assert_eq!(s.replicas("1.1.0").available, 1, "a matched version is serving traffic");
}

#[tokio::test]
async fn preview_entry_serves_the_preview_version() {
    let c = start_one(app("checkout", vec![profile("1.0.0"), profile("1.1.0")], 1, 0.0)).await;
    let t = target();
    c.scale(&t, "1.1.0", 1).await.expect("scale");
    ready(&c, "1.1.0", 1).await;
    let s = ready(&c, "1.0.0", 1).await;
    let preview = s.preview_url.clone().expect("preview");
    let client = http();
    assert_eq!(through(&client, &preview, &[]).await.0, 503);
    assert_eq!(s.replicas("1.1.0").available, 0, "not routed yet");
    let mut routing = Routing::all_to("1.0.0");
    routing.preview = Some("1.1.0".into());
    c.set_routing(&t, &routing).await.expect("routing");
    assert_eq!(through(&client, &preview, &[]).await, (200, "1.1.0".into()));
    assert_eq!(through(&client, &s.entry_url.expect("entry"), &[]).await, (200, "1.0.0".into()));
    assert_eq!(c.state(&t).await.expect("state").replicas("1.1.0").available, 1);
}

#[tokio::test]
async fn error_rates_show_in_version_metrics() {
    let mut bad = profile("1.1.0");
    bad.error_rate = 1.0;
    let c = start_one(app("checkout", vec![profile("1.0.0"), bad], 1, 0.0)).await;
    let t = target();
    c.scale(&t, "1.1.0", 1).await.expect("scale");
    ready(&c, "1.1.0", 1).await;
    let url = ready(&c, "1.0.0", 1).await.entry_url.expect("entry");
    c.set_routing(&t, &Routing::split("1.0.0", "1.1.0", 50)).await.expect("routing");
    let client = http();
    for _ in 0..60 {
        through(&client, &url, &[]).await;
    }
    let window = Duration::from_secs(30);
    let good = c.version_metrics(&t, "1.0.0", window).await.expect("metrics");
    let bad = c.version_metrics(&t, "1.1.0", window).await.expect("metrics");
    assert_eq!(good.requests + bad.requests, 60);
    assert!(good.requests > 0 && bad.requests > 0);
    assert_eq!(good.errors, 0);
    assert_eq!(bad.errors, bad.requests);
    assert!(good.p50_ms.is_some_and(|p| p >= 0.5) && good.p99_ms >= good.p50_ms, "{good:?}");
    let none = c.version_metrics(&t, "3.0.0", window).await.expect("metrics");
    assert_eq!((none.requests, none.p50_ms), (0, None));
    assert!(c.version_metrics(&Target::new("prod", "nope"), "1.0.0", window).await.is_err());
}

#[tokio::test]
async fn no_ready_pod_is_a_503_counted_against_the_version() {
    let c = start_one(app("checkout", vec![profile("1.0.0")], 1, 0.0)).await;
    let t = target();
    let url = ready(&c, "1.0.0", 1).await.entry_url.expect("entry");
    c.set_routing(&t, &Routing::all_to("2.0.0")).await.expect("routing");
    assert_eq!(through(&http(), &url, &[]).await, (503, "2.0.0".into()));
    let m = c.version_metrics(&t, "2.0.0", Duration::from_secs(10)).await.expect("metrics");
    assert_eq!((m.requests, m.errors), (1, 1));
}

#[tokio::test]
async fn scaling_up_down_and_to_zero() {
    let c = start_one(app("checkout", vec![profile("1.0.0"), profile("1.1.0")], 2, 0.0)).await;
    let t = target();
    ready(&c, "1.0.0", 2).await;
    c.scale(&t, "1.1.0", 3).await.expect("scale");
    let s = ready(&c, "1.1.0", 3).await;
    assert_eq!(s.replicas("1.1.0").desired, 3);
    assert_eq!(s.replicas("1.1.0").available, 0, "no traffic is routed to it");
    c.scale(&t, "1.1.0", 1).await.expect("scale");
    let s = c.state(&t).await.expect("state");
    assert_eq!(s.replicas("1.1.0").updated, 1);
    c.scale(&t, "1.1.0", 0).await.expect("scale");
    let s = c.state(&t).await.expect("state");
    assert!(!s.versions.contains_key("1.1.0"), "{:?}", s.versions);
    assert!(s.pods.iter().filter(|p| p.version == "1.1.0").all(|p| p.phase == PodPhase::Terminating));
    wait_state(&c, "terminated pods to go", |s| s.pods.iter().all(|p| p.version == "1.0.0")).await;
    assert_eq!(c.spec(&t).expect("spec").replicas, BTreeMap::from([("1.0.0".to_string(), 2)]));
    assert!(
        matches!(c.scale(&Target::new("prod", "nope"), "1.0.0", 1).await, Err(ClusterError::Other(m)) if m.contains("prod/nope"))
    );
}

#[tokio::test]
async fn restart_replaces_every_pod() {
    let c = start_one(app("checkout", vec![profile("1.0.0")], 2, 0.0)).await;
    let t = target();
    let before: Vec<String> = ready(&c, "1.0.0", 2).await.pods.into_iter().map(|p| p.name).collect();
    c.restart(&t, "1.0.0").await.expect("restart");
    let s = wait_state(&c, "all pods replaced", |s| {
        s.pods.len() == 2 && s.pods.iter().all(|p| p.ready && !before.contains(&p.name))
    })
    .await;
    assert_eq!(s.replicas("1.0.0").ready, 2);
}

#[tokio::test]
async fn start_restores_recorded_specs() {
    let mut routing = Routing::split("1.0.0", "1.1.0", 25);
    routing.preview = Some("1.1.0".into());
    let spec = WorkloadSpec { replicas: BTreeMap::from([("1.0.0".into(), 2), ("1.1.0".into(), 1)]), routing };
    let settings = app("checkout", vec![profile("1.0.0"), profile("1.1.0")], 5, 0.0);
    let c = LocalCluster::start(vec![(target(), settings)], BTreeMap::from([(target(), spec.clone())]))
        .await
        .expect("start");
    ready(&c, "1.0.0", 2).await;
    let s = ready(&c, "1.1.0", 1).await;
    assert_eq!(s.routing, spec.routing);
    assert_eq!(c.spec(&target()), Some(spec.clone()));
    assert_eq!(c.specs(), BTreeMap::from([(target(), spec)]));
}

#[tokio::test]
async fn fresh_start_uses_initial_version() {
    let mut settings = app("checkout", vec![profile("1.0.0"), profile("1.1.0")], 2, 0.0);
    settings.initial_version = Some("1.1.0".into());
    let c = start_one(settings).await;
    let s = ready(&c, "1.1.0", 2).await;
    assert_eq!(s.routing, Routing::all_to("1.1.0"));
    assert!(!s.versions.contains_key("1.0.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_sends_traffic_at_about_the_rate() {
    let mut settings = app("checkout", vec![profile("1.0.0"), profile("1.1.0")], 1, 200.0);
    settings.ab.audience = 0.5;
    let c = start_one(settings).await;
    let t = target();
    c.scale(&t, "1.1.0", 1).await.expect("scale");
    ready(&c, "1.1.0", 1).await;
    ready(&c, "1.0.0", 1).await;
    let mut routing = Routing::all_to("1.0.0");
    routing.matches = vec![RouteMatch {
        kind: MatchKind::Header,
        name: "x-shipdeck-group".into(),
        value: "b".into(),
        version: "1.1.0".into(),
    }];
    c.set_routing(&t, &routing).await.expect("routing");

    let start = Instant::now();
    let from = c.routed_requests();
    let deadline = start + DEADLINE;
    while start.elapsed() < Duration::from_millis(1_000) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = (c.routed_requests() - from) as f64 / start.elapsed().as_secs_f64();
    assert!((100.0..=300.0).contains(&sent), "{sent} requests/s for 200 configured");
    let window = Duration::from_secs(10);
    let a = c.version_metrics(&t, "1.0.0", window).await.expect("metrics");
    let b = c.version_metrics(&t, "1.1.0", window).await.expect("metrics");
    assert!(a.requests > 0 && b.requests > 0, "{a:?} {b:?}");
    assert_eq!(a.errors + b.errors, 0);

    c.set_load(&t, 0.0);
    // Whatever was in flight lands within a few ms; after that the count stands still.
    let mut last = c.routed_requests();
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_millis(200) {
        assert!(Instant::now() < deadline, "traffic did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = c.routed_requests();
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    c.shutdown();
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_leave_without_failing_requests() {
    let c = start_one(app("checkout", vec![profile("1.0.0"), profile("1.1.0")], 2, 300.0)).await;
    let t = target();
    ready(&c, "1.0.0", 2).await;
    c.scale(&t, "1.1.0", 2).await.expect("scale");
    ready(&c, "1.1.0", 2).await;
    c.set_routing(&t, &Routing::split("1.0.0", "1.1.0", 50)).await.expect("routing");
    c.restart(&t, "1.1.0").await.expect("restart");
    c.scale(&t, "1.0.0", 1).await.expect("scale");
    wait_state(&c, "the restart to finish", |s| s.pods.len() == 3 && s.pods.iter().all(|p| p.ready)).await;
    more_traffic(&c, 30).await;
    c.set_routing(&t, &Routing::all_to("1.1.0")).await.expect("routing");
    c.scale(&t, "1.0.0", 0).await.expect("scale");
    wait_state(&c, "1.0.0 to be gone", |s| s.pods.iter().all(|p| p.version == "1.1.0")).await;
    more_traffic(&c, 30).await;
    let window = Duration::from_secs(30);
    for v in ["1.0.0", "1.1.0"] {
        let m = c.version_metrics(&t, v, window).await.expect("metrics");
        assert!(m.requests > 0, "{v}: {m:?}");
        assert_eq!(m.errors, 0, "{v}: {m:?}");
    }
}

#[tokio::test]
async fn unknown_targets_are_errors() {
    let c = start_one(app("checkout", vec![profile("1.0.0")], 1, 0.0)).await;
    let other = Target::new("prod", "nope");
    assert!(c.state(&other).await.is_err());
    assert!(c.watch(&other).await.is_err());
    assert!(c.set_routing(&other, &Routing::all_to("1.0.0")).await.is_err());
    assert!(c.restart(&other, "1.0.0").await.is_err());
    assert!(c.probe(&other, "1.0.0", &get("/health")).await.is_err());
    assert!(c.spec(&other).is_none());
}

#[path = "flag_tests.rs"]
mod flags;
