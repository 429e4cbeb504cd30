//! Flags in the pods, over real loopback HTTP: the effect of a variant reaches only the requests
//! served that variant, targeting reads request headers, both the pods and the router count
//! per variant, and a new evaluator applies to the next request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::cluster::local::flags::CODE_DEFAULT;
use crate::flags::eval::Context;
use crate::flags::{FlagEvaluator, FlagSet};
use crate::model::FlagEffect;

const FLAG: &str = "new-checkout";
const HEADER: &str = "x-shipdeck-flag-new-checkout";

fn evaluator(doc: serde_json::Value) -> Arc<FlagEvaluator> {
    let set = FlagSet::parse(&doc.to_string(), "test flags").expect("valid flags");
    Arc::new(FlagEvaluator::new(&set).expect("compiles"))
}

/// `new-checkout`: `on` for the `pro` plan, `off` for everyone else.
fn pro_only() -> Arc<FlagEvaluator> {
    evaluator(serde_json::json!({"flags": {FLAG: {
        "state": "ENABLED",
        "variants": {"on": true, "off": false},
        "defaultVariant": "off",
        "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", "off"]}
    }}}))
}

/// `new-checkout` always `variant` (or DISABLED).
fn static_flag(variant: &str, enabled: bool) -> Arc<FlagEvaluator> {
    evaluator(serde_json::json!({"flags": {FLAG: {
        "state": if enabled { "ENABLED" } else { "DISABLED" },
        "variants": {"on": true, "off": false},
        "defaultVariant": variant,
    }}}))
}

fn effect(variant: &str, error_rate: Option<f64>, extra_latency_ms: f64) -> FlagEffect {
    FlagEffect { flag: FLAG.into(), variant: variant.into(), error_rate, extra_latency_ms }
}

/// One checkout pod (no simulated load) whose version declares `effects`; its entry URL.
async fn cluster_with(effects: Vec<FlagEffect>) -> (Arc<LocalCluster>, String) {
    let mut v = profile("1.0.0");
    v.flag_effects = effects;
    let c = start_one(app("checkout", vec![v], 1, 0.0)).await;
    let url = ready(&c, "1.0.0", 1).await.entry_url.expect("entry");
    (c, url)
}

struct Answer {
    status: u16,
    variant: String,
    took: Duration,
}

