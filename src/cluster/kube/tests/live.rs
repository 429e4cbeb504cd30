//! The live watches: who holds each app's Lease, the rollout the base Deployments carry, and the
//! namespace's Events about the apps' objects — their list and watch requests, and what the
//! cluster then shows.

use chrono::{SecondsFormat, Utc};
use serde_json::json;

use super::*;
use crate::cluster::Cluster;
use crate::model::{Release, ReleaseKind, Status, Step, StrategyKind};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/shop/leases";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

fn micro(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn lease(holder: &str, renewed: chrono::DateTime<Utc>) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "shipdeck-web", "namespace": NS, "resourceVersion": "12",
            "labels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/managed-by": "shipdeck"}},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": micro(renewed),
            "acquireTime": micro(renewed)},
    })
}

fn rollout(cursor: usize) -> Release {
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
        plan: vec![Step::SetWeight { weight: 10 }, Step::SetWeight { weight: 50 }, Step::Promote],
        cursor,
        requested_by: "alice".into(),
        created_at: at,
        updated_at: at + chrono::Duration::seconds(cursor as i64),
        reason: None,
        interrupted: false,
        weight: 10,
    }
}

/// The base Deployment's metadata, as a metadata-only watch sends it.
fn base_meta(r: &Release) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": "30",
            "labels": {"shipdeck.dev/rollout-state": "true"},
            "annotations": {"shipdeck.dev/rollout": serde_json::to_string(r).unwrap()}},
    })
}

/// An `events.k8s.io/v1` Event about `kind/name`; `series` the way the API shows a core
/// Event that repeated (`deprecatedCount`, `deprecatedLastTimestamp`, no `eventTime`).
fn event(name: &str, kind: &str, object: &str, reason: &str, warning: bool, repeated: Option<i32>) -> Value {
    let mut e = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "40"},
        "reason": reason, "note": format!("{reason} of {object}"),
        "type": if warning { "Warning" } else { "Normal" },
        "regarding": {"kind": kind, "name": object, "namespace": NS},
        "reportingController": "kubelet", "reportingInstance": "node-1",
    });
    match repeated {
        Some(n) => {
            e["deprecatedCount"] = json!(n);
            e["deprecatedLastTimestamp"] = json!(Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true));
        }
        None => e["eventTime"] = json!(micro(Utc::now())),
    }
    e
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "100"}, "items": items})
}

/// Answers the three lists, asserting each request, then the three watches, asserting theirs;
/// the watches then send `leases`, `bases` and `events` as ADDED and end. Returns once each
/// watcher asked to watch again (held: a quiet watch): a watcher asks only after it handed on
/// the last line it was sent, so by then the live watches hold everything sent.
async fn serve(api: &mut ApiServer, leases: Vec<Value>, bases: Vec<Value>, events: Vec<Value>) {
    let (mut listed, mut watching) = (Vec::new(), Vec::new());
    while watching.len() < 3 {
        let x = api.next().await;
        let selector = x.query.get("labelSelector").map(String::as_str);
        assert_eq!(x.method, "GET", "{}", x.path);
        if !x.is_watch() {
            listed.push(x.path.clone());
            assert_eq!(x.query.get("limit").map(String::as_str), Some("500"), "lists are paged: {}", x.path);
            match x.path.as_str() {
                LEASES => {
                    assert_eq!(selector, Some("app.kubernetes.io/managed-by=shipdeck"), "only shipdeck's Leases");
                    x.reply(200, list("LeaseList", "coordination.k8s.io/v1", vec![]));
                }
                DEPLOYMENTS => {
                    assert_eq!(selector, Some("shipdeck.dev/rollout-state=true"), "only the bases with a rollout");
                    assert_eq!(x.accept.as_deref(), Some(METADATA_LIST), "metadata only: never the bases' specs");
                    x.reply(200, list("PartialObjectMetadataList", "meta.k8s.io/v1", vec![]));
                }
                EVENTS => {
                    assert_eq!(selector, None, "Events carry no labels");
                    x.reply(200, list("EventList", "events.k8s.io/v1", vec![]));
                }
                other => panic!("unexpected list {other} {:?}", x.query),
            }
            continue;
        }
        assert!(listed.contains(&x.path), "{} watched before it was listed", x.path);
        assert_eq!(x.query.get("resourceVersion").map(String::as_str), Some("100"), "{}: from the list", x.path);
        assert_eq!(x.query.get("allowWatchBookmarks").map(String::as_str), Some("true"));
        assert!(x.query.contains_key("timeoutSeconds"), "{}: a watch the server ends and the client renews", x.path);
        watching.push(x.path.clone());
        let items = match x.path.as_str() {
            LEASES => {
                assert_eq!(selector, Some("app.kubernetes.io/managed-by=shipdeck"));
                &leases
            }
            DEPLOYMENTS => {
                assert_eq!(selector, Some("shipdeck.dev/rollout-state=true"));
                assert_eq!(x.accept.as_deref(), Some(METADATA));
                &bases
            }
            EVENTS => &events,
            other => panic!("unexpected watch {other}"),
        };
        let lines: Vec<Value> = items.iter().map(|o| json!({"type": "ADDED", "object": o})).collect();
        x.stream(&lines);
    }
    // The streams ended: each watcher watches again from where it was.
    let mut again = Vec::new();
    while again.len() < 3 {
        let x = api.next().await;
        assert!(x.is_watch() && watching.contains(&x.path), "{} {:?}", x.path, x.query);
        assert!(!again.contains(&x.path), "{} watched twice", x.path);
        again.push(x.path.clone());
        x.hold(api);
    }
}

