//! One workload (an app in an environment): its pods, its router and preview entries, its
//! load generator and the state it publishes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::http::uri::Authority;
use hyper::{Method, Request, StatusCode, Uri};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::flags::FlagSlot;
use super::http::{PlainClient, ProxyClient, bind_loopback, serve, stable_hash};
use super::loadgen::{self, LoadControl};
use super::pod::{Pod, UserStore};
use super::router::{RouteTable, Router};
use super::stats::{FlagStats, Stats};
use crate::analysis::VersionMetrics;
use crate::cluster::{
    ClusterError, ProbeRequest, ProbeResponse, Routing, Target, VersionReplicas, WorkloadSpec, WorkloadState,
};
use crate::model::AppSettings;

/// How often a starting pod's `/ready` is asked.
const READY_POLL: Duration = Duration::from_millis(100);
/// Time a removed pod keeps serving requests the router had already sent it.
const ROUTE_GRACE: Duration = Duration::from_millis(100);
/// Time in-flight requests get to finish once a pod stops accepting.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// A restart moves on to the next pod after this even if the replacement is not ready.
const RESTART_READY_WAIT: Duration = Duration::from_secs(10);
const CRASH_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Window of `WorkloadState::actual_weights`.
const SHARE_WINDOW: Duration = Duration::from_secs(5);

/// What every workload of a cluster shares: the runtime everything runs on, and clients, so
/// connections are pooled cluster-wide.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) rt: Handle,
    pub(crate) plain: PlainClient,
    pub(crate) proxy: ProxyClient,
    pub(crate) routed: Arc<AtomicU64>,
    /// The flag evaluator every pod reads per request.
    pub(crate) flags: Arc<FlagSlot>,
}

#[derive(Default)]
struct Inner {
    desired: BTreeMap<String, u32>,
    pods: Vec<Arc<Pod>>,
    terminating: Vec<Arc<Pod>>,
    routing: Routing,
    /// Bumped by every scale and restart of a version, so a running restart notices it has
    /// been overtaken and stops.
    generation: BTreeMap<String, u64>,
}

pub(crate) struct Workload {
    target: Target,
    settings: AppSettings,
    router: Arc<Router>,
    stats: Stats,
    flag_stats: Arc<FlagStats>,
    users: Arc<UserStore>,
    shared: Shared,
    entry_url: String,
    preview_url: String,
    inner: Mutex<Inner>,
    state_tx: watch::Sender<WorkloadState>,
    publishing: Mutex<()>,
    router_stop: watch::Sender<bool>,
    load: Arc<LoadControl>,
    tasks: Mutex<Vec<AbortHandle>>,
    pod_counter: AtomicU64,
    probe_rr: AtomicUsize,
    shut: AtomicBool,
}

