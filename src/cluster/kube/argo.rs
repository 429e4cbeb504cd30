//! Argo Rollouts interop: list the `argoproj.io/v1alpha1` Rollouts of a namespace (see
//! `argo_info.rs` for what is derived from them) and act on one exactly as the
//! `kubectl argo rollouts` plugin does:
//!
//! - **promote**: read the Rollout; clear `status.pauseConditions` (merge patch of the `status`
//!   subresource) when it has any, else — a canary between pauses, e.g. in an analysis step —
//!   move `status.currentStepIndex` one step on; and `spec.paused: false` (merge patch of the
//!   Rollout) when it was paused by hand. An inconclusive step analysis that paused the
//!   controller also gets `status.controllerPause: false` with the next step.
//! - **promote --full**: `status.promoteFull: true` on the `status` subresource, unless the
//!   current pod template already is the stable one.
//! - **abort** / **retry**: `status.abort: true` / `false` on the `status` subresource.
//! - **undo [--to-revision N]**: read the Rollout and the ReplicaSets its selector matches and it
//!   controls; take the previous revision's (or revision N's) pod template, without the
//!   `rollouts-pod-template-hash` label, and write it as a JSON patch
//!   `[{"op": "replace", "path": "/spec/template", …}]`; nothing is written when the template
//!   already matches. A 409 re-reads everything and tries once more.
//!
//! As in the plugin, a status write answered 404 goes to the Rollout itself (controllers before
//! v0.10 had no status subresource). Unlike it, writes carry the field manager `shipdeck`, so
//! `managedFields` says who made them. 429/5xx and timeouts are tried again as everywhere in
//! `cluster::kube` (every write sets absolute values).

use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use k8s_openapi::api::apps::v1::ReplicaSet;
use serde::Serialize;
use serde_json::{Value, json};

pub use super::argo_info::{Analysis, ArgoRollout, Replicas, Revision, Step};
use super::argo_info::{
    POD_TEMPLATE_HASH_LABEL, controlled_by, current_step, describe_rollout, is_canary, revision_of,
};
use super::errors::Action;
use super::objects::FIELD_MANAGER;
use super::{ApiFailure, REQUEST_TIMEOUT, call_with_retry};
use crate::cluster::ClusterError;

/// Argo Rollouts' Rollout, read and written as a dynamic object.
pub fn rollout_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

/// Why an Argo action could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ArgoError {
    /// The request named something that is not there (a rollout, a revision): exit 2.
    #[error("{0}")]
    BadInput(String),
    /// The API server refused, failed or did not answer: exit 3.
    #[error("{0}")]
    Api(#[from] ClusterError),
}

impl ArgoError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ArgoError::BadInput(_) => 2,
            ArgoError::Api(_) => 3,
        }
    }
}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgoOutcome {
    pub rollout: String,
    /// promote, promote-full, abort, retry or undo.
    pub action: String,
    /// False when there was nothing to change (and nothing was written).
    pub changed: bool,
    pub message: String,
}

/// What can be done to a Rollout, as the `kubectl argo rollouts` plugin's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArgoAction {
    Promote,
    PromoteFull,
    Abort,
    Retry,
    Undo,
}

/// Each action's name, written once: `name()` and `command()` are derived from it.
macro_rules! argo_action_names {
    ($($action:ident => $name:literal),* $(,)?) => {
        /// The plugin's command name: `promote`, `promote-full`, `abort`, `retry`, `undo`.
        pub fn name(self) -> &'static str {
            match self {
                $(ArgoAction::$action => $name,)*
            }
        }

        /// What the engine's command and the audit log call it: `argo <name>`.
        pub fn command(self) -> &'static str {
            match self {
                $(ArgoAction::$action => concat!("argo ", $name),)*
            }
        }
    };
}

impl ArgoAction {
    argo_action_names! {
        Promote => "promote",
        PromoteFull => "promote-full",
        Abort => "abort",
        Retry => "retry",
        Undo => "undo",
    }

