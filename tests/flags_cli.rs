//! `shipdeck flags …` on a fresh data dir: the demo flags are written in flagd's format, read,
//! evaluated and changed; every change is recorded with who did it; bad input changes nothing.

mod common;

use common::Shipdeck;

fn flags_file(s: &Shipdeck) -> String {
    std::fs::read_to_string(s.data_dir().join("flags.json")).unwrap_or_default()
}

#[test]
fn flags_are_listed_evaluated_changed_and_their_history_kept() {
    let s = Shipdeck::new();
    let (code, out, err) = s.sh(&["flags", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("new-checkout-flow") && out.contains("10%"), "{out}");

    // The kill switch asks first; without --yes and without a terminal it is refused.
    let before = flags_file(&s);
    let (code, _, err) = s.sh(&["flags", "disable", "new-checkout-flow"]);
    assert_eq!(code, 2);
    assert!(err.contains("pass --yes to confirm"), "{err}");
    assert_eq!(flags_file(&s), before, "nothing changed");

    let (code, out, err) = s.sh(&["--yes", "--as", "bob", "flags", "disable", "new-checkout-flow"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("flag new-checkout-flow turned off by bob"), "{out}");
    let doc: serde_json::Value = serde_json::from_str(&flags_file(&s)).unwrap();
    assert_eq!(doc["flags"]["new-checkout-flow"]["state"], "DISABLED", "saved in flagd's format");

    let (_, lines) = s.json(&["flags", "eval", "new-checkout-flow", "--context", "targetingKey=user-7"]);
    assert_eq!(lines[0]["reason"], "DISABLED", "{}", lines[0]);

    let (code, out, _) = s.sh(&["--as", "carol", "flags", "enable", "new-checkout-flow"]);
    assert_eq!(code, 0);
    assert!(out.contains("turned on by carol"));
    let (code, _, _) = s.sh(&["flags", "set-rollout", "new-checkout-flow", "30"]);
    assert_eq!(code, 0);
    let (_, lines) = s.json(&["flags", "preview", "new-checkout-flow", "--sample", "20000"]);
    let on = lines[0]["shares"]["on"].as_f64().unwrap_or(0.0);
    assert!((28.0..=32.0).contains(&on), "30% rollout: {}", lines[0]);

    let (_, lines) = s.json(&["flags", "history", "new-checkout-flow"]);
    let actions: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["change"]["actor"].as_str().unwrap_or(""), l["change"]["action"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(actions, [("alice", "rolled out to 30%"), ("carol", "turned on"), ("bob", "turned off")]);
    assert_eq!(lines[2]["change"]["before"]["state"], "ENABLED");
    assert_eq!(lines[2]["change"]["after"]["state"], "DISABLED");
}

#[test]
fn bad_flag_input_is_refused_naming_the_problem_and_nothing_is_stored() {
    let s = Shipdeck::new();
    assert_eq!(s.sh(&["flags", "list"]).0, 0);
    let before = flags_file(&s);
    for (args, expect) in [
        (vec!["flags", "enable", "nope"], "no flag named `nope`"),
        (vec!["flags", "set-rollout", "new-checkout-flow", "250"], "between 0 and 100"),
        (vec!["flags", "eval", "new-checkout-flow", "--context", "oops"], "write KEY=VALUE"),
        (vec!["flags", "preview", "new-checkout-flow", "--sample", "0"], "at least 1"),
        (vec!["flags", "show", "nope"], "no flag named `nope`"),
    ] {
        let (code, out, err) = s.sh(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(flags_file(&s), before);
    let (_, lines) = s.json(&["flags", "history", "new-checkout-flow"]);
    assert!(lines.is_empty(), "nothing recorded: {lines:?}");

    // A broken file is refused with what is wrong, and left as it is.
    let broken = r#"{"flags": {"x": {"state": "ON", "variants": {"on": true}, "defaultVariant": "on"}}}"#;
    std::fs::write(s.data_dir().join("flags.json"), broken).unwrap();
    let (code, _, err) = s.sh(&["--yes", "flags", "disable", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("flags.x.state"), "{err}");
    assert_eq!(flags_file(&s), broken);
}

/// A progressive rollout on the demo estate's real pods: `new-checkout` makes checkout fail 10%
/// more requests and is turned back at its first stage; `saved-carts` is harmless and reaches
/// 100%. Both stories are in `flags history`.
#[test]
fn a_harmful_flag_s_rollout_is_turned_back_and_a_harmless_one_reaches_100_percent() {
    let s = Shipdeck::new();
    let (code, out, err) =
        s.sh(&["flags", "rollout", "new-checkout", "--app", "checkout", "--env", "dev", "--stages", "25:10s,100"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("progressive rollout failed at 25% (stage 1/2): `on` is worse than `off`: error_rate"),
        "{out}"
    );
    let doc: serde_json::Value = serde_json::from_str(&flags_file(&s)).unwrap();
    assert!(
        doc["flags"]["new-checkout"].get("targeting").is_none(),
        "back as it was: {}",
        doc["flags"]["new-checkout"]
    );
    let (_, lines) = s.json(&["flags", "history", "new-checkout"]);
    let actions: Vec<&str> = lines.iter().map(|l| l["change"]["action"].as_str().unwrap_or("")).collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(actions[0].contains("turned back to its state before the rollout"), "{actions:?}");
    assert_eq!(actions[1], "progressive rollout stage 1/2: 25%");

    let (code, out, err) = s.sh(&[
        "flags",
        "rollout",
        "saved-carts",
        "--app",
        "checkout",
        "--env",
        "dev",
        "--stages",
        "25:10s,50:10s,100",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("progressive rollout of saved-carts complete: 100% on"), "{out}");
    let (_, lines) = s.json(&["flags", "history", "saved-carts"]);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["change"]["action"], "progressive rollout stage 3/3: 100%");
    let (_, lines) = s.json(&["flags", "preview", "saved-carts", "--sample", "1000"]);
    assert_eq!(lines[0]["shares"]["on"], 100.0);
}

#[test]
fn a_flag_change_travels_with_a_release_and_its_rollback_puts_it_back() {
    let s = Shipdeck::new();
    let (code, out, err) = s.sh(&["deploy", "search", "3.2.0", "--env", "dev", "--flag", "dark-mode=off"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("flags dark-mode=off"), "the step shows: {out}");
    let doc: serde_json::Value = serde_json::from_str(&flags_file(&s)).unwrap();
    assert_eq!(doc["flags"]["dark-mode"]["state"], "DISABLED");

    let (code, out, err) = s.sh(&["--yes", "rollback", "search", "--env", "dev", "--to", "3.1.0"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&flags_file(&s)).unwrap();
    assert_eq!(doc["flags"]["dark-mode"]["state"], "ENABLED", "put back by the rollback");
    let (_, lines) = s.json(&["flags", "history", "dark-mode"]);
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["change"]["action"].as_str().unwrap_or("").starts_with("reverted with release dev-search-3.1.0-"));

    let (code, _, err) = s.sh(&["deploy", "search", "3.2.0", "--env", "dev", "--flag", "dark-mode=maybe"]);
    assert_eq!(code, 2);
    assert!(err.contains("not on, off or a percentage"), "{err}");
}
