//! A workload's state, computed from what the watches hold: the version Deployments' status,
//! their pods, and the routing object (active Service or HTTPRoute).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ::kube::api::DynamicObject;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::objects::{APP_LABEL, ROUTING_ANNOTATION, VERSION_LABEL, version_service_name};
use super::slim::{DeploymentView, PodView};
use crate::cluster::{PodPhase, PodState, Routing, VersionReplicas, WorkloadState};
use crate::model::KubeObjects;

/// Everything the watches hold for one namespace.
#[derive(Default)]
pub struct Snapshot {
    pub deployments: Vec<Arc<DeploymentView>>,
    pub pods: Vec<Arc<PodView>>,
    pub services: Vec<Arc<Service>>,
    pub routes: Vec<Arc<DynamicObject>>,
    pub replica_sets: Vec<Arc<ReplicaSet>>,
}

/// The snapshot grouped the way a workload reads it: version Deployments and pods by their
/// `app.kubernetes.io/name`, Services and routes by name. Built once per change of the
/// watches, so one app's state reads only its own objects — with 5,000 apps, scanning every
/// object for every app was 25,000 × 5,000 label lookups per refresh.
#[derive(Default)]
pub struct Index {
    deployments: HashMap<String, Vec<Arc<DeploymentView>>>,
    pods: HashMap<String, Vec<Arc<PodView>>>,
    services: HashMap<String, Arc<Service>>,
    routes: HashMap<String, Arc<DynamicObject>>,
    /// The base Deployments' ReplicaSets, by the name of the Deployment that controls them.
    replica_sets: HashMap<String, Vec<Arc<ReplicaSet>>>,
}

impl Index {
    pub fn of(snap: Snapshot) -> Self {
        fn by_app<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(all: Vec<Arc<K>>) -> HashMap<String, Vec<Arc<K>>> {
            let mut out: HashMap<String, Vec<Arc<K>>> = HashMap::new();
            for o in all {
                if let Some(app) = label(o.metadata(), APP_LABEL) {
                    out.entry(app.to_string()).or_default().push(o);
                }
            }
            out
        }
        let by_name = |name: &Option<String>| name.clone().unwrap_or_default();
        let mut replica_sets: HashMap<String, Vec<Arc<ReplicaSet>>> = HashMap::new();
        for rs in snap.replica_sets {
            let owner = rs.metadata.owner_references.iter().flatten().find(|r| r.controller == Some(true));
            if let Some(owner) = owner.filter(|r| r.kind == "Deployment") {
                replica_sets.entry(owner.name.clone()).or_default().push(rs);
            }
        }
        Index {
            replica_sets,
            deployments: by_app(snap.deployments),
            pods: by_app(snap.pods),
            services: snap.services.into_iter().map(|s| (by_name(&s.metadata.name), s)).collect(),
            routes: snap.routes.into_iter().map(|r| (by_name(&r.metadata.name), r)).collect(),
        }
    }
}

impl Index {
    /// The app's base Deployment, when the watches see it (it carries shipdeck's labels once
    /// shipdeck rolled it natively).
    pub fn base(&self, objects: &KubeObjects) -> Option<&Arc<DeploymentView>> {
        let all = self.deployments.get(&objects.deployment)?;
        all.iter().find(|d| d.metadata.name.as_deref() == Some(objects.deployment.as_str()))
    }

    /// The version the base Deployment's pod template runs.
    pub fn base_version(&self, objects: &KubeObjects) -> Option<&str> {
        super::native::template_version(self.base(objects)?)
    }
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The version an object of this app belongs to.
fn version_of<'a>(meta: &'a ObjectMeta, objects: &KubeObjects) -> Option<&'a str> {
    (label(meta, APP_LABEL)? == objects.deployment).then_some(())?;
    label(meta, VERSION_LABEL)
}

pub fn compute(objects: &KubeObjects, index: &Index) -> WorkloadState {
    let mut versions: BTreeMap<String, VersionReplicas> = BTreeMap::new();
    let mut native = None;
    for d in index.deployments.get(&objects.deployment).map(Vec::as_slice).unwrap_or_default() {
        if d.metadata.name.as_deref() == Some(objects.deployment.as_str()) {
            let status = super::native::status_of(d);
            base_versions(&mut versions, &status, index.replica_sets.get(&objects.deployment));
            native = Some(status);
            continue;
        }
        let Some(v) = version_of(&d.metadata, objects) else { continue };
        let status = &d.status;
        let count = |n: Option<i32>| n.unwrap_or(0).max(0) as u32;
        add(
            versions.entry(v.to_string()).or_default(),
            VersionReplicas {
                desired: count(d.spec.replicas),
                updated: count(status.replicas),
                ready: count(status.ready_replicas),
                available: count(status.available_replicas),
            },
        );
    }
    let mut pods: Vec<PodState> = index
        .pods
        .get(&objects.deployment)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| Some(pod_state(p, version_of(&p.metadata, objects)?)))
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));

    let service = |name: &str| index.services.get(name);
    let route = objects.http_route.as_deref().and_then(|name| index.routes.get(name));
    let active = service(&objects.service);
    let carrier = match &objects.http_route {
        Some(_) => route.map(|r| &r.metadata),
        None => active.map(|s| &s.metadata),
    };
    let selected = active.and_then(|s| s.spec.as_ref()?.selector.as_ref()?.get(VERSION_LABEL).cloned());
    let routing = carrier
        .and_then(|m| annotation(m, ROUTING_ANNOTATION))
        .and_then(|json| serde_json::from_str::<Routing>(json).ok())
        .or_else(|| selected.as_deref().filter(|v| !v.is_empty()).map(Routing::all_to))
        .unwrap_or_default();

    let actual_weights = match (&objects.http_route, route) {
        (Some(_), Some(r)) => route_weights(objects, r, &versions, &routing),
        (Some(_), None) => BTreeMap::new(),
        (None, _) => by_ready_pods(&pods, selected.as_deref(), active.is_some()),
    };
    WorkloadState { versions, pods, routing, actual_weights, entry_url: None, preview_url: None, native }
}

