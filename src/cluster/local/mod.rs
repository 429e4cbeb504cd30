//! The embedded local cluster: real HTTP servers on loopback ports inside this process, so a
//! release can be tried end to end (pods, routing, traffic, metrics) without Kubernetes.
//!
//! Per workload: pods (one server each, behaving as their version's profile says), a router
//! (the active entry) and a preview entry in front of them, and a load generator that plays
//! the users. The router's observations feed [`MetricsProvider`].

pub mod flags;
mod http;
mod loadgen;
mod pod;
mod router;
mod stats;
mod workload;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use self::flags::FlagSlot;
use self::workload::{Shared, Workload};
use super::{Cluster, ClusterError, ProbeRequest, ProbeResponse, Routing, Target, WorkloadSpec, WorkloadState};
use crate::analysis::{MetricsError, MetricsProvider, VersionMetrics};
use crate::flags::FlagEvaluator;
use crate::model::AppSettings;

pub struct LocalCluster {
    workloads: BTreeMap<Target, Arc<Workload>>,
    routed: Arc<AtomicU64>,
    flags: Arc<FlagSlot>,
    /// Ends the cluster's runtime thread when sent (or dropped).
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl LocalCluster {
    /// Brings every workload up: its entries, its load generator, and its pods as `restore`
    /// recorded them, or else `initial_version` (or the first version) at `replicas` with all
    /// traffic.
    ///
    /// Everything runs on a runtime of its own, one thread: a single-threaded scheduler costs
    /// markedly less CPU per simulated request than a work-stealing one (no cross-thread
    /// wake-ups), and the simulation keeps its pace whatever the caller's runtime is doing.
    pub async fn start(
        apps: Vec<(Target, AppSettings)>,
        mut restore: BTreeMap<Target, WorkloadSpec>,
    ) -> Result<Arc<LocalCluster>, ClusterError> {
        raise_fd_limit();
        let (rt, stop) = spawn_runtime().await?;
        let routed = Arc::new(AtomicU64::new(0));
        let flags = Arc::new(FlagSlot::default());
        let shared = Shared {
            rt,
            plain: http::plain_client(),
            proxy: http::proxy_client(),
            routed: routed.clone(),
            flags: flags.clone(),
        };
        let mut cluster = LocalCluster { workloads: BTreeMap::new(), routed, flags, stop: Mutex::new(Some(stop)) };
        for (target, settings) in apps {
            if cluster.workloads.contains_key(&target) {
                cluster.shutdown();
                return Err(ClusterError::Other(format!("{target} is listed twice")));
            }
            let spec = restore.remove(&target).unwrap_or_else(|| initial_spec(&settings));
            match Workload::start(target.clone(), settings, spec, shared.clone()) {
                Ok(w) => {
                    cluster.workloads.insert(target, w);
                }
                Err(e) => {
                    cluster.shutdown();
                    return Err(e);
                }
            }
        }
        Ok(Arc::new(cluster))
    }

    pub fn spec(&self, target: &Target) -> Option<WorkloadSpec> {
        self.workloads.get(target).map(|w| w.spec())
    }

    pub fn specs(&self) -> BTreeMap<Target, WorkloadSpec> {
        self.workloads.iter().map(|(t, w)| (t.clone(), w.spec())).collect()
    }

    /// Stops load generators, entries and pods at once (no draining), and the cluster's
    /// runtime thread. Idempotent.
    pub fn shutdown(&self) {
        for w in self.workloads.values() {
            w.shutdown();
        }
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
    }

    /// Changes a workload's simulated traffic; 0 pauses it. Unknown targets are ignored.
    pub fn set_load(&self, target: &Target, rps: f64) {
        if let Some(w) = self.workloads.get(target) {
            w.set_load(rps);
        }
    }

    /// The flags every pod evaluates from its next request on (see [`flags`] for the headers a
    /// pod reads and writes). Until the first call every flag resolves to the code default.
    pub fn set_flags(&self, evaluator: Arc<FlagEvaluator>) {
        self.flags.set(evaluator);
    }

    /// What the active entry saw per variant of `flag` over `window`, across the workload's
    /// versions: requests, errors (5xx) and latencies of the requests a pod served that
    /// variant to. Variants that served nothing in the window are absent.
    pub fn flag_metrics(
        &self,
        target: &Target,
        flag: &str,
        window: std::time::Duration,
    ) -> Result<BTreeMap<String, VersionMetrics>, MetricsError> {
        match self.workloads.get(target) {
            Some(w) => Ok(w.flag_metrics(flag, window)),
            None => {
                Err(MetricsError { target: target.to_string(), message: "not a workload of the local cluster".into() })
            }
        }
    }

    /// Requests the entries (active and preview, every workload) have handled since start.
    pub fn routed_requests(&self) -> u64 {
        self.routed.load(Ordering::Relaxed)
    }

    fn workload(&self, target: &Target) -> Result<&Arc<Workload>, ClusterError> {
        self.workloads
            .get(target)
            .ok_or_else(|| ClusterError::Other(format!("{target} is not a workload of the local cluster")))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Every workload holds a dozen or more descriptors (entries, pods, both ends of each pooled
/// loopback connection): 90 workloads need ~2,000, above the usual soft limit of 1,024. Raise
/// the soft limit towards the hard one, as Go's runtime does; failure just leaves it be.
fn raise_fd_limit() {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit only writes the struct it is given, which outlives the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return;
        }
        // macOS refuses more than OPEN_MAX (10,240) whatever the hard limit says.
        for want in [65_536, 10_240] {
            let want = lim.rlim_max.min(want);
            if lim.rlim_cur >= want {
                return;
            }
            let raised = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max };
            // SAFETY: setrlimit only reads the struct it is given.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                return;
            }
        }
    }
}

