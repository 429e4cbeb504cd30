//! Argo Rollouts: the list and what it derives, and every action request by request, as the
//! `kubectl argo rollouts` plugin sends it.

use ::kube::Client;
use serde_json::{Value, json};

use super::*;
use crate::cluster::kube::argo::{ArgoError, ArgoRollouts};
use crate::cluster::kube::argo_info::describe_rollout;

const JSON_PATCH: &str = "application/json-patch+json";
pub(super) const UID: &str = "0f6c1d3e-rollout-web";

fn argo() -> (ArgoRollouts, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (ArgoRollouts::new(Client::new(service, NS), NS, "prod"), ApiServer { handle, held: Vec::new() })
}

pub(super) fn rollouts() -> String {
    format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts")
}

pub(super) fn rollout_path(name: &str) -> String {
    format!("{}/{name}", rollouts())
}

pub(super) fn status_path(name: &str) -> String {
    format!("{}/{name}/status", rollouts())
}

pub(super) fn replica_sets() -> String {
    format!("/apis/apps/v1/namespaces/{NS}/replicasets")
}

pub(super) fn template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}})
}

/// A canary Rollout of 5 replicas with four steps, at `step`, over stable `aaa` and canary `bbb`.
pub(super) fn canary(step: u64, status: Value) -> Value {
    let mut ro = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": NS, "uid": UID, "generation": 4, "resourceVersion": "90"},
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template("registry.local/shop/web:1.1.0"),
            "strategy": {"canary": {"steps": [
                {"setWeight": 20}, {"pause": {}}, {"analysis": {"templates": [{"templateName": "errors"}]}},
                {"setWeight": 60},
            ]}},
        },
        "status": {
            "phase": "Paused", "message": "CanaryPauseStep", "observedGeneration": "4",
            "currentStepIndex": step, "stableRS": "aaa", "currentPodHash": "bbb",
            "replicas": 5, "updatedReplicas": 1, "readyReplicas": 5, "availableReplicas": 5,
        },
    });
    if let (Some(s), Some(extra)) = (ro["status"].as_object_mut(), status.as_object()) {
        s.extend(extra.clone());
    }
    ro
}

/// A ReplicaSet of the web Rollout (or of someone else: `owner`).
pub(super) fn replica_set(hash: &str, revision: u64, image: &str, available: u64, owner: &str) -> Value {
    let mut t = template(image);
    t["metadata"]["labels"]["rollouts-pod-template-hash"] = json!(hash);
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("web-{hash}"), "namespace": NS,
            "labels": {"app": "web", "rollouts-pod-template-hash": hash},
            "annotations": {"rollout.argoproj.io/revision": revision.to_string()},
            "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "web",
                                 "uid": owner, "controller": true}],
        },
        "spec": {"replicas": available, "template": t},
        "status": {"replicas": available, "availableReplicas": available},
    })
}

pub(super) fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "100"}, "items": items})
}

/// A merge patch by field manager `shipdeck` of `path` whose body must be `body`; answered with `reply`.
async fn merge_patch(api: &mut ApiServer, path: &str, body: Value, reply: Value) {
    api.expect_merge_patch(path, body).await.reply(200, reply);
}

// ---------------------------------------------------------------- reading

#[tokio::test]
async fn list_reads_the_rollouts_and_the_replica_sets_and_derives_what_the_plugin_shows() {
    let (argo, mut api) = argo();
    let server = async {
        let x = api.expect("GET", &rollouts()).await;
        assert!(!x.query.contains_key("labelSelector"), "{:?}", x.query);
        x.reply(200, list(vec![canary(1, json!({"pauseConditions": [{"reason": "CanaryPauseStep"}]}))]));
        let x = api.expect("GET", &replica_sets()).await;
        assert_eq!(x.query.get("labelSelector").map(String::as_str), Some("rollouts-pod-template-hash"));
        x.reply(
            200,
            list(vec![
                replica_set("aaa", 3, "registry.local/shop/web:1.0.0", 4, UID),
                replica_set("bbb", 4, "registry.local/shop/web:1.1.0", 1, UID),
                replica_set("ccc", 9, "registry.local/shop/other:2", 3, "someone-else"),
            ]),
        );
    };
    let (result, ()) = tokio::join!(argo.list(), server);
    let all = result.unwrap();
    assert_eq!(all.len(), 1);
    let ro = &all[0];
    assert_eq!((ro.name.as_str(), ro.strategy.as_deref()), ("web", Some("canary")));
    assert_eq!((ro.phase.as_str(), ro.message.as_str()), ("Paused", "CanaryPauseStep"));
    let step = ro.step.unwrap();
    assert_eq!((step.index, step.total), (1, 4));
    assert_eq!(ro.set_weight, Some(20), "the last setWeight at or before the current step");
    assert_eq!(ro.actual_weight, Some(20), "1 of 5 available pods is the canary's");
    let stable = ro.stable.as_ref().unwrap();
    assert_eq!((stable.revision, stable.images.clone()), (Some(3), vec!["registry.local/shop/web:1.0.0".to_string()]));
    let canary = ro.canary.as_ref().unwrap();
    assert_eq!((canary.pod_template_hash.as_str(), canary.revision), ("bbb", Some(4)));
    assert!(ro.paused && !ro.aborted);
    assert_eq!(ro.replicas.desired, 5);
    let text = serde_json::to_value(ro).unwrap();
    assert_eq!(text["set_weight"], 20, "plain serde for --json");
}

