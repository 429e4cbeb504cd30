//! Probes (verification, smoke tests) of one version, by the first of these that applies:
//!
//! 1. the app's own URL, `[apps.kubernetes] verify_url` with the version filled in, requested
//!    directly (the way a user reaches that version);
//! 2. the API server's service proxy to the version's own Service (`<service>-<version>`, made
//!    for apps with an HTTPRoute), `/api/v1/namespaces/<ns>/services/<svc>:<port>/proxy/<path>`;
//! 3. the API server's pod proxy to a ready pod of the version,
//!    `/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy/<path>`.
//!
//! Each needs a ready pod of the version first, so a version still starting is said as such.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Service;

use super::slim::{ContainerView, PodView};
use serde_json::Value;

use super::KubeCluster;
use super::errors::{Action, describe};
use super::objects::version_service_name;
use crate::cluster::{ClusterError, ProbeRequest, ProbeResponse, Target};
use crate::model::KubeObjects;

/// Where one probe goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeRoute {
    /// The app's URL for the version.
    Url(String),
    /// An API server proxy path (service or pod proxy), without the request's path.
    Proxy { base: String, resource: &'static str, name: String },
}

impl KubeCluster {
    pub(super) async fn probe_version(
        &self,
        t: &Target,
        version: &str,
        req: &ProbeRequest,
    ) -> Result<ProbeResponse, ClusterError> {
        let o = self.objects(t)?;
        let state = self.synced_state(t).await?;
        let no_pod = || ClusterError::NoReadyPod { target: t.to_string(), version: version.to_string() };
        let pod_name = state.pods.iter().find(|p| p.version == version && p.ready).ok_or_else(no_pod)?.name.clone();
        let path = if req.path.starts_with('/') { req.path.clone() } else { format!("/{}", req.path) };
        match self.probe_route(t, o, version, &pod_name, &req.path)? {
            ProbeRoute::Url(base) => self.probe_url(t, &format!("{}{path}", base.trim_end_matches('/')), req).await,
            ProbeRoute::Proxy { base, resource, name } => {
                self.probe_proxy(t, &format!("{base}{path}"), resource, &name, req).await
            }
        }
    }

    /// The app's URL, else the version's Service, else the ready pod `pod_name`.
    pub(super) fn probe_route(
        &self,
        t: &Target,
        o: &KubeObjects,
        version: &str,
        pod_name: &str,
        path: &str,
    ) -> Result<ProbeRoute, ClusterError> {
        if let Some(template) = &o.verify_url {
            return Ok(ProbeRoute::Url(crate::model::verify_url_of(template, version)));
        }
        let ns = &self.namespace;
        let svc_name = version_service_name(o, version);
        let services = self.stores.services.state();
        let service = services.iter().find(|s| s.metadata.name.as_deref() == Some(svc_name.as_str()));
        if let Some(port) = service.and_then(|s| service_port(s)) {
            let base = format!("/api/v1/namespaces/{ns}/services/{svc_name}:{port}/proxy");
            return Ok(ProbeRoute::Proxy { base, resource: "services/proxy", name: svc_name });
        }
        let pods = self.stores.pods.state();
        let no_pod = || ClusterError::NoReadyPod { target: t.to_string(), version: version.to_string() };
        let pod: &Arc<PodView> =
            pods.iter().find(|p| p.metadata.name.as_deref() == Some(pod_name)).ok_or_else(no_pod)?;
        let port = probe_port(pod, &o.container).ok_or_else(|| ClusterError::Probe {
            target: t.to_string(),
            path: path.to_string(),
            message: format!(
                "container {} of pod {pod_name} declares no containerPort; shipdeck probes through the first one \
                 (or set [apps.kubernetes] verify_url)",
                o.container
            ),
        })?;
        let base = format!("/api/v1/namespaces/{ns}/pods/{pod_name}:{port}/proxy");
        Ok(ProbeRoute::Proxy { base, resource: "pods/proxy", name: pod_name.to_string() })
    }

