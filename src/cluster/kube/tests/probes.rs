//! Where a probe goes: the app's `verify_url` (straight there, over loopback HTTP here), else the
//! version's own Service through the API server's service proxy, else a ready pod through the
//! pod proxy (that one is in `reads.rs`).

use std::sync::{Arc, Mutex};

use ::kube::runtime::watcher::Event;
use serde_json::json;

use super::*;
use crate::cluster::{Cluster, ClusterError, ProbeRequest};

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> T {
    match serde_json::from_value(v) {
        Ok(t) => t,
        Err(e) => panic!("fixture does not parse: {e}"),
    }
}

fn labels(version: &str) -> Value {
    json!({"app.kubernetes.io/name": "web", "shipdeck.dev/version": version})
}

/// Version 1.1.0 with one ready pod; with `service`, its own Service `web-1-1-0` too.
fn feed_version(c: &KubeCluster, service: Option<Value>) {
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web-1-1-0", "namespace": NS, "resourceVersion": "1", "labels": labels("1.1.0")},
        "spec": {"replicas": 1, "selector": {}, "template": {}},
        "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1},
    });
    let p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1-1-0-a", "namespace": NS, "resourceVersion": "1", "labels": labels("1.1.0")},
        "spec": {"containers": [{"name": "web", "image": "x", "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": "10.1.2.3",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "image": "x",
                                          "imageID": "", "state": {"running": {}}}]},
    });
    c.feed(|w| {
        w.deployments.apply_watcher_event(&Event::Apply(parse(d)));
        w.pods.apply_watcher_event(&Event::Apply(parse(p)));
        if let Some(s) = service {
            w.services.apply_watcher_event(&Event::Apply(parse(s)));
        }
    });
}

fn version_service(port: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web-1-1-0", "namespace": NS, "resourceVersion": "2", "labels": labels("1.1.0")},
        "spec": {"selector": labels("1.1.0"), "ports": [port]},
    })
}

fn get(path: &str) -> ProbeRequest {
    ProbeRequest { method: "GET".into(), path: path.into(), body: None, timeout_ms: 2000 }
}

/// With an HTTPRoute each version has its own Service: the probe goes through the API server's
/// service proxy to it, by the port's name (or number), with the request's method and body.
#[tokio::test]
async fn a_version_with_its_own_service_is_probed_through_the_service_proxy() {
    let (c, mut api) = cluster(true);
    feed_version(&c, Some(version_service(json!({"name": "http", "port": 80, "targetPort": 8080}))));
    let server = async {
        let x = api.expect("GET", &format!("/api/v1/namespaces/{NS}/services/web-1-1-0:http/proxy/health")).await;
        x.reply(200, json!({"status": "healthy"}));
    };
    let request = get("/health");
    let (result, ()) = tokio::join!(c.probe(target(), "1.1.0", &request), server);
    assert_eq!(result.unwrap().status, 200);

    let create = ProbeRequest {
        method: "POST".into(),
        path: "api/v1/users".into(),
        body: Some("{\"name\":\"smoke\"}".into()),
        timeout_ms: 2000,
    };
    let server = async {
        let x =
            api.expect("POST", &format!("/api/v1/namespaces/{NS}/services/web-1-1-0:http/proxy/api/v1/users")).await;
        assert_eq!(x.body, json!({"name": "smoke"}));
        x.reply(201, json!({"id": 1}));
    };
    let (result, ()) = tokio::join!(c.probe(target(), "1.1.0", &create), server);
    assert_eq!(result.unwrap().status, 201);

    // RBAC calls a proxied POST `create`: the refusal names it.
    let server = async {
        let refusal = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                             "code": 403, "details": {"name": "web-1-1-0", "kind": "services"}});
        api.expect("POST", &format!("/api/v1/namespaces/{NS}/services/web-1-1-0:http/proxy/api/v1/users"))
            .await
            .reply(403, refusal);
    };
    let (result, ()) = tokio::join!(c.probe(target(), "1.1.0", &create), server);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("forbidden: shipdeck may not create services/proxy in namespace shop"), "{text}");
}

