//! The Prometheus metrics provider against a real Prometheus (the `prometheus` binary, which CI
//! installs): scraping the real local cluster's pods, and serving backfilled data with known
//! counts (written by `promtool`, which comes with it), for exact figures.

mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shipdeck::analysis::prometheus::{PrometheusProvider, Queries};
use shipdeck::analysis::{MetricsProvider, VersionMetrics};
use shipdeck::cluster::local::LocalCluster;
use shipdeck::cluster::{Cluster, Routing, Target};
use shipdeck::config::Estate;
use tokio::time::Instant;

const ESTATE: &str = r#"
[[environments]]
name = "dev"

[[apps]]
name = "web"
replicas = 1
rps = 50
initial_version = "1.0.0"

[[apps.versions]]
version = "1.0.0"
error_rate = 0.0
p50_ms = 2
p99_ms = 5
ready_after = "100ms"

[[apps.versions]]
version = "1.1.0-bad"
error_rate = 0.5
p50_ms = 2
p99_ms = 5
ready_after = "100ms"
"#;

const GOOD: &str = "1.0.0";
const BAD: &str = "1.1.0-bad";
const WINDOW: Duration = Duration::from_secs(30);
/// Enough requests per version that a 50% error rate lands in 0.3..=0.7 but for a
/// four-sigma fluke (binomial: sigma = 0.05 at 100 requests).
const MIN_REQUESTS: u64 = 100;

