//! Native rollouts of the app's **base Deployment**: shipdeck sets its pod template (the named
//! container's image tag is the version), strategy and size, and the Deployment controller
//! replaces the pods; progress is read from the Deployment's status as `kubectl rollout status`
//! reads it, and its ReplicaSets (one per revision) come from a reflector. Undo is
//! `kubectl rollout undo`: an earlier revision's ReplicaSet template written back.
//!
//! What goes over the wire:
//! - **rollout**: `GET` the base, then one strategic merge patch (field manager `shipdeck`, as
//!   `kubectl set image` patches) of `spec.template` (the container's image by name, the pod
//!   labels `app.kubernetes.io/name`, `shipdeck.dev/version` and `shipdeck.dev/native`),
//!   `spec.strategy`, `spec.replicas`, `spec.progressDeadlineSeconds`, the Deployment's own
//!   `app.kubernetes.io/name`/`shipdeck.dev/version` labels (so the labelled watch sees it) and
//!   `kubernetes.io/change-cause`.
//! - **undo**: `GET` the base, `LIST` the ReplicaSets its selector matches, keep those it
//!   controls; take the chosen revision's template without `pod-template-hash` and write a JSON
//!   patch: `resourceVersion` as read (a precondition: someone else's change in between is a
//!   409, which re-reads once), `/spec/template`, and `/metadata/annotations` as kubectl builds
//!   them (the Deployment's `deployment.kubernetes.io/*` and last-applied ones kept, the rest
//!   from the ReplicaSet — and, unlike kubectl, shipdeck's own `shipdeck.dev/*` kept too), plus
//!   the Deployment's version label when it changes.

use std::collections::BTreeMap;

use ::kube::api::{Api, ListParams, Patch};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use serde_json::{Map, Value, json};

use super::errors::Action;
use super::objects::{APP_LABEL, FIELD_MANAGER, VERSION_LABEL, retag};
use super::slim::DeploymentView;
use super::{ApiFailure, KubeCluster};
use crate::cluster::{
    ClusterError, NativeCondition, NativeRevision, NativeRollout, NativeStatus, NativeStrategy, Target, UndoOutcome,
    UndoTarget,
};
use crate::model::KubeObjects;

/// Marks the pod template (and so the ReplicaSets) of a base Deployment shipdeck rolls natively:
/// the ReplicaSet reflector selects on it, so the per-version Deployments' ReplicaSets stay out.
pub const NATIVE_LABEL: &str = "shipdeck.dev/native";
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";

/// The Deployment annotations kubectl's undo keeps from the Deployment rather than the ReplicaSet.
const KEPT_FROM_DEPLOYMENT: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The strategic merge patch of a native rollout of `base` to `version`.
pub fn rollout_patch(
    base: &Deployment,
    objects: &KubeObjects,
    version: &str,
    rollout: &NativeRollout,
) -> Result<Value, String> {
    let name = base.metadata.name.clone().unwrap_or_default();
    let spec = base.spec.as_ref().ok_or_else(|| format!("Deployment {name} has no spec"))?;
    if spec.paused == Some(true) {
        return Err(format!(
            "Deployment {name} is paused; resume it (`kubectl rollout resume deployment/{name}`) and try again"
        ));
    }
    // Our pod labels must still match the Deployment's (immutable) selector.
    if let Some(wanted) = spec.selector.match_labels.as_ref().and_then(|m| m.get(APP_LABEL))
        && *wanted != objects.deployment
    {
        return Err(format!(
            "Deployment {name} selects pods by {APP_LABEL}={wanted}, and shipdeck labels the app's pods \
             {APP_LABEL}={}; name the Deployment {wanted} in [apps.kubernetes] deployment, or roll out with \
             another strategy",
            objects.deployment
        ));
    }
    let containers = spec.template.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    let Some(container) = containers.iter().find(|c| c.name == objects.container) else {
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "Deployment {name} has no container named {:?} (it has {}); set [apps.kubernetes] container",
            objects.container,
            names.join(", ")
        ));
    };
    let image = container.image.as_deref().ok_or_else(|| format!("container {} has no image", objects.container))?;
    let strategy = match rollout.strategy {
        NativeStrategy::Rolling { max_surge, max_unavailable } => json!({
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable},
        }),
        // The API refuses rollingUpdate beside Recreate: `null` deletes it.
        NativeStrategy::Recreate => json!({"type": "Recreate", "rollingUpdate": null}),
    };
    Ok(json!({
        "metadata": {
            "labels": {APP_LABEL: objects.deployment, VERSION_LABEL: version},
            "annotations": {CHANGE_CAUSE_ANNOTATION: rollout.change_cause},
        },
        "spec": {
            "replicas": rollout.replicas,
            "progressDeadlineSeconds": rollout.progress_deadline_secs,
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {APP_LABEL: objects.deployment, VERSION_LABEL: version, NATIVE_LABEL: "true"}},
                "spec": {"containers": [{"name": objects.container, "image": retag(image, version)}]},
            },
        },
    }))
}

