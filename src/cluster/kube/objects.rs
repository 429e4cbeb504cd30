//! The objects shipdeck writes, and their names. Pure functions: what goes over the wire is
//! pinned by the contract tests.
//!
//! Conventions:
//! - every version runs in its own Deployment `<deployment>-<version slug>` (the slug is the
//!   version lowercased with `.` and `_` turned into `-`), made by copying the app's **base
//!   Deployment** (`[apps.kubernetes] deployment`, default the app's name): its pod template,
//!   strategy and deadlines, with the image tag of the named container replaced by the version
//!   (`registry/shop/web:1.0.0` → `registry/shop/web:1.1.0`). For these the base is a template;
//!   rolling and recreate roll the base itself (see `native.rs`), and the version its template
//!   runs is sized there (never deleted).
//! - a version's Deployment, its pods and its Service carry the labels
//!   `app.kubernetes.io/name=<deployment>` and `shipdeck.dev/version=<version>`;
//! - the routing shipdeck set is kept as JSON in the `shipdeck.dev/routing` annotation of the
//!   object that carries it (the active Service, or the HTTPRoute), so another console reads it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde_json::{Value, json};

use crate::cluster::{MatchKind, Routing};
use crate::model::{KubeObjects, is_dns_label};

pub const APP_LABEL: &str = "app.kubernetes.io/name";
pub const VERSION_LABEL: &str = "shipdeck.dev/version";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const ROUTING_ANNOTATION: &str = "shipdeck.dev/routing";
pub const BASE_ANNOTATION: &str = "shipdeck.dev/base";
pub const FIELD_MANAGER: &str = "shipdeck";

/// `1.1.0-RC_2` → `1-1-0-rc-2`.
pub fn slug(version: &str) -> String {
    crate::model::version_slug(version)
}

/// A version must be usable as a label value (at most 63 characters, ending in a letter or
/// digit) and give a Deployment name Kubernetes takes.
pub fn check_version(objects: &KubeObjects, version: &str) -> Result<(), String> {
    let label_ok = !version.is_empty()
        && version.len() <= 63
        && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && version.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && version.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if !label_ok {
        return Err(format!(
            "version {version:?} cannot be a Kubernetes label value (letters, digits, `-`, `_`, `.`, \
             at most 63, starting and ending with a letter or digit)"
        ));
    }
    let name = version_deployment_name(objects, version);
    if !is_dns_label(&name) {
        return Err(format!(
            "the Deployment name {name:?} for version {version} is longer than 63 characters; \
             shorten [apps.kubernetes] deployment"
        ));
    }
    Ok(())
}

pub fn version_deployment_name(objects: &KubeObjects, version: &str) -> String {
    format!("{}-{}", objects.deployment, slug(version))
}

/// The Service an HTTPRoute sends one version's share to.
pub fn version_service_name(objects: &KubeObjects, version: &str) -> String {
    format!("{}-{}", objects.service, slug(version))
}

/// `app.kubernetes.io/name=<deployment>,shipdeck.dev/version=<version>`
pub fn version_labels(objects: &KubeObjects, version: &str) -> BTreeMap<String, String> {
    [(APP_LABEL.to_string(), objects.deployment.clone()), (VERSION_LABEL.to_string(), version.to_string())]
        .into_iter()
        .collect()
}

/// `image` with its tag replaced by `tag` (a digest is dropped: the tag names the version).
pub fn retag(image: &str, tag: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    let name_start = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    let repo = match image[name_start..].rfind(':') {
        Some(i) => &image[..name_start + i],
        None => image,
    };
    format!("{repo}:{tag}")
}

/// The Deployment of `version`: the base's pod template, strategy and deadlines, the named
/// container's image at tag `version`, selected by the version labels.
pub fn version_deployment(
    base: &Deployment,
    objects: &KubeObjects,
    version: &str,
    replicas: u32,
) -> Result<Deployment, String> {
    let base_name = base.metadata.name.clone().unwrap_or_default();
    let spec = base.spec.clone().unwrap_or_default();
    let mut template = spec.template;
    let labels = version_labels(objects, version);
    let meta = template.metadata.get_or_insert_with(Default::default);
    let pod_labels = meta.labels.get_or_insert_with(Default::default);
    pod_labels.extend(labels.clone());
    // A base rolled natively marks its own pods; a version's are not the base's.
    pod_labels.remove(super::native::NATIVE_LABEL);
    let pod = template.spec.as_mut().ok_or_else(|| format!("Deployment {base_name} has no pod template spec"))?;
    let Some(container) = pod.containers.iter_mut().find(|c| c.name == objects.container) else {
        let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "Deployment {base_name} has no container named {:?} (it has {}); set [apps.kubernetes] container",
            objects.container,
            names.join(", ")
        ));
    };
    let image = container.image.clone().ok_or_else(|| format!("container {} has no image", objects.container))?;
    container.image = Some(retag(&image, version));
    let mut meta_labels = labels.clone();
    meta_labels.insert(MANAGED_BY_LABEL.into(), FIELD_MANAGER.into());
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(version_deployment_name(objects, version)),
            namespace: base.metadata.namespace.clone(),
            labels: Some(meta_labels),
            annotations: Some([(BASE_ANNOTATION.to_string(), base_name)].into_iter().collect()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas as i32),
            selector: LabelSelector { match_labels: Some(labels), match_expressions: None },
            template,
            strategy: spec.strategy,
            min_ready_seconds: spec.min_ready_seconds,
            progress_deadline_seconds: spec.progress_deadline_seconds,
            revision_history_limit: spec.revision_history_limit,
            paused: None,
        }),
        status: None,
    })
}

