//! The console's Argo Rollouts: the watches (what they ask, what they derive, a cluster without
//! Argo, a forbidden list, a `410 Gone`), and each console action going through the engine to
//! the same requests `shipdeck argo` sends, audited.

use std::time::Duration;

use ::kube::Client;
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::argo::{UID, canary, list, replica_set, replica_sets, rollouts, status_path};
use super::*;
use crate::cluster::kube::argo::ArgoAction;
use crate::cluster::kube::argo_watch::{ArgoStatus, ArgoView, ArgoWatch, ArgoWatches};

fn watched() -> (ArgoWatch, ApiServer, watch::Receiver<ArgoView>) {
    let (client, api) = client();
    let w = ArgoWatch::start(client, NS, "prod", None);
    let rx = w.subscribe();
    (w, api, rx)
}

/// Until the view satisfies `ok` (30 s of the paused clock at most).
async fn until(rx: &mut watch::Receiver<ArgoView>, what: &str, ok: impl Fn(&ArgoView) -> bool) -> ArgoView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = rx.borrow_and_update().clone();
        if ok(&view) {
            return view;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!("{what}: the view never got there; last {view:?}"),
        }
    }
}

fn stable_and_canary() -> Vec<Value> {
    vec![
        replica_set("aaa", 3, "registry.local/shop/web:1.0.0", 4, UID),
        replica_set("bbb", 4, "registry.local/shop/web:1.1.0", 1, UID),
    ]
}

/// Serves the first lists (rollouts, then Argo's ReplicaSets) and holds the ReplicaSets' watch; returns
/// the rollouts' watch request, asserted.
async fn serve_lists(api: &mut ApiServer, ro: Value) -> Exchange {
    let x = api.expect("GET", &rollouts()).await;
    assert!(!x.is_watch(), "a list first: {:?}", x.query);
    assert!(!x.query.contains_key("labelSelector") && !x.query.contains_key("fieldSelector"), "{:?}", x.query);
    x.reply(200, list(vec![ro]));
    // The rollouts' watch and the ReplicaSets' list come in either order.
    let (mut ro_watch, mut rs_listed, mut rs_watched) = (None, false, false);
    while ro_watch.is_none() || !rs_listed || !rs_watched {
        let x = api.next().await;
        match (x.path.as_str(), x.is_watch()) {
            (p, true) if p == rollouts() => {
                assert_eq!(x.query.get("resourceVersion").map(String::as_str), Some("100"), "from the list's");
                assert_eq!(x.query.get("allowWatchBookmarks").map(String::as_str), Some("true"));
                ro_watch = Some(x);
            }
            (p, false) if p == replica_sets() => {
                assert_eq!(
                    x.query.get("labelSelector").map(String::as_str),
                    Some("rollouts-pod-template-hash"),
                    "only Argo's ReplicaSets"
                );
                x.reply(200, list(stable_and_canary()));
                rs_listed = true;
            }
            (p, true) if p == replica_sets() => {
                assert_eq!(x.query.get("labelSelector").map(String::as_str), Some("rollouts-pod-template-hash"));
                x.hold(api);
                rs_watched = true;
            }
            (p, w) => panic!("unexpected request {p} watch={w} {:?}", x.query),
        }
    }
    ro_watch.unwrap_or_else(|| unreachable!())
}

