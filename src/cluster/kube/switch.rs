//! Moving a Kubernetes environment to another kubeconfig context or namespace while shipdeck
//! runs (`:ctx` and `:ns` in the console, as in k9s). A new [`KubeCluster`] is made for the
//! environment, checked to answer, and put in place of the old one, whose watches stop with
//! it; when the new one cannot be used the environment stays where it was.
//!
//! `:ctx` keeps the namespace the environment uses now (the apps usually live in the same
//! namespace on every cluster); `:ns` keeps the context.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ::kube::Client;
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use async_trait::async_trait;

use super::argo_watch::ArgoWatches;
use super::{CONNECT_TIMEOUT, KubeCluster};
use crate::cluster::routed::EstateCluster;
use crate::config::Estate;
use crate::model::is_dns_label;

/// Where a Kubernetes environment points now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubePlace {
    pub context: String,
    pub namespace: String,
}

/// The Kubernetes cluster each environment uses now, kept up to date by [`Switcher::switch`],
/// for the tasks that write to it as releases go (the rollout annotation, audit Events). Weak:
/// the engine's [`EstateCluster`] owns the clusters, so one switched away from stops with it.
#[derive(Clone, Default)]
pub struct CurrentClusters(Arc<Mutex<BTreeMap<String, std::sync::Weak<KubeCluster>>>>);

impl CurrentClusters {
    pub fn set(&self, env: &str, cluster: &Arc<KubeCluster>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(env.to_string(), Arc::downgrade(cluster));
    }

    /// The cluster `env` uses now, if it is on Kubernetes and connected.
    pub fn get(&self, env: &str) -> Option<Arc<KubeCluster>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(env).and_then(std::sync::Weak::upgrade)
    }
}

/// Clients for the kubeconfig's contexts.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The kubeconfig's contexts and its current one.
    fn contexts(&self) -> (Vec<String>, Option<String>);
    /// The namespace a context names, if any.
    fn namespace_of(&self, context: &str) -> Option<String>;
    /// A client for `context`.
    async fn client(&self, context: &str) -> Result<Client, String>;
}

/// The kubeconfig kubectl reads (`$KUBECONFIG`, else `~/.kube/config`), read again on each
/// call so that a context added meanwhile can be switched to.
pub struct KubeconfigConnector;

impl KubeconfigConnector {
    fn read() -> Option<Kubeconfig> {
        Kubeconfig::read().map_err(|e| tracing::debug!("reading the kubeconfig: {e}")).ok()
    }
}

#[async_trait]
impl Connector for KubeconfigConnector {
    fn contexts(&self) -> (Vec<String>, Option<String>) {
        match Self::read() {
            Some(k) => (k.contexts.iter().map(|c| c.name.clone()).collect(), k.current_context.clone()),
            None => (Vec::new(), None),
        }
    }

    fn namespace_of(&self, context: &str) -> Option<String> {
        let k = Self::read()?;
        let c = k.contexts.iter().find(|c| c.name == context)?;
        c.context.as_ref()?.namespace.clone()
    }

    async fn client(&self, context: &str) -> Result<Client, String> {
        let options = KubeConfigOptions { context: Some(context.to_string()), ..Default::default() };
        let config = ::kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| format!("context {context} of the kubeconfig cannot be used: {e}"))?;
        Client::try_from(config).map_err(|e| format!("cannot make a client for context {context}: {e}"))
    }
}

/// The estate's Kubernetes environments, where each points now, and how to move one.
pub struct Switcher {
    estate: Arc<Estate>,
    clusters: Arc<EstateCluster>,
    connector: Box<dyn Connector>,
    places: Mutex<BTreeMap<String, KubePlace>>,
    /// The kubeconfig's contexts as last read (at start and on each switch).
    contexts: Mutex<Vec<String>>,
    /// Serializes switches: two at once would race to replace the same environment's cluster.
    switching: tokio::sync::Mutex<()>,
    /// The environments' Argo Rollouts watches, moved with them (when the console watches them).
    argo: Option<Arc<ArgoWatches>>,
    /// The clusters the audit writer follows, moved with a switch.
    current: Option<CurrentClusters>,
}

