//! The `Cluster` primitives on plain Kubernetes, through kube-rs, for one environment (one
//! namespace): native rollouts of the app's base Deployment and `rollout undo` (`native.rs`),
//! one Deployment per version, the active/preview Services' selectors, replica-ratio
//! canaries without a mesh, Gateway API HTTPRoute weights and header matches with one. State
//! comes from reflectors (see `watch.rs`); the names and objects from `objects.rs`.
//!
//! Writes are JSON merge patches (`application/merge-patch+json`) and creates, all with the
//! field manager `shipdeck`. Each request has a deadline; 429 and 5xx answers and timeouts are
//! tried again (three attempts, 200 ms then 400 ms apart: every write here sets absolute
//! values, so a repeat is harmless); a 409 on a create or on an HTTPRoute write is resolved by
//! reading again once; everything else is said in plain words (see `errors.rs`).

pub mod argo;
pub mod argo_info;
pub mod argo_watch;
mod connect;
pub(crate) mod errors;
pub mod lease;
pub mod live;
pub mod native;
pub mod objects;
mod probe;
pub mod record;
pub mod slim;
mod state;
pub mod switch;
mod watches;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use async_trait::async_trait;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

pub use self::connect::{CONNECT_TIMEOUT, Connection, client_for, connect};
use self::errors::{Action, describe, is_transient, status, timed_out};
use self::objects::*;
use crate::cluster::*;
use crate::model::KubeObjects;

/// How long one API request may take before it counts as unanswered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Gateway API's HTTPRoute, read and written as a dynamic object.
pub fn http_route_resource() -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    }
}

/// One environment's apps on one Kubernetes namespace.
pub struct KubeCluster {
    client: Client,
    namespace: String,
    apps: BTreeMap<Target, KubeObjects>,
    senders: BTreeMap<Target, watch::Sender<WorkloadState>>,
    stores: watches::Stores,
    writers: Mutex<Option<watches::Writers>>,
    watch_errors: watches::WatchErrors,
    listed: watches::Listed,
    changed: Arc<Notify>,
    /// Counts the changes the watches brought; the index below is of the stores at `.0`.
    generation: AtomicU64,
    index: Mutex<Option<(u64, Arc<state::Index>)>>,
    route_resource: ApiResource,
    timeout: Duration,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// For probes through the app's `verify_url`, made at the first one.
    verify_client: std::sync::OnceLock<reqwest::Client>,
    me: std::sync::Weak<KubeCluster>,
    /// Who drives what: Leases, the bases' rollouts, Events (see `live.rs`).
    live: live::Live,
    live_started: std::sync::atomic::AtomicBool,
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().unwrap_or_else(|e| e.into_inner()).iter() {
            t.abort();
        }
    }
}

impl KubeCluster {
    /// A cluster for `apps` in `namespace`; call [`KubeCluster::start`] to start the watches.
    pub fn new(client: Client, namespace: &str, apps: Vec<(Target, KubeObjects)>) -> Arc<Self> {
        let route_resource = http_route_resource();
        let (stores, writers) = watches::stores(&route_resource);
        let senders = apps.iter().map(|(t, _)| (t.clone(), watch::channel(WorkloadState::default()).0)).collect();
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            client,
            namespace: namespace.to_string(),
            apps: apps.into_iter().collect(),
            senders,
            stores,
            writers: Mutex::new(Some(writers)),
            watch_errors: Default::default(),
            listed: Default::default(),
            changed: Arc::new(Notify::new()),
            generation: AtomicU64::new(0),
            index: Mutex::new(None),
            route_resource,
            timeout: REQUEST_TIMEOUT,
            tasks: Mutex::new(Vec::new()),
            verify_client: std::sync::OnceLock::new(),
            live: Default::default(),
            live_started: Default::default(),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The client this cluster talks through (for the Argo Rollouts watch beside it).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The apps this cluster drives.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.apps.keys()
    }

    fn uses_routes(&self) -> bool {
        self.apps.values().any(|o| o.http_route.is_some())
    }

