//! What the panes draw: a plain copy of the estate's state, loaded from the store, the cluster
//! and the flag store, so rendering never touches a backend and tests can build one by hand.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::cluster::{Target, WorkloadState};
use crate::engine::Engine;
use crate::flags::FlagView;
use crate::model::{AppSettings, AuditEntry, Measurement, Release, Status, StepRecord};
use crate::store::ReleaseFilter;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadView {
    pub state: WorkloadState,
    /// The estate's, shared: a snapshot is loaded every second.
    pub settings: Option<Arc<AppSettings>>,
    /// The release holding the workload now, or else the latest one.
    pub release: Option<Release>,
    pub last_verified: Option<String>,
    /// Releases waiting for an approval.
    pub pending: Vec<Release>,
    /// Why the workload's state could not be read (a forbidden watch, an API server that does
    /// not answer): the state shown is then empty, not the cluster's.
    pub error: Option<String>,
    /// Who holds the workload's lease (Kubernetes), as the cluster's watch shows it.
    pub driver: Option<crate::cluster::Driver>,
}

impl WorkloadView {
    /// The version that takes most of the active traffic.
    pub fn current_version(&self) -> Option<&str> {
        self.state.routing.weights.iter().filter(|(_, w)| **w > 0).max_by_key(|(_, w)| **w).map(|(v, _)| v.as_str())
    }

    pub fn active(&self) -> Option<&Release> {
        self.release.as_ref().filter(|r| r.status.is_active())
    }

    /// Another console holds the lease and renews it: it drives the active release, not this one.
    pub fn driven_elsewhere(&self) -> Option<&crate::cluster::Driver> {
        self.driver.as_ref().filter(|d| !d.mine && !d.lapsed)
    }
}

/// The selected release's details.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReleaseDetail {
    pub steps: Vec<StepRecord>,
    pub measurements: Vec<Measurement>,
    /// The release notes stored with the release, once they are made.
    pub notes: Option<crate::model::ReleaseNotes>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub text: String,
}

/// The selected flag's latest changes, its latest experiment and who gets it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlagDetail {
    pub key: String,
    /// Newest first.
    pub changes: Vec<crate::model::FlagChange>,
    pub experiment: Option<crate::model::ExperimentResult>,
    /// Share (%) of 10,000 synthetic users per variant.
    pub who: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub envs: Vec<String>,
    /// Environment → environments it promotes to.
    pub promotes_to: BTreeMap<String, Vec<String>>,
    pub apps: Vec<String>,
    pub workloads: BTreeMap<Target, WorkloadView>,
    pub detail: ReleaseDetail,
    pub flags: Vec<FlagView>,
    /// Requests the pods served per flag and variant over the last minute.
    pub flag_served: BTreeMap<String, BTreeMap<String, u64>>,
    /// The flag document, for the Flags pane's details, evaluations and previews.
    pub flag_set: Option<crate::flags::FlagSet>,
    /// What the Flags pane shows of the selected flag beyond its definition.
    pub flag_detail: FlagDetail,
    /// The newest emergencies, newest first.
    pub emergencies: Vec<crate::model::Emergency>,
    /// Emergencies by type and severity, time to resolve, success rate, services, weeks.
    pub emergency_report: Option<crate::model::EmergencyReport>,
    /// The estate's plan for each severity.
    pub emergency_plans: Vec<(crate::model::Severity, crate::model::EmergencyPlan)>,
    /// The context and namespace of each Kubernetes environment.
    pub kube: BTreeMap<String, crate::cluster::kube::switch::KubePlace>,
    /// The kubeconfig's contexts, for `:ctx`.
    pub kube_contexts: Vec<String>,
    /// Each Kubernetes environment's Argo Rollouts, as its watch shows them.
    pub argo: BTreeMap<String, crate::cluster::kube::argo_watch::ArgoView>,
    /// Why the flags cannot be shown (the FeatureFlag was deleted, is unreadable, …).
    pub flag_problem: Option<String>,
    /// Audit log and engine events, oldest first.
    pub log: Vec<LogLine>,
    pub now: DateTime<Utc>,
}

impl Snapshot {
    /// An empty snapshot with the estate's environments, promotion paths and apps.
    pub fn of_estate(estate: &crate::config::Estate) -> Snapshot {
        Snapshot {
            envs: estate.env_names().into_iter().map(String::from).collect(),
            promotes_to: estate.environments.iter().map(|e| (e.name.clone(), e.promotes_to.clone())).collect(),
            apps: estate.apps.clone(),
            emergency_plans: crate::model::Severity::ALL.into_iter().map(|s| (s, estate.emergency_plan(s))).collect(),
            ..Snapshot::default()
        }
    }

