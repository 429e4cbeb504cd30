//! The flag store on OpenFeature's `FeatureFlag` resource (`core.openfeature.dev/v1beta1`), the
//! one the OpenFeature operator hands to flagd: the flags live under `spec.flagSpec` (`flags`,
//! `$evaluators`, `metadata`), which is a flagd document without its `$schema`.
//!
//! Read with a GET and written whole with a PUT (replace) of the object as read, so the write
//! carries the `resourceVersion` read and the API server refuses it (409) when someone changed
//! the resource meanwhile — the same compare-and-swap the file store does with the file's text.
//! A 409 is the store's [`FlagError::Conflict`]; nothing is retried, nothing else is written.
//! Read and written as a kube `DynamicObject`: no operator crate is needed.
//!
//! What the console shows comes from a watch of that one resource (field selector
//! `metadata.name=NAME`, started by the first [`FlagStore::current`]): another writer's change
//! shows as soon as the API server sends it, a `410 Gone` lists again (kube-runtime's watcher
//! does), and a deleted resource is said to be deleted. Until the watch has listed, or while it
//! fails, `current` reads with a GET as before (answering from the last read for 5 s). Loads
//! and saves always ask the API server: the compare-and-swap is on what they read.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::api::{Api, ApiResource, DynamicObject, PostParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::runtime::{WatchStreamExt, watcher};
use ::kube::{Client, Config};
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{FlagError, FlagSet, FlagStore, Revision};
use crate::cluster::ClusterError;
use crate::cluster::kube::REQUEST_TIMEOUT;
use crate::cluster::kube::errors::{Action, describe, status};
use crate::cluster::kube::objects::FIELD_MANAGER;

/// The `$schema` of a flagd document; the resource has no place for it, so it is added on load.
pub const FLAGD_SCHEMA: &str = "https://flagd.dev/schema/v0/flags.json";

/// How long the console's refresh may show the flags read last instead of asking again.
pub const SHOW_CACHED_FOR: Duration = Duration::from_secs(5);

/// The keys a flagd document may have at its top that `spec.flagSpec` keeps.
const FLAG_SPEC_KEYS: [&str; 3] = ["flags", "$evaluators", "metadata"];

/// OpenFeature's FeatureFlag, read and written as a dynamic object.
pub fn feature_flag_resource() -> ApiResource {
    ApiResource {
        group: "core.openfeature.dev".into(),
        version: "v1beta1".into(),
        api_version: "core.openfeature.dev/v1beta1".into(),
        kind: "FeatureFlag".into(),
        plural: "featureflags".into(),
    }
}

/// Which FeatureFlag: `--flags k8s:CONTEXT/NAMESPACE/NAME`. CONTEXT is a kubeconfig context
/// (it may itself hold `/`, as EKS's ARNs do; empty means the kubeconfig's current context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureFlagRef {
    pub context: Option<String>,
    pub namespace: String,
    pub name: String,
}

impl FeatureFlagRef {
    pub const PREFIX: &'static str = "k8s:";

    /// `None` when `spec` does not start with `k8s:` (it names a file); else the reference, or
    /// what is wrong with it.
    pub fn parse(spec: &str) -> Option<Result<Self, String>> {
        let rest = spec.strip_prefix(Self::PREFIX)?;
        let usage = "--flags k8s:CONTEXT/NAMESPACE/NAME names a FeatureFlag resource (an empty CONTEXT is the \
                     kubeconfig's current one, e.g. k8s:/shop/flags)";
        let mut parts = rest.rsplitn(3, '/');
        let (Some(name), Some(namespace), Some(context)) = (parts.next(), parts.next(), parts.next()) else {
            return Some(Err(format!("`{spec}`: {usage}")));
        };
        if let Err(why) = check_name(namespace, 63, false) {
            return Some(Err(format!("`{spec}`: namespace `{namespace}` {why}; {usage}")));
        }
        if let Err(why) = check_name(name, 253, true) {
            return Some(Err(format!("`{spec}`: name `{name}` {why}; {usage}")));
        }
        let context = (!context.is_empty()).then(|| context.to_string());
        Some(Ok(Self { context, namespace: namespace.to_string(), name: name.to_string() }))
    }
}

