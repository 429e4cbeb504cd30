//! What the watches keep of an object: only what shipdeck reads. A reflector holds every object
//! it watches for as long as the console runs (with 5,000 apps: 25,000 objects), so an object's
//! size in memory is the console's size.
//!
//! Two tools, for any reflector:
//!
//! - [`slim`], in place, for a watch of a k8s-openapi type (`watcher(..).modify(|o| slim(o.meta_mut()))`,
//!   as `spawn_watch` does for every watch): drops `metadata.managedFields` and the
//!   `kubectl.kubernetes.io/last-applied-configuration` annotation, most of a real object's
//!   size and never read. The object was still decoded whole, and its type stays as wide as
//!   k8s-openapi makes it (a `Pod` is 2.4 KB before any of its strings, a `Container` 2.1 KB).
//! - a **view**: a small struct that decodes only the fields it names (serde skips the rest
//!   without allocating), with [`slim_meta`] for its `metadata`, made a resource of the same
//!   kind with [`view_of!`] so that `Api`, `watcher` and `reflector` take it as they take the
//!   full type. [`PodView`] and [`DeploymentView`] are two: a pod trimmed in place after
//!   decoding still took 9.4 KB, a `PodView` takes 2.1 KB; a Deployment without its pod
//!   template 5.8 KB, a `DeploymentView` about 2 KB.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer};

/// The annotation `kubectl apply` writes: the whole object as last applied, as JSON.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from an object's metadata what shipdeck never reads and a real API server fills:
/// managed fields and the last-applied configuration.
pub fn slim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// `metadata` for a view (`#[serde(default, deserialize_with = "slim_meta")]`): everything of
/// `ObjectMeta` but managed fields, which are skipped unread, and the last-applied annotation.
pub fn slim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        annotations: Option<BTreeMap<String, String>>,
        creation_timestamp: Option<Time>,
        deletion_grace_period_seconds: Option<i64>,
        deletion_timestamp: Option<Time>,
        finalizers: Option<Vec<String>>,
        generate_name: Option<String>,
        generation: Option<i64>,
        labels: Option<BTreeMap<String, String>>,
        name: Option<String>,
        namespace: Option<String>,
        owner_references: Option<Vec<OwnerReference>>,
        resource_version: Option<String>,
        self_link: Option<String>,
        uid: Option<String>,
    }
    let Some(m) = Option::<Meta>::deserialize(d)? else { return Ok(ObjectMeta::default()) };
    let mut meta = ObjectMeta {
        annotations: m.annotations,
        creation_timestamp: m.creation_timestamp,
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        deletion_timestamp: m.deletion_timestamp,
        finalizers: m.finalizers,
        generate_name: m.generate_name,
        generation: m.generation,
        labels: m.labels,
        managed_fields: None,
        name: m.name,
        namespace: m.namespace,
        owner_references: m.owner_references,
        resource_version: m.resource_version,
        self_link: m.self_link,
        uid: m.uid,
    };
    slim(&mut meta);
    Ok(meta)
}