#[tokio::test(start_paused = true)]
async fn the_live_watches_show_who_holds_the_lease_the_rollout_driven_elsewhere_and_the_apps_events() {
    let (c, mut api) = cluster(false);
    c.start_live();
    let holder = "alice (pid 4711) on host-x";
    let events = vec![
        event("web-1-1-0-7d9f-abcde.1", "Pod", "web-1-1-0-7d9f-abcde", "BackOff", true, Some(4)),
        event("web-1-1-0-7d9f.2", "ReplicaSet", "web-1-1-0-7d9f", "FailedCreate", true, None),
        event("web.3", "Deployment", "web", "Step", false, None),
        // Not about the app's objects: not kept.
        event("db-0.4", "Pod", "db-0", "Unhealthy", true, None),
        event("node-1.5", "Node", "web-node", "NodeNotReady", true, None),
    ];
    serve(&mut api, vec![lease(holder, Utc::now())], vec![base_meta(&rollout(1))], events).await;

    c.news_changed().await;
    let news = c.news(target());
    let driver = news.driver.unwrap();
    assert_eq!((driver.holder.as_str(), driver.mine, driver.lapsed), (holder, false, false));
    assert_eq!(news.rollout.unwrap().cursor, 1, "the rollout as the driving console wrote it");

    assert_eq!(c.cluster_events().len(), 3, "{:?}", c.cluster_events());
    let shown: Vec<(String, String, bool, u32)> =
        c.cluster_events().into_iter().map(|e| (e.object, e.reason, e.warning, e.count)).collect();
    for expected in [
        ("pod/web-1-1-0-7d9f-abcde", "BackOff", true, 4),
        ("replicaset/web-1-1-0-7d9f", "FailedCreate", true, 1),
        ("deployment/web", "Step", false, 1),
    ] {
        let expected = (expected.0.to_string(), expected.1.to_string(), expected.2, expected.3);
        assert!(shown.contains(&expected), "{expected:?} not in {shown:?}");
    }
    assert!(c.cluster_events().iter().all(|e| &e.target == target()));
}

#[tokio::test(start_paused = true)]
async fn a_lease_whose_holder_stopped_renewing_shows_as_lapsed_and_ours_as_ours() {
    let (c, mut api) = cluster(false);
    c.start_live();
    let me = crate::cluster::kube::live::holder_identity();
    serve(&mut api, vec![lease(&me, Utc::now())], vec![], vec![]).await;
    let d = c.news(target()).driver.unwrap();
    assert!(d.mine && !d.lapsed, "{d:?}");

    let (c, mut api) = cluster(false);
    c.start_live();
    let gone = Utc::now() - chrono::Duration::seconds(40);
    serve(&mut api, vec![lease("bob (pid 7) on host-y", gone)], vec![], vec![]).await;
    let d = c.news(target()).driver.unwrap();
    assert!(d.lapsed && !d.mine, "renewed 40 s ago with 15 s to live: lapsed, {d:?}");
}

/// A lease handed back (no holder) shows nobody; a rollout of another app's name is not this app's.
#[tokio::test(start_paused = true)]
async fn a_handed_back_lease_shows_nobody_and_a_foreign_apps_rollout_is_ignored() {
    let (c, mut api) = cluster(false);
    c.start_live();
    let mut free = lease("x", Utc::now());
    free["spec"]["holderIdentity"] = Value::Null;
    let mut other = rollout(1);
    other.app = "shop".into();
    serve(&mut api, vec![free], vec![base_meta(&other)], vec![]).await;
    assert_eq!(c.live_held(), (1, 1), "both watched");
    assert_eq!(c.news(target()), crate::cluster::ClusterNews::default());
}

/// A watch the Role does not allow says so in the Events, holds nothing else back and is not
/// asked again (see `errors::WatchFailure`).
#[tokio::test(start_paused = true)]
async fn a_forbidden_lease_watch_is_said_in_the_events() {
    let (c, mut api) = cluster(false);
    c.start_live();
    let (refused_tx, mut refused) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        loop {
            let x = api.next().await;
            match (x.path.as_str(), x.is_watch()) {
                (LEASES, false) => {
                    x.reply(
                        403,
                        status(403, "Forbidden", "leases is forbidden: User \"ci\" cannot list resource \"leases\""),
                    );
                    let _ = refused_tx.send(());
                }
                (DEPLOYMENTS, false) => x.reply(200, list("PartialObjectMetadataList", "meta.k8s.io/v1", vec![])),
                (EVENTS, false) => x.reply(200, list("EventList", "events.k8s.io/v1", vec![])),
                _ => x.hold(&mut api),
            }
        }
    });
    refused.recv().await.unwrap();
    // A minute of the paused clock (many backoffs' worth): a refused watch is not asked again.
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    assert!(refused.try_recv().is_err(), "a watch the Role refuses is said once, not retried");
    let e = c.cluster_events().remove(0);
    assert_eq!((e.reason.as_str(), e.warning), ("WatchFailed", true));
    assert!(e.note.contains("forbidden: shipdeck may not list leases in namespace shop"), "{}", e.note);
    server.abort();
}
