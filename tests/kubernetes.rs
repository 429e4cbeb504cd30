//! Environments on Kubernetes, through the real binary.
//!
//! Without a cluster: a Kubernetes environment whose kubeconfig cannot be used fails its
//! commands plainly with exit 3, and the local environments keep working.
//!
//! With one (`#[ignore]`d; run them with a cluster in `$KUBECONFIG`'s current context, or the
//! context `$SHIPDECK_KUBE_E2E_CONTEXT` names): `cargo test --test kubernetes -- --ignored`. Each
//! test makes its own namespace `shipdeck-e2e-<pid>-<test>` with a base Deployment `web` (at
//! replicas 0) and the Services `web` and `web-preview`, runs shipdeck against it, and deletes
//! the namespace at the end (a test that fails leaves it for a look: `kubectl delete ns …`).
//! They check what a person would: which version the `web` Service's ready endpoints run (by
//! the image tag of the pods behind them), that every pod is ready, the preview Service, and the
//! HTTPRoute's backends — not how shipdeck got there, so a rolling release through per-version
//! Deployments or through the base Deployment's own rollout both pass. The workload's image is
//! `$SHIPDECK_E2E_IMAGE` (default `hashicorp/http-echo`, which answers 200 on every path) at the
//! two tags in `$SHIPDECK_E2E_VERSIONS` (default `0.2.3,1.0.0`). The HTTPRoute test needs the
//! Gateway API CRDs (`httproutes.gateway.networking.k8s.io`) and says it skipped without them;
//! it checks the route's rules, not traffic through a gateway.

mod common;

use std::collections::BTreeSet;

use common::{Shipdeck, file};

const ESTATE: &str = r#"
[[environments]]
name = "dev"

[[environments]]
name = "prod"
cluster = { kubernetes = { context = "no-such-context", namespace = "shop" } }

[[apps]]
name = "web"
replicas = 1
strategy = "rolling"
initial_version = "1.0.0"

[[apps.versions]]
version = "1.0.0"

[[apps.versions]]
version = "1.1.0"
"#;

