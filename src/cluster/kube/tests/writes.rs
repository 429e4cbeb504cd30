//! Every write primitive, request by request.

use serde_json::json;

use super::*;
use crate::cluster::{Cluster, MatchKind, RouteMatch, Routing};

#[tokio::test]
async fn scaling_a_new_version_creates_its_deployment_from_the_base() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect_merge_patch(&deployments("web-1-1-0"), json!({"spec": {"replicas": 2}}))
            .await
            .reply(404, status(404, "NotFound", "deployments.apps \"web-1-1-0\" not found"));
        api.expect("GET", &deployments("web")).await.reply(200, base_deployment());
        let create = api.expect("POST", &format!("/apis/apps/v1/namespaces/{NS}/deployments")).await;
        assert_eq!(create.query.get("fieldManager").map(String::as_str), Some("shipdeck"));
        let d = &create.body;
        let labels = json!({"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.1.0"});
        assert_eq!(d["metadata"]["name"], "web-1-1-0");
        assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/managed-by"], "shipdeck");
        assert_eq!(d["metadata"]["annotations"]["shipdeck.dev/base"], "web");
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(d["spec"]["selector"], json!({"matchLabels": labels}));
        // The base's own labels stay on the pods (its Services select them), ours are added.
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web", "app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.1.0"})
        );
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "registry.local:5000/shop/web:1.1.0", "the tag is the version");
        assert_eq!(containers[1]["image"], "envoyproxy/envoy:v1.30", "other containers are untouched");
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 120);
        let echo = create.body.clone();
        create.reply(201, echo);
    };
    let (result, ()) = tokio::join!(c.scale(target(), "1.1.0", 2), server);
    result.unwrap();
}

#[tokio::test]
async fn scaling_an_existing_version_is_one_merge_patch_of_its_replicas() {
    let (c, mut api) = cluster(false);
    let server = async {
        api.expect_merge_patch(&deployments("web-1-1-0-errors"), json!({"spec": {"replicas": 5}})).await.reply(
            200,
            json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "web-1-1-0-errors"}}),
        );
    };
    let (result, ()) = tokio::join!(c.scale(target(), "1.1.0-errors", 5), server);
    result.unwrap();
}

#[tokio::test]
async fn a_create_that_loses_a_race_sets_the_size_of_the_deployment_that_won() {
    let (c, mut api) = cluster(false);
    let server = async {
        let patch = json!({"spec": {"replicas": 3}});
        api.expect_merge_patch(&deployments("web-2-0-0"), patch.clone()).await.reply(404, status(404, "NotFound", ""));
        api.expect("GET", &deployments("web")).await.reply(200, base_deployment());
        api.expect("POST", &format!("/apis/apps/v1/namespaces/{NS}/deployments"))
            .await
            .reply(409, status(409, "AlreadyExists", "deployments.apps \"web-2-0-0\" already exists"));
        api.expect_merge_patch(&deployments("web-2-0-0"), patch).await.reply(200, json!({"metadata": {}}));
    };
    let (result, ()) = tokio::join!(c.scale(target(), "2.0.0", 3), server);
    result.unwrap();
}

#[tokio::test]
async fn scaling_to_zero_deletes_the_version_and_an_absent_one_is_fine() {
    let (c, mut api) = cluster(false);
    let server = async {
        let x = api.expect("DELETE", &deployments("web-1-0-0")).await;
        assert_eq!(x.body["propagationPolicy"], "Background");
        x.reply(404, status(404, "NotFound", "gone already"));
    };
    let (result, ()) = tokio::join!(c.scale(target(), "1.0.0", 0), server);
    result.unwrap();
}

