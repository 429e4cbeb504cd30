use super::*;
use serde_json::json;

fn evaluator(doc: Value) -> FlagEvaluator {
    FlagEvaluator::from_doc(&doc, "test", Arc::new(FixedClock(1_700_000_000))).unwrap()
}

fn ctx(v: Value) -> Context {
    v.as_object().map(Context::from).unwrap_or_default()
}

/// One flag `f` with string variants named as their values.
fn one_flag(variants: &[&str], default: Option<&str>, targeting: Value) -> FlagEvaluator {
    let variants: Map<String, Value> = variants.iter().map(|v| (v.to_string(), json!(v))).collect();
    evaluator(
        json!({"flags": {"f": {"state": "ENABLED", "variants": variants, "defaultVariant": default, "targeting": targeting}}}),
    )
}

fn variant(e: &FlagEvaluator, key: &str, c: Value) -> Option<String> {
    e.evaluate(key, &ctx(c)).variant.map(str::to_string)
}

/// The bucket computed independently: the `murmur3` crate's x86 32-bit hash, then
/// `(hash × total) >> 32`.
fn reference_bucket(key: &str, total: u64) -> u64 {
    let hash = murmur3::murmur3_32(&mut std::io::Cursor::new(key.as_bytes()), 0).unwrap();
    (u64::from(hash) * total) >> 32
}

#[test]
fn murmur3_matches_known_vectors_and_the_murmur3_crate() {
    assert_eq!(ops::murmur3_x86_32(b"", 0), 0);
    assert_eq!(ops::murmur3_x86_32(b"hello", 0), 0x248b_fa47);
    assert_eq!(ops::murmur3_x86_32(b"hello", 1), 0xbb4a_bcad);
    assert_eq!(ops::murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0), 0x2e4f_f723);
    for key in ["", "a", "ab", "abc", "abcd", "abcde", "new-checkout-flowuser-42", "ünïcödé"] {
        let theirs = murmur3::murmur3_32(&mut std::io::Cursor::new(key.as_bytes()), 0).unwrap();
        assert_eq!(ops::murmur3_x86_32(key.as_bytes(), 0), theirs, "{key}");
    }
}

#[test]
fn murmur3_over_parts_is_murmur3_over_their_concatenation() {
    for key in ["", "a", "abcdefg", "new-checkout-flowuser-42", "flagkeytargeting", "ünïcödé-x"] {
        let whole = ops::murmur3_x86_32(key.as_bytes(), 0);
        for split in 0..=key.len() {
            let (a, b) = key.as_bytes().split_at(split);
            assert_eq!(ops::murmur3_x86_32_concat(&[a, b], 0), whole, "{key} at {split}");
            for split2 in split..=key.len() {
                let (b1, b2) = b.split_at(split2 - split);
                assert_eq!(ops::murmur3_x86_32_concat(&[a, b1, b2], 0), whole, "{key} at {split}, {split2}");
            }
        }
    }
}

#[test]
fn fractional_buckets_by_flag_key_then_targeting_key() {
    let e = one_flag(&["on", "off"], Some("off"), json!({"fractional": [["on", 25], ["off", 75]]}));
    for user in ["user-1", "user-2", "user-3", "alice", "bob", "carol", "dave", "a-much-longer-targeting-key"] {
        let expected = if reference_bucket(&format!("f{user}"), 100) < 25 { "on" } else { "off" };
        let r = e.evaluate("f", &ctx(json!({"targetingKey": user})));
        assert_eq!(r.variant, Some(expected), "{user}");
        assert_eq!(r.reason, Reason::TargetingMatch);
    }
}

#[test]
fn fractional_with_uneven_weights_uses_the_total_weight() {
    // Weights 1/2/4: buckets 0 → a, 1–2 → b, 3–6 → c of 7.
    let e =
        one_flag(&["a", "b", "c"], Some("a"), json!({"fractional": [{"var": "email"}, ["a", 1], ["b", 2], ["c", 4]]}));
    for email in ["x@y.z", "foo@bar.com", "ross@faas.com", "monica@faas.com", "joey@faas.com"] {
        let at = reference_bucket(email, 7);
        let expected = match at {
            0 => "a",
            1 | 2 => "b",
            _ => "c",
        };
        assert_eq!(variant(&e, "f", json!({"email": email})).as_deref(), Some(expected), "{email}: bucket {at}");
    }
}

