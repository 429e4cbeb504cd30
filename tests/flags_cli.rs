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
        // Half the traffic for 20 s (up to 60 s when the judge needs more): enough requests to
        // tell a 4% error rate from itself even when the machine is busy.
        "50:20s,100",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("progressive rollout of saved-carts complete: 100% on"), "{out}");
    let (_, lines) = s.json(&["flags", "history", "saved-carts"]);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["change"]["action"], "progressive rollout stage 2/2: 100%");
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

fn flag(s: &Shipdeck, key: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(&flags_file(s)).unwrap();
    doc["flags"][key].clone()
}

fn eval_variant(s: &Shipdeck, key: &str, context: &[&str]) -> (String, String) {
    let mut args = vec!["flags", "eval", key];
    for c in context {
        args.extend(["--context", c]);
    }
    let (_, lines) = s.json(&args);
    (lines[0]["variant"].as_str().unwrap_or("-").to_string(), lines[0]["reason"].as_str().unwrap_or("").to_string())
}

#[test]
fn targeting_rules_compile_to_jsonlogic_flagd_evaluates_and_can_be_cleared() {
    let s = Shipdeck::new();
    let (code, out, err) = s.sh(&[
        "--as",
        "dana",
        "flags",
        "target",
        "new-checkout-flow",
        "--rule",
        "plan in_segment pro,enterprise",
        "--rule",
        "country equals NL",
        "--match",
        "all",
        "--serve",
        "on",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("targeting rule added: plan in_segment pro,enterprise and country equals NL → on"), "{out}");
    let (code, _, err) = s.sh(&[
        "flags",
        "target",
        "new-checkout-flow",
        "--rule",
        "version semver < 2.0.0",
        "--rule",
        "email ends_with @old.example",
        "--match",
        "any",
        "--serve",
        "off",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        flag(&s, "new-checkout-flow")["targeting"],
        serde_json::json!({"if": [
            {"and": [{"in": [{"var": "plan"}, ["pro", "enterprise"]]}, {"==": [{"var": "country"}, "NL"]}]}, "on",
            {"or": [
                {"and": [{"var": "version"}, {"sem_ver": [{"var": "version"}, "<", "2.0.0"]}]},
                {"and": [{"var": "email"}, {"ends_with": [{"var": "email"}, "@old.example"]}]}
            ]}, "off",
            {"fractional": [["on", 10], ["off", 90]]}
        ]}),
        "the rules, then the 10% rollout they fall back to"
    );
    let ctx = |c: &[&str]| eval_variant(&s, "new-checkout-flow", c);
    assert_eq!(ctx(&["plan=pro", "country=NL"]), ("on".into(), "TARGETING_MATCH".into()));
    assert_eq!(ctx(&["plan=pro", "country=NL", "version=1.0.0"]), ("on".into(), "TARGETING_MATCH".into()));
    assert_eq!(ctx(&["plan=pro", "country=DE", "version=1.9.3"]), ("off".into(), "TARGETING_MATCH".into()));
    assert_eq!(ctx(&["email=bo@old.example"]), ("off".into(), "TARGETING_MATCH".into()));
    // Not matching: the 10% rollout decides, as before.
    let (_, lines) = s.json(&["flags", "preview", "new-checkout-flow", "--sample", "10000"]);
    let on = lines[0]["shares"]["on"].as_f64().unwrap_or(0.0);
    assert!((8.0..=12.0).contains(&on), "{}", lines[0]);

    let (_, out, _) = s.sh(&["flags", "show", "new-checkout-flow"]);
    assert!(out.contains("rule 1: plan in_segment pro,enterprise and country equals NL → on"), "{out}");
    assert!(out.contains("rule 2: version semver < 2.0.0 or email ends_with @old.example → off"), "{out}");
    let (_, out, _) = s.sh(&["flags", "list"]);
    assert!(out.lines().any(|l| l.starts_with("new-checkout-flow") && l.contains("2 rules")), "{out}");

    // set-rollout now moves what the rules fall back to.
    assert_eq!(s.sh(&["flags", "set-rollout", "new-checkout-flow", "30"]).0, 0);
    assert_eq!(
        flag(&s, "new-checkout-flow")["targeting"]["if"][4],
        serde_json::json!({"fractional": [["on", 30], ["off", 70]]})
    );

    let (code, out, _) = s.sh(&["flags", "target", "new-checkout-flow", "--clear"]);
    assert_eq!(code, 0);
    assert!(out.contains("cleared its targeting rules"), "{out}");
    assert_eq!(
        flag(&s, "new-checkout-flow")["targeting"],
        serde_json::json!({"fractional": [["on", 30], ["off", 70]]})
    );

    let (_, lines) = s.json(&["flags", "history", "new-checkout-flow"]);
    let actions: Vec<&str> = lines.iter().map(|l| l["change"]["action"].as_str().unwrap_or("")).collect();
    assert_eq!(actions.len(), 4, "{actions:?}");
    assert_eq!(actions[0], "cleared its targeting rules");
    assert_eq!(lines[3]["change"]["actor"], "dana");
    assert!(lines[3]["change"]["before"].get("targeting").is_some());
    assert!(lines[3]["change"]["after"]["targeting"].get("if").is_some());
}

#[test]
fn bad_targeting_rules_are_refused_and_the_file_is_untouched() {
    let s = Shipdeck::new();
    assert_eq!(s.sh(&["flags", "list"]).0, 0);
    let before = flags_file(&s);
    let target =
        |rule: &str, serve: &str| s.sh(&["flags", "target", "new-checkout-flow", "--rule", rule, "--serve", serve]);
    for (rule, serve, expect) in [
        ("email regex ^admin", "on", "flagd cannot evaluate regular expressions"),
        ("country like NL", "on", "unknown operator `like`"),
        ("version semver >= 2.x", "on", "not a semantic version"),
        ("version semver 2.0.0", "on", "needs a comparison"),
        ("age greater_than old", "on", "compares numbers"),
        ("country", "on", "ATTRIBUTE OPERATOR VALUE"),
        ("country equals NL", "gamma", "no variant `gamma`"),
    ] {
        let (code, out, err) = target(rule, serve);
        assert_eq!(code, 2, "{rule}: {out}{err}");
        assert!(err.contains(expect), "{rule}: {err}");
    }
    let (code, _, err) = s.sh(&["flags", "target", "new-checkout-flow", "--clear"]);
    assert_eq!(code, 2);
    assert!(err.contains("no targeting rules to clear"), "{err}");
    assert_eq!(flags_file(&s), before);
    let (_, lines) = s.json(&["flags", "history", "new-checkout-flow"]);
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn weights_split_users_over_any_variants_and_refuse_unknown_ones_and_zero_totals() {
    let s = Shipdeck::new();
    let file = s.data_dir().join("flags.json");
    assert_eq!(s.sh(&["flags", "list"]).0, 0);
    let three = flags_file(&s).replace(
        r#""variants": { "on": true, "off": false },
      "defaultVariant": "off",
      "targeting": { "fractional": [["on", 50], ["off", 50]] }"#,
        r#""variants": { "on": true, "off": false, "beta": true },
      "defaultVariant": "off",
      "targeting": { "fractional": [["on", 50], ["off", 50]] }"#,
    );
    assert_ne!(three, flags_file(&s), "search-ranking-v2 gets a third variant");
    std::fs::write(&file, &three).unwrap();

    for (args, expect) in [
        (vec!["on=20", "off=70", "gamma=10"], "no variant `gamma`"),
        (vec!["on=0", "off=0"], "add up to 0"),
        (vec!["on=20", "on=30"], "weighted twice"),
        (vec!["on=lots"], "write VARIANT=WEIGHT"),
        (vec!["on=-5"], "write VARIANT=WEIGHT"),
    ] {
        let mut full = vec!["flags", "weights", "search-ranking-v2"];
        full.extend(args.iter().copied());
        let (code, out, err) = s.sh(&full);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(flags_file(&s), three, "refusals leave the file untouched");

    let (code, out, err) = s.sh(&["flags", "weights", "search-ranking-v2", "on=20", "off=70", "beta=10"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("weighted on=20 off=70 beta=10"), "{out}");
    assert_eq!(
        flag(&s, "search-ranking-v2")["targeting"],
        serde_json::json!({"fractional": [["on", 20], ["off", 70], ["beta", 10]]})
    );
    let (_, lines) = s.json(&["flags", "preview", "search-ranking-v2", "--sample", "20000"]);
    let share = |v: &str| lines[0]["shares"][v].as_f64().unwrap_or(0.0);
    assert!((18.0..=22.0).contains(&share("on")) && (8.0..=12.0).contains(&share("beta")), "{}", lines[0]);
    let (_, lines) = s.json(&["flags", "history", "search-ranking-v2"]);
    assert_eq!(lines[0]["change"]["action"], "weighted on=20 off=70 beta=10");
}

#[test]
fn tags_are_added_shown_and_removed() {
    let s = Shipdeck::new();
    for tag in ["checkout", "q3-launch"] {
        let (code, _, err) = s.sh(&["flags", "tag", "new-checkout-flow", "add", tag]);
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(flag(&s, "new-checkout-flow")["metadata"]["tags"], "checkout,q3-launch", "a string flagd accepts");
    let (_, out, _) = s.sh(&["flags", "list"]);
    assert!(out.lines().any(|l| l.starts_with("new-checkout-flow") && l.ends_with("checkout, q3-launch")), "{out}");
    let (_, out, _) = s.sh(&["flags", "show", "new-checkout-flow"]);
    assert!(out.contains("tags: checkout, q3-launch"), "{out}");
    let (_, lines) = s.json(&["flags", "list"]);
    let row = lines.iter().find(|l| l["flag"]["key"] == "new-checkout-flow").unwrap();
    assert_eq!(row["tags"], serde_json::json!(["checkout", "q3-launch"]));

    let before = flags_file(&s);
    for (args, expect) in [
        (vec!["flags", "tag", "new-checkout-flow", "add", "checkout"], "already tagged"),
        (vec!["flags", "tag", "new-checkout-flow", "add", "two words"], "no spaces or commas"),
        (vec!["flags", "tag", "new-checkout-flow", "remove", "nope"], "has no tag `nope`"),
        (vec!["flags", "tag", "nope", "add", "x"], "no flag named `nope`"),
    ] {
        let (code, _, err) = s.sh(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(flags_file(&s), before);

    assert_eq!(s.sh(&["flags", "tag", "new-checkout-flow", "remove", "checkout"]).0, 0);
    assert_eq!(flag(&s, "new-checkout-flow")["metadata"]["tags"], "q3-launch");
    let (_, lines) = s.json(&["flags", "history", "new-checkout-flow"]);
    let actions: Vec<&str> = lines.iter().map(|l| l["change"]["action"].as_str().unwrap_or("")).collect();
    assert_eq!(actions, ["untagged checkout", "tagged q3-launch", "tagged checkout"]);
}

#[test]
fn a_flag_cannot_be_enabled_while_its_dependency_is_off_and_turning_a_dependency_off_names_its_dependents() {
    let s = Shipdeck::new();
    assert_eq!(s.sh(&["flags", "list"]).0, 0);
    // dark-mode is on, payments-kill-switch off: dark-mode cannot depend on it as things are.
    let before = flags_file(&s);
    let (code, _, err) = s.sh(&["flags", "depend", "dark-mode", "--on", "payments-kill-switch"]);
    assert_eq!(code, 2);
    assert!(err.contains("turn `payments-kill-switch` on"), "{err}");
    for (args, expect) in [
        (vec!["flags", "depend", "dark-mode", "--on", "dark-mode"], "cannot depend on itself"),
        (vec!["flags", "depend", "dark-mode", "--on", "nope"], "no flag named `nope`"),
        (vec!["flags", "depend", "dark-mode", "--remove", "saved-carts"], "does not depend on `saved-carts`"),
    ] {
        let (code, _, err) = s.sh(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(flags_file(&s), before);

    assert_eq!(s.sh(&["--yes", "flags", "disable", "dark-mode"]).0, 0);
    let (code, out, err) = s.sh(&["flags", "depend", "dark-mode", "--on", "payments-kill-switch"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("now depends on payments-kill-switch"), "{out}");
    assert_eq!(flag(&s, "dark-mode")["metadata"]["dependsOn"], "payments-kill-switch");
    let (_, out, _) = s.sh(&["flags", "show", "dark-mode"]);
    assert!(out.contains("depends on: payments-kill-switch"), "{out}");

    // Enabling it while the dependency is off is refused, naming the dependency.
    let before = flags_file(&s);
    let (code, _, err) = s.sh(&["flags", "enable", "dark-mode"]);
    assert_eq!(code, 2);
    assert!(err.contains("`dark-mode` depends on `payments-kill-switch`, which is off"), "{err}");
    assert_eq!(flags_file(&s), before);

    assert_eq!(s.sh(&["flags", "enable", "payments-kill-switch"]).0, 0);
    assert_eq!(s.sh(&["flags", "enable", "dark-mode"]).0, 0);

    // Turning the dependency off asks, naming its enabled dependents; with --yes they stay on.
    let before = flags_file(&s);
    let (code, _, err) = s.sh(&["flags", "disable", "payments-kill-switch"]);
    assert_eq!(code, 2);
    assert!(err.contains("(dark-mode depend on it and stay on); pass --yes"), "{err}");
    assert_eq!(flags_file(&s), before);
    let (code, out, err) = s.sh(&["--yes", "flags", "disable", "payments-kill-switch"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("turned off by alice (dark-mode depend on it and stay on)"), "{out}");
    assert_eq!(flag(&s, "dark-mode")["state"], "ENABLED");
    assert_eq!(flag(&s, "payments-kill-switch")["state"], "DISABLED");

    assert_eq!(s.sh(&["flags", "depend", "dark-mode", "--remove", "payments-kill-switch"]).0, 0);
    assert!(flag(&s, "dark-mode")["metadata"].get("dependsOn").is_none());
}

#[test]
fn a_flag_edit_goes_to_the_shipdeck_holding_the_data_dir_and_changes_nothing_when_none_answers() {
    let s = Shipdeck::new();
    assert_eq!(s.sh(&["flags", "list"]).0, 0);
    let before = flags_file(&s);
    // A lock held by a process that does not answer the control socket.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(s.data_dir().join("shipdeck.lock"))
        .unwrap();
    lock.lock().unwrap();
    let (code, _, err) = s.sh(&["flags", "tag", "dark-mode", "add", "ui"]);
    assert_eq!(code, 3);
    assert!(err.contains("in use by another shipdeck"), "{err}");
    assert_eq!(flags_file(&s), before);
    drop(lock);

    // A deploy holds the data dir and answers: the edit is made by it.
    use std::io::{BufRead, BufReader};
    let mut holder =
        s.cmd(&["deploy", "checkout", "1.5.0", "--env", "dev"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("step 2/7") => break,
            Some(Ok(_)) => {}
            _ => panic!("the deploy ended early"),
        }
    }
    let (code, out, err) = s.sh(&["flags", "tag", "dark-mode", "add", "ui"]);
    // While it runs, its pods' counters say what each variant of a flag they evaluate served.
    let served = poll_served(&s, "new-checkout");
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(served.values().sum::<u64>() > 0, "{served:?}");
    let (_, lines) = s.json(&["flags", "show", "new-checkout"]);
    assert!(lines[0]["served"].is_null(), "no pods once the holder is gone: {}", lines[0]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("done by the shipdeck that holds this data dir"), "{out}");
    assert!(
        flag(&s, "dark-mode")["metadata"]["tags"].as_str().unwrap_or("").contains("ui"),
        "{}",
        flag(&s, "dark-mode")
    );
}

/// `flags show KEY --json`'s served counts, once the pods have served some (deadline 30 s).
fn poll_served(s: &Shipdeck, key: &str) -> std::collections::BTreeMap<String, u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, lines) = s.json(&["flags", "show", key]);
        let served: std::collections::BTreeMap<String, u64> =
            serde_json::from_value(lines[0]["served"].clone()).unwrap_or_default();
        if served.values().sum::<u64>() > 0 || std::time::Instant::now() > deadline {
            return served;
        }
    }
}

/// An experiment on the demo's real pods: `new-checkout`'s `on` fails 10% more of checkout's
/// requests, so the experiment stops early finding harm, reports both variants, puts the flag
/// back and keeps the result.
#[test]
fn an_experiment_reports_real_per_variant_results_and_is_kept() {
    let s = Shipdeck::new();
    assert_eq!(s.sh(&["flags", "list"]).0, 0);
    let before = flag(&s, "new-checkout");
    let args = ["flags", "experiment", "new-checkout", "--app", "checkout", "--env", "dev", "--duration", "2m"];
    let (code, lines) = s.json(&[&args[..], &["--hypothesis", "no more failures"]].concat());
    assert_eq!(code, 0, "{lines:?}");
    let r = &lines.last().expect("a result")["result"];
    assert_eq!(r["verdict"], "fail", "{r}");
    assert!(r["conclusion"].as_str().unwrap_or("").starts_with("treatment does harm, stopped early"), "{r}");
    let rate = |i: usize| r["variants"][i]["error_rate"].as_f64().unwrap_or(0.0);
    assert_eq!(r["variants"][0]["variant"], "off");
    assert!(rate(1) > rate(0) + 0.03, "on fails more: {r}");
    assert_eq!(flag(&s, "new-checkout"), before, "the flag is back as it was");
    let (_, kept) = s.json(&["flags", "experiments", "new-checkout"]);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["result"]["hypothesis"], "no more failures");
}

#[test]
fn flags_can_live_in_a_file_outside_the_data_dir() {
    let s = Shipdeck::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("flags.json");
    std::fs::write(&file, include_str!("../src/flags/demo-flags.json")).unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) = s.sh(&["--flags", path, "--yes", "flags", "disable", "dark-mode"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(std::fs::read_to_string(&file).unwrap().contains("\"DISABLED\""));
    assert!(!s.data_dir().join("flags.json").exists(), "the data dir's own file is not made");
    let missing = elsewhere.path().join("nope.json");
    let (code, _, err) = s.sh(&["--flags", missing.to_str().unwrap(), "flags", "list"]);
    assert_eq!(code, 2);
    assert!(err.contains("does not exist; check --flags"), "{err}");
}

/// A kubeconfig whose one context, `kind-prod`, points at `server`.
fn kubeconfig(s: &Shipdeck, server: &str) -> std::path::PathBuf {
    let yaml = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: kind-prod\nclusters:\n- name: kind\n  cluster:\n    server: {server}\n\
         contexts:\n- name: kind-prod\n  context:\n    cluster: kind\n    user: me\nusers:\n- name: me\n  user:\n    token: t\n"
    );
    common::file(s.data_dir(), "kubeconfig.yaml", &yaml)
}

#[test]
fn flags_in_a_cluster_that_cannot_be_used_are_refused_plainly_and_nothing_is_written() {
    let s = Shipdeck::new();
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = kubeconfig(&s, &format!("http://127.0.0.1:{port}"));
    let run = |args: &[&str]| {
        let o = s.cmd(args).env("KUBECONFIG", &config).output().expect("run shipdeck");
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).to_string())
    };

    // A reference that names no FeatureFlag: bad input.
    for (bad, says) in [
        ("k8s:shop/flags", "`k8s:shop/flags`: --flags k8s:CONTEXT/NAMESPACE/NAME names a FeatureFlag resource"),
        ("k8s:kind-prod/Shop/flags", "namespace `Shop` is not a Kubernetes name"),
    ] {
        let (code, err) = run(&["--flags", bad, "flags", "list"]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains(says), "{bad}: {err}");
    }

    // A context the kubeconfig does not have, and an API server that is not there: exit 3.
    let (code, err) = run(&["--flags", "k8s:gke-prod/shop/flags", "flags", "list"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("FeatureFlag shop/flags: context gke-prod of the kubeconfig cannot be used")
            && err.contains("KUBECONFIG"),
        "{err}"
    );
    let (code, err) = run(&["--flags", "k8s:/shop/flags", "flags", "list"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("FeatureFlag shop/flags: cannot reach the Kubernetes API server to get featureflags flags"),
        "{err}"
    );

    // The same from a command that runs the engine, before anything starts.
    let (code, err) = run(&["--flags", "k8s:kind-prod/shop/flags", "deploy", "web", "1.1.0", "--env", "dev", "-y"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach the Kubernetes API server"), "{err}");
    assert!(!s.data_dir().join("flags.json").exists(), "no flag file is made in the data dir");
    assert!(!s.data_dir().join("shipdeck.db").exists(), "refused before the store was opened: no release");
}
