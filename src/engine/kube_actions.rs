//! The commands only Kubernetes has: moving an environment to another context or namespace,
//! Argo Rollouts' actions, a Deployment's revisions for `--to-revision`, and the refusal to
//! touch a release another console drives.

use chrono::Utc;

use super::{EngineError, Event, Inner, Outcome};
use crate::cluster::Target;
use crate::model::Release;

/// Refused while another console holds the workload's lease (as the cluster's watch shows it):
/// that console drives the release, and this one neither moves its traffic nor writes its
/// state. Once that console stops renewing (it died), its lease lapses and this one may take
/// over, as the Lease does.
pub(super) fn driven_elsewhere(inner: &Inner, target: &Target, r: &Release) -> Result<(), EngineError> {
    let Some(d) = inner.cluster.news(target).driver.filter(|d| !d.mine && !d.lapsed) else { return Ok(()) };
    let renewed = d
        .renewed
        .map(|at| format!(" (lease renewed {}s ago)", (Utc::now() - at).num_seconds().max(0)))
        .unwrap_or_default();
    Err(EngineError::Refused(format!(
        "{target}: {} is driving release {}{renewed}; this console leaves it alone — wait until it is done, or \
         abort here once that console stops and its lease lapses ({}s without renewal)",
        d.holder,
        r.id,
        crate::cluster::kube::lease::LEASE_DURATION.as_secs()
    )))
}

/// The version revision `n` of the app's own Deployment runs (`--to-revision`).
pub(super) async fn revision_version(inner: &Inner, target: &Target, n: i64) -> Result<String, EngineError> {
    if !inner.cluster.native_rollouts(target) {
        return Err(EngineError::BadInput(format!(
            "{target} has no Deployment revisions to go back to (it does not roll out natively: a local app, or one \
             with an HTTPRoute); name a version with --to VERSION"
        )));
    }
    let revisions = inner.cluster.native_revisions(target).await?;
    let known: Vec<String> = revisions
        .iter()
        .map(|r| match &r.version {
            Some(v) => format!("{} ({v})", r.revision),
            None => r.revision.to_string(),
        })
        .collect();
    let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
    match revisions.into_iter().find(|r| r.revision == n) {
        None => {
            Err(EngineError::BadInput(format!("{target}: the Deployment has no revision {n} (its revisions: {known})")))
        }
        Some(r) => r.version.ok_or_else(|| {
            EngineError::BadInput(format!(
                "{target}: revision {n} of the Deployment carries no shipdeck.dev/version label, so shipdeck cannot \
                 tell what it runs; use `kubectl rollout undo --to-revision {n}`"
            ))
        }),
    }
}

/// Move a Kubernetes environment to another context or namespace, unless a release drives one
/// of its workloads: its task would go on against a cluster it did not start on.
pub(super) async fn switch_kubernetes(
    inner: &Inner,
    actor: &str,
    env: &str,
    context: Option<String>,
    namespace: Option<String>,
) -> Result<Outcome, EngineError> {
    let running: Vec<String> =
        inner.lock_runs().iter().filter(|(t, _)| t.env == env).map(|(_, r)| r.release_id.clone()).collect();
    if !running.is_empty() {
        return Err(EngineError::Refused(format!(
            "{} in {env} is running; let it finish or abort it before switching {env}'s cluster",
            running.join(", ")
        )));
    }
    let switcher = inner.kube.get().ok_or_else(|| {
        EngineError::Refused(format!("no environment runs on Kubernetes; {env} cannot switch context or namespace"))
    })?;
    let place = switcher.switch(env, context, namespace).await.map_err(EngineError::BadInput)?;
    let detail = format!("context {} namespace {}", place.context, place.namespace);
    inner.audit(actor, "kubernetes switch", env, &detail);
    let message = format!("{env} now shows {detail}");
    inner.emit(super::Event::Note { release_id: None, message: message.clone() });
    Ok(Outcome { message, release: None, running: false })
}

/// An Argo Rollouts action, through the same requests `shipdeck argo …` sends; audited and
/// told as an event whether it worked or not.
pub(super) async fn argo_action(
    inner: &Inner,
    actor: &str,
    env: &str,
    rollout: &str,
    action: crate::cluster::kube::argo::ArgoAction,
    to_revision: Option<u64>,
) -> Result<Outcome, EngineError> {
    use crate::cluster::kube::argo::ArgoError;
    let Some(environment) = inner.estate.env(env) else {
        return Err(EngineError::BadInput(format!("unknown environment `{env}`")));
    };
    if environment.cluster.kubernetes().is_none() {
        return Err(EngineError::BadInput(format!(
            "{env} runs on the local cluster; Argo Rollouts live in a Kubernetes environment's namespace"
        )));
    }
    // Only the actions (a client and the namespace) are kept: the watch itself is not held
    // across the awaits below, so a `:ns` meanwhile stops the previous namespace's watch.
    let actions = inner.kube.get().and_then(|k| k.argo()).and_then(|a| a.get(env)).map(|w| w.actions());
    let actions = actions.ok_or_else(|| {
        EngineError::Backend(format!(
            "{env}: shipdeck is not connected to its Kubernetes cluster (see the log for why); restart shipdeck \
             once the cluster answers"
        ))
    })?;
    let verb = action.command();
    let target = format!("{env}/{rollout}");
    match actions.act(action, rollout, to_revision).await {
        Ok(o) => {
            inner.audit(actor, verb, &target, &o.message);
            inner.emit(Event::Note { release_id: None, message: format!("{env}: {}", o.message) });
            Ok(Outcome { message: o.message, release: None, running: false })
        }
        Err(e) => {
            let message = format!("{verb} {rollout} in {env} failed: {e}");
            inner.audit(actor, verb, &target, &format!("failed: {e}"));
            inner.emit(Event::Note { release_id: None, message: message.clone() });
            Err(match e {
                ArgoError::BadInput(_) => EngineError::BadInput(message),
                ArgoError::Api(_) => EngineError::Backend(message),
            })
        }
    }
}