#[test]
fn fractional_matches_flagd_conformance_vectors() {
    // flagd-testbed evaluator/flags/testkit-flags.json, @fractional-v2 examples.
    let suits = ["clubs", "diamonds", "hearts", "spades", "wild"];
    let by_name = |rule: Value| one_flag(&suits, Some("wild"), rule);
    // Under the testbed's flag key: the bucketing value starts with it.
    let doc = json!({"flags": {"fractional-flag": {"state": "ENABLED",
        "variants": {"clubs": "clubs", "diamonds": "diamonds", "hearts": "hearts", "spades": "spades", "wild": "wild"},
        "defaultVariant": "wild",
        "targeting": {"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]},
            ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]}}}});
    let e = evaluator(doc);
    for (name, expected) in
        [("jack", "hearts"), ("queen", "spades"), ("ten", "clubs"), ("nine", "diamonds"), ("3", "clubs")]
    {
        assert_eq!(
            variant(&e, "fractional-flag", json!({"user": {"name": name}})).as_deref(),
            Some(expected),
            "{name}"
        );
    }
    let shared = by_name(json!({"fractional": [{"cat": ["shared-seed", {"var": "user.name"}]},
        ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]}));
    for (name, expected) in [("seven", "hearts"), ("eight", "diamonds"), ("nine", "clubs"), ("two", "spades")] {
        assert_eq!(variant(&shared, "f", json!({"user": {"name": name}})).as_deref(), Some(expected), "{name}");
    }
    let edge = one_flag(
        &["lower", "upper"],
        Some("lower"),
        json!({"fractional": [{"var": "targetingKey"}, ["lower", 50], ["upper", 50]]}),
    );
    for (key, expected) in
        [("ejOoVL", "lower"), ("bY9fO-", "lower"), ("SI7p-", "lower"), ("6LvT0", "upper"), ("ceQdGm", "upper")]
    {
        assert_eq!(variant(&edge, "f", json!({"targetingKey": key})).as_deref(), Some(expected), "{key}");
    }
    let shorthand = evaluator(json!({"flags": {"fractional-flag-shorthand": {"state": "ENABLED",
        "variants": {"heads": "heads", "tails": "tails", "draw": "draw"}, "defaultVariant": "draw",
        "targeting": {"fractional": [["heads"], ["tails", 1]]}}}}));
    for (key, expected) in [("jon@company.com", "heads"), ("jane@company.com", "tails")] {
        assert_eq!(
            variant(&shorthand, "fractional-flag-shorthand", json!({"targetingKey": key})).as_deref(),
            Some(expected)
        );
    }
}

#[test]
fn fractional_matches_flagds_header_color_examples() {
    // flagd core fractional_test.go (as mirrored in datalogic-rs's flagd suite).
    let doc = json!({"flags": {"headerColor": {"state": "ENABLED",
        "variants": {"red": "#FF0000", "blue": "#0000FF", "green": "#00FF00", "yellow": "#FFFF00"},
        "defaultVariant": "red",
        "targeting": {"if": [{"$ref": "emailWithFaas"},
            {"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]},
                ["red", 25], ["blue", 25], ["green", 25], ["yellow", 25]]}, null]}}},
        "$evaluators": {"emailWithFaas": {"in": ["@faas.com", {"var": ["email"]}]}}});
    let e = evaluator(doc);
    for (email, expected) in [
        ("rachel@faas.com", "blue"),
        ("monica@faas.com", "yellow"),
        ("joey@faas.com", "red"),
        ("ross@faas.com", "blue"),
    ] {
        assert_eq!(variant(&e, "headerColor", json!({"email": email})).as_deref(), Some(expected), "{email}");
    }
    let r = e.evaluate("headerColor", &ctx(json!({"email": "x@example.com"})));
    assert_eq!((r.variant, r.reason), (Some("red"), Reason::Default));
}

