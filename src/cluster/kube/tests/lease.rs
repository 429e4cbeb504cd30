//! The app's Lease: acquire, renew, lose — each request pinned.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::*;
use crate::cluster::kube::lease::{LeaseKeeper, LeaseStatus};

fn lease_path(name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{name}")
}

fn lease(holder: &str, renewed: Timestamp, rv: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "shipdeck-web", "namespace": NS, "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 2,
                 "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": renewed.to_string()},
    })
}

fn ago(secs: i64) -> Timestamp {
    Timestamp::now().checked_sub(SignedDuration::from_secs(secs)).unwrap()
}

#[tokio::test]
async fn a_free_lease_is_created_with_this_console_as_holder() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("GET", &lease_path("shipdeck-web")).await.reply(404, status(404, "NotFound", ""));
        let x = api.expect("POST", &format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")).await;
        assert_eq!(x.query.get("fieldManager").map(String::as_str), Some("shipdeck"));
        assert_eq!(x.body["metadata"]["name"], "shipdeck-web");
        let spec = &x.body["spec"];
        assert_eq!(
            (spec["holderIdentity"].as_str(), spec["leaseDurationSeconds"].as_i64()),
            (Some("alice@laptop"), Some(15))
        );
        assert_eq!(spec["leaseTransitions"], 0);
        assert!(spec["renewTime"].is_string() && spec["acquireTime"].is_string());
        let echo = x.body.clone();
        x.reply(201, echo);
    };
    let (result, ()) = tokio::join!(c.acquire_lease(target(), "alice@laptop"), server);
    assert_eq!(result.unwrap(), LeaseStatus::Held);
}

#[tokio::test]
async fn a_lease_another_console_renews_is_shown_with_its_holder() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("bob@ci", ago(3), "20"));
    };
    let (result, ()) = tokio::join!(c.acquire_lease(target(), "alice@laptop"), server);
    assert_eq!(result.unwrap(), LeaseStatus::HeldBy { holder: "bob@ci".into() });
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_against_the_version_read() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("bob@ci", ago(60), "20"));
        let x = api.expect("PUT", &lease_path("shipdeck-web")).await;
        assert_eq!(x.body["metadata"]["resourceVersion"], "20");
        assert_eq!(x.body["spec"]["holderIdentity"], "alice@laptop");
        assert_eq!(x.body["spec"]["leaseTransitions"], 3, "a new holder is a transition");
        assert_ne!(x.body["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
        let echo = x.body.clone();
        x.reply(200, echo);
    };
    let (result, ()) = tokio::join!(c.acquire_lease(target(), "alice@laptop"), server);
    assert_eq!(result.unwrap(), LeaseStatus::Held);
}

#[tokio::test]
async fn renewing_moves_the_renew_time_and_keeps_the_acquire_time() {
    let (c, mut api) = cluster(false);
    let renewed = ago(5);
    let server = async {
        api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("alice@laptop", renewed, "30"));
        let x = api.expect("PUT", &lease_path("shipdeck-web")).await;
        assert_eq!(x.body["metadata"]["resourceVersion"], "30");
        assert_eq!(x.body["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
        assert_eq!(x.body["spec"]["leaseTransitions"], 2);
        let new: Timestamp = x.body["spec"]["renewTime"].as_str().unwrap().parse().unwrap();
        assert!(new > renewed);
        let echo = x.body.clone();
        x.reply(200, echo);
    };
    let (result, ()) = tokio::join!(c.renew_lease(target(), "alice@laptop"), server);
    assert_eq!(result.unwrap(), LeaseStatus::Held);
}

#[tokio::test]
async fn two_consoles_racing_for_a_lease_one_learns_the_other_won() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("bob@ci", ago(60), "20"));
        api.expect("PUT", &lease_path("shipdeck-web")).await.reply(409, status(409, "Conflict", "modified"));
        api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("carol@ops", ago(0), "21"));
    };
    let (result, ()) = tokio::join!(c.acquire_lease(target(), "alice@laptop"), server);
    assert_eq!(result.unwrap(), LeaseStatus::HeldBy { holder: "carol@ops".into() });
}

