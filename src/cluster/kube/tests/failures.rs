//! API failures: each said in plain words, tried again only where that is safe.

use serde_json::json;

use super::*;
use crate::cluster::{Cluster, ClusterError, Routing};

#[tokio::test]
async fn forbidden_names_the_verb_the_resource_and_the_namespace() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("PATCH", &deployments("web-1-1-0")).await.reply(
            403,
            status(403, "Forbidden", "deployments.apps \"web-1-1-0\" is forbidden: User \"ci\" cannot patch resource"),
        );
    };
    let (result, ()) = tokio::join!(c.scale(target(), "1.1.0", 2), server);
    let err = result.unwrap_err();
    assert!(matches!(err, ClusterError::Kubernetes { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("forbidden: shipdeck may not patch deployments in namespace shop — grant the Role in the README"),
        "{text}"
    );
    assert!(text.contains("User \"ci\" cannot patch"), "Kubernetes' own words are kept: {text}");
}

#[tokio::test]
async fn a_missing_base_deployment_says_what_it_is_for_and_which_key_names_it() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("PATCH", &deployments("web-1-1-0")).await.reply(404, status(404, "NotFound", ""));
        api.expect("GET", &deployments("web")).await.reply(404, status(404, "NotFound", ""));
    };
    let (result, ()) = tokio::join!(c.scale(target(), "1.1.0", 2), server);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("Deployment web not found in namespace shop"), "{text}");
    assert!(text.contains("[apps.kubernetes] deployment"), "{text}");
}

#[tokio::test]
async fn a_missing_service_is_named() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect("PATCH", &services("web")).await.reply(404, status(404, "NotFound", "services \"web\" not found"));
    };
    let routing = Routing::all_to("1.0.0");
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("Service web not found in namespace shop") && text.contains("[apps.kubernetes] service"));
}

#[tokio::test]
async fn a_route_changed_meanwhile_is_read_again_and_written_once_more() {
    let (c, mut api) = cluster(true);
    let routing = Routing::split("1.0.0", "1.1.0", 25);
    let server = async {
        let rules = json!([{"backendRefs": [{"name": "web", "port": 80}]}]);
        api.expect("GET", &routes("web")).await.reply(200, route("10", rules.clone(), None));
        let first = api.expect("PATCH", &routes("web")).await;
        assert_eq!(first.body["metadata"]["resourceVersion"], "10");
        first.reply(409, status(409, "Conflict", "the object has been modified; please apply your changes"));
        api.expect("GET", &routes("web")).await.reply(200, route("11", rules, None));
        let second = api.expect("PATCH", &routes("web")).await;
        assert_eq!(second.body["metadata"]["resourceVersion"], "11", "written against what was read again");
        second.reply(200, route("12", json!([]), None));
    };
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    result.unwrap();
}

#[tokio::test]
async fn a_second_conflict_is_reported_not_retried_forever() {
    let (c, mut api) = cluster(true);
    let routing = Routing::all_to("1.1.0");
    let server = async {
        for rv in ["10", "11"] {
            let rules = json!([{"backendRefs": [{"name": "web", "port": 80}]}]);
            api.expect("GET", &routes("web")).await.reply(200, route(rv, rules, None));
            api.expect("PATCH", &routes("web")).await.reply(409, status(409, "Conflict", "modified"));
        }
    };
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("conflict: HTTPRoute web was changed by someone else"), "{text}");
}

#[tokio::test]
async fn a_route_with_several_rules_of_its_own_is_refused_untouched() {
    let (c, mut api) = cluster(true);
    let server = async {
        let rules =
            json!([{"backendRefs": [{"name": "web", "port": 80}]}, {"backendRefs": [{"name": "static", "port": 80}]}]);
        api.expect("GET", &routes("web")).await.reply(200, route("3", rules, None));
    };
    let routing = Routing::all_to("1.1.0");
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("HTTPRoute web has 2 rules"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_busy_api_server_is_tried_again_with_backoff() {
    let (c, mut api) = cluster(false);
    let server = async {
        let started = tokio::time::Instant::now();
        for code in [503, 429] {
            api.expect("PATCH", &deployments("web-1-0-0"))
                .await
                .reply(code, status(code, "ServiceUnavailable", "busy"));
        }
        api.expect("PATCH", &deployments("web-1-0-0")).await.reply(200, json!({"metadata": {}}));
        // 200 ms, then 400 ms.
        assert_eq!(started.elapsed(), std::time::Duration::from_millis(600));
    };
    let (result, ()) = tokio::join!(c.scale(target(), "1.0.0", 3), server);
    result.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_api_server_that_never_answers_times_out_in_plain_words() {
    let (c, mut api) = cluster(false);
    let server = async {
        for _ in 0..3 {
            let x = api.expect("PATCH", &services("web")).await;
            x.hold(&mut api);
        }
    };
    let routing = Routing::all_to("1.0.0");
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    let err = result.unwrap_err();
    assert!(matches!(err, ClusterError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("did not answer patch services web within 10s"), "{err}");
}

#[tokio::test]
async fn a_lost_connection_is_unreachable() {
    let (c, api) = cluster(false);
    drop(api);
    let err = c.scale(target(), "1.0.0", 1).await.unwrap_err();
    assert!(matches!(err, ClusterError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot reach the Kubernetes API server to patch deployments web-1-0-0"), "{err}");
}