#[tokio::test(start_paused = true)]
async fn rollouts_are_listed_then_watched_with_argos_replica_sets_and_a_change_shows_at_once() {
    let (_w, mut api, mut rx) = watched();
    assert_eq!(rx.borrow().status, ArgoStatus::Listing);
    let ro_watch = serve_lists(&mut api, canary(1, json!({"pauseConditions": [{"reason": "CanaryPauseStep"}]}))).await;
    let view = until(&mut rx, "listed", |v| v.status == ArgoStatus::Watching).await;
    assert_eq!(view.namespace, NS);
    let [ro] = view.rollouts.as_slice() else { panic!("one rollout: {view:?}") };
    assert_eq!((ro.name.as_str(), ro.phase.as_str()), ("web", "Paused"));
    assert_eq!(ro.step.map(|s| (s.index, s.total)), Some((1, 4)));
    assert_eq!((ro.set_weight, ro.actual_weight), (Some(20), Some(20)), "1 of 5 available pods is the canary's");
    assert_eq!(ro.stable.as_ref().and_then(|s| s.revision), Some(3));
    assert_eq!(ro.canary.as_ref().map(|c| c.images.clone()), Some(vec!["registry.local/shop/web:1.1.0".into()]));

    // The controller moves to the analysis step: the watch says so, and the view follows.
    let mut moved = canary(
        2,
        json!({"phase": "Progressing", "message": "", "pauseConditions": null,
        "canary": {"currentStepAnalysisRunStatus": {"name": "web-bbb-2", "status": "Running"}}}),
    );
    moved["metadata"]["resourceVersion"] = json!("101");
    ro_watch.stream(&[json!({"type": "MODIFIED", "object": moved})]);
    let view = until(&mut rx, "moved", |v| v.rollouts.first().and_then(|r| r.step).is_some_and(|s| s.index == 2)).await;
    let ro = &view.rollouts[0];
    assert_eq!(ro.phase, "Progressing");
    assert_eq!(
        ro.analysis.iter().map(|a| (a.kind.as_str(), a.name.as_str(), a.phase.as_str())).collect::<Vec<_>>(),
        [("step", "web-bbb-2", "Running")]
    );
    // The stream ended: the watch starts again from the last resourceVersion seen, not a list.
    let x = api.expect("GET", &rollouts()).await;
    assert!(x.is_watch(), "{:?}", x.query);
    assert_eq!(x.query.get("resourceVersion").map(String::as_str), Some("101"));
    x.hold(&mut api);
    api.expect_silence().await;
}

#[tokio::test(start_paused = true)]
async fn a_cluster_without_the_rollout_resource_is_not_argo_and_nothing_more_is_asked() {
    let (_w, mut api, mut rx) = watched();
    api.expect("GET", &rollouts())
        .await
        .reply(404, status(404, "NotFound", "the server could not find the requested resource"));
    let view = until(&mut rx, "not installed", |v| v.status == ArgoStatus::NotInstalled).await;
    assert!(view.rollouts.is_empty() && view.problem.is_none(), "{view:?}");
    api.expect_silence().await;
}

#[tokio::test(start_paused = true)]
async fn a_forbidden_list_is_said_once_naming_what_to_grant_and_the_watch_stops() {
    let (_w, mut api, mut rx) = watched();
    let said = "rollouts.argoproj.io is forbidden: User \"ci\" cannot list resource \"rollouts\"";
    api.expect("GET", &rollouts()).await.reply(403, status(403, "Forbidden", said));
    let view = until(&mut rx, "stopped", |v| matches!(v.status, ArgoStatus::Stopped(_))).await;
    let ArgoStatus::Stopped(message) = view.status else { unreachable!() };
    assert!(message.contains("may not list rollouts in namespace shop") && message.contains(said), "{message}");
    api.expect_silence().await;
}

