//! The process that holds a data dir: it takes the data dir's lock, opens the store, brings
//! the local cluster back as recorded, and runs the engine over them. One process per data
//! dir: a second one is refused with a message saying who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::kube::switch::CurrentClusters;
use crate::cluster::local::LocalCluster;
use crate::cluster::routed::EstateCluster;
use crate::cluster::{Cluster, Target};
use crate::config::{Estate, paths};
use crate::engine::{Engine, Event};
use crate::flags::{FileFlagStore, FlagError, FlagEvaluator, FlagSource, FlagStore};
use crate::model::Release;
use crate::store::{Store, StoreError};

mod kube;
use kube::kubernetes_clusters;
pub(crate) use kube::{spawn_follow_rollouts, spawn_kube_audit, take_over_rollouts};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "data dir {dir} is in use by another shipdeck ({holder}); wait for it to finish, or use another --data-dir"
    )]
    Busy { dir: String, holder: String },
    #[error("cannot use data dir {dir}: {message}")]
    DataDir { dir: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the local cluster did not start: {0}")]
    Cluster(String),
    /// The flag file named with --flags cannot be used.
    #[error("{0}")]
    Flags(String),
    /// The flag store named with --flags is in a cluster that cannot be used.
    #[error("{0}")]
    FlagStore(String),
    /// The metrics address cannot be listened on.
    #[error("{0}")]
    Metrics(String),
}

impl HostError {
    pub fn exit_code(&self) -> i32 {
        match self {
            HostError::Flags(_) | HostError::Metrics(_) => 2,
            _ => 3,
        }
    }
}

/// The data dir's lock, held for the life of the process (released by the OS if it dies).
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(dir: &Path, what: &str) -> Result<Self, HostError> {
        let err = |e: std::io::Error| HostError::DataDir { dir: dir.display().to_string(), message: e.to_string() };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(paths::lock_file(dir))
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => {
                let note =
                    format!("pid {} running `{what}` since {}", std::process::id(), chrono::Utc::now().to_rfc3339());
                file.set_len(0).map_err(err)?;
                file.seek(SeekFrom::Start(0)).map_err(err)?;
                file.write_all(note.as_bytes()).map_err(err)?;
                file.flush().map_err(err)?;
                Ok(Self { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                if holder.trim().is_empty() {
                    holder = "starting up".into();
                }
                Err(HostError::Busy { dir: dir.display().to_string(), holder: holder.trim().to_string() })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
        }
    }

    /// Who holds the data dir now, if anyone (for read-only commands that do not lock).
    pub fn holder(dir: &Path) -> Option<String> {
        let file = OpenOptions::new().read(true).write(true).open(paths::lock_file(dir)).ok()?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(_) => {
                let mut s = String::new();
                let _ = (&file).read_to_string(&mut s);
                Some(s.trim().to_string())
            }
        }
    }
}

/// How long a stopping host waits for webhooks still being delivered.
const NOTIFY_GRACE: Duration = Duration::from_secs(5);

pub struct Host {
    pub engine: Engine,
    pub cluster: Arc<LocalCluster>,
    pub store: Arc<Store>,
    pub data_dir: PathBuf,
    /// Releases that were in progress when the previous process stopped.
    pub interrupted: Vec<Release>,
    control: Option<tokio::task::JoinHandle<()>>,
    /// Keeps `prometheus-targets.json` up to date.
    scrape: tokio::task::JoinHandle<()>,
    /// Keeps the pods' flags on the flag store's.
    flag_sync: Option<tokio::task::JoinHandle<()>>,
    /// Writes rollouts and Events into the Kubernetes environments.
    kube_audit: Option<tokio::task::JoinHandle<()>>,
    /// Follows the rollouts other consoles drive in the Kubernetes environments.
    kube_follow: Option<tokio::task::JoinHandle<()>>,
    /// Makes release notes and sends webhooks.
    pub notifier: crate::notify::Notifier,
    /// Serves `/metrics`, once [`Host::serve_metrics`] is called.
    metrics: Option<crate::notify::metrics::MetricsServer>,
    _lock: DataDirLock,
}