#[test]
fn fractional_edge_cases_follow_flagd() {
    // A single bucket always wins (testbed fractional-single-entry-flag).
    let single = one_flag(&["single", "fallback"], Some("fallback"), json!({"fractional": [["single", 1]]}));
    assert_eq!(variant(&single, "f", json!({"targetingKey": "some-targeting-key"})).as_deref(), Some("single"));
    // A null bucketing value falls back to flagKey + targetingKey.
    let e =
        one_flag(&["red", "blue"], Some("red"), json!({"fractional": [{"var": "email"}, ["red", 50], ["blue", 50]]}));
    let expected = if reference_bucket("fuser-9", 100) < 50 { "red" } else { "blue" };
    assert_eq!(variant(&e, "f", json!({"targetingKey": "user-9"})).as_deref(), Some(expected));
    // No bucketing value and no targeting key: the default variant, reason DEFAULT.
    let r = e.evaluate("f", &ctx(json!({})));
    assert_eq!((r.variant, r.reason), (Some("red"), Reason::Default));
    // An empty targeting key is a string: hashed as the flag key alone (flagd's Go evaluator).
    let expected = if reference_bucket("f", 100) < 50 { "red" } else { "blue" };
    assert_eq!(variant(&e, "f", json!({"targetingKey": ""})).as_deref(), Some(expected));
    // All-zero weights: default. Negative weights count as 0.
    let zero = one_flag(
        &["one", "two", "fallback"],
        Some("fallback"),
        json!({"fractional": [{"var": "targetingKey"}, ["one", 0], ["two", 0]]}),
    );
    let r = zero.evaluate("f", &ctx(json!({"targetingKey": "any-user"})));
    assert_eq!((r.variant, r.reason), (Some("fallback"), Reason::Default));
    let negative = one_flag(
        &["one", "two", "fallback"],
        Some("fallback"),
        json!({"fractional": [{"var": "targetingKey"}, ["one", -50], ["two", 100]]}),
    );
    assert_eq!(variant(&negative, "f", json!({"targetingKey": "any-user"})).as_deref(), Some("two"));
    // Non-integer weights are refused by flagd: default.
    let fraction = one_flag(&["one", "two"], Some("one"), json!({"fractional": [["one", 0.5], ["two", 1]]}));
    assert_eq!(fraction.evaluate("f", &ctx(json!({"targetingKey": "u"}))).reason, Reason::Default);
    // Boolean buckets work as a condition (testbed fractional-as-condition-flag).
    let cond = one_flag(
        &["big", "small"],
        Some("small"),
        json!({"if": [{"fractional": [[false, 0], [true, 100]]}, "big", "small"]}),
    );
    assert_eq!(variant(&cond, "f", json!({"targetingKey": "some-targeting-key"})).as_deref(), Some("big"));
    // Nested expressions as variant names (testbed fractional-nested-if-flag).
    let nested = one_flag(
        &["premium", "standard", "fallback"],
        Some("fallback"),
        json!({"fractional": [{"var": "targetingKey"},
        [{"if": [{"==": [{"var": "tier"}, "premium"]}, "premium", "standard"]}, 50], ["standard", 50]]}),
    );
    assert_eq!(
        variant(&nested, "f", json!({"targetingKey": "jon@company.com", "tier": "premium"})).as_deref(),
        Some("premium")
    );
    assert_eq!(variant(&nested, "f", json!({"targetingKey": "user1", "tier": "premium"})).as_deref(), Some("standard"));
}

#[test]
fn fractional_splits_100_000_keys_25_75_within_one_percent() {
    let e = one_flag(&["on", "off"], Some("off"), json!({"fractional": [["on", 25], ["off", 75]]}));
    let n = 100_000;
    let on = (0..n)
        .filter(|i| e.evaluate("f", &ctx(json!({"targetingKey": format!("user-{i}")}))).variant == Some("on"))
        .count();
    let share = on as f64 / n as f64;
    assert!((share - 0.25).abs() < 0.01, "on share {share}");
}

