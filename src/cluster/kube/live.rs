//! Who drives what, live: watches on shipdeck's Leases (who holds each app's), on the base
//! Deployments' `shipdeck.dev/rollout` annotation (the rollout whichever console drives it wrote)
//! and on the namespace's Events about the apps' objects. Each is a kube-runtime watcher (list
//! once, then watch; a `410 Gone` lists again), never a polling loop, and none of them holds the
//! workload state back: `state()` waits only for the workload watches (see `watches.rs`).
//!
//! - Leases: selected by `app.kubernetes.io/managed-by=shipdeck`, which shipdeck has put on every
//!   Lease it created; only their spec (holder, renewal, duration) is kept.
//! - Base Deployments: metadata only (`PartialObjectMeta`), selected by
//!   `shipdeck.dev/rollout-state=true`, which the rollout annotation's patch adds; only the
//!   annotation's rollout is kept.
//! - Events (`events.k8s.io/v1`): Events carry no labels and field selectors cannot name a set
//!   of objects, so the watch is of the namespace's Events, pages of 500; each is kept only if
//!   it is about an app's base Deployment or one of its version Deployments, ReplicaSets or pods
//!   (named `<deployment>-…`), as a short line, and only the newest [`EVENTS_KEPT`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

use ::kube::Api;
use ::kube::ResourceExt;
use ::kube::core::PartialObjectMeta;
use ::kube::runtime::{WatchStreamExt, watcher};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::events::v1::Event;

use super::KubeCluster;
use super::lease::LEASE_DURATION;
use super::objects::{FIELD_MANAGER, MANAGED_BY_LABEL};
use super::record::ROLLOUT_ANNOTATION;
use crate::cluster::{ClusterEvent, ClusterNews, Driver, Target};
use crate::model::Release;

/// Put on the base Deployment with the rollout annotation, so the rollouts' watch selects the
/// bases shipdeck wrote and no other Deployment.
pub const ROLLOUT_STATE_LABEL: &str = "shipdeck.dev/rollout-state";
/// How many of the cluster's Events are kept, the newest.
pub const EVENTS_KEPT: usize = 500;

/// What the live watches hold.
#[derive(Default)]
pub struct Live {
    /// Lease specs by lease name.
    leases: Mutex<Mirror<LeaseSpec>>,
    /// Rollouts by base Deployment name.
    rollouts: Mutex<Mirror<Release>>,
    /// Events by Event name.
    events: Mutex<Mirror<ClusterEvent>>,
    /// The last error of each live watch and since when, cleared when it recovers.
    errors: Mutex<BTreeMap<&'static str, (DateTime<Utc>, String)>>,
    /// A rollout watched changed.
    changed: tokio::sync::Notify,
}

/// A watched collection, by object name. A re-list builds a new one and replaces the old one
/// only once it is whole, as kube-runtime's reflector stores do.
struct Mirror<V> {
    now: HashMap<String, V>,
    relisting: Option<HashMap<String, V>>,
}

impl<V> Default for Mirror<V> {
    fn default() -> Self {
        Self { now: HashMap::new(), relisting: None }
    }
}

impl<V> Mirror<V> {
    /// Apply one watch event; true when what is shown (`now`) changed.
    fn apply<K: ::kube::Resource>(&mut self, event: watcher::Event<K>, convert: &dyn Fn(&K) -> Option<V>) -> bool
    where
        V: PartialEq,
    {
        match event {
            watcher::Event::Init => {
                self.relisting = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(o) => {
                if let (Some(v), Some(into)) = (convert(&o), self.relisting.as_mut()) {
                    into.insert(o.name_any(), v);
                }
                false
            }
            watcher::Event::InitDone => match self.relisting.take() {
                Some(all) if all != self.now => {
                    self.now = all;
                    true
                }
                _ => false,
            },
            watcher::Event::Apply(o) => {
                let name = o.name_any();
                match convert(&o) {
                    Some(v) if self.now.get(&name) == Some(&v) => false,
                    Some(v) => {
                        self.now.insert(name, v);
                        true
                    }
                    None => self.now.remove(&name).is_some(),
                }
            }
            watcher::Event::Delete(o) => self.now.remove(&o.name_any()).is_some(),
        }
    }
}

impl Mirror<ClusterEvent> {
    /// Keep the newest `cap` (trimmed once a quarter more piled up, not on every event).
    fn trim(&mut self, cap: usize) {
        for map in [Some(&mut self.now), self.relisting.as_mut()].into_iter().flatten() {
            if map.len() <= cap + cap / 4 {
                continue;
            }
            let mut by_age: Vec<(DateTime<Utc>, String)> = map.iter().map(|(k, e)| (e.at, k.clone())).collect();
            by_age.sort();
            for (_, k) in by_age.into_iter().take(map.len() - cap) {
                map.remove(&k);
            }
        }
    }
}

/// `<user> (pid N) on <host>`: who this process is, as its Leases and Events name it.
pub fn holder_identity() -> String {
    static ME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ME.get_or_init(|| {
        format!("{} (pid {}) on {}", crate::config::paths::identity(None), std::process::id(), hostname())
    })
    .clone()
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if ok && !name.is_empty() { name } else { "an unknown host".into() }
}

/// The app an object named `name` belongs to: its base Deployment is `<deployment>`, its
/// versions' Deployments, ReplicaSets and pods `<deployment>-…` (the longest such deployment).
fn owner<'a>(name: &str, deployments: &'a HashMap<String, Target>) -> Option<&'a Target> {
    if let Some(t) = deployments.get(name) {
        return Some(t);
    }
    name.char_indices().rev().filter(|(_, c)| *c == '-').find_map(|(i, _)| deployments.get(&name[..i]))
}

