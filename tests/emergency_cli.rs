//! `shipdeck emergency …` as people use it: a P1 is created with its plan shown, refused to its
//! requester, approved by two others, shown and reported with --json; bad input exits 2 naming
//! what is known; a P0 on a small estate is executed end to end on the real local cluster, and a
//! P2 of the demo estate whose fix fails its canary there is rolled back.

mod common;

use common::Shipdeck;

fn create_args<'a>(severity: &'a str, service: &'a str, fix: &'a str) -> Vec<&'a str> {
    vec![
        "emergency",
        "create",
        "--type",
        "security_patch",
        "--severity",
        severity,
        "--description",
        "card numbers show in the logs",
        "--service",
        service,
        "--fix-version",
        fix,
    ]
}

#[test]
fn a_p1_is_created_approved_by_two_others_shown_and_reported() {
    let s = Shipdeck::new();
    let (code, out, err) = s.sh(&create_args("P1", "payments", "2.1.0"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("plan: rapid: prod → staging, 10% canary for 30s, monitor 1m"), "the plan is shown: {out}");
    let (code, lines) = s.json(&["emergency", "list"]);
    assert_eq!(code, 0);
    let id = lines[0]["emergency"]["id"].as_str().unwrap_or_default().to_string();
    assert!(id.starts_with("ER-"), "{}", lines[0]);
    assert_eq!(lines[0]["emergency"]["status"], "pending_approval");

    let (code, _, err) = s.sh(&["--as", "alice", "emergency", "approve", &id]);
    assert_eq!(code, 2);
    assert!(err.contains("alice requested emergency") && err.contains("cannot approve it"), "{err}");
    let (code, lines) = s.json(&["--as", "bob", "emergency", "approve", &id]);
    assert_eq!(code, 0);
    assert_eq!(lines[0]["emergency"]["approvers"], serde_json::json!(["bob"]));
    let (code, _, err) = s.sh(&["--as", "bob", "emergency", "approve", &id]);
    assert_eq!(code, 2);
    assert!(err.contains("bob already approved"), "{err}");
    let (code, _, err) = s.sh(&["emergency", "execute", &id]);
    assert_eq!(code, 2);
    assert!(err.contains("needs 1 more approval"), "{err}");
    let (code, lines) = s.json(&["--as", "carol", "emergency", "approve", &id]);
    assert_eq!(code, 0);
    assert_eq!(lines[0]["emergency"]["status"], "approved");

    let (code, lines) = s.json(&["emergency", "show", &id]);
    assert_eq!(code, 0);
    let e = &lines[0]["emergency"];
    assert_eq!((e["severity"].as_str(), e["kind"].as_str()), (Some("P1"), Some("security_patch")));
    assert_eq!(e["approvers"], serde_json::json!(["bob", "carol"]));
    assert_eq!(e["plan"]["environments"], serde_json::json!(["prod", "staging"]));
    let to: Vec<&str> = lines[0]["transitions"].as_array().unwrap().iter().filter_map(|t| t["to"].as_str()).collect();
    assert_eq!(to, ["pending_approval", "approved"]);

    let (code, lines) = s.json(&["emergency", "report"]);
    assert_eq!(code, 0);
    let r = &lines[0]["report"];
    assert_eq!((r["total"].as_u64(), r["by_severity"]["P1"].as_u64()), (Some(1), Some(1)));
    assert_eq!(r["by_type"]["security_patch"], 1);
    assert_eq!(r["top_affected_services"][0]["service"], "payments");
    let (code, out, _) = s.sh(&["emergency", "report"]);
    assert_eq!(code, 0);
    assert!(out.contains("emergencies: 1") && out.contains("by week:"), "{out}");
}

#[test]
fn bad_emergency_input_exits_2_naming_what_is_known_and_stores_nothing() {
    let s = Shipdeck::new();
    for (args, expect) in [
        (create_args("P1", "payments", "9.9.9"), "known versions of payments: 2.0.0, 2.1.0, 2.2.0-nodb"),
        (create_args("P1", "paymnts", "2.1.0"), "unknown service `paymnts`"),
        (create_args("P3", "payments", "2.1.0"), "unknown severity `P3`"),
        (vec!["emergency", "show", "ER-20200101000000"], "no emergency with id `ER-20200101000000`"),
    ] {
        let (code, out, err) = s.sh(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let (code, lines) = s.json(&create_args("P2", "payments", "9.9.9"));
    assert_eq!(code, 2);
    assert_eq!(lines[0]["type"], "error");
    let (_, lines) = s.json(&["emergency", "list"]);
    assert!(lines.is_empty(), "nothing stored: {lines:?}");
}

const SMALL_ESTATE: &str = r#"
[emergency.P0]
monitoring_duration = "2s"

[[environments]]
name = "dev"
[[environments]]
name = "staging"
[[environments]]
name = "prod"

[[apps]]
name = "web"
replicas = 1
rps = 50
initial_version = "1.0.0"
[apps.emergency]
build = "echo \"compiling $SHIPDECK_VERSION\""
[apps.emergency.critical_tests]
security = "case \"$SHIPDECK_VERSION\" in *-bad) echo 'FAIL: tokens leak'; exit 1;; esac; echo 'security ok'"
[[apps.versions]]
version = "1.0.0"
ready_after = "100ms"
[[apps.versions]]
version = "1.1.0"
ready_after = "100ms"
[[apps.versions]]
version = "1.1.1-bad"
ready_after = "100ms"
"#;

#[test]
fn a_p0_runs_through_prod_staging_and_dev_and_a_fix_failing_its_suite_exits_1() {
    let s = Shipdeck::new();
    let estate = s.data_dir().join("small-estate.toml");
    std::fs::write(&estate, SMALL_ESTATE).unwrap();
    let estate = estate.to_str().unwrap_or_default().to_string();
    let with_estate = |args: &[&str]| {
        let mut all = vec!["--estate", estate.as_str()];
        all.extend_from_slice(args);
        all.into_iter().map(String::from).collect::<Vec<String>>()
    };
    let run = |args: &[&str]| {
        let owned = with_estate(args);
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        s.sh(&refs)
    };

    let (code, out, err) = run(&create_args("P0", "web", "1.1.0"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("P0: no approval needed"), "{out}");
    let id = out.split_whitespace().find(|w| w.starts_with("ER-")).unwrap_or_default().to_string();
    // Executing a P0 deploys to prod at once: it asks first.
    let (code, _, err) = run(&["emergency", "execute", &id]);
    assert_eq!(code, 2);
    assert!(err.contains("pass --yes"), "{err}");
    let (code, out, err) = run(&["--yes", "emergency", "execute", &id]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("build web: 1.1.0") || out.contains("compiling 1.1.0"), "{out}");
    for env in ["prod", "staging", "dev"] {
        assert!(out.contains(&format!("1.1.0 verified in {env}")), "{env}: {out}");
    }
    assert!(out.contains("completed"), "{out}");
    for env in ["prod", "staging", "dev"] {
        let (_, lines) = s.json(
            &with_estate(&["status", "--env", env, "--app", "web"]).iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(lines[0]["workloads"][0]["routing"]["weights"]["1.1.0"], 100, "{env}: {}", lines[0]);
    }

    let (code, out, err) = run(&create_args("P0", "web", "1.1.1-bad"));
    assert_eq!(code, 0, "{out}{err}");
    let id = out.split_whitespace().find(|w| w.starts_with("ER-")).unwrap_or_default().to_string();
    let owned = with_estate(&["--yes", "emergency", "execute", &id]);
    let (code, lines) = s.json(&owned.iter().map(String::as_str).collect::<Vec<_>>()[..]);
    assert_eq!(code, 1);
    let last = lines.last().cloned().unwrap_or_default();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["emergency"]["status"], "failed");
    assert!(
        last["emergency"]["cause"].as_str().unwrap_or("").contains("critical suite security of web failed"),
        "{last}"
    );
    assert!(lines.iter().any(|l| l["entry"]["message"].as_str().is_some_and(|m| m.contains("FAIL: tokens leak"))));
}

/// A P2 on the demo estate's real local cluster whose fix fails its canary: checkout's versions
/// fail 4% of requests, above P2's 1% threshold, so the canary in staging (the plan's first
/// environment) is rolled back, staging is back on its previous version, prod is never touched,
/// and the emergency ends rolled back with the cause.
#[test]
fn a_p2_whose_fix_fails_its_canary_on_the_local_cluster_is_rolled_back() {
    let s = Shipdeck::new();
    let (code, out, err) = s.sh(&create_args("P2", "checkout", "1.5.0"));
    assert_eq!(code, 0, "{out}{err}");
    let id = out.split_whitespace().find(|w| w.starts_with("ER-")).unwrap_or_default().to_string();
    for who in ["bob", "carol"] {
        let (code, out, err) = s.sh(&["--as", who, "emergency", "approve", &id]);
        assert_eq!(code, 0, "{out}{err}");
    }
    let (code, out, err) = s.sh(&["emergency", "execute", &id]);
    assert_eq!(code, 1, "{out}{err}");
    let (_, lines) = s.json(&["emergency", "show", &id]);
    let e = &lines[0]["emergency"];
    assert_eq!(e["status"], "rolled_back", "{e}");
    let cause = e["cause"].as_str().unwrap_or_default();
    assert!(cause.contains("staging/checkout"), "the cause names where: {cause}");
    for (env, version) in [("staging", "1.4.0"), ("prod", "1.4.0")] {
        let w = s.workload(env, "checkout");
        assert_eq!(w["routing"]["weights"], serde_json::json!({version: 100}), "{env}: {w}");
    }
    let prod = s.history("checkout").into_iter().filter(|h| h["release"]["env"] == "prod").count();
    assert_eq!(prod, 0, "prod was never touched");
}

/// The demo's `payments 2.2.0-nodb` fails its data-integrity suite: the emergency stops after
/// the tests, with their counts, and nothing is deployed anywhere.
#[test]
fn a_fix_failing_its_critical_suite_on_the_demo_estate_deploys_nothing() {
    let s = Shipdeck::new();
    let (code, out, err) = s.sh(&create_args("P1", "payments", "2.2.0-nodb"));
    assert_eq!(code, 0, "{out}{err}");
    let id = out.split_whitespace().find(|w| w.starts_with("ER-")).unwrap_or_default().to_string();
    for who in ["bob", "carol"] {
        assert_eq!(s.sh(&["--as", who, "emergency", "approve", &id]).0, 0);
    }
    let (code, out, err) = s.sh(&["emergency", "execute", &id]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("ledger rows not written"), "the suite's output is streamed: {out}");
    let (_, lines) = s.json(&["emergency", "show", &id]);
    let e = &lines[0]["emergency"];
    assert_eq!(e["status"], "failed", "{e}");
    assert_eq!(e["tests"]["failed"], 1, "{e}");
    assert!(s.history("payments").is_empty(), "nothing deployed");
}