fn count(n: Option<i32>) -> u32 {
    n.unwrap_or(0).max(0) as u32
}

/// The rollout of a Deployment as `kubectl rollout status` decides it.
pub fn status_of(d: &DeploymentView) -> NativeStatus {
    let name = d.metadata.name.clone().unwrap_or_default();
    let status = &d.status;
    let desired = count(d.spec.replicas.or(Some(1)));
    let (updated, total, ready, available) = (
        count(status.updated_replicas),
        count(status.replicas),
        count(status.ready_replicas),
        count(status.available_replicas),
    );
    let generation = d.metadata.generation.unwrap_or(0);
    let progressing = status.conditions.iter().find(|c| c.type_ == "Progressing");
    let condition = if generation > status.observed_generation.unwrap_or(0) {
        NativeCondition::Progressing { message: "waiting for the deployment spec update to be observed".into() }
    } else if let Some(c) = progressing.filter(|c| c.reason.as_deref() == Some(TIMED_OUT_REASON)) {
        NativeCondition::DeadlineExceeded { message: c.message.clone().unwrap_or_else(|| TIMED_OUT_REASON.into()) }
    } else if updated < desired {
        NativeCondition::Progressing { message: format!("{updated} out of {desired} new replicas have been updated") }
    } else if total > updated {
        NativeCondition::Progressing { message: format!("{} old replicas are pending termination", total - updated) }
    } else if available < updated {
        NativeCondition::Progressing { message: format!("{available} of {updated} updated replicas are available") }
    } else {
        NativeCondition::Complete
    };
    NativeStatus {
        deployment: name,
        version: template_version(d).map(str::to_string),
        revision: revision(&d.metadata),
        desired,
        updated,
        total,
        ready,
        available,
        condition,
    }
}

fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<i64> {
    meta.annotations.as_ref()?.get(REVISION_ANNOTATION)?.parse().ok()
}

/// The version a Deployment's pod template runs.
pub fn template_version(d: &DeploymentView) -> Option<&str> {
    d.spec.template.metadata.labels.get(VERSION_LABEL).map(String::as_str)
}

/// The ReplicaSet's pod template as JSON, without the controller's `pod-template-hash` label.
fn template_without_hash(template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>) -> Value {
    let mut t = template.and_then(|t| serde_json::to_value(t).ok()).unwrap_or_else(|| json!({}));
    if let Some(labels) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    t
}

fn rs_version(rs: &ReplicaSet) -> Option<String> {
    let t = rs.spec.as_ref()?.template.as_ref()?;
    t.metadata.as_ref()?.labels.as_ref()?.get(VERSION_LABEL).cloned()
}

/// The Deployment's revisions, oldest first.
pub fn revisions(owned: &[ReplicaSet]) -> Vec<NativeRevision> {
    let mut out: Vec<NativeRevision> = owned
        .iter()
        .filter_map(|rs| Some(NativeRevision { revision: revision(&rs.metadata)?, version: rs_version(rs) }))
        .collect();
    out.sort_by_key(|r| r.revision);
    out
}

