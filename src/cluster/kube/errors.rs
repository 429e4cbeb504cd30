//! API failures in plain words: what shipdeck tried (verb, resource, name), what is missing,
//! and what to do about it.

use crate::cluster::ClusterError;

/// What a request was for, so a failure can say it.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    /// An RBAC verb: get, list, watch, create, patch, delete.
    pub verb: &'static str,
    /// An RBAC resource: deployments, services, pods/proxy, httproutes…
    pub resource: &'static str,
    pub name: &'a str,
}

impl<'a> Action<'a> {
    pub fn new(verb: &'static str, resource: &'static str, name: &'a str) -> Self {
        Self { verb, resource, name }
    }
}

/// A watch that failed, in words, with the API server's status code when it answered one.
///
/// What each watch does about it (one policy, said here once): a refusal (401/403) is said in
/// the console in words. The workload watches, without which nothing true can be shown, keep
/// trying with backoff (a Role fixed meanwhile is picked up) and their state says it is refused;
/// the watches the console can do without — Argo Rollouts, the FeatureFlag (which falls back to a
/// GET every 5 s), the Leases', rollouts' and Events' — stop after saying it once. Anything else
/// is tried again with kube-runtime's default backoff, and a `410 Gone` lists again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFailure {
    pub message: String,
    pub code: Option<u16>,
}

impl WatchFailure {
    /// The Role does not allow it (or the credentials are refused): retrying will not help.
    pub fn refused(&self) -> bool {
        matches!(self.code, Some(401 | 403))
    }
}

/// `e`, a failed list or watch of `resource` (named `name`, or all of them), in words.
pub fn watch_failure(
    target: &str,
    namespace: &str,
    resource: &'static str,
    name: &str,
    e: &::kube::runtime::watcher::Error,
) -> WatchFailure {
    use ::kube::runtime::watcher::Error as W;
    let api_error;
    let (verb, inner) = match e {
        W::InitialListFailed(e) => ("list", e),
        W::WatchStartFailed(e) | W::WatchFailed(e) => ("watch", e),
        W::WatchError(s) => {
            api_error = ::kube::Error::Api(s.clone());
            ("watch", &api_error)
        }
        other => return WatchFailure { message: format!("{target}: watching {resource}: {other}"), code: None },
    };
    WatchFailure {
        message: describe(target, namespace, Action::new(verb, resource, name), inner).to_string(),
        code: status(inner),
    }
}

/// The HTTP status of an API error, if the API server answered.
pub fn status(e: &::kube::Error) -> Option<u16> {
    match e {
        ::kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Worth trying again as it was: the API server is busy or failing for a moment.
pub fn is_transient(e: &::kube::Error) -> bool {
    matches!(status(e), Some(429 | 500 | 502 | 503 | 504))
}

pub fn describe(target: &str, namespace: &str, action: Action<'_>, e: &::kube::Error) -> ClusterError {
    let Action { verb, resource, name } = action;
    let what = format!("{verb} {resource} {name}");
    let message = match e {
        ::kube::Error::Api(s) => {
            let said = if s.message.is_empty() { s.reason.clone() } else { s.message.clone() };
            match s.code {
                401 => format!(
                    "unauthorized: the API server refused the kubeconfig's credentials ({said}); log in again \
                     (e.g. refresh the context's token)"
                ),
                403 => format!(
                    "forbidden: shipdeck may not {verb} {resource} in namespace {namespace} — grant the Role in \
                     the README (Kubernetes said: {said})"
                ),
                404 => format!("{} {name} not found in namespace {namespace}{}", singular(resource), hint(resource)),
                409 => format!(
                    "conflict: {} {name} was changed by someone else while shipdeck wrote it; look at it and \
                     try again (Kubernetes said: {said})",
                    singular(resource)
                ),
                code => format!("the API server answered {code} {} to {what}: {said}", s.reason),
            }
        }
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) => {
            return ClusterError::Unreachable {
                target: target.to_string(),
                message: format!("cannot reach the Kubernetes API server to {what}: {e}"),
            };
        }
        other => format!("{what} failed: {other}"),
    };
    ClusterError::Kubernetes { target: target.to_string(), message }
}

pub fn timed_out(target: &str, action: Action<'_>, after: std::time::Duration) -> ClusterError {
    ClusterError::Unreachable {
        target: target.to_string(),
        message: format!(
            "the Kubernetes API server did not answer {} {} {} within {}s",
            action.verb,
            action.resource,
            action.name,
            after.as_secs_f64()
        ),
    }
}

fn singular(resource: &str) -> &str {
    match resource {
        "deployments" => "Deployment",
        "services" => "Service",
        "httproutes" => "HTTPRoute",
        "pods" | "pods/proxy" => "Pod",
        "leases" => "Lease",
        "events" => "Event",
        "rollouts" | "rollouts/status" => "Rollout",
        "replicasets" => "ReplicaSet",
        "featureflags" => "FeatureFlag",
        other => other,
    }
}

fn hint(resource: &str) -> &'static str {
    match resource {
        "deployments" => {
            " — shipdeck copies the app's base Deployment for every version; create it, or name it with \
             [apps.kubernetes] deployment"
        }
        "services" => " — create it, or name it with [apps.kubernetes] service / preview_service",
        "httproutes" => " — create it (Gateway API must be installed), or name it with [apps.kubernetes] http_route",
        "rollouts" | "rollouts/status" => " — `shipdeck argo list --env ENV` lists the namespace's Argo Rollouts",
        _ => "",
    }
}
