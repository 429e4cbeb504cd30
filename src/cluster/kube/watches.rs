//! The namespace's state, kept by kube-runtime reflectors (list once, then watch; a `410 Gone`
//! makes the watcher list again) — never by polling. Every change recomputes the workloads'
//! states and wakes their `watch()` receivers when something they show changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};

use ::kube::Api;
use ::kube::api::{ApiResource, DynamicObject};
use ::kube::runtime::reflector::{self, Store, store::Writer};
use ::kube::runtime::{WatchStreamExt, watcher};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;

use super::KubeCluster;
use super::objects::VERSION_LABEL;
use super::slim::{DeploymentView, PodView, slim};
use super::state::Snapshot;

/// Readers of what the watches hold.
#[derive(Clone)]
pub struct Stores {
    pub deployments: Store<DeploymentView>,
    pub pods: Store<PodView>,
    pub services: Store<Service>,
    pub routes: Store<DynamicObject>,
    pub replica_sets: Store<ReplicaSet>,
}

/// The writing ends, handed to the watch tasks when they start (or fed by tests).
pub struct Writers {
    pub deployments: Writer<DeploymentView>,
    pub pods: Writer<PodView>,
    pub services: Writer<Service>,
    pub routes: Writer<DynamicObject>,
    pub replica_sets: Writer<ReplicaSet>,
}

pub fn stores(routes: &ApiResource) -> (Stores, Writers) {
    let (deployments, wd) = reflector::store();
    let (pods, wp) = reflector::store();
    let (services, ws) = reflector::store();
    let (replica_sets, wrs) = reflector::store();
    let wr = Writer::new(routes.clone());
    let routes = wr.as_reader();
    (
        Stores { deployments, pods, services, routes, replica_sets },
        Writers { deployments: wd, pods: wp, services: ws, routes: wr, replica_sets: wrs },
    )
}

impl Stores {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            deployments: self.deployments.state(),
            pods: self.pods.state(),
            services: self.services.state(),
            routes: self.routes.state(),
            replica_sets: self.replica_sets.state(),
        }
    }
}

/// Which watches have listed once; `listed` turns true when all that run have. (A store's own
/// `wait_until_ready` wakes only one waiter at a time: kube-runtime's `DelayedInit` keeps one
/// waker, so a second task waiting on it left the first asleep until its timeout.)
pub struct Listed {
    done: Mutex<BTreeSet<&'static str>>,
    pub listed: tokio::sync::watch::Sender<bool>,
}

impl Default for Listed {
    fn default() -> Self {
        Self { done: Mutex::default(), listed: tokio::sync::watch::channel(false).0 }
    }
}

impl Listed {
    pub fn mark(&self, resource: &'static str, with_routes: bool) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.insert(resource);
        let all = ["deployments", "pods", "services", "replicasets"].iter().all(|r| done.contains(r))
            && (!with_routes || done.contains("httproutes"));
        if all {
            self.listed.send_if_modified(|l| !std::mem::replace(l, true));
        }
    }

    /// Until every watch that runs has listed once.
    pub async fn wait(&self) {
        let mut rx = self.listed.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }
}

/// The last error each watch met, by resource, cleared when it recovers; `true` when the API
/// server refused it (401/403), which no retry mends.
#[derive(Default)]
pub struct WatchErrors(Mutex<BTreeMap<&'static str, (String, bool)>>);

impl WatchErrors {
    fn set(&self, resource: &'static str, error: Option<(String, bool)>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match error {
            Some(e) => all.insert(resource, e),
            None => all.remove(resource),
        };
    }

    pub fn summary(&self) -> Option<String> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (!all.is_empty()).then(|| all.values().map(|(m, _)| m.clone()).collect::<Vec<_>>().join("; "))
    }

    /// The watches the API server refuses: what they keep is stale until the Role is fixed.
    pub fn refused(&self) -> Option<String> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let refused: Vec<String> = all.values().filter(|(_, r)| *r).map(|(m, _)| m.clone()).collect();
        (!refused.is_empty()).then(|| refused.join("; "))
    }
}

