//! One pod: a small HTTP server on a loopback port that behaves like one version of the demo
//! service, as its `VersionProfile` says (latency, errors, readiness delay, broken
//! dependencies), or a pod that never serves (crash loop, unknown image). A version that
//! declares `flag_effects` evaluates those flags on every API request (see [`super::flags`])
//! and behaves as the variant it served says.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::http::uri::Authority;
use hyper::{Method, Request, Response, StatusCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use std::time::Instant;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use super::flags::{CODE_DEFAULT, FlagSlot, context_from_headers, flag_header};
use super::http::{bind_loopback, json, respond, serve, stable_hash};
use crate::cluster::{PodPhase, PodState, Target};
use crate::model::VersionProfile;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// z-score of the 99th percentile of a standard normal.
const Z99: f64 = 2.3263;
/// A sampled latency never exceeds this, so one unlucky draw cannot wedge a request.
const MAX_LATENCY: Duration = Duration::from_secs(30);
/// Users kept per workload; the oldest created ones go first (the seed user stays).
const MAX_USERS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Serving,
    Crashing,
    ImagePull,
}

pub(crate) struct Pod {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) authority: Option<Authority>,
    kind: Kind,
    ready: AtomicBool,
    terminating: AtomicBool,
    restarts: AtomicU32,
    stop: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Pod {
    /// Starts the pod: binds and serves if the profile lets it, otherwise just exists in the
    /// failing phase its profile (or the lack of one) implies.
    pub(crate) fn start(
        name: String,
        target: &Target,
        version: &str,
        profile: Option<&VersionProfile>,
        users: Arc<UserStore>,
        flags: Arc<FlagSlot>,
        rt: &Handle,
    ) -> std::io::Result<Arc<Pod>> {
        let kind = match profile {
            None => Kind::ImagePull,
            Some(p) if p.crash => Kind::Crashing,
            Some(_) => Kind::Serving,
        };
        let (stop, stop_rx) = watch::channel(false);
        let mut pod = Pod {
            name,
            version: version.to_string(),
            addr: None,
            authority: None,
            kind,
            ready: AtomicBool::new(false),
            terminating: AtomicBool::new(false),
            restarts: AtomicU32::new(0),
            stop,
            server: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        };
        if let (Kind::Serving, Some(profile)) = (kind, profile) {
            let listener = bind_loopback(rt)?;
            let addr = listener.local_addr()?;
            pod.addr = Some(addr);
            pod.authority = Authority::try_from(addr.to_string().as_str()).ok();
            let app = Arc::new(PodApp::new(&pod.name, target, profile, users, flags));
            let handle = rt.spawn(serve(listener, move |req| PodApp::handle(app.clone(), req), stop_rx));
            pod.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(handle.abort_handle());
            *pod.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        }
        Ok(Arc::new(pod))
    }

    pub(crate) fn serves(&self) -> bool {
        self.kind == Kind::Serving
    }

    pub(crate) fn crashes(&self) -> bool {
        self.kind == Kind::Crashing
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.terminating.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub(crate) fn add_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Ties a background task (readiness prober, crash loop) to the pod's lifetime.
    pub(crate) fn attach(&self, task: AbortHandle) {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(task);
    }

    pub(crate) fn phase(&self) -> PodPhase {
        if self.terminating.load(Ordering::Acquire) {
            PodPhase::Terminating
        } else {
            match self.kind {
                Kind::ImagePull => PodPhase::ImagePullBackOff,
                Kind::Crashing => PodPhase::CrashLoopBackOff,
                Kind::Serving if self.is_ready() => PodPhase::Running,
                Kind::Serving => PodPhase::Starting,
            }
        }
    }

    pub(crate) fn state(&self) -> PodState {
        PodState {
            name: self.name.clone(),
            version: self.version.clone(),
            phase: self.phase(),
            ready: self.is_ready(),
            restarts: self.restarts.load(Ordering::Relaxed),
            address: self.addr.map(|a| a.to_string()),
        }
    }

    /// Marks the pod as leaving: it no longer counts as ready, so the next route table
    /// leaves it out. The server keeps answering until `drain`.
    pub(crate) fn begin_termination(&self) {
        self.terminating.store(true, Ordering::Release);
    }

    /// Stops accepting, lets in-flight requests finish (up to `grace`), then kills the rest.
    pub(crate) async fn drain(&self, grace: Duration) {
        self.stop.send_replace(true);
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = server {
            let _ = tokio::time::timeout(grace, server).await;
        }
        self.kill();
    }

    /// Aborts everything the pod runs, at once.
    pub(crate) fn kill(&self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
    }
}

/// The demo service's "database", shared by every pod of a workload so a user created
/// through one pod can be read back through another.
pub(crate) struct UserStore {
    inner: Mutex<Users>,
}

struct Users {
    next_id: u64,
    by_id: BTreeMap<u64, Bytes>,
    /// The list answer, rebuilt only after a change: most simulated traffic lists users.
    list: Option<Bytes>,
}

impl UserStore {
    pub(crate) fn new() -> Self {
        let mut by_id = BTreeMap::new();
        by_id.insert(1, user_json(1, "Ada Lovelace", "ada@example.com"));
        Self { inner: Mutex::new(Users { next_id: 2, by_id, list: None }) }
    }

    fn create(&self, name: &str, email: &str) -> Bytes {
        let mut users = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = users.next_id;
        users.next_id += 1;
        let body = user_json(id, name, email);
        users.by_id.insert(id, body.clone());
        users.list = None;
        while users.by_id.len() > MAX_USERS {
            let Some(oldest) = users.by_id.keys().copied().find(|k| *k != 1) else { break };
            users.by_id.remove(&oldest);
        }
        body
    }

    fn get(&self, id: u64) -> Option<Bytes> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).by_id.get(&id).cloned()
    }

    fn list(&self) -> Bytes {
        let mut users = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = &users.list {
            return list.clone();
        }
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"users\":[");
        for (i, body) in users.by_id.values().take(10).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(body);
        }
        out.extend_from_slice(format!("],\"total\":{}}}", users.by_id.len()).as_bytes());
        let list = Bytes::from(out);
        users.list = Some(list.clone());
        list
    }
}

