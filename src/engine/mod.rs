//! The action engine: the only place that decides. It owns every running release as an
//! explicit state machine, persists each transition before acting on it, and publishes
//! [`Event`]s. The CLI and the console send [`Command`]s and render events.

mod actions;
mod analysis;
pub mod emergency;
mod experiment;
pub mod flag_rollout;
mod kube_actions;
pub(crate) mod native;
pub mod plan;
mod run;
mod steps;
pub mod verify;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::analysis::MetricsProvider;
use crate::cluster::{Cluster, Target, WorkloadSpec};
use crate::config::Estate;
use crate::model::{AppSettings, AuditEntry, Measurement, MetricsSource, Release, Status, StrategyKind};
use crate::store::{Store, StoreError};

pub use verify::CheckResult;

/// What a person (or a script) asks the engine to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Deploy {
        app: String,
        env: String,
        version: String,
        strategy: Option<StrategyKind>,
        /// Flag changes the release carries, besides those the version declares in the estate.
        #[serde(default)]
        flags: Vec<crate::model::FlagSetting>,
    },
    Promote {
        app: String,
        from: String,
        to: String,
    },
    Approve {
        release_id: String,
    },
    Pause {
        app: String,
        env: String,
    },
    Resume {
        app: String,
        env: String,
        full: bool,
    },
    Abort {
        app: String,
        env: String,
    },
    Retry {
        app: String,
        env: String,
    },
    Rollback {
        app: String,
        env: String,
        to: Option<String>,
    },
    /// `kubectl rollout undo --to-revision N` of the app's own Deployment, as a rollback release.
    RolloutUndo {
        app: String,
        env: String,
        revision: i64,
    },
    Restart {
        app: String,
        env: String,
        version: Option<String>,
    },
    /// Turn a feature flag on or off (its kill switch).
    SetFlag {
        key: String,
        enabled: bool,
    },
    /// Send `percent`% of users to the flag's `on` variant.
    SetFlagRollout {
        key: String,
        percent: u32,
    },
    /// Edit a flag's targeting rules, weights, tags or dependencies.
    EditFlag {
        key: String,
        edit: crate::flags::edit::FlagEdit,
    },
    /// Roll a flag out in stages, judged on the traffic of `app` in `env`.
    FlagRollout {
        key: String,
        app: String,
        env: String,
        /// Default: 10%, 25%, 50%, 100% held 1 h, 1 h, 2 h.
        stages: Option<Vec<flag_rollout::Stage>>,
        /// An analysis template of the app; default: the default template (sequential judge).
        template: Option<String>,
    },
    /// Split users 50/50 between two variants of a flag for a while and compare what they got.
    FlagExperiment {
        key: String,
        app: String,
        env: String,
        control: String,
        treatment: String,
        duration_secs: u64,
        hypothesis: String,
    },
    /// Open an emergency release with the plan of its severity (P0: approved at once).
    CreateEmergency {
        kind: crate::model::EmergencyType,
        severity: crate::model::Severity,
        description: String,
        affected_services: Vec<String>,
        fix_version: String,
    },
    /// One approval of an emergency; P1 and P2 need two, from people other than the requester.
    ApproveEmergency {
        id: String,
    },
    /// Build, test and deploy an approved emergency's fix; a task carries it out.
    ExecuteEmergency {
        id: String,
    },
    /// Point a Kubernetes environment at another kubeconfig context and/or namespace (`None`
    /// keeps the one it uses), as k9s's `:ctx` and `:ns` do. Changes what shipdeck looks at,
    /// not the estate, so `--readonly` allows it.
    SwitchKubernetes {
        env: String,
        #[serde(default)]
        context: Option<String>,
        #[serde(default)]
        namespace: Option<String>,
    },
    /// Act on an Argo Rollouts `Rollout` of a Kubernetes environment as `kubectl argo rollouts`
    /// does (promote, promote-full, abort, retry, undo [to a revision]).
    Argo {
        env: String,
        rollout: String,
        action: crate::cluster::kube::argo::ArgoAction,
        #[serde(default)]
        to_revision: Option<u64>,
    },
}

