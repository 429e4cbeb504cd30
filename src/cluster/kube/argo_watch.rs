//! The console's view of a namespace's Argo Rollouts, kept by kube-runtime watches (list once,
//! then watch; a `410 Gone` lists again) — never by polling:
//!
//! - every `argoproj.io/v1alpha1` Rollout of the namespace;
//! - once those have listed, the ReplicaSets labelled `rollouts-pod-template-hash` (only Argo's),
//!   for revisions, images and the actual weight. Each is trimmed to what `argo_info` reads.
//!
//! A 404 on the first list means the cluster has no Rollout resource: Argo Rollouts is not
//! installed, and the watch stops quietly. A 403 stops it too, saying once what is missing.
//! Other failures are tried again with kube-runtime's backoff while the last view stays shown
//! with the failure beside it. Every change recomputes the rollouts as `argo_info` derives them
//! and wakes whoever subscribed, only when something shown changed. Each object's JSON (which
//! `argo_info` reads) is kept while its `resourceVersion` stays, so an event converts only the
//! object that changed, not every Rollout and ReplicaSet again.

use std::collections::HashMap;
use std::sync::Arc;

use ::kube::Client;
use ::kube::api::{Api, DynamicObject};
use ::kube::runtime::reflector::{self, Store, store::Writer};
use ::kube::runtime::{WatchStreamExt, watcher};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_json::Value;
use tokio::sync::watch;

use super::argo::{ArgoRollouts, rollout_resource};
use super::argo_info::{ArgoRollout, POD_TEMPLATE_HASH_LABEL, describe_rollout_among};

/// Where the watch of one namespace's Rollouts is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ArgoStatus {
    /// Listing for the first time.
    #[default]
    Listing,
    /// The cluster has no Rollout resource (the list answered 404).
    NotInstalled,
    /// Listed; changes arrive as they happen.
    Watching,
    /// The watch stopped for good (a 403: the Role lacks `list`/`watch` on rollouts or replicasets).
    Stopped(String),
}

/// What the console shows of one Kubernetes environment's Argo Rollouts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgoView {
    pub namespace: String,
    pub status: ArgoStatus,
    /// By name, as `kubectl argo rollouts get rollout` derives them.
    pub rollouts: Vec<ArgoRollout>,
    /// The last failure of a watch that is being tried again, cleared when it recovers.
    pub problem: Option<String>,
}

/// The watches of one namespace's Rollouts; they stop when this is dropped.
pub struct ArgoWatch {
    client: Client,
    namespace: String,
    env: String,
    view: watch::Receiver<ArgoView>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ArgoWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ArgoWatch {
    /// Start watching `namespace`'s Rollouts (env names the environment in messages);
    /// `news` is bumped whenever the view changes.
    pub fn start(client: Client, namespace: &str, env: &str, news: Option<watch::Sender<u64>>) -> Self {
        let initial = ArgoView { namespace: namespace.to_string(), ..Default::default() };
        let (tx, view) = watch::channel(initial);
        let task = tokio::spawn(run(client.clone(), namespace.to_string(), tx, news));
        Self { client, namespace: namespace.to_string(), env: env.to_string(), view, task }
    }

    /// What the watches show now.
    pub fn view(&self) -> ArgoView {
        self.view.borrow().clone()
    }

    /// Wakes on every change of [`ArgoWatch::view`].
    pub fn subscribe(&self) -> watch::Receiver<ArgoView> {
        self.view.clone()
    }

    /// The actions on this namespace's Rollouts: the ones `shipdeck argo …` uses.
    pub fn actions(&self) -> ArgoRollouts {
        ArgoRollouts::new(self.client.clone(), &self.namespace, &self.env)
    }
}

/// Keeps what `argo_info` reads of a ReplicaSet: labels, annotations (the revision), owner
/// references, its containers' images and its replica counts.
fn trim_replica_set(rs: &mut ReplicaSet) {
    rs.metadata.managed_fields = None;
    if let Some(spec) = rs.spec.as_mut()
        && let Some(template) = spec.template.as_mut()
        && let Some(pod) = template.spec.take()
    {
        let containers =
            pod.containers.into_iter().map(|c| Container { name: c.name, image: c.image, ..Default::default() });
        template.spec = Some(PodSpec { containers: containers.collect(), ..Default::default() });
    }
}

fn trim_rollout(ro: &mut DynamicObject) {
    ro.metadata.managed_fields = None;
}

type Events<K> = std::pin::Pin<Box<dyn Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send>>;

fn reflect<K>(api: Api<K>, config: watcher::Config, writer: Writer<K>, trim: fn(&mut K)) -> Events<K>
where
    K: ::kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let objects = watcher(api, config).modify(trim);
    Box::pin(reflector::reflector(writer, objects).default_backoff())
}