/// The Service of one version (HTTPRoute backends): the base Service's ports, the version's labels.
pub fn version_service(base: &Service, objects: &KubeObjects, version: &str) -> Service {
    let labels = version_labels(objects, version);
    let mut meta_labels = labels.clone();
    meta_labels.insert(MANAGED_BY_LABEL.into(), FIELD_MANAGER.into());
    let ports = base.spec.as_ref().and_then(|s| s.ports.clone());
    Service {
        metadata: ObjectMeta {
            name: Some(version_service_name(objects, version)),
            labels: Some(meta_labels),
            ..Default::default()
        },
        spec: Some(ServiceSpec { selector: Some(labels), ports, ..Default::default() }),
        status: None,
    }
}

/// The versions that get traffic by weight, in order.
pub fn weighted(routing: &Routing) -> Vec<(&str, u32)> {
    routing.weights.iter().filter(|(_, w)| **w > 0).map(|(v, w)| (v.as_str(), *w)).collect()
}

/// Merge patch of the active Service without an HTTPRoute: one version → select its pods; more
/// (even at weight 0) → select every version's pods, so traffic splits by ready replicas; none → select no pod.
pub fn active_service_patch(objects: &KubeObjects, routing: &Routing) -> Value {
    // Versions named at weight 0 count too: a native rollout names both, so the Service keeps
    // both its old and its new pods while the Deployment replaces one with the other.
    let version = match weighted(routing).as_slice() {
        _ if routing.weights.len() > 1 => Value::Null,
        [(v, _)] => json!(v),
        [] => json!(""),
        _ => Value::Null,
    };
    json!({
        "metadata": {"annotations": {ROUTING_ANNOTATION: routing_json(routing)}},
        "spec": {"selector": {APP_LABEL: objects.deployment, VERSION_LABEL: version}},
    })
}

/// Merge patch of the preview Service: select the preview version's pods.
pub fn preview_service_patch(objects: &KubeObjects, version: &str) -> Value {
    json!({"spec": {"selector": {APP_LABEL: objects.deployment, VERSION_LABEL: version}}})
}

pub fn routing_json(routing: &Routing) -> String {
    serde_json::to_string(routing).unwrap_or_default()
}

/// The `rules` of the HTTPRoute for `routing`: the route's first rule is the template (its path
/// matches, filters and timeouts are kept); each header/cookie match becomes a copy of it that
/// also requires the header and goes to one version, then the template with the weights.
pub fn http_route_rules(objects: &KubeObjects, template: &Value, routing: &Routing) -> Result<Vec<Value>, String> {
    let port = template
        .get("backendRefs")
        .and_then(|b| b.get(0))
        .and_then(|b| b.get("port"))
        .cloned()
        .ok_or_else(|| "its first rule has no backendRefs with a port to copy".to_string())?;
    let backend = |version: &str, weight: u32| json!({"name": version_service_name(objects, version), "port": port, "weight": weight});
    let mut rules = Vec::new();
    for m in &routing.matches {
        let header = match m.kind {
            MatchKind::Header => json!({"type": "Exact", "name": m.name, "value": m.value}),
            // Gateway API has no cookie match: a regular expression over the Cookie header.
            MatchKind::Cookie => json!({
                "type": "RegularExpression",
                "name": "cookie",
                "value": format!("(^|;\\s*){}={}(;|$)", regex_escape(&m.name), regex_escape(&m.value)),
            }),
        };
        let mut rule = template.clone();
        let matches = match template.get("matches").and_then(Value::as_array) {
            Some(ms) if !ms.is_empty() => ms
                .iter()
                .map(|one| {
                    let mut one = one.clone();
                    let mut headers = one.get("headers").and_then(Value::as_array).cloned().unwrap_or_default();
                    headers.push(header.clone());
                    one["headers"] = Value::Array(headers);
                    one
                })
                .collect(),
            _ => vec![json!({"headers": [header]})],
        };
        rule["matches"] = Value::Array(matches);
        rule["backendRefs"] = json!([backend(&m.version, 1)]);
        rules.push(rule);
    }
    let mut main = template.clone();
    let refs: Vec<Value> = weighted(routing).into_iter().map(|(v, w)| backend(v, w)).collect();
    main["backendRefs"] = Value::Array(refs);
    rules.push(main);
    Ok(rules)
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_tags() {
        assert_eq!(slug("1.1.0-RC_2"), "1-1-0-rc-2");
        assert_eq!(retag("registry:5000/shop/web:1.0.0", "1.1.0"), "registry:5000/shop/web:1.1.0");
        assert_eq!(retag("web", "2"), "web:2");
        assert_eq!(retag("ghcr.io/a/web:1@sha256:abc", "2"), "ghcr.io/a/web:2");
    }

    #[test]
    fn versions_that_cannot_be_labels_are_refused() {
        let o = crate::model::KubernetesApp::default().resolve("web");
        assert!(check_version(&o, "1.1.0-errors").is_ok());
        assert!(check_version(&o, "1.1.0-").unwrap_err().contains("label value"));
        assert!(check_version(&o, &"9".repeat(62)).unwrap_err().contains("longer than 63"));
    }

    #[test]
    fn cookie_matches_become_a_cookie_header_expression() {
        assert_eq!(regex_escape("a.b"), "a\\.b");
    }
}