impl KubeCluster {
    /// Start the watches (once) and the task that turns their changes into workload states.
    pub fn start(self: &Arc<Self>) {
        let Some(writers) = self.writers.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let ns = self.namespace.as_str();
        let labelled = watcher::Config::default().labels(VERSION_LABEL);
        let me = Arc::downgrade(self);
        // Version Deployments and pods are kept as views: only what the state and the probe
        // read is decoded at all (see `slim`).
        let mut tasks = vec![
            spawn_watch(
                Api::namespaced(self.client.clone(), ns),
                labelled.clone(),
                writers.deployments,
                &me,
                "deployments",
                keep,
            ),
            spawn_watch(Api::namespaced(self.client.clone(), ns), labelled, writers.pods, &me, "pods", keep),
            spawn_watch(
                Api::namespaced(self.client.clone(), ns),
                watcher::Config::default(),
                writers.services,
                &me,
                "services",
                keep,
            ),
            // Only the ReplicaSets of base Deployments shipdeck rolled natively carry the label.
            spawn_watch(
                Api::namespaced(self.client.clone(), ns),
                watcher::Config::default().labels(super::native::NATIVE_LABEL),
                writers.replica_sets,
                &me,
                "replicasets",
                trim_replica_set,
            ),
        ];
        if self.uses_routes() {
            let api = Api::namespaced_with(self.client.clone(), ns, &self.route_resource);
            tasks.push(spawn_watch(api, watcher::Config::default(), writers.routes, &me, "httproutes", keep));
        }
        let changed = self.changed.clone();
        let Some(cluster) = me.upgrade() else { return };
        let mut listed = cluster.listed.listed.subscribe();
        drop(cluster);
        tasks.push(tokio::spawn(async move {
            // Nothing to show before every watch has listed once: states computed from half a
            // list would flicker through the receivers (and cost a pass over the stores each).
            if listed.wait_for(|l| *l).await.is_err() {
                return;
            }
            loop {
                changed.notified().await;
                let Some(cluster) = me.upgrade() else { break };
                cluster.refresh();
            }
        }));
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).extend(tasks);
    }

    /// Recompute every workload from the stores; receivers wake only on a real change.
    pub(super) fn refresh(&self) {
        let index = self.index();
        for (t, objects) in &self.apps {
            let Some(tx) = self.senders.get(t) else { continue };
            let next = super::state::compute(objects, &index);
            tx.send_if_modified(|cur| {
                let changed = *cur != next;
                if changed {
                    *cur = next;
                }
                changed
            });
        }
    }

    /// Feed the stores by hand, as the watches would (tests of the state and the probe).
    #[cfg(test)]
    pub(super) fn feed(&self, f: impl FnOnce(&mut Writers)) {
        if let Some(w) = self.writers.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            f(w);
        }
        for resource in ["deployments", "pods", "services", "httproutes", "replicasets"] {
            self.listed.mark(resource, self.uses_routes());
        }
        self.stores_changed();
        self.refresh();
    }
}

/// Keeps what the state reads of a ReplicaSet: its labels (its template's), controller,
/// revision, size and status. Undo reads the templates from the API, never from the store.
fn trim_replica_set(rs: &mut ReplicaSet) {
    if let Some(a) = rs.metadata.annotations.as_mut() {
        a.retain(|k, _| k == super::native::REVISION_ANNOTATION);
    }
    if let Some(spec) = rs.spec.as_mut() {
        spec.template = None;
    }
}

fn keep<K>(_: &mut K) {}

fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    cluster: &Weak<KubeCluster>,
    resource: &'static str,
    trim: fn(&mut K),
) -> tokio::task::JoinHandle<()>
where
    K: ::kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let objects = watcher(api, config).modify(move |o: &mut K| {
            // Managed fields (and kubectl's last-applied configuration) are most of an
            // object's size and nothing here reads them.
            slim(o.meta_mut());
            trim(o);
        });
        let stream = reflector::reflector(writer, objects).default_backoff();
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            let Some(c) = cluster.upgrade() else { break };
            match item {
                Ok(event) => {
                    if matches!(event, watcher::Event::InitDone) {
                        c.listed.mark(resource, c.uses_routes());
                    }
                    c.stores_changed();
                    c.watch_errors.set(resource, None);
                    c.changed.notify_one();
                }
                Err(e) => {
                    let (message, refused) = watch_error(&c, resource, &e);
                    tracing::warn!("{message}");
                    c.watch_errors.set(resource, Some((message, refused)));
                }
            }
        }
    })
}

/// The error in plain words, and whether the API server refused the request (401/403).
fn watch_error(c: &KubeCluster, resource: &'static str, e: &watcher::Error) -> (String, bool) {
    let f = super::errors::watch_failure(&format!("namespace {}", c.namespace), &c.namespace, resource, "", e);
    let refused = f.refused();
    (f.message, refused)
}