#[tokio::test]
async fn restart_stamps_the_template_as_kubectl_rollout_restart_does() {
    let (c, mut api) = cluster(false);
    let server = async {
        let x = api.expect("PATCH", &deployments("web-1-0-0")).await;
        assert_eq!(x.content_type.as_deref(), Some(MERGE));
        let stamp = &x.body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
        assert!(stamp.as_str().is_some_and(|s| s.ends_with('Z')), "{stamp}");
        x.reply(200, json!({"metadata": {}}));
    };
    let (result, ()) = tokio::join!(c.restart(target(), "1.0.0"), server);
    result.unwrap();
}

#[tokio::test]
async fn all_traffic_to_one_version_switches_the_active_service_selector() {
    let (c, mut api) = cluster(false);
    let routing = Routing::all_to("1.1.0");
    let server = async {
        let body = json!({
            "metadata": {"annotations": {"shipdeck.dev/routing": serde_json::to_string(&routing).unwrap()}},
            "spec": {"selector": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.1.0"}},
        });
        api.expect_merge_patch(&services("web"), body).await.reply(200, base_service());
    };
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    result.unwrap();
}

#[tokio::test]
async fn a_canary_without_a_route_selects_every_version_and_splits_by_replicas() {
    let (c, mut api) = cluster(false);
    let routing = Routing::split("1.0.0", "1.1.0", 10);
    let server = async {
        // `null` removes the version from the selector: every version's ready pods serve.
        let body = json!({
            "metadata": {"annotations": {"shipdeck.dev/routing": serde_json::to_string(&routing).unwrap()}},
            "spec": {"selector": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": null}},
        });
        api.expect_merge_patch(&services("web"), body).await.reply(200, base_service());
    };
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    result.unwrap();
}

#[tokio::test]
async fn blue_green_points_the_preview_service_at_the_new_colour_first() {
    let (c, mut api) = cluster(false);
    let mut routing = Routing::all_to("1.0.0");
    routing.preview = Some("1.1.0".into());
    let server = async {
        let preview = json!({"spec": {"selector": {"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.1.0"}}});
        api.expect_merge_patch(&services("web-preview"), preview).await.reply(200, base_service());
        let x = api.expect("PATCH", &services("web")).await;
        assert_eq!(x.body["spec"]["selector"]["shipdeck.dev/version"], "1.0.0");
        x.reply(200, base_service());
    };
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    result.unwrap();
}

#[tokio::test(start_paused = true)]
async fn header_matches_without_a_route_are_refused_before_anything_moves() {
    let (c, mut api) = cluster(false);
    let mut routing = Routing::all_to("1.0.0");
    routing.matches.push(RouteMatch {
        kind: MatchKind::Header,
        name: "x-group".into(),
        value: "b".into(),
        version: "1.1.0".into(),
    });
    let err = c.set_routing(target(), &routing).await.unwrap_err().to_string();
    assert!(err.contains("need a Gateway API HTTPRoute") && err.contains("http_route"), "{err}");
    api.expect_silence().await;
}

#[tokio::test]
async fn canary_weights_go_to_the_http_route_backends() {
    let (c, mut api) = cluster(true);
    let routing = Routing::split("1.0.0", "1.1.0", 10);
    let server = async {
        let rules = json!([{"matches": path_match(), "backendRefs": [{"name": "web", "port": 80}]}]);
        api.expect("GET", &routes("web")).await.reply(200, route("41", rules, None));
        let body = json!({
            "metadata": {
                "resourceVersion": "41",
                "annotations": {"shipdeck.dev/routing": serde_json::to_string(&routing).unwrap()},
            },
            "spec": {"rules": [{
                "matches": path_match(),
                "backendRefs": [
                    {"name": "web-1-0-0", "port": 80, "weight": 90},
                    {"name": "web-1-1-0", "port": 80, "weight": 10},
                ],
            }]},
        });
        api.expect_merge_patch(&routes("web"), body).await.reply(200, route("42", json!([]), None));
    };
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    result.unwrap();
}

#[tokio::test]
async fn a_header_match_becomes_a_rule_before_the_weighted_one() {
    let (c, mut api) = cluster(true);
    let mut routing = Routing::all_to("1.0.0");
    routing.matches.push(RouteMatch {
        kind: MatchKind::Header,
        name: "x-shipdeck-group".into(),
        value: "b".into(),
        version: "1.1.0".into(),
    });
    let server = async {
        // A route shipdeck already wrote: the last rule is the template, earlier ones are rebuilt.
        let earlier = json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                          "headers": [{"type": "Exact", "name": "x-shipdeck-group", "value": "a"}]}],
             "backendRefs": [{"name": "web-0-9-0", "port": 80, "weight": 1}]},
            {"matches": path_match(), "backendRefs": [{"name": "web-1-0-0", "port": 80, "weight": 100}]},
        ]);
        let ours = json!({"shipdeck.dev/routing": "{}"});
        api.expect("GET", &routes("web")).await.reply(200, route("50", earlier, Some(ours)));
        let x = api.expect("PATCH", &routes("web")).await;
        assert_eq!(x.content_type.as_deref(), Some(MERGE));
        assert_eq!(
            x.body["spec"]["rules"],
            json!([
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                              "headers": [{"type": "Exact", "name": "x-shipdeck-group", "value": "b"}]}],
                 "backendRefs": [{"name": "web-1-1-0", "port": 80, "weight": 1}]},
                {"matches": path_match(), "backendRefs": [{"name": "web-1-0-0", "port": 80, "weight": 100}]},
            ])
        );
        x.reply(200, route("51", json!([]), None));
    };
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    result.unwrap();
}