#[test]
fn sem_ver_compares_as_flagd() {
    let e = one_flag(
        &["equal", "greater", "lesser", "none"],
        Some("none"),
        json!({"if": [
        {"sem_ver": [{"var": "version"}, "=", "2.0.0"]}, "equal",
        {"if": [{"sem_ver": [{"var": "version"}, ">", "2.0.0"]}, "greater",
            {"if": [{"sem_ver": [{"var": "version"}, "<", "2.0.0"]}, "lesser", "none"]}]}]}),
    );
    for (version, expected) in [
        ("2.0.0", "equal"),
        ("2.1.0", "greater"),
        ("1.9.0", "lesser"),
        ("2.0.0-alpha", "lesser"),
        ("v2.0.0+build", "equal"),
        ("2", "equal"),
        ("10.0.0", "greater"),
    ] {
        assert_eq!(variant(&e, "f", json!({"version": version})).as_deref(), Some(expected), "{version}");
    }
    // 2.0.0.0 is not a version: the rule falls back to the default variant.
    let r = e.evaluate("f", &ctx(json!({"version": "2.0.0.0"})));
    assert_eq!((r.variant, r.reason), (Some("none"), Reason::Default));
    let e = one_flag(
        &["minor", "major", "none"],
        Some("none"),
        json!({"if": [
        {"sem_ver": [{"var": "version"}, "~", "3.0.0"]}, "minor",
        {"if": [{"sem_ver": [{"var": "version"}, "^", "3.0.0"]}, "major", "none"]}]}),
    );
    for (version, expected) in [("3.0.1", "minor"), ("3.1.0", "major"), ("4.0.0", "none")] {
        assert_eq!(variant(&e, "f", json!({"version": version})).as_deref(), Some(expected), "{version}");
    }
    // The documented example: version >= 1.0.0 → red, else green.
    let doc = one_flag(
        &["red", "blue", "green"],
        Some("blue"),
        json!({"if": [{"sem_ver": [{"var": "version"}, ">=", "1.0.0"]}, "red", "green"]}),
    );
    assert_eq!(variant(&doc, "f", json!({"version": "1.0.1"})).as_deref(), Some("red"));
    assert_eq!(variant(&doc, "f", json!({"version": "0.1.0"})).as_deref(), Some("green"));
    // Invalid operator, a number, or a wrong argument count: default.
    for rule in [
        json!({"if": [{"sem_ver": [{"var": "version"}, "===", "1.0.0"]}, "red", "green"]}),
        json!({"if": [{"sem_ver": [{"var": "version"}, "="]}, "red", "green"]}),
    ] {
        let e = one_flag(&["red", "green", "blue"], Some("blue"), rule);
        assert_eq!(e.evaluate("f", &ctx(json!({"version": "1.0.0"}))).reason, Reason::Default);
    }
    assert_eq!(doc.evaluate("f", &ctx(json!({"version": 1}))).reason, Reason::Default);
    let pre = |a, b| ops::Version::parse(a).unwrap().cmp(&ops::Version::parse(b).unwrap());
    assert_eq!(pre("1.0.0-alpha", "1.0.0-alpha.1"), std::cmp::Ordering::Less);
    assert_eq!(pre("1.0.0-alpha.1", "1.0.0-alpha.beta"), std::cmp::Ordering::Less);
    assert_eq!(pre("1.0.0-beta.2", "1.0.0-beta.11"), std::cmp::Ordering::Less);
    assert_eq!(pre("1.0.0-rc.1", "1.0.0"), std::cmp::Ordering::Less);
    assert!(ops::Version::parse("01.0.0").is_none());
    assert!(ops::Version::parse("1.2-beta").is_none());
    assert!(ops::Version::parse("V1.0.0").is_none());
}

