//! The notifier against loopback webhook receivers the tests start: the right messages reach
//! the right channels for each severity and event, and receivers that are down or hang never
//! slow a rollback.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use super::*;
use crate::engine::{Command, Engine};
use crate::model::{EmergencyPlan, EmergencyStatus, EmergencyType, StrategyKind};
use crate::notify::testkit::Repo;

/// A webhook receiver on a loopback port: every POST to `/hook/NAME` is passed on as (NAME, body).
async fn receiver() -> (String, mpsc::UnboundedReceiver<(String, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook/{name}",
        axum::routing::post(
            |axum::extract::Path(name): axum::extract::Path<String>,
             axum::extract::State(tx): axum::extract::State<mpsc::UnboundedSender<(String, Value)>>,
             axum::Json(body): axum::Json<Value>| async move {
                let _ = tx.send((name, body));
                "ok"
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app.with_state(tx)).await });
    (base, rx)
}

const APPS: &str = r#"
[[environments]]
name = "dev"
[[environments]]
name = "prod"
approval_required = true
[[apps]]
name = "web"
replicas = 2
strategy = "canary"
initial_version = "1.0.0"
[apps.canary]
steps = [{ set_weight = 25 }, { pause = {} }]
[[apps.versions]]
version = "1.0.0"
ready_after = "2s"
[[apps.versions]]
version = "1.1.0"
ready_after = "2s"
"#;

fn channels(base: &str) -> String {
    format!(
        r#"
[[notifications]]
name = "oncall-page"
url = "{base}/hook/oncall-page"
events = ["release_failed", "rolled_back", "emergency_created", "emergency_completed"]
audience = ["oncall"]
[[notifications]]
name = "executives"
url = "{base}/hook/executives"
format = "slack"
events = ["emergency_created", "emergency_completed"]
audience = ["executives"]
[[notifications]]
name = "tech-leads"
url = "{base}/hook/tech-leads"
events = ["approval_requested", "emergency_created"]
audience = ["tech_leads"]
[[notifications]]
name = "releases"
url = "{base}/hook/releases"
format = "slack"
events = ["release_started", "rolled_back", "emergency_created"]
environments = ["prod"]
"#
    )
}

