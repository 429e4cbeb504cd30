//! `:ctx` and `:ns`: a switch makes a new cluster for the environment, against the context's
//! API server and in the namespace asked for, and keeps the old one when the new cannot be used.

use std::sync::Mutex;

use ::kube::Client;
use ::kube::client::Body;
use async_trait::async_trait;
use http::{Request, Response};
use tokio::sync::mpsc;

use super::*;
use crate::cluster::kube::switch::{Connector, KubePlace, Switcher};
use crate::cluster::routed::{EstateCluster, UnavailableCluster};
use crate::cluster::{Cluster, ClusterError};

/// Two contexts; each client it makes talks to a fake API server the test receives.
struct Contexts {
    servers: mpsc::UnboundedSender<(String, ApiServer)>,
    asked: Mutex<Vec<String>>,
}

#[async_trait]
impl Connector for Contexts {
    fn contexts(&self) -> (Vec<String>, Option<String>) {
        (vec!["kind-a".into(), "kind-b".into()], Some("kind-a".into()))
    }

    fn namespace_of(&self, _: &str) -> Option<String> {
        None
    }

    async fn client(&self, context: &str) -> Result<Client, String> {
        self.asked.lock().unwrap().push(context.to_string());
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let _ = self.servers.send((context.to_string(), ApiServer { handle, held: Vec::new() }));
        Ok(Client::new(service, "default"))
    }
}

const ESTATE: &str = "[[environments]]\nname = \"dev\"\n\n[[environments]]\nname = \"prod\"\n\
    cluster = { kubernetes = { context = \"kind-a\", namespace = \"shop\" } }\n\n\
    [[apps]]\nname = \"web\"\n[[apps.versions]]\nversion = \"1.0.0\"\n";

fn switcher() -> (Arc<Switcher>, Arc<EstateCluster>, mpsc::UnboundedReceiver<(String, ApiServer)>) {
    let estate = Arc::new(crate::config::Estate::parse(ESTATE, "estate.toml").unwrap());
    let old: Arc<dyn Cluster> = Arc::new(UnavailableCluster { message: "the cluster shipdeck started with".into() });
    let local: Arc<dyn Cluster> = Arc::new(UnavailableCluster { message: "local".into() });
    let routed = Arc::new(EstateCluster::new(local, [("prod".to_string(), old)].into_iter().collect()));
    let (tx, rx) = mpsc::unbounded_channel();
    let connector = Box::new(Contexts { servers: tx, asked: Mutex::new(Vec::new()) });
    (Arc::new(Switcher::new(estate, routed.clone(), connector)), routed, rx)
}

fn place(context: &str, namespace: &str) -> KubePlace {
    KubePlace { context: context.into(), namespace: namespace.into() }
}

/// Answers the version check, then the four watches' lists (empty), which must all be in
/// `namespace`; the watches themselves are held open.
async fn serve_new_cluster(api: &mut ApiServer, namespace: &str) {
    api.expect("GET", "/version").await.reply(200, json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0"}));
    let mut listed = Vec::new();
    while listed.len() < 4 {
        let x = api.next().await;
        assert!(x.path.contains(&format!("/namespaces/{namespace}/")), "{} is not in {namespace}", x.path);
        if x.is_watch() {
            x.hold(api);
            continue;
        }
        listed.push(x.path.rsplit('/').next().unwrap_or_default().to_string());
        x.reply(200, json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "5"}, "items": []}));
    }
    listed.sort();
    assert_eq!(listed, ["deployments", "pods", "replicasets", "services"]);
}

