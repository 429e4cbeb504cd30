//! The FeatureFlag store's contract with the API server, in kube-rs's tower-test pattern: each
//! test plays the API server and asserts every request's method, path, query, content type and
//! body before answering it.

use serde_json::{Value, json};

use super::*;
use crate::cluster::kube::tests::{ApiServer, NS, client, status};
use crate::flags::DEMO_FLAGS;

const PATH: &str = "/apis/core.openfeature.dev/v1beta1/namespaces/shop/featureflags/flags";

fn store() -> (KubeFlagStore, ApiServer) {
    let (client, api) = client();
    (KubeFlagStore::new(client, NS, "flags"), api)
}

/// The demo flags as `spec.flagSpec` (a flagd document without `$schema`).
fn demo_flag_spec() -> Value {
    let mut doc: Value = serde_json::from_str(DEMO_FLAGS).unwrap();
    doc.as_object_mut().unwrap().remove("$schema");
    doc
}

fn feature_flag(resource_version: &str, flag_spec: Value) -> Value {
    json!({
        "apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlag",
        "metadata": {
            "name": "flags", "namespace": NS, "resourceVersion": resource_version, "uid": "0b5e",
            "labels": {"app.kubernetes.io/part-of": "shop"},
            "annotations": {"team": "checkout"},
            "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update"}],
        },
        "spec": {"flagSpec": flag_spec},
    })
}

/// A GET of the FeatureFlag, asserted and answered with `body`.
async fn serve_get(api: &mut ApiServer, code: u16, body: Value) {
    let x = api.expect("GET", PATH).await;
    assert!(x.query.is_empty(), "a plain GET: {:?}", x.query);
    assert_eq!(x.body, Value::Null, "a GET has no body");
    x.reply(code, body);
}

#[test]
fn a_flagd_document_round_trips_through_the_resource_shape_unchanged() {
    let mut with_everything: Value = serde_json::from_str(DEMO_FLAGS).unwrap();
    with_everything["$evaluators"] = json!({"is-pro": {"in": ["pro", {"var": "plan"}]}});
    with_everything["metadata"] = json!({"flagSetId": "shop", "version": "3"});
    for doc in [serde_json::from_str::<Value>(DEMO_FLAGS).unwrap(), with_everything] {
        let spec = flag_spec_of(&doc).unwrap();
        assert!(!spec.contains_key("$schema"), "the resource has no place for $schema");
        assert_eq!(document_of(&spec), doc);
        // And the other way: what the cluster holds comes back as it was.
        assert_eq!(flag_spec_of(&document_of(&spec)).unwrap(), spec);
        // The set read from it is the set read from the file.
        let text = document_of(&spec).to_string();
        assert_eq!(FlagSet::parse(&text, "r").unwrap(), FlagSet::parse(&doc.to_string(), "f").unwrap());
    }
    let err = flag_spec_of(&json!({"flags": {}, "owner": "me"})).unwrap_err();
    assert!(err.contains("top-level `owner` has no place in a FeatureFlag's spec.flagSpec"), "{err}");
}

#[tokio::test]
async fn load_gets_the_feature_flag_and_reads_its_flag_spec_as_flagd_does() {
    let (store, mut api) = store();
    let server = serve_get(&mut api, 200, feature_flag("41", demo_flag_spec()));
    let (loaded, ()) = tokio::join!(store.load(), server);
    let (set, _) = loaded.unwrap();
    assert_eq!(set, FlagSet::parse(DEMO_FLAGS, "demo").unwrap());
    assert_eq!(store.describe(), "FeatureFlag shop/flags");
}

