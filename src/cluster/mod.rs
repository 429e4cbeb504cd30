//! The `Cluster` trait: the few primitives every strategy is made of, so a strategy is written
//! once and runs on the embedded local cluster and (later) on Kubernetes.

pub mod kube;
pub mod local;
pub mod routed;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One workload: an app in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    pub env: String,
    pub app: String,
}

impl Target {
    pub fn new(env: impl Into<String>, app: impl Into<String>) -> Self {
        Self { env: env.into(), app: app.into() }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.env, self.app)
    }
}

/// Requests that carry this header (or cookie) with this value go to `version`, whatever the
/// weights say. Used by A/B releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMatch {
    pub kind: MatchKind,
    pub name: String,
    pub value: String,
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    Header,
    Cookie,
}

/// Where the workload's traffic goes. Set as a whole, atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    /// Weights of the active entry, per version; they need not add up to 100 (they are
    /// relative), but strategies keep them at 100.
    pub weights: BTreeMap<String, u32>,
    /// Header/cookie matches, checked in order before the weights.
    pub matches: Vec<RouteMatch>,
    /// The version behind the preview entry (blue-green), if any.
    pub preview: Option<String>,
}

impl Routing {
    /// All traffic to one version, nothing else.
    pub fn all_to(version: &str) -> Self {
        let mut weights = BTreeMap::new();
        weights.insert(version.to_string(), 100);
        Self { weights, matches: Vec::new(), preview: None }
    }

    /// Both versions' pods serve, as many requests each as it has ready pods: what a Service in
    /// front of a Deployment's native rolling update does. `old` is named the active version.
    pub fn follow_pods(old: &str, new: &str) -> Self {
        let mut weights = BTreeMap::new();
        weights.insert(old.to_string(), 100);
        if new != old {
            weights.insert(new.to_string(), 0);
        }
        Self { weights, matches: Vec::new(), preview: None }
    }

    /// `stable` gets `100 - canary_weight`, `canary` the rest.
    pub fn split(stable: &str, canary: &str, canary_weight: u32) -> Self {
        let w = canary_weight.min(100);
        let mut weights = BTreeMap::new();
        if w < 100 {
            weights.insert(stable.to_string(), 100 - w);
        }
        if w > 0 {
            weights.insert(canary.to_string(), w);
        }
        Self { weights, matches: Vec::new(), preview: None }
    }
}

/// Why a pod is not serving, in the words `kubectl get pods` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    Starting,
    Running,
    CrashLoopBackOff,
    ImagePullBackOff,
    Terminating,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodState {
    pub name: String,
    pub version: String,
    pub phase: PodPhase,
    pub ready: bool,
    pub restarts: u32,
    /// Loopback address for local pods, pod IP elsewhere.
    pub address: Option<String>,
}

/// Replica counts of one version, as `kubectl get rs` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionReplicas {
    pub desired: u32,
    /// Pods that exist at this version (created, whatever their phase).
    pub updated: u32,
    pub ready: u32,
    /// Ready and serving traffic through the router/service.
    pub available: u32,
}

/// What the workload looks like right now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadState {
    pub versions: BTreeMap<String, VersionReplicas>,
    pub pods: Vec<PodState>,
    /// The routing that is set.
    pub routing: Routing,
    /// Share of requests (0-100) each version actually answered over the last few seconds.
    pub actual_weights: BTreeMap<String, f64>,
    /// Where a person can send requests (the router's address for local workloads).
    pub entry_url: Option<String>,
    pub preview_url: Option<String>,
    /// The app's own Deployment rolling out natively (Kubernetes), as `kubectl rollout status`
    /// reads it; None where the cluster does no native rollouts or the app has none.
    #[serde(default)]
    pub native: Option<NativeStatus>,
}

impl WorkloadState {
    pub fn replicas(&self, version: &str) -> VersionReplicas {
        self.versions.get(version).cloned().unwrap_or_default()
    }
}

/// How a Deployment replaces its pods in a native rollout (`spec.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NativeStrategy {
    /// `RollingUpdate`: at most `replicas + max_surge` pods, at least `replicas - max_unavailable` available.
    Rolling { max_surge: u32, max_unavailable: u32 },
    /// `Recreate`: every old pod goes before a new one starts.
    Recreate,
}

impl std::fmt::Display for NativeStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NativeStrategy::Rolling { max_surge, max_unavailable } => {
                write!(f, "rolling update, max surge {max_surge}, max unavailable {max_unavailable}")
            }
            NativeStrategy::Recreate => write!(f, "recreate"),
        }
    }
}