    fn objects(&self, t: &Target) -> Result<&KubeObjects, ClusterError> {
        self.apps
            .get(t)
            .ok_or_else(|| ClusterError::Other(format!("{t} is not an app of Kubernetes namespace {}", self.namespace)))
    }

    fn params() -> PatchParams {
        PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
    }

    fn post_params() -> PostParams {
        PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
    }

    /// One request with a deadline, tried again on 429/5xx and timeouts.
    async fn call<T, F, Fut>(&self, t: &Target, action: Action<'_>, request: F) -> Result<T, ApiFailure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ::kube::Error>>,
    {
        call_with_retry(self.timeout, &t.to_string(), &self.namespace, action, request).await
    }

    async fn patch_deployment_replicas(&self, t: &Target, name: &str, replicas: u32) -> Result<(), ApiFailure> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let body = json!({"spec": {"replicas": replicas}});
        let (pp, patch) = (Self::params(), Patch::Merge(&body));
        let action = Action::new("patch", "deployments", name);
        self.absolute(|| self.call(t, action, || api.patch(name, &pp, &patch))).await.map(drop)
    }

    /// A write of absolute values without a `resourceVersion` (a merge patch of replicas or a
    /// selector): a 409 (the object changed under the API server's own update) is tried once
    /// more, after the retry delay, as kubectl's patch does; a second one is said.
    async fn absolute<T, F, Fut>(&self, mut write: F) -> Result<T, ApiFailure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiFailure>>,
    {
        match write().await {
            Err(f) if f.code == Some(409) => {
                tokio::time::sleep(RETRY_DELAY).await;
                write().await
            }
            other => other,
        }
    }

