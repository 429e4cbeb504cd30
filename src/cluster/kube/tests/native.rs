//! Native rollouts of the base Deployment and `kubectl rollout undo`, request by request, and
//! their progress read from the watched Deployment and ReplicaSets.

use ::kube::runtime::watcher::Event;
use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::json;

use super::*;
use crate::cluster::{
    Cluster, NativeCondition, NativeRollout, NativeStrategy, Routing, UndoOutcome, UndoTarget, VersionReplicas,
};

const STRATEGIC: &str = "application/strategic-merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> T {
    match serde_json::from_value(v) {
        Ok(t) => t,
        Err(e) => panic!("fixture does not parse: {e}"),
    }
}

fn rollout(strategy: NativeStrategy) -> NativeRollout {
    NativeRollout {
        strategy,
        replicas: 3,
        progress_deadline_secs: 120,
        change_cause: "shipdeck: prod-web-1.1.0-20261127120000 by ana".into(),
    }
}

async fn patched(strategy: NativeStrategy) -> Value {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("GET", &deployments("web")).await.reply(200, base_deployment());
        let x = api.expect("PATCH", &deployments("web")).await;
        assert_eq!(x.content_type.as_deref(), Some(STRATEGIC), "patched as `kubectl set image` does");
        assert_eq!(x.query.get("fieldManager").map(String::as_str), Some("shipdeck"));
        let body = x.body.clone();
        x.reply(200, base_deployment());
        body
    };
    let r = rollout(strategy);
    let (result, body) = tokio::join!(c.native_rollout(target(), "1.1.0", &r), server);
    result.unwrap();
    body
}

#[tokio::test]
async fn a_native_rolling_update_patches_the_base_template_strategy_and_size() {
    let body = patched(NativeStrategy::Rolling { max_surge: 1, max_unavailable: 0 }).await;
    assert_eq!(
        body,
        json!({
            "metadata": {
                "labels": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.1.0"},
                "annotations": {"kubernetes.io/change-cause": "shipdeck: prod-web-1.1.0-20261127120000 by ana"},
            },
            "spec": {
                "replicas": 3,
                "progressDeadlineSeconds": 120,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.1.0",
                                            "shipdeck.dev/native": "true"}},
                    // Containers merge by name: only the named one's image changes.
                    "spec": {"containers": [{"name": "web", "image": "registry.local:5000/shop/web:1.1.0"}]},
                },
            },
        })
    );
}

#[tokio::test]
async fn a_native_recreate_drops_the_rolling_parameters() {
    let body = patched(NativeStrategy::Recreate).await;
    assert_eq!(body["spec"]["strategy"], json!({"type": "Recreate", "rollingUpdate": null}));
}

#[tokio::test]
async fn a_forbidden_patch_names_the_verb_and_resource_to_grant() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("GET", &deployments("web")).await.reply(200, base_deployment());
        api.expect("PATCH", &deployments("web")).await.reply(
            403,
            status(403, "Forbidden", "deployments.apps \"web\" is forbidden: User \"ci\" cannot patch resource"),
        );
    };
    let r = rollout(NativeStrategy::Recreate);
    let (result, ()) = tokio::join!(c.native_rollout(target(), "1.1.0", &r), server);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("forbidden: shipdeck may not patch deployments in namespace shop"), "{text}");
}

#[tokio::test]
async fn an_undo_the_role_may_not_list_replica_sets_for_says_so() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("GET", &deployments("web")).await.reply(200, live_base("70"));
        api.expect("GET", &format!("/apis/apps/v1/namespaces/{NS}/replicasets"))
            .await
            .reply(403, status(403, "Forbidden", "replicasets.apps is forbidden"));
    };
    let (result, ()) = tokio::join!(c.native_undo(target(), &UndoTarget::Previous), server);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("forbidden: shipdeck may not list replicasets in namespace shop"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_base_whose_selector_would_not_match_is_refused_before_any_write() {
    let (c, mut api) = cluster(false);
    let server = async {
        let mut base = base_deployment();
        base["spec"]["selector"] = json!({"matchLabels": {"app.kubernetes.io/name": "shop-web"}});
        api.expect("GET", &deployments("web")).await.reply(200, base);
        api.expect_silence().await;
    };
    let strategy = NativeStrategy::Rolling { max_surge: 1, max_unavailable: 0 };
    let r = rollout(strategy);
    let (result, ()) = tokio::join!(c.native_rollout(target(), "1.1.0", &r), server);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("selects pods by app.kubernetes.io/name=shop-web"), "{text}");
}