/// A native rollout of the app's own Deployment to one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeRollout {
    pub strategy: NativeStrategy,
    pub replicas: u32,
    /// Seconds without progress before the controller gives up (`progressDeadlineSeconds`).
    pub progress_deadline_secs: u64,
    /// Why, for `kubectl rollout history` (`kubernetes.io/change-cause`).
    pub change_cause: String,
}

/// Where a native rollout stands, as `kubectl rollout status` decides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NativeCondition {
    /// Still going; the message says what it waits for, in kubectl's words.
    Progressing { message: String },
    /// Every replica updated and available, no old one left.
    Complete,
    /// The controller gave up (`ProgressDeadlineExceeded`); its message.
    DeadlineExceeded { message: String },
}

/// The app's own Deployment and its rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeStatus {
    pub deployment: String,
    /// The version its pod template runs (the template's `shipdeck.dev/version` label).
    pub version: Option<String>,
    /// `deployment.kubernetes.io/revision`.
    pub revision: Option<i64>,
    pub desired: u32,
    pub updated: u32,
    /// All its pods, old and new.
    pub total: u32,
    pub ready: u32,
    pub available: u32,
    pub condition: NativeCondition,
}

impl NativeStatus {
    /// Has `version` completely rolled out?
    pub fn complete_at(&self, version: &str) -> bool {
        self.version.as_deref() == Some(version) && self.condition == NativeCondition::Complete
    }
}

/// Which revision a native undo goes back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoTarget {
    /// The one before the current one (`kubectl rollout undo`).
    Previous,
    /// `kubectl rollout undo --to-revision N`.
    Revision(i64),
    /// The newest revision whose pod template runs this version (a release's rollback).
    Version(String),
}

/// One revision of the app's own Deployment (one of its ReplicaSets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeRevision {
    pub revision: i64,
    /// The version its pod template runs, when shipdeck labelled it.
    pub version: Option<String>,
}

/// What a native undo did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoOutcome {
    pub revision: i64,
    pub version: Option<String>,
    /// False when the Deployment already ran that template (nothing was written).
    pub changed: bool,
}

/// An HTTP request made to the pods of one version (verification, smoke tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRequest {
    pub method: String,
    pub path: String,
    pub body: Option<String>,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResponse {
    pub status: u16,
    pub body: String,
    pub latency_ms: f64,
}

/// The desired state of one workload, enough to bring it back after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Replicas per version.
    pub replicas: BTreeMap<String, u32>,
    pub routing: Routing,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{target}: {message}")]
    Unreachable { target: String, message: String },
    #[error("{target}: no ready pod of version {version} to probe")]
    NoReadyPod { target: String, version: String },
    #[error("{target}: probe {path} failed: {message}")]
    Probe { target: String, path: String, message: String },
    /// The Kubernetes API refused or failed a request; the message says which and what to do.
    #[error("{target}: {message}")]
    Kubernetes { target: String, message: String },
    #[error("{0}")]
    Other(String),
}

/// Who may drive a workload's rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimStatus {
    /// This process holds it.
    Held,
    /// Another holds it (until it stops renewing).
    HeldBy { holder: String },
    /// This process held it and no longer does: it must stop driving the rollout.
    Lost { reason: String },
}

/// The right to drive a workload's rollout, kept (renewed) while this value lives.
pub struct Claim {
    pub status: tokio::sync::watch::Receiver<ClaimStatus>,
    keeper: Box<dyn Send + Sync>,
    /// In a mutex only so that a claim can be shared (`Sync`); it is taken once.
    hand_back: std::sync::Mutex<Option<futures::future::BoxFuture<'static, ()>>>,
}

impl Claim {
    pub fn new(status: tokio::sync::watch::Receiver<ClaimStatus>, keeper: impl Send + Sync + 'static) -> Self {
        Self { status, keeper: Box::new(keeper), hand_back: std::sync::Mutex::new(None) }
    }

    /// What [`Claim::hand_back`] does, besides no longer renewing.
    pub fn on_hand_back(self, f: futures::future::BoxFuture<'static, ()>) -> Self {
        Self { hand_back: std::sync::Mutex::new(Some(f)), ..self }
    }

    /// Give the claim up now (rather than letting it lapse), so another may take it at once.
    pub async fn hand_back(self) {
        let Claim { keeper, hand_back, .. } = self;
        drop(keeper);
        let hand_back = hand_back.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = hand_back {
            f.await;
        }
    }

