//! The console on a Kubernetes namespace with 5,000 Deployments, served by a mock API server.
//!
//! "5,000 Deployments in a namespace" is read as shipdeck sees a namespace: 5,000 apps, each
//! running its current version in the version Deployment shipdeck made for it
//! (`<app>-1-0-0`, labelled `shipdeck.dev/version`), 3 ready pods each (15,000 pods) and the
//! app's active Service (5,000 Services). The apps' base Deployments (templates that shipdeck
//! never watches: its watches select `shipdeck.dev/version`) are not served. The objects look
//! like a real API server's: managed fields, owner references, defaulted specs, conditions.
//!
//! The mock API server plays the list/watch protocol kube-runtime's watcher uses: paged lists
//! (`limit`/`continue`) and watch streams that stay open until their `timeoutSeconds`, as a
//! real API server's do. Each object is serialized once before the clock starts; a list page
//! is those bytes joined. It runs in two ways:
//!
//! - as an HTTP server in **its own process** (this binary run again with
//!   `SHIPDECK_BENCH_SERVE=1`, on a loopback port), for time and memory: the console connects
//!   to it the way it connects to any cluster (`cluster::kube::connect` with a kubeconfig whose
//!   server is `http://127.0.0.1:PORT`), so the console's process holds nothing of the mock
//!   and its VmHWM is the console's own;
//! - as a `tower-test` service handed to `kube::Client::new` **in this process**, for the idle
//!   count, which needs tokio's paused clock (a paused clock cannot drive another process's
//!   watch timeouts).
//!
//! Measured:
//!
//! 1. start to first full frame: from `connect` (its `/version` request, the client, the
//!    watches) and `Engine::new` (a SQLite store in a temp dir) to `snapshot::load` (which waits
//!    for the watches' lists) and the Environments pane drawn by the console's `view::draw` into
//!    a 160×48 `TestBackend`, checked to show the workloads; target < 2 s;
//! 2. memory: VmHWM of `/proc/self/status` of the console's process (the mock in its own
//!    process) once the first frame is drawn and the console's event loop has run 5 s more
//!    (a snapshot load every second, the new one beside the one shown): the process's peak
//!    since it began; target < 200 MB. A counting allocator also gives the heap's peak and
//!    what is live at each stage;
//! 3. API requests while idle: with tokio's clock paused, 60 s of the console idling as its
//!    event loop does (a snapshot load every second, a frame when it changed), counted by the
//!    in-process mock; open watch streams are not requests, re-lists and re-watches are;
//!    target 0. Then 10 more minutes of virtual time show what a real API server's watch
//!    timeouts cost.
//!
//! Run: `cargo bench --bench kube_console` (`SHIPDECK_BENCH_APPS=1000` for a smaller estate;
//! `BENCH_TRACE=1 RUST_LOG=debug` prints the client's tracing to stderr).
//! Prints Markdown tables.

#[allow(dead_code)]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::{Value, json};
use shipdeck::analysis::{MetricsError, MetricsProvider, VersionMetrics};
use shipdeck::cluster::kube::KubeCluster;
use shipdeck::cluster::{Cluster, Target};
use shipdeck::config::Estate;
use shipdeck::config::keymap::Keymap;
use shipdeck::config::theme::Theme;
use shipdeck::engine::Engine;
use shipdeck::store::Store;
use shipdeck::tui::app::App;
use shipdeck::tui::{snapshot, view};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "shop";
const DEFAULT_APPS: usize = 5_000;
const PODS_PER_APP: usize = 3;
const VERSION: &str = "1.0.0";
const WIDTH: u16 = 160;
const HEIGHT: u16 = 48;
const LOG_LIMIT: usize = 1000;
const IDLE: Duration = Duration::from_secs(60);
const LONG_IDLE: Duration = Duration::from_secs(600);
const FIRST_FRAME_TARGET: Duration = Duration::from_secs(2);
const MEMORY_TARGET_MB: f64 = 200.0;
/// Snapshot loads, a second apart, after the first frame and before memory's peak is read.
const RUNNING_LOADS: usize = 5;
/// Set in the environment of the bench run again as the API server.
const SERVE_ENV: &str = "SHIPDECK_BENCH_SERVE";