impl Command {
    /// True for the emergency commands, which [`Engine::execute_emergency`] answers with the emergency.
    pub fn is_emergency(&self) -> bool {
        matches!(
            self,
            Command::CreateEmergency { .. } | Command::ApproveEmergency { .. } | Command::ExecuteEmergency { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Command::Deploy { .. } => "deploy",
            Command::Promote { .. } => "promote",
            Command::Approve { .. } => "approve",
            Command::Pause { .. } => "pause",
            Command::Resume { .. } => "resume",
            Command::Abort { .. } => "abort",
            Command::Retry { .. } => "retry",
            Command::Rollback { .. } => "rollback",
            Command::RolloutUndo { .. } => "rollout undo",
            Command::Restart { .. } => "restart",
            Command::SetFlag { .. } => "flag",
            Command::SetFlagRollout { .. } => "flag rollout",
            Command::FlagRollout { .. } => "flag progressive rollout",
            Command::EditFlag { .. } => "flag edit",
            Command::FlagExperiment { .. } => "flag experiment",
            Command::CreateEmergency { .. } => "emergency create",
            Command::ApproveEmergency { .. } => "emergency approve",
            Command::ExecuteEmergency { .. } => "emergency execute",
            Command::SwitchKubernetes { .. } => "kubernetes switch",
            Command::Argo { action, .. } => action.command(),
        }
    }
}

/// What happened, in order, for whoever listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A release changed: status, step, weight or reason.
    Release {
        release: Box<Release>,
        cause: String,
    },
    Step {
        release_id: String,
        index: usize,
        total: usize,
        description: String,
    },
    Measurement {
        measurement: Measurement,
    },
    Check {
        release_id: String,
        result: CheckResult,
    },
    Note {
        release_id: Option<String>,
        message: String,
    },
    /// A feature flag changed.
    Flag {
        flag: crate::flags::FlagView,
        by: String,
    },
    /// The task driving the release ended (it is terminal, paused with nobody driving it, or
    /// waiting for approval).
    Finished {
        release_id: String,
        status: Status,
    },
    /// An experiment on a flag ended; its result is stored.
    Experiment {
        result: Box<crate::model::ExperimentResult>,
    },
    /// An emergency release changed: created, approved, a step of its execution ran, or it ended.
    Emergency {
        emergency: Box<crate::model::Emergency>,
        message: String,
    },
    /// A progressive flag rollout moved to a stage (`finished` false) or ended.
    FlagRollout {
        key: String,
        finished: bool,
        ok: bool,
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad input: unknown app/env/version, invalid promotion path, a refused approval.
    #[error("{0}")]
    BadInput(String),
    /// A pre-deployment check or the state of a release refuses the command.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Backend(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// Exit codes of the CLI: 2 bad input, 3 a backend could not be reached.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::BadInput(_) | EngineError::Refused(_) => 2,
            EngineError::Backend(_) | EngineError::Store(_) => 3,
        }
    }
}

impl From<crate::cluster::ClusterError> for EngineError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        EngineError::Backend(e.to_string())
    }
}

/// What a command did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub message: String,
    /// The release the command created or acted on.
    pub release: Option<Release>,
    /// True when a task now drives the release (the caller may follow its events).
    pub running: bool,
}

/// A user's action on a running release, delivered to the task that drives it.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Pause { actor: String },
    Resume { actor: String, full: bool },
    Abort { actor: String },
    Rollback { actor: String },
}

struct RunHandle {
    release_id: String,
    actions: mpsc::UnboundedSender<Action>,
    task: tokio::task::JoinHandle<()>,
}

