//! Contract tests in kube-rs's tower-test pattern: the client talks to a mock service, and each
//! test plays the API server, asserting every request's method, path, query, patch type and
//! body before answering it.

mod argo;
mod argo_watch;
mod failures;
mod lease;
mod live;
mod more_failures;
mod native;
mod probes;
mod readonly;
mod reads;
mod record;
mod switch;
mod writes;

use std::collections::BTreeMap;
use std::sync::Arc;

use ::kube::Client;
use ::kube::client::Body;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::KubeCluster;
use crate::cluster::Target;
use crate::model::KubeObjects;

pub const NS: &str = "shop";
pub const MERGE: &str = "application/merge-patch+json";

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Responder = tower_test::mock::SendResponse<Response<Body>>;

pub fn target() -> &'static Target {
    static TARGET: std::sync::LazyLock<Target> = std::sync::LazyLock::new(|| Target::new("prod", "web"));
    &TARGET
}

pub fn objects(http_route: bool) -> KubeObjects {
    let mut o = crate::model::KubernetesApp::default().resolve("web");
    if http_route {
        o.http_route = Some("web".into());
    }
    o
}

/// A client (default namespace `NS`) that talks to the returned fake API server.
pub fn client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, NS), ApiServer { handle, held: Vec::new() })
}

/// A cluster whose client talks to the returned fake API server.
pub fn cluster(http_route: bool) -> (Arc<KubeCluster>, ApiServer) {
    let (client, server) = client();
    (KubeCluster::new(client, NS, vec![(target().clone(), objects(http_route))]), server)
}

pub struct ApiServer {
    handle: Handle,
    /// Requests left unanswered on purpose (a watch that stays quiet, a request that times out).
    held: Vec<Responder>,
}

/// One request as the API server saw it.
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub body: Value,
    respond: Responder,
}

impl Exchange {
    pub fn reply(self, code: u16, body: Value) {
        let response = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string().into_bytes()));
        match response {
            Ok(r) => self.respond.send_response(r),
            Err(e) => panic!("building the response: {e}"),
        }
    }

    /// Answer with these lines as a watch stream.
    pub fn stream(self, lines: &[Value]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        match Response::builder().status(200).body(Body::from(text.into_bytes())) {
            Ok(r) => self.respond.send_response(r),
            Err(e) => panic!("building the response: {e}"),
        }
    }

    /// Never answer (until the server is dropped).
    pub fn hold(self, server: &mut ApiServer) {
        server.held.push(self.respond);
    }

    pub fn is_watch(&self) -> bool {
        self.query.get("watch").is_some_and(|w| w == "true")
    }
}

impl ApiServer {
    pub async fn next(&mut self) -> Exchange {
        let Some((request, respond)) = self.handle.next_request().await else { panic!("the client went away") };
        let (parts, body) = request.into_parts();
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => panic!("reading the request body: {e}"),
        };
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        let query = parts
            .uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (k.to_string(), v.replace("%2F", "/").replace("%3D", "="))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Exchange {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query,
            content_type: parts.headers.get("content-type").and_then(|v| v.to_str().ok()).map(String::from),
            accept: parts.headers.get("accept").and_then(|v| v.to_str().ok()).map(String::from),
            body,
            respond,
        }
    }

    /// The next request, which must be `method path`.
    pub async fn expect(&mut self, method: &str, path: &str) -> Exchange {
        let x = self.next().await;
        assert_eq!((x.method.as_str(), x.path.as_str()), (method, path), "query {:?} body {}", x.query, x.body);
        x
    }

    /// A merge patch by field manager `shipdeck` of `path`, whose body must be `body`.
    pub async fn expect_merge_patch(&mut self, path: &str, body: Value) -> Exchange {
        let x = self.expect("PATCH", path).await;
        assert_eq!(x.content_type.as_deref(), Some(MERGE), "patch type of {path}");
        assert_eq!(x.query.get("fieldManager").map(String::as_str), Some("shipdeck"), "field manager of {path}");
        assert_eq!(x.body, body, "patch body of {path}");
        x
    }

    /// No request arrives (the clock is paused: this returns as soon as everything is idle).
    pub async fn expect_silence(&mut self) {
        let next = tokio::time::timeout(std::time::Duration::from_secs(60), self.handle.next_request()).await;
        assert!(
            next.is_err(),
            "an unexpected request was sent: {:?}",
            next.ok().flatten().map(|(r, _)| r.uri().clone())
        );
    }
}

pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code})
}

pub fn deployments(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}")
}

pub fn services(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/services/{name}")
}

pub fn routes(name: &str) -> String {
    format!("/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes/{name}")
}

/// The app's base Deployment: the template every version copies.
pub fn base_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": "7"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": 120,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "web", "image": "registry.local:5000/shop/web:1.0.0", "ports": [{"containerPort": 8080}]},
                    {"name": "proxy", "image": "envoyproxy/envoy:v1.30"},
                ]},
            },
        },
    })
}

pub fn base_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": "3"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    })
}

/// A route as a person writes it: one rule, a path match, the app's Service as backend.
pub fn route(resource_version: &str, rules: Value, annotations: Option<Value>) -> Value {
    let mut meta = json!({"name": "web", "namespace": NS, "resourceVersion": resource_version});
    if let Some(a) = annotations {
        meta["annotations"] = a;
    }
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": meta,
        "spec": {"parentRefs": [{"name": "public"}], "rules": rules},
    })
}

pub fn path_match() -> Value {
    json!([{"path": {"type": "PathPrefix", "value": "/"}}])
}