    /// Create the version's Deployment from the base (and its Service, with an HTTPRoute).
    async fn create_version(
        &self,
        t: &Target,
        o: &KubeObjects,
        version: &str,
        replicas: u32,
    ) -> Result<(), ClusterError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let base = self.call(t, Action::new("get", "deployments", &o.deployment), || api.get(&o.deployment)).await?;
        let d = version_deployment(&base, o, version, replicas)
            .map_err(|m| ClusterError::Kubernetes { target: t.to_string(), message: m })?;
        let name = version_deployment_name(o, version);
        let post = Self::post_params();
        match self.call(t, Action::new("create", "deployments", &name), || api.create(&post, &d)).await {
            Ok(_) => {}
            // Someone (another console, a retried create) made it meanwhile: set its size.
            Err(f) if f.code == Some(409) => self.patch_deployment_replicas(t, &name, replicas).await?,
            Err(f) => return Err(f.error),
        }
        if o.http_route.is_some() {
            let services: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
            let base = self.call(t, Action::new("get", "services", &o.service), || services.get(&o.service)).await?;
            let svc = version_service(&base, o, version);
            let name = version_service_name(o, version);
            let post = Self::post_params();
            let made = self.call(t, Action::new("create", "services", &name), || services.create(&post, &svc));
            match made.await {
                Ok(_) => {}
                Err(f) if f.code == Some(409) => {}
                Err(f) => return Err(f.error),
            }
        }
        Ok(())
    }

    async fn delete_version(&self, t: &Target, o: &KubeObjects, version: &str) -> Result<(), ClusterError> {
        let dp = DeleteParams::background();
        let name = version_deployment_name(o, version);
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        match self.call(t, Action::new("delete", "deployments", &name), || api.delete(&name, &dp)).await {
            Ok(_) => {}
            Err(f) if f.code == Some(404) => {}
            Err(f) => return Err(f.error),
        }
        if o.http_route.is_some() {
            let name = version_service_name(o, version);
            let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
            match self.call(t, Action::new("delete", "services", &name), || api.delete(&name, &dp)).await {
                Ok(_) | Err(ApiFailure { code: Some(404), .. }) => {}
                Err(f) => return Err(f.error),
            }
        }
        Ok(())
    }

    async fn patch_service(&self, t: &Target, name: &str, body: &Value) -> Result<(), ClusterError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        let (pp, patch) = (Self::params(), Patch::Merge(body));
        let action = Action::new("patch", "services", name);
        self.absolute(|| self.call(t, action, || api.patch(name, &pp, &patch))).await?;
        Ok(())
    }

    /// Rewrite the HTTPRoute's rules for `routing`, guarded by the resourceVersion read: a
    /// concurrent change (409) is read again and the write made once more.
    async fn write_route(
        &self,
        t: &Target,
        o: &KubeObjects,
        route: &str,
        routing: &Routing,
    ) -> Result<(), ClusterError> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.namespace, &self.route_resource);
        let plain = |message: String| ClusterError::Kubernetes { target: t.to_string(), message };
        for attempt in 1..=2 {
            let current = self.call(t, Action::new("get", "httproutes", route), || api.get(route)).await?;
            let rules = current.data.pointer("/spec/rules").and_then(Value::as_array).cloned().unwrap_or_default();
            let ours = current.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(ROUTING_ANNOTATION));
            if !ours && rules.len() > 1 {
                return Err(plain(format!(
                    "HTTPRoute {route} has {} rules; shipdeck drives a route with one rule (its matches and \
                     filters are kept) — split the others into another HTTPRoute",
                    rules.len()
                )));
            }
            // Once shipdeck wrote it, the weighted rule is the last one; before, the only one.
            let template = rules.last().cloned().unwrap_or_else(|| json!({}));
            let template = strip_header_match(template, routing);
            let rules =
                http_route_rules(o, &template, routing).map_err(|m| plain(format!("HTTPRoute {route}: {m}")))?;
            let body = json!({
                "metadata": {
                    "resourceVersion": current.metadata.resource_version,
                    "annotations": {ROUTING_ANNOTATION: routing_json(routing)},
                },
                "spec": {"rules": rules},
            });
            let (pp, patch) = (Self::params(), Patch::Merge(&body));
            let patched =
                self.call(t, Action::new("patch", "httproutes", route), || api.patch(route, &pp, &patch)).await;
            match patched {
                Ok(_) => return Ok(()),
                Err(f) if f.code == Some(409) && attempt == 1 => continue,
                Err(f) => return Err(f.error),
            }
        }
        Err(plain(format!("HTTPRoute {route} kept changing while shipdeck wrote it; try again")))
    }

    /// The snapshot's state of one app, once the watches have listed.
    async fn synced_state(&self, t: &Target) -> Result<WorkloadState, ClusterError> {
        let o = self.objects(t)?;
        let ready = match self.listed.wait().now_or_never() {
            Some(()) => true,
            // A watch that already fails says so at once rather than after the whole wait.
            None if self.watch_errors.summary().is_some() => false,
            None => tokio::time::timeout(self.timeout, self.listed.wait()).await.is_ok(),
        };
        if !ready {
            let why = self.watch_errors.summary().unwrap_or_else(|| "no answer yet".into());
            return Err(ClusterError::Unreachable {
                target: t.to_string(),
                message: format!("the watches of namespace {} have not listed: {why}", self.namespace),
            });
        }
        // A watch the API server refuses keeps what it last saw: say so rather than show it as now.
        if let Some(why) = self.watch_errors.refused() {
            return Err(ClusterError::Kubernetes {
                target: t.to_string(),
                message: format!("the state of namespace {} cannot be watched: {why}", self.namespace),
            });
        }
        Ok(state::compute(o, &self.index()))
    }

    /// The stores grouped by app, rebuilt only when the watches brought a change since.
    fn index(&self) -> Arc<state::Index> {
        // Read before the stores: an index built from newer stores is only rebuilt once more.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((at, index)) = self.index.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && *at == generation
        {
            return index.clone();
        }
        let index = Arc::new(state::Index::of(self.stores.snapshot()));
        *self.index.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, index.clone()));
        index
    }

    /// The watches changed the stores: the index is stale.
    fn stores_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// One request with a deadline `timeout`, tried again on 429/5xx and timeouts (three attempts,