type MockBody = UnsyncBoxBody<Bytes, Infallible>;
type Handle = tower_test::mock::Handle<Request<kube::client::Body>, Response<MockBody>>;

/// The system allocator, counting the bytes live and their peak (the heap as the program asks
/// for it, apart from the allocator's own overhead and what it keeps after a free).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn heap_mb() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / 1e6
}

fn heap_peak_mb() -> f64 {
    PEAK.load(Ordering::Relaxed) as f64 / 1e6
}

fn main() {
    if std::env::var("BENCH_TRACE").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let apps = std::env::var("SHIPDECK_BENCH_APPS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_APPS);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    if std::env::var_os(SERVE_ENV).is_some() {
        rt.block_on(serve_process(apps));
    } else {
        rt.block_on(run(apps));
    }
}

fn app_names(apps: usize) -> Vec<String> {
    (0..apps).map(|i| format!("svc-{i:05}")).collect()
}

async fn run(apps: usize) {
    let names = app_names(apps);
    let estate = Arc::new(Estate::parse(&estate_toml(&names), "kube-bench.toml").expect("the bench estate parses"));
    let theme = Theme::embedded("dark").expect("embedded theme");
    let keymap = Keymap::embedded("default").and_then(Result::ok).expect("embedded keymap");
    let work = tempfile::tempdir().expect("temp dir");
    let mut server = ApiServer::spawn(apps);
    let rss_before = status_mb("VmRSS");
    let heap_before = heap_mb();

    // 1. Start to first full frame, against the API server in its own process.
    let t0 = Instant::now();
    let env = estate.environments.first().expect("the bench estate has an environment");
    let kube_apps = estate.targets().into_iter().map(|(t, s)| (t, s.kubernetes.resolve(&s.name))).collect();
    let cluster = match shipdeck::cluster::kube::connect(env, kube_apps, Some(server.kubeconfig())).await {
        Ok(c) => c,
        Err(e) => panic!("the console cannot connect to the bench's API server: {e}"),
    };
    let store = Arc::new(Store::open(&work.path().join("shipdeck.db")).expect("store"));
    let engine = Engine::new(estate.clone(), cluster.clone() as Arc<dyn Cluster>, Arc::new(NoMetrics), store, false);
    let created = t0.elapsed();
    // The watches' lists, on their own (the snapshot below waits for them the same way).
    let _ = engine.cluster().state(&Target::new("prod", &names[0])).await;
    let listed = t0.elapsed();
    let (rss_listed, heap_listed) = (status_mb("VmRSS"), heap_mb());
    let snap = snapshot::load(&engine, None, None, LOG_LIMIT).await;
    let loaded = t0.elapsed();
    let shown = snap.workloads.values().filter(|w| w.state.replicas(VERSION).ready == PODS_PER_APP as u32).count();
    let mut app = App::new(snap, theme.clone(), keymap.clone(), false);
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("test backend");
    term.draw(|f| view::draw(f, &app)).expect("draw");
    let first_frame = t0.elapsed();
    let screen = screen_text(&term);
    let peak_frame = status_mb("VmHWM");
    let (rss_after, heap_after) = (status_mb("VmRSS"), heap_mb());
    let startup_requests = server.counts().await;
    // The console's event loop for a few seconds: a snapshot load every second, held beside
    // the one shown while they are compared.
    for _ in 0..RUNNING_LOADS {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut s = snapshot::load(&engine, None, None, LOG_LIMIT).await;
        s.now = app.snapshot.now;
        if s != app.snapshot {
            app.set_snapshot(s);
            term.draw(|f| view::draw(f, &app)).expect("draw");
        }
    }
    let peak = status_mb("VmHWM");
    let heap_peak = heap_peak_mb();
    let after_loads = server.counts().await;
    let running_requests = after_loads.total() - startup_requests.total();
    let frame_ok = shown == apps
        && screen.contains(&names[0])
        && screen.contains(&format!("● {VERSION} {PODS_PER_APP}/{PODS_PER_APP}"));
    if !frame_ok {
        eprintln!("the first frame does not show the workloads ({shown} of {apps} ready):\n{screen}");
    }
    drop((app, term, engine, cluster));
    server.stop();

    // 3. Idle, on a paused clock, against the mock in this process.
    let (idle, loads, long_idle) = idle(&names, estate.clone(), theme, keymap, work.path()).await;

    println!("## Kubernetes console bench (`cargo bench --bench kube_console`)\n");
    println!("{}", common::machine_table());
    println!(
        "Namespace served by a mock API server (kube-runtime's list/watch protocol; for time and memory an \
         HTTP server in its own process on a loopback port, for the idle count a `tower-test` service in this \
         process): {apps} version Deployments (one per app, {PODS_PER_APP} replicas), {} pods, {apps} Services; \
         {:.1} MB of serialized objects. Estate: {apps} apps in one Kubernetes environment. \
         Frame: {WIDTH}×{HEIGHT} `TestBackend`, Environments pane. One current-thread tokio runtime.\n",
        apps * PODS_PER_APP,
        server.object_bytes as f64 / 1e6,
    );
    println!("| measure | value | target | result |\n|---|---|---|---|");
    let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "| start → first full frame | {} (connect + engine {}, watches listed {}, snapshot {}, frame {}) | < 2 s | {} |",
        secs(first_frame),
        secs(created),
        secs(listed - created),
        secs(loaded - listed),
        secs(first_frame - loaded),
        pass(first_frame < FIRST_FRAME_TARGET && frame_ok)
    );
    println!(
        "| peak memory of the console's process (VmHWM, after the first frame and {RUNNING_LOADS} s of its event loop) \
         | {peak:.1} MB (at the first frame {peak_frame:.1} MB; RSS before start {rss_before:.1} MB, once the watches \
         listed {rss_listed:.1} MB, after the first frame {rss_after:.1} MB; heap peak {heap_peak:.1} MB, live before \
         start {heap_before:.1} MB, once listed {heap_listed:.1} MB, after the frame {heap_after:.1} MB) \
         | < {MEMORY_TARGET_MB:.0} MB | {} |",
        pass(peak < MEMORY_TARGET_MB)
    );
    println!(
        "| API requests while idle, 60 s ({loads} snapshot loads) | {} ({}/min) | 0/min | {} |",
        idle.describe(),
        idle.total(),
        pass(idle.total() == 0)
    );
    println!(
        "| API requests in the next 10 min of idle (watch timeouts of 290 s) | {} ({:.1}/min, no re-list) | — | {} |",
        long_idle.describe(),
        long_idle.total() as f64 / 10.0,
        if long_idle.lists == 0 { "info" } else { "re-listed" }
    );
    println!(
        "\nStart-up requests: {}. Requests to the server process during the {RUNNING_LOADS} s of event loop \
         (real time): {running_requests}.",
        startup_requests.describe()
    );
    println!(
        "The mock API server's process (not counted above): RSS {:.1} MB once serving.",
        after_loads.server_rss_mb
    );
    println!("First frame shows the workloads: {}.", if frame_ok { "yes" } else { "NO" });
    let all = first_frame < FIRST_FRAME_TARGET && frame_ok && peak < MEMORY_TARGET_MB && idle.total() == 0;
    println!("\nOverall: {}", pass(all));
}