    /// What a confirmation must say for the destructive ones (promote-full, abort, undo).
    pub fn warning(self, rollout: &str, env: &str, to_revision: Option<u64>) -> Option<String> {
        match self {
            ArgoAction::PromoteFull => Some(format!(
                "fully promote rollout {rollout} in {env}, skipping every remaining step, pause and analysis"
            )),
            ArgoAction::Abort => {
                Some(format!("abort rollout {rollout} in {env}: all traffic goes back to the stable ReplicaSet now"))
            }
            ArgoAction::Undo => {
                let to = to_revision.map_or("the previous revision".to_string(), |n| format!("revision {n}"));
                Some(format!("roll rollout {rollout} in {env} back to the pod template of {to}"))
            }
            ArgoAction::Promote | ArgoAction::Retry => None,
        }
    }
}

/// One environment's namespace, as Argo Rollouts sees it.
pub struct ArgoRollouts {
    client: Client,
    namespace: String,
    /// The environment's name, for messages.
    env: String,
    timeout: Duration,
}

fn merge_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

/// A Kubernetes object name: lowercase letters, digits, `-` and `.`, at most 253.
fn check_name(name: &str) -> Result<(), ArgoError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok { Ok(()) } else { Err(ArgoError::BadInput(format!("{name:?} cannot be the name of a Rollout"))) }
}

impl ArgoRollouts {
    pub fn new(client: Client, namespace: &str, env: &str) -> Self {
        Self { client, namespace: namespace.to_string(), env: env.to_string(), timeout: REQUEST_TIMEOUT }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn rollouts(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &rollout_resource())
    }

