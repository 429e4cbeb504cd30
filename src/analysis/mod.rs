//! Metric providers and the canary judge.

pub mod conditions;
pub mod judges;
pub mod prometheus;
pub mod standard;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::cluster::Target;

/// What one version answered over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionMetrics {
    pub requests: u64,
    /// Responses with a 5xx status or no response at all.
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Per-request latencies over the window for the judges that compare distributions: the
    /// local cluster's raw (reservoir-sampled) latencies, or one value per request from a
    /// Prometheus histogram's buckets. Empty when the provider has none.
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
}

impl VersionMetrics {
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// What a judge is handed for this window.
    pub fn sample(&self) -> judges::Sample {
        judges::Sample::new(self.requests, self.errors).with_latencies(self.latencies_ms.clone())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("metrics for {target} unavailable: {message}")]
pub struct MetricsError {
    pub target: String,
    pub message: String,
}

/// Request counts, errors and latency quantiles per version over a window.
#[async_trait]
pub trait MetricsProvider: Send + Sync {
    async fn version_metrics(
        &self,
        target: &Target,
        version: &str,
        window: std::time::Duration,
    ) -> Result<VersionMetrics, MetricsError>;
}

/// Requests, errors and latencies per variant of one flag, as the apps that evaluate it served
/// them over a window (a progressive rollout compares `on` with `off`).
#[async_trait]
pub trait FlagMetrics: Send + Sync {
    async fn variant_metrics(
        &self,
        target: &Target,
        flag: &str,
        window: std::time::Duration,
    ) -> Result<std::collections::BTreeMap<String, VersionMetrics>, MetricsError>;
}