impl fmt::Display for FeatureFlagRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}/{}/{}", Self::PREFIX, self.context.as_deref().unwrap_or(""), self.namespace, self.name)
    }
}

/// A Kubernetes name: a DNS label (namespaces) or subdomain (object names).
fn check_name(s: &str, max: usize, dots: bool) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > max || !s.chars().all(ok) || !edge(s.chars().next()) || !edge(s.chars().last()) {
        let allowed = if dots { "lowercase letters, digits, - and ." } else { "lowercase letters, digits and -" };
        return Err(format!("is not a Kubernetes name (at most {max} {allowed}, starting and ending alphanumeric)"));
    }
    Ok(())
}

/// The flagd document a FeatureFlag's `spec.flagSpec` stands for.
pub fn document_of(flag_spec: &Map<String, Value>) -> Value {
    let mut doc = Map::new();
    doc.insert("$schema".into(), json!(FLAGD_SCHEMA));
    doc.extend(flag_spec.iter().map(|(k, v)| (k.clone(), v.clone())));
    Value::Object(doc)
}

/// The `spec.flagSpec` for a flagd document: the document without `$schema`. A top-level key
/// the resource has no place for is refused (the API server would drop it silently).
pub fn flag_spec_of(doc: &Value) -> Result<Map<String, Value>, String> {
    let Some(doc) = doc.as_object() else { return Err("a flagd document is a JSON object".into()) };
    let mut spec = Map::new();
    for (k, v) in doc {
        match k.as_str() {
            "$schema" => {}
            k if FLAG_SPEC_KEYS.contains(&k) => {
                spec.insert(k.to_string(), v.clone());
            }
            other => {
                return Err(format!(
                    "top-level `{other}` has no place in a FeatureFlag's spec.flagSpec (only {})",
                    FLAG_SPEC_KEYS.join(", ")
                ));
            }
        }
    }
    Ok(spec)
}

/// A parse error's JSON path, said as where it is in the resource.
fn under_flag_spec(message: &str) -> String {
    if message.starts_with("flags") || message.starts_with("$evaluators") {
        format!("spec.flagSpec.{message}")
    } else if message.starts_with("needs a top-level `flags` object") {
        "spec.flagSpec needs a `flags` object".to_string()
    } else {
        format!("spec.flagSpec: {message}")
    }
}

/// What the watch of the resource saw last.
#[derive(Debug, Clone, Default, PartialEq)]
enum Watched {
    /// Not listed yet, or the watch fails (then `current` reads with a GET).
    #[default]
    Unknown,
    /// The resource as it is now: its flags, or why flagd could not use them, and the
    /// `resourceVersion` they were read at.
    Present { flags: Result<FlagSet, String>, version: Option<String> },
    /// The list found no such resource, or the watch saw it deleted.
    Deleted,
}

impl Watched {
    fn present(resource: &str, object: &DynamicObject) -> Self {
        Watched::Present { flags: flags_of(resource, object), version: object.metadata.resource_version.clone() }
    }

    /// Whether the console would show `other` differently (a new `resourceVersion` alone is not news).
    fn shows_differently(&self, other: &Watched) -> bool {
        match (self, other) {
            (Watched::Present { flags: a, .. }, Watched::Present { flags: b, .. }) => a != b,
            (a, b) => std::mem::discriminant(a) != std::mem::discriminant(b),
        }
    }
}

/// Whether `resourceVersion` `a` is older than `b`. The API server's versions are opaque strings,
/// but every server in use writes etcd's revision, a number; versions that are not numbers are
/// not compared (`None`).
fn older(a: &str, b: &str) -> Option<bool> {
    Some(a.parse::<u64>().ok()? < b.parse::<u64>().ok()?)
}

/// The flags of one FeatureFlag resource.
pub struct KubeFlagStore {
    api: Api<DynamicObject>,
    namespace: String,
    name: String,
    context: Option<String>,
    timeout: Duration,
    shown: Mutex<Option<(FlagSet, Instant)>>,
    watched: Arc<Mutex<Watched>>,
    watch_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Bumped whenever the watch sees the resource change.
    news: tokio::sync::watch::Sender<u64>,
}