/// What a failed watch says, and whether it is over for good (404: no Argo; 403: not allowed).
enum Failure {
    NotInstalled,
    Fatal(String),
    Retried(String),
}

fn failure(namespace: &str, resource: &'static str, e: &watcher::Error) -> Failure {
    let f = super::errors::watch_failure(&format!("namespace {namespace}"), namespace, resource, "", e);
    match f.code {
        Some(404) if resource == "rollouts" => Failure::NotInstalled,
        _ if f.refused() => Failure::Fatal(f.message),
        _ => Failure::Retried(f.message),
    }
}

async fn next_or_pending<K>(s: &mut Option<Events<K>>) -> Option<Result<watcher::Event<K>, watcher::Error>> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The watches' loop: Rollouts first; the ReplicaSets once Rollouts listed.
async fn run(client: Client, namespace: String, tx: watch::Sender<ArgoView>, news: Option<watch::Sender<u64>>) {
    let resource = rollout_resource();
    let writer = Writer::<DynamicObject>::new(resource.clone());
    let rollouts: Store<DynamicObject> = writer.as_reader();
    let api = Api::namespaced_with(client.clone(), &namespace, &resource);
    let mut ro_events = reflect(api, watcher::Config::default(), writer, trim_rollout);
    let (replica_sets, rs_writer) = reflector::store::<ReplicaSet>();
    let mut rs_writer = Some(rs_writer);
    let mut rs_events: Option<Events<ReplicaSet>> = None;
    let (mut ro_listed, mut rs_listed) = (false, false);
    let (mut ro_problem, mut rs_problem): (Option<String>, Option<String>) = (None, None);
    let mut derived = Derived::default();
    let publish = |next: ArgoView| {
        let changed = tx.send_if_modified(|cur| {
            let changed = *cur != next;
            if changed {
                *cur = next;
            }
            changed
        });
        if changed && let Some(n) = &news {
            n.send_modify(|g| *g = g.wrapping_add(1));
        }
    };
    loop {
        let (resource, failed) = tokio::select! {
            item = ro_events.next() => match item {
                None => return,
                Some(Ok(event)) => {
                    ro_problem = None;
                    if matches!(event, watcher::Event::InitDone) {
                        ro_listed = true;
                        if let Some(w) = rs_writer.take() {
                            let api = Api::namespaced(client.clone(), &namespace);
                            let config = watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL);
                            rs_events = Some(reflect(api, config, w, trim_replica_set));
                        }
                    }
                    ("rollouts", None)
                }
                Some(Err(e)) => ("rollouts", Some(e)),
            },
            item = next_or_pending(&mut rs_events) => match item {
                None => {
                    rs_events = None;
                    ("replicasets", None)
                }
                Some(Ok(event)) => {
                    rs_problem = None;
                    if matches!(event, watcher::Event::InitDone) {
                        rs_listed = true;
                    }
                    ("replicasets", None)
                }
                Some(Err(e)) => ("replicasets", Some(e)),
            },
        };
        let mut view = tx.borrow().clone();
        if let Some(e) = failed {
            match failure(&namespace, resource, &e) {
                Failure::NotInstalled => {
                    tracing::debug!("namespace {namespace}: no argoproj.io/v1alpha1 Rollout resource");
                    publish(ArgoView { status: ArgoStatus::NotInstalled, rollouts: Vec::new(), problem: None, ..view });
                    return;
                }
                Failure::Fatal(message) => {
                    tracing::warn!("{message}");
                    publish(ArgoView { status: ArgoStatus::Stopped(message), problem: None, ..view });
                    return;
                }
                Failure::Retried(message) => {
                    tracing::warn!("{message}");
                    if resource == "rollouts" {
                        ro_problem = Some(message);
                    } else {
                        rs_problem = Some(message);
                    }
                }
            }
        }
        view.problem = match (&ro_problem, &rs_problem) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        if ro_listed && rs_listed {
            view.status = ArgoStatus::Watching;
            view.rollouts = derived.rollouts(&rollouts, &replica_sets);
        }
        publish(view);
    }
}

/// The JSON of each object a store holds, by uid (name when it has none), kept while its
/// `resourceVersion` stays the same.
#[derive(Default)]
struct JsonOf {
    by_key: HashMap<String, (Option<String>, Value)>,
}