/// 200 ms then 400 ms apart); a failure is said in plain words for `target`.
async fn call_with_retry<T, F, Fut>(
    timeout: Duration,
    target: &str,
    namespace: &str,
    action: Action<'_>,
    mut request: F,
) -> Result<T, ApiFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    let mut attempt = 1;
    loop {
        let failure = match tokio::time::timeout(timeout, request()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if attempt < ATTEMPTS && is_transient(&e) => e.to_string(),
            Ok(Err(e)) => {
                return Err(ApiFailure { code: status(&e), error: describe(target, namespace, action, &e) });
            }
            Err(_) if attempt < ATTEMPTS => "timed out".to_string(),
            Err(_) => return Err(ApiFailure { code: None, error: timed_out(target, action, timeout) }),
        };
        tracing::debug!("{target}: {} {} {}: {failure}; trying again", action.verb, action.resource, action.name);
        tokio::time::sleep(RETRY_DELAY * 2u32.pow(attempt - 1)).await;
        attempt += 1;
    }
}

/// Header rules are rebuilt from `routing` every time: the template must not keep ours.
fn strip_header_match(mut template: Value, routing: &Routing) -> Value {
    if let Some(ms) = template.get_mut("matches").and_then(Value::as_array_mut) {
        for m in ms.iter_mut() {
            if let Some(hs) = m.get_mut("headers").and_then(Value::as_array_mut) {
                hs.retain(|h| {
                    let name = h.get("name").and_then(Value::as_str).unwrap_or_default();
                    !routing.matches.iter().any(|r| r.name.eq_ignore_ascii_case(name)) && name != "cookie"
                });
            }
        }
    }
    template
}

/// A failed request: its HTTP status (to decide what to do) and the words for the user.
struct ApiFailure {
    code: Option<u16>,
    error: ClusterError,
}

impl From<ApiFailure> for ClusterError {
    fn from(f: ApiFailure) -> Self {
        f.error
    }
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn scale(&self, t: &Target, version: &str, replicas: u32) -> Result<(), ClusterError> {
        let o = self.objects(t)?;
        check_version(o, version).map_err(|m| ClusterError::Kubernetes { target: t.to_string(), message: m })?;
        // The version the base Deployment runs (a native rollout's) is sized there; the base is never deleted.
        if self.index().base_version(o) == Some(version) {
            return Ok(self.patch_deployment_replicas(t, &o.deployment, replicas).await?);
        }
        if replicas == 0 {
            return self.delete_version(t, o, version).await;
        }
        let name = version_deployment_name(o, version);
        match self.patch_deployment_replicas(t, &name, replicas).await {
            Ok(()) => Ok(()),
            Err(f) if f.code == Some(404) => self.create_version(t, o, version, replicas).await,
            Err(f) => Err(f.error),
        }
    }

