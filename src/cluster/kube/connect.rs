//! From an environment's `cluster.kubernetes` to a running [`KubeCluster`]: the kubeconfig
//! context's credentials, its namespace (unless the estate names one), one request to see that
//! the API server answers, then the watches.

use std::sync::Arc;
use std::time::Duration;

use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};

use super::KubeCluster;
use crate::cluster::Target;
use crate::model::{Environment, KubeObjects};

/// How long the first request may take before the cluster counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The environment's cluster, with its watches started, or why it cannot be used (say it with
/// [`UnavailableCluster`]). `kubeconfig`: a given file's content; `None` reads `$KUBECONFIG` or
/// `~/.kube/config` as kubectl does.
pub async fn connect(
    env: &Environment,
    apps: Vec<(Target, KubeObjects)>,
    kubeconfig: Option<Kubeconfig>,
) -> Result<Arc<KubeCluster>, String> {
    try_connect(env, apps, kubeconfig).await
}

/// A client for an environment's kubeconfig context; nothing is sent yet.
pub struct Connection {
    pub client: Client,
    /// The estate's namespace, else the context's.
    pub namespace: String,
    /// The API server's URL, for messages.
    pub url: String,
    /// "context NAME" or "the current context", for messages.
    pub context: String,
}

/// The environment's [`Connection`]. `kubeconfig` as for [`connect`].
pub async fn client_for(env: &Environment, kubeconfig: Option<Kubeconfig>) -> Result<Connection, String> {
    let settings = env.cluster.kubernetes().cloned().unwrap_or_default();
    let context = context_words(env);
    let options = KubeConfigOptions { context: settings.context.clone(), ..Default::default() };
    let config = match kubeconfig {
        Some(k) => Config::from_custom_kubeconfig(k, &options).await,
        None => Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| {
        format!(
            "environment {} runs on Kubernetes, but {context} of the kubeconfig cannot be used: {e} — set \
             KUBECONFIG, or name a context `kubectl config get-contexts` lists",
            env.name
        )
    })?;
    let url = config.cluster_url.to_string();
    let namespace = settings.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config)
        .map_err(|e| format!("environment {}: cannot make a client for {context} ({url}): {e}", env.name))?;
    Ok(Connection { client, namespace, url, context })
}

fn context_words(env: &Environment) -> String {
    match env.cluster.kubernetes().and_then(|k| k.context.as_ref()) {
        Some(c) => format!("context {c}"),
        None => "the current context".to_string(),
    }
}

async fn try_connect(
    env: &Environment,
    apps: Vec<(Target, KubeObjects)>,
    kubeconfig: Option<Kubeconfig>,
) -> Result<Arc<KubeCluster>, String> {
    let Connection { client, namespace, url, context } = client_for(env, kubeconfig).await?;
    match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(format!(
                "environment {}: cannot reach the Kubernetes API server of {context} at {url}: {e}; restart \
                 shipdeck once it answers",
                env.name
            ));
        }
        Err(_) => {
            return Err(format!(
                "environment {}: the Kubernetes API server of {context} at {url} did not answer within {}s; \
                 restart shipdeck once it answers",
                env.name,
                CONNECT_TIMEOUT.as_secs()
            ));
        }
    }
    let cluster = KubeCluster::new(client, &namespace, apps);
    cluster.start();
    cluster.start_live();
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterSettings, KubernetesCluster};

    fn env(context: Option<&str>) -> Environment {
        let text = "[[environments]]\nname = \"prod\"\n[[apps]]\nname = \"web\"\n[[apps.versions]]\nversion = \"1\"\n";
        let mut e = crate::config::Estate::parse(text, "t.toml").unwrap().environments.remove(0);
        e.cluster = ClusterSettings::Kubernetes(KubernetesCluster {
            context: context.map(String::from),
            namespace: Some("shop".into()),
        });
        e
    }

    fn kubeconfig(server: &str) -> Kubeconfig {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: kind-prod\nclusters:\n- name: kind\n  cluster:\n    server: {server}\n\
             contexts:\n- name: kind-prod\n  context:\n    cluster: kind\n    user: me\nusers:\n- name: me\n  user:\n    token: t\n"
        );
        Kubeconfig::from_yaml(&yaml).unwrap()
    }

    async fn message(c: Result<Arc<KubeCluster>, String>) -> String {
        match c {
            Ok(_) => panic!("connected to nothing"),
            Err(m) => m,
        }
    }

    #[tokio::test]
    async fn a_context_the_kubeconfig_lacks_is_named() {
        let c = connect(&env(Some("gke-prod")), vec![], Some(kubeconfig("http://127.0.0.1:9"))).await;
        let m = message(c).await;
        assert!(m.contains("context gke-prod of the kubeconfig cannot be used") && m.contains("KUBECONFIG"), "{m}");
    }

    #[tokio::test]
    async fn an_api_server_that_is_not_there_is_said_plainly() {
        // A loopback port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = connect(&env(None), vec![], Some(kubeconfig(&format!("http://127.0.0.1:{port}")))).await;
        let m = message(c).await;
        assert!(m.contains("cannot reach the Kubernetes API server of the current context at http://127.0.0.1"), "{m}");
    }
}
