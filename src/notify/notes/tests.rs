//! Release notes checked against a git repository the test builds, with fixed authors and dates.

use std::path::Path;

use super::*;
use crate::notify::testkit::Repo;

fn app(repo: Option<&Path>, tag: Option<&str>) -> AppSettings {
    let text = "[[environments]]\nname = \"dev\"\n[[apps]]\nname = \"web\"\n[[apps.versions]]\nversion = \"1.0.0\"\n\
                [[apps.versions]]\nversion = \"1.1.0\"\n[[apps.versions]]\nversion = \"1.2.0\"\n";
    let estate = crate::config::Estate::parse(text, "t.toml").unwrap();
    let mut s = estate.settings("dev", "web").unwrap().clone();
    s.repo = repo.map(Path::to_path_buf);
    s.tag = tag.map(String::from);
    s
}

/// (kind, scope, subject, breaking) of each change, in the order listed.
fn rows(changes: &[Change]) -> Vec<(Option<&str>, Option<&str>, &str, bool)> {
    changes.iter().map(|c| (c.kind.as_deref(), c.scope.as_deref(), c.subject.as_str(), c.breaking)).collect()
}

/// 1.0.0 ← 1.1.0 (six commits of every kind) ← 1.2.0 (tagged without the `v`).
fn history() -> Repo {
    let mut r = Repo::new();
    r.commit("feat: first cut");
    r.tag("v1.0.0");
    r.commit("fix(api): reject empty carts");
    r.commit("feat(checkout): saved carts");
    r.commit("feat(api)!: drop the v0 endpoints");
    r.commit("refactor: split the router\n\nBREAKING CHANGE: the router listens on 8081 now");
    r.commit("docs: how to roll back");
    r.commit("Merge the payments work");
    r.tag("v1.1.0");
    r.commit("fix: a typo in the banner");
    r.tag("1.2.0");
    r
}

#[tokio::test]
async fn commits_between_two_tags_are_grouped_exactly() {
    let repo = history();
    let notes = try_generate(&app(Some(&repo.path()), None), Some("1.0.0"), "1.1.0").await.unwrap();
    assert_eq!(notes.range.as_deref(), Some("v1.0.0..v1.1.0"));
    assert_eq!((notes.from.as_deref(), notes.problem.as_deref(), notes.truncated), (Some("1.0.0"), None, false));
    // git lists the newest first.
    assert_eq!(
        rows(&notes.breaking),
        vec![
            (Some("refactor"), None, "split the router", true),
            (Some("feat"), Some("api"), "drop the v0 endpoints", true),
        ]
    );
    assert_eq!(notes.breaking[0].breaking_note.as_deref(), Some("the router listens on 8081 now"));
    assert_eq!(rows(&notes.features), vec![(Some("feat"), Some("checkout"), "saved carts", false)]);
    assert_eq!(rows(&notes.fixes), vec![(Some("fix"), Some("api"), "reject empty carts", false)]);
    assert_eq!(
        rows(&notes.other),
        vec![(None, None, "Merge the payments work", false), (Some("docs"), None, "how to roll back", false)]
    );
    let all = notes.groups().into_iter().flat_map(|(_, c)| c.iter()).collect::<Vec<_>>();
    assert!(all.iter().all(|c| c.commit.len() == 12 && c.author == "Ann Author"), "{all:?}");
    assert_eq!(notes.summary(), "2 breaking, 1 feature, 1 fix, 2 other");
    let md = notes.to_markdown();
    assert!(md.starts_with("# web 1.1.0 (since 1.0.0)\n"), "{md}");
    assert!(md.contains("## Breaking changes\n- split the router (") && md.contains("— the router listens on 8081"));
}

#[tokio::test]
async fn a_version_tagged_without_v_is_found_and_no_start_reads_all_history() {
    let repo = history();
    let notes = try_generate(&app(Some(&repo.path()), None), Some("1.1.0"), "1.2.0").await.unwrap();
    assert_eq!(notes.range.as_deref(), Some("v1.1.0..1.2.0"));
    assert_eq!(rows(&notes.fixes), vec![(Some("fix"), None, "a typo in the banner", false)]);
    assert!(notes.breaking.is_empty() && notes.features.is_empty() && notes.other.is_empty());
    let first = try_generate(&app(Some(&repo.path()), None), None, "1.0.0").await.unwrap();
    assert_eq!(rows(&first.features), vec![(Some("feat"), None, "first cut", false)]);
}

#[tokio::test]
async fn a_tag_template_maps_versions_to_refs() {
    let mut repo = Repo::new();
    repo.commit("chore: init");
    repo.tag("web-release-1.0.0");
    repo.commit("feat: search");
    repo.tag("web-release-1.1.0");
    let s = app(Some(&repo.path()), Some("web-release-{version}"));
    let notes = try_generate(&s, Some("1.0.0"), "1.1.0").await.unwrap();
    assert_eq!(rows(&notes.features), vec![(Some("feat"), None, "search", false)]);
    // The template is the only mapping once set: `v1.1.0` is not tried.
    let err = try_generate(&s, Some("1.0.0"), "1.2.0").await.unwrap_err();
    assert!(err.to_string().contains("tried web-release-1.2.0"), "{err}");
}

#[tokio::test]
async fn missing_repo_or_tag_becomes_a_note_saying_so() {
    let notes = generate(&app(None, None), Some("1.0.0"), "1.1.0").await;
    assert!(notes.problem.as_deref().is_some_and(|p| p.contains("no `repo`")), "{notes:?}");
    let repo = history();
    let notes = generate(&app(Some(&repo.path()), None), Some("1.1.0"), "9.9.9").await;
    let p = notes.problem.clone().unwrap();
    assert!(p.contains("tried v9.9.9, 9.9.9") && p.contains("set `tag`"), "{p}");
    assert!(notes.summary().starts_with("no release notes: "));
    let nowhere = tempfile::tempdir().unwrap();
    let err = try_generate(&app(Some(nowhere.path()), None), None, "1.0.0").await.unwrap_err();
    assert!(matches!(err, NotesError::Git { .. }) && !err.is_bad_input(), "{err}");
}

#[test]
fn conventional_headers_parse_and_others_stay_whole() {
    let c = parse_commit("0123456789abcdef", "Ann", "feat(ui)!: new layout\n\nbody");
    assert_eq!(
        (c.commit.as_str(), c.kind.as_deref(), c.scope.as_deref(), c.subject.as_str(), c.breaking),
        ("0123456789ab", Some("feat"), Some("ui"), "new layout", true)
    );
    for plain in ["Update README", "feat(: nope", "feat x: spaces", "fix:", "(ui): no type"] {
        let c = parse_commit("abc", "Ann", plain);
        assert_eq!((c.kind, c.subject.as_str()), (None, plain), "{plain}");
    }
    let footer = parse_commit("abc", "Ann", "chore: bump\n\nBREAKING-CHANGE: needs Rust 1.89");
    assert!(footer.breaking && footer.breaking_note.as_deref() == Some("needs Rust 1.89"));
}

#[test]
fn the_previous_version_is_the_one_before_in_the_estate() {
    let s = app(None, None);
    assert_eq!(previous_in_estate(&s, "1.2.0").as_deref(), Some("1.1.0"));
    assert_eq!(previous_in_estate(&s, "1.0.0"), None);
    assert_eq!(previous_in_estate(&s, "7.0.0"), None);
}
