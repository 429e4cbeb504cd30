//! What the router saw, per version, in one-second buckets: enough for the canary judge's
//! windows (exact quantiles from raw latencies) and for the actual traffic split, with memory
//! bounded by the retention and the per-bucket latency cap.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::time::Instant;

use super::http::fast_below;
use crate::analysis::VersionMetrics;

/// Buckets older than this are dropped.
const RETENTION_SECS: u64 = 15 * 60;
/// Raw latencies kept per bucket; beyond it a reservoir sample keeps quantiles unbiased.
const LATENCY_CAP: usize = 2_000;

struct Bucket {
    sec: u64,
    requests: u64,
    errors: u64,
    latencies: Vec<f32>,
}

/// The series of one version of one workload. The router holds an `Arc` to it so recording
/// is one uncontended lock, no map lookup.
pub(crate) struct VersionStats {
    epoch: Instant,
    buckets: Mutex<VecDeque<Bucket>>,
}

impl VersionStats {
    fn new(epoch: Instant) -> Self {
        Self { epoch, buckets: Mutex::new(VecDeque::new()) }
    }

    pub(crate) fn record(&self, latency_ms: f32, error: bool) {
        let sec = self.epoch.elapsed().as_secs();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.back().is_none_or(|b| b.sec != sec) {
            // A finished second keeps what it holds for 15 minutes: no spare capacity.
            if let Some(done) = buckets.back_mut() {
                done.latencies.shrink_to_fit();
            }
            prune(&mut buckets, sec);
            buckets.push_back(Bucket { sec, requests: 0, errors: 0, latencies: Vec::new() });
        }
        let Some(b) = buckets.back_mut() else { return };
        b.requests += 1;
        if error {
            b.errors += 1;
        }
        if b.latencies.len() < LATENCY_CAP {
            b.latencies.push(latency_ms);
        } else {
            let slot = fast_below(b.requests) as usize;
            if slot < LATENCY_CAP {
                b.latencies[slot] = latency_ms;
            }
        }
    }

    /// Sums the buckets that overlap `now - window .. now`.
    fn metrics(&self, window: Duration) -> VersionMetrics {
        let start = self.epoch.elapsed().saturating_sub(window).as_secs_f64();
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut m = VersionMetrics::default();
        let mut latencies: Vec<f32> = Vec::new();
        for b in buckets.iter().rev().take_while(|b| (b.sec + 1) as f64 > start) {
            m.requests += b.requests;
            m.errors += b.errors;
            latencies.extend_from_slice(&b.latencies);
        }
        drop(buckets);
        m.p50_ms = nearest_rank(&mut latencies, 0.50);
        m.p99_ms = nearest_rank(&mut latencies, 0.99);
        m.latencies_ms = latencies.into_iter().map(f64::from).collect();
        m
    }

    fn requests_since(&self, window: Duration) -> u64 {
        let start = self.epoch.elapsed().saturating_sub(window).as_secs_f64();
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.iter().rev().take_while(|b| (b.sec + 1) as f64 > start).map(|b| b.requests).sum()
    }

    /// Drops expired buckets; true when nothing is left.
    fn prune_now(&self) -> bool {
        let sec = self.epoch.elapsed().as_secs();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut buckets, sec);
        buckets.is_empty()
    }
}

fn prune(buckets: &mut VecDeque<Bucket>, now_sec: u64) {
    let oldest = now_sec.saturating_sub(RETENTION_SECS);
    while buckets.front().is_some_and(|b| b.sec < oldest) {
        buckets.pop_front();
    }
}

/// The nearest-rank quantile: the smallest value with at least `q` of the sample at or below it.
fn nearest_rank(values: &mut [f32], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    let (_, v, _) = values.select_nth_unstable_by(rank - 1, f32::total_cmp);
    Some(f64::from(*v))
}