/// The console idling for [`IDLE`] then [`LONG_IDLE`] of paused time, with the requests the
/// in-process mock counted in each, and the snapshot loads of the first.
async fn idle(
    names: &[String],
    estate: Arc<Estate>,
    theme: Theme,
    keymap: Keymap,
    work: &std::path::Path,
) -> (Seen, usize, Seen) {
    let objects = Arc::new(Objects::build(names));
    let counts = Arc::new(Counts::default());
    let (service, handle) = tower_test::mock::pair::<Request<kube::client::Body>, Response<MockBody>>();
    let server = tokio::spawn(serve(handle, objects, counts.clone()));
    let client = kube::Client::new(service, NS);
    let kube_apps = estate.targets().into_iter().map(|(t, s)| (t, s.kubernetes.resolve(&s.name))).collect();
    let cluster = KubeCluster::new(client, NS, kube_apps);
    cluster.start();
    let store = Arc::new(Store::open(&work.join("idle.db")).expect("store"));
    let engine = Engine::new(estate, cluster.clone() as Arc<dyn Cluster>, Arc::new(NoMetrics), store, false);
    let _ = engine.cluster().state(&Target::new("prod", &names[0])).await;
    let mut app = App::new(snapshot::load(&engine, None, None, LOG_LIMIT).await, theme, keymap, false);
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("test backend");
    term.draw(|f| view::draw(f, &app)).expect("draw");

    // The console's event loop: a snapshot load every second, a frame when it changed;
    // nothing changes in the namespace.
    counts.reset();
    tokio::time::pause();
    let mut loads = 0;
    let idle_started = tokio::time::Instant::now();
    while idle_started.elapsed() < IDLE {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut s = snapshot::load(&engine, None, None, LOG_LIMIT).await;
        s.now = app.snapshot.now;
        loads += 1;
        if s != app.snapshot {
            app.set_snapshot(s);
            term.draw(|f| view::draw(f, &app)).expect("draw");
        }
    }
    let idle = counts.snapshot();
    counts.reset();
    tokio::time::sleep(LONG_IDLE).await;
    let long_idle = counts.snapshot();
    tokio::time::resume();
    drop(engine);
    drop(cluster);
    server.abort();
    (idle, loads, long_idle)
}

