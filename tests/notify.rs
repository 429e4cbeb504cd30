//! Operational metrics scraped from a real host on the local cluster, and `shipdeck notes`
//! against a git repository the test builds.

mod common;

use std::sync::Arc;
use std::time::Duration;

use shipdeck::config::Estate;
use shipdeck::engine::{Command, Event};
use shipdeck::host::Host;
use shipdeck::model::Status;

const ESTATE: &str = r#"
[[environments]]
name = "dev"

[[apps]]
name = "web"
replicas = 1
rps = 5
strategy = "rolling"
initial_version = "1.0.0"
[[apps.versions]]
version = "1.0.0"
[[apps.versions]]
version = "1.1.0"
[[apps.versions]]
version = "1.2.0-nodb"
broken_dependencies = ["database"]
"#;

async fn finish(host: &Host, cmd: Command) -> Status {
    let mut rx = host.engine.subscribe();
    let id = host.engine.execute("alice", cmd).await.expect("accepted").release.expect("a release").id;
    let wait = async {
        loop {
            if let Ok(Event::Finished { release_id, status }) = rx.recv().await
                && release_id == id
            {
                return status;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait).await.expect("release finished in time")
}

/// The value of the sample `name{labels}`, if the scrape has it.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

async fn scrape(url: &str) -> String {
    let client = shipdeck::http::client_builder().build().expect("an HTTP client");
    let r = client.get(url).send().await.expect("metrics answer");
    assert_eq!(r.status(), 200);
    let kind = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    r.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_deploys_rollbacks_and_the_active_version() {
    let dir = tempfile::tempdir().unwrap();
    let estate = Arc::new(Estate::parse(ESTATE, "test estate").unwrap());
    let mut host = Host::start(estate, dir.path(), false, "test").await.unwrap();
    let addr = host.serve_metrics("127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert_eq!(host.metrics_addr(), Some(addr));
    assert_ne!(addr.port(), 0);
    let url = format!("http://{addr}/metrics");
    let active = |v: &str| format!("active_version_info{{environment=\"dev\",application=\"web\",version=\"{v}\"}}");
    assert_eq!(sample(&scrape(&url).await, &active("1.0.0")), Some(1.0));

    let deploy = |v: &str| Command::Deploy {
        app: "web".into(),
        env: "dev".into(),
        version: v.into(),
        strategy: None,
        flags: Vec::new(),
    };
    assert_eq!(finish(&host, deploy("1.1.0")).await, Status::Verified);
    assert_eq!(finish(&host, deploy("1.2.0-nodb")).await, Status::RolledBack);
    let back = Command::Rollback { app: "web".into(), env: "dev".into(), to: Some("1.0.0".into()) };
    assert_eq!(finish(&host, back).await, Status::Verified);

    // The feeder follows the same events; give it until a deadline to catch up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(&url).await;
        let done = sample(&text, "deployment_duration_seconds_count{environment=\"dev\",strategy=\"rolling\"}");
        if done == Some(3.0) || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::task::yield_now().await;
    };
    let dev = |name: &str, label: &str| sample(&text, &format!("{name}{{environment=\"dev\",{label}}}"));
    assert_eq!(dev("deployments_total", "status=\"verified\""), Some(2.0), "{text}");
    assert_eq!(dev("deployments_total", "status=\"rolled_back\""), Some(1.0), "{text}");
    assert_eq!(dev("rollbacks_total", "reason=\"verification\""), Some(1.0), "{text}");
    assert_eq!(dev("rollbacks_total", "reason=\"manual\""), Some(1.0), "{text}");
    assert_eq!(dev("deployment_duration_seconds_count", "strategy=\"rolling\""), Some(3.0), "{text}");
    assert_eq!(sample(&text, &active("1.0.0")), Some(1.0), "{text}");
    assert!(!text.contains("version=\"1.1.0\""), "only the running version is shown: {text}");
    assert!(text.contains("# TYPE deployment_duration_seconds histogram"), "{text}");
    if std::env::var_os("SHOW_METRICS").is_some() {
        println!("{text}");
    }
    host.stop().await;
}

fn git(dir: &std::path::Path, n: u32, args: &[&str]) {
    let date = format!("2024-02-01T10:{n:02}:00Z");
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Bo")
        .env("GIT_AUTHOR_EMAIL", "bo@example.test")
        .env("GIT_COMMITTER_NAME", "Bo")
        .env("GIT_COMMITTER_EMAIL", "bo@example.test")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn notes_command_prints_grouped_commits_and_refuses_what_it_cannot_read() {
    let sd = common::Shipdeck::new();
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("web");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, 0, &["init", "--quiet", "--initial-branch=main"]);
    let steps: [(&str, Option<&str>); 5] = [
        ("chore: start", Some("v1.0.0")),
        ("feat(search): fuzzy matching", None),
        ("fix: empty results page\n\nBREAKING CHANGE: /search returns 404 for no results", None),
        ("fix(search): trim the query", None),
        ("ci: cache the build", Some("v1.1.0")),
    ];
    for (i, (message, tag)) in steps.iter().enumerate() {
        git(&repo, i as u32 + 1, &["commit", "--quiet", "--allow-empty", "-m", message]);
        if let Some(t) = tag {
            git(&repo, i as u32 + 1, &["tag", t]);
        }
    }
    let estate = root.path().join("estate.toml");
    let text = ESTATE.replace("name = \"web\"\n", "name = \"web\"\nrepo = \"web\"\n")
        + "\n[[apps]]\nname = \"api\"\n[[apps.versions]]\nversion = \"2.0.0\"\n";
    std::fs::write(&estate, text).unwrap();
    let e = estate.to_str().unwrap();

    let (code, out, err) = sd.sh(&["--estate", e, "notes", "web", "1.1.0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("# web 1.1.0 (since 1.0.0)\n"), "{out}");
    let sections: Vec<&str> = out.lines().filter(|l| l.starts_with("## ")).collect();
    assert_eq!(sections, ["## Breaking changes", "## Features", "## Fixes", "## Other"], "{out}");
    assert!(out.contains("- empty results page (") && out.contains("— /search returns 404 for no results"), "{out}");
    assert!(out.trim_end().ends_with("(v1.0.0..v1.1.0)"), "{out}");

    let (code, lines) = sd.json(&["--estate", e, "notes", "web", "1.1.0", "--from", "1.0.0"]);
    assert_eq!(code, 0);
    let n = &lines[0]["notes"];
    let subjects = |group: &str| -> Vec<String> {
        n[group].as_array().unwrap().iter().map(|c| c["subject"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(lines[0]["type"], "notes");
    assert_eq!(subjects("breaking"), ["empty results page"]);
    assert_eq!(subjects("features"), ["fuzzy matching"]);
    assert_eq!(subjects("fixes"), ["trim the query"]);
    assert_eq!(subjects("other"), ["cache the build"]);

    let (code, _, err) = sd.sh(&["--estate", e, "notes", "web", "1.2.0-nodb"]);
    assert_eq!(code, 2);
    assert!(err.contains("tried v1.2.0-nodb, 1.2.0-nodb"), "{err}");
    let (code, _, err) = sd.sh(&["--estate", e, "notes", "api", "2.0.0"]);
    assert_eq!(code, 2);
    assert!(err.contains("api has no `repo` in the estate"), "{err}");
    let (code, _, err) = sd.sh(&["--estate", e, "notes", "web", "9.9.9"]);
    assert_eq!(code, 2);
    assert!(err.contains("not one of the estate's versions") && err.contains("--from"), "{err}");
}