impl Drop for KubeFlagStore {
    fn drop(&mut self) {
        if let Some(t) = self.watch_task.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}

impl KubeFlagStore {
    /// The FeatureFlag `name` in `namespace`, through `client`; nothing is requested yet.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced_with(client, namespace, &feature_flag_resource()),
            namespace: namespace.to_string(),
            name: name.to_string(),
            context: None,
            timeout: REQUEST_TIMEOUT,
            shown: Mutex::new(None),
            watched: Arc::default(),
            watch_task: Mutex::new(None),
            news: tokio::sync::watch::channel(0).0,
        }
    }

    /// Start watching the resource (once): list it by name, then watch it, again after a
    /// `410 Gone`; failures are tried again with kube-runtime's backoff.
    pub fn start_watch(&self) {
        let mut task = self.watch_task.lock().unwrap_or_else(|e| e.into_inner());
        if task.is_some() {
            return;
        }
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let stream = watcher(self.api.clone(), config).default_backoff();
        let (watched, news) = (self.watched.clone(), self.news.clone());
        let (resource, name, namespace) = (self.resource(), self.name.clone(), self.namespace.clone());
        *task = Some(tokio::spawn(async move {
            futures::pin_mut!(stream);
            // The objects of a list in progress (a re-list replaces what was seen).
            let mut listing: Option<Watched> = None;
            while let Some(item) = stream.next().await {
                let next = match item {
                    Ok(watcher::Event::Init) => {
                        listing = Some(Watched::Deleted);
                        continue;
                    }
                    Ok(watcher::Event::InitApply(o)) => {
                        listing = Some(Watched::present(&resource, &o));
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => listing.take().unwrap_or(Watched::Deleted),
                    Ok(watcher::Event::Apply(o)) => Watched::present(&resource, &o),
                    Ok(watcher::Event::Delete(_)) => Watched::Deleted,
                    Err(e) => {
                        let failure = crate::cluster::kube::errors::watch_failure(
                            &resource,
                            &namespace,
                            "featureflags",
                            &name,
                            &e,
                        );
                        let said = &failure.message;
                        // News only when this is news: a watch retried with backoff fails again
                        // and again while the console already reads with GET.
                        let was = std::mem::take(&mut *watched.lock().unwrap_or_else(|e| e.into_inner()));
                        if was != Watched::Unknown {
                            news.send_modify(|g| *g = g.wrapping_add(1));
                        }
                        // A Role without list/watch on featureflags: the console reads with GET, as before.
                        if failure.refused() {
                            tracing::warn!("{resource}: not watched, read every 5 s instead: {said}");
                            return;
                        }
                        tracing::warn!("{resource}: the watch failed, reading with GET until it recovers: {said}");
                        continue;
                    }
                };
                let changed = {
                    let mut w = watched.lock().unwrap_or_else(|e| e.into_inner());
                    let changed = w.shows_differently(&next);
                    *w = next;
                    changed
                };
                if changed {
                    news.send_modify(|g| *g = g.wrapping_add(1));
                }
            }
        }));
    }

    /// The store `r` names, with the credentials of its kubeconfig context. `kubeconfig`: a
    /// given file's content; `None` reads `$KUBECONFIG` or `~/.kube/config` as kubectl does.
    /// Nothing is requested yet: [`FlagStore::load`] says whether the API server answers.
    pub async fn connect(r: &FeatureFlagRef, kubeconfig: Option<Kubeconfig>) -> Result<Self, FlagError> {
        let context = match &r.context {
            Some(c) => format!("context {c}"),
            None => "the current context".to_string(),
        };
        let resource = format!("FeatureFlag {}/{}", r.namespace, r.name);
        let unusable = |message: String| FlagError::Cluster { resource: resource.clone(), message };
        let options = KubeConfigOptions { context: r.context.clone(), ..Default::default() };
        let config = match kubeconfig {
            Some(k) => Config::from_custom_kubeconfig(k, &options).await,
            None => Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| {
            unusable(format!(
                "{context} of the kubeconfig cannot be used: {e} — set KUBECONFIG, or name a context `kubectl \
                 config get-contexts` lists"
            ))
        })?;
        let url = config.cluster_url.to_string();
        let client = Client::try_from(config)
            .map_err(|e| unusable(format!("cannot make a client for {context} ({url}): {e}")))?;
        let mut store = Self::new(client, &r.namespace, &r.name);
        store.context = r.context.clone();
        Ok(store)
    }

    /// "FeatureFlag shop/flags".
    fn resource(&self) -> String {
        format!("FeatureFlag {}/{}", self.namespace, self.name)
    }

    fn cluster_error(&self, message: String) -> FlagError {
        FlagError::Cluster { resource: self.resource(), message }
    }

    /// A failed request in plain words: a missing resource says how to make one.
    fn failure(&self, verb: &'static str, e: &::kube::Error) -> FlagError {
        if let ::kube::Error::Api(s) = e
            && s.code == 404
        {
            let the_object = s.details.as_ref().is_some_and(|d| d.name == self.name)
                || s.message.contains(&format!("\"{}\"", self.name));
            return self.cluster_error(if the_object {
                format!(
                    "not found in namespace {} — create it (`kubectl apply -f` a FeatureFlag of apiVersion \
                     core.openfeature.dev/v1beta1 named {} with the flags under spec.flagSpec.flags), or name \
                     another with --flags k8s:CONTEXT/NAMESPACE/NAME",
                    self.namespace, self.name
                )
            } else {
                "the API server has no FeatureFlag resource (core.openfeature.dev/v1beta1): install the OpenFeature \
                 operator, or its CRDs"
                    .to_string()
            });
        }
        let action = Action::new(verb, "featureflags", &self.name);
        match describe(&self.resource(), &self.namespace, action, e) {
            ClusterError::Kubernetes { message, .. } | ClusterError::Unreachable { message, .. } => {
                self.cluster_error(message)
            }
            other => self.cluster_error(other.to_string()),
        }
    }

    async fn get(&self) -> Result<DynamicObject, FlagError> {
        match tokio::time::timeout(self.timeout, self.api.get(&self.name)).await {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => Err(self.failure("get", &e)),
            Err(_) => Err(self.cluster_error(format!(
                "the Kubernetes API server did not answer get featureflags {} within {}s",
                self.name,
                self.timeout.as_secs()
            ))),
        }
    }

    /// The flags of `object`, checked as any flagd file is; a problem names its path in the resource.
    fn set_of(&self, object: &DynamicObject) -> Result<FlagSet, FlagError> {
        set_of(&self.resource(), object)
    }

    /// The object as read, which a save writes back with its new flags (so its labels,
    /// annotations and `resourceVersion` go with it).
    fn revision_of(object: &DynamicObject) -> Result<Revision, FlagError> {
        let mut object = object.clone();
        object.metadata.managed_fields = None; // left as they are by an update that omits them
        serde_json::to_string(&object)
            .map(Revision)
            .map_err(|e| FlagError::Refused(format!("cannot keep the FeatureFlag as read: {e}")))
    }

    fn remember(&self, set: &FlagSet) {
        *self.shown.lock().unwrap_or_else(|e| e.into_inner()) = Some((set.clone(), Instant::now()));
    }
}

