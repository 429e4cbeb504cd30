//! API failures `failures.rs` leaves out: a 409 on a write of absolute values, a canary weight
//! change whose request timed out (and may have landed), and a watch refused after it listed.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::cluster::{Cluster, ClusterError, Routing};

/// Scaling is a merge patch of `spec.replicas`, an absolute value: a 409 is tried once more.
#[tokio::test(start_paused = true)]
async fn a_conflict_on_a_scale_is_tried_once_more() {
    let (c, mut api) = cluster(false);
    let server = async {
        let started = tokio::time::Instant::now();
        let body = json!({"spec": {"replicas": 3}});
        api.expect_merge_patch(&deployments("web-1-1-0"), body.clone())
            .await
            .reply(409, status(409, "Conflict", "Operation cannot be fulfilled: the object has been modified"));
        api.expect_merge_patch(&deployments("web-1-1-0"), body).await.reply(200, json!({"metadata": {}}));
        assert_eq!(started.elapsed(), Duration::from_millis(200), "after the retry delay");
    };
    let (result, ()) = tokio::join!(c.scale(target(), "1.1.0", 3), server);
    result.unwrap();
}

/// A selector switch that conflicts twice is said in plain words, not tried forever.
#[tokio::test(start_paused = true)]
async fn a_second_conflict_on_a_selector_switch_is_said() {
    let (c, mut api) = cluster(false);
    let server = async {
        for _ in 0..2 {
            api.expect("PATCH", &services("web"))
                .await
                .reply(409, status(409, "Conflict", "the object has been modified"));
        }
    };
    let routing = Routing::all_to("1.1.0");
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    let err = result.unwrap_err();
    assert!(matches!(err, ClusterError::Kubernetes { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("conflict: Service web was changed by someone else while shipdeck wrote it"), "{text}");
}

/// A canary weight change whose PATCH went unanswered is sent again; when the first one had
/// landed, the repeat (carrying the `resourceVersion` read) is a 409, so the route is read again
/// and the weights written against what is there now.
#[tokio::test(start_paused = true)]
async fn a_weight_change_that_timed_out_but_landed_is_read_again_and_written() {
    let (c, mut api) = cluster(true);
    let routing = Routing::split("1.0.0", "1.1.0", 25);
    let server = async {
        let rules = json!([{"backendRefs": [{"name": "web", "port": 80}]}]);
        api.expect("GET", &routes("web")).await.reply(200, route("10", rules.clone(), None));
        let started = tokio::time::Instant::now();
        let first = api.expect("PATCH", &routes("web")).await;
        let weights = first.body["spec"]["rules"][0]["backendRefs"].clone();
        first.hold(&mut api);
        let repeat = api.expect("PATCH", &routes("web")).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(10) + Duration::from_millis(200),
            "10 s deadline, then 200 ms"
        );
        assert_eq!(repeat.body["metadata"]["resourceVersion"], "10", "the same write");
        repeat.reply(409, status(409, "Conflict", "the object has been modified"));
        api.expect("GET", &routes("web")).await.reply(200, route("11", rules, None));
        let last = api.expect("PATCH", &routes("web")).await;
        assert_eq!(last.body["metadata"]["resourceVersion"], "11");
        assert_eq!(last.body["spec"]["rules"][0]["backendRefs"], weights, "the same weights");
        last.reply(200, route("12", json!([]), None));
    };
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    result.unwrap();
}

/// A weight change the API server never answers fails in plain words after three attempts; the
/// routing the watches show is still the old one (the engine says where traffic is from it).
#[tokio::test(start_paused = true)]
async fn a_weight_change_that_is_never_answered_is_said_and_moves_nothing_shown() {
    let (c, mut api) = cluster(true);
    let before = Routing::split("1.0.0", "1.1.0", 10);
    c.feed(|w| {
        let ours = json!({"shipdeck.dev/routing": serde_json::to_string(&before).unwrap_or_default()});
        let rules = json!([{"backendRefs": [
            {"name": "web-1-0-0", "port": 80, "weight": 90}, {"name": "web-1-1-0", "port": 80, "weight": 10}]}]);
        let r = serde_json::from_value(route("10", rules, Some(ours))).unwrap();
        w.routes.apply_watcher_event(&::kube::runtime::watcher::Event::Apply(r));
    });
    let server = async {
        let rules = json!([{"backendRefs": [{"name": "web", "port": 80}]}]);
        api.expect("GET", &routes("web")).await.reply(200, route("10", rules, None));
        for _ in 0..3 {
            let x = api.expect("PATCH", &routes("web")).await;
            x.hold(&mut api);
        }
    };
    let half = Routing::split("1.0.0", "1.1.0", 50);
    let (result, ()) = tokio::join!(c.set_routing(target(), &half), server);
    let err = result.unwrap_err();
    assert!(matches!(err, ClusterError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("did not answer patch httproutes web within 10s"), "{err}");
    let shown = c.watch(target()).await.unwrap().borrow().routing.clone();
    assert_eq!(shown, before, "the state shows the weights that are set, not the ones asked for");
}

/// A watch refused after its list (RBAC changed, or a Role with list but not watch) does not
/// leave the last list on show as if current: state() fails naming what to grant, and the
/// console's snapshot carries that instead of an empty workload.
#[tokio::test(start_paused = true)]
async fn a_watch_refused_after_listing_is_said_in_the_state_and_the_console() {
    let (c, mut api) = cluster(false);
    c.start();
    let (refused_tx, mut refused) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        loop {
            let x = api.next().await;
            let list = |kind: &str| json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []});
            match (x.path.rsplit('/').next(), x.is_watch()) {
                (Some("pods"), true) => {
                    x.reply(
                        403,
                        status(403, "Forbidden", "pods is forbidden: User \"ci\" cannot watch resource \"pods\""),
                    );
                    let _ = refused_tx.send(());
                }
                (Some("pods"), false) => x.reply(200, list("Pod")),
                (Some("deployments"), false) => x.reply(200, list("Deployment")),
                (Some("services"), false) => x.reply(200, list("Service")),
                (Some("replicasets"), false) => x.reply(200, list("ReplicaSet")),
                _ => x.hold(&mut api),
            }
        }
    });
    // The watcher tries the watch again (after its backoff) only once it handed on the refusal.
    for _ in 0..2 {
        refused.recv().await.unwrap();
    }
    assert!(c.watch_errors.refused().is_some(), "the refused watch was never reported");
    let text = c.state(target()).await.unwrap_err().to_string();
    assert!(text.contains("cannot be watched"), "{text}");
    assert!(text.contains("forbidden: shipdeck may not watch pods in namespace shop"), "{text}");
    let store = std::sync::Arc::new(crate::store::Store::open_in_memory().unwrap());
    let engine = super::readonly::engine_over(&c, store, true);
    let snapshot = crate::tui::snapshot::load(&engine, Some(target()), None, 10).await;
    let shown = snapshot.workload(target()).and_then(|w| w.error.clone()).unwrap_or_default();
    assert!(shown.contains("may not watch pods"), "the console says why: {shown:?}");
    server.abort();
}

/// With an HTTPRoute, a version that got its Deployment but not its Service fails the scale,
/// naming what is missing: the route is never pointed at a Service that does not exist (the
/// step fails before any weight moves, and the release says so).
#[tokio::test(start_paused = true)]
async fn a_version_whose_service_cannot_be_made_fails_before_the_route_moves() {
    let (c, mut api) = cluster(true);
    let server = async {
        api.expect("PATCH", &deployments("web-1-1-0")).await.reply(404, status(404, "NotFound", ""));
        api.expect("GET", &deployments("web")).await.reply(200, base_deployment());
        let x = api.expect("POST", &format!("/apis/apps/v1/namespaces/{NS}/deployments")).await;
        let made = x.body.clone();
        x.reply(201, made);
        api.expect("GET", &services("web")).await.reply(200, base_service());
        api.expect("POST", &format!("/api/v1/namespaces/{NS}/services")).await.reply(
            403,
            status(403, "Forbidden", "services is forbidden: User \"ci\" cannot create resource \"services\""),
        );
    };
    let (result, ()) = tokio::join!(c.scale(target(), "1.1.0", 1), server);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("forbidden: shipdeck may not create services in namespace shop"), "{text}");
    api.expect_silence().await;
}
