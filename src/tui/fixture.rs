//! Demo data for screenshots, benches and tests: a [`Snapshot`] of the demo estate at a fixed
//! moment, built by hand (no engine, no store, no clock), so whatever renders it renders the
//! same every time. `shipdeck screenshots` draws it, the snapshot tests check it, and the
//! render bench scales it up with [`large`].

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};

use super::app::App;
use super::snapshot::{FlagDetail, LogLine, ReleaseDetail, Snapshot, WorkloadView};
use crate::cluster::{Routing, Target, VersionReplicas, WorkloadState};
use crate::config::Estate;
use crate::config::keymap::Keymap;
use crate::config::theme::Theme;
use crate::flags::{DEMO_FLAGS, FlagSet, FlagView};
use crate::model::*;

/// A fixed instant, `secs` after 2026-11-27 12:00:00 UTC: the fixture's clock.
pub fn at(secs: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

/// The demo estate mid-way through a canary of checkout 1.6.0-bad in prod that just failed
/// its analysis, and a paused blue-green in staging.
pub fn fixture() -> Snapshot {
    let estate = Estate::demo().expect("the embedded demo estate is valid");
    let mut workloads = BTreeMap::new();
    for (t, s) in estate.targets() {
        let v = s.initial_version.clone().unwrap();
        let mut state = WorkloadState { routing: Routing::all_to(&v), ..Default::default() };
        state.versions.insert(
            v.clone(),
            VersionReplicas { desired: s.replicas, updated: s.replicas, ready: s.replicas, available: s.replicas },
        );
        state.actual_weights.insert(v.clone(), 100.0);
        workloads.insert(
            t,
            WorkloadView {
                state,
                settings: Some(std::sync::Arc::new(s)),
                release: None,
                last_verified: Some(v),
                pending: Vec::new(),
                error: None,
                driver: None,
            },
        );
    }
    let settings = estate.settings("prod", "checkout").unwrap().clone();
    let plan = crate::engine::plan::build(StrategyKind::Canary, &settings, Some("1.4.0"));
    let release = Release {
        id: "prod-checkout-1.6.0-bad-20261127120000".into(),
        app: "checkout".into(),
        env: "prod".into(),
        version: "1.6.0-bad".into(),
        previous_version: Some("1.4.0".into()),
        strategy: StrategyKind::Canary,
        kind: ReleaseKind::Deploy,
        promoted_from: None,
        status: Status::InProgress,
        plan,
        cursor: 1,
        requested_by: "alice".into(),
        created_at: at(0),
        updated_at: at(9),
        reason: None,
        interrupted: false,
        weight: 20,
    };
    let prod = workloads.get_mut(&Target::new("prod", "checkout")).unwrap();
    prod.state.routing = Routing::split("1.4.0", "1.6.0-bad", 20);
    prod.state.versions.insert("1.6.0-bad".into(), VersionReplicas { desired: 1, updated: 1, ready: 1, available: 1 });
    prod.state.actual_weights = [("1.4.0".to_string(), 81.2), ("1.6.0-bad".to_string(), 18.8)].into_iter().collect();
    prod.release = Some(release.clone());
    let mut paused = release.clone();
    paused.id = "staging-payments-2.1.0-20261127115500".into();
    paused.app = "payments".into();
    paused.env = "staging".into();
    paused.version = "2.1.0".into();
    paused.previous_version = Some("2.0.0".into());
    paused.strategy = StrategyKind::BlueGreen;
    paused.status = Status::Paused;
    paused.reason = Some("paused by bob at step 4/7".into());
    paused.cursor = 3;
    paused.plan = crate::engine::plan::build(
        StrategyKind::BlueGreen,
        estate.settings("staging", "payments").unwrap(),
        Some("2.0.0"),
    );
    workloads.get_mut(&Target::new("staging", "payments")).unwrap().release = Some(paused);
    let mut planned = release.clone();
    planned.id = "prod-search-3.2.0-20261127115000".into();
    planned.app = "search".into();
    planned.status = Status::Planned;
    workloads.get_mut(&Target::new("prod", "search")).unwrap().pending = vec![planned];

    let m = |s: i64, verdict: Verdict, ce: f64, detail: &str| Measurement {
        release_id: release.id.clone(),
        step: 1,
        at: at(s),
        verdict,
        canary_requests: 48,
        canary_error_rate: Some(ce),
        canary_p99_ms: Some(23.0 + s as f64 / 10.0),
        stable_requests: 190,
        stable_error_rate: Some(0.0),
        stable_p99_ms: Some(24.0),
        detail: detail.into(),
    };
    let detail = ReleaseDetail {
        notes: None,
        steps: vec![
            StepRecord {
                release_id: release.id.clone(),
                index: 0,
                description: "set weight 20%".into(),
                started_at: at(0),
                finished_at: Some(at(1)),
                outcome: Some("done".into()),
            },
            StepRecord {
                release_id: release.id.clone(),
                index: 1,
                description: "analysis".into(),
                started_at: at(1),
                finished_at: None,
                outcome: None,
            },
        ],
        measurements: vec![
            m(
                4,
                Verdict::Pass,
                0.0,
                "error_rate 0.000 vs 0.000 (48 vs 190 requests), p99 23.4 ms vs 24.0 ms · sequential",
            ),
            m(
                7,
                Verdict::Inconclusive,
                0.0,
                "not enough canary traffic: 6 requests, 10 needed (about 4 more) · sequential",
            ),
            m(
                10,
                Verdict::Fail,
                0.081,
                "error_rate: 0.0810 > 0.0100 (stable's; ≈8.1× it, 4 of 48 canary requests failed; likelihood ratio 212 ≥ 143)",
            ),
        ],
    };
    let log = (0..30)
        .map(|i| LogLine {
            at: at(i),
            kind: if i % 3 == 0 { "audit".into() } else { "step".into() },
            text: format!("event number {i}"),
        })
        .collect();
    let flag_set = FlagSet::parse(DEMO_FLAGS, "demo").unwrap();
    let mut snap = Snapshot {
        workloads,
        detail,
        flags: flag_set.views(),
        flag_detail: FlagDetail {
            key: "dark-mode".into(),
            changes: vec![FlagChange {
                at: at(9),
                actor: "dana".into(),
                flag: "dark-mode".into(),
                action: "rolled out to 50%".into(),
                before: None,
                after: None,
                release_id: None,
            }],
            experiment: None,
            who: crate::flags::preview::shares(&flag_set, "dark-mode", 10_000).unwrap(),
        },
        flag_set: Some(flag_set),
        emergencies: vec![
            Emergency {
                id: "ER-20261127120500".into(),
                kind: EmergencyType::SecurityPatch,
                severity: Severity::P1,
                description: "session tokens leak in checkout's error page".into(),
                affected_services: vec!["checkout".into()],
                fix_version: "1.5.0".into(),
                requested_by: "alice".into(),
                created_at: at(5),
                approvers: vec!["bob".into()],
                status: EmergencyStatus::PendingApproval,
                plan: EmergencyPlan::standard(Severity::P1),
                log: Vec::new(),
                ended_at: None,
                cause: None,
                tests: None,
            },
            Emergency {
                id: "ER-20261126031200".into(),
                kind: EmergencyType::ServiceOutage,
                severity: Severity::P0,
                description: "search returns 500 for every query".into(),
                affected_services: vec!["search".into()],
                fix_version: "3.2.0".into(),
                requested_by: "dana".into(),
                created_at: at(1),
                approvers: Vec::new(),
                status: EmergencyStatus::Completed,
                plan: EmergencyPlan::standard(Severity::P0),
                log: Vec::new(),
                ended_at: Some(at(2)),
                cause: None,
                tests: None,
            },
        ],
        flag_served: [
            ("dark-mode", [("off", 0), ("on", 4093)]),
            ("new-checkout-flow", [("off", 3701), ("on", 412)]),
            ("search-ranking-v2", [("off", 1190), ("on", 1213)]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(|(n, c)| (n.to_string(), c)).collect()))
        .collect(),
        log,
        now: at(12),
        ..Snapshot::of_estate(&estate)
    };
    snap.emergency_report = Some(EmergencyReport::of(&snap.emergencies));
    snap.argo.insert("prod".into(), argo_view());
    snap
}

/// Three Argo Rollouts as prod's watch would show them: a canary paused at its second step with
/// its analysis running, a healthy blue-green, an aborted canary.
pub fn argo_view() -> crate::cluster::kube::argo_watch::ArgoView {
    use crate::cluster::kube::argo::{Analysis, ArgoRollout, Replicas, Revision, Step};
    use crate::cluster::kube::argo_watch::{ArgoStatus, ArgoView};
    let revision = |hash: &str, n: u64, image: &str, replicas: u32| Revision {
        pod_template_hash: hash.into(),
        revision: Some(n),
        images: vec![format!("registry.local/shop/{image}")],
        replicas,
        available: replicas,
    };
    let replicas =
        |desired, updated| Replicas { desired, current: desired, updated, ready: desired, available: desired };
    let rollouts = vec![
        ArgoRollout {
            name: "cart".into(),
            strategy: Some("canary".into()),
            phase: "Degraded".into(),
            message: "RolloutAborted: Rollout aborted update to revision 8".into(),
            step: Some(Step { index: 0, total: 4 }),
            set_weight: Some(0),
            actual_weight: Some(0),
            stable: Some(revision("6d4f9b", 7, "cart:2.3.1", 4)),
            canary: Some(revision("77c1aa", 8, "cart:2.4.0", 0)),
            analysis: vec![Analysis {
                kind: "step".into(),
                name: "cart-77c1aa-8-1".into(),
                phase: "Failed".into(),
                message: "metric \"error-rate\" assessed Failed".into(),
            }],
            aborted: true,
            paused: false,
            replicas: replicas(4, 0),
        },
        ArgoRollout {
            name: "storefront".into(),
            strategy: Some("canary".into()),
            phase: "Paused".into(),
            message: "CanaryPauseStep".into(),
            step: Some(Step { index: 1, total: 4 }),
            set_weight: Some(20),
            actual_weight: Some(16),
            stable: Some(revision("5b8c7d", 11, "storefront:1.8.0", 5)),
            canary: Some(revision("9f2e41", 12, "storefront:1.9.0", 1)),
            analysis: vec![Analysis {
                kind: "background".into(),
                name: "storefront-9f2e41-12".into(),
                phase: "Running".into(),
                message: String::new(),
            }],
            aborted: false,
            paused: true,
            replicas: replicas(6, 1),
        },
        ArgoRollout {
            name: "web".into(),
            strategy: Some("blueGreen".into()),
            phase: "Healthy".into(),
            message: String::new(),
            step: None,
            set_weight: None,
            actual_weight: None,
            stable: Some(revision("3a9d02", 5, "web:3.1.0", 3)),
            canary: None,
            analysis: Vec::new(),
            aborted: false,
            paused: false,
            replicas: replicas(3, 3),
        },
    ];
    ArgoView { namespace: "shop".into(), status: ArgoStatus::Watching, rollouts, problem: None }
}

/// The console over [`fixture`] with `keymap`, checkout in prod selected, on the environments
/// pane.
pub fn app_with(snapshot: Snapshot, theme: Theme, keymap: Keymap) -> App {
    let mut app = App::new(snapshot, theme, keymap, false);
    app.sel_app = 0; // checkout
    app.sel_env = 2; // prod
    app
}

/// [`app_with`] the fixture and the default keymap.
pub fn demo_app(theme: Theme) -> App {
    let keymap = Keymap::embedded("default").and_then(Result::ok).expect("the embedded default keymap is valid");
    app_with(fixture(), theme, keymap)
}

/// The fixture grown to a large estate: `apps` apps (the three demo apps first) in each
/// environment, every tenth with a release moving and every fiftieth waiting for approval in
/// prod; `flags` flags; `events` lines in the log; and `measurements` for the selected release
/// (checkout in prod).
pub fn large(apps: usize, flags: usize, events: usize, measurements: usize) -> Snapshot {
    let mut snap = fixture();
    let template: BTreeMap<String, WorkloadView> =
        snap.envs.iter().map(|e| (e.clone(), snap.workloads[&Target::new(e, "search")].clone())).collect();
    let running = snap.workloads[&Target::new("prod", "checkout")].release.clone();
    for i in snap.apps.len()..apps {
        let name = format!("svc-{i:04}");
        for (j, env) in snap.envs.iter().enumerate() {
            let mut w = template[env].clone();
            let v = format!("{}.{}.{}", 1 + i % 4, i % 10, j);
            w.state = WorkloadState { routing: Routing::all_to(&v), ..Default::default() };
            let replicas = 2 + (i % 3) as u32;
            w.state.versions.insert(
                v.clone(),
                VersionReplicas { desired: replicas, updated: replicas, ready: replicas, available: replicas },
            );
            w.state.actual_weights.insert(v.clone(), 100.0);
            if let Some(s) = w.settings.as_mut() {
                std::sync::Arc::make_mut(s).name = name.clone();
            }
            w.last_verified = Some(v.clone());
            if let Some(r) = running.as_ref().filter(|_| i % 10 == j) {
                let mut r = r.clone();
                r.id = format!("{env}-{name}-{v}-next");
                r.app = name.clone();
                r.env = env.clone();
                r.version = format!("{v}-next");
                r.cursor = i % r.plan.len();
                w.release = Some(r);
            }
            if let Some(r) = running.as_ref().filter(|_| i % 50 == 0 && env == "prod") {
                let mut r = r.clone();
                r.id = format!("{env}-{name}-{v}-approval");
                r.app = name.clone();
                r.env = env.clone();
                r.status = Status::Planned;
                w.pending = vec![r];
            }
            snap.workloads.insert(Target::new(env, &name), w);
        }
        snap.apps.push(name);
    }
    for i in snap.flags.len()..flags {
        snap.flags.push(FlagView {
            key: format!("flag-{i:04}-{}", ["checkout", "search", "payments", "ui"][i % 4]),
            enabled: i % 3 != 0,
            default_variant: "off".into(),
            variants: vec!["on".into(), "off".into()],
            rollout: (i % 2 == 0).then_some((i % 101) as u32),
            description: format!("Generated flag {i} for the large-estate bench & its <filters>"),
        });
    }
    let kinds = ["audit", "step", "analysis", "release", "flag", "note"];
    let first = -(events as i64);
    snap.log = (0..events)
        .map(|i| {
            let kind = kinds[i % kinds.len()];
            LogLine {
                at: at(first + i as i64),
                kind: kind.into(),
                text: format!("svc-{:04} {kind} line {i}: prod step 2/7 set weight 20%", i % apps.max(1)),
            }
        })
        .collect();
    if let Some(r) = running {
        snap.detail.measurements = (0..measurements)
            .map(|k| {
                let fail = k + 1 == measurements;
                Measurement {
                    release_id: r.id.clone(),
                    step: 1,
                    at: at(k as i64 * 3 - measurements as i64 * 3),
                    verdict: if fail { Verdict::Fail } else { Verdict::Pass },
                    canary_requests: 40 + (k % 17) as u64,
                    canary_error_rate: Some(if fail { 0.081 } else { (k % 5) as f64 / 1000.0 }),
                    canary_p99_ms: Some(22.0 + (k % 7) as f64),
                    stable_requests: 180 + (k % 23) as u64,
                    stable_error_rate: Some((k % 3) as f64 / 1000.0),
                    stable_p99_ms: Some(24.0),
                    detail: format!("error_rate {:.3} vs {:.3}, p99 within 1.5× stable", (k % 5) as f64 / 1000.0, 0.0),
                }
            })
            .collect();
    }
    snap
}