    async fn restart(&self, t: &Target, version: &str) -> Result<(), ClusterError> {
        let o = self.objects(t)?;
        let name = match self.index().base_version(o) == Some(version) {
            true => o.deployment.clone(),
            false => version_deployment_name(o, version),
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let body =
            json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}});
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let (pp, patch) = (Self::params(), Patch::Merge(&body));
        self.call(t, Action::new("patch", "deployments", &name), || api.patch(&name, &pp, &patch)).await?;
        Ok(())
    }

    async fn set_routing(&self, t: &Target, routing: &Routing) -> Result<(), ClusterError> {
        let o = self.objects(t)?;
        // Refused before anything moves: traffic is never left half-moved by a request that could not work.
        if o.http_route.is_none() && !routing.matches.is_empty() {
            return Err(ClusterError::Kubernetes {
                target: t.to_string(),
                message: "header and cookie matches need a Gateway API HTTPRoute: name it with \
                          [apps.kubernetes] http_route"
                    .into(),
            });
        }
        for v in routing.weights.keys().chain(routing.matches.iter().map(|m| &m.version)).chain(&routing.preview) {
            check_version(o, v).map_err(|m| ClusterError::Kubernetes { target: t.to_string(), message: m })?;
        }
        if let Some(preview) = &routing.preview {
            self.patch_service(t, &o.preview_service, &preview_service_patch(o, preview)).await?;
        }
        match &o.http_route {
            Some(route) => self.write_route(t, o, route, routing).await,
            None => self.patch_service(t, &o.service, &active_service_patch(o, routing)).await,
        }
    }

    async fn state(&self, t: &Target) -> Result<WorkloadState, ClusterError> {
        self.synced_state(t).await
    }

    async fn watch(&self, t: &Target) -> Result<watch::Receiver<WorkloadState>, ClusterError> {
        self.objects(t)?;
        let tx = self.senders.get(t).ok_or_else(|| ClusterError::Other(format!("no workload {t}")))?;
        Ok(tx.subscribe())
    }

    /// The app's `verify_url`, else the version's Service through the API server's proxy, else a
    /// ready pod of the version through it (see `probe.rs`).
    async fn probe(&self, t: &Target, version: &str, req: &ProbeRequest) -> Result<ProbeResponse, ClusterError> {
        self.probe_version(t, version, req).await
    }

    /// The app's Lease, renewed while the claim lives; refused, naming the holder, when another
    /// console has it.
    async fn claim(&self, t: &Target, holder: &str) -> Result<Option<Claim>, ClusterError> {
        match self.acquire_lease(t, holder).await? {
            ClaimStatus::Held => {}
            ClaimStatus::HeldBy { holder: other } => {
                return Err(ClusterError::Kubernetes {
                    target: t.to_string(),
                    message: format!(
                        "{other} is driving this rollout (Lease {} in namespace {}); wait until it is done, or \
                         until its lease lapses {}s after it stops",
                        lease::lease_name(t, self).unwrap_or_default(),
                        self.namespace,
                        lease::LEASE_DURATION.as_secs()
                    ),
                });
            }
            ClaimStatus::Lost { reason } => {
                return Err(ClusterError::Kubernetes { target: t.to_string(), message: reason });
            }
        }
        let me = self.me.upgrade().ok_or_else(|| ClusterError::Other("the cluster is shutting down".into()))?;
        let keeper = lease::LeaseKeeper::spawn(me.clone(), t.clone(), holder.to_string());
        let (t, holder) = (t.clone(), holder.to_string());
        let hand_back = Box::pin(async move {
            if let Err(e) = me.release_lease(&t, &holder).await {
                tracing::warn!("{t}: handing the lease back (it lapses on its own): {e}");
            }
        });
        Ok(Some(Claim::new(keeper.status.clone(), keeper).on_hand_back(hand_back)))
    }

    /// Apps without an HTTPRoute roll natively (an HTTPRoute sends each version to its own Service,
    /// which a single Deployment's pods cannot be split between).
    fn native_rollouts(&self, t: &Target) -> bool {
        self.apps.get(t).is_some_and(|o| o.http_route.is_none())
    }

    async fn native_rollout(&self, t: &Target, version: &str, rollout: &NativeRollout) -> Result<(), ClusterError> {
        if !self.native_rollouts(t) {
            return Err(ClusterError::Other(format!("{t} has an HTTPRoute: it does not roll out natively")));
        }
        self.rollout_base(t, version, rollout).await
    }

    async fn native_revisions(&self, t: &Target) -> Result<Vec<NativeRevision>, ClusterError> {
        let o = self.objects(t)?;
        let (_, owned) = self.history(t, &o.deployment).await?;
        Ok(native::revisions(&owned))
    }

    async fn native_undo(&self, t: &Target, to: &UndoTarget) -> Result<Option<UndoOutcome>, ClusterError> {
        self.undo_base(t, to).await
    }

    fn news(&self, t: &Target) -> ClusterNews {
        self.live_news(t)
    }

    fn cluster_events(&self) -> Vec<ClusterEvent> {
        self.live_events()
    }

    async fn news_changed(&self) {
        self.live_changed().await
    }
}
