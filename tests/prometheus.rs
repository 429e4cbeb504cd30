//! The Prometheus metrics provider against a real Prometheus (the `prometheus` binary, which CI
//! installs) scraping the real local cluster's pods.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
        if let Err(e) = Command::new("prometheus").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status()
        {
            panic!(
                "the `prometheus` binary is needed for this test and cannot be run ({e}); install it \
                 (Debian: apt-get install -y --no-install-recommends prometheus)"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: pods\n    \
             scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
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