/// The mock API server in its own process: this bench binary, run again with [`SERVE_ENV`].
struct ApiServer {
    child: Child,
    port: u16,
    object_bytes: usize,
}

impl ApiServer {
    fn spawn(apps: usize) -> Self {
        let exe = std::env::current_exe().expect("the bench's own path");
        let mut child = Command::new(exe)
            .env(SERVE_ENV, "1")
            .env("SHIPDECK_BENCH_APPS", apps.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the API server process");
        // Its first line, once the objects are built and the port bound: "PORT OBJECT_BYTES".
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the server's stdout");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("the server's first line");
        let mut words = line.split_whitespace().map(|w| w.parse::<usize>().ok());
        let (Some(Some(port)), Some(Some(object_bytes))) = (words.next(), words.next()) else {
            panic!("the API server process said {line:?}, not its port");
        };
        Self { child, port: port as u16, object_bytes }
    }

    fn kubeconfig(&self) -> kube::config::Kubeconfig {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: bench\nclusters:\n- name: bench\n  cluster:\n    \
             server: http://127.0.0.1:{}\ncontexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\n    \
             namespace: {NS}\nusers:\n- name: bench\n  user:\n    token: bench\n",
            self.port
        );
        kube::config::Kubeconfig::from_yaml(&yaml).expect("the bench's kubeconfig")
    }

