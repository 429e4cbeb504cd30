//! The console on a Kubernetes namespace with 5,000 Deployments, served by a mock API server.
//!
//! "5,000 Deployments in a namespace" is read as shipdeck sees a namespace: 5,000 apps, each
//! running its current version in the version Deployment shipdeck made for it
//! (`<app>-1-0-0`, labelled `shipdeck.dev/version`), 3 ready pods each (15,000 pods) and the
//! app's active Service (5,000 Services). The apps' base Deployments (templates that shipdeck
//! never watches: its watches select `shipdeck.dev/version`) are not served. The objects look
//! like a real API server's: managed fields, owner references, defaulted specs, conditions.
//!
//! The mock API server is a `tower-test` service handed to `kube::Client::new`, playing the
//! list/watch protocol kube-runtime's watcher uses: paged lists (`limit`/`continue`) and watch
//! streams that stay open until their `timeoutSeconds`, as a real API server's do. Each object
//! is serialized once before the clock starts; a list page is those bytes joined.
//!
//! Measured, on one current-thread runtime (so that time can be paused for the idle part):
//!
//! 1. start to first full frame: from `KubeCluster::new` + `start` and `Engine::new` (a
//!    SQLite store in a temp dir) to `snapshot::load` (which waits for the watches' lists) and
//!    the Environments pane drawn by the console's `view::draw` into a 160×48 `TestBackend`,
//!    checked to show the workloads; target < 2 s;
//! 2. memory: VmHWM of `/proc/self/status`, reset (`/proc/self/clear_refs`) once the mock's
//!    objects are built, so it is the peak of the process while the console starts — which
//!    includes the mock's serialized objects (also shown on their own); target < 200 MB;
//! 3. API requests while idle: with tokio's clock paused, 60 s of the console idling as its
//!    event loop does (a snapshot load every second, a frame when it changed), counted by the
//!    mock; open watch streams are not requests, re-lists and re-watches are; target 0. Then
//!    10 more minutes of virtual time show what a real API server's watch timeouts cost.
//!
//! Run: `cargo bench --bench kube_console` (`SHIPDECK_BENCH_APPS=1000` for a smaller estate;
//! `BENCH_TRACE=1 RUST_LOG=debug` prints the client's tracing to stderr).
//! Prints Markdown tables.

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
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

type MockBody = UnsyncBoxBody<Bytes, Infallible>;
type Handle = tower_test::mock::Handle<Request<kube::client::Body>, Response<MockBody>>;

