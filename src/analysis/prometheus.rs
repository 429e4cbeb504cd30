//! A `MetricsProvider` that asks a Prometheus server (HTTP API, instant queries) for each
//! version's requests, errors and latency quantiles.
//!
//! The default queries match what the local cluster's pods expose on `/metrics`: the counter
//! `http_requests_total{app,env,version,code}` and the histogram
//! `http_request_duration_seconds_bucket{app,env,version,le}`.
//!
//! Per-request latencies (`VersionMetrics::latencies_ms`, for the judges that compare
//! distributions) come from the histogram's buckets: see [`latencies_from`].
//!
//! Outcomes are kept apart: Prometheus unreachable, slow, answering with a non-JSON body or with
//! `status: "error"` is an `Err`; a query that matches no series is "no data" (0 requests, no
//! quantiles), never an error; a NaN quantile (no observations in the window) is `None`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::Url;
use serde::Deserialize;

use super::{MetricsError, MetricsProvider, VersionMetrics};
use crate::cluster::Target;

/// PromQL templates, one per figure. Placeholders: `{app}`, `{env}`, `{version}` (label values,
/// inserted escaped for a double-quoted PromQL string) and `{interval}` (the window as a
/// Prometheus duration, e.g. `30s`). Any other brace is left as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queries {
    /// Requests answered over the window; the result is rounded to an integer.
    pub requests: String,
    /// Of those, the failed ones (5xx); rounded to an integer.
    pub errors: String,
    /// Median latency in milliseconds.
    pub p50_ms: String,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: String,
    /// Requests per latency bucket over the window: one series per `le` label (upper bound in
    /// seconds, `+Inf` included), each the cumulative count of requests at or below it, as
    /// Prometheus histograms have them. Turned into `latencies_ms` by [`latencies_from`].
    pub histogram: String,
}

const SELECTOR: &str = r#"app="{app}",env="{env}",version="{version}""#;

impl Default for Queries {
    fn default() -> Self {
        let quantile = |q: &str| {
            format!(
                "histogram_quantile({q}, sum by (le) (rate(http_request_duration_seconds_bucket{{{SELECTOR}}}[{{interval}}]))) * 1000"
            )
        };
        Self {
            requests: format!("sum(increase(http_requests_total{{{SELECTOR}}}[{{interval}}]))"),
            errors: format!("sum(increase(http_requests_total{{{SELECTOR},code=~\"5..\"}}[{{interval}}]))"),
            p50_ms: quantile("0.5"),
            p99_ms: quantile("0.99"),
            histogram: format!(
                "sum by (le) (increase(http_request_duration_seconds_bucket{{{SELECTOR}}}[{{interval}}]))"
            ),
        }
    }
}

