//! `shipdeck argo …` through the real binary: the refusals that need no cluster, an API server
//! that is not there (exit 3), and a fake API server on loopback that records what it is sent.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use common::{Shipdeck, file};
use serde_json::{Value, json};

const ESTATE: &str = r#"
[[environments]]
name = "dev"

[[environments]]
name = "prod"
cluster = { kubernetes = { namespace = "shop" } }

[[apps]]
name = "web"
replicas = 1
initial_version = "1.0.0"

[[apps.versions]]
version = "1.0.0"
"#;

/// One request the fake API server saw: method, path and query, content type, body.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// A loopback HTTP server that answers like an API server with one Rollout `web` in `shop`.
struct FakeApi {
    url: String,
    seen: Seen,
    _runtime: tokio::runtime::Runtime,
}

async fn answer(
    State(seen): State<Seen>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let path = uri.path().to_string();
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    if let Ok(mut all) = seen.lock() {
        all.push((method.to_string(), format!("{path}{query}"), content_type, String::from_utf8_lossy(&body).into()));
    }
    let rollout = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "generation": 2},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}},
        "status": {"phase": "Paused", "message": "CanaryPauseStep", "observedGeneration": "2", "currentStepIndex": 1,
                   "stableRS": "s1", "currentPodHash": "c2", "availableReplicas": 4, "pauseConditions": [{"reason": "CanaryPauseStep"}]},
    });
    let (code, body) = match (method.as_str(), path.as_str()) {
        ("GET", "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts") => {
            (200, json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": [rollout]}))
        }
        ("GET", "/apis/apps/v1/namespaces/shop/replicasets") => {
            (200, json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []}))
        }
        (_, "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/web")
        | (_, "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/web/status") => (200, rollout),
        _ => (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                   "message": format!("{path} not found")}),
        ),
    };
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body))
}

fn fake_api() -> FakeApi {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let seen: Seen = Arc::default();
    let app = Router::new().fallback(answer).with_state(seen.clone());
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move { axum::serve(listener, app).await });
    FakeApi { url, seen, _runtime: runtime }
}

struct Setup {
    s: Shipdeck,
    estate: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
}

fn setup(server: &str) -> Setup {
    let s = Shipdeck::new();
    let estate = file(s.data_dir(), "estate.toml", ESTATE);
    let yaml = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: kind\nclusters:\n- name: kind\n  cluster:\n    server: {server}\n\
         contexts:\n- name: kind\n  context:\n    cluster: kind\n    user: me\nusers:\n- name: me\n  user:\n    token: t\n"
    );
    let kubeconfig = file(s.data_dir(), "kubeconfig.yaml", &yaml);
    Setup { s, estate, kubeconfig }
}

impl Setup {
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["--estate", self.estate.to_str().unwrap()];
        all.extend_from_slice(args);
        let o = self.s.cmd(&all).env("KUBECONFIG", &self.kubeconfig).output().expect("run shipdeck");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    }
}

fn closed_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_local_environment_or_an_unknown_one_is_bad_input() {
    let t = setup(&closed_port());
    let (code, _, err) = t.run(&["argo", "list", "--env", "dev"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("environment dev runs on the embedded local cluster, not Kubernetes"), "{err}");
    let (code, _, err) = t.run(&["argo", "promote", "web", "--env", "staging"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no environment `staging`"), "{err}");
}

#[test]
fn readonly_and_unconfirmed_destructive_actions_are_refused_before_any_request() {
    let api = fake_api();
    let t = setup(&api.url);
    let (code, _, err) = t.run(&["--readonly", "argo", "retry", "web", "--env", "prod"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("read-only"), "{err}");
    for action in ["abort", "promote-full", "undo"] {
        let (code, _, err) = t.run(&["argo", action, "web", "--env", "prod"]);
        assert_eq!(code, 2, "{action}: {err}");
        assert!(err.contains("pass --yes to confirm"), "{action}: {err}");
    }
    let (code, _, err) = t.run(&["argo", "undo", "web", "--env", "prod", "--to-revision", "0"]);
    assert_eq!(code, 2, "revisions count from 1: {err}");
    assert!(api.seen.lock().unwrap().is_empty(), "nothing was sent");
}

#[test]
fn an_api_server_that_is_not_there_is_exit_3() {
    let t = setup(&closed_port());
    let (code, _, err) = t.run(&["argo", "list", "--env", "prod"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach the Kubernetes API server to list rollouts"), "{err}");
}

#[test]
fn list_shows_the_rollouts_as_json_lines_and_as_a_table() {
    let api = fake_api();
    let t = setup(&api.url);
    let (code, out, err) = t.run(&["--json", "argo", "list", "--env", "prod"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    let ro = &lines[0];
    assert_eq!(
        (ro["type"].as_str(), ro["env"].as_str(), ro["namespace"].as_str()),
        (Some("rollout"), Some("prod"), Some("shop"))
    );
    assert_eq!((ro["name"].as_str(), ro["phase"].as_str()), (Some("web"), Some("Paused")));
    assert_eq!(ro["step"], json!({"index": 1, "total": 2}));
    assert_eq!((ro["set_weight"].as_u64(), ro["actual_weight"].as_u64()), (Some(25), Some(0)));
    assert_eq!(lines[1], json!({"type": "summary", "env": "prod", "namespace": "shop", "count": 1}));
    let (code, out, err) = t.run(&["argo", "list", "--env", "prod"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("web") && l.contains("canary") && l.contains("1/2")),
        "{out}"
    );
}

#[test]
fn abort_with_yes_patches_the_status_subresource_and_a_missing_rollout_is_bad_input() {
    let api = fake_api();
    let t = setup(&api.url);
    let (code, out, err) = t.run(&["argo", "abort", "web", "--env", "prod", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "rollout web aborted");
    {
        let seen = api.seen.lock().unwrap();
        let (method, path, content_type, body) = seen.last().cloned().unwrap();
        assert_eq!(method, "PATCH");
        let (path, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
        assert_eq!(path, "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/web/status");
        assert!(query.split('&').any(|kv| kv == "fieldManager=shipdeck"), "{query}");
        assert_eq!(content_type, "application/merge-patch+json");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"status": {"abort": true}}));
    }
    let (code, _, err) = t.run(&["argo", "promote", "api", "--env", "prod"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Rollout api not found in namespace shop"), "{err}");
}