impl JsonOf {
    /// Now `objects`: converted again only where new or changed; what is gone is dropped.
    fn refresh<K: ::kube::Resource + serde::Serialize>(&mut self, objects: &[Arc<K>]) {
        let mut next = HashMap::with_capacity(objects.len());
        for o in objects {
            let meta = o.meta();
            let Some(key) = meta.uid.clone().or_else(|| meta.name.clone()) else { continue };
            let version = meta.resource_version.clone();
            let json = match self.by_key.remove(&key) {
                Some((seen, json)) if version.is_some() && seen == version => json,
                _ => match serde_json::to_value(&**o) {
                    Ok(json) => json,
                    Err(e) => {
                        tracing::debug!("{key}: not shown, cannot be read as JSON: {e}");
                        continue;
                    }
                },
            };
            next.insert(key, (version, json));
        }
        self.by_key = next;
    }

    fn values(&self) -> impl Iterator<Item = &Value> {
        self.by_key.values().map(|(_, json)| json)
    }
}

/// The rollouts as the plugin derives them, from the stores' objects' JSON kept across events.
#[derive(Default)]
pub struct Derived {
    rollouts: JsonOf,
    replica_sets: JsonOf,
}

impl Derived {
    /// The rollouts as the plugin derives them from what the stores hold, by name.
    pub fn rollouts(&mut self, rollouts: &Store<DynamicObject>, replica_sets: &Store<ReplicaSet>) -> Vec<ArgoRollout> {
        self.rollouts.refresh(&rollouts.state());
        self.replica_sets.refresh(&replica_sets.state());
        let replica_sets: Vec<&Value> = self.replica_sets.values().collect();
        let mut all: Vec<ArgoRollout> =
            self.rollouts.values().map(|ro| describe_rollout_among(ro, &replica_sets)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// The Argo watches of the estate's Kubernetes environments, one per environment, replaced
/// when `:ctx`/`:ns` moves it.
#[derive(Default)]
pub struct ArgoWatches {
    by_env: std::sync::Mutex<std::collections::BTreeMap<String, Arc<ArgoWatch>>>,
    news: std::sync::OnceLock<watch::Sender<u64>>,
}

impl ArgoWatches {
    fn news(&self) -> &watch::Sender<u64> {
        self.news.get_or_init(|| watch::channel(0).0)
    }

    /// Watch `env`'s namespace through `client`, in place of what it watched before.
    pub fn watch(&self, env: &str, client: Client, namespace: &str) {
        let w = Arc::new(ArgoWatch::start(client, namespace, env, Some(self.news().clone())));
        self.by_env.lock().unwrap_or_else(|e| e.into_inner()).insert(env.to_string(), w);
        self.news().send_modify(|g| *g = g.wrapping_add(1));
    }

    /// The watch of `env`, if it has one (a Kubernetes environment that connected).
    pub fn get(&self, env: &str) -> Option<Arc<ArgoWatch>> {
        self.by_env.lock().unwrap_or_else(|e| e.into_inner()).get(env).cloned()
    }

    /// What each watched environment shows now.
    pub fn views(&self) -> std::collections::BTreeMap<String, ArgoView> {
        self.by_env.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(e, w)| (e.clone(), w.view())).collect()
    }

    /// Bumped whenever any environment's view changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.news().subscribe()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn rs(uid: &str, version: &str, replicas: i32) -> Arc<ReplicaSet> {
        Arc::new(ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("web-{uid}")),
                uid: Some(uid.into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }),
            status: None,
        })
    }

    fn replicas(json: &JsonOf) -> Vec<(String, i64)> {
        let mut all: Vec<(String, i64)> = json
            .values()
            .map(|v| {
                let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
                (name, v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(-1))
            })
            .collect();
        all.sort();
        all
    }

    /// An event converts only what changed: an object whose `resourceVersion` stayed keeps the
    /// JSON it had (the stores never hold a changed object under its old version).
    #[test]
    fn only_objects_whose_resource_version_moved_are_converted_again() {
        let mut json = JsonOf::default();
        json.refresh(&[rs("a", "1", 1), rs("b", "1", 1)]);
        assert_eq!(replicas(&json), [("web-a".into(), 1), ("web-b".into(), 1)]);
        // Same versions, other content: kept as converted (proof that nothing was converted).
        json.refresh(&[rs("a", "1", 5), rs("b", "1", 5)]);
        assert_eq!(replicas(&json), [("web-a".into(), 1), ("web-b".into(), 1)]);
        // b moved on: only b is converted again.
        json.refresh(&[rs("a", "1", 5), rs("b", "2", 3)]);
        assert_eq!(replicas(&json), [("web-a".into(), 1), ("web-b".into(), 3)]);
        // a is gone.
        json.refresh(&[rs("b", "2", 3)]);
        assert_eq!(replicas(&json), [("web-b".into(), 3)]);
    }
}