#[tokio::test]
async fn a_cluster_without_argo_rollouts_says_so() {
    let (argo, mut api) = argo();
    let server = async {
        api.expect("GET", &rollouts())
            .await
            .reply(404, status(404, "NotFound", "the server could not find the requested resource"));
    };
    let (result, ()) = tokio::join!(argo.list(), server);
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("Argo Rollouts is not installed"), "{err}");
}

#[test]
fn with_traffic_routing_the_actual_weight_is_the_controllers_and_analysis_is_shown() {
    let mut ro = canary(
        2,
        json!({"canary": {
            "weights": {"canary": {"weight": 15, "podTemplateHash": "bbb"}, "stable": {"weight": 85}},
            "currentStepAnalysisRunStatus": {"name": "web-bbb-4-2", "status": "Running"},
        }}),
    );
    ro["spec"]["strategy"]["canary"]["trafficRouting"] = json!({"nginx": {"stableIngress": "web"}});
    let d = describe_rollout(&ro, &[]);
    assert_eq!((d.set_weight, d.actual_weight), (Some(20), Some(15)));
    assert_eq!(d.analysis.len(), 1);
    assert_eq!((d.analysis[0].kind.as_str(), d.analysis[0].phase.as_str()), ("step", "Running"));
    assert_eq!(d.canary.as_ref().unwrap().images, vec!["registry.local/shop/web:1.1.0".to_string()]);
}

#[test]
fn past_the_last_step_everything_weighs_100_and_an_abort_sets_0() {
    let done = describe_rollout(&canary(4, json!({"stableRS": "bbb"})), &[]);
    assert_eq!((done.set_weight, done.actual_weight), (Some(100), Some(100)));
    assert!(done.canary.is_none(), "the current template is the stable one");
    let aborted = describe_rollout(&canary(3, json!({"abort": true, "phase": "Degraded"})), &[]);
    assert_eq!(aborted.set_weight, Some(0));
    assert!(aborted.aborted);
}

#[test]
fn a_spec_not_yet_observed_or_an_unpause_in_flight_is_progressing() {
    let d = describe_rollout(&canary(1, json!({"observedGeneration": "3"})), &[]);
    assert_eq!(
        (d.phase.as_str(), d.message.as_str()),
        ("Progressing", "waiting for rollout spec update to be observed")
    );
    let d = describe_rollout(&canary(1, json!({"controllerPause": true, "pauseConditions": null})), &[]);
    assert_eq!(d.message, "waiting for rollout to unpause");
}

#[test]
fn blue_green_has_no_weights_and_names_its_analysis() {
    let ro = json!({
        "metadata": {"name": "api", "uid": "u2", "generation": 1},
        "spec": {"strategy": {"blueGreen": {"activeService": "api", "previewService": "api-preview"}}},
        "status": {"phase": "Paused", "message": "BlueGreenPause", "observedGeneration": "1", "stableRS": "s1",
                   "currentPodHash": "n2", "pauseConditions": [{"reason": "BlueGreenPause"}],
                   "blueGreen": {"prePromotionAnalysisRunStatus": {"name": "api-n2-pre", "status": "Successful"}}},
    });
    let d = describe_rollout(&ro, &[]);
    assert_eq!(d.strategy.as_deref(), Some("blueGreen"));
    assert_eq!((d.step, d.set_weight, d.actual_weight), (None, None, None));
    assert_eq!(d.analysis[0].kind, "prePromotion");
    assert_eq!(d.canary.as_ref().unwrap().pod_template_hash, "n2");
}