async fn call(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = client.get(format!("{url}/api/v1/users"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let start = Instant::now();
    let resp = req.send().await.expect("router answers");
    let took = start.elapsed();
    let variant = resp.headers().get(HEADER).and_then(|v| v.to_str().ok()).unwrap_or("(none)").to_string();
    Answer { status: resp.status().as_u16(), variant, took }
}

#[tokio::test]
async fn a_variant_s_errors_reach_only_the_requests_served_that_variant_targeted_by_header() {
    let (c, url) = cluster_with(vec![effect("on", Some(1.0), 0.0)]).await;
    c.set_flags(pro_only());
    let client = http();
    for i in 0..20 {
        let user = format!("user-{i}");
        let pro = call(&client, &url, &[("x-user-id", &user), ("x-shipdeck-ctx-plan", "pro")]).await;
        assert_eq!((pro.status, pro.variant.as_str()), (500, "on"));
        let free = call(&client, &url, &[("x-user-id", &user), ("x-shipdeck-ctx-plan", "free")]).await;
        assert_eq!((free.status, free.variant.as_str()), (200, "off"));
    }
    // No plan header: the rule's `var` is null, so `off`.
    assert_eq!(call(&client, &url, &[]).await.variant, "off");
}

#[tokio::test]
async fn a_fractional_rollout_buckets_by_the_user_id_header_as_the_evaluator_does() {
    let (c, url) = cluster_with(vec![effect("on", Some(1.0), 0.0)]).await;
    let flags = evaluator(serde_json::json!({"flags": {FLAG: {
        "state": "ENABLED",
        "variants": {"on": true, "off": false},
        "defaultVariant": "off",
        "targeting": {"fractional": [["on", 50], ["off", 50]]}
    }}}));
    c.set_flags(flags.clone());
    let client = http();
    let mut on = 0;
    for i in 0..60 {
        let user = format!("user-{i}");
        let ctx: Context = [("targetingKey", serde_json::Value::from(user.clone()))].into_iter().collect();
        let expected = flags.evaluate(FLAG, &ctx).variant.expect("a variant").to_string();
        let a = call(&client, &url, &[("x-user-id", &user)]).await;
        assert_eq!(a.variant, expected, "{user}");
        assert_eq!(a.status, if expected == "on" { 500 } else { 200 }, "{user}");
        on += usize::from(expected == "on");
    }
    assert!((10..=50).contains(&on), "{on} of 60 users on");
}

#[tokio::test]
async fn a_variant_s_latency_is_added_only_to_its_requests() {
    let (c, url) = cluster_with(vec![effect("on", None, 150.0)]).await;
    c.set_flags(pro_only());
    let client = http();
    for _ in 0..3 {
        let slow = call(&client, &url, &[("x-shipdeck-ctx-plan", "pro")]).await;
        assert_eq!((slow.status, slow.variant.as_str()), (200, "on"));
        assert!(slow.took >= Duration::from_millis(150), "{:?}", slow.took);
        let fast = call(&client, &url, &[("x-shipdeck-ctx-plan", "free")]).await;
        assert_eq!((fast.status, fast.variant.as_str()), (200, "off"));
        assert!(fast.took < Duration::from_millis(140), "{:?}", fast.took);
    }
}

#[tokio::test]
async fn evaluations_are_counted_per_variant_by_the_pod_and_the_router() {
    let (c, url) = cluster_with(vec![effect("on", Some(1.0), 0.0)]).await;
    c.set_flags(pro_only());
    let client = http();
    for plan in ["pro", "pro", "pro", "free", "free", "free", "free", "free"] {
        call(&client, &url, &[("x-shipdeck-ctx-plan", plan)]).await;
    }
    let t = target();
    let text = c.probe(&t, "1.0.0", &get("/metrics")).await.expect("probe").body;
    assert!(text.contains("# TYPE flag_evaluations_total counter"), "{text}");
    let line = |variant: &str| {
        format!(
            r#"flag_evaluations_total{{app="checkout",env="staging",version="1.0.0",flag="new-checkout",variant="{variant}"}}"#
        )
    };
    assert!(text.contains(&format!("{} 3\n", line("on"))), "{text}");
    assert!(text.contains(&format!("{} 5\n", line("off"))), "{text}");

    let m = c.flag_metrics(&t, FLAG, Duration::from_secs(30)).expect("flag metrics");
    assert_eq!(m.keys().collect::<Vec<_>>(), ["off", "on"]);
    assert_eq!((m["on"].requests, m["on"].errors), (3, 3));
    assert_eq!((m["off"].requests, m["off"].errors), (5, 0));
    assert!(m["off"].p50_ms.is_some());
    assert!(c.flag_metrics(&t, "nothing", Duration::from_secs(30)).expect("flag metrics").is_empty());
    assert!(c.flag_metrics(&Target::new("prod", "nope"), FLAG, Duration::from_secs(30)).is_err());
}

#[tokio::test]
async fn a_new_evaluator_applies_to_the_next_request() {
    let (c, url) = cluster_with(vec![effect("on", Some(1.0), 0.0)]).await;
    let client = http();
    // Before any flags: the application's code default, no effect.
    let a = call(&client, &url, &[]).await;
    assert_eq!((a.status, a.variant.as_str()), (200, CODE_DEFAULT));
    c.set_flags(static_flag("on", true));
    let a = call(&client, &url, &[]).await;
    assert_eq!((a.status, a.variant.as_str()), (500, "on"));
    c.set_flags(static_flag("on", false));
    let a = call(&client, &url, &[]).await;
    assert_eq!((a.status, a.variant.as_str()), (200, CODE_DEFAULT));
    c.set_flags(static_flag("off", true));
    let a = call(&client, &url, &[]).await;
    assert_eq!((a.status, a.variant.as_str()), (200, "off"));
}

#[tokio::test]
async fn versions_without_effects_neither_evaluate_nor_label() {
    let (c, url) = cluster_with(Vec::new()).await;
    c.set_flags(static_flag("on", true));
    let a = call(&http(), &url, &[]).await;
    assert_eq!((a.status, a.variant.as_str()), (200, "(none)"));
    let text = c.probe(&target(), "1.0.0", &get("/metrics")).await.expect("probe").body;
    assert!(!text.contains("flag_evaluations_total"), "{text}");
    assert!(c.flag_metrics(&target(), FLAG, Duration::from_secs(30)).expect("flag metrics").is_empty());
}