#[test]
fn starts_with_and_ends_with_as_flagd() {
    let e = one_flag(
        &["prefix", "postfix", "none"],
        Some("none"),
        json!({"if": [
        {"starts_with": [{"var": "id"}, "abc"]}, "prefix",
        {"if": [{"ends_with": [{"var": "id"}, "xyz"]}, "postfix", "none"]}]}),
    );
    for (id, expected) in [("abcdef", "prefix"), ("uvwxyz", "postfix"), ("abcxyz", "prefix"), ("lmnopq", "none")] {
        assert_eq!(variant(&e, "f", json!({"id": id})).as_deref(), Some(expected), "{id}");
    }
    // Documented examples.
    let doc = one_flag(
        &["red", "blue", "green"],
        Some("blue"),
        json!({"if": [{"starts_with": [{"var": "email"}, "user@faas"]}, "red", "green"]}),
    );
    assert_eq!(variant(&doc, "f", json!({"email": "user@faas.com"})).as_deref(), Some("red"));
    assert_eq!(variant(&doc, "f", json!({"email": "foo@bar.com"})).as_deref(), Some("green"));
    // A number, or one argument: the default variant, reason DEFAULT.
    let r = e.evaluate("f", &ctx(json!({"id": 123})));
    assert_eq!((r.variant, r.reason), (Some("none"), Reason::Default));
    let wrong = one_flag(
        &["true", "false", "fallback"],
        Some("fallback"),
        json!({"if": [{"ends_with": ["xyz"]}, "true", "false"]}),
    );
    let r = wrong.evaluate("f", &ctx(json!({})));
    assert_eq!((r.variant, r.reason), (Some("fallback"), Reason::Default));
}

#[test]
fn flagd_context_values_come_from_the_flag_and_the_clock() {
    let e = one_flag(
        &["new", "old"],
        Some("old"),
        json!({"if": [
        {"and": [{"==": [{"var": "$flagd.flagKey"}, "f"]}, {">=": [{"var": "$flagd.timestamp"}, 1_700_000_000]}]}, "new", "old"]}),
    );
    assert_eq!(variant(&e, "f", json!({})).as_deref(), Some("new"));
    // A caller's own `$flagd` does not override flagd's.
    assert_eq!(variant(&e, "f", json!({"$flagd": {"flagKey": "other", "timestamp": 0}})).as_deref(), Some("new"));
    let earlier = FlagEvaluator::from_doc(
        &json!({"flags": {"f": {"state": "ENABLED", "variants": {"new": "new", "old": "old"}, "defaultVariant": "old",
            "targeting": {"if": [{">=": [{"var": "$flagd.timestamp"}, 1_700_000_000]}, "new", "old"]}}}}),
        "test",
        Arc::new(FixedClock(1_600_000_000)),
    )
    .unwrap();
    assert_eq!(variant(&earlier, "f", json!({})).as_deref(), Some("old"));
}

#[test]
fn reasons_static_targeting_match_default_disabled_and_errors() {
    let e = evaluator(json!({"flags": {
        "static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
        "empty-targeting": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {}},
        "targeted": {"state": "ENABLED", "variants": {"miss": "miss", "hit": "hit"}, "defaultVariant": "miss",
            "targeting": {"if": [{"==": [{"var": "targetingKey"}, "5c3d8535-f81a-4478-a6d3-afaa4d51199e"]}, "hit", null]}},
        "disabled": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
        "unknown-variant": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a", "targeting": {"if": [true, "c", "a"]}},
        "number-result": {"state": "ENABLED", "variants": {"1": 1, "2": 2}, "defaultVariant": "1", "targeting": {"+": [1, 1]}},
        "bool-shorthand": {"state": "ENABLED", "variants": {"true": true, "false": false}, "defaultVariant": "false",
            "targeting": {"ends_with": [{"var": "email"}, "@example.com"]}},
        "no-default": {"state": "ENABLED", "variants": {"normal": "CFO", "special": "CEO"},
            "targeting": {"if": [{"==": ["jobs@orange.com", {"var": ["email"]}]}, "special", null]}},
        "no-default-static": {"state": "ENABLED", "variants": {"small": 10, "big": 1000}}
    }}));
    let r = e.evaluate("static", &Context::new());
    assert_eq!((r.variant, r.value, r.reason, r.error), (Some("on"), Some(&json!(true)), Reason::Static, None));
    assert_eq!(e.evaluate("empty-targeting", &Context::new()).reason, Reason::Static);
    let hit = e.evaluate("targeted", &ctx(json!({"targetingKey": "5c3d8535-f81a-4478-a6d3-afaa4d51199e"})));
    assert_eq!((hit.variant, hit.reason), (Some("hit"), Reason::TargetingMatch));
    let miss = e.evaluate("targeted", &ctx(json!({"targetingKey": "f20bd32d-703b-48b6-bc8e-79d53c85134a"})));
    assert_eq!((miss.variant, miss.reason), (Some("miss"), Reason::Default));
    let disabled = e.evaluate("disabled", &Context::new());
    assert_eq!(
        (disabled.variant, disabled.value, disabled.reason, disabled.error),
        (None, None, Reason::Disabled, None)
    );
    let missing = e.evaluate("missing-flag", &Context::new());
    assert_eq!((missing.reason, missing.error), (Reason::Error, Some(ErrorCode::FlagNotFound)));
    let bad = e.evaluate("unknown-variant", &Context::new());
    assert_eq!((bad.variant, bad.reason, bad.error), (None, Reason::Error, Some(ErrorCode::ParseError)));
    assert_eq!(e.evaluate("number-result", &Context::new()).error, Some(ErrorCode::ParseError));
    let yes = e.evaluate("bool-shorthand", &ctx(json!({"email": "noreply@example.com"})));
    assert_eq!((yes.variant, yes.value, yes.reason), (Some("true"), Some(&json!(true)), Reason::TargetingMatch));
    assert_eq!(e.evaluate("bool-shorthand", &ctx(json!({"email": "a@b.c"}))).variant, Some("false"));
    let fallback = e.evaluate("no-default", &ctx(json!({"email": "x@y.z"})));
    assert_eq!((fallback.variant, fallback.value, fallback.reason), (None, None, Reason::Default));
    assert_eq!(e.evaluate("no-default", &ctx(json!({"email": "jobs@orange.com"}))).variant, Some("special"));
    let static_no_default = e.evaluate("no-default-static", &Context::new());
    assert_eq!((static_no_default.variant, static_no_default.reason), (None, Reason::Default));
    let mismatch = e.evaluate_as("static", &Context::new(), FlagType::String);
    assert_eq!((mismatch.reason, mismatch.error), (Reason::Error, Some(ErrorCode::TypeMismatch)));
    assert_eq!(e.evaluate_as("static", &Context::new(), FlagType::Boolean).reason, Reason::Static);
}