#[tokio::test]
async fn an_app_with_an_http_route_does_not_roll_natively() {
    let (c, _api) = cluster(true);
    assert!(!c.native_rollouts(target()));
    let (c, _api) = cluster(false);
    assert!(c.native_rollouts(target()));
}

/// The base as the watch shows it while rolling from 1.0.0 to 1.1.0.
fn watched_base(generation: i64, observed: i64, mut status: Value) -> Value {
    status["observedGeneration"] = json!(observed);
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": "9", "generation": generation, "uid": "base-uid",
                     "labels": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.1.0"},
                     "annotations": {"deployment.kubernetes.io/revision": "4"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web", "app.kubernetes.io/name": "web",
                                                      "shipdeck.dev/version": "1.1.0", "shipdeck.dev/native": "true"}}}},
        "status": status,
    })
}

fn replica_set(name: &str, owner_uid: &str, revision: i64, version: &str, counts: (i32, i32, i32)) -> Value {
    let labels = json!({"app": "web", "app.kubernetes.io/name": "web", "shipdeck.dev/version": version,
                        "shipdeck.dev/native": "true", "pod-template-hash": name.rsplit('-').next()});
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "1", "labels": labels,
                     "annotations": {"deployment.kubernetes.io/revision": revision.to_string(),
                                     "kubernetes.io/change-cause": format!("shipdeck: web {version}")},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": if owner_uid == "base-uid" { "web" } else { "web-1-0-0" },
                                          "uid": owner_uid, "controller": true}]},
        "spec": {"replicas": counts.0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "web", "image": format!("registry.local:5000/shop/web:{version}")}]}}},
        "status": {"replicas": counts.0, "readyReplicas": counts.1, "availableReplicas": counts.2},
    })
}

fn feed_native(c: &KubeCluster, base: Value, sets: Vec<Value>) {
    c.feed(|w| {
        w.deployments.apply_watcher_event(&Event::Init);
        w.deployments.apply_watcher_event(&Event::InitApply(parse::<crate::cluster::kube::slim::DeploymentView>(base)));
        w.deployments.apply_watcher_event(&Event::InitDone);
        w.replica_sets.apply_watcher_event(&Event::Init);
        for rs in sets {
            w.replica_sets.apply_watcher_event(&Event::InitApply(parse::<ReplicaSet>(rs)));
        }
        w.replica_sets.apply_watcher_event(&Event::InitDone);
        w.pods.apply_watcher_event(&Event::Init);
        w.pods.apply_watcher_event(&Event::InitDone);
        w.services.apply_watcher_event(&Event::Init);
        w.services.apply_watcher_event(&Event::InitDone);
        w.routes.apply_watcher_event(&Event::Init);
        w.routes.apply_watcher_event(&Event::InitDone);
    });
}

