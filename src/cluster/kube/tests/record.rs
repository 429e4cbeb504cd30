//! The rollout annotation and the audit Events, request by request.

use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::cluster::kube::record::{AuditEvent, ROLLOUT_ANNOTATION};
use crate::model::{Release, ReleaseKind, Status, Step, StrategyKind};

fn release() -> Release {
    let at = chrono::Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
    Release {
        id: "prod-web-1.1.0-20261127120000".into(),
        app: "web".into(),
        env: "prod".into(),
        version: "1.1.0".into(),
        previous_version: Some("1.0.0".into()),
        strategy: StrategyKind::Canary,
        kind: ReleaseKind::Deploy,
        promoted_from: None,
        status: Status::RolledBack,
        plan: vec![Step::SetWeight { weight: 10 }, Step::Pause { seconds: Some(30) }, Step::Promote],
        cursor: 1,
        requested_by: "alice".into(),
        created_at: at,
        updated_at: at,
        reason: Some("analysis failed".into()),
        interrupted: false,
        weight: 10,
    }
}

#[tokio::test]
async fn the_rollout_is_written_to_the_base_deployment_and_read_back() {
    let (c, mut api) = cluster(false);
    let r = release();
    let server = async {
        // Metadata only, with the label the other consoles' watch selects on; never the spec.
        let body = json!({"metadata": {
            "labels": {"shipdeck.dev/rollout-state": "true"},
            "annotations": {ROLLOUT_ANNOTATION: serde_json::to_string(&r).unwrap()},
        }});
        let x = api.expect_merge_patch(&deployments("web"), body).await;
        let mut stored = base_deployment();
        stored["metadata"]["annotations"] = x.body["metadata"]["annotations"].clone();
        x.reply(200, stored.clone());
        api.expect("GET", &deployments("web")).await.reply(200, stored);
    };
    let ops = async {
        c.record_rollout(target(), &r).await.unwrap();
        c.read_rollout(target()).await.unwrap()
    };
    let (back, ()) = tokio::join!(ops, server);
    let back = back.unwrap();
    assert_eq!((back.cursor, back.status, back.plan.len()), (1, Status::RolledBack, 3));
    assert_eq!(back, r, "a second console reads the whole release");
}

#[tokio::test]
async fn each_action_becomes_an_event_on_the_deployment() {
    let (c, mut api) = cluster(false);
    let event = AuditEvent::for_release(&release(), "analysis failed: error rate 8% > 5%");
    assert_eq!(event.reason, "ReleaseRolledBack");
    let server = async {
        let x = api.expect("POST", &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")).await;
        assert_eq!(x.query.get("fieldManager").map(String::as_str), Some("shipdeck"));
        let e = &x.body;
        assert_eq!(e["metadata"]["generateName"], "web.");
        assert_eq!(
            e["regarding"],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": NS})
        );
        assert_eq!(
            (e["reason"].as_str(), e["action"].as_str(), e["type"].as_str()),
            (Some("ReleaseRolledBack"), Some("Release"), Some("Warning"))
        );
        assert_eq!(e["note"], "prod-web-1.1.0-20261127120000 rolled_back: analysis failed: error rate 8% > 5%");
        assert_eq!(
            (e["reportingController"].as_str(), e["reportingInstance"].as_str()),
            (Some("shipdeck.dev/console"), Some("alice@laptop"))
        );
        assert!(e["eventTime"].as_str().is_some_and(|t| t.ends_with('Z')));
        let echo = x.body.clone();
        x.reply(201, echo);
    };
    let (result, ()) = tokio::join!(c.record_event(target(), "alice@laptop", &event), server);
    result.unwrap();
}