/// A field that may be missing or `null` in the API's JSON, read as its default then
/// (`#[serde(default, deserialize_with = "nullable")]`).
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Makes `$view` (a struct with `metadata: ObjectMeta`) a resource of `$full`'s kind: the same
/// group, version, plural and scope, so `Api<$view>`, `watcher` and `reflector` list and watch
/// `$full`'s objects and keep only the view.
macro_rules! view_of {
    ($view:ty, $full:ty) => {
        impl k8s_openapi::Resource for $view {
            const API_VERSION: &'static str = <$full as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <$full as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <$full as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <$full as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str = <$full as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <$full as k8s_openapi::Resource>::Scope;
        }

        impl k8s_openapi::Metadata for $view {
            type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

            fn metadata(&self) -> &Self::Ty {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut Self::Ty {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use view_of;

/// A pod as the console reads it: its metadata (name, labels, deletion), its containers'
/// names and ports (the probe's port), and of its status the phase, the `Ready` condition,
/// each container's restarts and waiting reason, and its address.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct PodView {
    #[serde(default, deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: PodSpecView,
    #[serde(default, deserialize_with = "nullable")]
    pub status: PodStatusView,
}
self::view_of!(PodView, k8s_openapi::api::core::v1::Pod);

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct PodSpecView {
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<ContainerView>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ContainerView {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<ContainerPortView>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPortView {
    #[serde(default, deserialize_with = "nullable")]
    pub container_port: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatusView {
    #[serde(default)]
    pub phase: Option<String>,
    /// The `Ready` condition is `True` (the other conditions are not kept).
    #[serde(default, rename = "conditions", deserialize_with = "ready_condition")]
    pub ready: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub container_statuses: Vec<ContainerStatusView>,
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatusView {
    #[serde(default, deserialize_with = "nullable")]
    pub restart_count: i32,
    #[serde(default, deserialize_with = "nullable")]
    pub state: ContainerStateView,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ContainerStateView {
    #[serde(default)]
    pub waiting: Option<WaitingView>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct WaitingView {
    #[serde(default)]
    pub reason: Option<String>,
}

/// A version Deployment as the console reads it: its metadata, desired replicas, and its
/// status's counts and conditions (the pod template, selector and strategy are not kept: a
/// version is made from the base Deployment read afresh).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct DeploymentView {
    #[serde(default, deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: DeploymentSpecView,
    #[serde(default, deserialize_with = "nullable")]
    pub status: DeploymentStatusView,
}
self::view_of!(DeploymentView, k8s_openapi::api::apps::v1::Deployment);

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct DeploymentSpecView {
    #[serde(default)]
    pub replicas: Option<i32>,
    /// Only the pod template's labels: the version a natively rolled base runs.
    #[serde(default, deserialize_with = "nullable")]
    pub template: TemplateView,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct TemplateView {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: TemplateMetaView,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct TemplateMetaView {
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatusView {
    #[serde(default)]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub updated_replicas: Option<i32>,
    #[serde(default)]
    pub ready_replicas: Option<i32>,
    #[serde(default)]
    pub available_replicas: Option<i32>,
    #[serde(default, deserialize_with = "nullable")]
    pub conditions: Vec<ConditionView>,
}

/// A status condition: `Progressing`/`ProgressDeadlineExceeded` and the like.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ConditionView {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub type_: String,
    #[serde(default, deserialize_with = "nullable")]
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// Whether the `Ready` condition among a pod's conditions is `True`.
fn ready_condition<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    struct Condition {
        #[serde(rename = "type", default)]
        type_: String,
        #[serde(default)]
        status: String,
    }
    let conditions: Vec<Condition> = nullable(d)?;
    Ok(conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;

    fn pod_json() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-1-0-0-a", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                "labels": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.0.0"},
                "annotations": {LAST_APPLIED: "{\"big\": true}", "team": "checkout"},
                "deletionTimestamp": "2026-11-27T12:00:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1-0-0-7d9",
                                     "uid": "u2", "controller": true}],
                "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsType": "FieldsV1",
                                   "fieldsV1": {"f:status": {}}}],
            },
            "spec": {"containers": [
                {"name": "sidecar", "image": "envoy"},
                {"name": "web", "image": "x", "ports": [{"containerPort": 8080, "name": "http"}],
                 "env": [{"name": "A", "value": "b"}]},
            ], "nodeName": "node-1"},
            "status": {
                "phase": "Running", "podIP": "10.1.2.3", "hostIP": "192.168.0.1",
                "conditions": [{"type": "Initialized", "status": "True", "lastProbeTime": null},
                               {"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "web", "ready": false, "restartCount": 4, "image": "x",
                                       "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
            },
        })
    }

    #[test]
    fn a_pod_view_keeps_what_the_console_reads() {
        let p: PodView = serde_json::from_value(pod_json()).unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-1-0-0-a"));
        assert_eq!(p.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(p.metadata.labels.as_ref().unwrap()["shipdeck.dev/version"], "1.0.0");
        assert!(p.metadata.deletion_timestamp.is_some());
        assert_eq!(p.metadata.owner_references.as_ref().unwrap()[0].name, "web-1-0-0-7d9");
        assert_eq!(p.spec.containers.len(), 2);
        assert_eq!(p.spec.containers[1].name, "web");
        assert_eq!(p.spec.containers[1].ports[0].container_port, 8080);
        assert_eq!(p.status.phase.as_deref(), Some("Running"));
        assert!(p.status.ready);
        assert_eq!(p.status.pod_ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(p.status.container_statuses[0].restart_count, 4);
        let reason = p.status.container_statuses[0].state.waiting.as_ref().and_then(|w| w.reason.as_deref());
        assert_eq!(reason, Some("CrashLoopBackOff"));
    }

    #[test]
    fn views_and_slim_drop_managed_fields_and_the_last_applied_configuration() {
        let p: PodView = serde_json::from_value(pod_json()).unwrap();
        assert!(p.metadata.managed_fields.is_none());
        let annotations = p.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);

        let mut full: Pod = serde_json::from_value(pod_json()).unwrap();
        assert!(full.metadata.managed_fields.is_some());
        slim(&mut full.metadata);
        assert_eq!(full.metadata, p.metadata, "slim in place leaves what the view's metadata keeps");
    }

    #[test]
    fn a_pod_with_little_or_null_reads_as_defaults() {
        let p: PodView = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        assert_eq!((p.spec.containers.len(), p.status.ready, p.status.phase), (0, false, None));
        let nulls = json!({"metadata": {"name": "p", "labels": null}, "spec": null,
                           "status": {"conditions": null, "containerStatuses": null}});
        let p: PodView = serde_json::from_value(nulls).unwrap();
        assert_eq!(p.metadata.labels, None);
        assert!(p.spec.containers.is_empty() && p.status.container_statuses.is_empty());
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        assert!(!serde_json::from_value::<PodView>(not_ready).unwrap().status.ready);
    }

    #[test]
    fn a_deployment_view_keeps_its_size_counts_and_conditions() {
        let d: DeploymentView = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web-1-0-0", "generation": 2, "labels": {"shipdeck.dev/version": "1.0.0"},
                         "managedFields": [{"manager": "shipdeck"}]},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": []}}},
            "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 2,
                       "availableReplicas": 2, "conditions": [
                           {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                            "message": "ReplicaSet \"web-1-0-0-7d9\" has timed out progressing.",
                            "lastUpdateTime": "2026-11-27T12:00:00Z"}]},
        }))
        .unwrap();
        assert_eq!(d.metadata.generation, Some(2));
        assert!(d.metadata.managed_fields.is_none());
        assert_eq!(d.spec.replicas, Some(3));
        let s = &d.status;
        assert_eq!((s.observed_generation, s.replicas, s.updated_replicas), (Some(2), Some(3), Some(3)));
        assert_eq!((s.ready_replicas, s.available_replicas), (Some(2), Some(2)));
        assert_eq!((s.conditions[0].type_.as_str(), s.conditions[0].status.as_str()), ("Progressing", "False"));
        assert_eq!(s.conditions[0].reason.as_deref(), Some("ProgressDeadlineExceeded"));
        let empty: DeploymentView = serde_json::from_value(json!({"metadata": {"name": "x"}, "status": null})).unwrap();
        assert_eq!((empty.spec.replicas, empty.status.conditions.len()), (None, 0));
    }

    /// Real-shaped objects, listed and then changed by a watch event, reach the state through
    /// the views: the watches ask for the full kinds' paths, and what the state reads survives.
    #[tokio::test(start_paused = true)]
    async fn the_watches_list_and_watch_through_the_views() {
        use crate::cluster::Cluster;
        use crate::cluster::kube::tests::{NS, cluster, target};

        let mut pod = pod_json();
        pod["metadata"]["labels"]["app.kubernetes.io/name"] = json!("web");
        pod["metadata"].as_object_mut().unwrap().remove("deletionTimestamp");
        pod["status"]["containerStatuses"][0]["state"] = json!({"running": {"startedAt": "2026-11-27T12:00:00Z"}});
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web-1-0-0", "namespace": NS, "resourceVersion": "3",
                         "labels": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.0.0"},
                         "managedFields": [{"manager": "shipdeck", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"shipdeck.dev/version": "1.0.0"}},
                     "template": {"metadata": {"labels": {}}, "spec": {"containers": [{"name": "web", "image": "x"}]}}},
            "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1},
        });
        let list = |kind: &str, items: Vec<serde_json::Value>| json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "10"}, "items": items});
        let (c, mut api) = cluster(false);
        c.start();
        let mut rx = c.watch(target()).await.unwrap();
        let mut not_ready = pod.clone();
        not_ready["metadata"]["resourceVersion"] = json!("11");
        not_ready["status"]["conditions"][1]["status"] = json!("False");
        let mut pod_watches = 0;
        let server = tokio::spawn(async move {
            loop {
                let x = api.next().await;
                match (x.path.as_str(), x.is_watch()) {
                    ("/apis/apps/v1/namespaces/shop/deployments", false) => {
                        x.reply(200, list("Deployment", vec![deployment.clone()]))
                    }
                    ("/api/v1/namespaces/shop/pods", false) => x.reply(200, list("Pod", vec![pod.clone()])),
                    ("/api/v1/namespaces/shop/services", false) => x.reply(200, list("Service", vec![])),
                    ("/apis/apps/v1/namespaces/shop/replicasets", false) => x.reply(200, list("ReplicaSet", vec![])),
                    ("/api/v1/namespaces/shop/pods", true) if pod_watches == 0 => {
                        pod_watches += 1;
                        x.stream(&[json!({"type": "MODIFIED", "object": not_ready.clone()})]);
                    }
                    (_, true) => x.hold(&mut api),
                    (path, _) => panic!("unexpected request {path} {:?}", x.query),
                }
            }
        });
        let listed = c.state(target()).await.unwrap();
        assert_eq!(listed.replicas("1.0.0").desired, 1);
        assert_eq!(listed.pods.len(), 1);
        let p = &listed.pods[0];
        assert_eq!((p.name.as_str(), p.version.as_str()), ("web-1-0-0-a", "1.0.0"));
        assert_eq!(
            (p.phase, p.restarts, p.address.as_deref()),
            (crate::cluster::PodPhase::Running, 4, Some("10.1.2.3"))
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while rx.borrow_and_update().pods.first().is_none_or(|p| p.ready) {
            assert!(tokio::time::timeout_at(deadline, rx.changed()).await.is_ok(), "the watch event never arrived");
        }
        server.abort();
    }

    #[test]
    fn a_view_lists_and_watches_the_full_kind() {
        use ::kube::Resource;
        use k8s_openapi::api::apps::v1::Deployment;
        assert_eq!(PodView::url_path(&(), Some("shop")), Pod::url_path(&(), Some("shop")));
        assert_eq!(PodView::kind(&()), "Pod");
        assert_eq!(DeploymentView::url_path(&(), Some("shop")), Deployment::url_path(&(), Some("shop")));
        assert_eq!(DeploymentView::api_version(&()), "apps/v1");
    }
}