fn cluster_event(e: &Event, deployments: &HashMap<String, Target>) -> Option<ClusterEvent> {
    let regarding = e.regarding.as_ref()?;
    let kind = regarding.kind.as_deref()?;
    if !matches!(kind, "Deployment" | "ReplicaSet" | "Pod") {
        return None;
    }
    let name = regarding.name.as_deref()?;
    let target = owner(name, deployments)?.clone();
    let jiff = |t: &k8s_openapi::jiff::Timestamp| DateTime::<Utc>::from_timestamp_micros(t.as_microsecond());
    let at = e
        .series
        .as_ref()
        .map(|s| &s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| &t.0))
        .or(e.deprecated_last_timestamp.as_ref().map(|t| &t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| &t.0))
        .and_then(jiff)?;
    let count = e.series.as_ref().map(|s| s.count).or(e.deprecated_count).unwrap_or(1).max(1) as u32;
    Some(ClusterEvent {
        at,
        target,
        warning: e.type_.as_deref() == Some("Warning"),
        reason: e.reason.clone().unwrap_or_default(),
        object: format!("{}/{name}", kind.to_ascii_lowercase()),
        note: e.note.as_deref().unwrap_or_default().chars().take(300).collect(),
        count,
    })
}

fn rollout_of(d: &PartialObjectMeta<Deployment>) -> Option<Release> {
    serde_json::from_str(d.metadata.annotations.as_ref()?.get(ROLLOUT_ANNOTATION)?).ok()
}

impl KubeCluster {
    /// Start the watches on Leases, the base Deployments' rollouts and Events (once).
    pub fn start_live(self: &Arc<Self>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if self.live_started.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let ns = self.namespace.as_str();
        let me = Arc::downgrade(self);
        let managed = format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}");
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), ns);
        let spec = |l: &Lease| Some(l.spec.clone().unwrap_or_default());
        tasks.push(follow(
            leases,
            watcher::Config::default().labels(&managed),
            &me,
            "leases",
            |l| &l.leases,
            spec,
            |_| {},
        ));
        let bases: Api<PartialObjectMeta<Deployment>> = Api::namespaced(self.client.clone(), ns);
        let selector = format!("{ROLLOUT_STATE_LABEL}=true");
        let config = watcher::Config::default().labels(&selector);
        tasks.push(follow(bases, config, &me, "deployments", |l| &l.rollouts, rollout_of, |_| {}));
        let deployments: HashMap<String, Target> =
            self.apps.iter().map(|(t, o)| (o.deployment.clone(), t.clone())).collect();
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let convert = move |e: &Event| cluster_event(e, &deployments);
        let trim = |m: &mut Mirror<ClusterEvent>| m.trim(EVENTS_KEPT);
        tasks.push(follow(events, watcher::Config::default(), &me, "events", |l| &l.events, convert, trim));
    }

    /// Who holds the app's Lease and the rollout its base Deployment carries, as watched.
    pub(super) fn live_news(&self, t: &Target) -> ClusterNews {
        let Ok(o) = self.objects(t) else { return ClusterNews::default() };
        let lease = format!("shipdeck-{}", o.deployment);
        let driver = self.live.leases.lock().unwrap_or_else(|e| e.into_inner()).now.get(&lease).and_then(driver);
        let rollouts = self.live.rollouts.lock().unwrap_or_else(|e| e.into_inner());
        let rollout = rollouts.now.get(&o.deployment).filter(|r| r.env == t.env && r.app == t.app).cloned();
        ClusterNews { driver, rollout }
    }

    /// The Events kept, oldest first, and a line for each live watch that fails.
    pub(super) fn live_events(&self) -> Vec<ClusterEvent> {
        let mut out: Vec<ClusterEvent> =
            self.live.events.lock().unwrap_or_else(|e| e.into_inner()).now.values().cloned().collect();
        let errors = self.live.errors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = self.apps.keys().next() {
            for (since, message) in errors.values() {
                out.push(ClusterEvent {
                    at: *since,
                    target: t.clone(),
                    warning: true,
                    reason: "WatchFailed".into(),
                    object: format!("namespace/{}", self.namespace),
                    note: message.clone(),
                    count: 1,
                });
            }
        }
        out.sort_by(|a, b| (a.at, &a.object, &a.reason).cmp(&(b.at, &b.object, &b.reason)));
        out
    }

    /// How many Leases and rollouts the watches hold (tests wait for them).
    #[cfg(test)]
    pub(super) fn live_held(&self) -> (usize, usize) {
        let leases = self.live.leases.lock().unwrap_or_else(|e| e.into_inner()).now.len();
        (leases, self.live.rollouts.lock().unwrap_or_else(|e| e.into_inner()).now.len())
    }

    /// Until a rollout watched changed (a change with nobody waiting is kept).
    pub(super) async fn live_changed(&self) {
        self.live.changed.notified().await
    }
}