    async fn probe_proxy(
        &self,
        t: &Target,
        uri: &str,
        resource: &'static str,
        name: &str,
        req: &ProbeRequest,
    ) -> Result<ProbeResponse, ClusterError> {
        let failed = |message: String| ClusterError::Probe { target: t.to_string(), path: req.path.clone(), message };
        let request = http::Request::builder()
            .method(req.method.as_str())
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(::kube::client::Body::from(req.body.clone().unwrap_or_default().into_bytes()))
            .map_err(|e| failed(e.to_string()))?;
        let limit = Duration::from_millis(req.timeout_ms.max(1));
        let started = tokio::time::Instant::now();
        let exchange = async {
            let response = self.client.send(request).await?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map_err(|e| ::kube::Error::Service(Box::new(e)))?.to_bytes();
            Ok::<_, ::kube::Error>((parts.status.as_u16(), String::from_utf8_lossy(&bytes).to_string()))
        };
        // RBAC names proxying a GET `get`, anything else `create`.
        let verb = if req.method.eq_ignore_ascii_case("GET") { "get" } else { "create" };
        let (code, body) = match tokio::time::timeout(limit, exchange).await {
            Err(_) => {
                let through = if resource == "pods/proxy" { "pod" } else { "service" };
                return Err(failed(format!("no answer through the API server's {through} proxy within {limit:?}")));
            }
            Ok(Err(e)) => return Err(describe(&t.to_string(), &self.namespace, Action::new(verb, resource, name), &e)),
            Ok(Ok(answer)) => answer,
        };
        // The API server's own refusal (RBAC), not the app's: a Status object about pods/services.
        if code == 403 && refused_by_api_server(&body) {
            return Err(ClusterError::Kubernetes {
                target: t.to_string(),
                message: format!(
                    "forbidden: shipdeck may not {verb} {resource} in namespace {} — grant the Role in the README",
                    self.namespace
                ),
            });
        }
        Ok(ProbeResponse { status: code, body, latency_ms: started.elapsed().as_secs_f64() * 1000.0 })
    }

    /// Straight to the app's URL for the version (not through the API server).
    async fn probe_url(&self, t: &Target, url: &str, req: &ProbeRequest) -> Result<ProbeResponse, ClusterError> {
        let failed = |message: String| ClusterError::Probe { target: t.to_string(), path: req.path.clone(), message };
        let client = match self.verify_client.get() {
            Some(c) => c.clone(),
            None => {
                let c = crate::http::client_builder()
                    .build()
                    .map_err(|e| failed(format!("cannot make an HTTP client for {url}: {e}")))?;
                self.verify_client.get_or_init(|| c).clone()
            }
        };
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| failed(format!("{:?} is not an HTTP method", req.method)))?;
        let mut request = client.request(method, url);
        if let Some(body) = &req.body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
        }
        let limit = Duration::from_millis(req.timeout_ms.max(1));
        let started = tokio::time::Instant::now();
        let exchange = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let body = response.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        match tokio::time::timeout(limit, exchange).await {
            Err(_) => Err(failed(format!("no answer from {url} within {limit:?} ([apps.kubernetes] verify_url)"))),
            Ok(Err(e)) => {
                Err(failed(format!("{url} ([apps.kubernetes] verify_url) could not be reached: {}", error_chain(&e))))
            }
            Ok(Ok((status, body))) => {
                Ok(ProbeResponse { status, body, latency_ms: started.elapsed().as_secs_f64() * 1000.0 })
            }
        }
    }
}

/// reqwest's error with its causes ("error sending request: … connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut words = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        words.push_str(": ");
        words.push_str(&s.to_string());
        source = s.source();
    }
    words
}

fn refused_by_api_server(body: &str) -> bool {
    serde_json::from_str::<Value>(body).is_ok_and(|v| {
        v.get("kind").and_then(Value::as_str) == Some("Status")
            && matches!(v.pointer("/details/kind").and_then(Value::as_str), Some("pods" | "services"))
    })
}

/// The Service's first port, by name when it has one.
fn service_port(s: &Service) -> Option<String> {
    let port = s.spec.as_ref()?.ports.as_ref()?.first()?;
    Some(port.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| port.port.to_string()))
}

/// The named container's first port, else the first port any container declares.
fn probe_port(pod: &PodView, container: &str) -> Option<i32> {
    let spec = &pod.spec;
    let first = |c: &ContainerView| c.ports.first().map(|p| p.container_port);
    spec.containers
        .iter()
        .find(|c| c.name == container)
        .and_then(first)
        .or_else(|| spec.containers.iter().find_map(first))
}