pub(crate) struct Inner {
    pub estate: Arc<Estate>,
    pub cluster: Arc<dyn Cluster>,
    pub metrics: Arc<dyn MetricsProvider>,
    pub store: Arc<Store>,
    pub events: broadcast::Sender<Event>,
    pub readonly: bool,
    pub flags: std::sync::OnceLock<Arc<dyn crate::flags::FlagStore>>,
    /// Moves Kubernetes environments between contexts and namespaces.
    pub kube: std::sync::OnceLock<Arc<crate::cluster::kube::switch::Switcher>>,
    /// Per-variant traffic of flags, for progressive rollouts.
    flag_metrics: std::sync::OnceLock<Arc<dyn crate::analysis::FlagMetrics>>,
    /// Providers set in place of the estate's (tests put a failing Prometheus here).
    providers: Mutex<HashMap<MetricsSource, Arc<dyn MetricsProvider>>>,
    runs: Mutex<HashMap<Target, RunHandle>>,
    /// Old pods waiting for their scale-down delay; done at once on shutdown.
    cleanups: Mutex<Vec<(Target, String, tokio::task::JoinHandle<()>)>>,
    /// Tasks executing emergencies; stopped on shutdown (the next start marks them failed).
    emergencies: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Handle to the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub fn new(
        estate: Arc<Estate>,
        cluster: Arc<dyn Cluster>,
        metrics: Arc<dyn MetricsProvider>,
        store: Arc<Store>,
        readonly: bool,
    ) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            inner: Arc::new(Inner {
                estate,
                cluster,
                metrics,
                store,
                events,
                readonly,
                flags: std::sync::OnceLock::new(),
                kube: std::sync::OnceLock::new(),
                providers: Mutex::new(HashMap::new()),
                flag_metrics: std::sync::OnceLock::new(),
                runs: Mutex::new(HashMap::new()),
                cleanups: Mutex::new(Vec::new()),
                emergencies: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Measure with `provider` whenever an analysis names `source`, instead of what the estate says.
    pub fn set_provider(&self, source: MetricsSource, provider: Arc<dyn MetricsProvider>) {
        self.inner.providers.lock().unwrap_or_else(|e| e.into_inner()).insert(source, provider);
    }

    /// Where progressive rollouts read each variant's traffic.
    pub fn attach_flag_metrics(&self, metrics: Arc<dyn crate::analysis::FlagMetrics>) {
        let _ = self.inner.flag_metrics.set(metrics);
    }

    /// Let `:ctx`/`:ns` (Command::SwitchKubernetes) move the estate's Kubernetes environments.
    pub fn attach_kube(&self, switcher: Arc<crate::cluster::kube::switch::Switcher>) {
        let _ = self.inner.kube.set(switcher);
    }

    /// The context and namespace each Kubernetes environment uses now.
    pub fn kube_places(&self) -> BTreeMap<String, crate::cluster::kube::switch::KubePlace> {
        self.inner.kube.get().map(|k| k.places()).unwrap_or_default()
    }

    /// What each Kubernetes environment's Argo Rollouts watch shows now (none without one).
    pub fn argo_views(&self) -> BTreeMap<String, crate::cluster::kube::argo_watch::ArgoView> {
        self.inner.kube.get().and_then(|k| k.argo()).map(|a| a.views()).unwrap_or_default()
    }

    /// Receivers that change when something the console shows changed outside the engine: an
    /// Argo Rollouts watch's view, the flag store's watched flags.
    pub fn news(&self) -> Vec<tokio::sync::watch::Receiver<u64>> {
        let argo = self.inner.kube.get().and_then(|k| k.argo()).map(|a| a.changes());
        let flags = self.inner.flags.get().and_then(|f| f.changes());
        argo.into_iter().chain(flags).collect()
    }

    /// The kubeconfig's contexts (empty when no environment runs on Kubernetes).
    pub fn kube_contexts(&self) -> Vec<String> {
        self.inner.kube.get().map(|k| k.contexts()).unwrap_or_default()
    }

    /// Give the engine a flag store; flag commands are refused without one.
    pub fn attach_flags(&self, store: Arc<dyn crate::flags::FlagStore>) {
        let _ = self.inner.flags.set(store);
    }

    /// How many requests the pods served each variant of each flag over the last `window`,
    /// summed over every app and environment (empty without flag metrics).
    pub async fn flag_served(&self, window: std::time::Duration) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let Some(metrics) = self.inner.flag_metrics() else { return out };
        let targets: Vec<Target> = self.inner.estate.targets().into_iter().map(|(t, _)| t).collect();
        for flag in self.flag_views().await {
            for t in &targets {
                let Ok(by_variant) = metrics.variant_metrics(t, &flag.key, window).await else { continue };
                for (variant, m) in by_variant {
                    *out.entry(flag.key.clone()).or_default().entry(variant).or_default() += m.requests;
                }
            }
        }
        out
    }

    /// The flags as stored now.
    pub async fn flag_views(&self) -> Vec<crate::flags::FlagView> {
        self.flag_set().await.map(|set| set.views()).unwrap_or_default()
    }

    /// The whole flag document as stored now, for showing (`None` without a flag store or when
    /// it cannot be read; a store in a cluster may answer from its read of a few seconds ago).
    pub async fn flag_set(&self) -> Option<crate::flags::FlagSet> {
        self.inner.flags.get()?.current().await.ok()
    }

    /// The flag document as [`Engine::flag_set`] gives it, or in words why it cannot be shown
    /// (`None` without a flag store).
    pub async fn flag_current(&self) -> Option<Result<crate::flags::FlagSet, String>> {
        Some(self.inner.flags.get()?.current().await.map_err(|e| e.to_string()))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Publish an event on the engine's stream, for a task beside the engine that has news
    /// (a webhook delivery that was given up).
    pub fn publish(&self, event: Event) {
        self.inner.emit(event);
    }

    pub fn estate(&self) -> &Estate {
        &self.inner.estate
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn cluster(&self) -> &dyn Cluster {
        self.inner.cluster.as_ref()
    }

    pub fn readonly(&self) -> bool {
        self.inner.readonly
    }

    /// Carry out a command on behalf of `actor`.
    pub async fn execute(&self, actor: &str, command: Command) -> Result<Outcome, EngineError> {
        if self.inner.readonly && !matches!(command, Command::SwitchKubernetes { .. }) {
            return Err(EngineError::BadInput(format!(
                "read-only: `{}` changes the estate and --readonly refuses every change",
                command.name()
            )));
        }
        actions::execute(self, actor, command).await
    }

    /// Carry out an emergency command on behalf of `actor`; the outcome carries the emergency.
    pub async fn execute_emergency(
        &self,
        actor: &str,
        command: Command,
    ) -> Result<emergency::EmergencyOutcome, EngineError> {
        if self.inner.readonly {
            return Err(EngineError::BadInput(format!(
                "read-only: `{}` changes the estate and --readonly refuses every change",
                command.name()
            )));
        }
        emergency::execute(&self.inner, actor, command).await
    }

    /// An emergency as stored now (bad input when no emergency has this id).
    pub fn emergency(&self, id: &str) -> Result<crate::model::Emergency, EngineError> {
        emergency::get(&self.inner, id)
    }

    /// True while a task drives a release of this target.
    pub fn is_running(&self, target: &Target) -> bool {
        self.inner.lock_runs().get(target).is_some_and(|h| !h.task.is_finished())
    }

    /// Stop driving releases (they stay as stored: a later start shows them interrupted) and
    /// carry out pending scale-downs now, so no old pods outlive their release.
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = std::mem::take(&mut *self.inner.emergencies.lock().unwrap_or_else(|e| e.into_inner()));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        let runs: Vec<RunHandle> = self.inner.lock_runs().drain().map(|(_, h)| h).collect();
        for h in &runs {
            h.task.abort();
        }
        for h in runs {
            let _ = h.task.await;
        }
        let cleanups: Vec<_> = std::mem::take(&mut *self.inner.cleanups.lock().unwrap_or_else(|e| e.into_inner()));
        for (target, version, task) in cleanups {
            if !task.is_finished() {
                task.abort();
                let _ = self.inner.cluster.scale(&target, &version, 0).await;
                self.inner.persist(&target).await;
            }
        }
    }

    /// Removes versions that take no traffic from workloads that have no active release:
    /// leftovers of a process that stopped during a scale-down delay. Only on the local
    /// cluster: on a shared Kubernetes cluster another console may be in the middle of a
    /// rollout this one cannot see (no Lease yet), so nothing there is removed on its own.
    pub async fn collect_garbage(&self) -> Result<(), EngineError> {
        for (target, _) in self.inner.estate.targets() {
            if self.inner.estate.env(&target.env).is_some_and(|e| !e.cluster.is_local()) {
                continue;
            }
            if self.inner.store.active_release(&target.env, &target.app)?.is_some() {
                continue;
            }
            let state = self.inner.cluster.state(&target).await?;
            let routed: Vec<&String> = state
                .routing
                .weights
                .iter()
                .filter(|(_, w)| **w > 0)
                .map(|(v, _)| v)
                .chain(state.routing.matches.iter().map(|m| &m.version))
                .chain(state.routing.preview.iter())
                .collect();
            for version in state.versions.keys() {
                if !routed.contains(&version) {
                    self.inner.cluster.scale(&target, version, 0).await?;
                }
            }
            self.inner.persist(&target).await;
        }
        Ok(())
    }
}

impl Inner {
    pub(crate) fn flag_metrics(&self) -> Option<Arc<dyn crate::analysis::FlagMetrics>> {
        self.flag_metrics.get().cloned()
    }

    /// Where an analysis of `target` gets its numbers from.
    pub(crate) fn provider(
        &self,
        target: &Target,
        settings: &AppSettings,
        source: MetricsSource,
    ) -> Result<Arc<dyn MetricsProvider>, String> {
        if let Some(p) = self.providers.lock().unwrap_or_else(|e| e.into_inner()).get(&source) {
            return Ok(p.clone());
        }
        match source {
            MetricsSource::Local if self.estate.env(&target.env).is_some_and(|e| !e.cluster.is_local()) => {
                Err(format!(
                    "provider `local` measures the local cluster's router, but environment {} runs on Kubernetes: \
                 give the analysis provider = \"prometheus\" (and the estate a [prometheus] url)",
                    target.env
                ))
            }
            MetricsSource::Local => Ok(self.metrics.clone()),
            MetricsSource::Prometheus => match &self.estate.prometheus {
                Some(p) => Ok(analysis::prometheus_provider(p, settings)),
                None => Err("the analysis asks Prometheus but the estate has no [prometheus] url".into()),
            },
        }
    }

    fn lock_runs(&self) -> std::sync::MutexGuard<'_, HashMap<Target, RunHandle>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn emit(&self, event: Event) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    pub fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) {
        let entry = AuditEntry {
            at: Utc::now(),
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail: detail.to_string(),
        };
        if let Err(e) = self.store.audit(&entry) {
            tracing::error!("audit entry lost: {e}");
        }
    }

    /// Record what the workload should look like, so it comes back after a restart.
    pub async fn persist(&self, target: &Target) {
        match self.cluster.state(target).await {
            Ok(state) => {
                let spec = WorkloadSpec {
                    replicas: state
                        .versions
                        .iter()
                        .map(|(v, r)| (v.clone(), r.desired))
                        .filter(|(_, n)| *n > 0)
                        .collect(),
                    routing: state.routing,
                };
                if let Err(e) = self.store.save_workload(target, &spec) {
                    tracing::error!("saving workload {target}: {e}");
                }
            }
            Err(e) => tracing::warn!("reading workload {target}: {e}"),
        }
    }

    /// The version that takes most of the active traffic now, if any.
    pub async fn current_version(&self, target: &Target) -> Result<Option<String>, EngineError> {
        let state = self.cluster.state(target).await?;
        Ok(state.routing.weights.iter().filter(|(_, w)| **w > 0).max_by_key(|(_, w)| **w).map(|(v, _)| v.clone()))
    }

    /// Start a task driving `release`, replacing any finished one for the same target.
    pub fn spawn(self: &Arc<Self>, release: Release, first_action: Option<Action>) {
        let target = Target::new(&release.env, &release.app);
        // A removal still pending from an earlier abort must not take this release's pods.
        self.cancel_removal(&target, &release.version);
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(a) = first_action {
            let _ = tx.send(a);
        }
        let id = release.id.clone();
        let task = tokio::spawn(run::Run::new(self.clone(), release, rx).drive());
        self.lock_runs().insert(target, RunHandle { release_id: id, actions: tx, task });
    }

    /// True while a task drives this release.
    pub fn is_driving(&self, target: &Target, release_id: &str) -> bool {
        self.lock_runs().get(target).is_some_and(|h| h.release_id == release_id && !h.task.is_finished())
    }

    /// Deliver an action to the task driving this target's release, if one runs.
    pub fn send_action(&self, target: &Target, release_id: &str, action: Action) -> bool {
        let runs = self.lock_runs();
        match runs.get(target) {
            Some(h) if h.release_id == release_id && !h.task.is_finished() => h.actions.send(action).is_ok(),
            _ => false,
        }
    }

    pub fn schedule_removal(self: &Arc<Self>, target: Target, version: String, delay: std::time::Duration) {
        let inner = self.clone();
        let (t, v) = (target.clone(), version.clone());
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // The version may be in use again by a release that started meanwhile.
            if let Ok(Some(active)) = inner.store.active_release(&t.env, &t.app)
                && active.version == v
            {
                return;
            }
            if let Err(e) = inner.cluster.scale(&t, &v, 0).await {
                tracing::warn!("removing {v} from {t}: {e}");
            }
            inner.persist(&t).await;
            inner.emit(Event::Note { release_id: None, message: format!("{t}: removed {v} after {delay:?}") });
        });
        let mut c = self.cleanups.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|(_, _, h)| !h.is_finished());
        c.push((target, version, task));
    }

    /// Keep the task executing an emergency, so shutdown can stop it.
    pub fn track_emergency(&self, task: tokio::task::JoinHandle<()>) {
        let mut all = self.emergencies.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|t| !t.is_finished());
        all.push(task);
    }

    /// Cancel a pending removal of `version` (it is needed again, e.g. after a retry).
    pub fn cancel_removal(&self, target: &Target, version: &str) {
        let mut c = self.cleanups.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|(t, v, h)| {
            let hit = t == target && v == version;
            if hit {
                h.abort();
            }
            !hit
        });
    }
}