#[tokio::test]
async fn a_service_port_without_a_name_is_proxied_by_number() {
    let (c, mut api) = cluster(true);
    feed_version(&c, Some(version_service(json!({"port": 8080}))));
    let server = async {
        api.expect("GET", &format!("/api/v1/namespaces/{NS}/services/web-1-1-0:8080/proxy/ready"))
            .await
            .reply(200, json!({}));
    };
    let request = get("/ready");
    let (result, ()) = tokio::join!(c.probe(target(), "1.1.0", &request), server);
    assert_eq!(result.unwrap().status, 200);
}

/// Without a Service of its own (no HTTPRoute), a ready pod through the pod proxy.
#[tokio::test]
async fn without_a_service_of_its_own_the_pod_proxy_is_used() {
    let (c, mut api) = cluster(false);
    feed_version(&c, None);
    let server = async {
        api.expect("GET", &format!("/api/v1/namespaces/{NS}/pods/web-1-1-0-a:8080/proxy/health"))
            .await
            .reply(200, json!({}));
    };
    let request = get("/health");
    let (result, ()) = tokio::join!(c.probe(target(), "1.1.0", &request), server);
    assert_eq!(result.unwrap().status, 200);
}

/// A loopback HTTP server standing in for the app's per-version hostnames.
async fn app_server() -> (String, Arc<Mutex<Vec<(String, String, String)>>>) {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{Method, Uri};
    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;
    async fn answer(
        State(seen): State<Seen>,
        method: Method,
        uri: Uri,
        body: Bytes,
    ) -> (axum::http::StatusCode, String) {
        if let Ok(mut s) = seen.lock() {
            s.push((method.to_string(), uri.path().to_string(), String::from_utf8_lossy(&body).to_string()));
        }
        let code = if uri.path().ends_with("/health") { 200 } else { 503 };
        (axum::http::StatusCode::from_u16(code).unwrap_or_default(), format!("{{\"path\":\"{}\"}}", uri.path()))
    }
    let seen: Seen = Arc::default();
    let app = axum::Router::new().fallback(answer).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn cluster_with_url(url: &str) -> (Arc<KubeCluster>, ApiServer) {
    let (client, server) = client();
    let mut o = objects(true);
    o.verify_url = Some(url.to_string());
    (KubeCluster::new(client, NS, vec![(target().clone(), o)]), server)
}

/// The app's `verify_url` wins over both proxies: the request goes straight there, the version
/// filled in, and the API server hears nothing.
#[tokio::test]
async fn an_app_url_is_probed_directly_with_the_version_filled_in() {
    let (base, seen) = app_server().await;
    let (c, mut api) = cluster_with_url(&format!("{base}/v/{{slug}}/"));
    feed_version(&c, Some(version_service(json!({"name": "http", "port": 80}))));
    let answer = c.probe(target(), "1.1.0", &get("/health")).await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "{\"path\":\"/v/1-1-0/health\"}"));
    let post = ProbeRequest {
        method: "POST".into(),
        path: "/api/v1/users".into(),
        body: Some("{\"name\":\"smoke\"}".into()),
        timeout_ms: 2000,
    };
    assert_eq!(c.probe(target(), "1.1.0", &post).await.unwrap().status, 503, "the app's own answer");
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(
        seen,
        vec![
            ("GET".into(), "/v/1-1-0/health".into(), String::new()),
            ("POST".into(), "/v/1-1-0/api/v1/users".into(), "{\"name\":\"smoke\"}".into()),
        ]
    );
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), api.next()).await;
    assert!(quiet.is_err(), "nothing went through the API server");
}

#[tokio::test]
async fn an_app_url_that_does_not_answer_is_named_with_its_key() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (c, _api) = cluster_with_url(&format!("http://127.0.0.1:{port}/{{version}}"));
    feed_version(&c, None);
    let err = c.probe(target(), "1.1.0", &get("/health")).await.unwrap_err();
    assert!(matches!(err, ClusterError::Probe { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "http://127.0.0.1:{port}/1.1.0/health ([apps.kubernetes] verify_url) could not be reached"
        )),
        "{text}"
    );
}