/// A Prometheus server on a free loopback port, with its data in a temp dir; killed on drop.
struct Prometheus {
    child: Child,
    base_url: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus` scraping `targets` (host:port) every second.
    fn start(targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: pods\n    \
             scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        Prometheus::spawn(dir, &config)
    }

    /// Starts `prometheus` scraping whatever `targets_file` (Prometheus `file_sd_configs` JSON,
    /// as shipdeck writes to its data dir) lists, every second.
    fn start_file_sd(targets_file: &Path) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: pods\n    \
             scrape_interval: 1s\n    scrape_timeout: 1s\n    file_sd_configs:\n      - files: [\"{}\"]\n        \
             refresh_interval: 1s\n",
            targets_file.display()
        );
        Prometheus::spawn(dir, &config)
    }

    /// Waits until the HTTP API answers.
    fn wait_ready(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let url = format!("{}/-/ready", self.base_url);
        loop {
            self.assert_running();
            if http_ok(&url) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "prometheus not ready in 30 s; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `prometheus` scraping nothing, on the blocks `promtool` makes of `openmetrics`.
    fn start_on_backfill(openmetrics: &str) -> Prometheus {
        if let Err(e) = Command::new("promtool").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
            panic!(
                "the `promtool` binary is needed for this test and cannot be run ({e}); it comes with \
                 Prometheus (Debian: apt-get install -y --no-install-recommends prometheus)"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("backfill.om");
        std::fs::write(&input, openmetrics).expect("write backfill.om");
        let data = dir.path().join("data");
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool tsdb create-blocks-from openmetrics failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Prometheus::spawn(dir, "global:\n  scrape_interval: 15s\n")
    }

    /// Runs `prometheus` with `config`, its data in `dir/data` and its log in `dir`.
    fn spawn(dir: tempfile::TempDir, config: &str) -> Prometheus {
        if let Err(e) = Command::new("prometheus").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status()
        {
            panic!(
                "the `prometheus` binary is needed for this test and cannot be run ({e}); install it \
                 (Debian: apt-get install -y --no-install-recommends prometheus)"
            );
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, base_url: format!("http://127.0.0.1:{port}"), dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Panics (with Prometheus's log) if it has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            panic!("prometheus exited ({status}); its log:\n{}", self.log());
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET of `url` (http://host:port/path) answered 200.
fn http_ok(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let Ok(mut conn) = std::net::TcpStream::connect(host) else { return false };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(conn, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

fn provider(base_url: &str) -> PrometheusProvider {
    PrometheusProvider::new(base_url, Queries::default(), Duration::from_secs(2))
}

/// Addresses of the serving pods, once there are `n` of them.
async fn pod_addresses(cluster: &LocalCluster, target: &Target, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = cluster.state(target).await.expect("state");
        let addrs: Vec<String> = state.pods.iter().filter_map(|p| p.address.clone()).collect();
        if addrs.len() >= n {
            return addrs;
        }
        assert!(Instant::now() < deadline, "pods without addresses: {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_latency_per_version_come_from_a_real_prometheus() {
    let started = std::time::Instant::now();
    let estate = Estate::parse(ESTATE, "test estate").expect("estate");
    let target = Target::new("dev", "web");
    let cluster = LocalCluster::start(estate.targets(), Default::default()).await.expect("cluster");
    cluster.scale(&target, BAD, 1).await.expect("scale");
    cluster.set_routing(&target, &Routing::split(GOOD, BAD, 50)).await.expect("routing");
    let addrs = pod_addresses(&cluster, &target, 2).await;
    let mut prom = Prometheus::start(&addrs);
    let p = provider(&prom.base_url);

    let deadline = Instant::now() + Duration::from_secs(30);
    let (good, bad) = loop {
        prom.assert_running();
        let good = p.version_metrics(&target, GOOD, WINDOW).await;
        let bad = p.version_metrics(&target, BAD, WINDOW).await;
        if let (Ok(g), Ok(b)) = (&good, &bad)
            && g.requests >= MIN_REQUESTS
            && b.requests >= MIN_REQUESTS
            && g.p99_ms.is_some()
            && b.p99_ms.is_some()
        {
            break (g.clone(), b.clone());
        }
        assert!(
            Instant::now() < deadline,
            "not {MIN_REQUESTS} requests for both versions within 30 s: good {good:?}, bad {bad:?}; prometheus log:\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("good {good:?}\nbad {bad:?}\nafter {:?}", started.elapsed());

    assert_eq!(good.errors, 0, "{good:?}");
    assert_eq!(good.error_rate(), Some(0.0));
    let bad_rate = bad.error_rate().expect("requests");
    assert!((0.3..=0.7).contains(&bad_rate), "bad version error rate {bad_rate}: {bad:?}");
    for m in [&good, &bad] {
        let p99 = m.p99_ms.expect("p99");
        assert!(p99.is_finite() && p99 > 0.0, "{m:?}");
        assert!(m.p50_ms.is_some_and(|p50| p50 <= p99), "{m:?}");
        // One latency per request, from the same scrapes as the counter (whose series per status
        // code are extrapolated apart, so the two totals may differ a little).
        let (n, r) = (m.latencies_ms.len() as f64, m.requests as f64);
        assert!((n - r).abs() <= 0.1 * r, "{} latencies for {} requests: {m:?}", n, r);
        assert!(m.latencies_ms.iter().all(|v| v.is_finite() && *v >= 0.0), "{m:?}");
    }
    // A version nobody runs has no series: no data, not an error.
    let none = p.version_metrics(&target, "9.9.9", WINDOW).await.expect("no data is not an error");
    assert_eq!(none, VersionMetrics::default());
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_prometheus_is_gone_metrics_are_an_error_not_zeros() {
    let mut prom = Prometheus::start(&[]);
    let p = provider(&prom.base_url);
    let target = Target::new("dev", "web");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        prom.assert_running();
        match p.version_metrics(&target, GOOD, WINDOW).await {
            Ok(m) => {
                // Up, scraping nothing: no data.
                assert_eq!(m, VersionMetrics::default());
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "prometheus never answered: {e}; log:\n{}", prom.log()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    prom.kill();
    let e = p.version_metrics(&target, GOOD, WINDOW).await.expect_err("an error once Prometheus is gone");
    assert!(e.message.contains(&prom.base_url), "{e}");
}

/// Upper bounds of the pods' latency buckets, in seconds (`src/cluster/local/pod.rs`), then +Inf.
const BOUNDS: [&str; 11] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"];

/// What one version serves every `STEP`, always the same: requests by status code, and requests
/// per latency bucket (not cumulative; index as in `BOUNDS`).
struct Traffic {
    version: &'static str,
    codes: [(u16, u64); 2],
    per_bucket: [u64; 11],
}

const STEP: u64 = 5;

/// OpenMetrics text for `promtool`: both versions' counters and histograms, one sample every `STEP`
/// seconds at `first, first + STEP, ..= last` (unix seconds). Counters start at 100 steps' worth,
/// not at 0, so no `increase` ever reads the start as a counter reset.
fn openmetrics(traffic: &[Traffic], first: u64, last: u64) -> String {
    let labels = |t: &Traffic| format!(r#"app="web",env="dev",version="{}""#, t.version);
    let steps = || (first..=last).step_by(STEP as usize).enumerate().map(|(k, ts)| (k as u64 + 100, ts));
    let mut out = String::new();
    out.push_str("# TYPE http_requests counter\n");
    for t in traffic {
        for (code, per_step) in t.codes {
            for (k, ts) in steps() {
                writeln!(out, r#"http_requests_total{{{},code="{code}"}} {} {ts}"#, labels(t), k * per_step).unwrap();
            }
        }
    }
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for t in traffic {
        for (k, ts) in steps() {
            let mut cumulative = 0;
            for (le, n) in BOUNDS.iter().zip(t.per_bucket) {
                cumulative += k * n;
                writeln!(out, r#"http_request_duration_seconds_bucket{{{},le="{le}"}} {cumulative} {ts}"#, labels(t))
                    .unwrap();
            }
            // Any sum will do: no query reads it.
            writeln!(out, "http_request_duration_seconds_sum{{{}}} {} {ts}", labels(t), cumulative as f64 * 0.01)
                .unwrap();
            writeln!(out, "http_request_duration_seconds_count{{{}}} {cumulative} {ts}", labels(t)).unwrap();
        }
    }
    out.push_str("# EOF\n");
    out
}

/// How many of `latencies` fall in each of the pods' buckets: `(lower, upper]` in ms for the
/// finite ones; the provider puts the +Inf bucket's requests at the last finite bound (5000 ms),
/// so those are counted apart, last.
fn per_bucket(latencies: &[f64]) -> [u64; 11] {
    let bounds: Vec<f64> = BOUNDS[..10].iter().map(|b| b.parse::<f64>().unwrap() * 1000.0).collect();
    let mut out = [0; 11];
    for &v in latencies {
        let slot = if v == 5000.0 { 10 } else { bounds.iter().position(|b| v <= *b).expect("a finite latency") };
        out[slot] += 1;
    }
    out
}

fn assert_close(what: &str, got: Option<f64>, want: f64) {
    assert!(got.is_some_and(|g| (g - want).abs() < 1e-9), "{what}: got {got:?}, want {want}");
}

/// Backfilled data with known counts, so the figures are exact, not just plausible.
///
/// Every series grows at a constant rate, one sample every 5 s for 10 minutes ending a minute
/// ago (`promtool` writes blocks for any past time; a fresh Prometheus with an empty head loads
/// them). The queries are evaluated at the last sample (`PrometheusProvider::at`) over a 300 s
/// window that starts on a sample too, so `increase` needs no extrapolation: Prometheus 2.x takes
/// the samples at both ends of `[t - 300s, t]` and answers their exact difference; 3.x leaves out
/// the one at `t - 300s` and extrapolates the 5 s gap at the start, which at a constant rate is
/// exact as well (up to float rounding, which the counts' rounding absorbs). Evaluated at the
/// server's now instead, the window would end a minute after the last sample and `increase`
/// would extrapolate only part of the way: 479 requests instead of 600.
///
/// Expected figures, per 300 s (60 steps of 5 s):
/// - 1.0.0: 10 requests a step, all 200: 600 requests, 0 errors. Per step 2 in (0, 5 ms], 4 in
///   (5, 10], 3 in (10, 25], 1 in (25, 50]: 120, 240, 180, 60 over the window. p50 is the 300th
///   of 600, 180 into the (5, 10] bucket of 240: 5 + 5 × 180/240 = 8.75 ms (`histogram_quantile`
///   interpolates linearly). p99 is the 594th: 54 into the (25, 50] bucket of 60:
///   25 + 25 × 54/60 = 47.5 ms.
/// - 1.1.0-bad: 8 answered 200 and 2 answered 500 a step: 600 requests, 120 errors. Per step 4 in
///   (50, 100], 4 in (100, 250], 2 above 5 s: 240, 240, 120. p50: 60 into (100, 250] of 240:
///   100 + 150 × 60/240 = 137.5 ms. p99 falls in the +Inf bucket, for which `histogram_quantile`
///   answers the last finite bound: 5000 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_figures_from_backfilled_data() {
    let started = std::time::Instant::now();
    let traffic = [
        Traffic { version: GOOD, codes: [(200, 10), (500, 0)], per_bucket: [2, 4, 3, 1, 0, 0, 0, 0, 0, 0, 0] },
        Traffic { version: BAD, codes: [(200, 8), (500, 2)], per_bucket: [0, 0, 0, 0, 4, 4, 0, 0, 0, 0, 2] },
    ];
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let last = now - 60;
    let first = last - 600;
    let mut prom = Prometheus::start_on_backfill(&openmetrics(&traffic, first, last));
    let window = Duration::from_secs(300);
    let p = provider(&prom.base_url).at(UNIX_EPOCH + Duration::from_secs(last));
    let target = Target::new("dev", "web");

    // Prometheus answers queries once its storage is open, blocks loaded: the first answer is the
    // one to check.
    let deadline = Instant::now() + Duration::from_secs(30);
    let good = loop {
        prom.assert_running();
        match p.version_metrics(&target, GOOD, window).await {
            Ok(m) => break m,
            Err(e) => assert!(Instant::now() < deadline, "prometheus never answered: {e}; log:\n{}", prom.log()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let bad = p.version_metrics(&target, BAD, window).await.expect("metrics of the bad version");
    eprintln!(
        "good {:?}\nbad {:?}\nafter {:?}",
        (good.requests, good.errors, good.p50_ms, good.p99_ms, per_bucket(&good.latencies_ms)),
        (bad.requests, bad.errors, bad.p50_ms, bad.p99_ms, per_bucket(&bad.latencies_ms)),
        started.elapsed()
    );

    let context = || format!("good {good:?}\nbad {bad:?}\nprometheus log:\n{}", prom.log());
    assert_eq!((good.requests, good.errors), (600, 0), "{}", context());
    assert_close("1.0.0 p50", good.p50_ms, 8.75);
    assert_close("1.0.0 p99", good.p99_ms, 47.5);
    assert_eq!(per_bucket(&good.latencies_ms), [120, 240, 180, 60, 0, 0, 0, 0, 0, 0, 0], "{}", context());
    assert_eq!((bad.requests, bad.errors), (600, 120), "{}", context());
    assert_close("1.1.0-bad p50", bad.p50_ms, 137.5);
    assert_close("1.1.0-bad p99", bad.p99_ms, 5000.0);
    assert_eq!(per_bucket(&bad.latencies_ms), [0, 0, 0, 0, 240, 240, 0, 0, 0, 0, 120], "{}", context());

    // Outside the data (an hour later), no data: not an error, not zeros made up.
    let later = provider(&prom.base_url).at(UNIX_EPOCH + Duration::from_secs(last + 3600));
    let none = later.version_metrics(&target, GOOD, window).await.expect("no data is not an error");
    assert_eq!(none, VersionMetrics::default());
}

/// An estate whose canary of `web` is judged on Prometheus's numbers.
fn release_estate(prometheus_url: &str, count: u32) -> String {
    format!(
        r#"
[prometheus]
url = "{prometheus_url}"
timeout = "2s"

[analysis_templates.prom]
judge = "sequential"
provider = "prometheus"
interval = "3s"
initial_delay = "3s"
count = {count}
inconclusive_limit = 5
consecutive_error_limit = 2

[[environments]]
name = "dev"

[[apps]]
name = "web"
replicas = 1
rps = 100
strategy = "canary"
initial_version = "1.0.0"
[apps.canary]
abort_scale_down_delay = "1s"
steps = [{{ set_weight = 50 }}, {{ analysis = {{ template = "prom" }} }}]

[[apps.versions]]
version = "1.0.0"
p50_ms = 2
p99_ms = 5
ready_after = "100ms"

[[apps.versions]]
version = "1.0.1"
p50_ms = 2
p99_ms = 5
ready_after = "100ms"

[[apps.versions]]
version = "1.1.0-bad"
error_rate = 0.5
p50_ms = 2
p99_ms = 5
ready_after = "100ms"
"#
    )
}

fn measurements(release: &serde_json::Value) -> Vec<serde_json::Value> {
    release["measurements"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_bad_canary_rolls_back_on_the_numbers_prometheus_scraped() {
    let s = common::Shipdeck::new();
    let mut prom = Prometheus::start_file_sd(&shipdeck::host::scrape_targets_file(s.data_dir()));
    prom.wait_ready();
    let estate = common::file(s.data_dir(), "estate.toml", &release_estate(&prom.base_url, 20));
    let (code, out, err) = s.sh(&["--estate", estate.to_str().unwrap(), "deploy", "web", "1.1.0-bad", "--env", "dev"]);
    prom.assert_running();
    assert_eq!(code, 1, "rolled back: {out}{err}\nprometheus log:\n{}", prom.log());
    let (_, lines) = s.json(&["--estate", estate.to_str().unwrap(), "history", "--app", "web"]);
    let h: Vec<_> = lines.into_iter().filter(|l| l["type"] == "release").collect();
    assert_eq!(h[0]["release"]["status"], "rolled_back", "{}", h[0]);
    let reason = h[0]["release"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("analysis Failed: error_rate"), "{reason}");
    let ms = measurements(&h[0]);
    let failed = ms.last().expect("measurements");
    assert_eq!(failed["verdict"], "fail", "{failed}");
    let detail = failed["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("from prometheus"), "measured by Prometheus: {detail}");
    let rate = failed["canary_error_rate"].as_f64().expect("a canary error rate");
    assert!((0.3..=0.7).contains(&rate), "Prometheus's figure for a 50% version: {rate} ({failed})");
    assert!(failed["canary_requests"].as_u64().unwrap_or(0) > 0, "{failed}");
}

#[test]
fn when_prometheus_dies_mid_analysis_measurements_are_errors_and_the_release_pauses_unpromoted() {
    let s = common::Shipdeck::new();
    let mut prom = Prometheus::start_file_sd(&shipdeck::host::scrape_targets_file(s.data_dir()));
    prom.wait_ready();
    let estate = common::file(s.data_dir(), "estate.toml", &release_estate(&prom.base_url, 100));
    let estate = estate.to_str().unwrap();
    let mut deploy = s
        .cmd(&["--estate", estate, "deploy", "web", "1.0.1", "--env", "dev"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start deploy");
    let mut lines = BufReader::new(deploy.stdout.take().expect("stdout")).lines();
    // Wait for a measurement Prometheus answered, then take Prometheus away.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(std::time::Instant::now() < deadline, "no passing measurement in 60 s; log:\n{}", prom.log());
        match lines.next() {
            Some(Ok(l)) if l.contains("] measurement pass") => break,
            Some(Ok(l)) => assert!(!l.contains("rolled back"), "{l}"),
            _ => panic!("deploy ended before a measurement passed; prometheus log:\n{}", prom.log()),
        }
    }
    prom.kill();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = deploy.wait().expect("deploy exits");
    assert_eq!(status.code(), Some(0), "a pause ends the command without failure: {rest:?}");

    let (_, lines) = s.json(&["--estate", estate, "history", "--app", "web"]);
    let h: Vec<_> = lines.into_iter().filter(|l| l["type"] == "release").collect();
    let release = &h[0]["release"];
    assert_eq!(release["status"], "paused", "{release}");
    let reason = release["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("analysis Error: 3 measurement errors in a row (consecutive_error_limit 2)"),
        "{reason}"
    );
    assert!(reason.contains("nothing was promoted"), "{reason}");
    let ms = measurements(&h[0]);
    assert!(ms.iter().any(|m| m["verdict"] == "pass"), "{ms:?}");
    let last3: Vec<_> = ms.iter().rev().take(3).collect();
    assert!(last3.iter().all(|m| m["verdict"] == "error"), "{last3:?}");
    assert!(last3.iter().all(|m| m["detail"].as_str().unwrap_or_default().contains(&prom.base_url)), "{last3:?}");
    assert_eq!(release["weight"], 50, "nothing promoted");
    let (_, status) = s.json(&["--estate", estate, "status", "--env", "dev", "--app", "web"]);
    let w = &status[0]["workloads"][0];
    assert_eq!(w["routing"]["weights"]["1.0.1"], 50, "{w}");
    assert_eq!(w["routing"]["weights"]["1.0.0"], 50, "{w}");
}
