//! `--readonly` needs only get/list/watch: everything a read-only shipdeck does against a
//! Kubernetes namespace — the watches, the rollouts another console left, the console's
//! snapshot, `argo list`, a FeatureFlag's reads, and every command it refuses — sends GETs only.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::cluster::Cluster;
use crate::cluster::kube::argo_watch::ArgoStatus;
use crate::cluster::routed::EstateCluster;
use crate::engine::{Command, Engine, Event};
use crate::flags::FlagStore;
use crate::model::{Release, ReleaseKind, Status, Step, StrategyKind};

const ESTATE: &str = r#"
[[environments]]
name = "dev"

[[environments]]
name = "prod"
cluster = { kubernetes = { namespace = "shop" } }

[[apps]]
name = "web"
replicas = 2
initial_version = "1.0.0"

[[apps.versions]]
version = "1.0.0"

[[apps.versions]]
version = "1.1.0"
"#;

/// A release another console left half-way, in the base Deployment's annotation.
fn left_behind() -> Release {
    let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    Release {
        id: "prod-web-1.1.0-20270115080000".into(),
        app: "web".into(),
        env: "prod".into(),
        version: "1.1.0".into(),
        previous_version: Some("1.0.0".into()),
        strategy: StrategyKind::Canary,
        kind: ReleaseKind::Deploy,
        promoted_from: None,
        status: Status::InProgress,
        plan: vec![Step::SetWeight { weight: 10 }, Step::Pause { seconds: None }, Step::Promote],
        cursor: 1,
        requested_by: "bob".into(),
        created_at: at,
        updated_at: at,
        reason: None,
        interrupted: false,
        weight: 10,
    }
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "5"}, "items": items})
}

/// One request as the read-only test's API server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    watch: bool,
    /// The label selector, if any.
    labels: Option<String>,
}

/// Plays an API server that has the app at 1.0.0, answers every GET, holds every watch open, and
/// sends every request it sees to `seen`; anything but a GET is answered 405 (and fails the test).
fn serve(mut api: ApiServer, seen: tokio::sync::mpsc::UnboundedSender<Seen>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let x = api.next().await;
            let _ = seen.send(Seen {
                method: x.method.clone(),
                path: x.path.clone(),
                watch: x.is_watch(),
                labels: x.query.get("labelSelector").cloned(),
            });
            if x.method != "GET" {
                x.reply(405, status(405, "MethodNotAllowed", "read-only: only get, list and watch are granted"));
                continue;
            }
            if x.is_watch() {
                x.hold(&mut api);
                continue;
            }
            let version = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web-1-0-0", "namespace": NS, "resourceVersion": "4",
                             "labels": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.0.0"}},
                "spec": {"replicas": 2, "selector": {}, "template": {}},
                "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2},
            });
            let mut service = base_service();
            service["spec"]["selector"] = json!({"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.0.0"});
            let annotations =
                json!({"shipdeck.dev/rollout": serde_json::to_string(&left_behind()).unwrap_or_default()});
            let mut base = base_deployment();
            base["metadata"]["annotations"] = annotations.clone();
            // The live watch of the bases with a rollout reads their metadata only.
            let base_meta = json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "web", "namespace": NS, "resourceVersion": "7",
                             "labels": {"shipdeck.dev/rollout-state": "true"}, "annotations": annotations},
            });
            let flags = json!({
                "apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlag",
                "metadata": {"name": "flags", "namespace": NS, "resourceVersion": "9"},
                "spec": {"flagSpec": {"flags": {"dark-mode": {"state": "ENABLED",
                    "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}},
            });
            let metadata_only = x.accept.as_deref().is_some_and(|a| a.contains("PartialObjectMetadata"));
            let answer = match x.path.as_str() {
                p if p == format!("/apis/apps/v1/namespaces/{NS}/deployments") && metadata_only => {
                    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                           "metadata": {"resourceVersion": "5"}, "items": [base_meta]})
                }
                p if p == format!("/apis/apps/v1/namespaces/{NS}/deployments") => list("Deployment", vec![version]),
                p if p == format!("/api/v1/namespaces/{NS}/pods") => list("Pod", vec![]),
                p if p == format!("/api/v1/namespaces/{NS}/services") => list("Service", vec![service]),
                p if p == deployments("web") => base,
                p if p == format!("/apis/core.openfeature.dev/v1beta1/namespaces/{NS}/featureflags/flags") => flags,
                p if p == format!("/apis/core.openfeature.dev/v1beta1/namespaces/{NS}/featureflags") => {
                    list("FeatureFlag", vec![flags])
                }
                p if p == format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts") => list("Rollout", vec![]),
                p if p == format!("/apis/apps/v1/namespaces/{NS}/replicasets") => list("ReplicaSet", vec![]),
                p if p == format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases") => list("Lease", vec![]),
                p if p == format!("/apis/events.k8s.io/v1/namespaces/{NS}/events") => list("Event", vec![]),
                _ => {
                    x.reply(404, status(404, "NotFound", "not here"));
                    continue;
                }
            };
            x.reply(200, answer);
        }
    })
}