fn user_json(id: u64, name: &str, email: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "id": id, "name": name, "email": email }).to_string())
}

enum Latency {
    Zero,
    Constant(Duration),
    LogNormal(LogNormal<f64>),
}

impl Latency {
    fn from_profile(p: &VersionProfile) -> Self {
        if p.p50_ms.is_nan() || p.p50_ms <= 0.0 {
            return Latency::Zero;
        }
        if p.p99_ms.is_nan() || p.p99_ms <= p.p50_ms {
            return Latency::Constant(Duration::from_secs_f64(p.p50_ms / 1000.0).min(MAX_LATENCY));
        }
        let sigma = (p.p99_ms / p.p50_ms).ln() / Z99;
        match LogNormal::new(p.p50_ms.ln(), sigma) {
            Ok(d) => Latency::LogNormal(d),
            Err(_) => Latency::Constant(Duration::from_secs_f64(p.p50_ms / 1000.0).min(MAX_LATENCY)),
        }
    }

    fn sample(&self, rng: &mut SmallRng) -> Duration {
        match self {
            Latency::Zero => Duration::ZERO,
            Latency::Constant(d) => *d,
            Latency::LogNormal(d) => {
                let ms = d.sample(rng);
                if ms.is_finite() && ms > 0.0 {
                    Duration::from_secs_f64(ms / 1000.0).min(MAX_LATENCY)
                } else {
                    Duration::ZERO
                }
            }
        }
    }
}

#[derive(Default)]
struct Metrics {
    /// Requests per status code.
    codes: BTreeMap<u16, u64>,
    /// Non-cumulative counts per histogram bucket; the last slot is `+Inf`.
    buckets: [u64; BUCKETS.len() + 1],
    sum_seconds: f64,
    count: u64,
    /// Evaluations per flag and variant served.
    flags: BTreeMap<String, BTreeMap<String, u64>>,
}

/// A flag this version declares effects for, and those effects per variant.
struct FlagUse {
    key: String,
    header: Option<HeaderName>,
    /// (variant, error rate replacing the version's, added latency)
    effects: Vec<(String, Option<f64>, Duration)>,
}