fn main() {
    if std::env::var("BENCH_TRACE").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let apps = std::env::var("SHIPDECK_BENCH_APPS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_APPS);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(run(apps));
}

async fn run(apps: usize) {
    let names: Vec<String> = (0..apps).map(|i| format!("svc-{i:05}")).collect();
    let estate = Arc::new(Estate::parse(&estate_toml(&names), "kube-bench.toml").expect("the bench estate parses"));
    let built = Instant::now();
    let objects = Objects::build(&names);
    eprintln!("built the mock's {} objects in {:?}", objects.count(), built.elapsed());
    let mock_mb = objects.bytes() as f64 / 1e6;
    let rss_before = status_mb("VmRSS");
    reset_peak();

    let work = tempfile::tempdir().expect("temp dir");
    let theme = Theme::embedded("dark").expect("embedded theme");
    let keymap = Keymap::embedded("default").and_then(Result::ok).expect("embedded keymap");
    let counts = Arc::new(Counts::default());

    // 1. Start to first full frame.
    let t0 = Instant::now();
    let (service, handle) = tower_test::mock::pair::<Request<kube::client::Body>, Response<MockBody>>();
    let server = tokio::spawn(serve(handle, Arc::new(objects), counts.clone()));
    let client = kube::Client::new(service, NS);
    let kube_apps = estate.targets().into_iter().map(|(t, s)| (t, s.kubernetes.resolve(&s.name))).collect();
    let cluster = KubeCluster::new(client, NS, kube_apps);
    cluster.start();
    cluster.start_live();
    let store = Arc::new(Store::open(&work.path().join("shipdeck.db")).expect("store"));
    let engine = Engine::new(estate.clone(), cluster.clone() as Arc<dyn Cluster>, Arc::new(NoMetrics), store, false);
    let created = t0.elapsed();
    // The watches' lists, on their own (the snapshot below waits for them the same way).
    let _ = engine.cluster().state(&Target::new("prod", &names[0])).await;
    let listed = t0.elapsed();
    let rss_listed = status_mb("VmRSS");
    let snap = snapshot::load(&engine, None, None, LOG_LIMIT).await;
    let loaded = t0.elapsed();
    let shown = snap.workloads.values().filter(|w| w.state.replicas(VERSION).ready == PODS_PER_APP as u32).count();
    let mut app = App::new(snap, theme, keymap, false);
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("test backend");
    term.draw(|f| view::draw(f, &app)).expect("draw");
    let first_frame = t0.elapsed();
    let screen = screen_text(&term);
    let startup_requests = counts.snapshot();
    let peak = status_mb("VmHWM");
    let rss_after = status_mb("VmRSS");
    let frame_ok = shown == apps
        && screen.contains(&names[0])
        && screen.contains(&format!("● {VERSION} {PODS_PER_APP}/{PODS_PER_APP}"));
    if !frame_ok {
        eprintln!("the first frame does not show the workloads ({shown} of {apps} ready):\n{screen}");
    }

    // 3. Idle, on a paused clock: the console's event loop reloads the snapshot every second
    // and draws when it changed; nothing changes in the namespace.
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

    println!("## Kubernetes console bench (`cargo bench --bench kube_console`)\n");
    println!("{}", common::machine_table());
    println!(
        "Namespace served by a mock API server (`tower-test`, kube-runtime's list/watch protocol): \
         {apps} version Deployments (one per app, {PODS_PER_APP} replicas), {} pods, {apps} Services; \
         {:.1} MB of serialized objects. Estate: {apps} apps in one Kubernetes environment. \
         Frame: {WIDTH}×{HEIGHT} `TestBackend`, Environments pane. One current-thread tokio runtime.\n",
        apps * PODS_PER_APP,
        mock_mb,
    );
    println!("| measure | value | target | result |\n|---|---|---|---|");
    let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "| start → first full frame | {} (cluster + engine {}, watches listed {}, snapshot {}, frame {}) | < 2 s | {} |",
        secs(first_frame),
        secs(created),
        secs(listed - created),
        secs(loaded - listed),
        secs(first_frame - loaded),
        pass(first_frame < FIRST_FRAME_TARGET && frame_ok)
    );
    println!(
        "| peak memory (VmHWM while starting) | {peak:.1} MB (RSS before start {rss_before:.1} MB, of which the mock's \
         objects ≈ {mock_mb:.1} MB; RSS once the watches listed {rss_listed:.1} MB, after the first frame {rss_after:.1} MB) \
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
    println!("\nStart-up requests: {}.", startup_requests.describe());
    println!("First frame shows the workloads: {}.", if frame_ok { "yes" } else { "NO" });
    let all = first_frame < FIRST_FRAME_TARGET && frame_ok && peak < MEMORY_TARGET_MB && idle.total() == 0;
    println!("\nOverall: {}", pass(all));
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

    fn count(&self) -> usize {
        self.deployments.len() + self.pods.len() + self.services.len()
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
}

impl Counts {
    fn snapshot(&self) -> Seen {
        Seen {
            lists: self.lists.load(Ordering::Relaxed),
            watches: self.watches.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
        }
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

static NO_REPLICA_SETS: Vec<Bytes> = Vec::new();

/// The API server: lists in pages, watches held open until their `timeoutSeconds`.
async fn serve(mut handle: Handle, objects: Arc<Objects>, counts: Arc<Counts>) {
    const LIST_RV: &str = "900000";
    // The live watches' resources: the namespace has no Leases, no base carrying a rollout, no Events.
    let none: Vec<Bytes> = Vec::new();
    while let Some((request, respond)) = handle.next_request().await {
        let path = request.uri().path().to_string();
        let query: BTreeMap<String, String> = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.replace("%2F", "/")))
            .collect();
        let resource = path.rsplit('/').next().unwrap_or_default();
        let bases = query.get("labelSelector").is_some_and(|s| s.contains("shipdeck.dev/rollout-state"));
        let (items, kind, api_version) = match resource {
            "deployments" if bases => (&none, "PartialObjectMetadataList", "meta.k8s.io/v1"),
            "leases" => (&none, "LeaseList", "coordination.k8s.io/v1"),
            "events" => (&none, "EventList", "events.k8s.io/v1"),
            "deployments" => (&objects.deployments, "DeploymentList", "apps/v1"),
            "pods" => (&objects.pods, "PodList", "v1"),
            "services" => (&objects.services, "ServiceList", "v1"),
            // Only bases shipdeck rolled natively have labelled ReplicaSets; this estate has none.
            "replicasets" => (&NO_REPLICA_SETS, "ReplicaSetList", "apps/v1"),
            _ => {
                counts.other.fetch_add(1, Ordering::Relaxed);
                respond.send_response(json_response(404, &status_404(&path)));
                continue;
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
            let response = Response::builder().status(200).body(body).expect("response");
            respond.send_response(response);
            continue;
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
        respond.send_response(bytes_response(200, Bytes::from(body)));
    }
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

/// Start VmHWM again from the current resident set (`clear_refs` 5, Linux 4.0+).
fn reset_peak() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak resident set ({e}); VmHWM includes building the mock's objects");
    }
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}
