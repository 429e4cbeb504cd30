//! What shipdeck leaves in the cluster besides the workload: the rollout (the release with its
//! plan, cursor and status) as an annotation on the app's base Deployment, so another console
//! — or this one after a crash — can read it; and a Kubernetes Event per action on that
//! Deployment, so `kubectl get events` tells the story too.

use ::kube::api::{Api, Patch, PostParams};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use serde_json::json;

use super::KubeCluster;
use super::errors::Action;
use super::objects::FIELD_MANAGER;
use crate::cluster::{ClusterError, Target};
use crate::model::{Release, Status};

pub const ROLLOUT_ANNOTATION: &str = "shipdeck.dev/rollout";

/// One line of the cluster's audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// CamelCase, as Kubernetes reasons are: `ReleaseInProgress`, `Step`…
    pub reason: String,
    /// What was done, e.g. `Deploy`, `Step`.
    pub action: String,
    pub note: String,
    pub warning: bool,
}

impl AuditEvent {
    /// The event for a release that changed, e.g. `ReleaseRolledBack` with its cause.
    pub fn for_release(release: &Release, cause: &str) -> Self {
        let status: String = release
            .status
            .as_str()
            .split(['_', '-', ' '])
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .collect();
        Self {
            reason: format!("Release{status}"),
            action: "Release".into(),
            note: format!("{} {}: {cause}", release.id, release.status.as_str()),
            warning: matches!(release.status, Status::Failed | Status::RolledBack | Status::Aborted),
        }
    }
}

impl KubeCluster {
    /// Write `release` (plan, cursor, status…) into the base Deployment's annotation.
    pub async fn record_rollout(&self, t: &Target, release: &Release) -> Result<(), ClusterError> {
        let o = self.objects(t)?;
        let text = serde_json::to_string(release).map_err(|e| ClusterError::Other(e.to_string()))?;
        // The label lets other consoles watch only the bases that carry a rollout (see `live.rs`).
        let body = json!({"metadata": {
            "labels": {super::live::ROLLOUT_STATE_LABEL: "true"},
            "annotations": {ROLLOUT_ANNOTATION: text},
        }});
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let (pp, patch) = (Self::params(), Patch::Merge(&body));
        let name = o.deployment.as_str();
        self.call(t, Action::new("patch", "deployments", name), || api.patch(name, &pp, &patch)).await?;
        Ok(())
    }

    /// The rollout the annotation holds, if any (one shipdeck cannot read counts as none).
    pub async fn read_rollout(&self, t: &Target) -> Result<Option<Release>, ClusterError> {
        let o = self.objects(t)?;
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = o.deployment.as_str();
        let base = self.call(t, Action::new("get", "deployments", name), || api.get(name)).await?;
        let text = base.metadata.annotations.as_ref().and_then(|a| a.get(ROLLOUT_ANNOTATION));
        Ok(text.and_then(|t| serde_json::from_str(t).ok()))
    }

    /// A Kubernetes Event about the app's base Deployment.
    pub async fn record_event(&self, t: &Target, reporter: &str, event: &AuditEvent) -> Result<(), ClusterError> {
        let o = self.objects(t)?;
        let k8s = Event {
            metadata: ObjectMeta { generate_name: Some(format!("{}.", o.deployment)), ..Default::default() },
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: Some(truncate(&event.note, 1024)),
            type_: Some(if event.warning { "Warning" } else { "Normal" }.into()),
            reporting_controller: Some("shipdeck.dev/console".into()),
            reporting_instance: Some(truncate(reporter, 128)),
            regarding: Some(ObjectReference {
                api_version: Some("apps/v1".into()),
                kind: Some("Deployment".into()),
                name: Some(o.deployment.clone()),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let post = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        self.call(t, Action::new("create", "events", &o.deployment), || api.create(&post, &k8s)).await?;
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
