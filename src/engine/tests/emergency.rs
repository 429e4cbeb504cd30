//! Emergency releases end to end on the in-memory cluster with the clock paused: each
//! severity's plan with a good fix, and fixes that fail their tests, their canary, their
//! monitoring or their verification in the second environment; approvals and bad input.

use super::*;
use crate::model::{Emergency, EmergencyStatus, EmergencyType, Severity};

const ESTATE: &str = r#"
[[environments]]
name = "dev"
[[environments]]
name = "staging"
[[environments]]
name = "prod"
approval_required = true

[emergency.P0]
monitoring_duration = "30s"
[emergency.P1]
canary_duration = "30s"
monitoring_duration = "1m"
[emergency.P2]
canary_duration = "1m"
monitoring_duration = "2m"

[[apps]]
name = "web"
replicas = 4
rps = 100
strategy = "rolling"
initial_version = "1.0.0"
[apps.rolling]
max_surge = 1
progress_deadline = "60s"
[apps.emergency]
build = "echo compiling $SHIPDECK_APP $SHIPDECK_VERSION; echo built"
[apps.emergency.critical_tests]
security = "case $SHIPDECK_VERSION in *-badtests) echo 'FAIL: session token not checked'; exit 1;; esac; echo 'security: 12 passed'"
data_integrity = "echo 'data_integrity: 4 passed'"
api_contract = "echo 'api_contract: 9 passed'"
# No critical_path suite: counted as skipped.

# Staging checks that the API answers within 50 ms, critically: a slow fix passes prod's
# checks and fails staging's.
[apps.overrides.staging.verification]
checks = [{ name = "fast_api", kind = "performance", path = "/api/v1/users", max_latency_ms = 50, retries = 1 }]

[[apps.versions]]
version = "1.0.0"
ready_after = "2s"
[[apps.versions]]
version = "1.1.0"
ready_after = "2s"
[[apps.versions]]
version = "1.1.1-badtests"
ready_after = "2s"
[[apps.versions]]
version = "1.2.0-errors"
error_rate = 0.2
ready_after = "2s"
[[apps.versions]]
version = "1.3.0-slow"
p50_ms = 80
p99_ms = 90
ready_after = "2s"

[[apps]]
name = "api"
replicas = 2
rps = 100
initial_version = "2.0.0"
[[apps.versions]]
version = "2.0.0"
[[apps.versions]]
version = "1.1.0"
"#;

fn eworld() -> World {
    world_of(ESTATE, Arc::new(Store::open_in_memory().unwrap()), &Default::default())
}

fn create(severity: Severity, fix: &str) -> Command {
    Command::CreateEmergency {
        kind: EmergencyType::SecurityPatch,
        severity,
        description: "session tokens are not checked".into(),
        affected_services: vec!["web".into()],
        fix_version: fix.into(),
    }
}

fn running(w: &World, env: &str) -> Option<String> {
    let r = w.cluster.routing(&Target::new(env, "web"));
    r.weights.iter().filter(|(_, p)| **p > 0).max_by_key(|(_, p)| **p).map(|(v, _)| v.clone())
}

fn weight_of(w: &World, env: &str, version: &str) -> u32 {
    w.cluster.routing(&Target::new(env, "web")).weights.get(version).copied().unwrap_or(0)
}

impl World {
    /// Created by alice and, when the severity needs it, approved by bob and carol.
    async fn approved(&self, severity: Severity, fix: &str) -> Emergency {
        let out = self.engine.execute_emergency("alice", create(severity, fix)).await.unwrap();
        let id = out.emergency.id;
        if severity != Severity::P0 {
            for who in ["bob", "carol"] {
                self.engine.execute_emergency(who, Command::ApproveEmergency { id: id.clone() }).await.unwrap();
            }
        }
        let e = self.engine.emergency(&id).unwrap();
        assert_eq!(e.status, EmergencyStatus::Approved);
        e
    }

    /// Executes it (as dave) and waits until it ends.
    async fn execute_to_end(&self, id: &str) -> Emergency {
        let mut rx = self.engine.subscribe();
        let out = self.engine.execute_emergency("dave", Command::ExecuteEmergency { id: id.into() }).await.unwrap();
        assert!(out.running);
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(Event::Emergency { emergency, .. }) if emergency.id == id && emergency.status.is_terminal() => {
                        break;
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("event stream: {e}"),
                }
            }
        };
        // The build and the suites are real processes: while the runtime waits for one, the
        // paused clock jumps to the next timer, so the limit is on the wall clock.
        let deadline = crate::engine::emergency::process::wall_clock_deadline(Duration::from_secs(120));
        tokio::select! {
            () = wait => {}
            _ = deadline.fired => panic!("emergency never ended"),
        }
        self.engine.emergency(id).unwrap()
    }

    fn emergency_statuses(&self, id: &str) -> Vec<EmergencyStatus> {
        self.store.emergency_transitions(id).unwrap().iter().map(|t| t.to).collect()
    }
}