/// The revision `to` asks for among the Deployment's ReplicaSets, as kubectl picks it.
fn pick<'a>(name: &str, owned: &'a [ReplicaSet], to: &UndoTarget) -> Result<(i64, &'a ReplicaSet), String> {
    let mut numbered: Vec<(i64, &ReplicaSet)> =
        owned.iter().filter_map(|rs| Some((revision(&rs.metadata)?, rs))).collect();
    numbered.sort_by_key(|(r, _)| std::cmp::Reverse(*r));
    let known = || {
        let list: Vec<String> = numbered
            .iter()
            .rev()
            .map(|(r, rs)| match rs_version(rs) {
                Some(v) => format!("{r} ({v})"),
                None => r.to_string(),
            })
            .collect();
        if list.is_empty() { "none".to_string() } else { list.join(", ") }
    };
    let found = match to {
        UndoTarget::Previous => numbered.get(1).copied(),
        UndoTarget::Revision(n) => numbered.iter().find(|(r, _)| r == n).copied(),
        UndoTarget::Version(v) => numbered.iter().find(|(_, rs)| rs_version(rs).as_deref() == Some(v)).copied(),
    };
    found.ok_or_else(|| match to {
        UndoTarget::Previous => {
            format!("Deployment {name} has no previous revision to go back to (its revisions: {})", known())
        }
        UndoTarget::Revision(n) => format!("Deployment {name} has no revision {n} (its revisions: {})", known()),
        UndoTarget::Version(v) => {
            format!("no revision of Deployment {name} runs version {v} (its revisions: {})", known())
        }
    })
}