impl Workload {
    /// Opens the entries and starts the load generator; pods come from `spec`.
    pub(crate) fn start(
        target: Target,
        settings: AppSettings,
        spec: WorkloadSpec,
        shared: Shared,
    ) -> Result<Arc<Self>, ClusterError> {
        let bind_err = |e: std::io::Error| ClusterError::Unreachable {
            target: target.to_string(),
            message: format!("cannot open a loopback port: {e}"),
        };
        let rt = shared.rt.clone();
        let entry = bind_loopback(&rt).map_err(bind_err)?;
        let preview = bind_loopback(&rt).map_err(bind_err)?;
        let entry_url = format!("http://{}", entry.local_addr().map_err(bind_err)?);
        let preview_url = format!("http://{}", preview.local_addr().map_err(bind_err)?);
        let flag_stats = Arc::new(FlagStats::new());
        let router = Arc::new(Router::new(shared.proxy.clone(), shared.routed.clone(), flag_stats.clone()));
        let (router_stop, stop_rx) = watch::channel(false);
        let load = Arc::new(LoadControl::new(settings.rps));
        let w = Arc::new(Workload {
            target: target.clone(),
            settings: settings.clone(),
            router: router.clone(),
            stats: Stats::new(),
            flag_stats,
            users: Arc::new(UserStore::new()),
            shared: shared.clone(),
            entry_url: entry_url.clone(),
            preview_url,
            inner: Mutex::new(Inner::default()),
            state_tx: watch::channel(WorkloadState::default()).0,
            publishing: Mutex::new(()),
            router_stop,
            load: load.clone(),
            tasks: Mutex::new(Vec::new()),
            pod_counter: AtomicU64::new(0),
            probe_rr: AtomicUsize::new(0),
            shut: AtomicBool::new(false),
        });
        let r = router.clone();
        w.track(rt.spawn(serve(entry, move |req| r.clone().handle(req, false), stop_rx.clone())).abort_handle());
        let r = router;
        w.track(rt.spawn(serve(preview, move |req| r.clone().handle(req, true), stop_rx)).abort_handle());
        for (version, replicas) in &spec.replicas {
            w.scale(version, *replicas)?;
        }
        w.set_routing(&spec.routing);
        w.track(rt.spawn(loadgen::run(target, settings, entry_url, shared.plain, load)).abort_handle());
        let weak = Arc::downgrade(&w);
        w.track(rt.spawn(tick(weak)).abort_handle());
        Ok(w)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track(&self, task: AbortHandle) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        if self.shut.load(Ordering::Acquire) {
            task.abort();
        } else {
            tasks.push(task);
        }
    }

    pub(crate) fn spec(&self) -> WorkloadSpec {
        let inner = self.lock();
        WorkloadSpec { replicas: inner.desired.clone(), routing: inner.routing.clone() }
    }