    /// The requests it answered so far, and its resident set.
    async fn counts(&self) -> Seen {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.expect("connect to the server");
        let request = "GET /_bench/counts HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.expect("ask the server");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("the server's answer");
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| {
                let n = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| n as usize);
                Some(Seen {
                    lists: n("lists")?,
                    watches: n("watches")?,
                    other: n("other")?,
                    server_rss_mb: v.get("rss_mb").and_then(Value::as_f64).unwrap_or(f64::NAN),
                })
            })
            .unwrap_or_else(|| panic!("the server's counts: {answer:?}"))
    }

    fn stop(&mut self) {
        // Closing its stdin ends it; kill is for one that does not notice.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The API server process: builds the objects, says its port, serves HTTP/1.1 on loopback
/// until its stdin closes.
async fn serve_process(apps: usize) {
    let objects = Arc::new(Objects::build(&app_names(apps)));
    let counts = Arc::new(Counts::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind a loopback port");
    let port = listener.local_addr().expect("the bound port").port();
    println!("{port} {}", objects.bytes());
    tokio::spawn(async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (objects, counts) = (objects.clone(), counts.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = match request.uri().path() {
                    "/_bench/counts" => json_response(200, &counts.json()),
                    _ => answer(&objects, &counts, request.method(), request.uri()),
                };
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// No metrics: the console's first frame does not read them.
struct NoMetrics;

#[async_trait]
impl MetricsProvider for NoMetrics {
    async fn version_metrics(&self, t: &Target, _: &str, _: Duration) -> Result<VersionMetrics, MetricsError> {
        Err(MetricsError { target: t.to_string(), message: "no metrics in this bench".into() })
    }
}

fn estate_toml(names: &[String]) -> String {
    let mut s = format!(
        "[[environments]]\nname = \"prod\"\ncluster = {{ kubernetes = {{ context = \"bench\", namespace = \"{NS}\" }} }}\n"
    );
    for n in names {
        s.push_str(&format!(
            "\n[[apps]]\nname = \"{n}\"\nreplicas = {PODS_PER_APP}\ninitial_version = \"{VERSION}\"\n\
             [[apps.versions]]\nversion = \"{VERSION}\"\n[[apps.versions]]\nversion = \"1.1.0\"\n"
        ));
    }
    s
}

/// Every object the mock serves, serialized, by resource.
struct Objects {
    deployments: Vec<Bytes>,
    pods: Vec<Bytes>,
    services: Vec<Bytes>,
}

const STAMP: &str = "2026-11-20T10:00:00Z";

impl Objects {
    fn build(names: &[String]) -> Self {
        let ser = |v: Value| Bytes::from(serde_json::to_vec(&v).expect("serialize"));
        let mut rv = 1000u64;
        let mut next_rv = || {
            rv += 1;
            rv.to_string()
        };
        let mut deployments = Vec::with_capacity(names.len());
        let mut pods = Vec::with_capacity(names.len() * PODS_PER_APP);
        let mut services = Vec::with_capacity(names.len());
        for (i, app) in names.iter().enumerate() {
            let name = format!("{app}-1-0-0");
            deployments.push(ser(deployment(app, &name, &next_rv(), i)));
            for p in 0..PODS_PER_APP {
                pods.push(ser(pod(app, &format!("{name}-7d9f8b6c5-{p:05x}"), &next_rv(), i, p)));
            }
            services.push(ser(service(app, &next_rv(), i)));
        }
        Self { deployments, pods, services }
    }

    fn bytes(&self) -> usize {
        [&self.deployments, &self.pods, &self.services].iter().flat_map(|v| v.iter()).map(Bytes::len).sum()
    }
}

fn labels(app: &str) -> Value {
    json!({"app.kubernetes.io/name": app, "shipdeck.dev/version": VERSION})
}

fn uid(kind: u32, i: usize, j: usize) -> String {
    format!("{kind:08x}-{:04x}-4{:03x}-8000-{:012x}", i & 0xffff, j & 0xfff, i * 16 + j)
}

fn container(app: &str) -> Value {
    json!({
        "name": app,
        "image": format!("registry.local:5000/shop/{app}:{VERSION}"),
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "env": [{"name": "APP_ENV", "value": "prod"}, {"name": "LOG_LEVEL", "value": "info"}],
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5,
                           "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10,
                          "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    })
}

fn deployment(app: &str, name: &str, rv: &str, i: usize) -> Value {
    let replicas = PODS_PER_APP;
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": NS, "uid": uid(1, i, 0), "resourceVersion": rv, "generation": 1,
            "creationTimestamp": STAMP,
            "labels": {"app.kubernetes.io/name": app, "shipdeck.dev/version": VERSION,
                       "app.kubernetes.io/managed-by": "shipdeck"},
            "annotations": {"deployment.kubernetes.io/revision": "1", "shipdeck.dev/base": app},
            "managedFields": [
                {"manager": "shipdeck", "operation": "Update", "apiVersion": "apps/v1", "time": STAMP,
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:shipdeck.dev/base": {}},
                   "f:labels": {".": {}, "f:app.kubernetes.io/managed-by": {}, "f:app.kubernetes.io/name": {},
                                "f:shipdeck.dev/version": {}}},
                   "f:spec": {"f:progressDeadlineSeconds": {}, "f:replicas": {}, "f:revisionHistoryLimit": {},
                              "f:selector": {}, "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {},
                              "f:maxUnavailable": {}}, "f:type": {}}, "f:template": {"f:metadata": {"f:labels": {}},
                              "f:spec": {"f:containers": {}}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1", "time": STAMP,
                 "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}},
                   "f:status": {"f:availableReplicas": {}, "f:conditions": {}, "f:observedGeneration": {},
                                "f:readyReplicas": {}, "f:replicas": {}, "f:updatedReplicas": {}}}},
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels(app)},
            "template": {
                "metadata": {"labels": labels(app)},
                "spec": {"containers": [container(app)], "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                         "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler", "securityContext": {}},
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
        },
        "status": {
            "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "lastUpdateTime": STAMP, "lastTransitionTime": STAMP,
                 "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "lastUpdateTime": STAMP, "lastTransitionTime": STAMP,
                 "reason": "NewReplicaSetAvailable",
                 "message": format!("ReplicaSet \"{name}-7d9f8b6c5\" has successfully progressed.")},
            ],
        },
    })
}

fn pod(app: &str, name: &str, rv: &str, i: usize, p: usize) -> Value {
    let ip = format!("10.{}.{}.{}", 1 + i / 65_536 % 200, i / 256 % 256, (i * PODS_PER_APP + p) % 250 + 2);
    let mut pod_labels = labels(app);
    pod_labels["pod-template-hash"] = json!("7d9f8b6c5");
    let condition = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": STAMP});
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "generateName": format!("{app}-1-0-0-7d9f8b6c5-"), "namespace": NS, "uid": uid(2, i, p),
            "resourceVersion": rv, "creationTimestamp": STAMP, "labels": pod_labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-1-0-0-7d9f8b6c5"),
                                 "uid": uid(3, i, 0), "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": STAMP,
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {},
                   "f:ownerReferences": {}}, "f:spec": {"f:containers": {}, "f:dnsPolicy": {}, "f:restartPolicy": {},
                   "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": STAMP, "subresource": "status",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {},
                   "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}},
            ],
        },
        "spec": {
            "containers": [pod_container(app)],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                               "fieldPath": "metadata.namespace"}}]}},
            ]}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "nodeName": format!("node-{}", i % 40),
            "securityContext": {}, "schedulerName": "default-scheduler", "priority": 0,
            "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300},
            ],
        },
        "status": {
            "phase": "Running",
            "conditions": [condition("Initialized"), condition("Ready"), condition("ContainersReady"),
                           condition("PodScheduled")],
            "hostIP": format!("192.168.0.{}", i % 40 + 10), "podIP": ip, "podIPs": [{"ip": ip}], "startTime": STAMP,
            "containerStatuses": [{
                "name": app, "state": {"running": {"startedAt": STAMP}}, "lastState": {}, "ready": true,
                "restartCount": 0, "image": format!("registry.local:5000/shop/{app}:{VERSION}"),
                "imageID": format!("registry.local:5000/shop/{app}@sha256:{:064x}", i),
                "containerID": format!("containerd://{:064x}", i * 8 + p), "started": true,
            }],
            "qosClass": "Burstable",
        },
    })
}