#[tokio::test]
async fn ctx_rebuilds_the_environments_cluster_on_the_new_context_and_ns_moves_it_to_another_namespace() {
    let (switcher, routed, mut servers) = switcher();
    let web = Target::new("prod", "web");
    assert_eq!(switcher.places().get("prod"), Some(&place("kind-a", "shop")));
    assert_eq!(switcher.contexts(), ["kind-a", "kind-b"]);
    assert!(matches!(routed.state(&web).await, Err(ClusterError::Unreachable { .. })), "the cluster it started with");

    let s = switcher.clone();
    let switched = tokio::spawn(async move { s.switch("prod", Some("kind-b".into()), None).await });
    let (context, mut api) = servers.recv().await.unwrap();
    assert_eq!(context, "kind-b");
    serve_new_cluster(&mut api, "shop").await;
    assert_eq!(switched.await.unwrap(), Ok(place("kind-b", "shop")), ":ctx keeps the namespace");
    assert_eq!(switcher.places().get("prod"), Some(&place("kind-b", "shop")));
    let state = routed.state(&web).await.expect("prod's state now comes from kind-b's watches");
    assert!(state.versions.is_empty());

    let s = switcher.clone();
    let switched = tokio::spawn(async move { s.switch("prod", None, Some("shop-canary".into())).await });
    let (context, mut api2) = servers.recv().await.unwrap();
    assert_eq!(context, "kind-b", ":ns keeps the context");
    serve_new_cluster(&mut api2, "shop-canary").await;
    assert_eq!(switched.await.unwrap(), Ok(place("kind-b", "shop-canary")));
    // The first new cluster is gone: its watches stopped, nothing more reaches its server.
    drop(api);
}

#[tokio::test]
async fn a_switch_that_cannot_work_leaves_the_environment_where_it_was() {
    let (switcher, routed, mut servers) = switcher();
    let web = Target::new("prod", "web");

    let e = switcher.switch("prod", Some("gke-prod".into()), None).await.unwrap_err();
    assert!(e.contains("no context `gke-prod`") && e.contains("kind-a, kind-b"), "{e}");
    let e = switcher.switch("dev", Some("kind-b".into()), None).await.unwrap_err();
    assert!(e.contains("dev runs on the local cluster") && e.contains("prod"), "{e}");
    let e = switcher.switch("prod", None, Some("Not_A_Namespace".into())).await.unwrap_err();
    assert!(e.contains("not a namespace name"), "{e}");

    // The API server of the new context answers 403 to the version check: nothing moves.
    let s = switcher.clone();
    let switched = tokio::spawn(async move { s.switch("prod", Some("kind-b".into()), None).await });
    let (_, mut api) = servers.recv().await.unwrap();
    api.expect("GET", "/version").await.reply(403, status(403, "Forbidden", "forbidden"));
    let e = switched.await.unwrap().unwrap_err();
    assert!(e.contains("prod stays where it was") && e.contains("context kind-b namespace shop"), "{e}");
    assert_eq!(switcher.places().get("prod"), Some(&place("kind-a", "shop")));
    assert!(matches!(routed.state(&web).await, Err(ClusterError::Unreachable { .. })), "still the old cluster");
}

/// The writers that follow the engine (rollout annotation, audit Events) look the environment's
/// cluster up at each write: after `:ns` they write to the new namespace, and the cluster
/// switched away from is not kept alive by them.
#[tokio::test]
async fn the_audit_writers_follow_a_switch_and_do_not_keep_the_old_cluster() {
    let (switcher, _routed, mut servers) = switcher();
    let current = crate::cluster::kube::switch::CurrentClusters::default();
    let switcher = Arc::new(Arc::into_inner(switcher).unwrap().with_current(current.clone()));
    assert!(current.get("prod").is_none(), "prod did not connect at start");

    let s = switcher.clone();
    let switched = tokio::spawn(async move { s.switch("prod", Some("kind-b".into()), None).await });
    let (_, mut api) = servers.recv().await.unwrap();
    serve_new_cluster(&mut api, "shop").await;
    switched.await.unwrap().unwrap();
    let first = Arc::downgrade(&current.get("prod").expect("the audit finds prod's cluster once it connected"));
    assert_eq!(first.upgrade().map(|k| k.namespace().to_string()).as_deref(), Some("shop"));

    let s = switcher.clone();
    let switched = tokio::spawn(async move { s.switch("prod", None, Some("shop-canary".into())).await });
    let (_, mut api2) = servers.recv().await.unwrap();
    serve_new_cluster(&mut api2, "shop-canary").await;
    switched.await.unwrap().unwrap();
    assert_eq!(current.get("prod").map(|k| k.namespace().to_string()).as_deref(), Some("shop-canary"));
    assert!(first.upgrade().is_none(), "the cluster switched away from is dropped, its watches with it");
    drop(api);
}