fn release(id: &str, env: &str, status: Status) -> Release {
    Release {
        id: id.into(),
        app: "web".into(),
        env: env.into(),
        version: "1.1.0".into(),
        previous_version: Some("1.0.0".into()),
        strategy: StrategyKind::Canary,
        kind: ReleaseKind::Deploy,
        promoted_from: None,
        status,
        plan: Vec::new(),
        cursor: 0,
        requested_by: "alice".into(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        reason: (status == Status::RolledBack).then(|| "canary errors at 20%; rolled back to 1.0.0".into()),
        interrupted: false,
        weight: 0,
    }
}

fn emergency(id: &str, severity: Severity, status: EmergencyStatus) -> Emergency {
    Emergency {
        id: id.into(),
        kind: EmergencyType::SecurityPatch,
        severity,
        description: "token leak".into(),
        affected_services: vec!["web".into()],
        fix_version: "1.1.0".into(),
        requested_by: "alice".into(),
        created_at: Utc::now(),
        approvers: Vec::new(),
        status,
        plan: EmergencyPlan::standard(severity),
        log: Vec::new(),
        ended_at: None,
        cause: None,
        tests: None,
    }
}

/// `event subject` of a JSON body, the text of a Slack one.
fn label(body: &Value) -> String {
    match body["event"].as_str() {
        Some(e) => {
            let id = body["release"]["id"].as_str().or(body["emergency"]["id"].as_str()).unwrap_or("?");
            format!("{e} {id}")
        }
        None => body["text"].as_str().unwrap_or("?").to_string(),
    }
}

#[tokio::test]
async fn each_severity_and_event_reaches_its_channels_and_no_other() {
    let (base, mut rx) = receiver().await;
    let repo = {
        let mut r = Repo::new();
        r.commit("chore: init");
        r.tag("v1.0.0");
        r.commit("fix(auth): rotate leaked tokens");
        r.tag("v1.1.0");
        r
    };
    let repo_line = format!("repo = {:?}\n", repo.path().display().to_string());
    let text =
        format!("{}\n{}", channels(&base), APPS.replace("name = \"web\"\n", &format!("name = \"web\"\n{repo_line}")));
    let estate = Arc::new(Estate::parse(&text, "t.toml").unwrap());
    let store = Arc::new(Store::open_in_memory().unwrap());
    let (events, _) = broadcast::channel(64);
    let notes_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = notes_seen.clone();
    let n = Notifier::spawn(estate, store.clone(), events.subscribe(), Arc::new(move |e| seen.lock().unwrap().push(e)));
    let em = |e: Emergency| Event::Emergency { emergency: Box::new(e), message: String::new() };
    let rel = |r: Release| Event::Release { release: Box::new(r), cause: String::new() };
    for e in [
        em(emergency("ER-P0", Severity::P0, EmergencyStatus::Approved)),
        em(emergency("ER-P0", Severity::P0, EmergencyStatus::Executing)),
        em(emergency("ER-P1", Severity::P1, EmergencyStatus::PendingApproval)),
        em(emergency("ER-P2", Severity::P2, EmergencyStatus::PendingApproval)),
        rel(release("r-prod", "prod", Status::Planned)),
        rel(release("r-prod", "prod", Status::InProgress)),
        rel(release("r-prod", "prod", Status::InProgress)),
        rel(release("r-prod", "prod", Status::RolledBack)),
        rel(release("r-dev", "dev", Status::InProgress)),
        rel(release("r-dev", "dev", Status::RolledBack)),
        em(emergency("ER-P0", Severity::P0, EmergencyStatus::Completed)),
        em(emergency("ER-P0", Severity::P0, EmergencyStatus::Completed)),
    ] {
        events.send(e).unwrap();
    }
    assert!(n.flush(Duration::from_secs(30)).await, "every delivery settles");
    let mut got: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    while let Ok((name, body)) = rx.try_recv() {
        got.entry(name).or_default().push(body);
    }
    let labels = |name: &str| got.get(name).map(|b| b.iter().map(label).collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(
        labels("oncall-page"),
        [
            "emergency_created ER-P0",
            "emergency_created ER-P1",
            "rolled_back r-prod",
            "rolled_back r-dev",
            "emergency_completed ER-P0"
        ]
    );
    assert_eq!(labels("tech-leads"), ["emergency_created ER-P1", "approval_requested r-prod"]);
    let execs = labels("executives");
    assert_eq!(execs.len(), 2, "{execs:?}");
    assert!(execs[0].starts_with("[P0 EMERGENCY ER-P0] security_patch: token leak; affects web"), "{execs:?}");
    assert!(execs[0].contains("runs now, no approval needed"));
    assert!(execs[1].contains("ER-P0") && execs[1].contains("ended completed"), "{execs:?}");
    let releases = labels("releases");
    assert_eq!(releases.len(), 3, "{releases:?}");
    assert!(releases[0].starts_with("[P2 EMERGENCY ER-P2]") && releases[0].contains("needs 2 approvals"));
    assert!(releases[1].starts_with("web 1.1.0 in prod started (canary, replacing 1.0.0)"), "{releases:?}");
    assert!(releases[2].starts_with("web 1.1.0 in prod was ROLLED BACK: canary errors at 20%"), "{releases:?}");
    // Release notes ride along: as Markdown in Slack's text, as an object in JSON.
    assert!(releases[2].contains("## Fixes\n- auth: rotate leaked tokens ("), "{}", releases[2]);
    let page = &got["oncall-page"];
    assert_eq!(page[0]["severity"], "P0");
    assert_eq!(page[0]["emergency"]["action_required"], "NOTIFICATION");
    assert_eq!(page[1]["emergency"]["action_required"], "APPROVAL");
    assert_eq!(
        (page[2]["severity"].as_str(), page[2]["release"]["status"].as_str()),
        (Some("error"), Some("rolled_back"))
    );
    assert_eq!(page[2]["notes"]["fixes"][0]["subject"], "rotate leaked tokens");
    assert!(page[4]["notes"].is_null());
    // Stored: the notes with their release, and every delivery.
    let stored = store.release_notes("r-prod").unwrap().unwrap();
    assert_eq!((stored.range.as_deref(), stored.fixes.len()), (Some("v1.0.0..v1.1.0"), 1));
    let deliveries = store.deliveries(100).unwrap();
    assert_eq!(deliveries.len(), 12);
    assert!(deliveries.iter().all(|d| d.ok && d.attempts == 1 && d.last_error.is_none()), "{deliveries:?}");
    assert!(notes_seen.lock().unwrap().is_empty(), "nothing failed, nothing to report");
    n.stop();
}

/// An address where nothing listens: connections are refused.
async fn refusing() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/hook")
}

/// A server that accepts connections and never answers.
async fn hanging() -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = l.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

#[tokio::test(start_paused = true)]
async fn receivers_that_refuse_or_hang_never_slow_a_rollback() {
    let refused = refusing().await;
    let (hangs, hang_task) = hanging().await;
    let text = format!(
        "[[notifications]]\nname = \"down\"\nurl = \"{refused}\"\nattempts = 5\nbackoff = \"1s\"\n\
         [[notifications]]\nname = \"hangs\"\nurl = \"{hangs}\"\nattempts = 5\ntimeout = \"30s\"\nbackoff = \"1s\"\n{APPS}"
    );
    let estate = Arc::new(Estate::parse(&text, "t.toml").unwrap());
    let store = Arc::new(Store::open_in_memory().unwrap());
    let cluster = crate::engine::fake::FakeCluster::new(&estate, &Default::default());
    let engine = Engine::new(estate.clone(), cluster.clone(), cluster, store.clone(), false);
    let report = engine.clone();
    let n = Notifier::spawn(estate, store.clone(), engine.subscribe(), Arc::new(move |e| report.publish(e)));
    let mut rx = engine.subscribe();
    let deploy = Command::Deploy {
        app: "web".into(),
        env: "dev".into(),
        version: "1.1.0".into(),
        strategy: None,
        flags: vec![],
    };
    let id = engine.execute("alice", deploy).await.unwrap().release.unwrap().id;
    loop {
        if let Event::Release { release, .. } = rx.recv().await.unwrap()
            && release.status == Status::Paused
        {
            break;
        }
    }
    // release_started is being tried on both channels now.
    let asked = tokio::time::Instant::now();
    engine.execute("bob", Command::Rollback { app: "web".into(), env: "dev".into(), to: None }).await.unwrap();
    loop {
        match rx.recv().await.unwrap() {
            Event::Finished { release_id, status } if release_id == id => {
                assert_eq!(status, Status::RolledBack);
                break;
            }
            _ => {}
        }
    }
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "the rollback took {took:?}");
    assert!(store.deliveries(10).unwrap().is_empty(), "the rollback ended before any delivery gave up");
    assert!(n.pending() >= 2, "release_started and rolled_back still wait on both channels");

    // Given time, every delivery is given up, stored and reported.
    assert!(n.flush(Duration::from_secs(3600)).await);
    let deliveries = store.deliveries(10).unwrap();
    let of = |channel: &str, event: &str| {
        deliveries
            .iter()
            .find(|d| d.channel == channel && d.event == event)
            .unwrap_or_else(|| panic!("{channel} {event}: {deliveries:?}"))
    };
    for event in ["release_started", "rolled_back"] {
        let down = of("down", event);
        assert!(!down.ok && down.attempts == 5, "{down:?}");
        assert!(down.last_error.as_deref().is_some_and(|e| e.starts_with("cannot connect")), "{down:?}");
        let hung = of("hangs", event);
        assert_eq!((hung.ok, hung.attempts, hung.last_error.as_deref()), (false, 5, Some("no answer within 30s")));
    }
    let mut reported = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::Note { message, release_id } = e {
            assert_eq!(release_id.as_deref(), Some(id.as_str()));
            reported.push(message);
        }
    }
    assert!(
        reported.iter().any(|m| m.starts_with("webhook hangs: rolled_back about ") && m.contains("not delivered after 5 attempts")),
        "{reported:?}"
    );
    n.stop();
    hang_task.abort();
}