    async fn call<T, F, Fut>(&self, action: Action<'_>, request: F) -> Result<T, ApiFailure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ::kube::Error>>,
    {
        call_with_retry(self.timeout, &self.env, &self.namespace, action, request).await
    }

    /// A failure of a request about rollout `name`: a 404 is the user's (wrong name), the rest the cluster's.
    fn failed(&self, f: ApiFailure) -> ArgoError {
        match f.code {
            Some(404) => ArgoError::BadInput(f.error.to_string()),
            _ => ArgoError::Api(f.error),
        }
    }

    async fn get(&self, name: &str) -> Result<Value, ArgoError> {
        check_name(name)?;
        let api = self.rollouts();
        let ro = self.call(Action::new("get", "rollouts", name), || api.get(name)).await.map_err(|f| self.failed(f))?;
        serde_json::to_value(&ro).map_err(|e| ArgoError::Api(ClusterError::Other(format!("rollout {name}: {e}"))))
    }

    /// The namespace's ReplicaSets matching `selector` (`rollouts-pod-template-hash` for all of Argo's).
    async fn replica_sets(&self, selector: &str) -> Result<Vec<Value>, ArgoError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &ApiResource::erase::<ReplicaSet>(&()));
        let lp = ListParams::default().labels(selector);
        let list = self.call(Action::new("list", "replicasets", ""), || api.list(&lp)).await.map_err(|f| f.error)?;
        Ok(list.items.iter().filter_map(|rs| serde_json::to_value(rs).ok()).collect())
    }

    /// Every Rollout of the namespace, by name, with what the plugin's `get rollout` shows.
    pub async fn list(&self) -> Result<Vec<ArgoRollout>, ArgoError> {
        let api = self.rollouts();
        let lp = ListParams::default();
        let list = match self.call(Action::new("list", "rollouts", ""), || api.list(&lp)).await {
            Ok(l) => l,
            Err(f) if f.code == Some(404) => {
                return Err(ArgoError::BadInput(format!(
                    "{}: the cluster has no argoproj.io/v1alpha1 Rollout resource — Argo Rollouts is not installed",
                    self.env
                )));
            }
            Err(f) => return Err(ArgoError::Api(f.error)),
        };
        let rollouts: Vec<Value> = list.items.iter().filter_map(|r| serde_json::to_value(r).ok()).collect();
        let replica_sets =
            if rollouts.is_empty() { Vec::new() } else { self.replica_sets(POD_TEMPLATE_HASH_LABEL).await? };
        let mut all: Vec<ArgoRollout> = rollouts.iter().map(|r| describe_rollout(r, &replica_sets)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// A merge patch of the `status` subresource; `Ok(false)` when the Rollout has none (404).
    async fn patch_status(&self, name: &str, body: &Value) -> Result<bool, ArgoError> {
        let api = self.rollouts();
        let (pp, patch) = (merge_params(), Patch::Merge(body));
        match self.call(Action::new("patch", "rollouts/status", name), || api.patch_status(name, &pp, &patch)).await {
            Ok(_) => Ok(true),
            Err(f) if f.code == Some(404) => Ok(false),
            Err(f) => Err(self.failed(f)),
        }
    }

    async fn patch(&self, name: &str, body: &Value) -> Result<(), ArgoError> {
        let api = self.rollouts();
        let (pp, patch) = (merge_params(), Patch::Merge(body));
        self.call(Action::new("patch", "rollouts", name), || api.patch(name, &pp, &patch))
            .await
            .map_err(|f| self.failed(f))?;
        Ok(())
    }

    /// A status write as the plugin makes it: the subresource first, the Rollout itself on a 404.
    async fn set_status(&self, name: &str, body: Value) -> Result<(), ArgoError> {
        if !self.patch_status(name, &body).await? {
            self.patch(name, &body).await?;
        }
        Ok(())
    }

    fn outcome(name: &str, action: &str, changed: bool, message: String) -> ArgoOutcome {
        ArgoOutcome { rollout: name.to_string(), action: action.to_string(), changed, message }
    }

    /// Do `action` to rollout `name` (`to_revision`: undo's target; the previous one when absent).
    pub async fn act(
        &self,
        action: ArgoAction,
        name: &str,
        to_revision: Option<u64>,
    ) -> Result<ArgoOutcome, ArgoError> {
        match action {
            ArgoAction::Promote => self.promote(name).await,
            ArgoAction::PromoteFull => self.promote_full(name).await,
            ArgoAction::Abort => self.abort(name).await,
            ArgoAction::Retry => self.retry(name).await,
            ArgoAction::Undo => self.undo(name, to_revision).await,
        }
    }

    /// `kubectl argo rollouts abort`: back to the stable ReplicaSet at once.
    pub async fn abort(&self, name: &str) -> Result<ArgoOutcome, ArgoError> {
        check_name(name)?;
        self.set_status(name, json!({"status": {"abort": true}})).await?;
        Ok(Self::outcome(name, "abort", true, format!("rollout {name} aborted")))
    }

    /// `kubectl argo rollouts retry rollout`: start an aborted rollout again.
    pub async fn retry(&self, name: &str) -> Result<ArgoOutcome, ArgoError> {
        check_name(name)?;
        self.set_status(name, json!({"status": {"abort": false}})).await?;
        Ok(Self::outcome(name, "retry", true, format!("rollout {name} retried")))
    }

    /// `kubectl argo rollouts promote`: past the current pause (or step).
    pub async fn promote(&self, name: &str) -> Result<ArgoOutcome, ArgoError> {
        let ro = self.get(name).await?;
        let (mut spec_patch, status_patch, unified) = promote_patches(&ro);
        if let Some(body) = &status_patch
            && !self.patch_status(name, body).await?
        {
            spec_patch = Some(unified);
        }
        if let Some(body) = &spec_patch {
            self.patch(name, body).await?;
        }
        if status_patch.is_none() && spec_patch.is_none() {
            let message = format!("rollout {name} is not paused and has no step to move past; nothing to promote");
            return Ok(Self::outcome(name, "promote", false, message));
        }
        Ok(Self::outcome(name, "promote", true, format!("rollout {name} promoted")))
    }

    /// `kubectl argo rollouts promote --full`: skip every remaining step, pause and analysis.
    pub async fn promote_full(&self, name: &str) -> Result<ArgoOutcome, ArgoError> {
        let ro = self.get(name).await?;
        let at = |p: &str| ro.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
        if at("/status/currentPodHash") == at("/status/stableRS") {
            let message = format!("rollout {name} already runs its current template as stable; nothing to promote");
            return Ok(Self::outcome(name, "promote-full", false, message));
        }
        if !self.patch_status(name, &json!({"status": {"promoteFull": true}})).await? {
            return Err(ArgoError::BadInput(format!(
                "{}: Rollout {name} has no status subresource (Argo Rollouts before v0.10), which has no full promotion",
                self.env
            )));
        }
        Ok(Self::outcome(name, "promote-full", true, format!("rollout {name} fully promoted")))
    }

    /// `kubectl argo rollouts undo [--to-revision N]`: the revision's pod template back into the Rollout.
    pub async fn undo(&self, name: &str, to_revision: Option<u64>) -> Result<ArgoOutcome, ArgoError> {
        for attempt in 1..=2 {
            let ro = self.get(name).await?;
            if let Some(workload) = ro.pointer("/spec/workloadRef/name").and_then(Value::as_str) {
                return Err(ArgoError::BadInput(format!(
                    "{}: Rollout {name} takes its pod template from Deployment {workload} (workloadRef); undo that \
                     Deployment instead",
                    self.env
                )));
            }
            let Some(selector) = ro.pointer("/spec/selector").and_then(label_selector) else {
                return Err(ArgoError::BadInput(format!("{}: Rollout {name} has no usable spec.selector", self.env)));
            };
            let uid = ro.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
            let owned: Vec<Value> =
                self.replica_sets(&selector).await?.into_iter().filter(|rs| controlled_by(rs, uid)).collect();
            let (revision, rs) = pick_revision(&owned, to_revision)
                .map_err(|m| ArgoError::BadInput(format!("{}: Rollout {name}: {m}", self.env)))?;
            let mut template = rs.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
            if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
                labels.remove(POD_TEMPLATE_HASH_LABEL);
            }
            let mut current = ro.pointer("/spec/template").cloned().unwrap_or(Value::Null);
            if let Some(labels) = current.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
                labels.remove(POD_TEMPLATE_HASH_LABEL);
            }
            if derivative(&current, &template) {
                let message =
                    format!("rollout {name} already runs the template of revision {revision}; nothing to undo");
                return Ok(Self::outcome(name, "undo", false, message));
            }
            let body = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
            match self.json_patch(name, &body).await {
                Ok(()) => {
                    let message = format!("rollout {name} goes back to the pod template of revision {revision}");
                    return Ok(Self::outcome(name, "undo", true, message));
                }
                Err(f) if f.code == Some(409) && attempt == 1 => continue,
                Err(f) => return Err(self.failed(f)),
            }
        }
        Err(ArgoError::Api(ClusterError::Kubernetes {
            target: self.env.clone(),
            message: format!("Rollout {name} kept changing while shipdeck undid it; look at it and try again"),
        }))
    }

    /// A JSON patch (`application/json-patch+json`) of the Rollout, field manager `shipdeck`.
    async fn json_patch(&self, name: &str, body: &Value) -> Result<(), ApiFailure> {
        let uri = format!(
            "/apis/argoproj.io/v1alpha1/namespaces/{}/rollouts/{name}?fieldManager={FIELD_MANAGER}",
            self.namespace
        );
        let bytes = body.to_string().into_bytes();
        let client = self.client.clone();
        self.call(Action::new("patch", "rollouts", name), || {
            let request = http::Request::patch(&uri)
                .header(http::header::CONTENT_TYPE, "application/json-patch+json")
                .body(bytes.clone());
            let client = client.clone();
            async move {
                let request = request.map_err(::kube::Error::HttpError)?;
                client.request::<Value>(request).await.map(drop)
            }
        })
        .await
    }
}