/// What the flags served to one request do to it.
#[derive(Default)]
struct Served {
    error_rate: Option<f64>,
    extra: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// One `FlagUse` per flag, in the order the profile first names them.
fn flag_uses(profile: &VersionProfile) -> Vec<FlagUse> {
    let mut uses: Vec<FlagUse> = Vec::new();
    for e in &profile.flag_effects {
        let extra = if e.extra_latency_ms.is_finite() && e.extra_latency_ms > 0.0 {
            Duration::from_secs_f64(e.extra_latency_ms / 1000.0).min(MAX_LATENCY)
        } else {
            Duration::ZERO
        };
        let effect = (e.variant.clone(), e.error_rate.filter(|r| r.is_finite()), extra);
        match uses.iter_mut().find(|u| u.key == e.flag) {
            Some(u) => u.effects.push(effect),
            None => uses.push(FlagUse { key: e.flag.clone(), header: flag_header(&e.flag), effects: vec![effect] }),
        }
    }
    uses
}

/// What a serving pod answers with.
struct PodApp {
    started: Instant,
    ready_after: Duration,
    error_rate: f64,
    latency: Latency,
    rng: Mutex<SmallRng>,
    users: Arc<UserStore>,
    health: Bytes,
    dependencies: Bytes,
    dependencies_ok: bool,
    /// `app="…",env="…",version="…"`, escaped once.
    labels: String,
    metrics: Mutex<Metrics>,
    flag_uses: Vec<FlagUse>,
    flags: Arc<FlagSlot>,
}

impl PodApp {
    fn new(
        pod_name: &str,
        target: &Target,
        profile: &VersionProfile,
        users: Arc<UserStore>,
        flags: Arc<FlagSlot>,
    ) -> Self {
        let mut deps: Vec<String> = ["database", "cache"].iter().map(|s| s.to_string()).collect();
        for broken in &profile.broken_dependencies {
            if !deps.contains(broken) {
                deps.push(broken.clone());
            }
        }
        let entries: Vec<serde_json::Value> = deps
            .iter()
            .map(|d| serde_json::json!({ "name": d, "healthy": !profile.broken_dependencies.contains(d) }))
            .collect();
        let labels = format!(
            "app=\"{}\",env=\"{}\",version=\"{}\"",
            escape_label(&target.app),
            escape_label(&target.env),
            escape_label(&profile.version)
        );
        Self {
            started: Instant::now(),
            ready_after: profile.ready_after(),
            error_rate: profile.error_rate,
            latency: Latency::from_profile(profile),
            rng: Mutex::new(SmallRng::seed_from_u64(stable_hash(&[pod_name]))),
            users,
            health: Bytes::from(serde_json::json!({ "status": "healthy", "version": profile.version }).to_string()),
            dependencies: Bytes::from(serde_json::json!({ "dependencies": entries }).to_string()),
            dependencies_ok: profile.broken_dependencies.is_empty(),
            labels,
            metrics: Mutex::new(Metrics::default()),
            flag_uses: flag_uses(profile),
            flags,
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let get = req.method() == Method::GET;
        match path {
            "/health" if get => json(StatusCode::OK, self.health.clone()),
            "/ready" if get => {
                if self.started.elapsed() >= self.ready_after {
                    json(StatusCode::OK, &b"{\"ready\":true}"[..])
                } else {
                    json(StatusCode::SERVICE_UNAVAILABLE, &b"{\"ready\":false}"[..])
                }
            }
            "/health/dependencies" if get => {
                let status = if self.dependencies_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                json(status, self.dependencies.clone())
            }
            "/metrics" if get => respond(StatusCode::OK, "text/plain; version=0.0.4", self.render_metrics()),
            _ if path == "/api/v1/users" || path.starts_with("/api/v1/users/") => {
                let start = Instant::now();
                let served = self.serve_flags(req.headers());
                let mut resp = self.api(req, served.error_rate, served.extra).await;
                self.observe(resp.status().as_u16(), start.elapsed());
                resp.headers_mut().extend(served.headers);
                resp
            }
            _ => json(StatusCode::NOT_FOUND, &b"{\"error\":\"not found\"}"[..]),
        }
    }

    /// Evaluates the flags this version has effects for, counts what it served, and says
    /// what those variants do to the request.
    fn serve_flags(&self, headers: &hyper::HeaderMap) -> Served {
        let mut served = Served::default();
        if self.flag_uses.is_empty() {
            return served;
        }
        let evaluator = self.flags.current();
        let ctx = context_from_headers(headers);
        let mut variants: Vec<&str> = Vec::with_capacity(self.flag_uses.len());
        for u in &self.flag_uses {
            let variant = evaluator.as_ref().and_then(|e| e.evaluate(&u.key, &ctx).variant).unwrap_or(CODE_DEFAULT);
            for (_, rate, extra) in u.effects.iter().filter(|(v, _, _)| v == variant) {
                if let Some(rate) = rate {
                    served.error_rate = Some(served.error_rate.map_or(*rate, |r| r.max(*rate)));
                }
                served.extra += *extra;
            }
            if let (Some(name), Ok(value)) = (&u.header, HeaderValue::from_str(variant)) {
                served.headers.push((name.clone(), value));
            }
            variants.push(variant);
        }
        let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        for (u, variant) in self.flag_uses.iter().zip(variants) {
            // Look up by `&str` first: the keys are allocated once, not per request.
            if !m.flags.contains_key(&u.key) {
                m.flags.insert(u.key.clone(), BTreeMap::new());
            }
            let Some(per_variant) = m.flags.get_mut(&u.key) else { continue };
            match per_variant.get_mut(variant) {
                Some(n) => *n += 1,
                None => {
                    per_variant.insert(variant.to_string(), 1);
                }
            }
        }
        served
    }

    /// The business endpoints: they pay the profile's latency (plus what the served flag
    /// variants add) and fail at its error rate (or the one a served variant sets).
    async fn api(&self, req: Request<Incoming>, error_rate: Option<f64>, extra: Duration) -> Response<Full<Bytes>> {
        let error_rate = error_rate.unwrap_or(self.error_rate);
        let (delay, fail) = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            let delay = (self.latency.sample(&mut rng) + extra).min(MAX_LATENCY);
            (delay, error_rate > 0.0 && rng.random::<f64>() < error_rate)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if fail {
            return json(StatusCode::INTERNAL_SERVER_ERROR, &b"{\"error\":\"internal error\"}"[..]);
        }
        enum Op {
            List,
            Create,
            Get(Option<u64>),
            NotAllowed,
        }
        let rest = req.uri().path().strip_prefix("/api/v1/users").unwrap_or_default();
        let op = match (req.method(), rest) {
            (&Method::GET, "" | "/") => Op::List,
            (&Method::POST, "" | "/") => Op::Create,
            (&Method::GET, rest) => Op::Get(rest.strip_prefix('/').and_then(|id| id.parse::<u64>().ok())),
            _ => Op::NotAllowed,
        };
        match op {
            Op::List => json(StatusCode::OK, self.users.list()),
            Op::Create => self.create_user(req.into_body()).await,
            Op::Get(Some(id)) => match self.users.get(id) {
                Some(user) => json(StatusCode::OK, user),
                None => json(StatusCode::NOT_FOUND, &b"{\"error\":\"no such user\"}"[..]),
            },
            Op::Get(None) => json(StatusCode::NOT_FOUND, &b"{\"error\":\"not found\"}"[..]),
            Op::NotAllowed => json(StatusCode::METHOD_NOT_ALLOWED, &b"{\"error\":\"method not allowed\"}"[..]),
        }
    }

    async fn create_user(&self, body: Incoming) -> Response<Full<Bytes>> {
        let body = match Limited::new(body, 64 * 1024).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return json(StatusCode::BAD_REQUEST, &b"{\"error\":\"unreadable body\"}"[..]),
        };
        let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Object(Default::default())
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) => return json(StatusCode::BAD_REQUEST, &b"{\"error\":\"invalid JSON\"}"[..]),
            }
        };
        let field =
            |k: &str| -> String { value.get(k).and_then(|v| v.as_str()).unwrap_or("").chars().take(64).collect() };
        json(StatusCode::CREATED, self.users.create(&field("name"), &field("email")))
    }

    fn observe(&self, code: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = BUCKETS.iter().position(|le| secs <= *le).unwrap_or(BUCKETS.len());
        let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        *m.codes.entry(code).or_default() += 1;
        m.buckets[slot] += 1;
        m.sum_seconds += secs;
        m.count += 1;
    }

    fn render_metrics(&self) -> String {
        let m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        let l = &self.labels;
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP http_requests_total API requests served, by status code.\n");
        out.push_str("# TYPE http_requests_total counter\n");
        for (code, n) in &m.codes {
            let _ = writeln!(out, "http_requests_total{{{l},code=\"{code}\"}} {n}");
        }
        out.push_str("# HELP http_request_duration_seconds Time taken to answer API requests.\n");
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (le, n) in BUCKETS.iter().zip(m.buckets.iter()) {
            cumulative += n;
            let _ = writeln!(out, "http_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}", m.count);
        let _ = writeln!(out, "http_request_duration_seconds_sum{{{l}}} {}", m.sum_seconds);
        let _ = writeln!(out, "http_request_duration_seconds_count{{{l}}} {}", m.count);
        if !m.flags.is_empty() {
            out.push_str("# HELP flag_evaluations_total Feature flag evaluations, by flag and the variant served.\n");
            out.push_str("# TYPE flag_evaluations_total counter\n");
            for (flag, variants) in &m.flags {
                for (variant, n) in variants {
                    let (f, v) = (escape_label(flag), escape_label(variant));
                    let _ = writeln!(out, "flag_evaluations_total{{{l},flag=\"{f}\",variant=\"{v}\"}} {n}");
                }
            }
        }
        out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
