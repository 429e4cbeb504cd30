//! `--readonly` needs only get/list/watch: everything a read-only shipdeck does against a
//! Kubernetes namespace — the watches, the rollouts another console left, the console's
//! snapshot, `argo list`, a FeatureFlag's reads, and every command it refuses — sends GETs only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::*;
use crate::cluster::Cluster;
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

/// Plays an API server that has the app at 1.0.0, answers every GET, holds every watch open, and
/// records every request; anything but a GET is answered 405 (and fails the test).
fn serve(mut api: ApiServer, seen: Arc<Mutex<Vec<(String, String)>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let x = api.next().await;
            if let Ok(mut all) = seen.lock() {
                all.push((x.method.clone(), x.path.clone()));
            }
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
            let mut base = base_deployment();
            base["metadata"]["annotations"] =
                json!({"shipdeck.dev/rollout": serde_json::to_string(&left_behind()).unwrap_or_default()});
            let flags = json!({
                "apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlag",
                "metadata": {"name": "flags", "namespace": NS, "resourceVersion": "9"},
                "spec": {"flagSpec": {"flags": {"dark-mode": {"state": "ENABLED",
                    "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}},
            });
            let answer = match x.path.as_str() {
                p if p == format!("/apis/apps/v1/namespaces/{NS}/deployments") => list("Deployment", vec![version]),
                p if p == format!("/api/v1/namespaces/{NS}/pods") => list("Pod", vec![]),
                p if p == format!("/api/v1/namespaces/{NS}/services") => list("Service", vec![service]),
                p if p == deployments("web") => base,
                p if p == format!("/apis/core.openfeature.dev/v1beta1/namespaces/{NS}/featureflags/flags") => flags,
                p if p == format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts") => list("Rollout", vec![]),
                p if p == format!("/apis/apps/v1/namespaces/{NS}/replicasets") => list("ReplicaSet", vec![]),
                _ => {
                    x.reply(404, status(404, "NotFound", "not here"));
                    continue;
                }
            };
            x.reply(200, answer);
        }
    })
}

/// An engine whose environment `prod` runs on `kube` (`dev` on the in-memory cluster).
pub(super) fn engine_over(kube: &Arc<KubeCluster>, store: Arc<crate::store::Store>, readonly: bool) -> Engine {
    let estate = Arc::new(crate::config::Estate::parse(ESTATE, "kubernetes estate").unwrap());
    let local = crate::engine::fake::FakeCluster::new(&estate, &BTreeMap::new());
    let by_env: BTreeMap<String, Arc<dyn Cluster>> = [("prod".to_string(), kube.clone() as Arc<dyn Cluster>)].into();
    let routed = Arc::new(EstateCluster::new(local.clone(), by_env));
    Engine::new(estate, routed, local, store, readonly)
}

#[tokio::test]
async fn a_readonly_shipdeck_only_gets_lists_and_watches() {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let (client, api) = client();
    let server = serve(api, seen.clone());
    let kube = KubeCluster::new(client.clone(), NS, vec![(target().clone(), objects(false))]);
    kube.start();

    // What the host does when it starts read-only.
    let store = Arc::new(crate::store::Store::open_in_memory().unwrap());
    let taken = crate::host::take_over_rollouts(&store, &kube).await;
    assert_eq!(taken, vec![left_behind().id], "the rollout another console left is read");
    assert_eq!(store.mark_interrupted().unwrap().len(), 1, "and shows as interrupted");
    let engine = engine_over(&kube, store.clone(), true);
    let flags = Arc::new(crate::flags::KubeFlagStore::new(client.clone(), NS, "flags"));
    engine.attach_flags(flags.clone());
    let current = crate::cluster::kube::switch::CurrentClusters::default();
    current.set("prod", &kube);
    let audit = crate::host::spawn_kube_audit(&engine, current, true);
    assert!(audit.is_none(), "no rollout annotation or Event is written read-only");

    // The console's reads: state, watch, the snapshot it draws, the flags.
    let state = kube.state(target()).await.unwrap();
    assert_eq!(state.replicas("1.0.0").ready, 2);
    assert_eq!(state.routing, crate::cluster::Routing::all_to("1.0.0"));
    let rx = kube.watch(target()).await.unwrap();
    assert_eq!(rx.borrow().replicas("1.0.0").desired, 2);
    let snapshot = crate::tui::snapshot::load(&engine, Some(target()), None, 10).await;
    let web = snapshot.workload(target()).unwrap();
    assert_eq!(web.state.replicas("1.0.0").ready, 2);
    assert_eq!(web.release.as_ref().map(|r| r.id.as_str()), Some(left_behind().id.as_str()));
    assert!(flags.load().await.unwrap().0.views().iter().any(|f| f.key == "dark-mode"));
    assert!(engine.flag_set().await.is_some());
    // `shipdeck argo list`.
    let argo = crate::cluster::kube::argo::ArgoRollouts::new(client.clone(), NS, "prod");
    assert!(argo.list().await.unwrap().is_empty());

    // Every change is refused before it reaches the cluster, the lease included (a resume of
    // the interrupted rollout would claim it).
    let mut events = engine.subscribe();
    let (app, env) = ("web".to_string(), "prod".to_string());
    let refused = [
        Command::Deploy { app: app.clone(), env: env.clone(), version: "1.1.0".into(), strategy: None, flags: vec![] },
        Command::Resume { app: app.clone(), env: env.clone(), full: false },
        Command::Pause { app: app.clone(), env: env.clone() },
        Command::Abort { app: app.clone(), env: env.clone() },
        Command::Retry { app: app.clone(), env: env.clone() },
        Command::Rollback { app: app.clone(), env: env.clone(), to: None },
        Command::Restart { app: app.clone(), env: env.clone(), version: None },
        Command::SetFlag { key: "dark-mode".into(), enabled: false },
    ];
    for command in refused {
        let name = command.name();
        let err = engine.execute("alice", command).await.unwrap_err().to_string();
        assert!(err.contains("read-only"), "{name}: {err}");
    }
    // A release event (say from another process's relay) writes nothing either.
    engine.publish(Event::Release { release: Box::new(left_behind()), cause: "test".into() });
    assert!(matches!(events.try_recv(), Ok(Event::Release { .. })));

    // Let anything that would still write get there.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    server.abort();
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let writes: Vec<_> = seen.iter().filter(|(m, _)| m != "GET").collect();
    assert!(writes.is_empty(), "a read-only shipdeck sent {writes:?}");
    for resource in ["deployments", "pods", "services"] {
        assert!(
            seen.iter().any(|(_, p)| p.ends_with(&format!("/namespaces/{NS}/{resource}"))),
            "no list of {resource}"
        );
    }
    assert!(seen.iter().any(|(_, p)| p == &deployments("web")), "the rollout annotation was read");
}
