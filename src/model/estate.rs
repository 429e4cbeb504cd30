//! The estate: environments, apps, their versions and release settings, as written in the
//! estate file (TOML). Plain data; loading and validation live in `config::estate`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::analysis::{AnalysisSpec, AnalysisTemplate};
use super::duration::HumanDuration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub name: String,
    #[serde(default)]
    pub approval_required: bool,
    /// Who may approve releases into this environment; empty means anyone but the requester.
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub promotes_to: Vec<String>,
    /// Where the environment's workloads run: the embedded local cluster unless it says
    /// `cluster = { kubernetes = { context = "…", namespace = "…" } }`.
    #[serde(default, skip_serializing_if = "super::ClusterSettings::is_local")]
    pub cluster: super::ClusterSettings,
}

/// How one version of an app behaves when it runs: the local cluster's pods follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionProfile {
    pub version: String,
    /// Share of requests answered with a 500 (0.0–1.0).
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default = "default_p50")]
    pub p50_ms: f64,
    #[serde(default = "default_p99")]
    pub p99_ms: f64,
    /// Time from start until `/ready` answers 200.
    #[serde(default)]
    pub ready_after: HumanDuration,
    /// The process exits right after it starts (CrashLoopBackOff).
    #[serde(default)]
    pub crash: bool,
    /// Dependencies that `/health/dependencies` reports unhealthy.
    #[serde(default)]
    pub broken_dependencies: Vec<String>,
    /// Flag changes a release of this version carries (`{ "new-checkout" = "on" }`, `"off"`,
    /// `"25%"`): applied when it is verified, put back when it is rolled back.
    #[serde(default, with = "flag_settings", skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<super::FlagSetting>,
    /// What feature flags do to this version: a pod evaluates these flags on every API request
    /// and applies the effect of the variant it served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flag_effects: Vec<FlagEffect>,
}

/// `{ flag = "new-checkout", variant = "on", error_rate = 0.1, extra_latency_ms = 30 }`: a
/// request served `variant` of `flag` fails at `error_rate` (instead of the version's rate)
/// and takes `extra_latency_ms` longer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagEffect {
    /// The flag's key in the flag store.
    pub flag: String,
    /// The variant the effect applies to.
    pub variant: String,
    /// Share of requests (0.0–1.0) answered with a 500; absent keeps the version's rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Added to the version's latency.
    #[serde(default)]
    pub extra_latency_ms: f64,
}

fn default_p50() -> f64 {
    20.0
}
fn default_p99() -> f64 {
    40.0
}

