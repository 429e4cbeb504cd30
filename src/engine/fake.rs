//! An in-memory cluster for engine tests: pods become ready after their profile's delay on
//! tokio's clock (so tests run with `tokio::time::pause()`), probes answer from the profile,
//! and metrics are derived from the routing and each version's error rate and latency.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::analysis::{MetricsError, MetricsProvider, VersionMetrics};
use crate::cluster::*;
use crate::config::Estate;
use crate::model::AppSettings;

struct Workload {
    settings: AppSettings,
    desired: BTreeMap<String, u32>,
    pods: Vec<PodState>,
    routing: Routing,
    tx: watch::Sender<WorkloadState>,
    /// The app's own Deployment, once rolled natively.
    base: Option<Base>,
}

/// A Deployment the fake rolls natively: its revisions, the version its template runs, and
/// where its rollout stands (a Deployment controller on tokio's clock).
struct Base {
    version: String,
    replicas: u32,
    strategy: NativeStrategy,
    /// (revision, version), oldest first.
    history: Vec<(i64, String)>,
    condition: NativeCondition,
    /// Bumped by every rollout, so a superseded one's task leaves the condition alone.
    generation: u64,
}

impl Workload {
    fn snapshot(&self) -> WorkloadState {
        let mut versions: BTreeMap<String, VersionReplicas> = BTreeMap::new();
        for (v, n) in &self.desired {
            versions.entry(v.clone()).or_default().desired = *n;
        }
        for p in &self.pods {
            let r = versions.entry(p.version.clone()).or_default();
            r.updated += 1;
            if p.ready {
                r.ready += 1;
                r.available += 1;
            }
        }
        WorkloadState {
            versions,
            pods: self.pods.clone(),
            routing: self.routing.clone(),
            actual_weights: self.routing.weights.iter().map(|(v, w)| (v.clone(), *w as f64)).collect(),
            entry_url: None,
            preview_url: None,
            native: self.base.as_ref().map(|b| {
                let of = |v: &str| self.pods.iter().filter(|p| p.version == v).count() as u32;
                let ready = self.pods.iter().filter(|p| p.version == b.version && p.ready).count() as u32;
                NativeStatus {
                    deployment: self.settings.name.clone(),
                    version: Some(b.version.clone()),
                    revision: b.history.last().map(|(r, _)| *r),
                    desired: b.replicas,
                    updated: of(&b.version),
                    total: b
                        .history
                        .iter()
                        .map(|(_, v)| v.as_str())
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .map(of)
                        .sum(),
                    ready,
                    available: ready,
                    condition: b.condition.clone(),
                }
            }),
        }
    }
}

pub struct FakeCluster {
    workloads: Mutex<BTreeMap<Target, Workload>>,
    counter: Mutex<u64>,
    me: std::sync::Weak<FakeCluster>,
    /// Roll natively, as a Kubernetes cluster does (off by default: the local cluster does not).
    native: std::sync::atomic::AtomicBool,
}