#[async_trait]
impl FlagStore for KubeFlagStore {
    fn describe(&self) -> String {
        match &self.context {
            Some(c) => format!("{} (context {c})", self.resource()),
            None => self.resource(),
        }
    }

    async fn load(&self) -> Result<(FlagSet, Revision), FlagError> {
        let object = self.get().await?;
        let set = self.set_of(&object)?;
        self.remember(&set);
        Ok((set, Self::revision_of(&object)?))
    }

    async fn save(&self, set: &FlagSet, read: &Revision) -> Result<Revision, FlagError> {
        let refused = |message: String| FlagError::Refused(format!("{}: {message}", self.resource()));
        let mut object: DynamicObject = serde_json::from_str(&read.0)
            .map_err(|_| refused("that revision was not read from this FeatureFlag; reload and try again".into()))?;
        if object.metadata.name.as_deref() != Some(self.name.as_str()) {
            return Err(refused("that revision was not read from this FeatureFlag; reload and try again".into()));
        }
        let flag_spec = flag_spec_of(&set.doc).map_err(refused)?;
        // Never write what would not load again: every later read, and flagd, would refuse it.
        let written = DynamicObject { data: json!({"spec": {"flagSpec": flag_spec.clone()}}), ..object.clone() };
        self.set_of(&written)?;
        match object.data.as_object_mut() {
            Some(data) => match data.entry("spec").or_insert_with(|| json!({})) {
                Value::Object(spec) => {
                    spec.insert("flagSpec".into(), Value::Object(flag_spec));
                }
                _ => return Err(refused("its spec is not an object; fix the resource".into())),
            },
            None => object.data = json!({"spec": {"flagSpec": flag_spec}}),
        }
        let pp = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match tokio::time::timeout(self.timeout, self.api.replace(&self.name, &pp, &object)).await {
            Ok(Ok(saved)) => {
                self.remember(set);
                // Shown at once, unless the watch already brought a later writer's change (its
                // version is newer than the one saved): the watch's own event for this write
                // follows in any case.
                let saved_at = saved.metadata.resource_version.clone();
                let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
                if let Watched::Present { version, .. } = &*w {
                    let ours_is_newer = match (version, &saved_at) {
                        (Some(shown), Some(saved)) => older(shown, saved).unwrap_or(false),
                        _ => false,
                    };
                    if ours_is_newer {
                        *w = Watched::Present { flags: Ok(set.clone()), version: saved_at };
                    }
                }
                drop(w);
                Self::revision_of(&saved)
            }
            Ok(Err(e)) if status(&e) == Some(409) => {
                Err(FlagError::Conflict { what: format!("{} changed in the cluster", self.resource()) })
            }
            Ok(Err(e)) => Err(self.failure("update", &e)),
            Err(_) => Err(self.cluster_error(format!(
                "the Kubernetes API server did not answer update featureflags {} within {}s; the change may or \
                 may not be saved — reload to see",
                self.name,
                self.timeout.as_secs()
            ))),
        }
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.news.subscribe())
    }

    async fn current(&self) -> Result<FlagSet, FlagError> {
        self.start_watch();
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match watched {
            Watched::Present { flags: Ok(set), .. } => return Ok(set),
            Watched::Present { flags: Err(message), .. } => return Err(FlagError::Refused(message)),
            Watched::Deleted => {
                return Err(self.cluster_error(format!(
                    "deleted from namespace {} (the watch saw it go) — create it again (`kubectl apply -f` a \
                     FeatureFlag named {} with the flags under spec.flagSpec.flags); until then the flags cannot \
                     be shown or changed",
                    self.namespace, self.name
                )));
            }
            Watched::Unknown => {}
        }
        let shown = self.shown.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match shown {
            Some((set, at)) if at.elapsed() < SHOW_CACHED_FOR => Ok(set),
            _ => Ok(self.load().await?.0),
        }
    }
}

/// The flags of `object`, checked as any flagd file is; a problem names its path in the resource.
fn set_of(resource: &str, object: &DynamicObject) -> Result<FlagSet, FlagError> {
    let bad = |message: String| FlagError::BadResource { resource: resource.to_string(), message };
    let spec = match object.data.pointer("/spec/flagSpec") {
        Some(Value::Object(spec)) => spec,
        None | Some(Value::Null) => {
            return Err(bad("has no spec.flagSpec; the flags go under spec.flagSpec.flags".into()));
        }
        Some(_) => return Err(bad("spec.flagSpec must be an object".into())),
    };
    let doc = document_of(spec);
    FlagSet::parse(&doc.to_string(), resource).map_err(|e| match e {
        FlagError::Invalid { message, .. } => bad(under_flag_spec(&message)),
        other => other,
    })
}

/// What the watch shows of `object`: its flags, or in words why flagd could not use them.
fn flags_of(resource: &str, object: &DynamicObject) -> Result<FlagSet, String> {
    set_of(resource, object).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