// ---------------------------------------------------------------- promote

#[tokio::test]
async fn promote_clears_the_pause_conditions_on_the_status_subresource() {
    let (argo, mut api) = argo();
    let ro =
        canary(1, json!({"pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-11-27T10:00:00Z"}]}));
    let server = async {
        api.expect("GET", &rollout_path("web")).await.reply(200, ro.clone());
        merge_patch(&mut api, &status_path("web"), json!({"status": {"pauseConditions": null}}), ro.clone()).await;
    };
    let (result, ()) = tokio::join!(argo.promote("web"), server);
    let outcome = result.unwrap();
    assert!(outcome.changed && outcome.message == "rollout web promoted", "{outcome:?}");
}

#[tokio::test]
async fn promote_of_a_rollout_paused_by_hand_also_unpauses_its_spec() {
    let (argo, mut api) = argo();
    let mut ro = canary(1, json!({"pauseConditions": [{"reason": "CanaryPauseStep"}]}));
    ro["spec"]["paused"] = json!(true);
    let server = async {
        api.expect("GET", &rollout_path("web")).await.reply(200, ro.clone());
        merge_patch(&mut api, &status_path("web"), json!({"status": {"pauseConditions": null}}), ro.clone()).await;
        merge_patch(&mut api, &rollout_path("web"), json!({"spec": {"paused": false}}), ro.clone()).await;
    };
    let (result, ()) = tokio::join!(argo.promote("web"), server);
    result.unwrap();
}

#[tokio::test]
async fn promote_in_the_middle_of_an_analysis_step_moves_to_the_next_step() {
    let (argo, mut api) = argo();
    let ro = canary(2, json!({}));
    let server = async {
        api.expect("GET", &rollout_path("web")).await.reply(200, ro.clone());
        let body = json!({"status": {"pauseConditions": null, "currentStepIndex": 3}});
        merge_patch(&mut api, &status_path("web"), body, ro.clone()).await;
    };
    let (result, ()) = tokio::join!(argo.promote("web"), server);
    result.unwrap();
}

#[tokio::test]
async fn promote_after_an_inconclusive_analysis_lifts_the_controller_pause_too() {
    let (argo, mut api) = argo();
    let ro = canary(
        2,
        json!({"controllerPause": true, "pauseConditions": [{"reason": "InconclusiveAnalysisRun"}],
               "canary": {"currentStepAnalysisRunStatus": {"name": "web-bbb-4-2", "status": "Inconclusive"}}}),
    );
    let server = async {
        api.expect("GET", &rollout_path("web")).await.reply(200, ro.clone());
        let body = json!({"status": {"pauseConditions": null, "controllerPause": false, "currentStepIndex": 3}});
        merge_patch(&mut api, &status_path("web"), body, ro.clone()).await;
    };
    let (result, ()) = tokio::join!(argo.promote("web"), server);
    result.unwrap();
}

#[tokio::test]
async fn without_a_status_subresource_promote_writes_spec_and_status_together() {
    let (argo, mut api) = argo();
    let ro = canary(2, json!({}));
    let server = async {
        api.expect("GET", &rollout_path("web")).await.reply(200, ro.clone());
        api.expect("PATCH", &status_path("web")).await.reply(404, status(404, "NotFound", "not found"));
        let body = json!({"spec": {"paused": false}, "status": {"pauseConditions": null, "currentStepIndex": 3}});
        merge_patch(&mut api, &rollout_path("web"), body, ro.clone()).await;
    };
    let (result, ()) = tokio::join!(argo.promote("web"), server);
    result.unwrap();
}

#[tokio::test(start_paused = true)]
async fn promote_of_a_blue_green_that_is_not_paused_writes_nothing() {
    let (argo, mut api) = argo();
    let ro = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "api"},
                    "spec": {"strategy": {"blueGreen": {"activeService": "api"}}}, "status": {}});
    let server = async {
        api.expect("GET", &rollout_path("api")).await.reply(200, ro);
        api.expect_silence().await;
    };
    let (result, ()) = tokio::join!(argo.promote("api"), server);
    let outcome = result.unwrap();
    assert!(!outcome.changed && outcome.message.contains("nothing to promote"), "{outcome:?}");
}

#[tokio::test]
async fn promote_full_sets_promote_full_on_the_status_subresource() {
    let (argo, mut api) = argo();
    let ro = canary(1, json!({}));
    let server = async {
        api.expect("GET", &rollout_path("web")).await.reply(200, ro.clone());
        merge_patch(&mut api, &status_path("web"), json!({"status": {"promoteFull": true}}), ro.clone()).await;
    };
    let (result, ()) = tokio::join!(argo.promote_full("web"), server);
    assert_eq!(result.unwrap().message, "rollout web fully promoted");
}