impl Queries {
    /// Fills one template in a single pass, so a substituted value that itself contains
    /// `{version}` (say) is never substituted again.
    pub fn render(template: &str, target: &Target, version: &str, window: Duration) -> String {
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let value = after.find('}').and_then(|close| {
                let value = match &after[..close] {
                    "app" => escape_label_value(&target.app),
                    "env" => escape_label_value(&target.env),
                    "version" => escape_label_value(version),
                    "interval" => prometheus_duration(window),
                    _ => return None,
                };
                Some((value, close))
            });
            match value {
                Some((value, close)) => {
                    out.push_str(&value);
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Escapes a value for a double-quoted PromQL string: backslash, double quote, newline.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A window as a Prometheus duration: whole seconds as `30s`, anything finer in `ms`; never
/// shorter than `1ms` (a zero range is a PromQL error).
pub fn prometheus_duration(window: Duration) -> String {
    if window.subsec_millis() == 0 && window.as_secs() > 0 {
        format!("{}s", window.as_secs())
    } else {
        format!("{}ms", window.as_millis().max(1))
    }
}

/// The HTTP API's envelope (`/api/v1/query`).
#[derive(Debug, Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryData {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    #[serde(rename = "string")]
    Text(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct Sample {
    /// The series' labels.
    #[serde(default)]
    metric: Labels,
    /// `[unix time, "value"]`; Prometheus sends the value as a string (it may be `NaN`).
    value: (f64, String),
}

pub(crate) type Labels = HashMap<String, String>;

/// Parses an instant query's answer into its series: labels (none for a scalar) and value
/// (empty: no series). `Err` carries what went wrong, for the caller to put in context.
pub(crate) fn parse_series(body: &str) -> Result<Vec<(Labels, f64)>, String> {
    let resp: ApiResponse = serde_json::from_str(body)
        .map_err(|e| format!("answer is not a Prometheus API response ({e}): {}", snippet(body)))?;
    if resp.status != "success" {
        let kind = resp.error_type.as_deref().unwrap_or("unknown");
        let error = resp.error.as_deref().unwrap_or("no error message");
        return Err(format!("Prometheus answered status \"{}\" ({kind}): {error}", resp.status));
    }
    let parse = |s: &str| s.parse::<f64>().map_err(|_| format!("sample value {s:?} is not a number"));
    match resp.data {
        Some(QueryData::Vector(samples)) => samples.into_iter().map(|s| Ok((s.metric, parse(&s.value.1)?))).collect(),
        Some(QueryData::Scalar((_, v))) => Ok(vec![(Labels::new(), parse(&v)?)]),
        Some(QueryData::Matrix(_)) => Err("query returned a range vector (matrix); an instant value is needed".into()),
        Some(QueryData::Text(_)) => Err("query returned a string; a number is needed".into()),
        None => Err("success answer without data".into()),
    }
}

/// A query's values, labels dropped.
fn values(series: &[(Labels, f64)]) -> Vec<f64> {
    series.iter().map(|(_, v)| *v).collect()
}

/// A count (requests, errors) from a query's values: the series summed, rounded (`increase`
/// extrapolates, so it is rarely whole). No series, or NaN, is 0.
pub(crate) fn count_from(values: &[f64]) -> Result<u64, String> {
    let mut total = 0.0;
    for v in values {
        if v.is_nan() {
            continue;
        }
        if !v.is_finite() || *v < 0.0 {
            return Err(format!("count {v} is not a finite, non-negative number"));
        }
        total += v;
    }
    Ok(total.round() as u64)
}

/// A latency from a query's values: `None` when there is no series or the value is not finite
/// (`histogram_quantile` gives NaN when nothing was observed in the window).
pub(crate) fn quantile_from(values: &[f64]) -> Result<Option<f64>, String> {
    match values {
        [] => Ok(None),
        [v] => Ok(v.is_finite().then_some(*v)),
        many => Err(format!("query returned {} series; a latency query must return one (aggregate it)", many.len())),
    }
}

/// The most values [`latencies_from`] gives for one version and window: beyond it every bucket's
/// count is scaled down in proportion, so memory stays bounded however busy the version is.
pub const MAX_LATENCIES: usize = 20_000;

/// Per-request latencies in milliseconds from a histogram query's answer (one series per `le`,
/// cumulative counts, bounds in seconds). Series with the same `le` are added up.
///
/// The cumulative counts are made non-decreasing (a running maximum, as `histogram_quantile`
/// does; `increase` extrapolates each series on its own) and rounded; each bucket's count is the
/// difference between its rounded cumulative count and the one below, so it is never negative and
/// the counts add up to the rounded total. Above [`MAX_LATENCIES`] the rounded cumulative counts
/// are scaled to that total, which keeps the proportions.
///
/// Where a request lies inside its bucket is unknown. The `n` requests of a bucket `(lower,
/// upper]` are spread evenly over it, at `lower + (upper - lower) * (k + 0.5) / n`: the model
/// `histogram_quantile` interpolates with (requests uniform within their bucket), so quantiles of
/// these values agree with the p50/p99 Prometheus computes, and no two buckets' values tie. The
/// first bucket starts at 0 (at its bound if that is not positive, as in `histogram_quantile`);
/// the `+Inf` bucket's requests are all put at the last finite bound, the only thing known of
/// them. Without a finite bound nothing can be placed: no values.
pub(crate) fn latencies_from(series: &[(Labels, f64)]) -> Result<Vec<f64>, String> {
    let mut buckets: Vec<(f64, f64)> = Vec::with_capacity(series.len());
    for (labels, value) in series {
        let le = labels.get("le").ok_or_else(|| {
            format!("a histogram series without an `le` label ({labels:?}); aggregate it with `sum by (le)`")
        })?;
        let bound = le
            .parse::<f64>()
            .ok()
            .filter(|b| !b.is_nan() && *b != f64::NEG_INFINITY)
            .ok_or_else(|| format!("histogram bucket bound le={le:?} is not a number"))?;
        if value.is_infinite() {
            return Err(format!("histogram bucket le={le:?} has count {value}"));
        }
        // NaN (no data) and negative counts add nothing.
        let value = if *value > 0.0 { *value } else { 0.0 };
        match buckets.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, total)) => *total += value,
            None => buckets.push((bound, value)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut highest = 0.0_f64;
    let cumulative: Vec<u64> = buckets
        .iter()
        .map(|(_, c)| {
            highest = highest.max(*c);
            highest.round() as u64
        })
        .collect();
    let total = cumulative.last().copied().unwrap_or(0);
    let cap = MAX_LATENCIES as u64;
    let scaled =
        |c: u64| if total > cap { ((c as u128 * cap as u128 + total as u128 / 2) / total as u128) as u64 } else { c };
    let Some(last_finite) = buckets.iter().rev().map(|(b, _)| *b).find(|b| b.is_finite()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(scaled(total) as usize);
    let mut below = 0;
    for (i, (upper, _)) in buckets.iter().enumerate() {
        let here = scaled(cumulative[i]);
        let n = here - below;
        below = here;
        if upper.is_infinite() {
            out.extend(std::iter::repeat_n(last_finite * 1000.0, n as usize));
            continue;
        }
        let lower = match i {
            0 => upper.min(0.0),
            _ => buckets[i - 1].0,
        };
        let width = upper - lower;
        out.extend((0..n).map(|k| (lower + width * (k as f64 + 0.5) / n as f64) * 1000.0));
    }
    Ok(out)
}

fn snippet(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &trimmed[..i]),
        None => trimmed.to_string(),
    }
}

/// What a reqwest error was, with its causes (e.g. `connection refused`), without the URL
/// (the caller names it once).
fn describe(e: reqwest::Error, timeout: Duration) -> String {
    let what = if e.is_timeout() {
        format!("no answer within {}", humantime::format_duration(timeout))
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_decode() || e.is_body() {
        "cannot read the answer".to_string()
    } else {
        "request failed".to_string()
    };
    let e = e.without_url();
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    format!("{what} ({chain})")
}

pub struct PrometheusProvider {
    /// `{base}/api/v1/query`, or why it is not a URL.
    endpoint: Result<Url, String>,
    /// As given, for messages.
    endpoint_text: String,
    queries: Queries,
    client: Result<reqwest::Client, String>,
    timeout: Duration,
    /// Evaluation time of the queries; `None`: the server's now.
    at: Option<SystemTime>,
}

impl PrometheusProvider {
    /// `base_url` is the server's root, e.g. `http://127.0.0.1:9090` (a path prefix is kept);
    /// `timeout` bounds each query, connection included. A bad URL is reported by each
    /// `version_metrics` call, not here.
    pub fn new(base_url: &str, queries: Queries, timeout: Duration) -> Self {
        let endpoint_text = format!("{}/api/v1/query", base_url.trim_end_matches('/'));
        let endpoint = Url::parse(&endpoint_text)
            .map_err(|e| format!("{endpoint_text} is not a valid URL: {e}"))
            .and_then(|u| match u.scheme() {
                "http" | "https" => Ok(u),
                other => Err(format!("{endpoint_text}: scheme {other}:// is not supported (http or https)")),
            });
        let client = crate::http::client_builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"));
        Self { endpoint, endpoint_text, queries, client, timeout, at: None }
    }

    /// Evaluates every query at `time` (the API's `time` parameter, to the millisecond) instead
    /// of the server's now: the window is the one ending then. For looking back at a past
    /// window, and for tests that need a window aligned to known samples.
    pub fn at(self, time: SystemTime) -> Self {
        Self { at: Some(time), ..self }
    }

    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    /// Runs one instant query and reads its answer with `read` (values by series, with their
    /// labels); `Err` says which query, at which URL, and what failed, reading included.
    async fn query<T>(
        &self,
        name: &str,
        promql: &str,
        read: impl FnOnce(&[(Labels, f64)]) -> Result<T, String>,
    ) -> Result<T, String> {
        let fail = |what: String| format!("query `{name}` at {} failed: {what} (PromQL: {promql})", self.endpoint_text);
        let endpoint = self.endpoint.as_ref().map_err(|e| fail(e.clone()))?;
        let client = self.client.as_ref().map_err(|e| fail(e.clone()))?;
        let mut url = endpoint.clone();
        url.query_pairs_mut().append_pair("query", promql);
        if let Some(at) = self.at {
            // Before 1970 is no time Prometheus has data for; say so rather than send 0.
            let since = at.duration_since(UNIX_EPOCH).map_err(|_| fail("evaluation time before 1970".into()))?;
            url.query_pairs_mut().append_pair("time", &format!("{}.{:03}", since.as_secs(), since.subsec_millis()));
        }
        let resp = client.get(url).send().await.map_err(|e| fail(describe(e, self.timeout)))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| fail(describe(e, self.timeout)))?;
        // Prometheus answers query errors with 4xx/5xx *and* a JSON body saying why: prefer it.
        match parse_series(&body) {
            Ok(series) if status.is_success() => read(&series).map_err(fail),
            Ok(_) => Err(fail(format!("HTTP {status}"))),
            Err(e) if status.is_success() => Err(fail(e)),
            Err(e) if body.trim_start().starts_with('{') => Err(fail(format!("HTTP {status}: {e}"))),
            Err(_) => Err(fail(format!("HTTP {status}: {}", snippet(&body)))),
        }
    }
}

#[async_trait]
impl MetricsProvider for PrometheusProvider {
    async fn version_metrics(
        &self,
        target: &Target,
        version: &str,
        window: Duration,
    ) -> Result<VersionMetrics, MetricsError> {
        let render = |t: &str| Queries::render(t, target, version, window);
        let (requests, errors, p50, p99, histogram) = (
            render(&self.queries.requests),
            render(&self.queries.errors),
            render(&self.queries.p50_ms),
            render(&self.queries.p99_ms),
            render(&self.queries.histogram),
        );
        let err = |message: String| MetricsError { target: target.to_string(), message };
        let (requests, errors, p50, p99, latencies) = futures::try_join!(
            self.query("requests", &requests, |s| count_from(&values(s))),
            self.query("errors", &errors, |s| count_from(&values(s))),
            self.query("p50", &p50, |s| quantile_from(&values(s))),
            self.query("p99", &p99, |s| quantile_from(&values(s))),
            self.query("histogram", &histogram, latencies_from),
        )
        .map_err(err)?;
        // Both counts are extrapolated separately, so rounding can put errors a hair above
        // requests; a rate above 100% would only mislead.
        Ok(VersionMetrics { requests, errors: errors.min(requests), p50_ms: p50, p99_ms: p99, latencies_ms: latencies })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::extract::{Query, State};
    use axum::http::StatusCode;
    use axum::routing::get;

    use super::*;

    fn parse_response(body: &str) -> Result<Vec<f64>, String> {
        Ok(values(&parse_series(body)?))
    }

    fn target() -> Target {
        Target::new("dev", "web")
    }

    #[test]
    fn default_queries_render_for_the_pods_metrics() {
        let q = Queries::default();
        let w = Duration::from_secs(30);
        assert_eq!(
            Queries::render(&q.requests, &target(), "1.2.0", w),
            r#"sum(increase(http_requests_total{app="web",env="dev",version="1.2.0"}[30s]))"#
        );
        assert_eq!(
            Queries::render(&q.errors, &target(), "1.2.0", w),
            r#"sum(increase(http_requests_total{app="web",env="dev",version="1.2.0",code=~"5.."}[30s]))"#
        );
        assert_eq!(
            Queries::render(&q.p50_ms, &target(), "1.2.0", w),
            r#"histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{app="web",env="dev",version="1.2.0"}[30s]))) * 1000"#
        );
        assert_eq!(
            Queries::render(&q.p99_ms, &target(), "1.2.0", w),
            r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{app="web",env="dev",version="1.2.0"}[30s]))) * 1000"#
        );
        assert_eq!(
            Queries::render(&q.histogram, &target(), "1.2.0", w),
            r#"sum by (le) (increase(http_request_duration_seconds_bucket{app="web",env="dev",version="1.2.0"}[30s]))"#
        );
    }

    #[test]
    fn label_values_are_escaped_and_never_substituted_twice() {
        let t = Target::new(r#"e"v"#, r"a\pp");
        let out = Queries::render(
            r#"x{app="{app}",env="{env}",version="{version}"} {other} {"#,
            &t,
            "{app}\n",
            Duration::from_secs(5),
        );
        assert_eq!(out, r#"x{app="a\\pp",env="e\"v",version="{app}\n"} {other} {"#);
    }

    #[test]
    fn windows_become_prometheus_durations() {
        assert_eq!(prometheus_duration(Duration::from_secs(30)), "30s");
        assert_eq!(prometheus_duration(Duration::from_secs(600)), "600s");
        assert_eq!(prometheus_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(prometheus_duration(Duration::ZERO), "1ms");
    }

    #[test]
    fn a_success_answer_gives_its_values() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1712345678.123,"41.6"]}]}}"#;
        let v = parse_response(body).unwrap();
        assert_eq!(v, vec![41.6]);
        assert_eq!(count_from(&v).unwrap(), 42);
        assert_eq!(quantile_from(&v).unwrap(), Some(41.6));
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1712345678.1,"3"]}}"#;
        assert_eq!(parse_response(scalar).unwrap(), vec![3.0]);
    }

    #[test]
    fn an_empty_result_is_no_data_not_an_error() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        let v = parse_response(body).unwrap();
        assert!(v.is_empty());
        assert_eq!(count_from(&v).unwrap(), 0);
        assert_eq!(quantile_from(&v).unwrap(), None);
    }

    #[test]
    fn nan_quantiles_are_none() {
        let body =
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.0,"NaN"]}]}}"#;
        let v = parse_response(body).unwrap();
        assert_eq!(quantile_from(&v).unwrap(), None);
        assert_eq!(quantile_from(&[f64::INFINITY]).unwrap(), None);
        assert_eq!(count_from(&v).unwrap(), 0);
    }

    #[test]
    fn an_error_answer_is_an_error_with_prometheus_words() {
        let body =
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error"}"#;
        let e = parse_response(body).unwrap_err();
        assert!(e.contains("bad_data") && e.contains("parse error"), "{e}");
        assert!(parse_response("<html>bad gateway</html>").unwrap_err().contains("bad gateway"));
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse_response(matrix).unwrap_err().contains("matrix"));
    }

    #[test]
    fn counts_sum_series_and_refuse_nonsense() {
        assert_eq!(count_from(&[1.4, 2.4]).unwrap(), 4);
        assert!(count_from(&[f64::INFINITY]).is_err());
        assert!(count_from(&[-1.0]).is_err());
        assert!(quantile_from(&[1.0, 2.0]).is_err());
    }

    /// `(le, cumulative count)` series as a histogram query answers them.
    fn buckets(series: &[(&str, f64)]) -> Vec<(Labels, f64)> {
        series.iter().map(|(le, v)| (Labels::from([("le".to_string(), le.to_string())]), *v)).collect()
    }

    #[test]
    fn latencies_spread_each_bucket_s_requests_evenly_over_it() {
        // Unsorted, as Prometheus may send them; le in seconds, values in ms.
        let series = buckets(&[("0.01", 5.0), ("+Inf", 6.0), ("0.005", 2.0), ("0.025", 5.0)]);
        let want = [1.25, 3.75, 5.0 + 5.0 / 6.0, 7.5, 10.0 - 5.0 / 6.0, 25.0];
        assert_close(&latencies_from(&series).unwrap(), &want);
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        assert!(
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-9),
            "{got:?} != {want:?}"
        );
    }

    #[test]
    fn bucket_counts_are_rounded_never_negative_and_add_up_to_the_total() {
        // Extrapolated, and the second bucket below the first (each series extrapolated alone).
        let series = buckets(&[("0.005", 1.4), ("0.01", 1.2), ("0.025", 3.6), ("+Inf", 3.6)]);
        let got = latencies_from(&series).unwrap();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!((got[0] - 2.5).abs() < 1e-9, "{got:?}");
        assert!(got[1..].iter().all(|v| *v > 10.0 && *v <= 25.0), "{got:?}");
        // Series with the same bound (say, `sum by (le, pod)`) add up; NaN and negative add nothing.
        let series = buckets(&[("0.1", 2.0), ("0.1", 1.0), ("+Inf", 3.0), ("+Inf", f64::NAN), ("+Inf", -1.0)]);
        assert_close(&latencies_from(&series).unwrap(), &[50.0 / 3.0, 50.0, 250.0 / 3.0]);
    }

    #[test]
    fn the_inf_bucket_sits_at_the_last_finite_bound() {
        let series = buckets(&[("0.5", 0.0), ("+Inf", 3.0), ("1", 1.0)]);
        assert_eq!(latencies_from(&series).unwrap(), vec![750.0, 1000.0, 1000.0]);
        // Nothing but +Inf: nowhere to put them.
        assert_eq!(latencies_from(&buckets(&[("+Inf", 3.0)])).unwrap(), Vec::<f64>::new());
    }

    #[test]
    fn many_requests_are_scaled_down_in_proportion() {
        let series = buckets(&[("0.005", 100_000.0), ("0.01", 400_000.0), ("+Inf", 1_000_000.0)]);
        let got = latencies_from(&series).unwrap();
        assert_eq!(got.len(), MAX_LATENCIES);
        let count = |lo: f64, hi: f64| got.iter().filter(|v| **v > lo && **v <= hi).count();
        assert_eq!(count(0.0, 5.0), 2_000);
        assert_eq!(count(5.0, 9.9999), 6_000);
        assert_eq!(got.iter().filter(|v| **v == 10.0).count(), 12_000, "the +Inf ones, at the last finite bound");
    }

    #[test]
    fn histogram_answers_that_are_not_buckets_are_errors() {
        assert_eq!(latencies_from(&[]).unwrap(), Vec::<f64>::new());
        let no_le = latencies_from(&[(Labels::new(), 3.0)]).unwrap_err();
        assert!(no_le.contains("`le`") && no_le.contains("sum by (le)"), "{no_le}");
        assert!(latencies_from(&buckets(&[("fast", 3.0)])).unwrap_err().contains("fast"));
        assert!(latencies_from(&buckets(&[("NaN", 3.0)])).is_err());
        assert!(latencies_from(&buckets(&[("0.1", f64::INFINITY)])).is_err());
    }

    #[test]
    fn series_labels_come_with_their_values() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"le":"0.5"},"value":[1.0,"4"]},{"metric":{"le":"+Inf"},"value":[1.0,"6"]}]}}"#;
        let series = parse_series(body).unwrap();
        assert_eq!(series, buckets(&[("0.5", 4.0), ("+Inf", 6.0)]));
        assert_eq!(
            parse_series(r#"{"status":"success","data":{"resultType":"scalar","result":[1.0,"3"]}}"#).unwrap(),
            vec![(Labels::new(), 3.0)]
        );
    }

    /// What the fake Prometheus answers: (HTTP status, body) per query, found by a substring of
    /// the PromQL; the queries it was sent are recorded.
    #[derive(Clone, Default)]
    struct Fake {
        answers: Arc<Vec<(&'static str, StatusCode, String)>>,
        seen: Arc<Mutex<Vec<String>>>,
        /// The `time` parameter of each query, if any.
        times: Arc<Mutex<Vec<Option<String>>>>,
    }

    async fn fake_prometheus(answers: Vec<(&'static str, StatusCode, String)>) -> (String, Fake) {
        let fake = Fake { answers: Arc::new(answers), seen: Arc::default(), times: Arc::default() };
        let app = axum::Router::new()
            .route(
                "/api/v1/query",
                get(|State(f): State<Fake>, Query(q): Query<HashMap<String, String>>| async move {
                    let promql = q.get("query").cloned().unwrap_or_default();
                    f.seen.lock().unwrap().push(promql.clone());
                    f.times.lock().unwrap().push(q.get("time").cloned());
                    if promql.contains("hang") {
                        std::future::pending::<()>().await;
                    }
                    let (_, status, body) = f
                        .answers
                        .iter()
                        .find(|(key, _, _)| promql.contains(key))
                        .cloned()
                        .unwrap_or(("", StatusCode::OK, vector(&[])));
                    (status, [("content-type", "application/json")], body)
                }),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), fake)
    }

    fn vector(values: &[&str]) -> String {
        let result: Vec<_> =
            values.iter().map(|v| serde_json::json!({ "metric": {}, "value": [1712345678.5, v] })).collect();
        serde_json::json!({ "status": "success", "data": { "resultType": "vector", "result": result } }).to_string()
    }

    fn labelled(series: &[(&str, &str)]) -> String {
        let result: Vec<_> = series
            .iter()
            .map(|(le, v)| serde_json::json!({ "metric": { "le": le }, "value": [1712345678.5, v] }))
            .collect();
        serde_json::json!({ "status": "success", "data": { "resultType": "vector", "result": result } }).to_string()
    }

    #[tokio::test]
    async fn a_version_s_figures_come_from_the_five_queries() {
        let (base, fake) = fake_prometheus(vec![
            ("sum by (le) (increase", StatusCode::OK, labelled(&[("0.01", "1.8"), ("+Inf", "3.1"), ("0.005", "1")])),
            ("code=~", StatusCode::OK, vector(&["9.7"])),
            ("increase", StatusCode::OK, vector(&["100.2"])),
            ("histogram_quantile(0.5,", StatusCode::OK, vector(&["12.5"])),
            ("histogram_quantile(0.99,", StatusCode::OK, vector(&["NaN"])),
        ])
        .await;
        let p = PrometheusProvider::new(&format!("{base}/"), Queries::default(), Duration::from_secs(5));
        let m = p.version_metrics(&target(), "1.0.0", Duration::from_secs(30)).await.unwrap();
        assert_eq!(
            m,
            VersionMetrics {
                requests: 100,
                errors: 10,
                p50_ms: Some(12.5),
                p99_ms: None,
                latencies_ms: vec![2.5, 7.5, 10.0],
            }
        );
        let seen = fake.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 5);
        assert!(seen.iter().all(|q| q.contains(r#"version="1.0.0""#) && q.contains("[30s]")), "{seen:?}");
        // The server's now, unless told otherwise.
        assert!(fake.times.lock().unwrap().iter().all(Option::is_none));
    }

    #[tokio::test]
    async fn an_evaluation_time_is_sent_with_every_query() {
        let (base, fake) = fake_prometheus(vec![]).await;
        let at = UNIX_EPOCH + Duration::from_millis(1_712_345_678_250);
        let p = PrometheusProvider::new(&base, Queries::default(), Duration::from_secs(5)).at(at);
        p.version_metrics(&target(), "1.0.0", Duration::from_secs(30)).await.unwrap();
        let times = fake.times.lock().unwrap().clone();
        assert_eq!(times, vec![Some("1712345678.250".to_string()); 5]);
    }

    #[tokio::test]
    async fn a_failed_histogram_query_is_an_error() {
        let body = r#"{"status":"error","errorType":"execution","error":"query timed out"}"#;
        let (base, _) =
            fake_prometheus(vec![("sum by (le) (increase", StatusCode::SERVICE_UNAVAILABLE, body.into())]).await;
        let p = PrometheusProvider::new(&base, Queries::default(), Duration::from_secs(5));
        let e = p.version_metrics(&target(), "1.0.0", Duration::from_secs(30)).await.unwrap_err();
        assert!(e.message.contains("`histogram`") && e.message.contains("query timed out"), "{e}");
        // An answer that is not buckets too.
        let (base, _) = fake_prometheus(vec![("sum by (le) (increase", StatusCode::OK, vector(&["3"]))]).await;
        let p = PrometheusProvider::new(&base, Queries::default(), Duration::from_secs(5));
        let e = p.version_metrics(&target(), "1.0.0", Duration::from_secs(30)).await.unwrap_err();
        assert!(e.message.contains("`histogram`") && e.message.contains("`le`") && e.message.contains(&base), "{e}");
    }

    #[tokio::test]
    async fn no_series_is_no_data() {
        let (base, _) = fake_prometheus(vec![]).await;
        let p = PrometheusProvider::new(&base, Queries::default(), Duration::from_secs(5));
        let m = p.version_metrics(&target(), "1.0.0", Duration::from_secs(30)).await.unwrap();
        assert_eq!(m, VersionMetrics::default());
        assert_eq!(m.error_rate(), None);
    }

    #[tokio::test]
    async fn a_prometheus_error_is_an_error_naming_url_and_reason() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"1:12: parse error: unexpected"}"#;
        let (base, _) = fake_prometheus(vec![("histogram_quantile(0.99,", StatusCode::BAD_REQUEST, body.into())]).await;
        let p = PrometheusProvider::new(&base, Queries::default(), Duration::from_secs(5));
        let e = p.version_metrics(&target(), "1.0.0", Duration::from_secs(30)).await.unwrap_err();
        assert_eq!(e.target, "dev/web");
        assert!(e.message.contains(&format!("{base}/api/v1/query")), "{e}");
        assert!(e.message.contains("p99") && e.message.contains("400") && e.message.contains("parse error"), "{e}");
    }

    #[tokio::test]
    async fn a_non_json_failure_is_an_error_with_the_status() {
        let (base, _) = fake_prometheus(vec![("increase", StatusCode::BAD_GATEWAY, "upstream down".into())]).await;
        let p = PrometheusProvider::new(&base, Queries::default(), Duration::from_secs(5));
        let e = p.version_metrics(&target(), "1.0.0", Duration::from_secs(30)).await.unwrap_err();
        assert!(e.message.contains("502") && e.message.contains("upstream down"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let p = PrometheusProvider::new(&base, Queries::default(), Duration::from_secs(5));
        let e = p.version_metrics(&target(), "1.0.0", Duration::from_secs(30)).await.unwrap_err();
        assert!(e.message.contains(&base) && e.message.contains("cannot connect"), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_times_out() {
        let (base, _) = fake_prometheus(vec![]).await;
        let queries = Queries { requests: "hang".into(), ..Queries::default() };
        let p = PrometheusProvider::new(&base, queries, Duration::from_millis(200));
        let e = p.version_metrics(&target(), "1.0.0", Duration::from_secs(30)).await.unwrap_err();
        assert!(e.message.contains("no answer within 200ms") && e.message.contains("`requests`"), "{e}");
    }

    #[tokio::test]
    async fn a_bad_url_is_an_error_not_a_panic() {
        for base in ["not a url", "https://prometheus.example"] {
            let p = PrometheusProvider::new(base, Queries::default(), Duration::from_secs(1));
            let e = p.version_metrics(&target(), "1.0.0", Duration::from_secs(30)).await.unwrap_err();
            assert!(e.message.contains(base), "{e}");
        }
    }
}