/// What a Lease says about who drives, now.
fn driver(spec: &LeaseSpec) -> Option<Driver> {
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref().and_then(|t| DateTime::<Utc>::from_timestamp_micros(t.0.as_microsecond()));
    let secs = spec.lease_duration_seconds.map(i64::from).unwrap_or(LEASE_DURATION.as_secs() as i64);
    let lapsed = renewed.is_none_or(|r| r + chrono::Duration::seconds(secs) < Utc::now());
    Some(Driver { mine: holder == holder_identity(), holder, lapsed, renewed })
}

/// Follow one watch into `pick(live)`, converting each object with `convert` (`None`: not kept).
fn follow<K, V, C>(
    api: Api<K>,
    config: watcher::Config,
    cluster: &Weak<KubeCluster>,
    resource: &'static str,
    pick: fn(&Live) -> &Mutex<Mirror<V>>,
    convert: C,
    after: fn(&mut Mirror<V>),
) -> tokio::task::JoinHandle<()>
where
    K: ::kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
    V: PartialEq + Send + 'static,
    C: Fn(&K) -> Option<V> + Send + 'static,
{
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let stream = watcher(api, config).default_backoff();
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            let Some(c) = cluster.upgrade() else { break };
            match item {
                Ok(event) => {
                    let changed = {
                        let mut mirror = pick(&c.live).lock().unwrap_or_else(|e| e.into_inner());
                        let changed = mirror.apply(event, &convert);
                        after(&mut mirror);
                        changed
                    };
                    c.live.errors.lock().unwrap_or_else(|e| e.into_inner()).remove(resource);
                    // Leases and Events are read when shown; only a rollout that changed is
                    // followed by the host (a Lease renewal every 5 s wakes nobody).
                    if changed && pick_wakes(resource) {
                        c.live.changed.notify_one();
                    }
                }
                Err(e) => {
                    let target = format!("namespace {}", c.namespace);
                    let failure = super::errors::watch_failure(&target, &c.namespace, resource, "", &e);
                    let mut errors = c.live.errors.lock().unwrap_or_else(|e| e.into_inner());
                    // The same failure again keeps its time (the line does not move every retry)
                    // and is logged once.
                    if errors.get(resource).is_none_or(|(_, m)| *m != failure.message) {
                        tracing::warn!("{}", failure.message);
                        errors.insert(resource, (Utc::now(), failure.message.clone()));
                    }
                    // Not allowed: said in the Events pane, and not asked again (see WatchFailure).
                    if failure.refused() {
                        break;
                    }
                }
            }
        }
    })
}

