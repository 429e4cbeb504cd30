//! Analysis templates, in Argo Rollouts' vocabulary: how a canary is measured (which provider,
//! how often, how many times), which judge compares it with stable, which absolute conditions
//! each measurement must meet, and how many failed, inconclusive or erroneous measurements are
//! tolerated.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// Where measurements come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsSource {
    /// The embedded cluster's router: exact per-version counts and raw latencies.
    #[default]
    Local,
    /// PromQL over HTTP against the estate's `[prometheus] url`.
    Prometheus,
}

impl MetricsSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricsSource::Local => "local",
            MetricsSource::Prometheus => "prometheus",
        }
    }
}

/// The figure a metric's conditions see as `result`, taken over one measurement's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    /// The canary's failed share of requests (0.0–1.0).
    ErrorRate,
    /// The canary's error rate divided by stable's (NaN-free: no data when stable has none).
    ErrorRateRatio,
    P50Ms,
    P99Ms,
    /// The canary's p99 divided by stable's.
    P99Ratio,
    /// Canary requests in the window.
    Requests,
}

impl MetricName {
    pub const ALL: [MetricName; 6] = [
        MetricName::ErrorRate,
        MetricName::ErrorRateRatio,
        MetricName::P50Ms,
        MetricName::P99Ms,
        MetricName::P99Ratio,
        MetricName::Requests,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetricName::ErrorRate => "error_rate",
            MetricName::ErrorRateRatio => "error_rate_ratio",
            MetricName::P50Ms => "p50_ms",
            MetricName::P99Ms => "p99_ms",
            MetricName::P99Ratio => "p99_ratio",
            MetricName::Requests => "requests",
        }
    }
}

/// One metric of a template: `success_condition` and/or `failure_condition`, expressions over
/// `result` such as `result <= 0.02` (comparisons, `&&`, `||`, `!`, arithmetic, parentheses).
/// As in Argo Rollouts: with only a success condition, false fails; with only a failure
/// condition, true fails; with both, neither true is inconclusive. No value is inconclusive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricCheck {
    pub name: MetricName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Record this metric's outcome without letting it fail the analysis.
    #[serde(default)]
    pub dry_run: bool,
}

/// A named analysis template (`[analysis_templates.NAME]`, shared, or per app).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisTemplate {
    /// `sequential` (default), `standard`, `threshold` or `mann-whitney`.
    #[serde(default = "default_judge")]
    pub judge: String,
    #[serde(default)]
    pub provider: MetricsSource,
    /// Time between measurements; each looks at the traffic of the last interval.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Measurements taken, at most; the judge may decide sooner.
    #[serde(default = "default_count")]
    pub count: u32,
    /// Wait this long after the step starts before the first measurement.
    #[serde(default)]
    pub initial_delay: HumanDuration,
    /// Failed measurements tolerated; one more fails the analysis.
    #[serde(default)]
    pub failure_limit: u32,
    /// Inconclusive (or no-data) measurements tolerated; one more pauses the release for a person.
    #[serde(default = "default_inconclusive_limit")]
    pub inconclusive_limit: u32,
    /// Measurement errors in a row tolerated (the provider failed); one more pauses the release.
    #[serde(default = "default_consecutive_error_limit")]
    pub consecutive_error_limit: u32,
    /// Measure and record everything, fail and pause nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Canary requests a window needs to count; fewer is inconclusive (default: the app's
    /// `canary.min_requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    #[serde(default)]
    pub metrics: Vec<MetricCheck>,
}

pub fn default_judge() -> String {
    "sequential".into()
}
fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_count() -> u32 {
    10
}
fn default_inconclusive_limit() -> u32 {
    2
}
fn default_consecutive_error_limit() -> u32 {
    4
}

impl Default for AnalysisTemplate {
    fn default() -> Self {
        Self {
            judge: default_judge(),
            provider: MetricsSource::Local,
            interval: default_interval(),
            count: default_count(),
            initial_delay: HumanDuration(Duration::ZERO),
            failure_limit: 0,
            inconclusive_limit: default_inconclusive_limit(),
            consecutive_error_limit: default_consecutive_error_limit(),
            dry_run: false,
            min_requests: None,
            metrics: Vec::new(),
        }
    }
}

/// A canary step's `analysis = { … }`: a template by name (or the built-in default) with any of
/// its keys overridden in place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<MetricsSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricCheck>>,
}

impl AnalysisSpec {
    /// The template this step names (or `base` when it names none) with the step's own keys over it.
    pub fn over(&self, base: &AnalysisTemplate) -> AnalysisTemplate {
        let b = base.clone();
        AnalysisTemplate {
            judge: self.judge.clone().unwrap_or(b.judge),
            provider: self.provider.unwrap_or(b.provider),
            interval: self.interval.unwrap_or(b.interval),
            count: self.count.unwrap_or(b.count),
            initial_delay: self.initial_delay.unwrap_or(b.initial_delay),
            failure_limit: self.failure_limit.unwrap_or(b.failure_limit),
            inconclusive_limit: self.inconclusive_limit.unwrap_or(b.inconclusive_limit),
            consecutive_error_limit: self.consecutive_error_limit.unwrap_or(b.consecutive_error_limit),
            dry_run: self.dry_run.unwrap_or(b.dry_run),
            min_requests: self.min_requests.or(b.min_requests),
            metrics: self.metrics.clone().unwrap_or(b.metrics),
        }
    }
}

/// What an analysis step of a stored plan runs: a template resolved against the app's settings.
/// Plans stored before templates existed read back with the standard judge they ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalysisRules {
    /// The template's name (empty for an inline or built-in analysis).
    pub template: String,
    pub judge: String,
    pub provider: MetricsSource,
    pub initial_delay_secs: u64,
    pub failure_limit: u32,
    pub consecutive_error_limit: u32,
    pub dry_run: bool,
    pub min_requests: u64,
    pub metrics: Vec<MetricCheck>,
}

impl Default for AnalysisRules {
    fn default() -> Self {
        Self {
            template: String::new(),
            judge: "standard".into(),
            provider: MetricsSource::Local,
            initial_delay_secs: 0,
            failure_limit: 0,
            consecutive_error_limit: default_consecutive_error_limit(),
            dry_run: false,
            min_requests: 10,
            metrics: Vec::new(),
        }
    }
}

/// The estate's `[prometheus]`: where the `prometheus` provider sends its queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSettings {
    /// Base URL of the server, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    /// A query that takes longer is a measurement error.
    #[serde(default = "default_prometheus_timeout")]
    pub timeout: HumanDuration,
}

fn default_prometheus_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