/// Reads what the API server saw into `log` until `done(log)` (60 s of the paused clock at most).
async fn until_seen(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    log: &mut Vec<Seen>,
    what: &str,
    done: impl Fn(&[Seen]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done(log) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(s)) => log.push(s),
            Ok(None) => panic!("the API server stopped before {what}"),
            Err(_) => panic!("{what}: not within 60 s; the API server saw {log:#?}"),
        }
    }
}

/// `path` was listed (with this label selector, if given) and is now watched.
fn listed_then_watched(log: &[Seen], path: &str, labels: Option<&str>) -> bool {
    let is = |s: &Seen| s.path == path && labels.is_none_or(|l| s.labels.as_deref() == Some(l));
    let listed = log.iter().position(|s| is(s) && !s.watch);
    listed.is_some_and(|i| log[i..].iter().any(|s| is(s) && s.watch))
}

/// An engine whose environment `prod` runs on `kube` (`dev` on the in-memory cluster).
pub(super) fn engine_over(kube: &Arc<KubeCluster>, store: Arc<crate::store::Store>, readonly: bool) -> Engine {
    let estate = Arc::new(crate::config::Estate::parse(ESTATE, "kubernetes estate").unwrap());
    let local = crate::engine::fake::FakeCluster::new(&estate, &BTreeMap::new());
    let by_env: BTreeMap<String, Arc<dyn Cluster>> = [("prod".to_string(), kube.clone() as Arc<dyn Cluster>)].into();
    let routed = Arc::new(EstateCluster::new(local.clone(), by_env));
    Engine::new(estate, routed, local, store, readonly)
}

