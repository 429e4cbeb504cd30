//! Every strategy on the demo estate, through the real binary and the real local cluster:
//! a good version ends verified, a bad one recovers on its own, and `history --json` shows
//! the transitions.

mod common;

use common::{Shipdeck, statuses};

fn weights(w: &serde_json::Value) -> serde_json::Value {
    w["routing"]["weights"].clone()
}

#[test]
fn a_canary_of_a_good_version_ends_verified() {
    let s = Shipdeck::new();
    let (code, out, err) = s.sh(&["deploy", "checkout", "1.5.0", "--env", "dev"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("step 2/7 analysis"), "live progress shows step k/n: {out}");
    assert!(out.contains("ready"), "live progress shows replicas: {out}");
    let h = s.history("checkout");
    assert_eq!(h[0]["release"]["status"], "verified");
    assert_eq!(statuses(&h[0]), ["planned", "in_progress", "deployed", "verified"]);
    assert!(h[0]["measurements"].as_array().unwrap().iter().all(|m| m["verdict"] == "pass"));
    assert_eq!(weights(&s.workload("dev", "checkout")), serde_json::json!({"1.5.0": 100}));
}

#[test]
fn a_canary_erroring_at_20_percent_rolls_back_with_exit_code_1() {
    let s = Shipdeck::new();
    let (code, out, _) = s.sh(&["deploy", "checkout", "1.6.0-bad", "--env", "dev"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("measurement FAIL: error_rate: 0."), "{out}");
    let h = s.history("checkout");
    let r = &h[0]["release"];
    assert_eq!(r["status"], "rolled_back");
    let why = r["reason"].as_str().unwrap();
    assert!(why.contains("analysis Failed: error_rate: ") && why.contains("canary requests failed"), "{r}");
    assert_eq!(statuses(&h[0]), ["planned", "in_progress", "rolled_back"]);
    assert!(h[0]["measurements"].as_array().unwrap().iter().any(|m| m["verdict"] == "fail"));
    let w = s.workload("dev", "checkout");
    assert_eq!(weights(&w), serde_json::json!({"1.4.0": 100}));
    assert_eq!(w["replicas"], serde_json::json!({"1.4.0": 2}));
}

#[test]
fn blue_green_of_a_good_version_switches_and_ends_verified() {
    let s = Shipdeck::new();
    let (code, out, _) = s.sh(&["deploy", "payments", "2.1.0", "--env", "dev"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("preview"), "{out}");
    let h = s.history("payments");
    assert_eq!(statuses(&h[0]), ["planned", "in_progress", "deployed", "verified"]);
    let w = s.workload("dev", "payments");
    assert_eq!(weights(&w), serde_json::json!({"2.1.0": 100}));
    assert_eq!(w["replicas"], serde_json::json!({"2.1.0": 2}));
}

#[test]
fn blue_green_of_a_version_with_a_broken_dependency_never_switches() {
    let s = Shipdeck::new();
    let (code, out, _) = s.sh(&["deploy", "payments", "2.2.0-nodb", "--env", "dev"]);
    assert_eq!(code, 1, "{out}");
    let r = &s.history("payments")[0]["release"];
    assert_eq!(r["status"], "rolled_back");
    assert!(r["reason"].as_str().unwrap().contains("dependencies"), "{r}");
    assert_eq!(weights(&s.workload("dev", "payments")), serde_json::json!({"2.0.0": 100}));
}

#[test]
fn rolling_of_a_good_version_ends_verified() {
    let s = Shipdeck::new();
    let (code, out, _) = s.sh(&["deploy", "search", "3.2.0", "--env", "dev"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("step 3/4 roll: new 3, old 0"), "{out}");
    assert_eq!(s.history("search")[0]["release"]["status"], "verified");
    assert_eq!(weights(&s.workload("dev", "search")), serde_json::json!({"3.2.0": 100}));
}

#[test]
fn rolling_of_a_crashing_version_stops_at_the_deadline_and_rolls_back() {
    let s = Shipdeck::new();
    let (code, out, _) = s.sh(&["deploy", "search", "3.4.0-crash", "--env", "dev"]);
    assert_eq!(code, 1, "{out}");
    let r = &s.history("search")[0]["release"];
    assert_eq!(r["status"], "rolled_back");
    assert!(r["reason"].as_str().unwrap().contains("CrashLoopBackOff"), "{r}");
    let w = s.workload("dev", "search");
    assert_eq!(weights(&w), serde_json::json!({"3.1.0": 100}));
    assert_eq!(w["replicas"], serde_json::json!({"3.1.0": 3}));
}

#[test]
fn recreate_of_a_good_version_ends_verified() {
    let s = Shipdeck::new();
    let (code, out, _) = s.sh(&["deploy", "search", "3.2.0", "--env", "dev", "--strategy", "recreate"]);
    assert_eq!(code, 0, "{out}");
    let h = s.history("search");
    assert_eq!(h[0]["release"]["strategy"], "recreate");
    assert_eq!(h[0]["release"]["status"], "verified");
}

#[test]
fn recreate_of_a_crashing_version_brings_the_old_version_back() {
    let s = Shipdeck::new();
    let (code, out, _) = s.sh(&["deploy", "search", "3.4.0-crash", "--env", "dev", "--strategy", "recreate"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(s.history("search")[0]["release"]["status"], "rolled_back");
    let w = s.workload("dev", "search");
    assert_eq!(weights(&w), serde_json::json!({"3.1.0": 100}));
    assert_eq!(w["replicas"], serde_json::json!({"3.1.0": 3}));
}

#[test]
fn ab_of_a_good_version_promotes_b() {
    let s = Shipdeck::new();
    let (code, out, _) = s.sh(&["deploy", "search", "3.2.0", "--env", "dev", "--strategy", "ab"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("x-shipdeck-group=b → 3.2.0"), "the audience is routed to B: {out}");
    assert_eq!(s.history("search")[0]["release"]["status"], "verified");
    assert_eq!(weights(&s.workload("dev", "search")), serde_json::json!({"3.2.0": 100}));
}

#[test]
fn ab_of_a_slower_version_withdraws_b() {
    let s = Shipdeck::new();
    let (code, out, _) = s.sh(&["deploy", "search", "3.3.0-slow", "--env", "dev", "--strategy", "ab"]);
    assert_eq!(code, 1, "{out}");
    let r = &s.history("search")[0]["release"];
    assert_eq!(r["status"], "rolled_back");
    assert!(r["reason"].as_str().unwrap().contains("p99 latency"), "{r}");
    let w = s.workload("dev", "search");
    assert_eq!(weights(&w), serde_json::json!({"3.1.0": 100}));
    assert_eq!(w["routing"]["matches"], serde_json::json!([]));
}