impl Switcher {
    /// `clusters` holds the environments' clusters as the estate placed them.
    pub fn new(estate: Arc<Estate>, clusters: Arc<EstateCluster>, connector: Box<dyn Connector>) -> Self {
        let (contexts, current) = connector.contexts();
        let mut places = BTreeMap::new();
        for env in estate.environments.iter() {
            let Some(k) = env.cluster.kubernetes() else { continue };
            let context = k.context.clone().or_else(|| current.clone()).unwrap_or_else(|| "(none)".into());
            let namespace =
                k.namespace.clone().or_else(|| connector.namespace_of(&context)).unwrap_or_else(|| "default".into());
            places.insert(env.name.clone(), KubePlace { context, namespace });
        }
        Self {
            estate,
            clusters,
            connector,
            places: Mutex::new(places),
            contexts: Mutex::new(contexts),
            switching: Default::default(),
            argo: None,
            current: None,
        }
    }

    /// Keep `current` pointing at each switched environment's new cluster.
    pub fn with_current(mut self, current: CurrentClusters) -> Self {
        self.current = Some(current);
        self
    }

    /// Also watch each environment's Argo Rollouts, and move that watch with a switch.
    pub fn with_argo(mut self, argo: Arc<ArgoWatches>) -> Self {
        self.argo = Some(argo);
        self
    }

    /// The Argo Rollouts watches, when the console has them.
    pub fn argo(&self) -> Option<&Arc<ArgoWatches>> {
        self.argo.as_ref()
    }

    /// Each Kubernetes environment's context and namespace.
    pub fn places(&self) -> BTreeMap<String, KubePlace> {
        self.places.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The kubeconfig's contexts.
    pub fn contexts(&self) -> Vec<String> {
        self.contexts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Point `env` at `context` and/or `namespace` (`None` keeps what it uses now).
    pub async fn switch(
        &self,
        env: &str,
        context: Option<String>,
        namespace: Option<String>,
    ) -> Result<KubePlace, String> {
        let _one_at_a_time = self.switching.lock().await;
        let Some(now) = self.places().get(env).cloned() else {
            let kube: Vec<String> = self.places().into_keys().collect();
            return Err(match self.estate.env(env) {
                Some(_) => format!(
                    "environment {env} runs on the local cluster; :ctx and :ns move a Kubernetes environment ({})",
                    if kube.is_empty() { "the estate has none".to_string() } else { kube.join(", ") }
                ),
                None => format!("unknown environment `{env}`"),
            });
        };
        let next = KubePlace {
            context: context.unwrap_or_else(|| now.context.clone()),
            namespace: namespace.unwrap_or_else(|| now.namespace.clone()),
        };
        if !is_dns_label(&next.namespace) {
            return Err(format!(
                "`{}` is not a namespace name (lowercase letters, digits and `-`, at most 63)",
                next.namespace
            ));
        }
        let (contexts, _) = self.connector.contexts();
        *self.contexts.lock().unwrap_or_else(|e| e.into_inner()) = contexts.clone();
        if !contexts.contains(&next.context) {
            return Err(format!(
                "the kubeconfig has no context `{}` (contexts: {})",
                next.context,
                if contexts.is_empty() { "none".to_string() } else { contexts.join(", ") }
            ));
        }
        let client = self.connector.client(&next.context).await?;
        let where_ = format!("context {} namespace {}", next.context, next.namespace);
        match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(format!("{env} stays where it was: cannot reach the API server of {where_}: {e}"));
            }
            Err(_) => {
                return Err(format!(
                    "{env} stays where it was: the API server of {where_} did not answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                ));
            }
        }
        let apps = self
            .estate
            .targets()
            .into_iter()
            .filter(|(t, _)| t.env == env)
            .map(|(t, s)| {
                let objects = s.kubernetes.resolve(&s.name);
                (t, objects)
            })
            .collect();
        let cluster = KubeCluster::new(client, &next.namespace, apps);
        cluster.start();
        cluster.start_live();
        if let Some(argo) = &self.argo {
            argo.watch(env, cluster.client(), &next.namespace);
        }
        if let Some(current) = &self.current {
            current.set(env, &cluster);
        }
        self.clusters.replace(env, cluster);
        self.places.lock().unwrap_or_else(|e| e.into_inner()).insert(env.to_string(), next.clone());
        Ok(next)
    }
}