#[tokio::test]
async fn the_rollout_is_followed_through_the_deployments_status_and_replica_sets() {
    let (c, _api) = cluster(false);
    let mut rx = c.watch(target()).await.unwrap();
    // Patched, not yet seen by the controller.
    feed_native(&c, watched_base(5, 4, json!({"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3})), vec![]);
    let s = rx.borrow_and_update().clone();
    let native = s.native.expect("the base shows as rolling natively");
    assert_eq!(
        (native.deployment.as_str(), native.version.as_deref(), native.revision),
        ("web", Some("1.1.0"), Some(4))
    );
    assert!(matches!(native.condition, NativeCondition::Progressing { ref message } if message.contains("observed")));

    // Half way: the new ReplicaSet has 2 of 3, the old one 2 left; each shows as its version.
    let mid = json!({"observedGeneration": 5, "replicas": 4, "updatedReplicas": 2, "readyReplicas": 4, "availableReplicas": 4});
    let sets = vec![
        replica_set("web-5d8", "base-uid", 3, "1.0.0", (2, 2, 2)),
        replica_set("web-7d9", "base-uid", 4, "1.1.0", (2, 2, 2)),
        // Another Deployment's ReplicaSet is not the base's.
        replica_set("web-1-0-0-6c4", "other-uid", 1, "1.0.0", (3, 3, 3)),
    ];
    feed_native(&c, watched_base(5, 5, mid), sets);
    assert!(rx.has_changed().unwrap());
    let s = rx.borrow_and_update().clone();
    let native = s.native.clone().unwrap();
    assert_eq!(
        native.condition,
        NativeCondition::Progressing { message: "2 out of 3 new replicas have been updated".into() }
    );
    assert_eq!((native.desired, native.updated, native.total, native.available), (3, 2, 4, 4));
    assert_eq!(s.replicas("1.0.0"), VersionReplicas { desired: 2, updated: 2, ready: 2, available: 2 });
    assert_eq!(s.replicas("1.1.0"), VersionReplicas { desired: 2, updated: 2, ready: 2, available: 2 });

    // Done: every replica updated and available, the old ReplicaSet at 0 (and no longer shown).
    let done = json!({"observedGeneration": 5, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                      "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]});
    let sets = vec![
        replica_set("web-5d8", "base-uid", 3, "1.0.0", (0, 0, 0)),
        replica_set("web-7d9", "base-uid", 4, "1.1.0", (3, 3, 3)),
    ];
    feed_native(&c, watched_base(5, 5, done), sets);
    let s = rx.borrow_and_update().clone();
    assert!(s.native.as_ref().unwrap().complete_at("1.1.0"));
    assert!(!s.versions.contains_key("1.0.0"));
    assert_eq!(s.replicas("1.1.0").available, 3);
}

#[tokio::test]
async fn progress_deadline_exceeded_shows_with_the_controllers_message() {
    let (c, _api) = cluster(false);
    let status = json!({"observedGeneration": 5, "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3, "availableReplicas": 3,
                        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                        "message": "ReplicaSet \"web-7d9\" has timed out progressing."}]});
    feed_native(&c, watched_base(5, 5, status), vec![]);
    let s = c.state(target()).await.unwrap();
    assert_eq!(
        s.native.unwrap().condition,
        NativeCondition::DeadlineExceeded { message: "ReplicaSet \"web-7d9\" has timed out progressing.".into() }
    );
}

#[tokio::test]
async fn scaling_the_version_the_base_runs_sizes_the_base_and_never_deletes_it() {
    let (c, mut api) = cluster(false);
    let done = json!({"observedGeneration": 5, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
    feed_native(&c, watched_base(5, 5, done), vec![]);
    let server = async {
        api.expect_merge_patch(&deployments("web"), json!({"spec": {"replicas": 0}}))
            .await
            .reply(200, base_deployment());
        // Another version still has its own Deployment.
        api.expect("DELETE", &deployments("web-1-0-0"))
            .await
            .reply(200, json!({"kind": "Status", "status": "Success"}));
    };
    let scale = async {
        c.scale(target(), "1.1.0", 0).await.unwrap();
        c.scale(target(), "1.0.0", 0).await.unwrap();
    };
    tokio::join!(scale, server);
}

#[tokio::test]
async fn restarting_the_version_the_base_runs_restarts_the_base() {
    let (c, mut api) = cluster(false);
    let done = json!({"observedGeneration": 5, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
    feed_native(&c, watched_base(5, 5, done), vec![]);
    let server = async {
        let x = api.expect("PATCH", &deployments("web")).await;
        assert_eq!(x.content_type.as_deref(), Some(MERGE));
        assert!(x.body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string());
        x.reply(200, base_deployment());
    };
    let (result, ()) = tokio::join!(c.restart(target(), "1.1.0"), server);
    result.unwrap();
}

#[tokio::test]
async fn a_native_rollout_routing_selects_both_versions_pods() {
    let (c, mut api) = cluster(false);
    let routing = Routing::follow_pods("1.0.0", "1.1.0");
    let server = async {
        let body = json!({
            "metadata": {"annotations": {"shipdeck.dev/routing": serde_json::to_string(&routing).unwrap()}},
            "spec": {"selector": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": null}},
        });
        api.expect_merge_patch(&services("web"), body).await.reply(200, base_service());
    };
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    result.unwrap();
}

// ---- undo ----

/// The base running revision 4 (1.1.0), with shipdeck's rollout record and kubectl's bookkeeping.
fn live_base(resource_version: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": resource_version, "uid": "base-uid", "generation": 7,
                     "labels": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.1.0", "team": "shop"},
                     "annotations": {"deployment.kubernetes.io/revision": "4",
                                     "kubernetes.io/change-cause": "shipdeck: web 1.1.0",
                                     "shipdeck.dev/rollout": "{\"id\":\"r1\"}"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web", "app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.1.0",
                                                      "shipdeck.dev/native": "true"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.local:5000/shop/web:1.1.0"}]}}},
    })
}

fn history() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSetList", "metadata": {"resourceVersion": "50"}, "items": [
        replica_set("web-5d8", "base-uid", 3, "1.0.0", (0, 0, 0)),
        replica_set("web-4c1", "base-uid", 2, "0.9.0", (0, 0, 0)),
        replica_set("web-7d9", "base-uid", 4, "1.1.0", (3, 3, 3)),
        // Matches the selector, but another Deployment controls it.
        replica_set("web-1-0-0-6c4", "other-uid", 9, "1.2.0", (3, 3, 3)),
    ]})
}

/// The exact JSON patch of going back to `version`'s ReplicaSet, as read at `resource_version`.
fn undo_body(resource_version: &str, version: &str) -> Value {
    let labels = json!({"app": "web", "app.kubernetes.io/name": "web", "shipdeck.dev/version": version, "shipdeck.dev/native": "true"});
    json!([
        {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version},
        {"op": "replace", "path": "/spec/template", "value": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "web", "image": format!("registry.local:5000/shop/web:{version}")}]},
        }},
        {"op": "replace", "path": "/metadata/annotations", "value": {
            "deployment.kubernetes.io/revision": "4",
            "kubernetes.io/change-cause": format!("shipdeck: web {version}"),
            "shipdeck.dev/rollout": "{\"id\":\"r1\"}",
        }},
        {"op": "add", "path": "/metadata/labels", "value": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": version, "team": "shop"}},
    ])
}

async fn serve_undo_reads(api: &mut ApiServer, resource_version: &str) {
    api.expect("GET", &deployments("web")).await.reply(200, live_base(resource_version));
    let list = api.expect("GET", &format!("/apis/apps/v1/namespaces/{NS}/replicasets")).await;
    assert_eq!(list.query.get("labelSelector").map(String::as_str), Some("app=web"), "the Deployment's selector");
    list.reply(200, history());
}

async fn expect_json_patch(api: &mut ApiServer, body: Value) -> Exchange {
    let x = api.expect("PATCH", &deployments("web")).await;
    assert_eq!(x.content_type.as_deref(), Some(JSON_PATCH));
    assert_eq!(x.query.get("fieldManager").map(String::as_str), Some("shipdeck"));
    assert_eq!(x.body, body);
    x
}

#[tokio::test]
async fn undo_puts_the_previous_revisions_template_back_as_kubectl_does() {
    let (c, mut api) = cluster(false);
    let server = async {
        serve_undo_reads(&mut api, "70").await;
        expect_json_patch(&mut api, undo_body("70", "1.0.0")).await.reply(200, live_base("71"));
    };
    let (result, ()) = tokio::join!(c.native_undo(target(), &UndoTarget::Previous), server);
    assert_eq!(result.unwrap(), Some(UndoOutcome { revision: 3, version: Some("1.0.0".into()), changed: true }));
}

#[tokio::test]
async fn undo_to_a_given_revision_or_version_takes_that_ones_template() {
    let (c, mut api) = cluster(false);
    let server = async {
        serve_undo_reads(&mut api, "70").await;
        expect_json_patch(&mut api, undo_body("70", "0.9.0")).await.reply(200, live_base("71"));
        serve_undo_reads(&mut api, "71").await;
        expect_json_patch(&mut api, undo_body("71", "1.0.0")).await.reply(200, live_base("72"));
    };
    let undo = async {
        let a = c.native_undo(target(), &UndoTarget::Revision(2)).await;
        let b = c.native_undo(target(), &UndoTarget::Version("1.0.0".into())).await;
        (a, b)
    };
    let ((a, b), ()) = tokio::join!(undo, server);
    assert_eq!(a.unwrap().map(|o| o.revision), Some(2));
    assert_eq!(b.unwrap(), Some(UndoOutcome { revision: 3, version: Some("1.0.0".into()), changed: true }));
}

#[tokio::test]
async fn an_undo_that_meets_a_conflict_reads_again_once() {
    let (c, mut api) = cluster(false);
    let server = async {
        serve_undo_reads(&mut api, "70").await;
        expect_json_patch(&mut api, undo_body("70", "1.0.0")).await.reply(
            409,
            status(409, "Conflict", "the object has been modified; please apply your changes to the latest version"),
        );
        serve_undo_reads(&mut api, "74").await;
        expect_json_patch(&mut api, undo_body("74", "1.0.0")).await.reply(200, live_base("75"));
    };
    let (result, ()) = tokio::join!(c.native_undo(target(), &UndoTarget::Previous), server);
    assert!(result.unwrap().is_some_and(|o| o.changed));
}

#[tokio::test(start_paused = true)]
async fn a_revision_that_does_not_exist_is_named_with_those_that_do_and_nothing_is_written() {
    let (c, mut api) = cluster(false);
    let server = async {
        serve_undo_reads(&mut api, "70").await;
        api.expect_silence().await;
    };
    let (result, ()) = tokio::join!(c.native_undo(target(), &UndoTarget::Revision(9)), server);
    let text = result.unwrap_err().to_string();
    assert!(
        text.contains("Deployment web has no revision 9 (its revisions: 2 (0.9.0), 3 (1.0.0), 4 (1.1.0))"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn undo_to_the_template_that_runs_writes_nothing() {
    let (c, mut api) = cluster(false);
    let server = async {
        serve_undo_reads(&mut api, "70").await;
        api.expect_silence().await;
    };
    let (result, ()) = tokio::join!(c.native_undo(target(), &UndoTarget::Revision(4)), server);
    assert_eq!(result.unwrap(), Some(UndoOutcome { revision: 4, version: Some("1.1.0".into()), changed: false }));
}

#[tokio::test(start_paused = true)]
async fn a_version_no_revision_ran_is_none_and_nothing_is_written() {
    let (c, mut api) = cluster(false);
    let server = async {
        serve_undo_reads(&mut api, "70").await;
        api.expect_silence().await;
    };
    let to = UndoTarget::Version("2.0.0".into());
    let (result, ()) = tokio::join!(c.native_undo(target(), &to), server);
    assert_eq!(result.unwrap(), None);
}

#[tokio::test]
async fn the_revisions_are_the_replica_sets_the_deployment_controls() {
    let (c, mut api) = cluster(false);
    let server = serve_undo_reads(&mut api, "70");
    let (result, ()) = tokio::join!(c.native_revisions(target()), server);
    let got: Vec<(i64, Option<String>)> = result.unwrap().into_iter().map(|r| (r.revision, r.version)).collect();
    let want = [(2, "0.9.0"), (3, "1.0.0"), (4, "1.1.0")].map(|(r, v)| (r, Some(v.to_string())));
    assert_eq!(got, want.to_vec(), "oldest first, another Deployment's ReplicaSet left out");
}