/// Whose changes wake [`KubeCluster::live_changed`]: the base Deployments' rollouts.
fn pick_wakes(resource: &str) -> bool {
    resource == "deployments"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_belongs_to_the_app_with_the_longest_deployment_name_it_starts_with() {
        let apps: HashMap<String, Target> =
            [("web", "web"), ("web-api", "api")].map(|(d, a)| (d.to_string(), Target::new("prod", a))).into();
        assert_eq!(owner("web", &apps).map(|t| t.app.as_str()), Some("web"));
        assert_eq!(owner("web-1-1-0-7d9f-abcde", &apps).map(|t| t.app.as_str()), Some("web"));
        assert_eq!(owner("web-api-2-0-0-5c6b", &apps).map(|t| t.app.as_str()), Some("api"));
        assert_eq!(owner("webshop-1", &apps), None);
        assert_eq!(owner("db-0", &apps), None);
    }

    /// A watch that expired (`410 Gone`) lists again: what the new list lacks is gone, but only
    /// once the list is whole — meanwhile the old one still shows.
    #[test]
    fn a_relist_replaces_what_was_held_once_it_is_whole() {
        let lease = |name: &str, holder: &str| Lease {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec { holder_identity: Some(holder.into()), ..Default::default() }),
        };
        let spec = |l: &Lease| l.spec.clone();
        let mut m: Mirror<LeaseSpec> = Mirror::default();
        for e in
            [watcher::Event::Init, watcher::Event::InitApply(lease("shipdeck-web", "alice")), watcher::Event::InitDone]
        {
            m.apply(e, &spec);
        }
        m.apply(watcher::Event::Apply(lease("shipdeck-api", "bob")), &spec);
        assert_eq!(m.now.len(), 2);
        m.apply(watcher::Event::Init, &spec);
        m.apply(watcher::Event::InitApply(lease("shipdeck-api", "carol")), &spec);
        assert_eq!(m.now["shipdeck-web"].holder_identity.as_deref(), Some("alice"), "still shown while relisting");
        m.apply(watcher::Event::InitDone, &spec);
        assert_eq!(m.now.keys().collect::<Vec<_>>(), ["shipdeck-api"]);
        assert_eq!(m.now["shipdeck-api"].holder_identity.as_deref(), Some("carol"));
        m.apply(watcher::Event::Delete(lease("shipdeck-api", "carol")), &spec);
        assert!(m.now.is_empty());
    }

    #[test]
    fn only_the_newest_events_are_kept() {
        let mut m: Mirror<ClusterEvent> = Mirror::default();
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        for i in 0..(EVENTS_KEPT + EVENTS_KEPT / 4 + 1) {
            let e = ClusterEvent {
                at: t0 + chrono::Duration::seconds(i as i64),
                target: Target::new("prod", "web"),
                warning: false,
                reason: "Step".into(),
                object: "deployment/web".into(),
                note: String::new(),
                count: 1,
            };
            m.now.insert(format!("e{i}"), e);
            m.trim(EVENTS_KEPT);
        }
        assert_eq!(m.now.len(), EVENTS_KEPT);
        let oldest = m.now.values().map(|e| e.at).min();
        assert_eq!(oldest, Some(t0 + chrono::Duration::seconds((EVENTS_KEPT / 4 + 1) as i64)));
    }

    /// Only a change of what is shown counts: a Lease renewed every 5 s, or a rollout written
    /// again unchanged, wakes nothing (the host's follower reads the store on each wake).
    #[test]
    fn only_a_change_of_what_is_shown_counts_and_only_rollouts_wake_the_follower() {
        let lease = |name: &str, holder: &str| Lease {
            metadata: ::kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(LeaseSpec { holder_identity: Some(holder.into()), ..Default::default() }),
        };
        let holder = |l: &Lease| l.spec.as_ref().and_then(|s| s.holder_identity.clone());
        let mut m: Mirror<String> = Mirror::default();
        assert!(!m.apply(watcher::Event::Init, &holder));
        assert!(!m.apply(watcher::Event::InitApply(lease("a", "alice")), &holder));
        assert!(m.apply(watcher::Event::InitDone, &holder), "the first list is a change");
        assert!(!m.apply(watcher::Event::Apply(lease("a", "alice")), &holder), "the same again");
        assert!(m.apply(watcher::Event::Apply(lease("a", "bob")), &holder));
        assert!(!m.apply(watcher::Event::Init, &holder));
        assert!(!m.apply(watcher::Event::InitApply(lease("a", "bob")), &holder));
        assert!(!m.apply(watcher::Event::InitDone, &holder), "a re-list of the same");
        assert!(m.apply(watcher::Event::Delete(lease("a", "bob")), &holder));
        assert!(!m.apply(watcher::Event::Delete(lease("a", "bob")), &holder), "gone already");
        assert!(pick_wakes("deployments") && !pick_wakes("leases") && !pick_wakes("events"));
    }
}