    /// Resolves with the reason once the claim is lost (never, while it is held).
    pub async fn lost(&mut self) -> String {
        loop {
            if let ClaimStatus::Lost { reason } = &*self.status.borrow_and_update() {
                return reason.clone();
            }
            if self.status.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// Who holds the right to drive a workload's rollout, as the cluster shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    /// `<user> (pid N) on <host>`, as the holder wrote it.
    pub holder: String,
    /// This process holds it.
    pub mine: bool,
    /// The holder stopped renewing: anyone may take it over.
    pub lapsed: bool,
    /// When it was last renewed.
    pub renewed: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a cluster other consoles share shows about a workload besides its pods: who drives it
/// and the rollout last written into the cluster (by whichever console).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterNews {
    pub driver: Option<Driver>,
    pub rollout: Option<crate::model::Release>,
}

/// One of the cluster's own events about a workload's objects (`kubectl get events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    pub at: chrono::DateTime<chrono::Utc>,
    pub target: Target,
    pub warning: bool,
    pub reason: String,
    /// `pod/web-1-1-0-7d9f-abcde`
    pub object: String,
    pub note: String,
    /// How many times it happened (an event that repeats is one event with a count).
    pub count: u32,
}

/// The primitives a release strategy is made of.
///
/// Every call returns once the change is *requested*; progress (pods becoming ready) is
/// observed through [`Cluster::state`] and [`Cluster::watch`].
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Run `replicas` pods of `version` (scale up or down; 0 removes them all).
    async fn scale(&self, target: &Target, version: &str, replicas: u32) -> Result<(), ClusterError>;

    /// Replace every pod of `version`, one at a time, keeping the count.
    async fn restart(&self, target: &Target, version: &str) -> Result<(), ClusterError>;

    /// Set where traffic goes; takes effect for the next request.
    async fn set_routing(&self, target: &Target, routing: &Routing) -> Result<(), ClusterError>;

    /// What runs now.
    async fn state(&self, target: &Target) -> Result<WorkloadState, ClusterError>;

    /// A receiver that changes whenever the workload's state changes (pods, readiness,
    /// routing). The first value is the current state.
    async fn watch(&self, target: &Target) -> Result<tokio::sync::watch::Receiver<WorkloadState>, ClusterError>;

    /// Send a request to one ready pod of `version`.
    async fn probe(
        &self,
        target: &Target,
        version: &str,
        request: &ProbeRequest,
    ) -> Result<ProbeResponse, ClusterError>;

    /// Claim the right to drive `target`'s rollout as `holder`, for as long as the returned
    /// claim lives. A cluster other consoles share (Kubernetes) takes a Lease, and refuses when
    /// another holds it; `None`: nothing to claim (the local cluster has one process per data dir).
    async fn claim(&self, _target: &Target, _holder: &str) -> Result<Option<Claim>, ClusterError> {
        Ok(None)
    }

    /// Who drives `target` and the rollout written into the cluster, from the cluster's watches
    /// (nothing on a cluster no other console shares). Never a request: cheap to call often.
    fn news(&self, _target: &Target) -> ClusterNews {
        ClusterNews::default()
    }

    /// The cluster's recent events about the workloads' objects, oldest first (from a watch).
    fn cluster_events(&self) -> Vec<ClusterEvent> {
        Vec::new()
    }

    /// Resolves when [`Cluster::news`] may have changed since it last resolved (one waiter at a
    /// time: a change while nobody waits is kept for the next). Never, without news.
    async fn news_changed(&self) {
        std::future::pending::<()>().await
    }

    /// Does `target` roll out natively — one Deployment whose controller replaces the pods — rather
    /// than through the engine's batches over per-version workloads? (Kubernetes apps without an
    /// HTTPRoute.) When false, the two calls below are refused.
    fn native_rollouts(&self, _target: &Target) -> bool {
        false
    }

    /// Request a native rollout of the app's own workload to `version`; its progress and failure
    /// show in [`WorkloadState::native`].
    async fn native_rollout(
        &self,
        target: &Target,
        _version: &str,
        _rollout: &NativeRollout,
    ) -> Result<(), ClusterError> {
        Err(ClusterError::Other(format!("{target} does not roll out natively")))
    }

    /// The revisions of the app's own Deployment, oldest first (`kubectl rollout history`).
    async fn native_revisions(&self, target: &Target) -> Result<Vec<NativeRevision>, ClusterError> {
        Err(ClusterError::Other(format!("{target} does not roll out natively")))
    }

    /// Put an earlier revision's pod template back, as `kubectl rollout undo` does. `Ok(None)`:
    /// no revision runs the [`UndoTarget::Version`] asked for (other targets that do not exist are
    /// errors naming the revisions that do).
    async fn native_undo(&self, target: &Target, _to: &UndoTarget) -> Result<Option<UndoOutcome>, ClusterError> {
        Err(ClusterError::Other(format!("{target} does not roll out natively")))
    }
}
