//! A `coordination.k8s.io/v1` Lease per app (and so per environment: one namespace each), so
//! only one console drives an app's rollout at a time — the way client-go's leader election
//! does it: the holder renews before `leaseDurationSeconds` pass; anyone may take a lease whose
//! renewal is older than that; every write carries the `resourceVersion` read, so of two
//! consoles taking it at once one gets a 409 and sees the other's name.
//!
//! The engine takes it through [`Cluster::claim`](crate::cluster::Cluster::claim) before a
//! release moves anything, and stops driving when the keeper reports it lost.

use std::time::Duration;

use ::kube::api::{Api, PostParams};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use super::errors::Action;
use super::objects::{APP_LABEL, FIELD_MANAGER, MANAGED_BY_LABEL};
use super::{ApiFailure, KubeCluster};
use crate::cluster::{ClusterError, Target};

/// How long a lease lasts without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);

pub use crate::cluster::ClaimStatus as LeaseStatus;

pub fn lease_name(t: &Target, cluster: &KubeCluster) -> Option<String> {
    cluster.apps.get(t).map(|o| format!("shipdeck-{}", o.deployment))
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else { return true };
    let secs = spec.lease_duration_seconds.unwrap_or(LEASE_DURATION.as_secs() as i32);
    renewed.saturating_add(SignedDuration::from_secs(secs as i64)).is_ok_and(|until| until < now)
}

/// The spec after `holder` takes or renews the lease at `now`.
fn claimed(current: Option<&LeaseSpec>, holder: &str, now: Timestamp) -> LeaseSpec {
    let mine = current.and_then(|s| s.holder_identity.as_deref()) == Some(holder);
    let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(holder.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: if mine { current.and_then(|s| s.acquire_time.clone()) } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if mine || current.is_none() { transitions } else { transitions + 1 }),
        ..Default::default()
    }
}

impl KubeCluster {
    /// Take the app's lease for `holder` if it is free, expired or already `holder`'s.
    pub async fn acquire_lease(&self, t: &Target, holder: &str) -> Result<LeaseStatus, ClusterError> {
        self.claim(t, holder, false).await
    }

    /// Renew the lease `holder` holds; [`LeaseStatus::Lost`] when someone else has it now.
    pub async fn renew_lease(&self, t: &Target, holder: &str) -> Result<LeaseStatus, ClusterError> {
        self.claim(t, holder, true).await
    }

    /// Give the lease up, as client-go's `ReleaseOnCancel` does: no holder, a one-second
    /// duration. Only a lease `holder` still holds is touched.
    pub async fn release_lease(&self, t: &Target, holder: &str) -> Result<(), ClusterError> {
        let name = lease_name(t, self).ok_or_else(|| ClusterError::Other(format!("no app {t}")))?;
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let post = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        let mut lease = match self.call(t, Action::new("get", "leases", &name), || api.get(&name)).await {
            Ok(l) => l,
            Err(ApiFailure { code: Some(404), .. }) => return Ok(()),
            Err(f) => return Err(f.error),
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(holder) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.call(t, Action::new("update", "leases", &name), || api.replace(&name, &post, &lease)).await {
            // Someone wrote it meanwhile: theirs now, nothing to give back.
            Ok(_) | Err(ApiFailure { code: Some(409), .. }) => Ok(()),
            Err(f) => Err(f.error),
        }
    }

    async fn claim(&self, t: &Target, holder: &str, renewing: bool) -> Result<LeaseStatus, ClusterError> {
        let name = lease_name(t, self).ok_or_else(|| ClusterError::Other(format!("no app {t}")))?;
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let post = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        let current = match self.call(t, Action::new("get", "leases", &name), || api.get(&name)).await {
            Ok(l) => Some(l),
            Err(ApiFailure { code: Some(404), .. }) => None,
            Err(f) => return Err(f.error),
        };
        let now = Timestamp::now();
        let Some(mut lease) = current else {
            if renewing {
                return Ok(LeaseStatus::Lost { reason: format!("lease {name} was deleted") });
            }
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(
                        [
                            (APP_LABEL.to_string(), self.apps[t].deployment.clone()),
                            (MANAGED_BY_LABEL.to_string(), FIELD_MANAGER.to_string()),
                        ]
                        .into_iter()
                        .collect(),
                    ),
                    ..Default::default()
                },
                spec: Some(claimed(None, holder, now)),
            };
            return match self.call(t, Action::new("create", "leases", &name), || api.create(&post, &lease)).await {
                Ok(_) => Ok(LeaseStatus::Held),
                Err(ApiFailure { code: Some(409), .. }) => self.holder_now(t, &api, &name, holder, renewing).await,
                Err(f) => Err(f.error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let other = spec.holder_identity.clone().filter(|h| !h.is_empty() && h != holder);
        if let Some(other) = other {
            if renewing {
                return Ok(LeaseStatus::Lost { reason: format!("{other} holds lease {name} now") });
            }
            if !expired(&spec, now) {
                return Ok(LeaseStatus::HeldBy { holder: other });
            }
        }
        lease.spec = Some(claimed(Some(&spec), holder, now));
        // `replace` sends the resourceVersion read: a write in between is a 409.
        match self.call(t, Action::new("update", "leases", &name), || api.replace(&name, &post, &lease)).await {
            Ok(_) => Ok(LeaseStatus::Held),
            Err(ApiFailure { code: Some(409), .. }) => self.holder_now(t, &api, &name, holder, renewing).await,
            Err(f) => Err(f.error),
        }
    }

    /// After losing a race: who has it.
    async fn holder_now(
        &self,
        t: &Target,
        api: &Api<Lease>,
        name: &str,
        me: &str,
        renewing: bool,
    ) -> Result<LeaseStatus, ClusterError> {
        let lease = self.call(t, Action::new("get", "leases", name), || api.get(name)).await?;
        let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
        Ok(match (holder == me, renewing) {
            (true, _) => LeaseStatus::Held,
            (false, true) => LeaseStatus::Lost { reason: format!("{holder} holds lease {name} now") },
            (false, false) => LeaseStatus::HeldBy { holder },
        })
    }
}

/// Keeps a held lease renewed every third of its duration. The status turns
/// [`LeaseStatus::Lost`] when another holder shows up, or when no renewal succeeded for a
/// whole lease duration (then another console may rightly take it): whoever drives the rollout
/// stops on that. Dropping the keeper stops renewing.
pub struct LeaseKeeper {
    pub status: watch::Receiver<LeaseStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LeaseKeeper {
    pub fn spawn(cluster: std::sync::Arc<KubeCluster>, t: Target, holder: String) -> Self {
        let (tx, status) = watch::channel(LeaseStatus::Held);
        let task = tokio::spawn(async move {
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(LEASE_DURATION / 3).await;
                match cluster.renew_lease(&t, &holder).await {
                    Ok(LeaseStatus::Held) => last_renewal = tokio::time::Instant::now(),
                    Ok(lost) => {
                        tx.send_replace(lost);
                        return;
                    }
                    Err(e) if last_renewal.elapsed() >= LEASE_DURATION => {
                        tx.send_replace(LeaseStatus::Lost {
                            reason: format!("could not renew for {LEASE_DURATION:?}: {e}"),
                        });
                        return;
                    }
                    Err(e) => tracing::warn!("{t}: renewing the lease: {e}"),
                }
            }
        });
        Self { status, task }
    }
}