fn log_text(e: &Emergency) -> String {
    e.log.iter().map(|l| format!("[{}] {}", l.step, l.message)).collect::<Vec<_>>().join("\n")
}

#[tokio::test(start_paused = true)]
async fn each_severity_s_plan_takes_a_good_fix_through_every_environment_in_order() {
    for (severity, envs, untouched) in [
        (Severity::P0, vec!["prod", "staging", "dev"], None),
        (Severity::P1, vec!["prod", "staging"], Some("dev")),
        (Severity::P2, vec!["staging", "prod"], Some("dev")),
    ] {
        let w = eworld();
        let e = w.approved(severity, "1.1.0").await;
        let e = w.execute_to_end(&e.id).await;
        let log = log_text(&e);
        assert_eq!(e.status, EmergencyStatus::Completed, "{severity:?}: {log}");
        assert!(e.ended_at.is_some() && e.cause.is_none());
        for env in &envs {
            assert_eq!(running(&w, env).as_deref(), Some("1.1.0"), "{severity:?} {env}");
        }
        if let Some(env) = untouched {
            assert_eq!(running(&w, env).as_deref(), Some("1.0.0"), "{severity:?}: {env} is not in the plan");
        }
        // Environments in plan order, each verified.
        let order: Vec<&str> = envs
            .iter()
            .map(|env| {
                let needle = format!("1.1.0 verified in {env}");
                assert!(log.contains(&needle), "{severity:?}: {needle}\n{log}");
                *env
            })
            .collect();
        let positions: Vec<usize> =
            order.iter().map(|env| log.find(&format!("1.1.0 verified in {env}")).unwrap_or(0)).collect();
        assert!(positions.windows(2).all(|p| p[0] < p[1]), "{severity:?}: plan order\n{log}");
        // The build's and the suites' output is in the log, line by line; one suite is skipped.
        assert!(log.contains("build| compiling web 1.1.0"), "{log}");
        assert!(log.contains("security| security: 12 passed"), "{log}");
        assert_eq!(e.tests.map(|t| (t.passed, t.failed, t.skipped)), Some((3, 0, 1)));
        let expected = [
            EmergencyStatus::PendingApproval,
            EmergencyStatus::Approved,
            EmergencyStatus::Executing,
            EmergencyStatus::Completed,
        ];
        assert_eq!(w.emergency_statuses(&e.id), expected);
        let releases = w.store.releases(&crate::store::ReleaseFilter::default()).unwrap();
        assert_eq!(releases.len(), envs.len(), "one release per environment");
        assert!(releases.iter().all(|r| r.status == Status::Verified));
        // The canary ran at the plan's share with the plan's threshold.
        let prod = releases.iter().find(|r| r.env == "prod").unwrap();
        let canary = prod.plan.iter().find_map(|s| match s {
            Step::SetWeight { weight } => Some(*weight),
            _ => None,
        });
        let threshold = prod.plan.iter().rev().find_map(|s| match s {
            Step::Monitor { max_error_rate, seconds, .. } => Some((*max_error_rate, *seconds)),
            _ => None,
        });
        match severity {
            Severity::P0 => assert_eq!((canary, threshold), (None, Some((0.05, 30)))),
            Severity::P1 => assert_eq!((canary, threshold), (Some(10), Some((0.02, 60)))),
            Severity::P2 => assert_eq!((canary, threshold), (Some(25), Some((0.01, 120)))),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_fix_whose_critical_tests_fail_is_never_deployed() {
    let w = eworld();
    let e = w.approved(Severity::P1, "1.1.1-badtests").await;
    let e = w.execute_to_end(&e.id).await;
    let log = log_text(&e);
    assert_eq!(e.status, EmergencyStatus::Failed, "{log}");
    let cause = e.cause.clone().unwrap_or_default();
    assert!(cause.contains("critical suite security of web failed: failed (exit status 1)"), "{cause}");
    assert!(cause.contains("nothing was deployed"), "{cause}");
    assert!(log.contains("security| FAIL: session token not checked"), "{log}");
    // The remaining suites did not run: one failed, three skipped.
    assert_eq!(e.tests.map(|t| (t.passed, t.failed, t.skipped)), Some((0, 1, 3)));
    assert!(w.store.releases(&Default::default()).unwrap().is_empty());
    for env in ["dev", "staging", "prod"] {
        assert_eq!(running(&w, env).as_deref(), Some("1.0.0"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_fix_that_fails_its_canary_is_rolled_back_in_the_first_environment() {
    let w = eworld();
    let e = w.approved(Severity::P2, "1.2.0-errors").await;
    let e = w.execute_to_end(&e.id).await;
    let log = log_text(&e);
    assert_eq!(e.status, EmergencyStatus::RolledBack, "{log}");
    let cause = e.cause.clone().unwrap_or_default();
    assert!(cause.starts_with("staging/web: "), "which env and app: {cause}");
    assert!(cause.contains("error rate 0.200 > rollback threshold 0.01"), "why: {cause}");
    assert_eq!(running(&w, "staging").as_deref(), Some("1.0.0"));
    assert_eq!(weight_of(&w, "staging", "1.2.0-errors"), 0);
    assert_eq!(running(&w, "prod").as_deref(), Some("1.0.0"), "never reached");
    let releases = w.store.releases(&Default::default()).unwrap();
    assert_eq!(releases.len(), 1, "prod was never started");
    assert_eq!(releases[0].status, Status::RolledBack);
    // It failed during the canary: the fix never had more than its 25%.
    assert_eq!(releases[0].cursor, 1, "{:?}", releases[0].plan);
}

#[tokio::test(start_paused = true)]
async fn a_p0_fix_above_the_threshold_while_monitored_is_rolled_back() {
    let w = eworld();
    let e = w.approved(Severity::P0, "1.2.0-errors").await;
    assert!(log_text(&e).contains("P0: no approval needed, notified instead"));
    let e = w.execute_to_end(&e.id).await;
    assert_eq!(e.status, EmergencyStatus::RolledBack, "{}", log_text(&e));
    let cause = e.cause.unwrap_or_default();
    assert!(cause.starts_with("prod/web: ") && cause.contains("rollback threshold 0.05"), "{cause}");
    assert_eq!(running(&w, "prod").as_deref(), Some("1.0.0"));
    assert_eq!(running(&w, "staging").as_deref(), Some("1.0.0"));
}

#[tokio::test(start_paused = true)]
async fn a_fix_that_fails_verification_in_the_second_environment_is_rolled_back_in_both() {
    let w = eworld();
    let e = w.approved(Severity::P1, "1.3.0-slow").await;
    let e = w.execute_to_end(&e.id).await;
    let log = log_text(&e);
    assert_eq!(e.status, EmergencyStatus::RolledBack, "{log}");
    let cause = e.cause.clone().unwrap_or_default();
    assert!(cause.starts_with("staging/web: verification after the deploy failed"), "{cause}");
    assert!(cause.contains("fast_api"), "{cause}");
    assert!(cause.contains("prod/web back on 1.0.0"), "what was undone: {cause}");
    assert!(log.contains("1.3.0-slow verified in prod"), "prod went first: {log}");
    assert_eq!(running(&w, "prod").as_deref(), Some("1.0.0"), "the first environment is back");
    assert_eq!(running(&w, "staging").as_deref(), Some("1.0.0"));
    assert_eq!(w.cluster.state(&Target::new("prod", "web")).await.unwrap().replicas("1.3.0-slow").desired, 0);
    let releases =
        w.store.releases(&crate::store::ReleaseFilter { env: Some("prod".into()), ..Default::default() }).unwrap();
    let kinds: Vec<(ReleaseKind, Status)> = releases.iter().map(|r| (r.kind, r.status)).collect();
    assert_eq!(kinds, [(ReleaseKind::Rollback, Status::Verified), (ReleaseKind::Deploy, Status::RolledBack)]);
    assert_eq!(w.emergency_statuses(&e.id).last(), Some(&EmergencyStatus::RolledBack), "the transition is stored");
}

#[tokio::test(start_paused = true)]
async fn p1_needs_two_approvals_from_people_other_than_the_requester() {
    let w = eworld();
    let out = w.engine.execute_emergency("alice", create(Severity::P1, "1.1.0")).await.unwrap();
    let id = out.emergency.id.clone();
    assert_eq!(out.emergency.status, EmergencyStatus::PendingApproval);
    let approve = |who: &'static str| w.engine.execute_emergency(who, Command::ApproveEmergency { id: id.clone() });
    let execute = || w.engine.execute_emergency("alice", Command::ExecuteEmergency { id: id.clone() });

    let err = approve("alice").await.unwrap_err().to_string();
    assert!(err.contains("alice requested emergency") && err.contains("cannot approve it"), "{err}");
    let err = execute().await.unwrap_err().to_string();
    assert!(err.contains("needs 2 more approvals (has 0)"), "{err}");

    approve("bob").await.unwrap();
    let err = approve("bob").await.unwrap_err().to_string();
    assert!(err.contains("bob already approved"), "{err}");
    let err = execute().await.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let err = err.to_string();
    assert!(
        err.contains("needs 1 more approval (has 1), from someone other than alice (who requested it) or bob"),
        "{err}"
    );
    assert_eq!(w.engine.emergency(&id).unwrap().status, EmergencyStatus::PendingApproval);
    assert!(w.store.releases(&Default::default()).unwrap().is_empty(), "nothing ran");

    let out = approve("carol").await.unwrap();
    assert_eq!(out.emergency.status, EmergencyStatus::Approved);
    assert_eq!(out.emergency.approvers, ["bob", "carol"]);
    let err = approve("dave").await.unwrap_err().to_string();
    assert!(err.contains("already has its approvals"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn bad_emergency_input_is_refused_naming_what_is_known() {
    let w = eworld();
    let cases = [
        (
            create(Severity::P1, "9.9.9"),
            "fix version `9.9.9` is not a known version of web (known versions of web: 1.0.0, 1.1.0",
        ),
        (
            Command::CreateEmergency {
                kind: EmergencyType::CriticalBug,
                severity: Severity::P2,
                description: "x".into(),
                affected_services: vec!["web".into(), "api".into()],
                fix_version: "1.3.0-slow".into(),
            },
            "not a known version of api (known versions of api: 2.0.0, 1.1.0)",
        ),
        (
            Command::CreateEmergency {
                kind: EmergencyType::CriticalBug,
                severity: Severity::P2,
                description: "x".into(),
                affected_services: vec!["wbe".into()],
                fix_version: "1.1.0".into(),
            },
            "unknown service `wbe` (apps in test estate: web, api)",
        ),
        (
            Command::CreateEmergency {
                kind: EmergencyType::CriticalBug,
                severity: Severity::P2,
                description: " ".into(),
                affected_services: vec!["web".into()],
                fix_version: "1.1.0".into(),
            },
            "describe the emergency",
        ),
        (Command::ApproveEmergency { id: "ER-1".into() }, "no emergency with id `ER-1`"),
    ];
    for (command, want) in cases {
        let err = w.engine.execute_emergency("alice", command).await.unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains(want), "{err}");
    }
    assert!(w.store.emergencies(None, None).unwrap().is_empty(), "nothing stored");
}

#[tokio::test(start_paused = true)]
async fn ids_stay_unique_within_one_second() {
    let w = eworld();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(w.engine.execute_emergency("alice", create(Severity::P2, "1.1.0")).await.unwrap().emergency.id);
    }
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 3, "{ids:?}");
    assert!(ids.iter().all(|id| id.len() == "ER-20260101000000".len() && id.starts_with("ER-")), "{ids:?}");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "in creation order");
}

#[tokio::test(start_paused = true)]
async fn an_execution_cut_short_by_a_shutdown_is_failed_as_interrupted_on_the_next_start() {
    let w = eworld();
    let e = w.approved(Severity::P1, "1.1.0").await;
    let mut rx = w.engine.subscribe();
    w.engine.execute_emergency("dave", Command::ExecuteEmergency { id: e.id.clone() }).await.unwrap();
    // Stop while the canary in prod is watched.
    loop {
        if let Ok(Event::Step { description, .. }) = rx.recv().await
            && description.starts_with("monitor")
        {
            break;
        }
    }
    w.engine.shutdown().await;
    assert_eq!(w.engine.emergency(&e.id).unwrap().status, EmergencyStatus::Executing);
    // What the next start does (Host::start_with).
    let interrupted = w.store.mark_interrupted().unwrap();
    assert_eq!(interrupted.len(), 1, "the prod release shows as interrupted");
    let failed = w.store.fail_interrupted_emergencies().unwrap();
    assert_eq!(failed.len(), 1);
    let after = w.engine.emergency(&e.id).unwrap();
    assert_eq!(after.status, EmergencyStatus::Failed);
    assert!(after.cause.unwrap_or_default().starts_with("interrupted"));
    assert_eq!(w.emergency_statuses(&e.id).last(), Some(&EmergencyStatus::Failed));
}