#[tokio::test(start_paused = true)]
async fn promote_full_of_a_fully_promoted_rollout_writes_nothing() {
    let (argo, mut api) = argo();
    let server = async {
        api.expect("GET", &rollout_path("web")).await.reply(200, canary(4, json!({"stableRS": "bbb"})));
        api.expect_silence().await;
    };
    let (result, ()) = tokio::join!(argo.promote_full("web"), server);
    assert!(!result.unwrap().changed);
}

// ---------------------------------------------------------------- abort, retry

#[tokio::test]
async fn abort_sets_status_abort_on_the_status_subresource_without_reading_first() {
    let (argo, mut api) = argo();
    let server = async {
        merge_patch(&mut api, &status_path("web"), json!({"status": {"abort": true}}), canary(1, json!({}))).await;
    };
    let (result, ()) = tokio::join!(argo.abort("web"), server);
    assert_eq!(result.unwrap().message, "rollout web aborted");
}

#[tokio::test]
async fn retry_clears_status_abort() {
    let (argo, mut api) = argo();
    let server = async {
        merge_patch(&mut api, &status_path("web"), json!({"status": {"abort": false}}), canary(1, json!({}))).await;
    };
    let (result, ()) = tokio::join!(argo.retry("web"), server);
    assert_eq!(result.unwrap().message, "rollout web retried");
}

#[tokio::test]
async fn a_rollout_that_is_not_there_is_named_after_the_fallback_write() {
    let (argo, mut api) = argo();
    let server = async {
        let gone = status(404, "NotFound", "rollouts.argoproj.io \"wbe\" not found");
        api.expect("PATCH", &status_path("wbe")).await.reply(404, gone.clone());
        api.expect_merge_patch(&rollout_path("wbe"), json!({"status": {"abort": true}})).await.reply(404, gone);
    };
    let (result, ()) = tokio::join!(argo.abort("wbe"), server);
    let err = result.unwrap_err();
    assert!(matches!(err, ArgoError::BadInput(_)) && err.exit_code() == 2, "{err:?}");
    let text = err.to_string();
    assert!(text.contains("Rollout wbe not found in namespace shop") && text.contains("shipdeck argo list"), "{text}");
}