#[tokio::test(start_paused = true)]
async fn a_watch_that_expires_lists_again_and_the_new_list_replaces_the_old() {
    let (_w, mut api, mut rx) = watched();
    let ro_watch = serve_lists(&mut api, canary(1, json!({}))).await;
    until(&mut rx, "listed", |v| v.rollouts.len() == 1).await;
    ro_watch.stream(&[json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version: 100")})]);
    let x = api.expect("GET", &rollouts()).await;
    assert!(!x.is_watch(), "410 Gone: a list again, {:?}", x.query);
    x.reply(200, list(vec![]));
    let x = api.expect("GET", &rollouts()).await;
    assert!(x.is_watch());
    x.hold(&mut api);
    let view = until(&mut rx, "relisted", |v| v.rollouts.is_empty()).await;
    assert_eq!(view.status, ArgoStatus::Watching);
}

#[tokio::test(start_paused = true)]
async fn a_watch_that_fails_for_a_moment_keeps_the_view_says_why_and_recovers() {
    let (_w, mut api, mut rx) = watched();
    let ro_watch = serve_lists(&mut api, canary(1, json!({}))).await;
    until(&mut rx, "listed", |v| v.rollouts.len() == 1).await;
    ro_watch.reply(503, status(503, "ServiceUnavailable", "etcd is busy"));
    let view = until(&mut rx, "a problem", |v| v.problem.is_some()).await;
    assert_eq!(view.rollouts.len(), 1, "the last view stays shown");
    assert!(view.problem.as_deref().is_some_and(|p| p.contains("503")), "{view:?}");
    // Backoff, then the watch again: the problem clears with the first event.
    let x = api.expect("GET", &rollouts()).await;
    assert!(x.is_watch());
    let mut moved = canary(3, json!({}));
    moved["metadata"]["resourceVersion"] = json!("102");
    x.stream(&[json!({"type": "MODIFIED", "object": moved})]);
    let view = until(&mut rx, "recovered", |v| v.problem.is_none()).await;
    assert_eq!(view.rollouts[0].step.map(|s| s.index), Some(3));
}

// ---------------------------------------------------------------- the console's actions

/// One context whose client talks to the fake API server the test holds.
pub(super) struct OneContext(pub(super) std::sync::Mutex<Option<Client>>);

#[async_trait]
impl crate::cluster::kube::switch::Connector for OneContext {
    fn contexts(&self) -> (Vec<String>, Option<String>) {
        (vec!["kind-a".into()], Some("kind-a".into()))
    }
    fn namespace_of(&self, _: &str) -> Option<String> {
        None
    }
    async fn client(&self, _: &str) -> Result<Client, String> {
        self.0.lock().unwrap().clone().ok_or_else(|| "no client".into())
    }
}

const ESTATE: &str = "[[environments]]\nname = \"dev\"\n\n[[environments]]\nname = \"prod\"\n\
    cluster = { kubernetes = { context = \"kind-a\", namespace = \"shop\" } }\n\n\
    [[apps]]\nname = \"web\"\n[[apps.versions]]\nversion = \"1.0.0\"\n";

/// An engine whose prod runs on Kubernetes namespace `shop`, its Argo watch on the fake server.
fn engine(readonly: bool) -> (crate::engine::Engine, Arc<crate::store::Store>, ApiServer) {
    let (engine, store, api, _) = engine_and_watches(readonly);
    (engine, store, api)
}

/// [`engine`], and the Argo watches it was given.
fn engine_and_watches(
    readonly: bool,
) -> (crate::engine::Engine, Arc<crate::store::Store>, ApiServer, Arc<ArgoWatches>) {
    let estate = Arc::new(crate::config::Estate::parse(ESTATE, "estate.toml").unwrap());
    let fake = crate::engine::fake::FakeCluster::new(&estate, &Default::default());
    let routed = Arc::new(crate::cluster::routed::EstateCluster::new(fake.clone(), Default::default()));
    let (client, api) = client();
    let argo = Arc::new(ArgoWatches::default());
    argo.watch("prod", client.clone(), NS);
    let connector = Box::new(OneContext(std::sync::Mutex::new(Some(client))));
    let switcher =
        crate::cluster::kube::switch::Switcher::new(estate.clone(), routed, connector).with_argo(argo.clone());
    let store = Arc::new(crate::store::Store::open_in_memory().unwrap());
    let engine = crate::engine::Engine::new(estate, fake.clone(), fake, store.clone(), readonly);
    engine.attach_kube(Arc::new(switcher));
    (engine, store, api, argo)
}

fn argo(action: ArgoAction) -> crate::engine::Command {
    crate::engine::Command::Argo { env: "prod".into(), rollout: "web".into(), action, to_revision: None }
}

/// The watch's first list is held: the actions below are the only other requests.
async fn hold_the_watch(api: &mut ApiServer) {
    let x = api.expect("GET", &rollouts()).await;
    assert!(!x.is_watch());
    x.hold(api);
}

/// The console reloads when the watch's view changes: the engine hands it a receiver that does.
#[tokio::test(start_paused = true)]
async fn the_engine_tells_the_console_when_an_argo_view_changed_and_gives_the_views() {
    let (engine, _store, mut api) = engine(false);
    let mut news = engine.news();
    assert_eq!(news.len(), 1, "the Argo watches (no flag store here)");
    let mut rx = news.remove(0);
    rx.mark_unchanged();
    api.expect("GET", &rollouts()).await.reply(404, status(404, "NotFound", "not found"));
    assert!(tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.is_ok(), "no news of the change");
    assert_eq!(engine.argo_views().get("prod").map(|v| v.status.clone()), Some(ArgoStatus::NotInstalled));
}

#[tokio::test(start_paused = true)]
async fn console_abort_goes_through_the_engine_to_the_plugins_status_patch_and_is_audited() {
    let (engine, store, mut api) = engine(false);
    hold_the_watch(&mut api).await;
    let mut events = engine.subscribe();
    let server = async {
        api.expect_merge_patch(&status_path("web"), json!({"status": {"abort": true}}))
            .await
            .reply(200, canary(1, json!({})));
    };
    let (out, ()) = tokio::join!(engine.execute("alice", argo(ArgoAction::Abort)), server);
    assert_eq!(out.unwrap().message, "rollout web aborted");
    let audit = store.audit_log(None, 10).unwrap();
    let a = &audit[0];
    assert_eq!((a.actor.as_str(), a.action.as_str(), a.target.as_str()), ("alice", "argo abort", "prod/web"));
    match events.recv().await.unwrap() {
        crate::engine::Event::Note { message, .. } => assert_eq!(message, "prod: rollout web aborted"),
        other => panic!("{other:?}"),
    }
}

/// A slow action does not keep the watch it was started from: once `:ns` moves the environment,
/// the previous namespace's watch stops even while the action still waits for its answer.
#[tokio::test(start_paused = true)]
async fn a_running_action_does_not_keep_a_replaced_watch_alive() {
    let (engine, _store, mut api, watches) = engine_and_watches(false);
    hold_the_watch(&mut api).await;
    let old = watches.get("prod").map(|w| Arc::downgrade(&w)).unwrap();
    let e = engine.clone();
    let action = tokio::spawn(async move { e.execute("alice", argo(ArgoAction::Abort)).await });
    let patch = api.expect("PATCH", &status_path("web")).await;
    // What the switcher does on `:ns`: the environment's watch is replaced.
    let (moved, _moved_api) = client();
    watches.watch("prod", moved, "shop-canary");
    assert!(old.upgrade().is_none(), "the action still holds the previous namespace's watch");
    patch.reply(200, canary(1, json!({})));
    assert_eq!(action.await.unwrap().unwrap().message, "rollout web aborted");
}

#[tokio::test(start_paused = true)]
async fn console_retry_and_promote_full_send_what_the_cli_sends() {
    let (engine, _store, mut api) = engine(false);
    hold_the_watch(&mut api).await;
    let server = async {
        api.expect_merge_patch(&status_path("web"), json!({"status": {"abort": false}}))
            .await
            .reply(200, canary(1, json!({})));
    };
    let (out, ()) = tokio::join!(engine.execute("alice", argo(ArgoAction::Retry)), server);
    assert_eq!(out.unwrap().message, "rollout web retried");
    let server = async {
        api.expect("GET", &super::argo::rollout_path("web")).await.reply(200, canary(1, json!({})));
        api.expect_merge_patch(&status_path("web"), json!({"status": {"promoteFull": true}}))
            .await
            .reply(200, canary(1, json!({})));
    };
    let (out, ()) = tokio::join!(engine.execute("alice", argo(ArgoAction::PromoteFull)), server);
    assert_eq!(out.unwrap().message, "rollout web fully promoted");
}

#[tokio::test(start_paused = true)]
async fn a_console_action_that_fails_is_said_in_words_audited_and_nothing_else_is_sent() {
    let (engine, store, mut api) = engine(false);
    hold_the_watch(&mut api).await;
    let server = async {
        let x = api.expect("PATCH", &status_path("ghost")).await;
        x.reply(404, status(404, "NotFound", "rollouts.argoproj.io \"ghost\" not found"));
        let x = api.expect("PATCH", &super::argo::rollout_path("ghost")).await;
        x.reply(404, status(404, "NotFound", "rollouts.argoproj.io \"ghost\" not found"));
    };
    let cmd = crate::engine::Command::Argo {
        env: "prod".into(),
        rollout: "ghost".into(),
        action: ArgoAction::Abort,
        to_revision: None,
    };
    let (out, ()) = tokio::join!(engine.execute("alice", cmd), server);
    let e = out.unwrap_err();
    assert_eq!(e.exit_code(), 2, "a rollout that is not there is the user's: {e}");
    assert!(e.to_string().contains("argo abort ghost in prod failed") && e.to_string().contains("ghost"), "{e}");
    let a = &store.audit_log(None, 10).unwrap()[0];
    assert!(a.action == "argo abort" && a.detail.starts_with("failed:"), "{a:?}");
    api.expect_silence().await;
}

#[tokio::test(start_paused = true)]
async fn read_only_and_a_local_environment_refuse_before_any_request() {
    let (engine, store, mut api) = engine(true);
    hold_the_watch(&mut api).await;
    let e = engine.execute("alice", argo(ArgoAction::Undo)).await.unwrap_err();
    assert!(e.to_string().contains("read-only: `argo undo`"), "{e}");
    let (engine, _, mut api2) = self::engine(false);
    hold_the_watch(&mut api2).await;
    let cmd = crate::engine::Command::Argo {
        env: "dev".into(),
        rollout: "web".into(),
        action: ArgoAction::Promote,
        to_revision: None,
    };
    let e = engine.execute("alice", cmd).await.unwrap_err();
    assert!(e.to_string().contains("dev runs on the local cluster"), "{e}");
    assert!(store.audit_log(None, 10).unwrap().is_empty());
    api.expect_silence().await;
    api2.expect_silence().await;
}

/// `:ns` moves the environment's Argo watch with it: the new namespace's Rollouts are listed and
/// the pane shows them.
#[tokio::test(start_paused = true)]
async fn a_switch_moves_the_argo_watch_to_the_new_namespace() {
    let (engine, _store, mut api) = engine(false);
    hold_the_watch(&mut api).await;
    let e = engine.clone();
    let switched = tokio::spawn(async move {
        let cmd = crate::engine::Command::SwitchKubernetes {
            env: "prod".into(),
            context: None,
            namespace: Some("shop-canary".into()),
        };
        e.execute("alice", cmd).await
    });
    api.expect("GET", "/version").await.reply(200, json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0"}));
    let moved = "/apis/argoproj.io/v1alpha1/namespaces/shop-canary/rollouts";
    let mut listed = Vec::new();
    while !listed.iter().any(|p: &String| p == moved) {
        let x = api.next().await;
        assert!(x.path.contains("/namespaces/shop-canary/"), "{} is not in the new namespace", x.path);
        if x.is_watch() {
            x.hold(&mut api);
            continue;
        }
        listed.push(x.path.clone());
        x.reply(200, json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "5"}, "items": []}));
    }
    assert!(switched.await.unwrap().is_ok());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = engine.argo_views().remove("prod").unwrap();
        if view.namespace == "shop-canary" && view.status != ArgoStatus::Listing {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{view:?}");
        // Serve the new namespace's ReplicaSets list and watches meanwhile.
        match tokio::time::timeout(Duration::from_millis(100), api.next()).await {
            Ok(x) if x.is_watch() => x.hold(&mut api),
            Ok(x) => x.reply(
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "5"}, "items": []}),
            ),
            Err(_) => {}
        }
    }
}