/// Where the local cluster's pods are listed for Prometheus's file-based discovery.
pub fn scrape_targets_file(data_dir: &Path) -> PathBuf {
    data_dir.join("prometheus-targets.json")
}

/// Writes every serving pod's address to `prometheus-targets.json` in the data dir (Prometheus
/// `file_sd_configs` format) whenever a workload changes, so a Prometheus pointed at it scrapes
/// the pods that exist now. Written to a temp file and renamed, so Prometheus never reads half.
fn spawn_scrape_targets(
    cluster: Arc<LocalCluster>,
    targets: Vec<Target>,
    data_dir: &Path,
) -> tokio::task::JoinHandle<()> {
    let path = scrape_targets_file(data_dir);
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        // Dropped with this task, also when it is aborted: the watchers go with it.
        let mut watchers = AbortOnDrop(Vec::new());
        for t in &targets {
            let Ok(mut w) = crate::cluster::Cluster::watch(cluster.as_ref(), t).await else { continue };
            let tx = tx.clone();
            watchers.0.push(tokio::spawn(async move {
                while w.changed().await.is_ok() {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            }));
        }
        drop(tx);
        let mut last = String::new();
        loop {
            let mut groups = Vec::new();
            for t in &targets {
                let Ok(state) = crate::cluster::Cluster::state(cluster.as_ref(), t).await else { continue };
                for pod in state.pods.iter().filter(|p| p.ready) {
                    if let Some(addr) = &pod.address {
                        groups.push(serde_json::json!({"targets": [addr], "labels": {"shipdeck_pod": pod.name}}));
                    }
                }
            }
            let text = serde_json::Value::Array(groups).to_string();
            if text != last {
                if let Err(e) = write_atomically(&path, &text) {
                    tracing::warn!("writing {}: {e}", path.display());
                }
                last = text;
            }
            if rx.recv().await.is_none() {
                break;
            }
            // Coalesce a burst of changes (a scale of several pods) into one write.
            while rx.try_recv().is_ok() {}
        }
    })
}

/// Gives the local cluster's pods the flag store's flags now, and again after every flag change
/// the engine makes (its `Event::Flag`), so the next request a pod serves sees the change. A
/// store that cannot be read or compiled leaves the pods on the flags they had.
pub async fn spawn_flag_sync(
    engine: &Engine,
    cluster: Arc<LocalCluster>,
    store: Arc<dyn FlagStore>,
) -> tokio::task::JoinHandle<()> {
    use tokio::sync::broadcast::error::RecvError;
    // Subscribed before the first load: a change made in between is not missed.
    let mut events = engine.subscribe();
    load_flags(&cluster, store.as_ref()).await;
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                // Lagged: some events were missed, perhaps flag changes; reload to be sure.
                Ok(Event::Flag { .. }) | Err(RecvError::Lagged(_)) => load_flags(&cluster, store.as_ref()).await,
                Ok(_) => {}
                Err(RecvError::Closed) => break,
            }
        }
    })
}

