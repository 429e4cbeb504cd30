//! The command line as people use it: bad input is refused with a message and exit code 2
//! and changes nothing stored; approvals need a second person; one process per data dir; a
//! release whose process was killed resumes in the next one.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Shipdeck, statuses};

fn release_count(s: &Shipdeck) -> usize {
    let (_, lines) = s.json(&["history"]);
    lines.iter().filter(|l| l["type"] == "release").count()
}

#[test]
fn every_invalid_estate_is_refused_with_exit_2_naming_the_file() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid_estates");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let s = Shipdeck::new();
        let (code, out, err) = s.sh(&["--estate", path.to_str().unwrap(), "status"]);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert!(err.contains(name), "{name}: the message names the file: {err}");
        seen += 1;
    }
    assert!(seen >= 6);
}

#[test]
fn invalid_estate_messages_say_what_is_wrong() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid_estates");
    let s = Shipdeck::new();
    for (name, expect) in [
        ("unknown_key.toml", "replcas"),
        ("bad_promotion_target.toml", "`prd`"),
        ("error_rate_as_percent.toml", "0.08 means 8%"),
        ("override_unknown_env.toml", "no environment is named `prod`"),
        ("bad_duration.toml", "write it like `30s`"),
        ("no_versions.toml", "at least one"),
    ] {
        let (_, _, err) = s.sh(&["--estate", dir.join(name).to_str().unwrap(), "status"]);
        assert!(err.contains(expect), "{name}: {err}");
    }
    let (code, _, err) = s.sh(&["--estate", "/nonexistent/estate.toml", "status"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read estate file /nonexistent/estate.toml"), "{err}");
}

#[test]
fn unknown_app_environment_or_version_is_refused_and_stores_nothing() {
    let s = Shipdeck::new();
    for (args, expect) in [
        (vec!["deploy", "nope", "1.0.0", "--env", "dev"], "unknown app `nope`"),
        (vec!["deploy", "checkout", "1.5.0", "--env", "qa"], "unknown environment `qa`"),
        (vec!["deploy", "checkout", "9.9.9", "--env", "dev"], "image checkout:9.9.9 cannot be pulled"),
        (vec!["deploy", "checkout", "1.5.0", "--env", "dev", "--strategy", "yolo"], "unknown strategy `yolo`"),
        (vec!["history", "--app", "nope"], "unknown app `nope`"),
    ] {
        let (code, out, err) = s.sh(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(release_count(&s), 0);
}

#[test]
fn a_promotion_along_no_declared_path_is_refused_naming_the_allowed_targets() {
    let s = Shipdeck::new();
    let (code, _, err) = s.sh(&["promote", "search", "--from", "dev", "--to", "prod"]);
    assert_eq!(code, 2);
    assert!(err.contains("dev promotes only to staging"), "{err}");
    assert_eq!(release_count(&s), 0);
}

#[test]
fn promotion_into_prod_needs_an_approval_by_someone_other_than_the_requester() {
    let s = Shipdeck::new();
    assert_eq!(s.sh(&["deploy", "search", "3.2.0", "--env", "dev"]).0, 0);
    assert_eq!(s.sh(&["promote", "search", "--from", "dev", "--to", "staging"]).0, 0);
    let (code, out, _) = s.sh(&["promote", "search", "--from", "staging", "--to", "prod"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("waiting for approval"), "{out}");
    let id = s.history("search")[0]["release"]["id"].as_str().unwrap().to_string();
    assert_eq!(s.history("search")[0]["release"]["status"], "planned");

    let (code, _, err) = s.sh(&["approve", &id]);
    assert_eq!(code, 2, "the requester cannot approve");
    assert!(err.contains("alice requested release") && err.contains("cannot approve"), "{err}");
    assert!(s.history("search")[0]["approvals"].as_array().unwrap().is_empty(), "nothing stored");

    let (code, out, err) = s.sh(&["approve", &id, "--as", "bob"]);
    assert_eq!(code, 0, "{out}{err}");
    let h = s.history("search");
    assert_eq!(h[0]["release"]["status"], "verified");
    assert_eq!(h[0]["approvals"][0]["by"], "bob");
    assert_eq!(h[0]["release"]["kind"], "promotion");

    let (code, _, err) = s.sh(&["approve", &id, "--as", "carol"]);
    assert_eq!(code, 2);
    assert!(err.contains("not waiting for approval"), "{err}");
    let (code, _, err) = s.sh(&["approve", "prod-nope-1-2"]);
    assert_eq!(code, 2);
    assert!(err.contains("no release with id"), "{err}");
}

#[test]
fn destructive_commands_need_yes_without_a_terminal() {
    let s = Shipdeck::new();
    let (code, _, err) = s.sh(&["restart", "search", "--env", "dev"]);
    assert_eq!(code, 2);
    assert!(err.contains("pass --yes"), "{err}");
    let (code, out, err) = s.sh(&["restart", "search", "--env", "dev", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("all pods ready again"), "{out}");
}

#[test]
fn readonly_refuses_changes() {
    let s = Shipdeck::new();
    let (code, _, err) = s.sh(&["--readonly", "deploy", "search", "3.2.0", "--env", "dev"]);
    assert_eq!(code, 2);
    assert!(err.contains("read-only"), "{err}");
}

#[test]
fn rollback_without_an_earlier_verified_version_says_how_to_name_one() {
    let s = Shipdeck::new();
    let (code, _, err) = s.sh(&["rollback", "search", "--env", "dev", "--yes"]);
    assert_eq!(code, 2);
    assert!(err.contains("--to VERSION"), "{err}");
    assert_eq!(s.sh(&["deploy", "search", "3.2.0", "--env", "dev"]).0, 0);
    let (code, out, err) = s.sh(&["rollback", "search", "--env", "dev", "--to", "3.1.0", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    let h = s.history("search");
    assert_eq!(h[0]["release"]["kind"], "rollback");
    assert_eq!(h[0]["release"]["status"], "verified");
    assert_eq!(h[1]["release"]["status"], "rolled_back");
}

/// Start a long canary in the background and wait until it is in its analysis.
fn start_canary(s: &Shipdeck) -> std::process::Child {
    let mut child = s.cmd(&["deploy", "checkout", "1.5.0", "--env", "dev"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the canary never reached its analysis");
        match lines.next() {
            Some(Ok(l)) if l.contains("step 2/7") => break,
            Some(Ok(_)) => {}
            _ => panic!("deploy ended early"),
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

#[test]
fn a_second_process_on_the_same_data_dir_talks_to_the_holder_and_a_killed_release_resumes() {
    let s = Shipdeck::new();
    let mut first = start_canary(&s);

    // A second process never runs a second cluster over the store: it hands its command to
    // the process that holds the data dir.
    let (code, out, err) = s.sh(&["pause", "search", "--env", "dev"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("no release of search in dev is in progress"), "answered by the holder: {err}");
    let (_, out, _) = s.sh(&["status", "--env", "dev", "--app", "checkout"]);
    assert!(out.contains("live in another shipdeck"), "{out}");

    // Kill it mid-rollout: nothing committed is lost, the release shows as interrupted.
    first.kill().unwrap();
    first.wait().unwrap();
    let w = s.workload("dev", "checkout");
    assert_eq!(w["release"]["status"], "in_progress");
    assert_eq!(w["interrupted"], true);
    assert!(w["measurements"].is_array(), "status --json carries the release's measurements: {w}");
    assert_eq!(w["routing"]["weights"]["1.5.0"], 20, "the canary weight was recorded");

    let (code, out, err) = s.sh(&["resume", "checkout", "--env", "dev"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("was interrupted at step 2/7"), "{out}");
    let h = s.history("checkout");
    assert_eq!(h[0]["release"]["status"], "verified");
    assert_eq!(h[0]["release"]["interrupted"], false);
    assert_eq!(statuses(&h[0]).last().map(String::as_str), Some("verified"));
}

#[test]
fn abort_of_an_interrupted_release_puts_traffic_back_on_stable() {
    let s = Shipdeck::new();
    let mut first = start_canary(&s);
    first.kill().unwrap();
    first.wait().unwrap();
    let (code, out, err) = s.sh(&["abort", "checkout", "--env", "dev", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(s.history("checkout")[0]["release"]["status"], "aborted");
    let w = s.workload("dev", "checkout");
    assert_eq!(w["routing"]["weights"], serde_json::json!({"1.4.0": 100}));
    assert!(w["replicas"].get("1.5.0").is_none(), "pending removals happen before the process exits: {w}");
    let (code, _, err) = s.sh(&["retry", "search", "--env", "dev"]);
    assert_eq!(code, 2);
    assert!(err.contains("nothing to retry"), "{err}");
}

#[test]
fn every_shipped_theme_and_keymap_starts_and_a_broken_user_theme_is_refused_by_name() {
    let s = Shipdeck::new();
    for theme in ["dark", "light", "high-contrast"] {
        for keymap in ["default", "emacs"] {
            let (code, out, err) = s.sh(&["--theme", theme, "--keymap", keymap]);
            assert_eq!(code, 0, "{theme}/{keymap}: {out}{err}");
        }
    }
    let cfg = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cfg.path().join("themes")).unwrap();
    std::fs::write(cfg.path().join("themes/mine.toml"), "name = \"mine\"\n[roles]\nerror = { fg = \"#zz0000\" }\n")
        .unwrap();
    let o = s.cmd(&["--theme", "mine"]).env("SHIPDECK_CONFIG_DIR", cfg.path()).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("mine.toml") && err.contains("#zz0000"), "{err}");
    let (code, _, err) = s.sh(&["--theme", "solarized-nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("solarized-nope"), "{err}");
}

#[test]
fn a_release_driven_by_one_process_is_aborted_from_another() {
    let s = Shipdeck::new();
    let mut first = start_canary(&s);
    let (code, out, err) = s.sh(&["abort", "checkout", "--env", "dev", "--yes", "--as", "bob"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("done by the shipdeck that holds this data dir"), "{out}");
    // The deploy that was following the release ends: the release was aborted (exit 1).
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = first.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the first process never finished");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let h = s.history("checkout");
    assert_eq!(h[0]["release"]["status"], "aborted");
    assert!(h[0]["release"]["reason"].as_str().unwrap().contains("aborted by bob"));
    assert_eq!(s.workload("dev", "checkout")["routing"]["weights"], serde_json::json!({"1.4.0": 100}));
}
