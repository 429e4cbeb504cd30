//! The host's side of Kubernetes: the environments' clusters made at start, rollouts other
//! consoles left or drive (copied into the store), and the engine's news mirrored into the
//! cluster (the rollout annotation, audit Events).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cluster::kube::KubeCluster;
use crate::cluster::kube::record::AuditEvent;
use crate::cluster::kube::switch::CurrentClusters;
use crate::cluster::routed::UnavailableCluster;
use crate::cluster::{Cluster, Target};
use crate::config::Estate;
use crate::engine::{Engine, Event};
use crate::model::Release;
use crate::store::{Store, StoreError};

/// A cluster per Kubernetes environment (one that cannot be used says why on every call), and
/// the ones that connected.
pub(super) async fn kubernetes_clusters(
    estate: &Estate,
) -> (BTreeMap<String, Arc<dyn Cluster>>, BTreeMap<String, Arc<KubeCluster>>) {
    let (mut by_env, mut connected) = (BTreeMap::new(), BTreeMap::new());
    for env in estate.environments.iter().filter(|e| !e.cluster.is_local()) {
        let apps = estate
            .targets()
            .into_iter()
            .filter(|(t, _)| t.env == env.name)
            .map(|(t, s)| {
                let objects = s.kubernetes.resolve(&s.name);
                (t, objects)
            })
            .collect();
        let cluster: Arc<dyn Cluster> = match crate::cluster::kube::connect(env, apps, None).await {
            Ok(k) => {
                connected.insert(env.name.clone(), k.clone());
                k
            }
            Err(message) => {
                tracing::warn!("{message}");
                Arc::new(UnavailableCluster { message })
            }
        };
        by_env.insert(env.name.clone(), cluster);
    }
    (by_env, connected)
}

/// Copies into the store the rollouts the cluster's `shipdeck.dev/rollout` annotations hold that
/// the store does not have, or has older: what another console (or this one, elsewhere) left.
/// An unfinished one is then marked interrupted like any other, so it can be resumed or aborted
/// here. Returns the release ids taken.
pub(crate) async fn take_over_rollouts(store: &Store, cluster: &KubeCluster) -> Vec<String> {
    let mut taken = Vec::new();
    for t in cluster.targets() {
        let release = match cluster.read_rollout(t).await {
            Ok(Some(r)) if r.env == t.env && r.app == t.app => r,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!("reading the rollout of {t}: {e}");
                continue;
            }
        };
        match store_if_newer(store, &release) {
            Ok(true) => taken.push(release.id),
            Ok(false) => {}
            Err(e) => tracing::warn!("storing rollout {} of {t}: {e}", release.id),
        }
    }
    taken
}

/// Store `release` (read from the cluster) if the store lacks it or has an older state of it.
fn store_if_newer(store: &Store, release: &Release) -> Result<bool, StoreError> {
    match store.release(&release.id)? {
        None => store.insert_release(release, "taken from the cluster's shipdeck.dev/rollout annotation")?,
        Some(mine) if mine.updated_at < release.updated_at => store.save_release(release)?,
        Some(_) => return Ok(false),
    }
    Ok(true)
}

/// Copies into the store, as they change, the rollouts the Kubernetes environments' watches
/// show in the `shipdeck.dev/rollout` annotations (what another console driving them right now
/// writes at every step), so this console's panes follow them within a second. A release this
/// engine drives itself is left alone: its state is this process's. Returns the release ids
/// taken.
pub(crate) fn follow_rollouts(engine: &Engine, targets: &[Target]) -> Vec<String> {
    let mut taken = Vec::new();
    for t in targets {
        let Some(release) = engine.cluster().news(t).rollout else { continue };
        if engine.is_running(t) {
            continue;
        }
        match store_if_newer(engine.store(), &release) {
            Ok(true) => taken.push(release.id),
            Ok(false) => {}
            Err(e) => tracing::warn!("storing rollout {} of {t}: {e}", release.id),
        }
    }
    taken
}