#[tokio::test]
async fn forbidden_names_the_verb_and_the_status_subresource() {
    let (argo, mut api) = argo();
    let server = async {
        api.expect("PATCH", &status_path("web")).await.reply(
            403,
            status(
                403,
                "Forbidden",
                "User \"ci\" cannot patch resource \"rollouts/status\" in API group \"argoproj.io\"",
            ),
        );
    };
    let (result, ()) = tokio::join!(argo.retry("web"), server);
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), 3);
    let text = err.to_string();
    assert!(
        text.contains(
            "forbidden: shipdeck may not patch rollouts/status in namespace shop — grant the Role in the README"
        ),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_api_server_is_tried_again_as_every_write_sets_absolute_values() {
    let (argo, mut api) = argo();
    let server = async {
        api.expect("PATCH", &status_path("web")).await.reply(503, status(503, "ServiceUnavailable", "busy"));
        merge_patch(&mut api, &status_path("web"), json!({"status": {"abort": true}}), canary(1, json!({}))).await;
    };
    let (result, ()) = tokio::join!(argo.abort("web"), server);
    assert!(result.unwrap().changed);
}

#[tokio::test(start_paused = true)]
async fn an_api_server_that_never_answers_is_unreachable_exit_3() {
    let (argo, mut api) = argo();
    let server = async {
        for _ in 0..3 {
            let x = api.expect("GET", &rollout_path("web")).await;
            x.hold(&mut api);
        }
    };
    let (result, ()) = tokio::join!(argo.promote("web"), server);
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), 3);
    assert!(err.to_string().contains("did not answer get rollouts web within 10s"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_bad_name_is_refused_before_any_request() {
    let (argo, mut api) = argo();
    let err = argo.abort("web/../../secrets").await.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    api.expect_silence().await;
}

// ---------------------------------------------------------------- undo

/// The undo reads: the Rollout, then its selector's ReplicaSets (revisions 2, 3 and 4 of web,
/// and one of another owner).
async fn undo_reads(api: &mut ApiServer, ro: &Value) {
    api.expect("GET", &rollout_path("web")).await.reply(200, ro.clone());
    let x = api.expect("GET", &replica_sets()).await;
    assert_eq!(x.query.get("labelSelector").map(String::as_str), Some("app=web"));
    x.reply(
        200,
        list(vec![
            replica_set("zzz", 2, "registry.local/shop/web:0.9.0", 0, UID),
            replica_set("aaa", 3, "registry.local/shop/web:1.0.0", 4, UID),
            replica_set("bbb", 4, "registry.local/shop/web:1.1.0", 1, UID),
            replica_set("xxx", 7, "registry.local/shop/web:6.6.6", 0, "another-rollout"),
        ]),
    );
}

fn replace_template(image: &str) -> Value {
    json!([{"op": "replace", "path": "/spec/template", "value": template(image)}])
}

async fn expect_json_patch(api: &mut ApiServer, body: Value) -> Exchange {
    let x = api.expect("PATCH", &rollout_path("web")).await;
    assert_eq!(x.content_type.as_deref(), Some(JSON_PATCH));
    assert_eq!(x.query.get("fieldManager").map(String::as_str), Some("shipdeck"));
    assert_eq!(x.body, body, "the revision's template without rollouts-pod-template-hash");
    x
}

#[tokio::test]
async fn undo_puts_the_previous_revisions_template_back_as_a_json_patch() {
    let (argo, mut api) = argo();
    let ro = canary(1, json!({}));
    let server = async {
        undo_reads(&mut api, &ro).await;
        expect_json_patch(&mut api, replace_template("registry.local/shop/web:1.0.0")).await.reply(200, ro.clone());
    };
    let (result, ()) = tokio::join!(argo.undo("web", None), server);
    let outcome = result.unwrap();
    assert_eq!(outcome.message, "rollout web goes back to the pod template of revision 3");
}

#[tokio::test]
async fn undo_to_a_revision_takes_that_revision() {
    let (argo, mut api) = argo();
    let ro = canary(1, json!({}));
    let server = async {
        undo_reads(&mut api, &ro).await;
        expect_json_patch(&mut api, replace_template("registry.local/shop/web:0.9.0")).await.reply(200, ro.clone());
    };
    let (result, ()) = tokio::join!(argo.undo("web", Some(2)), server);
    result.unwrap();
}

#[tokio::test]
async fn an_undo_that_conflicts_reads_again_and_writes_once_more() {
    let (argo, mut api) = argo();
    let ro = canary(1, json!({}));
    let server = async {
        undo_reads(&mut api, &ro).await;
        let conflict = status(409, "Conflict", "Operation cannot be fulfilled on rollouts.argoproj.io \"web\"");
        expect_json_patch(&mut api, replace_template("registry.local/shop/web:1.0.0")).await.reply(409, conflict);
        undo_reads(&mut api, &ro).await;
        expect_json_patch(&mut api, replace_template("registry.local/shop/web:1.0.0")).await.reply(200, ro.clone());
    };
    let (result, ()) = tokio::join!(argo.undo("web", None), server);
    assert!(result.unwrap().changed);
}

#[tokio::test]
async fn a_second_undo_conflict_is_reported() {
    let (argo, mut api) = argo();
    let ro = canary(1, json!({}));
    let server = async {
        for _ in 0..2 {
            undo_reads(&mut api, &ro).await;
            api.expect("PATCH", &rollout_path("web")).await.reply(409, status(409, "Conflict", "modified"));
        }
    };
    let (result, ()) = tokio::join!(argo.undo("web", None), server);
    let err = result.unwrap_err();
    assert!(err.to_string().contains("conflict: Rollout web was changed by someone else"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn undo_to_the_template_that_runs_writes_nothing() {
    let (argo, mut api) = argo();
    let ro = canary(1, json!({}));
    let server = async {
        undo_reads(&mut api, &ro).await;
        api.expect_silence().await;
    };
    let (result, ()) = tokio::join!(argo.undo("web", Some(4)), server);
    let outcome = result.unwrap();
    assert!(!outcome.changed && outcome.message.contains("already runs the template of revision 4"), "{outcome:?}");
}

#[tokio::test]
async fn undo_to_a_revision_that_is_not_in_the_history_says_so() {
    let (argo, mut api) = argo();
    let ro = canary(1, json!({}));
    let server = undo_reads(&mut api, &ro);
    let (result, ()) = tokio::join!(argo.undo("web", Some(7)), server);
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains("revision 7 is not in its history"),
        "another owner's revision 7 is not ours: {err}"
    );
}