    pub(crate) fn set_load(&self, rps: f64) {
        self.load.set(rps);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<WorkloadState> {
        self.state_tx.subscribe()
    }

    pub(crate) fn metrics(&self, version: &str, window: Duration) -> VersionMetrics {
        self.stats.metrics(version, window)
    }

    pub(crate) fn flag_metrics(&self, flag: &str, window: Duration) -> BTreeMap<String, VersionMetrics> {
        self.flag_stats.metrics(flag, window)
    }

    pub(crate) fn state(&self) -> WorkloadState {
        let inner = self.lock();
        self.state_of(&inner)
    }

    pub(crate) fn scale(self: &Arc<Self>, version: &str, replicas: u32) -> Result<(), ClusterError> {
        self.check_running()?;
        let mut inner = self.lock();
        if replicas == 0 {
            inner.desired.remove(version);
        } else {
            inner.desired.insert(version.to_string(), replicas);
        }
        *inner.generation.entry(version.to_string()).or_default() += 1;
        let mut current: Vec<Arc<Pod>> = inner.pods.iter().filter(|p| p.version == version).cloned().collect();
        let want = replicas as usize;
        let mut result = Ok(());
        while current.len() < want {
            match self.spawn_pod(&inner, version) {
                Ok(pod) => {
                    inner.pods.push(pod.clone());
                    current.push(pod);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if current.len() > want {
            // Keep the ready pods, and among equals the oldest: what a ReplicaSet does.
            current.sort_by_key(|p| !p.is_ready());
            for pod in current.split_off(want) {
                self.terminate(&mut inner, &pod);
            }
        }
        self.refresh(inner);
        result
    }

    /// Replaces the version's pods one at a time; the first replacement is created before this
    /// returns, the rest happen in the background.
    pub(crate) fn restart(self: &Arc<Self>, version: &str) -> Result<(), ClusterError> {
        self.check_running()?;
        let (olds, generation) = {
            let mut inner = self.lock();
            let generation = inner.generation.entry(version.to_string()).or_default();
            *generation += 1;
            let generation = *generation;
            let olds: Vec<String> =
                inner.pods.iter().filter(|p| p.version == version).map(|p| p.name.clone()).collect();
            (olds, generation)
        };
        let Some(first) = olds.first() else { return Ok(()) };
        let Some(replacement) = self.replace_step_start(version, first, generation)? else { return Ok(()) };
        let weak = Arc::downgrade(self);
        let version = version.to_string();
        let task = self.shared.rt.spawn(async move {
            let mut pending = Some((olds[0].clone(), replacement));
            let mut rest = olds.into_iter().skip(1);
            loop {
                if let Some((old, new)) = pending.take() {
                    let Some(w) = weak.upgrade() else { return };
                    if !w.finish_replacement(&version, &old, &new, generation).await {
                        return;
                    }
                }
                let Some(old) = rest.next() else { return };
                let Some(w) = weak.upgrade() else { return };
                match w.replace_step_start(&version, &old, generation) {
                    Ok(Some(new)) => pending = Some((old, new)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(target = %w.target, "restart of {version} stopped: {e}");
                        return;
                    }
                }
            }
        });
        self.track(task.abort_handle());
        Ok(())
    }

    /// Starts the replacement of `old`, unless the restart was overtaken or `old` is gone.
    fn replace_step_start(
        self: &Arc<Self>,
        version: &str,
        old: &str,
        generation: u64,
    ) -> Result<Option<Arc<Pod>>, ClusterError> {
        let mut inner = self.lock();
        if inner.generation.get(version) != Some(&generation) || !inner.pods.iter().any(|p| p.name == old) {
            return Ok(None);
        }
        let pod = self.spawn_pod(&inner, version)?;
        inner.pods.push(pod.clone());
        self.refresh(inner);
        Ok(Some(pod))
    }

    /// Waits for `new` to be ready (bounded), then retires `old`. False when overtaken.
    async fn finish_replacement(self: &Arc<Self>, version: &str, old: &str, new: &Arc<Pod>, generation: u64) -> bool {
        let mut rx = self.subscribe();
        let deadline = Instant::now() + RESTART_READY_WAIT;
        while !new.is_ready() {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        let mut inner = self.lock();
        if inner.generation.get(version) != Some(&generation) {
            return false;
        }
        if let Some(i) = inner.pods.iter().position(|p| p.name == old) {
            let pod = inner.pods.remove(i);
            self.terminate_removed(&mut inner, pod);
            self.refresh(inner);
        }
        true
    }

    pub(crate) fn set_routing(&self, routing: &Routing) {
        let mut inner = self.lock();
        inner.routing = routing.clone();
        self.refresh(inner);
    }

    /// Runs on the cluster's runtime, so the connection joins the cluster's pool whatever
    /// runtime the caller is on.
    pub(crate) async fn probe(&self, version: &str, request: &ProbeRequest) -> Result<ProbeResponse, ClusterError> {
        let target = self.target.to_string();
        let path = request.path.clone();
        let probe_err =
            move |message: String| ClusterError::Probe { target: target.clone(), path: path.clone(), message };
        self.check_running()?;
        let ready: Vec<Authority> = {
            let inner = self.lock();
            inner
                .pods
                .iter()
                .filter(|p| p.version == version && p.is_ready())
                .filter_map(|p| p.authority.clone())
                .collect()
        };
        if ready.is_empty() {
            return Err(ClusterError::NoReadyPod { target: self.target.to_string(), version: version.to_string() });
        }
        let authority = &ready[self.probe_rr.fetch_add(1, Ordering::Relaxed) % ready.len()];
        let method = Method::from_bytes(request.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| probe_err(format!("`{}` is not an HTTP method", request.method)))?;
        let path = if request.path.starts_with('/') { request.path.clone() } else { format!("/{}", request.path) };
        let uri: Uri = format!("http://{authority}{path}").parse().map_err(|e| probe_err(format!("bad path: {e}")))?;
        let mut builder = Request::builder().method(method).uri(uri);
        if request.body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let body = request.body.clone().map(Bytes::from).unwrap_or_default();
        let req = builder.body(Full::new(body)).map_err(|e| probe_err(e.to_string()))?;
        let timeout = Duration::from_millis(if request.timeout_ms == 0 { 5_000 } else { request.timeout_ms });
        let client = self.shared.plain.clone();
        let stopped = probe_err.clone();
        let exchange = async move {
            let start = std::time::Instant::now();
            let answer = tokio::time::timeout(timeout, async {
                let resp = client.request(req).await.map_err(|e| probe_err(e.to_string()))?;
                let status = resp.status();
                let body = resp.into_body().collect().await.map_err(|e| probe_err(e.to_string()))?.to_bytes();
                Ok::<_, ClusterError>(ProbeResponse {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                    latency_ms: start.elapsed().as_secs_f64() * 1000.0,
                })
            })
            .await;
            answer.map_err(|_| probe_err(format!("no answer within {} ms", timeout.as_millis())))?
        };
        self.shared.rt.spawn(exchange).await.map_err(|_| stopped("the local cluster stopped".into()))?
    }

    fn check_running(&self) -> Result<(), ClusterError> {
        if self.shut.load(Ordering::Acquire) {
            return Err(ClusterError::Other(format!("{}: the local cluster has been shut down", self.target)));
        }
        Ok(())
    }

    /// Aborts every task and pod. Safe to call more than once.
    pub(crate) fn shutdown(&self) {
        self.shut.store(true, Ordering::Release);
        self.router_stop.send_replace(true);
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        for pod in inner.pods.drain(..).chain(inner.terminating.drain(..)) {
            pod.kill();
        }
    }

    fn spawn_pod(self: &Arc<Self>, inner: &Inner, version: &str) -> Result<Arc<Pod>, ClusterError> {
        let name = self.pod_name(inner, version);
        let profile = self.settings.profile(version);
        let pod = Pod::start(
            name,
            &self.target,
            version,
            profile,
            self.users.clone(),
            self.shared.flags.clone(),
            &self.shared.rt,
        )
        .map_err(|e| ClusterError::Unreachable {
            target: self.target.to_string(),
            message: format!("cannot start a pod of {version}: {e}"),
        })?;
        let weak = Arc::downgrade(self);
        if pod.serves() {
            pod.attach(self.shared.rt.spawn(await_ready(weak, pod.clone(), self.shared.plain.clone())).abort_handle());
        } else if pod.crashes() {
            pod.attach(self.shared.rt.spawn(crash_loop(weak, pod.clone())).abort_handle());
        }
        Ok(pod)
    }

    /// `app-version-xxxxx`, deterministic for a given order of pod creations.
    fn pod_name(&self, inner: &Inner, version: &str) -> String {
        let taken = |name: &str| inner.pods.iter().chain(inner.terminating.iter()).any(|p| p.name == name);
        loop {
            let n = self.pod_counter.fetch_add(1, Ordering::Relaxed);
            let h = stable_hash(&[&self.target.env, &self.target.app, version, &n.to_string()]) & 0xf_ffff;
            let name = format!("{}-{version}-{h:05x}", self.target.app);
            if !taken(&name) {
                return name;
            }
        }
    }

    fn terminate(self: &Arc<Self>, inner: &mut Inner, pod: &Arc<Pod>) {
        if let Some(i) = inner.pods.iter().position(|p| Arc::ptr_eq(p, pod)) {
            let pod = inner.pods.remove(i);
            self.terminate_removed(inner, pod);
        }
    }

    /// Takes the pod out of rotation now (the caller refreshes the route table) and stops it
    /// once the requests already on their way have been answered.
    fn terminate_removed(self: &Arc<Self>, inner: &mut Inner, pod: Arc<Pod>) {
        pod.begin_termination();
        inner.terminating.push(pod.clone());
        let weak = Arc::downgrade(self);
        let task = self.shared.rt.spawn(async move {
            tokio::time::sleep(ROUTE_GRACE).await;
            pod.drain(DRAIN_GRACE).await;
            if let Some(w) = weak.upgrade() {
                let mut inner = w.lock();
                inner.terminating.retain(|p| !Arc::ptr_eq(p, &pod));
                w.refresh(inner);
            }
        });
        self.track(task.abort_handle());
    }

    /// Publishes a change: a new route table for the router and a new state for watchers.
    fn refresh(&self, inner: MutexGuard<'_, Inner>) {
        let mut ready: HashMap<&str, Vec<Authority>> = HashMap::new();
        for pod in inner.pods.iter().filter(|p| p.is_ready()) {
            if let Some(a) = &pod.authority {
                ready.entry(pod.version.as_str()).or_default().push(a.clone());
            }
        }
        self.router.set_table(RouteTable::build(&inner.routing, &ready, &self.stats));
        self.publish(inner);
    }

    /// Sends the state without holding the workload's lock: a watcher holding `borrow()` while
    /// calling back into the cluster must not deadlock with us. The publishing lock, taken
    /// before the workload's is released, keeps states in order.
    fn publish(&self, inner: MutexGuard<'_, Inner>) {
        let state = self.state_of(&inner);
        let publishing = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        drop(inner);
        self.state_tx.send_replace(state);
        drop(publishing);
    }

    fn refresh_now(&self) {
        self.refresh(self.lock());
    }

    fn state_of(&self, inner: &Inner) -> WorkloadState {
        let routing = &inner.routing;
        let routed = |v: &str| {
            routing.weights.get(v).is_some_and(|w| *w > 0)
                || routing.matches.iter().any(|m| m.version == v)
                || routing.preview.as_deref() == Some(v)
        };
        let mut versions: BTreeMap<String, VersionReplicas> = BTreeMap::new();
        for (v, n) in &inner.desired {
            versions.entry(v.clone()).or_default().desired = *n;
        }
        for pod in &inner.pods {
            let r = versions.entry(pod.version.clone()).or_default();
            r.updated += 1;
            if pod.is_ready() {
                r.ready += 1;
            }
        }
        for (v, r) in versions.iter_mut() {
            r.available = if routed(v) { r.ready } else { 0 };
        }
        let mut pods: Vec<_> = inner.pods.iter().chain(inner.terminating.iter()).map(|p| p.state()).collect();
        pods.sort_by(|a, b| (&a.version, &a.name).cmp(&(&b.version, &b.name)));
        WorkloadState {
            versions,
            pods,
            routing: routing.clone(),
            actual_weights: self.stats.shares(SHARE_WINDOW),
            entry_url: Some(self.entry_url.clone()),
            preview_url: Some(self.preview_url.clone()),
            native: None,
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Marks the pod ready once its `/ready` says so over HTTP, as a kubelet would.
async fn await_ready(weak: Weak<Workload>, pod: Arc<Pod>, client: PlainClient) {
    let Some(authority) = pod.authority.clone() else { return };
    let Ok(uri) = Uri::try_from(format!("http://{authority}/ready")) else { return };
    loop {
        let req = Request::get(uri.clone()).body(Full::new(Bytes::new()));
        if let Ok(req) = req {
            let answer = tokio::time::timeout(Duration::from_secs(1), client.request(req)).await;
            if let Ok(Ok(resp)) = answer {
                let ok = resp.status() == StatusCode::OK;
                let _ = resp.into_body().collect().await;
                if ok {
                    pod.set_ready();
                    if let Some(w) = weak.upgrade() {
                        w.refresh_now();
                    }
                    return;
                }
            }
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// A pod whose process exits at once: counts restarts with the kubelet's back-off.
async fn crash_loop(weak: Weak<Workload>, pod: Arc<Pod>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        tokio::time::sleep(backoff).await;
        pod.add_restart();
        match weak.upgrade() {
            Some(w) => w.refresh_now(),
            None => return,
        }
        backoff = (backoff * 2).min(CRASH_BACKOFF_MAX);
    }
}

/// Once a second: expire old stats and publish the state (actual weights move on their own).
async fn tick(weak: Weak<Workload>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(w) = weak.upgrade() else { return };
        w.stats.prune();
        w.flag_stats.prune();
        w.publish(w.lock());
    }
}