#[tokio::test]
async fn save_replaces_the_object_as_read_with_its_resource_version_and_the_new_flags() {
    let (store, mut api) = store();
    let server = serve_get(&mut api, 200, feature_flag("41", demo_flag_spec()));
    let (loaded, ()) = tokio::join!(store.load(), server);
    let (mut set, rev) = loaded.unwrap();
    set.set_enabled("dark-mode", false).unwrap();

    let server = async {
        let x = api.expect("PUT", PATH).await;
        assert_eq!(x.query.get("fieldManager").map(String::as_str), Some("shipdeck"));
        assert_eq!(x.content_type.as_deref(), Some("application/json"));
        let mut expected = feature_flag("41", demo_flag_spec());
        expected["spec"]["flagSpec"]["flags"]["dark-mode"]["state"] = json!("DISABLED");
        expected["metadata"].as_object_mut().unwrap().remove("managedFields");
        assert_eq!(x.body, expected, "the object as read: labels, annotations, resourceVersion; the new flags");
        let mut saved = x.body.clone();
        saved["metadata"]["resourceVersion"] = json!("42");
        x.reply(200, saved);
    };
    let (saved, ()) = tokio::join!(store.save(&set, &rev), server);
    let new_rev = saved.unwrap();
    assert_ne!(new_rev, rev);
    assert!(new_rev.0.contains(r#""resourceVersion":"42""#), "{new_rev:?}");
}

#[tokio::test(start_paused = true)]
async fn a_conflict_is_the_stores_conflict_error_and_nothing_else_is_written() {
    let (store, mut api) = store();
    let store: &dyn FlagStore = &store;
    let server = async {
        serve_get(&mut api, 200, feature_flag("41", demo_flag_spec())).await;
        let x = api.expect("PUT", PATH).await;
        assert_eq!(x.body["metadata"]["resourceVersion"], "41");
        x.reply(409, status(409, "Conflict", "Operation cannot be fulfilled on featureflags.core.openfeature.dev \"flags\": the object has been modified; please apply your changes to the latest version and try again"));
    };
    let (updated, ()) = tokio::join!(store.update(|s| s.set_enabled("dark-mode", false)), server);
    let err = updated.unwrap_err();
    assert!(matches!(err, FlagError::Conflict { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "FeatureFlag shop/flags changed in the cluster since it was read; nothing was saved, reload and try again"
    );
    api.expect_silence().await;
}

#[tokio::test]
async fn a_missing_feature_flag_is_named_with_how_to_create_it() {
    let (store, mut api) = store();
    let missing = json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
        "message": "featureflags.core.openfeature.dev \"flags\" not found",
        "details": {"name": "flags", "group": "core.openfeature.dev", "kind": "featureflags"},
    });
    let (loaded, ()) = tokio::join!(store.load(), serve_get(&mut api, 404, missing));
    let err = loaded.unwrap_err();
    assert!(err.is_backend(), "{err:?}");
    let m = err.to_string();
    assert!(m.starts_with("FeatureFlag shop/flags: not found in namespace shop — create it"), "{m}");
    assert!(m.contains("core.openfeature.dev/v1beta1 named flags with the flags under spec.flagSpec.flags"), "{m}");

    // Without the operator's CRD the whole resource type is missing: that is said instead.
    let no_crd = status(404, "NotFound", "the server could not find the requested resource");
    let (loaded, ()) = tokio::join!(store.load(), serve_get(&mut api, 404, no_crd));
    let m = loaded.unwrap_err().to_string();
    assert!(m.contains("the API server has no FeatureFlag resource") && m.contains("OpenFeature operator"), "{m}");
}

#[tokio::test]
async fn a_forbidden_update_names_the_verb_and_resource_to_grant() {
    let (store, mut api) = store();
    let server = serve_get(&mut api, 200, feature_flag("41", demo_flag_spec()));
    let (loaded, ()) = tokio::join!(store.load(), server);
    let (set, rev) = loaded.unwrap();
    let server = async {
        let forbidden = status(403, "Forbidden", "featureflags.core.openfeature.dev \"flags\" is forbidden");
        api.expect("PUT", PATH).await.reply(403, forbidden);
    };
    let (saved, ()) = tokio::join!(store.save(&set, &rev), server);
    let m = saved.unwrap_err().to_string();
    assert!(
        m.starts_with("FeatureFlag shop/flags: forbidden: shipdeck may not update featureflags in namespace shop"),
        "{m}"
    );
}

#[tokio::test]
async fn a_resource_with_a_broken_flag_is_refused_naming_its_path_in_the_resource() {
    let (store, mut api) = store();
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut spec = demo_flag_spec();
        edit(&mut spec);
        feature_flag("41", spec)
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            broken(&|s| s["flags"]["dark-mode"]["state"] = json!(true)),
            "spec.flagSpec.flags.dark-mode.state must be \"ENABLED\" or \"DISABLED\"",
        ),
        (
            broken(&|s| s["flags"]["dark-mode"]["variants"] = json!("on")),
            "spec.flagSpec.flags.dark-mode.variants must be an object with at least one variant",
        ),
        (
            broken(&|s| s["flags"]["dark-mode"]["defaultVariant"] = json!("maybe")),
            "spec.flagSpec.flags.dark-mode.defaultVariant `maybe` is not one of its variants",
        ),
        (
            broken(&|s| s["flags"]["dark-mode"]["targeting"] = json!({"$ref": "nope"})),
            "spec.flagSpec.flags.dark-mode.targeting: $ref to `nope`, which is not in $evaluators",
        ),
        (broken(&|s| *s = json!({"metadata": {}})), "spec.flagSpec needs a `flags` object"),
        (
            json!({"apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlag",
                "metadata": {"name": "flags", "resourceVersion": "1"}, "spec": {}}),
            "has no spec.flagSpec; the flags go under spec.flagSpec.flags",
        ),
    ];
    for (resource, says) in cases {
        let (loaded, ()) = tokio::join!(store.load(), serve_get(&mut api, 200, resource));
        let err = loaded.unwrap_err();
        assert!(matches!(err, FlagError::BadResource { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("FeatureFlag shop/flags: {says}"));
    }
}

/// Until the watch has listed (its list is held here), the console is shown what was read in
/// the last 5 s, then it reads again.
#[tokio::test(start_paused = true)]
async fn until_the_watch_lists_the_console_is_shown_what_was_read_a_moment_ago_then_reads_again() {
    let (store, mut api) = store();
    let first_get = async {
        let (mut got, mut held) = (false, false);
        while !got || !held {
            let x = api.next().await;
            if x.path == PATH {
                x.reply(200, feature_flag("41", demo_flag_spec()));
                got = true;
                continue;
            }
            assert!(!x.is_watch() && x.query.contains_key("fieldSelector"), "the watch's list: {:?}", x.query);
            x.hold(&mut api);
            held = true;
        }
    };
    let (shown, ()) = tokio::join!(store.current(), first_get);
    let first = shown.unwrap();
    tokio::time::advance(SHOW_CACHED_FOR / 2).await;
    assert_eq!(store.current().await.unwrap(), first, "answered without a request");
    tokio::time::advance(SHOW_CACHED_FOR).await;
    let mut theirs = demo_flag_spec();
    theirs["flags"]["dark-mode"]["state"] = json!("DISABLED");
    let (shown, ()) = tokio::join!(store.current(), serve_get(&mut api, 200, feature_flag("43", theirs)));
    assert_ne!(shown.unwrap(), first, "read again: someone else's change shows");
}

// ---------------------------------------------------------------- the console's watch

const COLLECTION: &str = "/apis/core.openfeature.dev/v1beta1/namespaces/shop/featureflags";

fn dark_mode(default: &str) -> Value {
    json!({"flags": {"dark-mode": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": default}}})
}

fn set_of_spec(spec: &Value) -> FlagSet {
    FlagSet::parse(&document_of(spec.as_object().unwrap()).to_string(), "expected").unwrap()
}

/// Asserts a request of the watch: the collection, only this resource by name.
fn assert_by_name(x: &crate::cluster::kube::tests::Exchange) {
    assert_eq!(x.path, COLLECTION, "{:?}", x.query);
    assert_eq!(x.query.get("fieldSelector").map(String::as_str), Some("metadata.name=flags"), "{:?}", x.query);
    assert!(!x.query.contains_key("labelSelector"));
}

/// The first `current()`: its GET (the watch has not listed yet) and the watch's list, in either
/// order; returns the watch request that follows, asserted.
async fn serve_first_current(
    api: &mut ApiServer,
    store: &std::sync::Arc<KubeFlagStore>,
) -> crate::cluster::kube::tests::Exchange {
    let s = store.clone();
    let first = tokio::spawn(async move { s.current().await });
    let (mut got, mut listed) = (false, false);
    let watch = loop {
        let x = api.next().await;
        match (x.path.as_str(), x.is_watch()) {
            (PATH, false) if !got => {
                got = true;
                x.reply(200, feature_flag("41", dark_mode("off")));
            }
            (COLLECTION, false) if !listed => {
                assert_by_name(&x);
                listed = true;
                let list = json!({"apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlagList",
                                  "metadata": {"resourceVersion": "41"}, "items": [feature_flag("41", dark_mode("off"))]});
                x.reply(200, list);
            }
            (COLLECTION, true) => {
                assert_by_name(&x);
                assert_eq!(x.query.get("resourceVersion").map(String::as_str), Some("41"), "from the list");
                break x;
            }
            (p, w) => panic!("unexpected request {p} watch={w} {:?}", x.query),
        }
    };
    assert!(got && listed);
    assert_eq!(first.await.unwrap().unwrap(), set_of_spec(&dark_mode("off")));
    watch
}

/// Until `current()` (answered from the watch, no request) satisfies `ok`.
async fn until_current(
    store: &KubeFlagStore,
    news: &mut tokio::sync::watch::Receiver<u64>,
    ok: impl Fn(&Result<FlagSet, FlagError>) -> bool,
) -> Result<FlagSet, FlagError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = store.current().await;
        if ok(&now) {
            return now;
        }
        assert!(tokio::time::timeout_at(deadline, news.changed()).await.is_ok(), "never got there: {now:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_console_watches_the_one_feature_flag_and_shows_another_writers_change_and_a_deletion() {
    let (store, mut api) = store();
    let store = std::sync::Arc::new(store);
    let mut news = store.changes().expect("a store that watches says when it changed");
    let watch = serve_first_current(&mut api, &store).await;

    // Someone else turns dark mode on: the watch brings it, and the console's read asks nothing.
    let mut changed = feature_flag("42", dark_mode("on"));
    changed["metadata"]["resourceVersion"] = json!("42");
    watch.stream(&[json!({"type": "MODIFIED", "object": changed})]);
    let on = set_of_spec(&dark_mode("on"));
    let _ = until_current(&store, &mut news, |c| c.as_ref().ok() == Some(&on)).await;
    // The stream ended: watched again from the last version seen.
    let x = api.next().await;
    assert_by_name(&x);
    assert!(x.is_watch());
    assert_eq!(x.query.get("resourceVersion").map(String::as_str), Some("42"));

    // It is deleted: the console says so (and how to make it again).
    x.stream(&[json!({"type": "DELETED", "object": feature_flag("43", dark_mode("on"))})]);
    let gone = until_current(&store, &mut news, |c| c.is_err()).await.unwrap_err();
    let said = gone.to_string();
    assert!(
        said.contains("FeatureFlag shop/flags") && said.contains("deleted") && said.contains("create it"),
        "{said}"
    );
    let x = api.next().await;
    assert!(x.is_watch());
    x.hold(&mut api);
    api.expect_silence().await;
}

#[tokio::test(start_paused = true)]
async fn an_expired_watch_of_the_feature_flag_lists_it_again_by_name() {
    let (store, mut api) = store();
    let store = std::sync::Arc::new(store);
    let mut news = store.changes().unwrap();
    let watch = serve_first_current(&mut api, &store).await;
    watch.stream(&[json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version: 41")})]);
    let x = api.next().await;
    assert_by_name(&x);
    assert!(!x.is_watch(), "410 Gone: a list again");
    let list = json!({"apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlagList",
                      "metadata": {"resourceVersion": "50"}, "items": [feature_flag("50", dark_mode("on"))]});
    x.reply(200, list);
    let on = set_of_spec(&dark_mode("on"));
    let _ = until_current(&store, &mut news, |c| c.as_ref().ok() == Some(&on)).await;
    let x = api.next().await;
    assert!(x.is_watch());
    assert_eq!(x.query.get("resourceVersion").map(String::as_str), Some("50"));
    x.hold(&mut api);
}

#[tokio::test(start_paused = true)]
async fn a_save_still_writes_with_the_resource_version_it_read_while_the_watch_runs() {
    let (store, mut api) = store();
    let store = std::sync::Arc::new(store);
    let watch = serve_first_current(&mut api, &store).await;
    watch.hold(&mut api);
    let server = serve_get(&mut api, 200, feature_flag("41", dark_mode("off")));
    let (loaded, ()) = tokio::join!(store.load(), server);
    let (mut set, rev) = loaded.unwrap();
    set.set_enabled("dark-mode", false).unwrap();
    let server = async {
        let x = api.expect("PUT", PATH).await;
        assert_eq!(x.body["metadata"]["resourceVersion"], json!("41"), "compare-and-swap on what was read");
        x.reply(409, status(409, "Conflict", "the object has been modified"));
    };
    let (saved, ()) = tokio::join!(store.save(&set, &rev), server);
    assert!(matches!(saved, Err(FlagError::Conflict { .. })), "{saved:?}");
}

/// A Role without `list`/`watch` on featureflags: the watch stops at once, the console reads
/// with GET as before, and nothing more is asked of the watch.
#[tokio::test(start_paused = true)]
async fn a_forbidden_watch_stops_and_the_console_reads_with_get() {
    let (store, mut api) = store();
    let server = async {
        let (mut got, mut refused) = (false, false);
        while !got || !refused {
            let x = api.next().await;
            if x.path == PATH {
                x.reply(200, feature_flag("41", dark_mode("off")));
                got = true;
            } else {
                assert_by_name(&x);
                x.reply(403, status(403, "Forbidden", "featureflags is forbidden: cannot list resource"));
                refused = true;
            }
        }
    };
    let (shown, ()) = tokio::join!(store.current(), server);
    assert_eq!(shown.unwrap(), set_of_spec(&dark_mode("off")));
    api.expect_silence().await;
    // Past the 5 s of the last read: a GET again.
    tokio::time::advance(SHOW_CACHED_FOR).await;
    let (shown, ()) = tokio::join!(store.current(), serve_get(&mut api, 200, feature_flag("44", dark_mode("on"))));
    assert_eq!(shown.unwrap(), set_of_spec(&dark_mode("on")));
}

/// A save answered after the watch already brought a later writer's change keeps that change
/// shown (the newer `resourceVersion` wins); a save nobody overtook shows at once.
#[tokio::test(start_paused = true)]
async fn a_save_does_not_hide_a_later_writers_change_the_watch_already_brought() {
    let (store, mut api) = store();
    let store = std::sync::Arc::new(store);
    let mut news = store.changes().unwrap();
    let watch = serve_first_current(&mut api, &store).await;

    // Nobody overtook this save: it shows at once, before the watch says anything.
    let (loaded, ()) = tokio::join!(store.load(), serve_get(&mut api, 200, feature_flag("41", dark_mode("off"))));
    let (mut ours, rev) = loaded.unwrap();
    ours.set_enabled("dark-mode", false).unwrap();
    let ours_spec = Value::Object(flag_spec_of(&ours.doc).unwrap());
    let server = async { api.expect("PUT", PATH).await.reply(200, feature_flag("42", ours_spec.clone())) };
    let (saved, ()) = tokio::join!(store.save(&ours, &rev), server);
    let rev = saved.unwrap();
    assert_eq!(store.current().await.unwrap(), ours, "the save shows at once");

    // The next save is written at 43, then bob writes 44, and the watch brings both before
    // the answer to the save arrives.
    let mut again = ours.clone();
    again.set_enabled("dark-mode", true).unwrap();
    let again_spec = Value::Object(flag_spec_of(&again.doc).unwrap());
    let s = store.clone();
    let save = tokio::spawn(async move { s.save(&again, &rev).await });
    let put = api.expect("PUT", PATH).await;
    assert_eq!(put.body["metadata"]["resourceVersion"], json!("42"));
    watch.stream(&[
        json!({"type": "MODIFIED", "object": feature_flag("43", again_spec.clone())}),
        json!({"type": "MODIFIED", "object": feature_flag("44", dark_mode("on"))}),
    ]);
    let bobs = set_of_spec(&dark_mode("on"));
    let _ = until_current(&store, &mut news, |c| c.as_ref().ok() == Some(&bobs)).await;
    let rewatch = api.next().await;
    assert!(rewatch.is_watch() && rewatch.query.get("resourceVersion").map(String::as_str) == Some("44"));
    rewatch.hold(&mut api);
    put.reply(200, feature_flag("43", again_spec));
    assert!(save.await.unwrap().is_ok());
    assert_eq!(store.current().await.unwrap(), bobs, "the save's answer hid bob's later change");
    api.expect_silence().await;
}

/// A watch that keeps failing is retried with backoff: the console hears once that it reads
/// with GET, not on every retry.
#[tokio::test(start_paused = true)]
async fn a_failing_watch_is_news_once_not_on_every_retry() {
    let (store, mut api) = store();
    let mut news = store.changes().unwrap();
    store.start_watch();
    let fail = |x: crate::cluster::kube::tests::Exchange| {
        assert_by_name(&x);
        assert!(!x.is_watch());
        x.reply(500, status(500, "InternalError", "etcdserver: request timed out"));
    };
    for _ in 0..3 {
        fail(api.next().await);
    }
    // The fourth list shows the watch retried after the third failure was handled.
    let x = api.next().await;
    assert!(!news.has_changed().unwrap(), "a watch that never listed is no news, however often it fails");
    let list = json!({"apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlagList",
                      "metadata": {"resourceVersion": "41"}, "items": [feature_flag("41", dark_mode("off"))]});
    x.reply(200, list);
    let watch = api.next().await;
    assert!(watch.is_watch());
    assert!(news.has_changed().unwrap(), "listed: news");
    news.mark_unchanged();
    watch.reply(500, status(500, "InternalError", "etcdserver: leader changed"));
    for _ in 0..3 {
        let x = api.next().await;
        assert_by_name(&x);
        x.reply(500, status(500, "InternalError", "etcdserver: leader changed"));
    }
    let last = api.next().await;
    assert_eq!(*news.borrow_and_update(), 2, "news once when the watch failed, then none per retry");
    last.hold(&mut api);
}