async fn load_flags(cluster: &LocalCluster, store: &dyn FlagStore) {
    match store.load().await.and_then(|(set, _)| FlagEvaluator::new(&set)) {
        Ok(evaluator) => cluster.set_flags(Arc::new(evaluator)),
        Err(e) => tracing::warn!("the local pods keep their flags: {e}"),
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for w in &self.0 {
            w.abort();
        }
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The targets of environments that run on the local cluster.
fn local_targets(estate: &Estate) -> Vec<(Target, crate::model::AppSettings)> {
    let local = |env: &str| estate.env(env).is_none_or(|e| e.cluster.is_local());
    estate.targets().into_iter().filter(|(t, _)| local(&t.env)).collect()
}

impl Host {
    /// Take the data dir, open the store and bring the local cluster back as recorded.
    pub async fn start(estate: Arc<Estate>, data_dir: &Path, readonly: bool, what: &str) -> Result<Host, HostError> {
        Self::start_with(estate, data_dir, None, readonly, what).await
    }

    /// As [`Host::start`], with the flags `flags` names (a flagd file that must exist, or a
    /// FeatureFlag resource that must be readable) instead of `<data dir>/flags.json` (written
    /// with the demo flags when missing).
    pub async fn start_with(
        estate: Arc<Estate>,
        data_dir: &Path,
        flags: Option<&FlagSource>,
        readonly: bool,
        what: &str,
    ) -> Result<Host, HostError> {
        let lock = DataDirLock::acquire(data_dir, what)?;
        // A flag store named on the command line must be usable before anything starts.
        let named = match flags {
            Some(source) => Some(source.open().await.map_err(|e| match e {
                FlagError::Cluster { .. } => HostError::FlagStore(e.to_string()),
                other => HostError::Flags(other.to_string()),
            })?),
            None => None,
        };
        let store = Arc::new(Store::open(&paths::store_file(data_dir))?);
        let (by_env, kube) = kubernetes_clusters(&estate).await;
        let current = CurrentClusters::default();
        for (env, k) in &kube {
            current.set(env, k);
        }
        // Before marking: a rollout another console left in a cluster shows here as interrupted.
        for k in kube.values() {
            take_over_rollouts(&store, k).await;
        }
        let interrupted = store.mark_interrupted()?;
        if !readonly {
            // An emergency's execution does not survive its process: say so rather than resume it.
            for e in store.fail_interrupted_emergencies()? {
                tracing::warn!("emergency {} was interrupted while executing; marked failed", e.id);
            }
        }
        let local_targets = local_targets(&estate);
        let mut restore = store.workloads()?;
        restore.retain(|t, _| local_targets.iter().any(|(l, _)| l == t));
        // Load starts once the pods serve: requests answered 503 while the cluster boots would
        // count against the versions in the first measurement windows.
        let quiet = local_targets.iter().cloned().map(|(t, mut s)| {
            s.rps = 0.0;
            (t, s)
        });
        let cluster =
            LocalCluster::start(quiet.collect(), restore).await.map_err(|e| HostError::Cluster(e.to_string()))?;
        let (engine_cluster, switcher): (Arc<dyn Cluster>, _) = if by_env.is_empty() {
            (cluster.clone(), None)
        } else {
            let routed = Arc::new(EstateCluster::new(cluster.clone(), by_env));
            let connector = Box::new(crate::cluster::kube::switch::KubeconfigConnector);
            // Argo Rollouts where the namespaces have them (a 404 stops a watch quietly).
            let argo = Arc::new(crate::cluster::kube::argo_watch::ArgoWatches::default());
            for (env, k) in &kube {
                argo.watch(env, k.client(), k.namespace());
            }
            let switcher = crate::cluster::kube::switch::Switcher::new(estate.clone(), routed.clone(), connector)
                .with_argo(argo)
                .with_current(current.clone());
            (routed, Some(Arc::new(switcher)))
        };
        let engine = Engine::new(estate.clone(), engine_cluster, cluster.clone(), store.clone(), readonly);
        if let Some(s) = switcher {
            engine.attach_kube(s);
        }
        // Every Kubernetes environment's: one that could not connect may be switched (`:ctx`) to one that can.
        let on_kube = |t: &Target| estate.env(&t.env).is_some_and(|e| !e.cluster.is_local());
        let kube_targets: Vec<Target> = estate.targets().into_iter().map(|(t, _)| t).filter(on_kube).collect();
        // The clusters live in the engine's EstateCluster from here: one switched away from stops.
        drop(kube);
        let kube_audit = spawn_kube_audit(&engine, current, !kube_targets.is_empty());
        let kube_follow = spawn_follow_rollouts(&engine, kube_targets);
        engine.attach_flag_metrics(cluster.clone());
        let opened: Result<Arc<dyn FlagStore>, FlagError> = match named {
            Some(store) => Ok(store),
            None => FileFlagStore::open(&data_dir.join("flags.json"), Some(crate::flags::DEMO_FLAGS))
                .map(|f| Arc::new(f) as Arc<dyn FlagStore>),
        };
        let flag_sync = match opened {
            Ok(f) => {
                engine.attach_flags(f.clone());
                Some(spawn_flag_sync(&engine, cluster.clone(), f).await)
            }
            Err(e) => {
                tracing::warn!("flags unavailable: {e}");
                None
            }
        };
        // Other shipdeck processes on this data dir send their commands here.
        let control = match crate::control::serve(data_dir, engine.clone()) {
            Ok(task) => Some(task),
            Err(e) => {
                tracing::warn!("control socket unavailable: {e}");
                None
            }
        };
        let report_to = engine.clone();
        let notifier = crate::notify::Notifier::spawn(
            estate.clone(),
            store.clone(),
            engine.subscribe(),
            Arc::new(move |e| report_to.publish(e)),
        );
        let scrape =
            spawn_scrape_targets(cluster.clone(), local_targets.iter().map(|(t, _)| t.clone()).collect(), data_dir);
        let host = Host {
            engine,
            cluster,
            store,
            data_dir: data_dir.to_path_buf(),
            interrupted,
            control,
            scrape,
            flag_sync,
            kube_audit,
            kube_follow,
            notifier,
            metrics: None,
            _lock: lock,
        };
        host.wait_until_serving(Duration::from_secs(10)).await;
        for (t, s) in &local_targets {
            host.cluster.set_load(t, s.rps);
        }
        if !readonly && let Err(e) = host.engine.collect_garbage().await {
            tracing::warn!("cleaning up unrouted versions: {e}");
        }
        for (t, spec) in host.cluster.specs() {
            let _ = host.store.save_workload(&t, &spec);
        }
        Ok(host)
    }

    /// Serve shipdeck's operational metrics on `GET http://ADDR/metrics` (port 0 picks a free
    /// one); returns the address it listens on.
    pub async fn serve_metrics(&mut self, addr: std::net::SocketAddr) -> Result<std::net::SocketAddr, HostError> {
        let server = crate::notify::metrics::MetricsServer::start(&self.engine, addr).await.map_err(|e| {
            HostError::Metrics(format!(
                "--metrics-addr {addr}: cannot listen there ({e}); pick another address or port"
            ))
        })?;
        let bound = server.addr;
        if let Some(old) = self.metrics.replace(server) {
            old.stop();
        }
        Ok(bound)
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr)
    }

    /// Wait (up to `limit`) until every version that takes traffic has a ready pod, so
    /// checks of the current version see it as it is, not as it boots.
    async fn wait_until_serving(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        for (target, _) in local_targets(self.engine.estate()) {
            let Ok(mut rx) = crate::cluster::Cluster::watch(self.cluster.as_ref(), &target).await else { continue };
            loop {
                let serving = {
                    let s = rx.borrow_and_update();
                    s.routing.weights.iter().filter(|(_, w)| **w > 0).all(|(v, _)| {
                        let profile_ok = self
                            .engine
                            .estate()
                            .settings(&target.env, &target.app)
                            .and_then(|a| a.profile(v))
                            .is_some_and(|p| !p.crash);
                        !profile_ok || s.replicas(v).ready > 0
                    })
                };
                if serving {
                    break;
                }
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
        }
    }

    /// Stop driving releases (in-progress ones will show as interrupted), record every
    /// workload and stop the cluster.
    pub async fn stop(self) {
        self.scrape.abort();
        if let Some(task) = &self.flag_sync {
            task.abort();
        }
        // The pods stop with this process: a Prometheus reading the file should not scrape them.
        let _ = std::fs::remove_file(scrape_targets_file(&self.data_dir));
        if let Some(task) = &self.control {
            task.abort();
            let _ = std::fs::remove_file(crate::control::socket_path(&self.data_dir));
        }
        self.engine.shutdown().await;
        if let Some(task) = &self.kube_audit {
            task.abort();
        }
        if let Some(task) = &self.kube_follow {
            task.abort();
        }
        // The last news (a rollback, say) gets a few seconds to reach its channels.
        if !self.notifier.flush(NOTIFY_GRACE).await {
            tracing::warn!("stopping with {} webhook deliveries unfinished", self.notifier.pending());
        }
        self.notifier.stop();
        if let Some(m) = &self.metrics {
            m.stop();
        }
        for (t, spec) in self.cluster.specs() {
            if let Err(e) = self.store.save_workload(&t, &spec) {
                tracing::error!("saving workload {t}: {e}");
            }
        }
        self.cluster.shutdown();
    }
}