#[tokio::test(start_paused = true)]
async fn a_readonly_shipdeck_only_gets_lists_and_watches() {
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let mut log: Vec<Seen> = Vec::new();
    let (client, api) = client();
    let server = serve(api, seen_tx);
    let kube = KubeCluster::new(client.clone(), NS, vec![(target().clone(), objects(false))]);
    kube.start();

    // What the host does when it starts read-only: the workload and live watches, the rollouts
    // another console left, the Argo watch, the task that follows rollouts driven elsewhere.
    kube.start_live();
    let store = Arc::new(crate::store::Store::open_in_memory().unwrap());
    let taken = crate::host::take_over_rollouts(&store, &kube).await;
    assert_eq!(taken, vec![left_behind().id], "the rollout another console left is read");
    assert_eq!(store.mark_interrupted().unwrap().len(), 1, "and shows as interrupted");
    let engine = engine_over(&kube, store.clone(), true);
    let argo = Arc::new(crate::cluster::kube::argo_watch::ArgoWatches::default());
    argo.watch("prod", client.clone(), NS);
    let estate = Arc::new(crate::config::Estate::parse(ESTATE, "kubernetes estate").unwrap());
    let local = crate::engine::fake::FakeCluster::new(&estate, &BTreeMap::new());
    let routed = Arc::new(EstateCluster::new(local, BTreeMap::new()));
    let connector = Box::new(super::argo_watch::OneContext(std::sync::Mutex::new(Some(client.clone()))));
    let switcher = crate::cluster::kube::switch::Switcher::new(estate, routed, connector).with_argo(argo.clone());
    engine.attach_kube(Arc::new(switcher));
    let flags = Arc::new(crate::flags::KubeFlagStore::new(client.clone(), NS, "flags"));
    engine.attach_flags(flags.clone());
    let current = crate::cluster::kube::switch::CurrentClusters::default();
    current.set("prod", &kube);
    let audit = crate::host::spawn_kube_audit(&engine, current, true);
    assert!(audit.is_none(), "no rollout annotation or Event is written read-only");
    let follow = crate::host::spawn_follow_rollouts(&engine, vec![target().clone()]);

    // Every watch listed and then watched.
    let mut argo_view = argo.get("prod").map(|w| w.subscribe()).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while argo_view.borrow_and_update().status != crate::cluster::kube::argo_watch::ArgoStatus::Watching {
        let changed = tokio::time::timeout_at(deadline, argo_view.changed()).await;
        assert!(matches!(changed, Ok(Ok(()))), "the Argo watch never listed: {:?}", argo_view.borrow());
    }
    let watched = [
        (format!("/apis/apps/v1/namespaces/{NS}/deployments"), Some("shipdeck.dev/rollout-state=true")),
        (format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"), None),
        (format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"), None),
        (format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts"), None),
        (format!("/apis/apps/v1/namespaces/{NS}/replicasets"), Some("rollouts-pod-template-hash")),
        (format!("/api/v1/namespaces/{NS}/pods"), None),
        (format!("/api/v1/namespaces/{NS}/services"), None),
    ];
    for (path, labels) in &watched {
        until_seen(&mut seen, &mut log, path, |l| listed_then_watched(l, path, *labels)).await;
    }
    let news = kube.news(target());
    assert_eq!(news.rollout.map(|r| r.id), Some(left_behind().id), "the live watch shows the rollout left behind");

    // The console's reads: state, watch, the snapshot it draws, the flags (and their watch).
    let state = kube.state(target()).await.unwrap();
    assert_eq!(state.replicas("1.0.0").ready, 2);
    assert_eq!(state.routing, crate::cluster::Routing::all_to("1.0.0"));
    let rx = kube.watch(target()).await.unwrap();
    assert_eq!(rx.borrow().replicas("1.0.0").desired, 2);
    let snapshot = crate::tui::snapshot::load(&engine, Some(target()), None, 10).await;
    let web = snapshot.workload(target()).unwrap();
    assert_eq!(web.state.replicas("1.0.0").ready, 2);
    assert_eq!(web.release.as_ref().map(|r| r.id.as_str()), Some(left_behind().id.as_str()));
    assert_eq!(engine.argo_views().get("prod").map(|v| v.status.clone()), Some(ArgoStatus::Watching));
    assert!(flags.load().await.unwrap().0.views().iter().any(|f| f.key == "dark-mode"));
    assert!(engine.flag_set().await.is_some());
    let featureflags = format!("/apis/core.openfeature.dev/v1beta1/namespaces/{NS}/featureflags");
    until_seen(&mut seen, &mut log, "the FeatureFlag watch", |l| listed_then_watched(l, &featureflags, None)).await;
    // `shipdeck argo list`.
    let argo_list = crate::cluster::kube::argo::ArgoRollouts::new(client.clone(), NS, "prod");
    assert!(argo_list.list().await.unwrap().is_empty());

    // Every change is refused before it reaches the cluster, the lease included (a resume of
    // the interrupted rollout would claim it), and the Argo Rollouts actions.
    let mut events = engine.subscribe();
    let (app, env) = ("web".to_string(), "prod".to_string());
    let mut refused = vec![
        Command::Deploy { app: app.clone(), env: env.clone(), version: "1.1.0".into(), strategy: None, flags: vec![] },
        Command::Resume { app: app.clone(), env: env.clone(), full: false },
        Command::Pause { app: app.clone(), env: env.clone() },
        Command::Abort { app: app.clone(), env: env.clone() },
        Command::Retry { app: app.clone(), env: env.clone() },
        Command::Rollback { app: app.clone(), env: env.clone(), to: None },
        Command::Restart { app: app.clone(), env: env.clone(), version: None },
        Command::SetFlag { key: "dark-mode".into(), enabled: false },
    ];
    use crate::cluster::kube::argo::ArgoAction;
    for action in [ArgoAction::Promote, ArgoAction::PromoteFull, ArgoAction::Abort, ArgoAction::Retry, ArgoAction::Undo]
    {
        refused.push(Command::Argo { env: env.clone(), rollout: "web".into(), action, to_revision: None });
    }
    for command in refused {
        let name = command.name();
        let err = engine.execute("alice", command).await.unwrap_err().to_string();
        assert!(err.contains("read-only"), "{name}: {err}");
    }
    // A release event (say from another process's relay) writes nothing either.
    engine.publish(Event::Release { release: Box::new(left_behind()), cause: "test".into() });
    assert!(matches!(events.try_recv(), Ok(Event::Release { .. })));

    // Whatever would still write has a minute of the paused clock to get there: time moves only
    // while every task is idle, so a write any of them would send arrives before this ends.
    let quiet_until = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Ok(Some(s)) = tokio::time::timeout_at(quiet_until, seen.recv()).await {
        log.push(s);
    }
    server.abort();
    follow.into_iter().for_each(|f| f.abort());
    let writes: Vec<_> = log.iter().filter(|s| s.method != "GET").collect();
    assert!(writes.is_empty(), "a read-only shipdeck sent {writes:?}");
    assert!(log.iter().any(|s| s.path == deployments("web")), "the rollout annotation was read");
}