#[test]
fn a_kubernetes_environment_that_cannot_be_reached_fails_plainly_and_the_local_ones_keep_working() {
    let s = Shipdeck::new();
    let estate = file(s.data_dir(), "estate.toml", ESTATE);
    let kubeconfig = s.data_dir().join("no-kubeconfig.yaml");
    let run = |args: &[&str]| {
        let mut all = vec!["--estate", estate.to_str().unwrap()];
        all.extend_from_slice(args);
        let o = s.cmd(&all).env("KUBECONFIG", &kubeconfig).output().expect("run shipdeck");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (code, out) = run(&["deploy", "web", "1.1.0", "--env", "prod", "-y"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("environment prod runs on Kubernetes, but context no-such-context"), "{out}");
    assert!(out.contains("KUBECONFIG"), "{out}");
    let (code, out) = run(&["deploy", "web", "1.1.0", "--env", "dev", "-y"]);
    assert_eq!(code, 0, "the local environment is not held back: {out}");
}

/// The e2e tests' namespace, deleted when dropped.
mod e2e {
    use std::collections::BTreeSet;

    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
    use kube::{Client, ResourceExt};
    use serde_json::json;

    pub struct Setup {
        pub client: Client,
        pub namespace: String,
        pub versions: [String; 2],
    }

    fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("fixture parses")
    }

    /// The context the tests use: `$SHIPDECK_KUBE_E2E_CONTEXT`, else the kubeconfig's current one.
    pub fn context() -> Option<String> {
        std::env::var("SHIPDECK_KUBE_E2E_CONTEXT").ok().filter(|c| !c.is_empty())
    }

    pub async fn setup(test: &str) -> Setup {
        assert!(
            std::env::var_os("KUBECONFIG").is_some() || std::env::var_os("HOME").is_some(),
            "these tests need a cluster in $KUBECONFIG's current context"
        );
        let options = kube::config::KubeConfigOptions { context: context(), ..Default::default() };
        let config = kube::Config::from_kubeconfig(&options).await.expect("the kubeconfig's context");
        let client = Client::try_from(config).expect("a client from the kubeconfig");
        let namespace = format!("shipdeck-e2e-{}-{test}", std::process::id());
        let image = std::env::var("SHIPDECK_E2E_IMAGE").unwrap_or_else(|_| "hashicorp/http-echo".into());
        let tags = std::env::var("SHIPDECK_E2E_VERSIONS").unwrap_or_else(|_| "0.2.3,1.0.0".into());
        let mut tags = tags.split(',').map(|t| t.trim().to_string());
        let versions = [tags.next().expect("two versions"), tags.next().expect("two versions")];
        let pp = PostParams::default();
        Api::<Namespace>::all(client.clone())
            .create(&pp, &parse(json!({"metadata": {"name": namespace}})))
            .await
            .expect("create the namespace");
        let base = json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web", "image": format!("{image}:{}", versions[0]),
                        "args": ["-listen=:8080", "-text={\"status\":\"healthy\",\"ready\":true}"],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                    }]},
                },
            },
        });
        Api::<Deployment>::namespaced(client.clone(), &namespace).create(&pp, &parse(base)).await.expect("base");
        for name in ["web", "web-preview"] {
            let svc = json!({"metadata": {"name": name},
                             "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}});
            Api::<Service>::namespaced(client.clone(), &namespace).create(&pp, &parse(svc)).await.expect("service");
        }
        Setup { client, namespace, versions }
    }

    impl Setup {
        pub fn estate(&self) -> String {
            self.estate_with("[apps.canary]\nsteps = [{ set_weight = 50 }, { pause = \"2s\" }]\n")
        }

        /// The estate with `tables` (`[apps.canary]`, `[apps.kubernetes]`…) in the app.
        pub fn estate_with(&self, tables: &str) -> String {
            let context = context().map(|c| format!("context = \"{c}\", ")).unwrap_or_default();
            format!(
                r#"
[[environments]]
name = "k8s"
cluster = {{ kubernetes = {{ {context}namespace = "{ns}" }} }}

[[apps]]
name = "web"
replicas = 2
[apps.verification]
checks = [{{ name = "health", kind = "functional", path = "/health" }}]
{tables}
[[apps.versions]]
version = "{v0}"
[[apps.versions]]
version = "{v1}"
"#,
                ns = self.namespace,
                v0 = self.versions[0],
                v1 = self.versions[1]
            )
        }

        /// The image tags of the pods behind `service`'s ready endpoints: what answers it now.
        pub async fn serving(&self, service: &str) -> BTreeSet<String> {
            let slices = Api::<EndpointSlice>::namespaced(self.client.clone(), &self.namespace);
            let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
            let slices = slices.list(&lp).await.expect("list endpointslices");
            let ready: BTreeSet<String> = slices
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
                .filter_map(|e| e.target_ref.as_ref().and_then(|r| r.name.clone()))
                .collect();
            self.pods().await.into_iter().filter(|(name, _, _)| ready.contains(name)).map(|(_, tag, _)| tag).collect()
        }

        /// (name, image tag of container `web`, ready) of the app's pods that are not going away.
        pub async fn pods(&self) -> Vec<(String, String, bool)> {
            let api = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
            let list = api.list(&ListParams::default().labels("app=web")).await.expect("list pods");
            list.items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| {
                    let image = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.iter().find(|c| c.name == "web"))
                        .and_then(|c| c.image.clone())
                        .unwrap_or_default();
                    let tag = image.rsplit_once(':').map(|(_, t)| t.to_string()).unwrap_or_default();
                    let ready = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                    (p.name_any(), tag, ready)
                })
                .collect()
        }

        /// Polls `check` every second until it holds, for at most `secs`; panics naming `what`.
        pub async fn eventually<F, Fut>(&self, what: &str, secs: u64, mut check: F)
        where
            F: FnMut() -> Fut,
            Fut: std::future::Future<Output = bool>,
        {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                if check().await {
                    return;
                }
                assert!(tokio::time::Instant::now() < deadline, "not within {secs}s: {what}");
            }
        }

        /// Only `version` answers `service`, and every pod of the app runs it and is ready.
        pub async fn only(&self, service: &str, version: &str) -> bool {
            let pods = self.pods().await;
            self.serving(service).await == BTreeSet::from([version.to_string()])
                && !pods.is_empty()
                && pods.iter().all(|(_, tag, ready)| tag == version && *ready)
        }

        /// True when the Gateway API's HTTPRoute CRD is installed.
        pub async fn has_gateway_api(&self) -> bool {
            let crds = Api::<CustomResourceDefinition>::all(self.client.clone());
            matches!(crds.get_opt("httproutes.gateway.networking.k8s.io").await, Ok(Some(_)))
        }

        /// An HTTPRoute `web` as a person writes it: one rule, the Service `web` as its backend.
        pub async fn create_route(&self) {
            let route = json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "web"},
                "spec": {"parentRefs": [{"name": "shipdeck-e2e"}],
                         "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                    "backendRefs": [{"name": "web", "port": 80}]}]},
            });
            self.routes().create(&PostParams::default(), &parse(route)).await.expect("create the HTTPRoute");
        }

        fn routes(&self) -> Api<DynamicObject> {
            let resource = shipdeck::cluster::kube::http_route_resource();
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
        }

        /// The route's rules as (header match names, [(backend, weight)]).
        pub async fn route_rules(&self) -> Vec<(Vec<String>, Vec<(String, u64)>)> {
            let route = self.routes().get("web").await.expect("get the HTTPRoute");
            let rules = route.data.pointer("/spec/rules").and_then(|r| r.as_array()).cloned().unwrap_or_default();
            rules
                .iter()
                .map(|rule| {
                    let headers = rule
                        .pointer("/matches")
                        .and_then(|m| m.as_array())
                        .into_iter()
                        .flatten()
                        .flat_map(|m| m.pointer("/headers").and_then(|h| h.as_array()).cloned().unwrap_or_default())
                        .filter_map(|h| h.get("name").and_then(|n| n.as_str()).map(String::from))
                        .collect();
                    let backends = rule
                        .pointer("/backendRefs")
                        .and_then(|b| b.as_array())
                        .into_iter()
                        .flatten()
                        .map(|b| {
                            let name = b.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
                            (name, b.get("weight").and_then(|w| w.as_u64()).unwrap_or(1))
                        })
                        .collect();
                    (headers, backends)
                })
                .collect()
        }

        pub async fn teardown(self) {
            let _ = Api::<Namespace>::all(self.client).delete(&self.namespace, &DeleteParams::default()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster in $KUBECONFIG"]
async fn rolling_moves_into_the_base_rolls_natively_undoes_and_a_canary_scales_the_base_to_zero() {
    let setup = e2e::setup("rc").await;
    let s = Shipdeck::new();
    let estate = file(s.data_dir(), "estate.toml", &setup.estate());
    let [v0, v1] = setup.versions.clone();
    let base_replicas = || async {
        let api =
            kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(setup.client.clone(), &setup.namespace);
        api.get("web").await.expect("the base Deployment exists").spec.and_then(|s| s.replicas)
    };
    // The first version, put in place the way a person adopting shipdeck would: one recreate.
    deployed(&setup, &s, &estate, &v0, "recreate").await;
    // Rolling moves the app into its own (base) Deployment, then removes the version's one.
    deployed(&setup, &s, &estate, &v1, "rolling").await;
    assert_eq!(base_replicas().await, Some(2), "the app runs in its Deployment");
    // From then on rolling is the Deployment's own rolling update, and a rollback its undo.
    deployed(&setup, &s, &estate, &v0, "rolling").await;
    let (code, out) = shipdeck(&s, &estate, &["rollback", "web", "--env", "k8s", "-y"]);
    assert_eq!(code, 0, "rollout undo: {out}");
    setup.eventually(&format!("undo: only {v1} serves web"), 60, || setup.only("web", &v1)).await;
    deployed(&setup, &s, &estate, &v0, "canary").await;
    assert_eq!(base_replicas().await, Some(0), "the base is scaled to 0, never deleted");
    setup.teardown().await;
}

/// Runs the binary against `estate` with the test's kubeconfig; (exit code, stdout + stderr).
fn shipdeck(s: &Shipdeck, estate: &std::path::Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["--estate", estate.to_str().unwrap_or_default()];
    all.extend_from_slice(args);
    let o = s.cmd(&all).output().expect("run shipdeck");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// `shipdeck deploy web VERSION --env k8s --strategy STRATEGY -y`: (exit code, output).
fn deploy(s: &Shipdeck, estate: &std::path::Path, version: &str, strategy: &str) -> (i32, String) {
    shipdeck(s, estate, &["deploy", "web", version, "--env", "k8s", "--strategy", strategy, "-y"])
}

/// Deploys `version` with `strategy`, which must exit 0, then waits until only `version` serves
/// `web`, every pod ready.
async fn deployed(setup: &e2e::Setup, s: &Shipdeck, estate: &std::path::Path, version: &str, strategy: &str) {
    let (code, out) = deploy(s, estate, version, strategy);
    assert_eq!(code, 0, "{strategy} of {version}: {out}");
    setup
        .eventually(&format!("{strategy}: only {version} serves web, every pod ready"), 120, || {
            setup.only("web", version)
        })
        .await;
}

/// `shipdeck COMMAND web --env k8s -y` (abort, rollback), which must exit 0, then waits until
/// only `version` serves `web`, every pod ready.
async fn then_only(setup: &e2e::Setup, s: &Shipdeck, estate: &std::path::Path, command: &str, version: &str) {
    let (code, out) = shipdeck(s, estate, &[command, "web", "--env", "k8s", "-y"]);
    assert_eq!(code, 0, "{command}: {out}");
    setup.eventually(&format!("{command}: only {version} serves web"), 120, || setup.only("web", version)).await;
}

/// Starts shipdeck without waiting for it.
fn spawn_shipdeck(s: &Shipdeck, estate: &std::path::Path, args: &[&str]) -> std::process::Child {
    let mut all = vec!["--estate", estate.to_str().unwrap_or_default()];
    all.extend_from_slice(args);
    s.cmd(&all).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("run shipdeck")
}

async fn wait_for(child: std::process::Child) -> i32 {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await;
    out.ok().and_then(|o| o.ok()).and_then(|o| o.status.code()).unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster in $KUBECONFIG"]
async fn recreate_then_rolling_serve_the_new_version_with_every_pod_ready() {
    let setup = e2e::setup("rr").await;
    let s = Shipdeck::new();
    let estate = file(s.data_dir(), "estate.toml", &setup.estate());
    let [v0, v1] = setup.versions.clone();
    deployed(&setup, &s, &estate, &v0, "recreate").await;
    deployed(&setup, &s, &estate, &v1, "rolling").await;
    setup.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster in $KUBECONFIG"]
async fn blue_green_previews_switches_and_removes_the_old_colour() {
    let setup = e2e::setup("bg").await;
    let s = Shipdeck::new();
    let tables = "[apps.blue_green]\nauto_promotion = \"20s\"\nscale_down_delay = \"5s\"\n";
    let estate = file(s.data_dir(), "estate.toml", &setup.estate_with(tables));
    let [v0, v1] = setup.versions.clone();
    deployed(&setup, &s, &estate, &v0, "recreate").await;
    let release =
        spawn_shipdeck(&s, &estate, &["deploy", "web", &v1, "--env", "k8s", "--strategy", "blue-green", "-y"]);
    // Before the switch: the new colour behind the preview Service, the old one still active.
    setup
        .eventually(&format!("{v1} behind web-preview while {v0} serves web"), 120, || async {
            setup.serving("web-preview").await == BTreeSet::from([v1.clone()])
                && setup.serving("web").await == BTreeSet::from([v0.clone()])
        })
        .await;
    assert_eq!(wait_for(release).await, 0, "the blue-green release ends verified");
    setup.eventually(&format!("{v1} active, {v0} gone"), 120, || setup.only("web", &v1)).await;
    setup.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster in $KUBECONFIG"]
async fn a_replica_ratio_canary_serves_both_and_abort_puts_all_back() {
    let setup = e2e::setup("ca").await;
    let s = Shipdeck::new();
    let estate = file(
        s.data_dir(),
        "estate.toml",
        &setup.estate_with("[apps.canary]\nsteps = [{ set_weight = 50 }, { pause = {} }]\n"),
    );
    let [v0, v1] = setup.versions.clone();
    deployed(&setup, &s, &estate, &v0, "recreate").await;
    // Paused at 50%: the Service spreads over both versions' ready pods.
    let (code, out) = deploy(&s, &estate, &v1, "canary");
    assert_eq!(code, 0, "canary to its pause: {out}");
    assert!(out.contains("paused"), "{out}");
    let both = BTreeSet::from([v0.clone(), v1.clone()]);
    setup.eventually("both versions serve web", 60, || async { setup.serving("web").await == both }).await;
    then_only(&setup, &s, &estate, "abort", &v0).await;
    setup.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster in $KUBECONFIG"]
async fn rollback_returns_to_the_previous_verified_version() {
    let setup = e2e::setup("rb").await;
    let s = Shipdeck::new();
    let estate = file(s.data_dir(), "estate.toml", &setup.estate());
    let [v0, v1] = setup.versions.clone();
    for (version, strategy) in [(&v0, "recreate"), (&v1, "rolling")] {
        let (code, out) = deploy(&s, &estate, version, strategy);
        assert_eq!(code, 0, "{strategy}: {out}");
    }
    setup.eventually(&format!("only {v1} serves"), 120, || setup.only("web", &v1)).await;
    then_only(&setup, &s, &estate, "rollback", &v0).await;
    setup.teardown().await;
}

/// Canary weights and an A/B header match written into an HTTPRoute (the rules, not traffic
/// through a gateway: the route's parent need not exist).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster in $KUBECONFIG"]
async fn canary_and_ab_through_an_httproute() {
    let setup = e2e::setup("hr").await;
    if !setup.has_gateway_api().await {
        eprintln!("skipped: the Gateway API CRDs (httproutes.gateway.networking.k8s.io) are not installed");
        setup.teardown().await;
        return;
    }
    setup.create_route().await;
    let s = Shipdeck::new();
    let tables = "[apps.kubernetes]\nhttp_route = \"web\"\n\
                  [apps.canary]\nsteps = [{ set_weight = 25 }, { pause = {} }]\n\
                  [apps.ab]\nduration = \"30s\"\nmatch_name = \"x-shipdeck-group\"\nmatch_value = \"b\"\n";
    let estate = file(s.data_dir(), "estate.toml", &setup.estate_with(tables));
    let [v0, v1] = setup.versions.clone();
    let svc = |v: &str| format!("web-{}", v.to_lowercase().replace(['.', '_'], "-"));
    // The route's weighted rule sends everything to the old version's Service.
    let all_on_old = || async {
        setup
            .route_rules()
            .await
            .last()
            .is_some_and(|(_, b)| !b.is_empty() && b.iter().all(|(n, w)| *n == svc(&v0) || *w == 0))
    };
    let (code, out) = deploy(&s, &estate, &v0, "recreate");
    assert_eq!(code, 0, "first version: {out}");
    setup.eventually(&format!("the route sends everything to {}", svc(&v0)), 120, all_on_old).await;
    // Canary: 75/25 by backend weights while paused.
    let (code, out) = deploy(&s, &estate, &v1, "canary");
    assert_eq!(code, 0, "canary to its pause: {out}");
    let rules = setup.route_rules().await;
    let weights: BTreeSet<(String, u64)> = rules.last().map(|(_, b)| b.iter().cloned().collect()).unwrap_or_default();
    assert_eq!(weights, BTreeSet::from([(svc(&v0), 75), (svc(&v1), 25)]), "{rules:?}");
    let (code, out) = shipdeck(&s, &estate, &["abort", "web", "--env", "k8s", "-y"]);
    assert_eq!(code, 0, "abort: {out}");
    setup.eventually("abort: the route back on the old version", 60, all_on_old).await;
    // A/B: a header rule for B before the weighted rule, while the experiment runs.
    let release = spawn_shipdeck(&s, &estate, &["deploy", "web", &v1, "--env", "k8s", "--strategy", "ab", "-y"]);
    setup
        .eventually("a header rule sends x-shipdeck-group: b to B", 120, || async {
            let rules = setup.route_rules().await;
            rules
                .iter()
                .any(|(h, b)| h.iter().any(|n| n == "x-shipdeck-group") && b.iter().any(|(n, _)| *n == svc(&v1)))
        })
        .await;
    wait_for(release).await;
    // However the experiment ended (inconclusive pauses it), abort leaves no header rule.
    let _ = shipdeck(&s, &estate, &["abort", "web", "--env", "k8s", "-y"]);
    setup
        .eventually("no header rule once the A/B is over", 60, || async {
            setup.route_rules().await.iter().all(|(h, _)| h.is_empty())
        })
        .await;
    setup.teardown().await;
}
