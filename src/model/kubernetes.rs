//! Where an environment's workloads run, and what an app's Kubernetes objects are called.

use serde::{Deserialize, Serialize};

/// An environment's `cluster` key: the embedded local cluster (the default) or a Kubernetes
/// namespace reached through a kubeconfig context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClusterSettings {
    #[default]
    Local,
    /// `cluster = { kubernetes = { context = "kind-prod", namespace = "shop" } }`
    Kubernetes(KubernetesCluster),
}

impl ClusterSettings {
    pub fn kubernetes(&self) -> Option<&KubernetesCluster> {
        match self {
            ClusterSettings::Kubernetes(k) => Some(k),
            ClusterSettings::Local => None,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, ClusterSettings::Local)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesCluster {
    /// The kubeconfig context; absent means the kubeconfig's current context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The namespace the apps live in; absent means the context's namespace (or `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `[apps.kubernetes]`: the names of the app's objects in the environment's namespace. Every
/// key is optional; see [`KubernetesApp::resolve`] for the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesApp {
    /// The base Deployment whose pod template every version copies. Default: the app's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// The container whose image tag is the version. Default: the app's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The Service that takes the app's traffic. Default: the app's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The Service a blue-green preview goes through. Default: `<service>-preview`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    /// A Gateway API HTTPRoute whose backend weights and header matches carry canary and A/B
    /// traffic; without one, a canary's weight is approximated by replica counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<String>,
    /// Where verification and smoke tests reach one version, e.g.
    /// `https://web-{slug}.staging.example.com` (`{version}`: the version as written; `{slug}`:
    /// as in object names, `1.1.0` → `1-1-0`). Default: through the API server's proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_url: Option<String>,
}

/// An app's object names with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeObjects {
    pub deployment: String,
    pub container: String,
    pub service: String,
    pub preview_service: String,
    pub http_route: Option<String>,
    /// The URL template probes go to, when the app names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_url: Option<String>,
}

impl KubernetesApp {
    pub fn resolve(&self, app: &str) -> KubeObjects {
        let service = self.service.clone().unwrap_or_else(|| app.to_string());
        KubeObjects {
            deployment: self.deployment.clone().unwrap_or_else(|| app.to_string()),
            container: self.container.clone().unwrap_or_else(|| app.to_string()),
            preview_service: self.preview_service.clone().unwrap_or_else(|| format!("{service}-preview")),
            service,
            http_route: self.http_route.clone(),
            verify_url: self.verify_url.clone(),
        }
    }
}

/// A DNS-1123 label (`kubectl` names of Services, containers, and what Deployments should be):
/// lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The version as in object names: lowercase, `.` `_` `+` and the like as `-` (`1.1.0` → `1-1-0`).
pub fn version_slug(version: &str) -> String {
    let s: String =
        version.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    s.trim_matches('-').to_string()
}

/// `verify_url` for one version: `{version}` and `{slug}` filled in.
pub fn verify_url_of(template: &str, version: &str) -> String {
    template.replace("{version}", version).replace("{slug}", &version_slug(version))
}

/// A `verify_url` template must be an http(s) URL once filled in, and name the version (each
/// version is verified at its own address); the reason if not.
pub fn check_verify_url(template: &str) -> Result<(), String> {
    if !template.contains("{version}") && !template.contains("{slug}") {
        return Err("names no version: put {version} or {slug} where each version's address differs \
                    (e.g. https://web-{slug}.staging.example.com)"
            .into());
    }
    let filled = verify_url_of(template, "1.0.0");
    if filled.contains('{') || filled.contains('}') {
        return Err("only {version} and {slug} can be filled in".into());
    }
    match reqwest::Url::parse(&filled) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        Ok(u) => Err(format!("must be an http or https URL with a host, not {}:", u.scheme())),
        Err(e) => Err(format!("is not a URL ({e})")),
    }
}