#[test]
fn shared_evaluators_are_inlined_and_a_ref_to_nothing_is_refused_with_its_path() {
    let e = evaluator(
        json!({"flags": {"f": {"state": "ENABLED", "variants": {"hi": "hi", "bye": "bye"}, "defaultVariant": "bye",
        "targeting": {"if": [{"$ref": "is_ballmer"}, "hi", "bye"]}}},
        "$evaluators": {"is_ballmer": {"==": ["ballmer@macrosoft.com", {"var": ["email"]}]}}}),
    );
    assert_eq!(variant(&e, "f", json!({"email": "ballmer@macrosoft.com"})).as_deref(), Some("hi"));
    assert_eq!(variant(&e, "f", json!({"email": "x@y.z"})).as_deref(), Some("bye"));
    let doc = json!({"flags": {"f": {"state": "ENABLED", "variants": {"hit": "hit", "miss": "miss"}, "defaultVariant": "miss",
        "targeting": {"if": [{"$ref": "nonexistent_evaluator"}, "hit", "miss"]}}}});
    let err = FlagEvaluator::from_doc(&doc, "x.json", Arc::new(SystemClock)).unwrap_err().to_string();
    assert!(err.contains("flags.f.targeting.if[0]") && err.contains("nonexistent_evaluator"), "{err}");
    let err = FlagSet::parse(&doc.to_string(), "x.json").unwrap_err().to_string();
    assert!(err.contains("nonexistent_evaluator"), "{err}");
}

#[test]
fn broken_targeting_and_bad_variants_are_refused_on_load() {
    let broken = json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
        "targeting": {"no_such_operator": [1]}}}});
    let err = FlagSet::parse(&broken.to_string(), "x.json").unwrap_err().to_string();
    assert!(err.contains("flags.f.targeting"), "{err}");
    let unknown_default = json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}}});
    assert!(FlagSet::parse(&unknown_default.to_string(), "x.json").unwrap_err().to_string().contains("defaultVariant"));
    let demo = FlagSet::parse(super::super::DEMO_FLAGS, "demo").unwrap();
    let e = FlagEvaluator::new(&demo).unwrap();
    assert_eq!(e.evaluate("payments-kill-switch", &Context::new()).reason, Reason::Disabled);
    assert_eq!(e.evaluate("dark-mode", &Context::new()).reason, Reason::Static);
}
