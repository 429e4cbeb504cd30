//! The Argo Rollouts pane: what it shows, its colours, its keys (each an engine command; the
//! destructive ones ask first, naming the rollout), read-only, and an environment without Argo.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{App, Effect, Mode, Pane};
use super::fixture::{self, fixture};
use super::view;
use crate::cluster::kube::argo::ArgoAction;
use crate::cluster::kube::argo_watch::ArgoStatus;
use crate::config::keymap::Keymap;
use crate::config::theme::{Role, Theme};
use crate::engine::Command;

/// The fixture on the Argo pane, prod (whose watch shows three rollouts) selected.
fn app() -> App {
    let mut a = fixture::app_with(fixture(), Theme::embedded("dark").unwrap(), Keymap::load("default", None).unwrap());
    a.pane = Pane::Argo;
    a.sel_env = a.snapshot.envs.iter().position(|e| e == "prod").unwrap();
    a
}

fn screen(a: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| view::draw(f, a)).unwrap();
    term
}

fn text(term: &Terminal<TestBackend>) -> String {
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn fg_at(term: &Terminal<TestBackend>, needle: &str) -> Option<ratatui::style::Color> {
    let buf = term.backend().buffer();
    let all = text(term);
    let (row, line) = all.lines().enumerate().find(|(_, l)| l.contains(needle)).unwrap_or_else(|| panic!("{needle}"));
    let col = line[..line.find(needle).unwrap()].chars().count() as u16;
    buf[(col, row as u16)].style().fg
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn argo(rollout: &str, action: ArgoAction) -> Effect {
    Effect::Execute(Command::Argo { env: "prod".into(), rollout: rollout.into(), action, to_revision: None })
}

#[test]
fn the_pane_lists_each_rollouts_step_weights_revisions_and_analysis() {
    let a = app();
    let term = screen(&a, 160, 48);
    let all = text(&term);
    let storefront = all.lines().find(|l| l.contains("storefront")).unwrap();
    for cell in ["canary", "Paused", "1/4", "20/16", "rev 11 storefront:1.8.0", "rev 12 storefront:1.9.0", "bg Running"]
    {
        assert!(storefront.contains(cell), "`{cell}` in {storefront}");
    }
    assert!(all.contains("Argo Rollouts — prod · shop · 3"), "{all}");
    assert!(all.contains("Degraded (aborted)"));
    // The selected rollout's details: cart (first by name) is aborted, its analysis failed.
    assert!(all.contains("RolloutAborted: Rollout aborted update to revision 8"), "{all}");
    assert!(all.contains("step Failed cart-77c1aa-8-1"), "{all}");
    assert_eq!(fg_at(&term, "Degraded (aborted)"), a.theme.style(Role::Error).fg);
    assert_eq!(fg_at(&term, "Healthy"), a.theme.style(Role::Ok).fg);
    assert_eq!(fg_at(&term, "Paused"), a.theme.style(Role::Warn).fg);
}

#[test]
fn promote_and_retry_go_to_the_engine_at_once() {
    let mut a = app();
    a.on_key(key('j')); // storefront
    assert_eq!(a.on_key(key('p')), [argo("storefront", ArgoAction::Promote)]);
    a.on_key(key('k')); // cart
    assert_eq!(a.on_key(key('t')), [argo("cart", ArgoAction::Retry)]);
}

#[test]
fn promote_full_abort_and_undo_ask_first_naming_the_rollout_and_what_happens() {
    for (k, action, says) in [
        ('P', ArgoAction::PromoteFull, "Fully promote rollout storefront in prod, skipping every remaining step"),
        (
            'a',
            ArgoAction::Abort,
            "Abort rollout storefront in prod: all traffic goes back to the stable ReplicaSet now.",
        ),
        ('u', ArgoAction::Undo, "Roll rollout storefront in prod back to the pod template of the previous revision."),
    ] {
        let mut a = app();
        a.on_key(key('j'));
        assert!(a.on_key(key(k)).is_empty(), "{k}: nothing before a yes");
        let Mode::Confirm(c) = &a.mode else { panic!("{k}: no confirmation: {:?}", a.mode) };
        assert!(c.body.starts_with(says), "{k}: {}", c.body);
        assert_eq!(c.title, format!("argo {} — are you sure?", action.name()));
        // No, then yes.
        assert!(a.on_key(key('n')).is_empty());
        assert!(matches!(a.mode, Mode::Normal));
        a.on_key(key(k));
        assert_eq!(a.on_key(key('y')), [argo("storefront", action)], "{k}");
    }
}

#[test]
fn the_abort_confirmation_matches_its_snapshot() {
    let mut a = app();
    a.on_key(key('j'));
    a.on_key(key('a'));
    insta::assert_snapshot!("argo_abort_confirm_160x48", text(&screen(&a, 160, 48)));
}

#[test]
fn read_only_refuses_every_argo_action() {
    let mut a = app();
    a.readonly = true;
    for k in ['p', 'P', 'a', 't', 'u'] {
        assert!(a.on_key(key(k)).is_empty(), "{k}");
        assert!(matches!(a.mode, Mode::Normal), "{k}: no confirmation either");
        let (m, _) = a.message.clone().unwrap();
        assert!(m.starts_with("read-only: `argo "), "{m}");
    }
}

#[test]
fn an_environment_without_argo_says_why_and_acts_on_nothing() {
    let mut a = app();
    a.sel_env = a.snapshot.envs.iter().position(|e| e == "dev").unwrap();
    let all = text(&screen(&a, 160, 48));
    assert!(all.contains("dev runs on the local cluster; Argo Rollouts live in a Kubernetes"), "{all}");
    assert!(all.contains("Argo Rollouts are watched in prod"), "{all}");
    assert!(a.on_key(key('a')).is_empty());
    let (m, _) = a.message.clone().unwrap();
    assert!(m.contains("dev has no Argo Rollouts watch"), "{m}");

    // prod without the Rollout resource, and with a Role that does not allow the watch.
    let mut a = app();
    let view = a.snapshot.argo.get_mut("prod").unwrap();
    view.status = ArgoStatus::NotInstalled;
    view.rollouts.clear();
    let all = text(&screen(&a, 160, 48));
    assert!(all.contains("Argo Rollouts is not installed here"), "{all}");
    let view = a.snapshot.argo.get_mut("prod").unwrap();
    view.status = ArgoStatus::Stopped("forbidden: shipdeck may not list rollouts in namespace shop".into());
    let all = text(&screen(&a, 160, 48));
    assert!(all.contains("may not list rollouts in namespace shop"), "{all}");
    assert!(a.on_key(key('p')).is_empty());
}

#[test]
fn the_filter_narrows_the_rollouts_and_the_keys_act_on_what_is_shown() {
    let mut a = app();
    a.on_key(key('/'));
    for c in "web".chars() {
        a.on_key(key(c));
    }
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(a.visible_rollouts().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["web"]);
    assert_eq!(a.on_key(key('p')), [argo("web", ArgoAction::Promote)]);
}

/// The watched FeatureFlag is gone: the Flags pane says so instead of a list of stale flags.
#[test]
fn a_deleted_feature_flag_is_said_in_the_flags_pane() {
    let mut a = app();
    a.pane = Pane::Flags;
    a.snapshot.flags.clear();
    a.snapshot.flag_set = None;
    a.snapshot.flag_problem =
        Some("FeatureFlag shop/flags: deleted from namespace shop (the watch saw it go) — create it again".into());
    let term = screen(&a, 160, 48);
    let all = text(&term);
    assert!(all.contains("FeatureFlag shop/flags: deleted from namespace shop"), "{all}");
    assert_eq!(fg_at(&term, "FeatureFlag shop/flags: deleted"), a.theme.style(Role::Error).fg);
}
