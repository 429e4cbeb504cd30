//! State from the watches, `watch()`, and probes through the API server's pod proxy.

use ::kube::runtime::watcher::Event;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use super::*;
use crate::cluster::kube::slim::{DeploymentView, PodView};
use crate::cluster::{Cluster, PodPhase, ProbeRequest, Routing};

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> T {
    match serde_json::from_value(v) {
        Ok(t) => t,
        Err(e) => panic!("fixture does not parse: {e}"),
    }
}

fn version_deployment(version: &str, replicas: i32, ready: i32) -> Value {
    let slug = crate::cluster::kube::objects::slug(version);
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("web-{slug}"), "namespace": NS, "resourceVersion": "1",
                     "labels": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": version}},
        "spec": {"replicas": replicas, "selector": {}, "template": {}},
        "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready},
    })
}

fn pod(name: &str, version: &str, ready: bool, waiting: Option<&str>) -> Value {
    let state = match waiting {
        Some(reason) => json!({"waiting": {"reason": reason}}),
        None => json!({"running": {}}),
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "1",
                     "labels": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": version}},
        "spec": {"containers": [{"name": "web", "image": "x", "ports": [{"containerPort": 8080}]}]},
        "status": {
            "phase": if waiting.is_some() { "Pending" } else { "Running" },
            "podIP": "10.1.2.3",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{"name": "web", "ready": ready, "restartCount": 2, "image": "x", "imageID": "",
                                   "state": state}],
        },
    })
}

fn terminating(mut pod: Value) -> Value {
    pod["metadata"]["deletionTimestamp"] = json!("2026-11-27T12:00:00Z");
    pod
}

fn active_service(version: Option<&str>, routing: Option<&Routing>) -> Value {
    let mut svc = base_service();
    svc["spec"]["selector"] = json!({"app": "web", "app.kubernetes.io/name": "web"});
    if let Some(v) = version {
        svc["spec"]["selector"]["shipdeck.dev/version"] = json!(v);
    }
    if let Some(r) = routing {
        svc["metadata"]["annotations"] = json!({"shipdeck.dev/routing": serde_json::to_string(r).unwrap()});
    }
    svc
}

/// The stores as the watches would leave them after listing.
fn listed(c: &KubeCluster, deployments: Vec<Value>, pods: Vec<Value>, services: Vec<Value>) {
    c.feed(|w| {
        w.deployments.apply_watcher_event(&Event::Init);
        for d in deployments {
            w.deployments.apply_watcher_event(&Event::InitApply(parse::<DeploymentView>(d)));
        }
        w.deployments.apply_watcher_event(&Event::InitDone);
        w.pods.apply_watcher_event(&Event::Init);
        for p in pods {
            w.pods.apply_watcher_event(&Event::InitApply(parse::<PodView>(p)));
        }
        w.pods.apply_watcher_event(&Event::InitDone);
        w.services.apply_watcher_event(&Event::Init);
        for s in services {
            w.services.apply_watcher_event(&Event::InitApply(parse::<Service>(s)));
        }
        w.services.apply_watcher_event(&Event::InitDone);
        w.routes.apply_watcher_event(&Event::Init);
        w.routes.apply_watcher_event(&Event::InitDone);
    });
}

#[tokio::test]
async fn a_replica_ratio_canary_shows_the_weight_set_and_the_weight_the_pods_give() {
    let (c, _api) = cluster(false);
    let routing = Routing::split("1.0.0", "1.1.0", 10);
    listed(
        &c,
        vec![version_deployment("1.0.0", 3, 3), version_deployment("1.1.0", 1, 1)],
        vec![
            pod("web-1-0-0-a", "1.0.0", true, None),
            pod("web-1-0-0-b", "1.0.0", true, None),
            pod("web-1-0-0-c", "1.0.0", true, None),
            pod("web-1-1-0-a", "1.1.0", true, None),
            pod("web-1-1-0-b", "1.1.0", false, Some("CrashLoopBackOff")),
            terminating(pod("web-1-0-0-old", "1.0.0", true, None)),
        ],
        vec![active_service(None, Some(&routing))],
    );
    let s = c.state(target()).await.unwrap();
    assert_eq!((s.replicas("1.0.0").desired, s.replicas("1.0.0").ready), (3, 3));
    assert_eq!((s.replicas("1.1.0").desired, s.replicas("1.1.0").ready), (1, 1));
    assert_eq!(s.routing, routing, "the weight set, read back from the Service");
    assert_eq!(s.actual_weights.get("1.1.0"), Some(&25.0), "1 of 4 ready pods (a terminating one serves no more)");
    assert_eq!(s.actual_weights.get("1.0.0"), Some(&75.0));
    let crashing = s.pods.iter().find(|p| p.name == "web-1-1-0-b").unwrap();
    assert_eq!((crashing.phase, crashing.ready, crashing.restarts), (PodPhase::CrashLoopBackOff, false, 2));
    assert_eq!(crashing.address.as_deref(), Some("10.1.2.3"));
    assert_eq!(s.pods.iter().find(|p| p.name == "web-1-0-0-old").unwrap().phase, PodPhase::Terminating);
}