#[tokio::test(start_paused = true)]
async fn the_keeper_renews_and_reports_the_lease_lost_to_another_holder() {
    let (c, mut api) = cluster(false);
    let keeper = LeaseKeeper::spawn(c.clone(), target().clone(), "alice@laptop".into());
    let mut status_rx = keeper.status.clone();
    let started = tokio::time::Instant::now();
    api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("alice@laptop", ago(5), "40"));
    assert_eq!(started.elapsed(), std::time::Duration::from_secs(5), "renewed every third of 15s");
    let x = api.expect("PUT", &lease_path("shipdeck-web")).await;
    let echo = x.body.clone();
    x.reply(200, echo);
    api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("bob@ci", ago(0), "41"));
    status_rx.changed().await.unwrap();
    assert_eq!(*status_rx.borrow(), LeaseStatus::Lost { reason: "bob@ci holds lease shipdeck-web now".into() });
}

#[tokio::test]
async fn claiming_a_workload_another_console_drives_is_refused_naming_it() {
    use crate::cluster::Cluster;
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("bob@ci", ago(2), "20"));
    };
    let (result, ()) = tokio::join!(c.claim(target(), "alice@laptop"), server);
    let Err(err) = result else { panic!("claimed a lease bob holds") };
    let text = err.to_string();
    assert!(text.contains("bob@ci is driving this rollout (Lease shipdeck-web in namespace shop)"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_claim_holds_the_lease_and_renews_it_while_it_lives() {
    use crate::cluster::{ClaimStatus, Cluster};
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("GET", &lease_path("shipdeck-web")).await.reply(404, status(404, "NotFound", ""));
        let x = api.expect("POST", &format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")).await;
        let echo = x.body.clone();
        x.reply(201, echo);
    };
    let (result, ()) = tokio::join!(c.claim(target(), "alice@laptop"), server);
    let claim = result.unwrap().expect("a Kubernetes cluster claims with a Lease");
    assert_eq!(*claim.status.borrow(), ClaimStatus::Held);
    // Five seconds on, the keeper renews.
    api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("alice@laptop", ago(5), "2"));
    let x = api.expect("PUT", &lease_path("shipdeck-web")).await;
    assert_eq!(x.body["spec"]["holderIdentity"], "alice@laptop");
    let echo = x.body.clone();
    x.reply(200, echo);
    drop(claim);
    api.expect_silence().await;
}

#[tokio::test]
async fn handing_a_claim_back_clears_the_holder_as_client_go_does() {
    use crate::cluster::Cluster;
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("alice@laptop", ago(1), "7"));
        let x = api.expect("PUT", &lease_path("shipdeck-web")).await;
        let echo = x.body.clone();
        x.reply(200, echo);
    };
    let (result, ()) = tokio::join!(c.claim(target(), "alice@laptop"), server);
    let claim = result.unwrap().expect("a lease");
    let server = async {
        api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("alice@laptop", ago(1), "8"));
        let x = api.expect("PUT", &lease_path("shipdeck-web")).await;
        assert_eq!(x.body["metadata"]["resourceVersion"], "8");
        assert!(x.body["spec"].get("holderIdentity").is_none(), "no holder: {}", x.body);
        assert_eq!(x.body["spec"]["leaseDurationSeconds"], 1);
        let echo = x.body.clone();
        x.reply(200, echo);
    };
    tokio::join!(claim.hand_back(), server);
}

#[tokio::test(start_paused = true)]
async fn a_lease_someone_else_holds_now_is_not_handed_back() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("GET", &lease_path("shipdeck-web")).await.reply(200, lease("bob@ci", ago(1), "9"));
    };
    let (result, ()) = tokio::join!(c.release_lease(target(), "alice@laptop"), server);
    result.unwrap();
    api.expect_silence().await;
}