/// The container as a pod has it: with the service account token mounted.
fn pod_container(app: &str) -> Value {
    let mut c = container(app);
    c["volumeMounts"] = json!([{"name": "kube-api-access", "readOnly": true,
                                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
    c
}

fn service(app: &str, rv: &str, i: usize) -> Value {
    let ip = format!("10.96.{}.{}", i / 250 % 256, i % 250 + 2);
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": app, "namespace": NS, "uid": uid(4, i, 0), "resourceVersion": rv, "creationTimestamp": STAMP,
            "labels": {"app.kubernetes.io/name": app},
            "managedFields": [
                {"manager": "shipdeck", "operation": "Update", "apiVersion": "v1", "time": STAMP, "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:selector": {}}}},
                {"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": STAMP, "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:labels": {}}, "f:spec": {"f:ports": {}, "f:type": {}}}},
            ],
        },
        "spec": {
            "selector": {"app.kubernetes.io/name": app, "shipdeck.dev/version": VERSION},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
            "clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP", "sessionAffinity": "None",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {}},
    })
}

/// Requests the mock answered, by kind.
#[derive(Default)]
struct Counts {
    lists: AtomicUsize,
    watches: AtomicUsize,
    other: AtomicUsize,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    lists: usize,
    watches: usize,
    other: usize,
    /// The server process's resident set, when it is one.
    server_rss_mb: f64,
}

impl Counts {
    fn snapshot(&self) -> Seen {
        Seen {
            lists: self.lists.load(Ordering::Relaxed),
            watches: self.watches.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
            server_rss_mb: f64::NAN,
        }
    }