impl VersionProfile {
    pub fn ready_after(&self) -> Duration {
        self.ready_after.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    Rolling,
    Recreate,
    BlueGreen,
    Canary,
    Ab,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 5] = [
        StrategyKind::Rolling,
        StrategyKind::Recreate,
        StrategyKind::BlueGreen,
        StrategyKind::Canary,
        StrategyKind::Ab,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Rolling => "rolling",
            StrategyKind::Recreate => "recreate",
            StrategyKind::BlueGreen => "blue-green",
            StrategyKind::Canary => "canary",
            StrategyKind::Ab => "ab",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollingSettings {
    #[serde(default = "one")]
    pub max_surge: u32,
    #[serde(default)]
    pub max_unavailable: u32,
    /// A batch that makes no progress for this long fails the release.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: HumanDuration,
}

fn one() -> u32 {
    1
}
fn default_progress_deadline() -> HumanDuration {
    HumanDuration(Duration::from_secs(120))
}

impl Default for RollingSettings {
    fn default() -> Self {
        Self { max_surge: 1, max_unavailable: 0, progress_deadline: default_progress_deadline() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueGreenSettings {
    /// Switch automatically this long after the preview is verified; absent means wait for
    /// a manual resume.
    #[serde(default)]
    pub auto_promotion: Option<HumanDuration>,
    /// How long the old colour stays up after the switch (for an instant switch back).
    #[serde(default = "default_scale_down_delay")]
    pub scale_down_delay: HumanDuration,
}

fn default_scale_down_delay() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl Default for BlueGreenSettings {
    fn default() -> Self {
        Self { auto_promotion: Some(HumanDuration(Duration::ZERO)), scale_down_delay: default_scale_down_delay() }
    }
}

/// One canary step, in Argo Rollouts' vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CanaryStep {
    SetWeight(u32),
    /// `pause = "30s"` waits that long; `pause = {}` waits for a resume.
    Pause(PauseSpec),
    Analysis(AnalysisSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PauseSpec {
    For(HumanDuration),
    Indefinite {},
}

impl PauseSpec {
    pub fn duration(&self) -> Option<Duration> {
        match self {
            PauseSpec::For(d) => Some(d.0),
            PauseSpec::Indefinite {} => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySettings {
    #[serde(default = "default_canary_steps")]
    pub steps: Vec<CanaryStep>,
    /// How long the canary's pods stay after an abort (traffic leaves them at once).
    #[serde(default = "default_abort_delay")]
    pub abort_scale_down_delay: HumanDuration,
    /// Fewer requests than this in a measurement's window make it inconclusive.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
}

fn default_canary_steps() -> Vec<CanaryStep> {
    vec![CanaryStep::SetWeight(10), CanaryStep::Analysis(AnalysisSpec::default())]
}
fn default_abort_delay() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_min_requests() -> u64 {
    10
}

impl Default for CanarySettings {
    fn default() -> Self {
        Self {
            steps: default_canary_steps(),
            abort_scale_down_delay: default_abort_delay(),
            min_requests: default_min_requests(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbSettings {
    /// `header` or `cookie`.
    #[serde(default = "default_match_kind")]
    pub match_kind: crate::cluster::MatchKind,
    #[serde(default = "default_match_name")]
    pub match_name: String,
    #[serde(default = "default_match_value")]
    pub match_value: String,
    /// How long the audience is sent to B before the comparison decides.
    #[serde(default = "default_ab_duration")]
    pub duration: HumanDuration,
    /// Share of the load generator's users that belong to the audience (0.0–1.0).
    #[serde(default = "default_audience")]
    pub audience: f64,
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
}

fn default_match_kind() -> crate::cluster::MatchKind {
    crate::cluster::MatchKind::Header
}
fn default_match_name() -> String {
    "x-shipdeck-group".into()
}
fn default_match_value() -> String {
    "b".into()
}
fn default_ab_duration() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_audience() -> f64 {
    0.2
}

impl Default for AbSettings {
    fn default() -> Self {
        Self {
            match_kind: default_match_kind(),
            match_name: default_match_name(),
            match_value: default_match_value(),
            duration: default_ab_duration(),
            audience: default_audience(),
            min_requests: default_min_requests(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// GET `path`, expect 200 and a JSON body with `"status": "healthy"`.
    Health,
    /// GET `path`, expect 200 and `"ready": true`.
    Readiness,
    /// GET `path`, expect every entry of `dependencies` to be healthy.
    Dependencies,
    /// `method` `path`, expect a status below 400.
    Functional,
    /// GET `path`, expect a status below 400 within `max_latency_ms`.
    Performance,
    /// The standard's smoke tests: create a user, read it back, list users.
    Smoke,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    #[serde(default)]
    pub path: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "yes")]
    pub critical: bool,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// First retry waits this long; each next one twice as long.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    #[serde(default)]
    pub max_latency_ms: Option<f64>,
}

fn default_method() -> String {
    "GET".into()
}
fn yes() -> bool {
    true
}
fn default_retries() -> u32 {
    3
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_backoff() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}

impl Check {
    fn new(name: &str, kind: CheckKind, path: &str, critical: bool) -> Self {
        Self {
            name: name.into(),
            kind,
            path: path.into(),
            method: default_method(),
            critical,
            retries: default_retries(),
            timeout: default_timeout(),
            backoff: default_backoff(),
            max_latency_ms: None,
        }
    }

    /// The standard's checks: health, readiness, dependencies, an API call, response time and
    /// the smoke tests.
    pub fn standard_set() -> Vec<Check> {
        let mut response_time = Check::new("response_time", CheckKind::Performance, "/api/v1/users", false);
        response_time.max_latency_ms = Some(100.0);
        vec![
            Check::new("primary_health", CheckKind::Health, "/health", true),
            Check::new("readiness", CheckKind::Readiness, "/ready", true),
            Check::new("dependencies", CheckKind::Dependencies, "/health/dependencies", true),
            Check::new("api_endpoints", CheckKind::Functional, "/api/v1/users", true),
            response_time,
            Check::new("smoke_tests", CheckKind::Smoke, "", true),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    #[serde(default = "Check::standard_set")]
    pub checks: Vec<Check>,
}

impl Default for Verification {
    fn default() -> Self {
        Self { checks: Check::standard_set() }
    }
}

/// An app's effective settings in one environment: its base deep-merged with the
/// environment's overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    pub name: String,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Requests per second the load generator sends through the router.
    #[serde(default = "default_rps")]
    pub rps: f64,
    #[serde(default = "default_strategy")]
    pub strategy: StrategyKind,
    #[serde(default = "yes")]
    pub rollback_on_failure: bool,
    #[serde(default)]
    pub rolling: RollingSettings,
    #[serde(default)]
    pub blue_green: BlueGreenSettings,
    #[serde(default)]
    pub canary: CanarySettings,
    #[serde(default)]
    pub ab: AbSettings,
    #[serde(default)]
    pub verification: Verification,
    /// Analysis templates the canary steps can name: the estate's shared
    /// `[analysis_templates.NAME]` with the app's own (same name wins) merged in.
    #[serde(default)]
    pub analysis_templates: BTreeMap<String, AnalysisTemplate>,
    /// PromQL templates for the `prometheus` provider; unset ones use the defaults.
    #[serde(default)]
    pub prometheus_queries: PrometheusQueries,
    pub versions: Vec<VersionProfile>,
    /// The version each environment starts with when nothing was deployed yet.
    #[serde(default)]
    pub initial_version: Option<String>,
    /// How an emergency fix of this app is built and which critical suites test it.
    #[serde(default)]
    pub emergency: super::EmergencyCommands,
    /// Per-environment overrides, already applied; kept so the report can show them.
    #[serde(default)]
    pub overrides: BTreeMap<String, toml::Table>,
    /// The app's git repository, for release notes (relative paths are from the estate file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<std::path::PathBuf>,
    /// How a version maps to a git ref, e.g. `v{version}`; default: `v{version}`, then `{version}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `[apps.kubernetes]`: the app's object names in Kubernetes environments.
    #[serde(default, skip_serializing_if = "is_default_kubernetes")]
    pub kubernetes: super::KubernetesApp,
}

fn is_default_kubernetes(k: &super::KubernetesApp) -> bool {
    *k == super::KubernetesApp::default()
}

fn default_replicas() -> u32 {
    3
}
fn default_rps() -> f64 {
    10.0
}
fn default_strategy() -> StrategyKind {
    StrategyKind::Rolling
}

/// PromQL templates with `{app}`, `{env}`, `{version}` and `{interval}`, per app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusQueries {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<String>,
    /// Per-bucket counts of the latency histogram over the window (`sum by (le) (…)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
}

impl AppSettings {
    /// The template an analysis step runs: the named one (or the built-in default) with the
    /// step's own keys over it. `None` when the step names a template nobody declared.
    pub fn analysis_template(&self, spec: &AnalysisSpec) -> Option<AnalysisTemplate> {
        let base = match &spec.template {
            Some(name) => self.analysis_templates.get(name)?.clone(),
            None => AnalysisTemplate::default(),
        };
        let mut t = spec.over(&base);
        if t.min_requests.is_none() {
            t.min_requests = Some(self.canary.min_requests);
        }
        Some(t)
    }

    pub fn profile(&self, version: &str) -> Option<&VersionProfile> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn known_versions(&self) -> Vec<&str> {
        self.versions.iter().map(|v| v.version.as_str()).collect()
    }
}

/// `{ flag = "on" | "off" | "25%" }` in the estate, a list of settings in memory.
mod flag_settings {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::model::{FlagSetting, FlagTo};

    pub fn serialize<S: Serializer>(v: &[FlagSetting], s: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, String> = v
            .iter()
            .map(|f| {
                let to = match f.to {
                    FlagTo::On => "on".to_string(),
                    FlagTo::Off => "off".to_string(),
                    FlagTo::Percent(p) => format!("{p}%"),
                };
                (f.flag.as_str(), to)
            })
            .collect();
        s.collect_map(map)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FlagSetting>, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        map.into_iter()
            .map(|(flag, to)| {
                FlagTo::parse(&to)
                    .map(|to| FlagSetting { flag: flag.clone(), to })
                    .map_err(|e| serde::de::Error::custom(format!("flags.{flag}: {e}")))
            })
            .collect()
    }
}
