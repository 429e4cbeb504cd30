//! shipdeck's own operational metrics, fed from the engine's events and served on
//! `GET /metrics` (OpenMetrics text, which Prometheus scrapes) with `--metrics-addr`:
//! `deployments_total{environment,status}`, `deployment_duration_seconds{environment,strategy}`,
//! `rollbacks_total{environment,reason}` and `active_version_info{environment,application,version}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

use crate::cluster::Target;
use crate::engine::{Engine, Event};
use crate::model::{Release, Status, Step};

/// Buckets of deployment durations, in seconds: 10 s to 2 h.
const DURATION_BUCKETS: [f64; 11] = [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 5400.0, 7200.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    environment: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StrategyLabels {
    environment: String,
    strategy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    environment: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActiveLabels {
    environment: String,
    application: String,
    version: String,
}

type DurationFamily = Family<StrategyLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The metrics and their registry.
pub struct Metrics {
    registry: Registry,
    deployments: Family<StatusLabels, Counter>,
    durations: DurationFamily,
    rollbacks: Family<ReasonLabels, Counter>,
    active: Family<ActiveLabels, Gauge>,
    /// The version each (environment, application) is shown running.
    active_now: Mutex<HashMap<Target, String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let deployments = Family::<StatusLabels, Counter>::default();
        let durations: DurationFamily = Family::new_with_constructor(duration_histogram);
        let rollbacks = Family::<ReasonLabels, Counter>::default();
        let active = Family::<ActiveLabels, Gauge>::default();
        registry.register("deployments", "Releases that ended, by environment and final status", deployments.clone());
        registry.register(
            "deployment_duration_seconds",
            "Time from a release's start to its end, by environment and strategy",
            durations.clone(),
        );
        registry.register("rollbacks", "Rollbacks, by environment and reason", rollbacks.clone());
        registry.register(
            "active_version_info",
            "The version taking most traffic per environment and application (always 1)",
            active.clone(),
        );
        Self { registry, deployments, durations, rollbacks, active, active_now: Mutex::new(HashMap::new()) }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding metrics: {e}");
        }
        out
    }

    /// `version` now runs `target` (None: nothing does).
    pub fn set_active(&self, target: &Target, version: Option<&str>) {
        let mut now = self.active_now.lock().unwrap_or_else(|e| e.into_inner());
        let labels = |v: &str| ActiveLabels {
            environment: target.env.clone(),
            application: target.app.clone(),
            version: v.to_string(),
        };
        if let Some(old) = now.get(target)
            && Some(old.as_str()) != version
        {
            self.active.remove(&labels(old));
        }
        match version {
            Some(v) => {
                self.active.get_or_create(&labels(v)).set(1);
                now.insert(target.clone(), v.to_string());
            }
            None => {
                now.remove(target);
            }
        }
    }

    /// A release reached a final status `to`, from `from` (the status before).
    pub fn ended(&self, r: &Release, from: Option<Status>, cause: &str, started: chrono::DateTime<chrono::Utc>) {
        let env = r.env.clone();
        // A verified release marked rolled back later (a rollback to an older version) was
        // counted when it was verified; only the rollback is new.
        let after_the_end = from.is_some_and(|s| s.is_terminal());
        if !after_the_end {
            self.deployments
                .get_or_create(&StatusLabels { environment: env.clone(), status: r.status.to_string() })
                .inc();
            let secs = (r.updated_at - started).num_milliseconds().max(0) as f64 / 1000.0;
            self.durations
                .get_or_create(&StrategyLabels { environment: env.clone(), strategy: r.strategy.to_string() })
                .observe(secs);
        }
        if r.status == Status::RolledBack {
            let reason = rollback_reason(r, after_the_end, cause);
            self.rollbacks.get_or_create(&ReasonLabels { environment: env, reason: reason.into() }).inc();
        }
    }
}

/// Why a release was rolled back, in a few fixed words (labels must not take free text):
/// `manual` when a person asked, else the kind of step that failed.
pub fn rollback_reason(r: &Release, after_the_end: bool, cause: &str) -> &'static str {
    if after_the_end || cause.starts_with("rolled back by ") || cause.starts_with("rolled back to ") {
        return "manual";
    }
    match r.current_step() {
        Some(Step::Analysis { .. }) => "analysis",
        Some(Step::Verify { .. }) => "verification",
        Some(Step::AbExperiment { .. }) => "experiment",
        Some(Step::ApplyFlags { .. } | Step::RevertFlags { .. }) => "flags",
        Some(_) => "deployment",
        None => "failure",
    }
}

/// The metrics endpoint and the task that keeps the metrics up to date.
pub struct MetricsServer {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    server: tokio::task::JoinHandle<()>,
    feeder: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Listen on `addr` (port 0 picks one; see [`MetricsServer::addr`]) and follow `engine`.
    pub async fn start(engine: &Engine, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let metrics = Arc::new(Metrics::new());
        // Subscribed before the seeding: nothing that happens in between is missed.
        let events = engine.subscribe();
        for (t, _) in engine.estate().targets() {
            metrics.set_active(&t, current_version(engine, &t).await.as_deref());
        }
        let feeder = tokio::spawn(feed(engine.clone(), metrics.clone(), events));
        let app = axum::Router::new().route("/metrics", axum::routing::get(scrape)).with_state(metrics.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("metrics server stopped: {e}");
            }
        });
        Ok(Self { addr, metrics, server, feeder })
    }

    pub fn stop(&self) {
        self.server.abort();
        self.feeder.abort();
    }
}

async fn scrape(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        metrics.encode(),
    )
}

async fn current_version(engine: &Engine, t: &Target) -> Option<String> {
    let state = engine.cluster().state(t).await.ok()?;
    state.routing.weights.iter().filter(|(_, w)| **w > 0).max_by_key(|(_, w)| **w).map(|(v, _)| v.clone())
}

async fn feed(engine: Engine, metrics: Arc<Metrics>, mut events: broadcast::Receiver<Event>) {
    use broadcast::error::RecvError;
    let mut seen: HashMap<String, Status> = HashMap::new();
    loop {
        let (release, cause) = match events.recv().await {
            Ok(Event::Release { release, cause }) => (*release, cause),
            Ok(_) => continue,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!("metrics missed {n} engine events");
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        if seen.insert(release.id.clone(), release.status) == Some(release.status) || !release.status.is_terminal() {
            continue;
        }
        let transitions = engine.store().transitions(&release.id).unwrap_or_default();
        let from = transitions.iter().rev().find(|t| t.to == release.status).and_then(|t| t.from);
        let started =
            transitions.iter().find(|t| t.to == Status::InProgress).map(|t| t.at).unwrap_or(release.created_at);
        metrics.ended(&release, from, &cause, started);
        let target = Target::new(&release.env, &release.app);
        metrics.set_active(&target, current_version(&engine, &target).await.as_deref());
    }
}