fn add(to: &mut VersionReplicas, r: VersionReplicas) {
    to.desired += r.desired;
    to.updated += r.updated;
    to.ready += r.ready;
    to.available += r.available;
}

/// The versions the base Deployment runs: each of its ReplicaSets (old and new revisions, as
/// `kubectl get rs` shows them) by the version its template runs; without them (not listed
/// yet), the Deployment's own counts for the version of its template.
fn base_versions(
    versions: &mut BTreeMap<String, VersionReplicas>,
    status: &crate::cluster::NativeStatus,
    sets: Option<&Vec<Arc<ReplicaSet>>>,
) {
    let count = |n: Option<i32>| n.unwrap_or(0).max(0) as u32;
    let mut seen = false;
    for rs in sets.map(Vec::as_slice).unwrap_or_default() {
        let Some(v) = label(&rs.metadata, VERSION_LABEL) else { continue };
        let st = rs.status.clone().unwrap_or_default();
        let desired = count(rs.spec.as_ref().and_then(|s| s.replicas));
        if desired == 0 && st.replicas == 0 {
            continue;
        }
        seen = true;
        let r = VersionReplicas {
            desired,
            updated: count(Some(st.replicas)),
            ready: count(st.ready_replicas),
            available: count(st.available_replicas),
        };
        add(versions.entry(v.to_string()).or_default(), r);
    }
    if let (false, Some(v)) = (seen, &status.version)
        && status.desired > 0
    {
        let r = VersionReplicas {
            desired: status.desired,
            updated: status.updated,
            ready: status.ready,
            available: status.available,
        };
        add(versions.entry(v.clone()).or_default(), r);
    }
}

/// Without a mesh the Service spreads requests over ready endpoints: a version's share is its
/// share of the ready pods the Service selects.
fn by_ready_pods(pods: &[PodState], selected: Option<&str>, has_service: bool) -> BTreeMap<String, f64> {
    if !has_service {
        return BTreeMap::new();
    }
    let mut ready: BTreeMap<String, u32> = BTreeMap::new();
    // A terminating pod leaves the Service's ready endpoints even while its Ready condition lags.
    let serving = |p: &&PodState| p.ready && p.phase != PodPhase::Terminating;
    for p in pods.iter().filter(serving).filter(|p| selected.is_none_or(|v| v == p.version)) {
        *ready.entry(p.version.clone()).or_default() += 1;
    }
    let total: u32 = ready.values().sum();
    ready.into_iter().map(|(v, n)| (v, n as f64 * 100.0 / total.max(1) as f64)).collect()
}

/// The weights the HTTPRoute's weighted rule holds, per version, out of 100.
fn route_weights(
    objects: &KubeObjects,
    route: &DynamicObject,
    versions: &BTreeMap<String, VersionReplicas>,
    routing: &Routing,
) -> BTreeMap<String, f64> {
    let by_service: BTreeMap<String, &str> =
        versions.keys().chain(routing.weights.keys()).map(|v| (version_service_name(objects, v), v.as_str())).collect();
    let refs = route.data.pointer("/spec/rules").and_then(|r| r.as_array()).and_then(|rules| rules.last());
    let refs = refs.and_then(|r| r.get("backendRefs")).and_then(|b| b.as_array()).cloned().unwrap_or_default();
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for r in &refs {
        let (Some(name), weight) = (r.get("name").and_then(|n| n.as_str()), r.get("weight").and_then(|w| w.as_u64()))
        else {
            continue;
        };
        let version = by_service.get(name).map(|v| v.to_string()).unwrap_or_else(|| name.to_string());
        *out.entry(version).or_default() += weight.unwrap_or(1) as f64;
    }
    let total: f64 = out.values().sum();
    if total > 0.0 {
        out.values_mut().for_each(|w| *w = *w * 100.0 / total);
    }
    out
}

fn pod_state(p: &PodView, version: &str) -> PodState {
    let status = &p.status;
    let waiting: Vec<&str> =
        status.container_statuses.iter().filter_map(|c| c.state.waiting.as_ref()?.reason.as_deref()).collect();
    let phase = if p.metadata.deletion_timestamp.is_some() {
        PodPhase::Terminating
    } else if waiting.contains(&"CrashLoopBackOff") {
        PodPhase::CrashLoopBackOff
    } else if waiting.iter().any(|r| *r == "ImagePullBackOff" || *r == "ErrImagePull" || *r == "InvalidImageName") {
        PodPhase::ImagePullBackOff
    } else if status.phase.as_deref() == Some("Running") {
        PodPhase::Running
    } else {
        PodPhase::Starting
    };
    PodState {
        name: p.metadata.name.clone().unwrap_or_default(),
        version: version.to_string(),
        phase,
        ready: status.ready,
        restarts: status.container_statuses.iter().map(|c| c.restart_count.max(0) as u32).sum(),
        address: status.pod_ip.clone(),
    }
}