    fn json(&self) -> Value {
        let s = self.snapshot();
        json!({"lists": s.lists, "watches": s.watches, "other": s.other, "rss_mb": status_mb("VmRSS")})
    }

    fn reset(&self) {
        for c in [&self.lists, &self.watches, &self.other] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

impl Seen {
    fn total(&self) -> usize {
        self.lists + self.watches + self.other
    }

    fn describe(&self) -> String {
        format!("{} list pages, {} watches, {} other", self.lists, self.watches, self.other)
    }
}

/// The in-process API server: a `tower-test` handle's requests answered one by one.
async fn serve(mut handle: Handle, objects: Arc<Objects>, counts: Arc<Counts>) {
    while let Some((request, respond)) = handle.next_request().await {
        respond.send_response(answer(&objects, &counts, request.method(), request.uri()));
    }
}

/// One request, as the API server answers it: lists in pages, watches held open until their
/// `timeoutSeconds`, `/version`; anything else is a 404.
static NONE: Vec<Bytes> = Vec::new();

fn answer(objects: &Objects, counts: &Counts, method: &Method, uri: &Uri) -> Response<MockBody> {
    const LIST_RV: &str = "900000";
    let path = uri.path();
    if path == "/version" && method == Method::GET {
        counts.other.fetch_add(1, Ordering::Relaxed);
        return json_response(200, &json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0-bench"}));
    }
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%2F", "/")))
        .collect();
    let resource = path.rsplit('/').next().unwrap_or_default();
    let bases = query.get("labelSelector").is_some_and(|s| s.contains("shipdeck.dev/rollout-state"));
    let get = method == Method::GET;
    let (items, kind, api_version) = match resource {
        // The live watches' resources: the namespace has no Leases, no base carrying a rollout,
        // no Events; only bases shipdeck rolled natively have labelled ReplicaSets (none here).
        "deployments" if get && bases => (&NONE, "PartialObjectMetadataList", "meta.k8s.io/v1"),
        "leases" if get => (&NONE, "LeaseList", "coordination.k8s.io/v1"),
        "events" if get => (&NONE, "EventList", "events.k8s.io/v1"),
        "replicasets" if get => (&NONE, "ReplicaSetList", "apps/v1"),
        "deployments" if method == Method::GET => (&objects.deployments, "DeploymentList", "apps/v1"),
        "pods" if method == Method::GET => (&objects.pods, "PodList", "v1"),
        "services" if method == Method::GET => (&objects.services, "ServiceList", "v1"),
        _ => {
            counts.other.fetch_add(1, Ordering::Relaxed);
            return json_response(404, &status_404(path));
        }
    };
    if query.get("watch").is_some_and(|w| w == "true") {
        counts.watches.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, Infallible>>();
        let timeout = query.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(1800u64);
        // The stream ends when the sender goes: after the timeout, as a real API server does.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(timeout)).await;
            drop(tx);
        });
        let body = StreamBody::new(rx).boxed_unsync();
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body)
            .expect("response");
    }
    counts.lists.fetch_add(1, Ordering::Relaxed);
    let start: usize = query.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(items.len());
    let next = if end < items.len() { end.to_string() } else { String::new() };
    let head = format!(
        r#"{{"apiVersion":"{api_version}","kind":"{kind}","metadata":{{"resourceVersion":"{LIST_RV}","continue":"{next}"}},"items":["#
    );
    let page = &items[start.min(end)..end];
    let mut body = Vec::with_capacity(head.len() + page.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
    body.extend_from_slice(head.as_bytes());
    for (n, item) in page.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    bytes_response(200, Bytes::from(body))
}

fn status_404(path: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
           "message": format!("the mock serves no {path}")})
}

fn json_response(code: u16, body: &Value) -> Response<MockBody> {
    bytes_response(code, Bytes::from(body.to_string()))
}

fn bytes_response(code: u16, body: Bytes) -> Response<MockBody> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(body).boxed_unsync())
        .expect("response")
}

fn screen_text(term: &Terminal<TestBackend>) -> String {
    let buffer = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

/// A `kB` line of `/proc/self/status`, in MB.
fn status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{key}:")))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}