    pub fn workload(&self, t: &Target) -> Option<&WorkloadView> {
        self.workloads.get(t)
    }
}

/// Read everything the panes need; `selected` is the workload whose release details load.
pub async fn load(engine: &Engine, selected: Option<&Target>, flag: Option<&str>, log_limit: usize) -> Snapshot {
    let estate = engine.estate();
    let store = engine.store();
    let mut workloads = BTreeMap::new();
    for (t, settings) in estate.shared_targets() {
        let (state, error) = match engine.cluster().state(&t).await {
            Ok(s) => (s, None),
            Err(e) => (WorkloadState::default(), Some(e.to_string())),
        };
        let filter = ReleaseFilter { env: Some(t.env.clone()), app: Some(t.app.clone()), limit: Some(20) };
        let releases = store.releases(&filter).unwrap_or_default();
        let release = releases.iter().find(|r| r.status.is_active()).or(releases.first()).cloned();
        let last_verified = releases.iter().find(|r| r.status == Status::Verified).map(|r| r.version.clone());
        let pending = releases.iter().filter(|r| r.status == Status::Planned).cloned().collect();
        let driver = engine.cluster().news(&t).driver;
        workloads.insert(
            t,
            WorkloadView { state, settings: Some(settings), release, last_verified, pending, error, driver },
        );
    }
    let detail = match selected.and_then(|t| workloads.get(t)).and_then(|w| w.release.as_ref()) {
        Some(r) => ReleaseDetail {
            steps: store.steps(&r.id).unwrap_or_default(),
            measurements: store.measurements(&r.id).unwrap_or_default(),
            notes: store.release_notes(&r.id).ok().flatten(),
        },
        None => ReleaseDetail::default(),
    };
    let mut log: Vec<LogLine> = store
        .audit_log(None, log_limit)
        .unwrap_or_default()
        .into_iter()
        .map(|a: AuditEntry| LogLine {
            at: a.at,
            kind: "audit".into(),
            text: format!("{} {} {} {}", a.actor, a.action, a.target, a.detail),
        })
        .collect();
    log.reverse();
    let cluster_events = engine.cluster().cluster_events();
    if !cluster_events.is_empty() {
        log.extend(cluster_events.into_iter().map(kube_line));
        // Both were in time order; a stable sort keeps each one's order among equal times.
        log.sort_by_key(|a| a.at);
    }
    let flag_served = engine.flag_served(std::time::Duration::from_secs(60)).await;
    let (flag_set, flag_problem) = match engine.flag_current().await {
        Some(Ok(set)) => (Some(set), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let flag_detail = match (flag, &flag_set) {
        (Some(key), Some(set)) => FlagDetail {
            key: key.to_string(),
            changes: store.flag_changes(Some(key), 5).unwrap_or_default(),
            experiment: store.experiments(key).ok().and_then(|e| e.into_iter().next()),
            who: who_gets(set, key),
        },
        _ => FlagDetail::default(),
    };
    Snapshot {
        workloads,
        detail,
        flags: flag_set.as_ref().map(|s| s.views()).unwrap_or_default(),
        flag_set,
        flag_detail,
        emergencies: store.emergencies(None, Some(10)).unwrap_or_default(),
        emergency_report: store.emergency_report().ok(),
        flag_served,
        kube: engine.kube_places(),
        kube_contexts: engine.kube_contexts(),
        argo: engine.argo_views(),
        flag_problem,
        log,
        now: Utc::now(),
        ..Snapshot::of_estate(estate)
    }
}

/// `prod/web Warning BackOff pod/web-1-1-0-abc: Back-off restarting failed container (×4)`
pub(crate) fn kube_line(e: crate::cluster::ClusterEvent) -> LogLine {
    let count = if e.count > 1 { format!(" (×{})", e.count) } else { String::new() };
    let kind = if e.warning { "Warning" } else { "Normal" };
    LogLine {
        at: e.at,
        kind: "k8s".into(),
        text: format!("{} {kind} {} {}: {}{count}", e.target, e.reason, e.object, e.note),
    }
}

/// Who gets `key` over 10,000 synthetic users. The snapshot reloads every second; the shares
/// change only with the flag document, so the last answer is kept with the document it came from.
fn who_gets(set: &crate::flags::FlagSet, key: &str) -> Vec<(String, f64)> {
    type Kept = Option<(String, crate::flags::FlagSet, Vec<(String, f64)>)>;
    static LAST: std::sync::Mutex<Kept> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, s, who)) = last.as_ref()
        && k == key
        && s == set
    {
        return who.clone();
    }
    let who = crate::flags::preview::shares(set, key, 10_000).unwrap_or_default();
    *last = Some((key.to_string(), set.clone(), who.clone()));
    who
}