#[tokio::test]
async fn a_cookie_match_is_a_regular_expression_on_the_cookie_header() {
    let (c, mut api) = cluster(true);
    let mut routing = Routing::all_to("1.0.0");
    routing.matches.push(RouteMatch {
        kind: MatchKind::Cookie,
        name: "group".into(),
        value: "b".into(),
        version: "1.1.0".into(),
    });
    let server = async {
        let rules = json!([{"backendRefs": [{"name": "web", "port": 80}]}]);
        api.expect("GET", &routes("web")).await.reply(200, route("5", rules, None));
        let x = api.expect("PATCH", &routes("web")).await;
        assert_eq!(
            x.body["spec"]["rules"][0]["matches"],
            json!([{"headers": [{"type": "RegularExpression", "name": "cookie", "value": "(^|;\\s*)group=b(;|$)"}]}])
        );
        x.reply(200, route("6", json!([]), None));
    };
    let (result, ()) = tokio::join!(c.set_routing(target(), &routing), server);
    result.unwrap();
}

#[tokio::test]
async fn with_a_route_a_new_version_also_gets_its_own_service() {
    let (c, mut api) = cluster(true);
    let server = async {
        api.expect("PATCH", &deployments("web-1-1-0")).await.reply(404, status(404, "NotFound", ""));
        api.expect("GET", &deployments("web")).await.reply(200, base_deployment());
        let x = api.expect("POST", &format!("/apis/apps/v1/namespaces/{NS}/deployments")).await;
        x.reply(201, json!({"metadata": {"name": "web-1-1-0"}}));
        api.expect("GET", &services("web")).await.reply(200, base_service());
        let svc = api.expect("POST", &format!("/api/v1/namespaces/{NS}/services")).await;
        assert_eq!(svc.query.get("fieldManager").map(String::as_str), Some("shipdeck"));
        assert_eq!(svc.body["metadata"]["name"], "web-1-1-0");
        assert_eq!(
            svc.body["spec"]["selector"],
            json!({"app.kubernetes.io/name": "web", "shipdeck.dev/version": "1.1.0"})
        );
        assert_eq!(svc.body["spec"]["ports"], json!([{"name": "http", "port": 80, "targetPort": 8080}]));
        svc.reply(201, json!({"metadata": {"name": "web-1-1-0"}}));
    };
    let (result, ()) = tokio::join!(c.scale(target(), "1.1.0", 1), server);
    result.unwrap();
}