/// The plugin's promote patches: (spec, status, unified — for a Rollout without a status subresource).
fn promote_patches(ro: &Value) -> (Option<Value>, Option<Value>, Value) {
    let paused = ro.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let pause_conditions =
        ro.pointer("/status/pauseConditions").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
    let controller_pause = ro.pointer("/status/controllerPause").and_then(Value::as_bool) == Some(true);
    let inconclusive = is_canary(ro)
        && ro.pointer("/status/canary/currentStepAnalysisRunStatus/status").and_then(Value::as_str)
            == Some("Inconclusive");
    let total = ro.pointer("/spec/strategy/canary/steps").and_then(Value::as_array).map_or(0, Vec::len);
    let next_step = || current_step(ro).1.map(|i| if (i as usize) < total { i + 1 } else { i });
    let spec_patch = paused.then(|| json!({"spec": {"paused": false}}));
    let mut unified = json!({"spec": {"paused": false}, "status": {"pauseConditions": null}});
    let mut status_patch = None;
    if inconclusive && pause_conditions && controller_pause {
        status_patch = next_step()
            .map(|i| json!({"status": {"pauseConditions": null, "controllerPause": false, "currentStepIndex": i}}));
    } else if pause_conditions {
        status_patch = Some(json!({"status": {"pauseConditions": null}}));
    } else if is_canary(ro)
        && let Some(i) = next_step()
    {
        status_patch = Some(json!({"status": {"pauseConditions": null, "currentStepIndex": i}}));
        unified = json!({"spec": {"paused": false}, "status": {"pauseConditions": null, "currentStepIndex": i}});
    }
    (spec_patch, status_patch, unified)
}

