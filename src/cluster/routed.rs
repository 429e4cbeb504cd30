//! One `Cluster` for the whole estate: each environment's calls go to the cluster it runs on
//! (the local one, or its Kubernetes namespace).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tokio::sync::watch;

use super::*;

pub struct EstateCluster {
    local: Arc<dyn Cluster>,
    by_env: RwLock<BTreeMap<String, Arc<dyn Cluster>>>,
    /// An environment's cluster was replaced: whoever waits for news waits on the new one.
    replaced: tokio::sync::Notify,
}

impl EstateCluster {
    /// `by_env` names the environments that do not run on `local`.
    pub fn new(local: Arc<dyn Cluster>, by_env: BTreeMap<String, Arc<dyn Cluster>>) -> Self {
        Self { local, by_env: RwLock::new(by_env), replaced: tokio::sync::Notify::new() }
    }

    /// From now on `env` runs on `cluster` (a Kubernetes environment moved to another context
    /// or namespace); calls already under way finish on the cluster they started on.
    pub fn replace(&self, env: &str, cluster: Arc<dyn Cluster>) {
        self.by_env.write().unwrap_or_else(|e| e.into_inner()).insert(env.to_string(), cluster);
        self.replaced.notify_one();
    }

    fn pick(&self, t: &Target) -> Arc<dyn Cluster> {
        self.by_env.read().unwrap_or_else(|e| e.into_inner()).get(&t.env).unwrap_or(&self.local).clone()
    }
}

#[async_trait]
impl Cluster for EstateCluster {
    async fn scale(&self, t: &Target, version: &str, replicas: u32) -> Result<(), ClusterError> {
        self.pick(t).scale(t, version, replicas).await
    }

    async fn restart(&self, t: &Target, version: &str) -> Result<(), ClusterError> {
        self.pick(t).restart(t, version).await
    }

    async fn set_routing(&self, t: &Target, routing: &Routing) -> Result<(), ClusterError> {
        self.pick(t).set_routing(t, routing).await
    }

    async fn state(&self, t: &Target) -> Result<WorkloadState, ClusterError> {
        self.pick(t).state(t).await
    }

    async fn watch(&self, t: &Target) -> Result<watch::Receiver<WorkloadState>, ClusterError> {
        self.pick(t).watch(t).await
    }

    async fn probe(&self, t: &Target, version: &str, req: &ProbeRequest) -> Result<ProbeResponse, ClusterError> {
        self.pick(t).probe(t, version, req).await
    }

    async fn claim(&self, t: &Target, holder: &str) -> Result<Option<Claim>, ClusterError> {
        self.pick(t).claim(t, holder).await
    }

    fn news(&self, t: &Target) -> ClusterNews {
        self.pick(t).news(t)
    }

    fn cluster_events(&self) -> Vec<ClusterEvent> {
        let clusters: Vec<Arc<dyn Cluster>> =
            self.by_env.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut all: Vec<ClusterEvent> = clusters.iter().flat_map(|c| c.cluster_events()).collect();
        all.sort_by_key(|a| a.at);
        all
    }

    async fn news_changed(&self) {
        let clusters: Vec<Arc<dyn Cluster>> =
            self.by_env.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        if clusters.is_empty() {
            self.replaced.notified().await;
            return;
        }
        // Not empty: select_all would panic on no futures.
        let any = futures::future::select_all(clusters.iter().map(|c| c.news_changed()));
        tokio::select! {
            _ = any => {}
            _ = self.replaced.notified() => {}
        }
    }

    fn native_rollouts(&self, t: &Target) -> bool {
        self.pick(t).native_rollouts(t)
    }

    async fn native_rollout(&self, t: &Target, version: &str, rollout: &NativeRollout) -> Result<(), ClusterError> {
        self.pick(t).native_rollout(t, version, rollout).await
    }

    async fn native_revisions(&self, t: &Target) -> Result<Vec<NativeRevision>, ClusterError> {
        self.pick(t).native_revisions(t).await
    }

    async fn native_undo(&self, t: &Target, to: &UndoTarget) -> Result<Option<UndoOutcome>, ClusterError> {
        self.pick(t).native_undo(t, to).await
    }
}

/// A cluster that could not be reached when shipdeck started: every call says why, so the
/// environment's commands fail plainly (exit 3) while the others keep working.
pub struct UnavailableCluster {
    pub message: String,
}

impl UnavailableCluster {
    fn err(&self, t: &Target) -> ClusterError {
        ClusterError::Unreachable { target: t.to_string(), message: self.message.clone() }
    }
}

#[async_trait]
impl Cluster for UnavailableCluster {
    async fn scale(&self, t: &Target, _: &str, _: u32) -> Result<(), ClusterError> {
        Err(self.err(t))
    }

    async fn restart(&self, t: &Target, _: &str) -> Result<(), ClusterError> {
        Err(self.err(t))
    }

    async fn set_routing(&self, t: &Target, _: &Routing) -> Result<(), ClusterError> {
        Err(self.err(t))
    }

    async fn state(&self, t: &Target) -> Result<WorkloadState, ClusterError> {
        Err(self.err(t))
    }

    async fn watch(&self, t: &Target) -> Result<watch::Receiver<WorkloadState>, ClusterError> {
        Err(self.err(t))
    }

    async fn probe(&self, t: &Target, _: &str, _: &ProbeRequest) -> Result<ProbeResponse, ClusterError> {
        Err(self.err(t))
    }

    async fn claim(&self, t: &Target, _: &str) -> Result<Option<Claim>, ClusterError> {
        Err(self.err(t))
    }
}
