//! Environments on Kubernetes, through the real binary.
//!
//! Without a cluster: a Kubernetes environment whose kubeconfig cannot be used fails its
//! commands plainly with exit 3, and the local environments keep working.
//!
//! With one (`#[ignore]`d; run them with a cluster in `$KUBECONFIG`'s current context):
//! `cargo test --test kubernetes -- --ignored`. They make a namespace `shipdeck-e2e-<pid>` with
//! a base Deployment and the app's Services, run a rolling release and a canary release, check
//! the Deployments and the Service selector, and delete the namespace. The workload's image is
//! `$SHIPDECK_E2E_IMAGE` (default `hashicorp/http-echo`, which answers 200 on every path) at
//! the two tags in `$SHIPDECK_E2E_VERSIONS` (default `0.2.3,1.0.0`).

mod common;

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
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use kube::api::{Api, DeleteParams, PostParams};
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

    pub async fn setup() -> Setup {
        assert!(
            std::env::var_os("KUBECONFIG").is_some() || std::env::var_os("HOME").is_some(),
            "these tests need a cluster in $KUBECONFIG's current context"
        );
        let client = Client::try_default().await.expect("a client from the kubeconfig");
        let namespace = format!("shipdeck-e2e-{}", std::process::id());
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
            format!(
                r#"
[[environments]]
name = "k8s"
cluster = {{ kubernetes = {{ namespace = "{ns}" }} }}

[[apps]]
name = "web"
replicas = 2
[apps.verification]
checks = [{{ name = "health", kind = "functional", path = "/health" }}]
[apps.canary]
steps = [{{ set_weight = 50 }}, {{ pause = "2s" }}]
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

        /// (name, desired, ready) of shipdeck's Deployments.
        pub async fn deployments(&self) -> Vec<(String, i32, i32)> {
            let api = Api::<Deployment>::namespaced(self.client.clone(), &self.namespace);
            let list = api.list(&Default::default()).await.expect("list deployments");
            let mut out: Vec<_> = list
                .items
                .iter()
                .filter(|d| d.labels().contains_key("shipdeck.dev/version"))
                .map(|d| {
                    let spec = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                    let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
                    (d.name_any(), spec, ready)
                })
                .collect();
            out.sort();
            out
        }

        pub async fn selected_version(&self) -> Option<String> {
            let svc = Api::<Service>::namespaced(self.client.clone(), &self.namespace).get("web").await.ok()?;
            svc.spec?.selector?.get("shipdeck.dev/version").cloned()
        }

        pub async fn teardown(self) {
            let _ = Api::<Namespace>::all(self.client).delete(&self.namespace, &DeleteParams::default()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster in $KUBECONFIG"]
async fn rolling_then_canary_on_a_real_cluster() {
    let setup = e2e::setup().await;
    let s = Shipdeck::new();
    let estate = file(s.data_dir(), "estate.toml", &setup.estate());
    let [v0, v1] = setup.versions.clone();
    let deploy = |version: &str, strategy: &str| {
        let o = s
            .cmd(&[
                "--estate",
                estate.to_str().unwrap(),
                "deploy",
                "web",
                version,
                "--env",
                "k8s",
                "--strategy",
                strategy,
                "-y",
            ])
            .output()
            .expect("run shipdeck");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    // The first version, put in place the way a person adopting shipdeck would: one recreate.
    let (code, out) = deploy(&v0, "recreate");
    assert_eq!(code, 0, "{out}");
    let (code, out) = deploy(&v1, "rolling");
    assert_eq!(code, 0, "rolling: {out}");
    assert_eq!(setup.selected_version().await.as_deref(), Some(v1.as_str()));
    let (code, out) = deploy(&v0, "canary");
    assert_eq!(code, 0, "canary: {out}");
    assert_eq!(setup.selected_version().await.as_deref(), Some(v0.as_str()));
    let names: Vec<String> = setup.deployments().await.into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(names, vec![format!("web-{}", v0.replace('.', "-"))], "the old version's Deployment is gone");
    setup.teardown().await;
}