/// A LabelSelector as the API's `labelSelector` query (requirements sorted by key, as
/// client-go prints them).
pub fn label_selector(selector: &Value) -> Option<String> {
    let mut parts: Vec<(String, String)> = Vec::new();
    for (k, v) in selector.get("matchLabels").and_then(Value::as_object).into_iter().flatten() {
        parts.push((k.clone(), format!("{k}={}", v.as_str()?)));
    }
    for e in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str)?;
        let mut values: Vec<&str> =
            e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        values.sort_unstable();
        let text = match e.get("operator").and_then(Value::as_str)? {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        parts.push((key.to_string(), text));
    }
    parts.sort();
    (!parts.is_empty()).then(|| parts.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(","))
}

/// The plugin's choice: revision `to` (when given), else the second-newest revision.
fn pick_revision(owned: &[Value], to: Option<u64>) -> Result<(u64, &Value), String> {
    let mut numbered: Vec<(u64, &Value)> = owned.iter().filter_map(|rs| Some((revision_of(rs)?, rs))).collect();
    numbered.sort_by_key(|(r, _)| std::cmp::Reverse(*r));
    match to.filter(|&n| n > 0) {
        Some(n) => {
            numbered.into_iter().find(|(r, _)| *r == n).ok_or_else(|| format!("revision {n} is not in its history"))
        }
        None => numbered.into_iter().nth(1).ok_or_else(|| "there is no previous revision to go back to".to_string()),
    }
}

/// apimachinery's `Semantic.DeepDerivative(a, b)` on JSON: what `a` leaves unset (absent, null,
/// empty string, empty map or list) is ignored; everything `a` sets must be equal in `b`, and a
/// list in `a` must be a prefix of `b`'s.
fn derivative(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, _) => true,
        (Value::String(s), _) if s.is_empty() => true,
        (Value::Object(x), _) if x.is_empty() => true,
        (Value::Array(x), _) if x.is_empty() => true,
        (Value::Object(x), Value::Object(y)) => x.iter().all(|(k, v)| derivative(v, y.get(k).unwrap_or(&Value::Null))),
        (Value::Array(x), Value::Array(y)) => x.len() <= y.len() && x.iter().zip(y).all(|(p, q)| derivative(p, q)),
        (x, y) => x == y,
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn selectors_print_as_client_go_prints_them() {
        let s = json!({"matchLabels": {"app": "web", "tier": "front"},
                       "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "canary"]},
                                            {"key": "legacy", "operator": "DoesNotExist"}]});
        assert_eq!(label_selector(&s).unwrap(), "app=web,env in (canary,prod),!legacy,tier=front");
        assert_eq!(label_selector(&json!({})), None);
    }

    #[test]
    fn derivative_ignores_what_the_first_leaves_unset() {
        let rollout =
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "a:1"}]}});
        let rs = json!({"metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                        "spec": {"containers": [{"name": "web", "image": "a:1", "resources": {}}], "dnsPolicy": "ClusterFirst"}});
        assert!(derivative(&rollout, &rs));
        let other =
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "a:2"}]}});
        assert!(!derivative(&other, &rs));
    }

    #[test]
    fn names_that_cannot_be_rollouts_are_refused_before_any_request() {
        for bad in ["", "Web", "web/status", "../x", "-web", "web-"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name("web.v2-canary").is_ok());
    }

    /// The name is written once: the JSON a command carries, the engine command's name and the
    /// audit verb all follow it.
    #[test]
    fn an_action_has_one_name_everywhere() {
        use ArgoAction::*;
        for (action, name) in
            [(Promote, "promote"), (PromoteFull, "promote-full"), (Abort, "abort"), (Retry, "retry"), (Undo, "undo")]
        {
            assert_eq!(action.name(), name);
            assert_eq!(serde_json::to_value(action).ok(), Some(serde_json::json!(name)), "{name} as JSON");
            assert_eq!(action.command(), format!("argo {name}"));
            let command =
                crate::engine::Command::Argo { env: "prod".into(), rollout: "web".into(), action, to_revision: None };
            assert_eq!(command.name(), format!("argo {name}"));
        }
    }
}
