//! Values to store in tests.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::Store;
use crate::cluster::{Routing, WorkloadSpec};
use crate::model::{
    AuditEntry, Measurement, Release, ReleaseKind, Status, Step, StepRecord, StrategyKind, Verdict, VerifyPhase,
};

/// A fixed instant plus `secs` seconds (and a few nanoseconds, to exercise precision).
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).single().unwrap()
        + Duration::seconds(secs)
        + Duration::nanoseconds(123_456_789)
}

/// A canary release of `app` `version` in `env`, created `secs` after [`at`]`(0)`.
pub fn release(env: &str, app: &str, version: &str, status: Status, secs: i64) -> Release {
    Release {
        id: Release::make_id(env, app, version, at(secs)),
        app: app.into(),
        env: env.into(),
        version: version.into(),
        previous_version: Some("1.0.0".into()),
        strategy: StrategyKind::Canary,
        kind: ReleaseKind::Deploy,
        promoted_from: None,
        status,
        plan: vec![
            Step::SetWeight { weight: 20 },
            Step::Pause { seconds: Some(30) },
            Step::Analysis { interval_secs: 10, count: 3, inconclusive_limit: 1, rules: Default::default() },
            Step::Verify { phase: VerifyPhase::PostDeploy },
            Step::Promote,
        ],
        cursor: 0,
        requested_by: "ann".into(),
        created_at: at(secs),
        updated_at: at(secs),
        reason: None,
        interrupted: false,
        weight: 0,
    }
}

/// A store holding one in-progress release of prod/web.
pub fn store_with_release() -> (Store, Release) {
    let store = Store::open_in_memory().unwrap();
    let r = release("prod", "web", "2.0.0", Status::InProgress, 0);
    store.insert_release(&r, "started").unwrap();
    (store, r)
}

pub fn step(r: &Release, index: usize, secs: i64) -> StepRecord {
    StepRecord {
        release_id: r.id.clone(),
        index,
        description: r.plan[index].describe(),
        started_at: at(secs),
        finished_at: None,
        outcome: None,
    }
}

pub fn measurement(r: &Release, secs: i64, verdict: Verdict) -> Measurement {
    Measurement {
        release_id: r.id.clone(),
        step: 2,
        at: at(secs),
        verdict,
        canary_requests: 120,
        canary_error_rate: Some(0.025),
        canary_p99_ms: Some(41.5),
        stable_requests: 480,
        stable_error_rate: None,
        stable_p99_ms: None,
        detail: format!("window ending at {secs}s"),
    }
}

pub fn entry(secs: i64, target: &str, action: &str) -> AuditEntry {
    AuditEntry {
        at: at(secs),
        actor: "ann".into(),
        action: action.into(),
        target: target.into(),
        detail: String::new(),
    }
}

pub fn spec(versions: &[(&str, u32)]) -> WorkloadSpec {
    WorkloadSpec {
        replicas: versions.iter().map(|(v, n)| (v.to_string(), *n)).collect(),
        routing: Routing::split("1.0.0", "2.0.0", 20),
    }
}