/// Runs [`follow_rollouts`] whenever the clusters' watches bring news, not on a timer.
pub(crate) fn spawn_follow_rollouts(engine: &Engine, targets: Vec<Target>) -> Option<tokio::task::JoinHandle<()>> {
    if targets.is_empty() {
        return None;
    }
    let engine = engine.clone();
    Some(tokio::spawn(async move {
        loop {
            engine.cluster().news_changed().await;
            // The store is SQLite: its reads and writes do not belong on the runtime's threads.
            let (e, t) = (engine.clone(), targets.clone());
            match tokio::task::spawn_blocking(move || follow_rollouts(&e, &t)).await {
                Ok(taken) if !taken.is_empty() => {
                    tracing::debug!("followed rollouts driven elsewhere: {}", taken.join(", "))
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("following rollouts driven elsewhere: {e}"),
            }
        }
    }))
}

/// Mirrors the engine's news into the Kubernetes environments: each release's state (plan,
/// cursor, status) into the `shipdeck.dev/rollout` annotation of the app's base Deployment,
/// and each release change and step as a Kubernetes Event on it. Best effort: a write that
/// fails is logged, never holds a release back. Nothing with `--readonly`: it writes.
/// Each write goes to the cluster the environment uses *now* (`:ctx`/`:ns` move it).
pub(crate) fn spawn_kube_audit(
    engine: &Engine,
    clusters: CurrentClusters,
    any_kube: bool,
) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::sync::broadcast::error::RecvError;
    if !any_kube || engine.readonly() {
        return None;
    }
    let mut events = engine.subscribe();
    let reporter = crate::cluster::kube::live::holder_identity();
    Some(tokio::spawn(async move {
        let mut targets: BTreeMap<String, Target> = BTreeMap::new();
        loop {
            let (target, event) = match events.recv().await {
                Ok(Event::Release { release, cause }) => {
                    let t = Target::new(&release.env, &release.app);
                    let Some(k) = clusters.get(&t.env) else { continue };
                    targets.insert(release.id.clone(), t.clone());
                    if let Err(e) = k.record_rollout(&t, &release).await {
                        tracing::warn!("{e}");
                    }
                    (t, AuditEvent::for_release(&release, &cause))
                }
                Ok(Event::Step { release_id, index, total, description }) => {
                    let Some(t) = targets.get(&release_id).cloned() else { continue };
                    let note = format!("{release_id} step {}/{total}: {description}", index + 1);
                    (t, AuditEvent { reason: "Step".into(), action: "Step".into(), note, warning: false })
                }
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            };
            if let Some(k) = clusters.get(&target.env)
                && let Err(e) = k.record_event(&target, &reporter, &event).await
            {
                tracing::warn!("{e}");
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ReleaseKind, Status, Step, StrategyKind};
    use std::time::Duration;

    fn release(cursor: usize, updated_secs: i64) -> Release {
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
            status: Status::Paused,
            plan: vec![Step::SetWeight { weight: 10 }, Step::Pause { seconds: None }, Step::Promote],
            cursor,
            requested_by: "bob".into(),
            created_at: at,
            updated_at: at + chrono::Duration::seconds(updated_secs),
            reason: Some("paused until resumed".into()),
            interrupted: false,
            weight: 10,
        }
    }

    /// A cluster whose API server answers each GET of the base Deployment with `annotation`.
    fn cluster_with(annotation: Release) -> (Arc<KubeCluster>, tokio::task::JoinHandle<()>) {
        use ::kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let objects = crate::model::KubernetesApp::default().resolve("web");
        let cluster =
            KubeCluster::new(::kube::Client::new(service, "shop"), "shop", vec![(Target::new("prod", "web"), objects)]);
        let server = tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                assert_eq!(
                    (request.method().as_str(), request.uri().path()),
                    ("GET", "/apis/apps/v1/namespaces/shop/deployments/web")
                );
                let text = serde_json::to_string(&annotation).unwrap_or_default();
                let body = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "annotations": {"shipdeck.dev/rollout": text}}});
                respond.send_response(http::Response::new(Body::from(body.to_string().into_bytes())));
            }
        });
        (cluster, server)
    }

    #[tokio::test]
    async fn a_rollout_another_console_left_in_the_cluster_is_taken_over_as_interrupted() {
        let store = Store::open_in_memory().unwrap();
        let (cluster, server) = cluster_with(release(1, 60));
        assert_eq!(take_over_rollouts(&store, &cluster).await, vec!["prod-web-1.1.0-20270115080000".to_string()]);
        let interrupted = store.mark_interrupted().unwrap();
        assert_eq!(interrupted.len(), 1);
        assert_eq!((interrupted[0].cursor, interrupted[0].requested_by.as_str()), (1, "bob"));
        // Read again: nothing newer, nothing taken.
        assert!(take_over_rollouts(&store, &cluster).await.is_empty());
        server.abort();
        // A console that went further since is taken as the newer state.
        let (cluster, server) = cluster_with(release(2, 120));
        assert_eq!(take_over_rollouts(&store, &cluster).await.len(), 1);
        assert_eq!(store.release("prod-web-1.1.0-20270115080000").unwrap().unwrap().cursor, 2);
        server.abort();
    }

    /// A console that follows another's rollout: the fake API server answers the live watches
    /// with alice's lease and the base's rollout at step 2, then changes the annotation to step 3.
    #[tokio::test(start_paused = true)]
    async fn a_rollout_another_console_drives_shows_in_the_snapshot_as_it_moves_and_is_left_alone() {
        use ::kube::client::Body;
        let text = "[[environments]]\nname = \"prod\"\ncluster = { kubernetes = { namespace = \"shop\" } }\n\
                    [[apps]]\nname = \"web\"\n[[apps.versions]]\nversion = \"1.0.0\"\n[[apps.versions]]\nversion = \"1.1.0\"\n";
        let estate = Arc::new(Estate::parse(text, "t.toml").unwrap());
        let (service, mut handle) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let objects = crate::model::KubernetesApp::default().resolve("web");
        let t = Target::new("prod", "web");
        let kube = KubeCluster::new(::kube::Client::new(service, "shop"), "shop", vec![(t.clone(), objects)]);
        kube.start_live();
        let holder = "alice (pid 4711) on host-x";
        let renewed = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let lease = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "shipdeck-web", "namespace": "shop", "resourceVersion": "5"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed}});
        let base = |r: &Release| {
            serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "9",
                "labels": {"shipdeck.dev/rollout-state": "true"},
                "annotations": {"shipdeck.dev/rollout": serde_json::to_string(r).unwrap_or_default()}}})
        };
        let mut moving = release(1, 60);
        moving.status = Status::InProgress;
        moving.reason = None;
        let (next_tx, mut next_rx) = tokio::sync::mpsc::unbounded_channel::<Release>();
        let first = base(&moving);
        let server = tokio::spawn(async move {
            let reply = |respond: tower_test::mock::SendResponse<http::Response<Body>>, body: String| {
                respond.send_response(http::Response::new(Body::from(body.into_bytes())))
            };
            let list = |items: Vec<serde_json::Value>| {
                serde_json::json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "10"}, "items": items})
                    .to_string()
            };
            let mut held = Vec::new();
            while let Some((request, respond)) = handle.next_request().await {
                let watch = request.uri().query().is_some_and(|q| q.contains("watch=true"));
                match (request.uri().path().rsplit('/').next(), watch) {
                    (Some("leases"), false) => reply(respond, list(vec![lease.clone()])),
                    (Some("deployments"), false) => reply(respond, list(vec![first.clone()])),
                    (Some("events"), false) => reply(respond, list(vec![])),
                    // The bases' watch: the next change the test makes.
                    (Some("deployments"), true) => match next_rx.recv().await {
                        Some(r) => {
                            reply(respond, format!("{}\n", serde_json::json!({"type": "MODIFIED", "object": base(&r)})))
                        }
                        None => held.push(respond),
                    },
                    _ => held.push(respond),
                }
            }
        });
        let store = Arc::new(Store::open_in_memory().unwrap());
        let metrics = crate::engine::fake::FakeCluster::new(&estate, &Default::default());
        let engine = Engine::new(estate.clone(), kube.clone(), metrics, store.clone(), false);
        let follow = spawn_follow_rollouts(&engine, vec![t.clone()]);

        // Until the snapshot shows step `cursor + 1`, driven elsewhere. There is no event to wait
        // on: the following task writes what it takes into the store, which announces nothing,
        // and waiting on the cluster's news here would take the wake-up that task needs. So the
        // snapshot is read again each time every other task is idle — with the clock paused,
        // `sleep` returns only then, and time moves only then — for at most 30 s of that clock.
        let shown = |cursor: usize| {
            let engine = engine.clone();
            let t = t.clone();
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let snap = crate::tui::snapshot::load(&engine, Some(&t), None, 10).await;
                    let w = snap.workload(&t).cloned().unwrap_or_default();
                    if w.release.as_ref().is_some_and(|r| r.cursor == cursor) && w.driven_elsewhere().is_some() {
                        return w;
                    }
                    assert!(tokio::time::Instant::now() < deadline, "step {} never showed: {w:?}", cursor + 1);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let w = shown(1).await;
        let r = w.release.unwrap();
        assert_eq!((r.status, r.interrupted), (Status::InProgress, false), "driven, not interrupted");
        assert_eq!(w.driver.map(|d| d.holder), Some(holder.to_string()));

        // The other console moves on: this one follows.
        let mut on = moving.clone();
        (on.cursor, on.updated_at) = (2, moving.updated_at + chrono::Duration::seconds(5));
        next_tx.send(on).unwrap();
        shown(2).await;

        // And leaves it alone: no abort, resume or pause from here while alice renews.
        for command in [
            crate::engine::Command::Abort { app: "web".into(), env: "prod".into() },
            crate::engine::Command::Resume { app: "web".into(), env: "prod".into(), full: false },
            crate::engine::Command::Pause { app: "web".into(), env: "prod".into() },
        ] {
            let err = engine.execute("bob", command).await.unwrap_err().to_string();
            assert!(err.contains(&format!("{holder} is driving release {}", moving.id)), "{err}");
        }
        assert_eq!(store.release(&moving.id).unwrap().unwrap().cursor, 2, "nothing written here");
        follow.into_iter().for_each(|f| f.abort());
        server.abort();
    }
}