/// All versions of one workload.
pub(crate) struct Stats {
    epoch: Instant,
    versions: Mutex<HashMap<String, Arc<VersionStats>>>,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self { epoch: Instant::now(), versions: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn version(&self, version: &str) -> Arc<VersionStats> {
        let mut map = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(version) {
            return s.clone();
        }
        let s = Arc::new(VersionStats::new(self.epoch));
        map.insert(version.to_string(), s.clone());
        s
    }

    pub(crate) fn metrics(&self, version: &str, window: Duration) -> VersionMetrics {
        let series = self.versions.lock().unwrap_or_else(|e| e.into_inner()).get(version).cloned();
        series.map(|s| s.metrics(window)).unwrap_or_default()
    }

    /// Share (0–100) of the requests each version answered over `window`.
    pub(crate) fn shares(&self, window: Duration) -> BTreeMap<String, f64> {
        let series: Vec<(String, Arc<VersionStats>)> = {
            let map = self.versions.lock().unwrap_or_else(|e| e.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let counts: Vec<(String, u64)> =
            series.into_iter().map(|(v, s)| (v, s.requests_since(window))).filter(|(_, n)| *n > 0).collect();
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        counts.into_iter().map(|(v, n)| (v, n as f64 * 100.0 / total as f64)).collect()
    }

    /// Expires old buckets and forgets versions that have neither data nor a route.
    pub(crate) fn prune(&self) {
        let mut map = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| !s.prune_now() || Arc::strong_count(s) > 1);
    }
}

/// What the router saw per feature flag and variant (from the pods' `x-shipdeck-flag-<flag>`
/// response headers), over every version of one workload: a flag rollout is judged per variant.
pub(crate) struct FlagStats {
    epoch: Instant,
    flags: Mutex<HashMap<String, HashMap<String, Arc<VersionStats>>>>,
}

impl FlagStats {
    pub(crate) fn new() -> Self {
        Self { epoch: Instant::now(), flags: Mutex::new(HashMap::new()) }
    }

    /// One request that was served `variant` of `flag`; allocates only for a new pair.
    pub(crate) fn record(&self, flag: &str, variant: &str, latency_ms: f32, error: bool) {
        let series = {
            let mut flags = self.flags.lock().unwrap_or_else(|e| e.into_inner());
            if !flags.contains_key(flag) {
                flags.insert(flag.to_string(), HashMap::new());
            }
            let Some(variants) = flags.get_mut(flag) else { return };
            match variants.get(variant) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(VersionStats::new(self.epoch));
                    variants.insert(variant.to_string(), s.clone());
                    s
                }
            }
        };
        series.record(latency_ms, error);
    }

    /// Requests, errors and latencies per variant of `flag` over `window`; variants without
    /// requests in the window are left out.
    pub(crate) fn metrics(&self, flag: &str, window: Duration) -> BTreeMap<String, VersionMetrics> {
        let series: Vec<(String, Arc<VersionStats>)> = {
            let flags = self.flags.lock().unwrap_or_else(|e| e.into_inner());
            flags.get(flag).map(|v| v.iter().map(|(k, s)| (k.clone(), s.clone())).collect()).unwrap_or_default()
        };
        series.into_iter().map(|(v, s)| (v, s.metrics(window))).filter(|(_, m)| m.requests > 0).collect()
    }

    /// Expires old buckets and forgets pairs left without data.
    pub(crate) fn prune(&self) {
        let mut flags = self.flags.lock().unwrap_or_else(|e| e.into_inner());
        for variants in flags.values_mut() {
            variants.retain(|_, s| !s.prune_now());
        }
        flags.retain(|_, v| !v.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let mut v: Vec<f32> = (1..=100).map(|x| x as f32).collect();
        assert_eq!(nearest_rank(&mut v, 0.5), Some(50.0));
        assert_eq!(nearest_rank(&mut v, 0.99), Some(99.0));
        assert_eq!(nearest_rank(&mut [], 0.5), None);
        assert_eq!(nearest_rank(&mut [7.0], 0.99), Some(7.0));
    }

    #[tokio::test]
    async fn windows_and_shares() {
        let stats = Stats::new();
        let a = stats.version("a");
        let b = stats.version("b");
        for i in 0..3_000 {
            a.record(i as f32 % 10.0, i % 10 == 0);
        }
        b.record(5.0, false);
        let m = stats.metrics("a", Duration::from_secs(5));
        assert_eq!(m.requests, 3_000);
        assert_eq!(m.errors, 300);
        assert!(m.p50_ms.is_some() && m.p99_ms.is_some());
        assert_eq!(stats.metrics("nobody", Duration::from_secs(5)), VersionMetrics::default());
        let shares = stats.shares(Duration::from_secs(5));
        assert!((shares["a"] + shares["b"] - 100.0).abs() < 1e-9);
        assert!(shares["a"] > 99.0);
    }

    #[tokio::test]
    async fn flag_stats_keep_requests_and_errors_per_variant() {
        let stats = FlagStats::new();
        for i in 0..100 {
            stats.record("new-checkout", if i % 4 == 0 { "on" } else { "off" }, 3.0, i % 8 == 0);
        }
        stats.record("other", "on", 1.0, false);
        let m = stats.metrics("new-checkout", Duration::from_secs(5));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["off", "on"]);
        assert_eq!((m["on"].requests, m["on"].errors), (25, 13));
        assert_eq!((m["off"].requests, m["off"].errors), (75, 0));
        assert!(stats.metrics("nothing", Duration::from_secs(5)).is_empty());
        stats.prune();
        assert_eq!(stats.metrics("new-checkout", Duration::from_secs(5)).len(), 2);
    }
}