#[tokio::test]
async fn a_service_shipdeck_never_wrote_reads_as_all_traffic_to_its_selected_version() {
    let (c, _api) = cluster(false);
    listed(&c, vec![version_deployment("1.0.0", 2, 2)], vec![], vec![active_service(Some("1.0.0"), None)]);
    let s = c.state(target()).await.unwrap();
    assert_eq!(s.routing, Routing::all_to("1.0.0"));
}

#[tokio::test]
async fn watch_wakes_when_the_watches_bring_a_change() {
    let (c, _api) = cluster(false);
    listed(&c, vec![version_deployment("1.0.0", 2, 1)], vec![], vec![active_service(Some("1.0.0"), None)]);
    let mut rx = c.watch(target()).await.unwrap();
    assert_eq!(rx.borrow_and_update().replicas("1.0.0").ready, 1);
    c.feed(|w| w.deployments.apply_watcher_event(&Event::Apply(parse(version_deployment("1.0.0", 2, 2)))));
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().replicas("1.0.0").ready, 2);
    // An event that changes nothing shown wakes no one.
    c.feed(|w| w.deployments.apply_watcher_event(&Event::Apply(parse(version_deployment("1.0.0", 2, 2)))));
    assert!(!rx.has_changed().unwrap());
}

#[tokio::test]
async fn with_a_route_the_actual_weights_are_the_backend_weights() {
    let (c, _api) = cluster(true);
    let routing = Routing::split("1.0.0", "1.1.0", 20);
    c.feed(|w| {
        for v in ["1.0.0", "1.1.0"] {
            w.deployments.apply_watcher_event(&Event::Apply(parse(version_deployment(v, 1, 1))));
        }
        let rules = json!([{"backendRefs": [
            {"name": "web-1-0-0", "port": 80, "weight": 4}, {"name": "web-1-1-0", "port": 80, "weight": 1}]}]);
        let ours = json!({"shipdeck.dev/routing": serde_json::to_string(&routing).unwrap()});
        w.routes.apply_watcher_event(&Event::Apply(parse(route("9", rules, Some(ours)))));
    });
    let s = c.watch(target()).await.unwrap().borrow().clone();
    assert_eq!(s.routing, routing);
    assert_eq!(s.actual_weights.get("1.0.0"), Some(&80.0));
    assert_eq!(s.actual_weights.get("1.1.0"), Some(&20.0));
}

#[tokio::test]
async fn a_probe_goes_through_the_api_servers_pod_proxy_to_a_ready_pod() {
    let (c, mut api) = cluster(false);
    listed(
        &c,
        vec![version_deployment("1.1.0", 2, 1)],
        vec![pod("web-1-1-0-a", "1.1.0", false, None), pod("web-1-1-0-b", "1.1.0", true, None)],
        vec![],
    );
    let request = ProbeRequest {
        method: "POST".into(),
        path: "/api/v1/users".into(),
        body: Some("{\"name\":\"smoke\"}".into()),
        timeout_ms: 2000,
    };
    let server = async {
        let x = api.expect("POST", &format!("/api/v1/namespaces/{NS}/pods/web-1-1-0-b:8080/proxy/api/v1/users")).await;
        assert_eq!(x.body, json!({"name": "smoke"}));
        x.reply(201, json!({"id": 7}));
    };
    let (result, ()) = tokio::join!(c.probe(target(), "1.1.0", &request), server);
    let response = result.unwrap();
    assert_eq!((response.status, response.body.as_str()), (201, "{\"id\":7}"));

    // An answer of the app's own, even an error, is the probe's answer.
    let health = ProbeRequest { method: "GET".into(), path: "/health".into(), body: None, timeout_ms: 2000 };
    let server = async {
        api.expect("GET", &format!("/api/v1/namespaces/{NS}/pods/web-1-1-0-b:8080/proxy/health"))
            .await
            .reply(500, json!({"status": "unhealthy"}));
    };
    let (result, ()) = tokio::join!(c.probe(target(), "1.1.0", &health), server);
    assert_eq!(result.unwrap().status, 500);

    // The API server's refusal is not the app's: it names what to grant.
    let server = async {
        let refusal = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                             "code": 403, "details": {"name": "web-1-1-0-b", "kind": "pods"}});
        api.expect("GET", &format!("/api/v1/namespaces/{NS}/pods/web-1-1-0-b:8080/proxy/health"))
            .await
            .reply(403, refusal);
    };
    let (result, ()) = tokio::join!(c.probe(target(), "1.1.0", &health), server);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("shipdeck may not get pods/proxy in namespace shop"), "{text}");
}