impl FakeCluster {
    /// Every target of the estate, running its initial version at full size (or `restore`).
    pub fn new(estate: &Estate, restore: &BTreeMap<Target, WorkloadSpec>) -> Arc<Self> {
        let me = Arc::new_cyclic(|me| Self {
            workloads: Mutex::new(BTreeMap::new()),
            counter: Mutex::new(0),
            me: me.clone(),
            native: std::sync::atomic::AtomicBool::new(false),
        });
        for (t, s) in estate.targets() {
            let init = s.initial_version.clone().unwrap_or_else(|| s.versions[0].version.clone());
            let spec = restore.get(&t).cloned().unwrap_or_else(|| WorkloadSpec {
                replicas: [(init.clone(), s.replicas)].into_iter().collect(),
                routing: Routing::all_to(&init),
            });
            let (tx, _) = watch::channel(WorkloadState::default());
            let mut w = Workload {
                settings: s,
                desired: BTreeMap::new(),
                pods: Vec::new(),
                routing: spec.routing,
                tx,
                base: None,
            };
            for (v, n) in spec.replicas {
                w.desired.insert(v.clone(), n);
                for _ in 0..n {
                    let pod = me.pod(&w.settings, &v, true);
                    w.pods.push(pod);
                }
            }
            w.tx.send_replace(w.snapshot());
            me.lock().insert(t, w);
        }
        me
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Target, Workload>> {
        self.workloads.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pod(&self, s: &AppSettings, version: &str, ready_now: bool) -> PodState {
        let mut c = self.counter.lock().unwrap_or_else(|e| e.into_inner());
        *c += 1;
        let phase = match s.profile(version) {
            None => PodPhase::ImagePullBackOff,
            Some(p) if p.crash => PodPhase::CrashLoopBackOff,
            Some(_) if ready_now => PodPhase::Running,
            Some(_) => PodPhase::Starting,
        };
        PodState {
            name: format!("{}-{version}-{c:05}", s.name),
            version: version.to_string(),
            ready: phase == PodPhase::Running,
            phase,
            restarts: 0,
            address: None,
        }
    }

    fn with<R>(&self, t: &Target, f: impl FnOnce(&mut Workload) -> R) -> Result<R, ClusterError> {
        let mut all = self.lock();
        let w = all.get_mut(t).ok_or_else(|| ClusterError::Other(format!("no workload {t}")))?;
        let r = f(w);
        w.tx.send_replace(w.snapshot());
        Ok(r)
    }

    /// From now on roll natively, as a Kubernetes cluster does.
    pub fn roll_natively(&self) {
        self.native.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The app's own Deployment's revisions (revision, version), oldest first, for tests.
    pub fn revisions(&self, t: &Target) -> Vec<(i64, String)> {
        self.lock().get(t).and_then(|w| w.base.as_ref().map(|b| b.history.clone())).unwrap_or_default()
    }

    /// The controller's side of a native rollout: new pods up, old ones down (recreate: old
    /// ones first), then complete — or, when the new pods are not all ready within the
    /// progress deadline, `ProgressDeadlineExceeded` as the controller says it.
    async fn control(self: Arc<Self>, t: Target, generation: u64, old: Option<String>, rollout: NativeRollout) {
        let Ok((version, name)) = self
            .with(&t, |w| (w.base.as_ref().map(|b| b.version.clone()).unwrap_or_default(), w.settings.name.clone()))
        else {
            return;
        };
        let old = old.filter(|o| *o != version);
        if let (NativeStrategy::Recreate, Some(old)) = (rollout.strategy, &old) {
            let _ = self.scale(&t, old, 0).await;
        }
        let _ = self.scale(&t, &version, rollout.replicas).await;
        let Ok(mut rx) = self.watch(&t).await else { return };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(rollout.progress_deadline_secs);
        let ready = loop {
            if rx.borrow_and_update().replicas(&version).ready >= rollout.replicas {
                break true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => break false,
            }
        };
        if ready && let (NativeStrategy::Rolling { .. }, Some(old)) = (rollout.strategy, &old) {
            let _ = self.scale(&t, old, 0).await;
        }
        let _ = self.with(&t, |w| {
            if let Some(b) = w.base.as_mut().filter(|b| b.generation == generation) {
                b.condition = if ready {
                    NativeCondition::Complete
                } else {
                    NativeCondition::DeadlineExceeded {
                        message: format!("ReplicaSet \"{name}-{generation}\" has timed out progressing."),
                    }
                };
            }
        });
    }

    /// Settings of a workload, for tests.
    pub fn routing(&self, t: &Target) -> Routing {
        self.lock().get(t).map(|w| w.routing.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Cluster for FakeCluster {
    async fn scale(&self, t: &Target, version: &str, replicas: u32) -> Result<(), ClusterError> {
        let starting = self.with(t, |w| {
            let have: Vec<usize> =
                w.pods.iter().enumerate().filter(|(_, p)| p.version == version).map(|(i, _)| i).collect();
            let mut started = Vec::new();
            if (have.len() as u32) > replicas {
                let drop: Vec<usize> = have[replicas as usize..].to_vec();
                let mut i = 0;
                w.pods.retain(|_| {
                    let keep = !drop.contains(&i);
                    i += 1;
                    keep
                });
            } else {
                for _ in have.len() as u32..replicas {
                    let pod = self.pod(&w.settings, version, false);
                    started.push(pod.name.clone());
                    w.pods.push(pod);
                }
            }
            if replicas == 0 {
                w.desired.remove(version);
            } else {
                w.desired.insert(version.to_string(), replicas);
            }
            if let Some(b) = w.base.as_mut().filter(|b| b.version == version) {
                b.replicas = replicas;
            }
            let delay = w.settings.profile(version).map(|p| p.ready_after()).unwrap_or_default();
            (started, delay)
        })?;
        let (names, delay) = starting;
        if names.is_empty() {
            return Ok(());
        }
        // Readiness arrives later, on tokio's clock.
        let t = t.clone();
        let Some(this) = self.me.upgrade() else { return Ok(()) };
        tokio::spawn(async move {
            tokio::time::sleep(delay.max(Duration::from_millis(1))).await;
            let _ = this.with(&t, |w| {
                for p in w.pods.iter_mut().filter(|p| names.contains(&p.name) && p.phase == PodPhase::Starting) {
                    p.phase = PodPhase::Running;
                    p.ready = true;
                }
            });
        });
        Ok(())
    }

    async fn restart(&self, t: &Target, version: &str) -> Result<(), ClusterError> {
        let n = self.with(t, |w| w.desired.get(version).copied().unwrap_or(0))?;
        self.scale(t, version, 0).await?;
        self.scale(t, version, n).await
    }

    async fn set_routing(&self, t: &Target, routing: &Routing) -> Result<(), ClusterError> {
        self.with(t, |w| w.routing = routing.clone())
    }

    async fn state(&self, t: &Target) -> Result<WorkloadState, ClusterError> {
        self.with(t, |w| w.snapshot())
    }

    async fn watch(&self, t: &Target) -> Result<watch::Receiver<WorkloadState>, ClusterError> {
        self.with(t, |w| w.tx.subscribe())
    }

    async fn probe(&self, t: &Target, version: &str, req: &ProbeRequest) -> Result<ProbeResponse, ClusterError> {
        let (profile, ready) = self.with(t, |w| {
            (w.settings.profile(version).cloned(), w.pods.iter().any(|p| p.version == version && p.ready))
        })?;
        let (Some(p), true) = (profile, ready) else {
            return Err(ClusterError::NoReadyPod { target: t.to_string(), version: version.into() });
        };
        tokio::time::sleep(Duration::from_secs_f64(p.p50_ms / 1000.0)).await;
        let (status, body) = match req.path.as_str() {
            "/health" => (200, r#"{"status":"healthy"}"#.to_string()),
            "/ready" => (200, r#"{"ready":true}"#.to_string()),
            "/health/dependencies" => {
                let deps: Vec<String> = ["database", "cache"]
                    .iter()
                    .map(|d| format!(r#"{{"name":"{d}","healthy":{}}}"#, !p.broken_dependencies.iter().any(|b| b == d)))
                    .collect();
                (200, format!(r#"{{"dependencies":[{}]}}"#, deps.join(",")))
            }
            _ if p.error_rate >= 0.5 => (500, "{}".to_string()),
            _ => (200, "[]".to_string()),
        };
        Ok(ProbeResponse { status, body, latency_ms: p.p50_ms })
    }

    fn native_rollouts(&self, _t: &Target) -> bool {
        self.native.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn native_rollout(&self, t: &Target, version: &str, rollout: &NativeRollout) -> Result<(), ClusterError> {
        if !self.native_rollouts(t) {
            return Err(ClusterError::Other(format!("{t} does not roll out natively")));
        }
        let (generation, old) = self.with(t, |w| {
            let base = w.base.get_or_insert_with(|| Base {
                version: version.to_string(),
                replicas: 0,
                strategy: rollout.strategy,
                history: Vec::new(),
                condition: NativeCondition::Complete,
                generation: 0,
            });
            let old = (base.replicas > 0).then(|| base.version.clone());
            if base.history.last().is_none_or(|(_, v)| v != version) {
                let next = base.history.last().map_or(1, |(r, _)| r + 1);
                base.history.retain(|(_, v)| v != version);
                base.history.push((next, version.to_string()));
            }
            base.version = version.to_string();
            base.replicas = rollout.replicas;
            base.strategy = rollout.strategy;
            base.generation += 1;
            base.condition = NativeCondition::Progressing { message: "rollout requested".into() };
            (base.generation, old)
        })?;
        let Some(this) = self.me.upgrade() else { return Ok(()) };
        tokio::spawn(this.control(t.clone(), generation, old, rollout.clone()));
        Ok(())
    }

    async fn native_revisions(&self, t: &Target) -> Result<Vec<NativeRevision>, ClusterError> {
        Ok(self
            .revisions(t)
            .into_iter()
            .map(|(revision, version)| NativeRevision { revision, version: Some(version) })
            .collect())
    }

    async fn native_undo(&self, t: &Target, to: &UndoTarget) -> Result<Option<UndoOutcome>, ClusterError> {
        let found = self.with(t, |w| {
            let b = w.base.as_ref()?;
            let mut newest_first = b.history.iter().rev();
            let hit = match to {
                UndoTarget::Previous => newest_first.nth(1),
                UndoTarget::Revision(n) => newest_first.find(|(r, _)| r == n),
                UndoTarget::Version(v) => newest_first.find(|(_, x)| x == v),
            };
            hit.map(|(r, v)| (*r, v.clone(), v == &b.version, b.replicas, b.strategy))
        })?;
        let Some((revision, version, same, replicas, strategy)) = found else {
            return match to {
                UndoTarget::Version(_) => Ok(None),
                _ => Err(ClusterError::Other(format!("{t}: no such revision"))),
            };
        };
        if !same {
            let deadline = self.with(t, |w| w.settings.rolling.progress_deadline.0.as_secs())?;
            let rollout =
                NativeRollout { strategy, replicas, progress_deadline_secs: deadline, change_cause: String::new() };
            self.native_rollout(t, &version, &rollout).await?;
        }
        Ok(Some(UndoOutcome { revision, version: Some(version), changed: !same }))
    }
}

#[async_trait]
impl MetricsProvider for FakeCluster {
    async fn version_metrics(
        &self,
        t: &Target,
        version: &str,
        window: Duration,
    ) -> Result<VersionMetrics, MetricsError> {
        let all = self.lock();
        let w = all.get(t).ok_or_else(|| MetricsError { target: t.to_string(), message: "unknown".into() })?;
        let total: u32 = w.routing.weights.values().sum();
        let mut share =
            if total == 0 { 0.0 } else { *w.routing.weights.get(version).unwrap_or(&0) as f64 / total as f64 };
        if w.routing.matches.iter().any(|m| m.version == version) {
            share = w.settings.ab.audience;
        } else if !w.routing.matches.is_empty() {
            share *= 1.0 - w.settings.ab.audience;
        }
        let Some(p) = w.settings.profile(version) else { return Ok(VersionMetrics::default()) };
        let requests = (w.settings.rps * window.as_secs_f64() * share).round() as u64;
        let errors = (requests as f64 * p.error_rate).round() as u64;
        let has = requests > 0;
        Ok(VersionMetrics {
            requests,
            errors,
            p50_ms: has.then_some(p.p50_ms),
            p99_ms: has.then_some(p.p99_ms),
            latencies_ms: lognormal_quantiles(requests, p.p50_ms, p.p99_ms),
        })
    }
}

/// `n` latencies spread evenly over a lognormal with this p50 and p99 (the value at quantile
/// `(i + 0.5) / n` for each i): deterministic, and any two windows of one version agree.
fn lognormal_quantiles(n: u64, p50: f64, p99: f64) -> Vec<f64> {
    const Z99: f64 = 2.326_347_874;
    let sigma = (p99 / p50.max(1e-9)).ln().max(0.0) / Z99;
    (0..n).map(|i| p50 * (sigma * normal_quantile((i as f64 + 0.5) / n as f64)).exp()).collect()
}

/// The standard normal quantile, by bisection on the survival function (test code: exact enough).
fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if 1.0 - crate::analysis::judges::stats::normal_sf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}