/// kubectl's undo annotations: the Deployment's own bookkeeping kept, the rest from the
/// ReplicaSet; shipdeck's `shipdeck.dev/*` (its rollout record) kept from the Deployment.
fn undo_annotations(d: &Deployment, rs: &ReplicaSet) -> BTreeMap<String, String> {
    let kept = |k: &str| KEPT_FROM_DEPLOYMENT.contains(&k) || k.starts_with("shipdeck.dev/");
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if kept(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in rs.metadata.annotations.iter().flatten() {
        if !kept(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// The JSON patch of `kubectl rollout undo` to `rs`'s template, with a precondition on the
/// Deployment's resourceVersion; None when the Deployment already runs that template.
pub fn undo_patch(d: &Deployment, rs: &ReplicaSet) -> Option<Value> {
    let template = template_without_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref()));
    let current = template_without_hash(d.spec.as_ref().map(|s| &s.template));
    if template == current {
        return None;
    }
    let mut ops = vec![
        json!({"op": "replace", "path": "/metadata/resourceVersion", "value": d.metadata.resource_version}),
        json!({"op": "replace", "path": "/spec/template", "value": template}),
        json!({"op": "replace", "path": "/metadata/annotations", "value": undo_annotations(d, rs)}),
    ];
    // The Deployment's version label follows its template, so the console shows the right one.
    let mut labels: Map<String, Value> =
        d.metadata.labels.iter().flatten().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let before = labels.clone();
    match rs_version(rs) {
        Some(v) => labels.insert(VERSION_LABEL.to_string(), Value::String(v)),
        None => labels.remove(VERSION_LABEL),
    };
    if labels != before {
        ops.push(json!({"op": "add", "path": "/metadata/labels", "value": labels}));
    }
    Some(Value::Array(ops))
}

impl KubeCluster {
    fn plain(&self, t: &Target, message: String) -> ClusterError {
        ClusterError::Kubernetes { target: t.to_string(), message }
    }

    pub(super) async fn rollout_base(
        &self,
        t: &Target,
        version: &str,
        rollout: &NativeRollout,
    ) -> Result<(), ClusterError> {
        let o = self.objects(t)?;
        super::objects::check_version(o, version).map_err(|m| self.plain(t, m))?;
        let name = o.deployment.as_str();
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let base = self.call(t, Action::new("get", "deployments", name), || api.get(name)).await?;
        let body = rollout_patch(&base, o, version, rollout).map_err(|m| self.plain(t, m))?;
        let (pp, patch) = (Self::params(), Patch::Strategic(&body));
        self.call(t, Action::new("patch", "deployments", name), || api.patch(name, &pp, &patch)).await?;
        Ok(())
    }

    pub(super) async fn undo_base(&self, t: &Target, to: &UndoTarget) -> Result<Option<UndoOutcome>, ClusterError> {
        let o = self.objects(t)?;
        let name = o.deployment.as_str();
        for attempt in 1..=2 {
            let (d, owned) = self.history(t, name).await?;
            if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
                return Err(self.plain(
                    t,
                    format!(
                        "Deployment {name} is paused; a paused Deployment cannot be rolled back — resume it \
                         (`kubectl rollout resume deployment/{name}`) and try again"
                    ),
                ));
            }
            let (revision, rs) = match pick(name, &owned, to) {
                Ok(found) => found,
                Err(_) if matches!(to, UndoTarget::Version(_)) => return Ok(None),
                Err(m) => return Err(self.plain(t, m)),
            };
            let version = rs_version(rs);
            let Some(body) = undo_patch(&d, rs) else {
                return Ok(Some(UndoOutcome { revision, version, changed: false }));
            };
            match self.json_patch_deployment(t, name, &body).await {
                Ok(()) => return Ok(Some(UndoOutcome { revision, version, changed: true })),
                Err(f) if f.code == Some(409) && attempt == 1 => continue,
                Err(f) => return Err(f.error),
            }
        }
        Err(self.plain(t, format!("Deployment {name} kept changing while shipdeck undid its rollout; try again")))
    }

    /// The Deployment as it is now, and the ReplicaSets its selector matches and it controls
    /// (read from the API, as kubectl does: the reflector holds only shipdeck-labelled ones).
    pub(super) async fn history(&self, t: &Target, name: &str) -> Result<(Deployment, Vec<ReplicaSet>), ClusterError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.namespace);
        let d = self.call(t, Action::new("get", "deployments", name), || api.get(name)).await?;
        let selector = d.spec.as_ref().and_then(|s| serde_json::to_value(&s.selector).ok());
        let Some(selector) = selector.as_ref().and_then(super::argo::label_selector) else {
            return Err(self.plain(t, format!("Deployment {name} has no usable spec.selector")));
        };
        let lp = ListParams::default().labels(&selector);
        let list = self.call(t, Action::new("list", "replicasets", ""), || sets.list(&lp)).await?;
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let owned = list
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata.owner_references.iter().flatten().any(|r| r.controller == Some(true) && r.uid == uid)
            })
            .collect();
        Ok((d, owned))
    }

    /// A JSON patch (`application/json-patch+json`) of a Deployment, field manager `shipdeck`.
    async fn json_patch_deployment(&self, t: &Target, name: &str, body: &Value) -> Result<(), ApiFailure> {
        let uri =
            format!("/apis/apps/v1/namespaces/{}/deployments/{name}?fieldManager={FIELD_MANAGER}", self.namespace);
        let bytes = body.to_string().into_bytes();
        let client = self.client.clone();
        self.call(t, Action::new("patch", "deployments", name), || {
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

#[cfg(test)]
mod unit {
    use super::*;

    fn deployment(v: Value) -> DeploymentView {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn status_reads_as_kubectl_rollout_status() {
        let d = |generation: i64, observed: i64, status: Value| {
            deployment(json!({
                "metadata": {"name": "web", "generation": generation, "annotations": {REVISION_ANNOTATION: "4"}},
                "spec": {"replicas": 3, "selector": {}, "template": {"metadata": {"labels": {VERSION_LABEL: "1.1.0"}}}},
                "status": {"observedGeneration": observed, "replicas": status["replicas"], "updatedReplicas": status["updated"],
                           "readyReplicas": status["available"], "availableReplicas": status["available"],
                           "conditions": status["conditions"]},
            }))
        };
        let counts = json!({"replicas": 3, "updated": 3, "available": 3});
        let s = status_of(&d(5, 4, counts.clone()));
        assert!(matches!(s.condition, NativeCondition::Progressing { .. }), "not observed yet: {s:?}");
        let s = status_of(&d(5, 5, counts));
        assert_eq!(
            (s.condition.clone(), s.revision, s.version.as_deref()),
            (NativeCondition::Complete, Some(4), Some("1.1.0"))
        );
        assert!(s.complete_at("1.1.0") && !s.complete_at("1.0.0"));
        let s = status_of(&d(5, 5, json!({"replicas": 4, "updated": 3, "available": 3})));
        assert_eq!(
            s.condition,
            NativeCondition::Progressing { message: "1 old replicas are pending termination".into() }
        );
        let s = status_of(&d(5, 5, json!({"replicas": 3, "updated": 2, "available": 2})));
        assert_eq!(
            s.condition,
            NativeCondition::Progressing { message: "2 out of 3 new replicas have been updated".into() }
        );
        let timed_out = json!({"replicas": 4, "updated": 1, "available": 3, "conditions": [
            {"type": "Available", "status": "True"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet \"web-7d9\" has timed out progressing."}]});
        let s = status_of(&d(5, 5, timed_out));
        assert_eq!(
            s.condition,
            NativeCondition::DeadlineExceeded { message: "ReplicaSet \"web-7d9\" has timed out progressing.".into() }
        );
    }
}