#[tokio::test]
async fn a_version_without_a_ready_pod_cannot_be_probed() {
    let (c, _api) = cluster(false);
    listed(&c, vec![version_deployment("1.1.0", 1, 0)], vec![pod("web-1-1-0-a", "1.1.0", false, None)], vec![]);
    let health = ProbeRequest { method: "GET".into(), path: "/health".into(), body: None, timeout_ms: 2000 };
    let err = c.probe(target(), "1.1.0", &health).await.unwrap_err();
    assert!(matches!(err, crate::cluster::ClusterError::NoReadyPod { .. }), "{err:?}");
}

/// The watches list, then watch; a `410 Gone` makes the deployments' watch list again, and the
/// new list reaches `watch()`.
#[tokio::test(start_paused = true)]
async fn a_watch_that_expires_lists_again() {
    let (c, mut api) = cluster(false);
    c.start();
    let mut rx = c.watch(target()).await.unwrap();
    let list = |kind: &str, items: Vec<Value>, rv: &str| json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items});
    let deployment_lists = [vec![version_deployment("1.0.0", 2, 2)], vec![version_deployment("1.1.0", 1, 1)]];
    let (mut lists_done, mut gone_sent) = (0, false);
    while lists_done < 2 {
        let x = api.next().await;
        let selector = x.query.get("labelSelector").cloned();
        match (x.path.rsplit('/').next(), x.is_watch()) {
            (Some("deployments"), false) => {
                assert_eq!(selector.as_deref(), Some("shipdeck.dev/version"), "only shipdeck's Deployments");
                x.reply(200, list("Deployment", deployment_lists[lists_done].clone(), "100"));
                lists_done += 1;
            }
            (Some("deployments"), true) if !gone_sent => {
                assert_eq!(x.query.get("resourceVersion").map(String::as_str), Some("100"));
                x.stream(&[
                    json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version: 100")}),
                ]);
                gone_sent = true;
            }
            (Some("pods"), false) => {
                assert_eq!(selector.as_deref(), Some("shipdeck.dev/version"));
                x.reply(200, list("Pod", vec![], "5"));
            }
            (Some("services"), false) => x.reply(200, list("Service", vec![active_service(Some("1.0.0"), None)], "5")),
            (Some("replicasets"), false) => {
                assert_eq!(selector.as_deref(), Some("shipdeck.dev/native"), "only natively rolled bases' ReplicaSets");
                x.reply(200, list("ReplicaSet", vec![], "5"));
            }
            // Quiet watches stay open.
            (_, true) => x.hold(&mut api),
            other => panic!("unexpected request {other:?} {} {:?}", x.path, x.query),
        }
    }
    assert!(gone_sent);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if rx.borrow_and_update().versions.contains_key("1.1.0") {
            break;
        }
        assert!(tokio::time::timeout_at(deadline, rx.changed()).await.is_ok(), "the new list never reached watch()");
    }
    assert!(!rx.borrow().versions.contains_key("1.0.0"), "the re-list replaced what the old one held");
}

/// A watch the Role does not allow fails every state() at once, naming what to grant.
#[tokio::test(start_paused = true)]
async fn a_watch_that_is_forbidden_is_said_at_once() {
    let (c, mut api) = cluster(false);
    c.start();
    let (refused_tx, mut refused) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        loop {
            let x = api.next().await;
            let list = |kind: &str| json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []});
            match (x.path.rsplit('/').next(), x.is_watch()) {
                (Some("pods"), false) => {
                    x.reply(
                        403,
                        status(403, "Forbidden", "pods is forbidden: User \"ci\" cannot list resource \"pods\""),
                    );
                    let _ = refused_tx.send(());
                }
                (Some("deployments"), false) => x.reply(200, list("Deployment")),
                (Some("services"), false) => x.reply(200, list("Service")),
                _ => x.hold(&mut api),
            }
        }
    });
    // The watcher lists again (after its backoff) only once it handed on the refusal.
    for _ in 0..2 {
        refused.recv().await.unwrap();
    }
    assert!(c.watch_errors.summary().is_some(), "the forbidden list was never reported");
    let started = tokio::time::Instant::now();
    let err = c.state(target()).await.unwrap_err();
    assert_eq!(started.elapsed(), std::time::Duration::ZERO, "no wait for a watch that fails");
    let text = err.to_string();
    assert!(text.contains("forbidden: shipdeck may not list pods in namespace shop"), "{text}");
    server.abort();
}