/// Starts the cluster's runtime on a thread of its own; it runs until the returned sender is
/// used or dropped, then drops every task still on it.
async fn spawn_runtime() -> Result<(Handle, oneshot::Sender<()>), ClusterError> {
    let (handle_tx, handle_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("local-cluster".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = handle_tx.send(Err(e));
                    return;
                }
            };
            let _ = handle_tx.send(Ok(rt.handle().clone()));
            rt.block_on(async {
                let _ = stop_rx.await;
            });
        })
        .map_err(|e| ClusterError::Other(format!("cannot start the local cluster's thread: {e}")))?;
    match handle_rx.await {
        Ok(Ok(handle)) => Ok((handle, stop_tx)),
        Ok(Err(e)) => Err(ClusterError::Other(format!("cannot start the local cluster's runtime: {e}"))),
        Err(_) => Err(ClusterError::Other("the local cluster's thread exited at start".into())),
    }
}

fn initial_spec(settings: &AppSettings) -> WorkloadSpec {
    let version = settings.initial_version.clone().or_else(|| settings.versions.first().map(|v| v.version.clone()));
    match version {
        Some(v) => {
            WorkloadSpec { replicas: BTreeMap::from([(v.clone(), settings.replicas)]), routing: Routing::all_to(&v) }
        }
        None => WorkloadSpec::default(),
    }
}

#[async_trait]
impl Cluster for LocalCluster {
    async fn scale(&self, target: &Target, version: &str, replicas: u32) -> Result<(), ClusterError> {
        self.workload(target)?.scale(version, replicas)
    }

    async fn restart(&self, target: &Target, version: &str) -> Result<(), ClusterError> {
        self.workload(target)?.restart(version)
    }

    async fn set_routing(&self, target: &Target, routing: &Routing) -> Result<(), ClusterError> {
        self.workload(target)?.set_routing(routing);
        Ok(())
    }

    async fn state(&self, target: &Target) -> Result<WorkloadState, ClusterError> {
        Ok(self.workload(target)?.state())
    }

    async fn watch(&self, target: &Target) -> Result<tokio::sync::watch::Receiver<WorkloadState>, ClusterError> {
        Ok(self.workload(target)?.subscribe())
    }

    async fn probe(
        &self,
        target: &Target,
        version: &str,
        request: &ProbeRequest,
    ) -> Result<ProbeResponse, ClusterError> {
        self.workload(target)?.probe(version, request).await
    }
}

#[async_trait]
impl crate::analysis::FlagMetrics for LocalCluster {
    async fn variant_metrics(
        &self,
        target: &Target,
        flag: &str,
        window: std::time::Duration,
    ) -> Result<BTreeMap<String, VersionMetrics>, MetricsError> {
        self.flag_metrics(target, flag, window)
    }
}

#[async_trait]
impl MetricsProvider for LocalCluster {
    async fn version_metrics(
        &self,
        target: &Target,
        version: &str,
        window: std::time::Duration,
    ) -> Result<VersionMetrics, MetricsError> {
        match self.workloads.get(target) {
            Some(w) => Ok(w.metrics(version, window)),
            None => {
                Err(MetricsError { target: target.to_string(), message: "not a workload of the local cluster".into() })
            }
        }
    }
}
