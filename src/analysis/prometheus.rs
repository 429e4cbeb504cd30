//! A `MetricsProvider` that asks a Prometheus server (HTTP API, instant queries) for each
//! version's requests, errors and latency quantiles.
//!
//! The default queries match what the local cluster's pods expose on `/metrics`: the counter
//! `http_requests_total{app,env,version,code}` and the histogram
//! `http_request_duration_seconds_bucket{app,env,version,le}`.
//!
//! Outcomes are kept apart: Prometheus unreachable, slow, answering with a non-JSON body or with
//! `status: "error"` is an `Err`; a query that matches no series is "no data" (0 requests, no
//! quantiles), never an error; a NaN quantile (no observations in the window) is `None`.

use std::time::Duration;

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
    /// `[unix time, "value"]`; Prometheus sends the value as a string (it may be `NaN`).
    value: (f64, String),
}

/// Parses an instant query's answer into its values, one per series (empty: no series).
/// `Err` carries what went wrong, for the caller to put in context.
pub(crate) fn parse_response(body: &str) -> Result<Vec<f64>, String> {
    let resp: ApiResponse = serde_json::from_str(body)
        .map_err(|e| format!("answer is not a Prometheus API response ({e}): {}", snippet(body)))?;
    if resp.status != "success" {
        let kind = resp.error_type.as_deref().unwrap_or("unknown");
        let error = resp.error.as_deref().unwrap_or("no error message");
        return Err(format!("Prometheus answered status \"{}\" ({kind}): {error}", resp.status));
    }
    let parse = |s: &str| s.parse::<f64>().map_err(|_| format!("sample value {s:?} is not a number"));
    match resp.data {
        Some(QueryData::Vector(samples)) => samples.iter().map(|s| parse(&s.value.1)).collect(),
        Some(QueryData::Scalar((_, v))) => Ok(vec![parse(&v)?]),
        Some(QueryData::Matrix(_)) => Err("query returned a range vector (matrix); an instant value is needed".into()),
        Some(QueryData::Text(_)) => Err("query returned a string; a number is needed".into()),
        None => Err("success answer without data".into()),
    }
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
                "http" => Ok(u),
                other => Err(format!("{endpoint_text}: scheme {other}:// is not supported (plain http only)")),
            });
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"));
        Self { endpoint, endpoint_text, queries, client, timeout }
    }

    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    /// Runs one instant query; `Err` says which query, at which URL, and what failed.
    async fn query(&self, name: &str, promql: &str) -> Result<Vec<f64>, String> {
        let fail = |what: String| format!("query `{name}` at {} failed: {what} (PromQL: {promql})", self.endpoint_text);
        let endpoint = self.endpoint.as_ref().map_err(|e| fail(e.clone()))?;
        let client = self.client.as_ref().map_err(|e| fail(e.clone()))?;
        let mut url = endpoint.clone();
        url.query_pairs_mut().append_pair("query", promql);
        let resp = client.get(url).send().await.map_err(|e| fail(describe(e, self.timeout)))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| fail(describe(e, self.timeout)))?;
        // Prometheus answers query errors with 4xx/5xx *and* a JSON body saying why: prefer it.
        match parse_response(&body) {
            Ok(values) if status.is_success() => Ok(values),
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
        let (requests, errors, p50, p99) = (
            render(&self.queries.requests),
            render(&self.queries.errors),
            render(&self.queries.p50_ms),
            render(&self.queries.p99_ms),
        );
        let err = |message: String| MetricsError { target: target.to_string(), message };
        let (requests, errors, p50, p99) = futures::try_join!(
            async { self.query("requests", &requests).await.and_then(|v| count_from(&v)) },
            async { self.query("errors", &errors).await.and_then(|v| count_from(&v)) },
            async { self.query("p50", &p50).await.and_then(|v| quantile_from(&v)) },
            async { self.query("p99", &p99).await.and_then(|v| quantile_from(&v)) },
        )
        .map_err(err)?;
        // Both counts are extrapolated separately, so rounding can put errors a hair above
        // requests; a rate above 100% would only mislead.
        Ok(VersionMetrics { requests, errors: errors.min(requests), p50_ms: p50, p99_ms: p99, ..Default::default() })
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

    /// What the fake Prometheus answers: (HTTP status, body) per query, found by a substring of
    /// the PromQL; the queries it was sent are recorded.
    #[derive(Clone, Default)]
    struct Fake {
        answers: Arc<Vec<(&'static str, StatusCode, String)>>,
        seen: Arc<Mutex<Vec<String>>>,
    }

    async fn fake_prometheus(answers: Vec<(&'static str, StatusCode, String)>) -> (String, Fake) {
        let fake = Fake { answers: Arc::new(answers), seen: Arc::default() };
        let app = axum::Router::new()
            .route(
                "/api/v1/query",
                get(|State(f): State<Fake>, Query(q): Query<HashMap<String, String>>| async move {
                    let promql = q.get("query").cloned().unwrap_or_default();
                    f.seen.lock().unwrap().push(promql.clone());
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

    #[tokio::test]
    async fn a_version_s_figures_come_from_the_four_queries() {
        let (base, fake) = fake_prometheus(vec![
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
            VersionMetrics { requests: 100, errors: 10, p50_ms: Some(12.5), p99_ms: None, ..Default::default() }
        );
        let seen = fake.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4);
        assert!(seen.iter().all(|q| q.contains(r#"version="1.0.0""#) && q.contains("[30s]")), "{seen:?}");
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
