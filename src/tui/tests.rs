//! Every pane rendered at 80×24 and 160×48 against stored snapshots, with colours checked
//! where they carry meaning, and what keys do.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{App, Effect, Mode, Pane};
use super::fixture::{self, fixture};
use super::view;
use crate::config::keymap::Keymap;
use crate::config::theme::{Role, Theme};
use crate::engine::Command;

fn app() -> App {
    fixture::app_with(fixture(), Theme::embedded("dark").unwrap(), Keymap::load("default", None).unwrap())
}

fn render(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| view::draw(f, app)).unwrap();
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

/// The style of the first cell where `needle` starts.
fn style_at(term: &Terminal<TestBackend>, needle: &str) -> ratatui::style::Style {
    let buf = term.backend().buffer();
    let screen = text(term);
    let (row, line) = screen
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not on screen:\n{screen}"));
    let col = line[..line.find(needle).unwrap()].chars().count() as u16;
    buf[(col, row as u16)].style()
}

#[test]
fn every_pane_matches_its_snapshot_at_both_sizes() {
    for pane in Pane::ALL {
        for (w, h) in [(80, 24), (160, 48)] {
            let mut a = app();
            a.pane = pane;
            insta::assert_snapshot!(format!("{}_{w}x{h}", pane.name()), text(&render(&a, w, h)));
        }
    }
}

#[test]
fn the_help_overlay_matches_its_snapshot() {
    let mut a = app();
    a.pane = Pane::Rollout;
    a.mode = Mode::Help;
    insta::assert_snapshot!("help_160x48", text(&render(&a, 160, 48)));
}

#[test]
fn a_failed_verdict_is_drawn_in_the_error_role() {
    let mut a = app();
    a.pane = Pane::Analysis;
    let term = render(&a, 160, 48);
    assert_eq!(style_at(&term, "FAIL").fg, a.theme.style(Role::Error).fg);
    assert_eq!(style_at(&term, "pass").fg, a.theme.style(Role::Ok).fg);
    assert_eq!(style_at(&term, "inconclusive").fg, a.theme.style(Role::Warn).fg);
}

#[test]
fn a_release_status_carries_its_colour_in_the_environments_pane() {
    let a = app();
    let term = render(&a, 160, 48);
    assert_eq!(style_at(&term, "paused 4/7").fg, a.theme.style(Role::Warn).fg);
    assert_eq!(style_at(&term, "running 2/7").fg, a.theme.style(Role::Info).fg);
}

#[test]
fn a_terminal_below_the_minimum_says_so() {
    let term = render(&app(), 60, 20);
    assert!(text(&term).contains("needs at least 80×24"));
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

#[test]
fn abort_asks_first_and_names_what_will_happen() {
    let mut a = app();
    a.pane = Pane::Rollout;
    assert!(a.on_key(key('a')).is_empty());
    let Mode::Confirm(c) = &a.mode else { panic!("no confirmation") };
    assert!(c.body.contains("all traffic goes back to 1.4.0 now"), "{}", c.body);
    let screen = text(&render(&a, 80, 24));
    assert!(screen.contains("abort"), "{screen}");
    assert_eq!(
        a.on_key(key('y')),
        vec![Effect::Execute(Command::Abort { app: "checkout".into(), env: "prod".into() })]
    );
}

#[test]
fn cancelling_a_confirmation_changes_nothing() {
    let mut a = app();
    a.pane = Pane::Rollout;
    a.on_key(key('a'));
    assert!(a.on_key(key('n')).is_empty());
    assert!(matches!(a.mode, Mode::Normal));
}

#[test]
fn ctrl_d_does_nothing_destructive() {
    let mut a = app();
    for pane in Pane::ALL {
        a.pane = pane;
        let effects = a.on_key(KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL));
        assert!(effects.is_empty() && !matches!(a.mode, Mode::Confirm(_)), "{pane:?}");
    }
}

#[test]
fn readonly_refuses_and_says_so() {
    let mut a = app();
    a.readonly = true;
    a.pane = Pane::Rollout;
    assert!(a.on_key(key('a')).is_empty());
    assert!(a.message.as_ref().unwrap().0.contains("read-only"));
}

#[test]
fn the_palette_runs_a_deploy_with_completion_and_history() {
    let mut a = app();
    a.on_key(key(':'));
    for c in "dep".chars() {
        a.on_key(key(c));
    }
    a.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    let Mode::Palette { input, .. } = &a.mode else { panic!() };
    assert_eq!(input.value(), "deploy ");
    for c in "checkout 1.5.0 staging".chars() {
        a.on_key(key(c));
    }
    let effects = a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(
        effects,
        vec![Effect::Execute(Command::Deploy {
            app: "checkout".into(),
            env: "staging".into(),
            version: "1.5.0".into(),
            strategy: None,
            flags: Vec::new()
        })]
    );
    a.on_key(key(':'));
    a.on_key(KeyEvent::new(KeyCode::Up, KeyModifiers::NONE));
    let Mode::Palette { input, .. } = &a.mode else { panic!() };
    assert_eq!(input.value(), "deploy checkout 1.5.0 staging");
}

#[test]
fn the_palette_explains_a_bad_command() {
    let mut a = app();
    a.on_key(key(':'));
    for c in "env prd".chars() {
        a.on_key(key(c));
    }
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(a.message.as_ref().unwrap().0.contains("unknown environment `prd`"));
}

#[test]
fn the_filter_narrows_the_flag_list() {
    let mut a = app();
    a.pane = Pane::Flags;
    a.on_key(key('/'));
    for c in "kill".chars() {
        a.on_key(key(c));
    }
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(a.visible_flags().len(), 1);
    assert!(text(&render(&a, 80, 24)).contains("payments-kill-switch"));
}

#[test]
fn toggling_a_flag_asks_then_sends_the_command() {
    let mut a = app();
    a.pane = Pane::Flags;
    a.on_key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE));
    assert!(matches!(a.mode, Mode::Confirm(_)));
    let effects = a.on_key(key('y'));
    assert!(matches!(&effects[..], [Effect::Execute(Command::SetFlag { enabled: false, .. })]), "{effects:?}");
}

#[test]
fn a_long_list_scrolls_to_keep_the_selection_on_screen() {
    let snapshot = fixture::large(300, 2_000, 100, 10);
    let mut a = fixture::app_with(snapshot, Theme::embedded("dark").unwrap(), Keymap::load("default", None).unwrap());
    a.sel_app = 150;
    let screen = text(&render(&a, 160, 48));
    assert!(screen.contains("svc-0150") && !screen.contains("checkout"), "{screen}");
    assert!(screen.contains("300 apps × 3 environments, "), "{screen}");
    a.pane = Pane::Flags;
    a.sel_flag = 1_000;
    let term = render(&a, 160, 48);
    assert_eq!(style_at(&term, "flag-1000").bg, a.theme.style(Role::Selection).bg);
    a.sel_flag = 1_999;
    assert!(text(&render(&a, 160, 48)).contains("flag-1999"));
}

#[test]
fn promote_from_the_environments_pane_asks_first_naming_the_target() {
    let mut a = app();
    a.sel_env = 0; // dev, which promotes to staging
    assert!(a.on_key(key('P')).is_empty());
    let Mode::Confirm(c) = &a.mode else { panic!("no confirmation") };
    assert!(c.body.contains("from dev to staging"), "{}", c.body);
    assert_eq!(
        a.on_key(key('y')),
        vec![Effect::Execute(Command::Promote { app: "checkout".into(), from: "dev".into(), to: "staging".into() })]
    );
}

#[test]
fn the_filter_of_the_environments_pane_keeps_the_selection_on_other_panes() {
    let mut a = app();
    a.on_key(key('/'));
    for c in "search".chars() {
        a.on_key(key(c));
    }
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let before = a.selected_target().unwrap();
    assert_eq!(before.app, "search");
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)); // open the rollout pane
    assert_eq!(a.pane, Pane::Rollout);
    assert_eq!(a.selected_target().unwrap(), before);
}

#[test]
fn quitting_while_a_release_moves_asks_first() {
    let mut a = app();
    assert!(a.on_key(key('q')).is_empty());
    let Mode::Confirm(c) = &a.mode else { panic!("no confirmation") };
    assert!(c.body.contains("prod/checkout"), "{}", c.body);
    assert_eq!(a.on_key(key('y')), vec![Effect::Quit]);
}

#[test]
fn no_pane_or_overlay_panics_at_any_size() {
    for pane in Pane::ALL {
        for (w, h) in [(0, 0), (1, 1), (10, 3), (79, 23), (80, 24), (81, 25), (100, 30), (300, 100)] {
            for mode in 0..3 {
                let mut a = app();
                a.pane = pane;
                match mode {
                    1 => a.mode = Mode::Help,
                    2 => {
                        a.on_key(key(':'));
                        for c in "deploy checkout ".chars() {
                            a.on_key(key(c));
                        }
                    }
                    _ => {}
                }
                render(&a, w, h);
            }
        }
    }
}

#[test]
fn an_empty_estate_snapshot_renders_every_pane() {
    let mut a = app();
    a.set_snapshot(crate::tui::snapshot::Snapshot::default());
    for pane in Pane::ALL {
        a.pane = pane;
        render(&a, 80, 24);
        assert!(a.on_key(key('a')).is_empty());
        assert!(a.on_key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE)).is_empty());
    }
}

fn type_line(a: &mut App, line: &str) -> Vec<Effect> {
    for c in line.chars() {
        a.on_key(key(c));
    }
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE))
}

fn confirm_yes(a: &mut App) -> Vec<Effect> {
    assert!(matches!(a.mode, Mode::Confirm(_)), "a confirmation first: {:?}", a.mode);
    a.on_key(key('y'))
}

#[test]
fn the_palette_edits_flags_with_the_cli_arguments() {
    use crate::flags::edit::FlagEdit;
    let mut a = app();
    a.on_key(key(':'));
    type_line(&mut a, r#"flags target dark-mode --rule "plan in_segment pro,enterprise" --match any --serve on"#);
    let effects = confirm_yes(&mut a);
    let [Effect::Execute(Command::EditFlag { key: flag, edit: FlagEdit::AddRule { conditions, any, serve } })] =
        &effects[..]
    else {
        panic!("{effects:?}")
    };
    assert_eq!(
        (flag.as_str(), conditions.as_slice(), *any, serve.as_str()),
        ("dark-mode", &["plan in_segment pro,enterprise".to_string()][..], true, "on")
    );

    a.on_key(key(':'));
    type_line(&mut a, "flags weights dark-mode on=20 off=80");
    let effects = confirm_yes(&mut a);
    assert!(
        matches!(&effects[..], [Effect::Execute(Command::EditFlag { edit: FlagEdit::Weights { weights }, .. })] if weights == &[("on".to_string(), 20), ("off".to_string(), 80)]),
        "{effects:?}"
    );

    a.on_key(key(':'));
    type_line(&mut a, "flags rollout new-checkout --app checkout --env prod --stages 10:1m,50:1m,100");
    let Mode::Confirm(c) = &a.mode else { panic!("{:?}", a.mode) };
    assert!(c.body.contains("10% → 50% → 100%") && c.body.contains("checkout's traffic in prod"), "{}", c.body);
    let effects = confirm_yes(&mut a);
    assert!(
        matches!(&effects[..], [Effect::Execute(Command::FlagRollout { stages: Some(s), .. })] if s.len() == 3),
        "{effects:?}"
    );

    a.on_key(key(':'));
    type_line(
        &mut a,
        "flags experiment saved-carts --app checkout --env staging --duration 10m --hypothesis 'more orders'",
    );
    let effects = confirm_yes(&mut a);
    assert!(
        matches!(&effects[..], [Effect::Execute(Command::FlagExperiment { duration_secs: 600, hypothesis, .. })] if hypothesis == "more orders"),
        "{effects:?}"
    );
}

#[test]
fn the_palette_explains_bad_flag_lines_and_sends_nothing() {
    for (line, expect) in [
        ("flags target dark-mode --rule \"plan matches ^p\" --serve on", "regex"),
        ("flags weights dark-mode on=x", "VARIANT=WEIGHT"),
        ("flags rollout dark-mode --app checkout --env prod --stages 50,10", "--stages"),
        ("flags set-rollout dark-mode 150", "between 0 and 100"),
        ("flags frobnicate dark-mode", "frobnicate"),
        ("flags target dark-mode --rule 'unclosed", "quote"),
    ] {
        let mut a = app();
        a.on_key(key(':'));
        let effects = type_line(&mut a, line);
        assert!(effects.is_empty(), "{line}: {effects:?}");
        assert!(!matches!(a.mode, Mode::Confirm(_)), "{line}");
        let (msg, _) = a.message.clone().unwrap_or_else(|| panic!("{line}: no message"));
        assert!(msg.contains(expect), "{line}: {msg}");
    }
}

#[test]
fn flag_reads_in_the_palette_answer_from_the_flag_file() {
    let mut a = app();
    a.on_key(key(':'));
    let effects = type_line(&mut a, "flags eval new-checkout-flow --context targetingKey=user-7 --context plan=pro");
    assert!(effects.is_empty());
    let (msg, _) = a.message.clone().unwrap();
    assert!(msg.contains("reason"), "{msg}");
    a.on_key(key(':'));
    type_line(&mut a, "flags preview dark-mode --sample 1000");
    let (msg, _) = a.message.clone().unwrap();
    assert!(msg.contains("over 1000 synthetic users") && msg.contains('%'), "{msg}");
    a.on_key(key(':'));
    type_line(&mut a, "flags show saved-carts");
    assert_eq!((a.pane, a.selected_flag().as_deref()), (Pane::Flags, Some("saved-carts")));
    a.on_key(key(':'));
    type_line(&mut a, "flags show nope");
    assert!(a.message.clone().unwrap().0.contains("no flag named `nope`"));
}

#[test]
fn flag_keys_open_the_palette_with_the_command_to_edit() {
    let mut a = app();
    a.pane = Pane::Flags;
    for (k, start) in [
        ('r', "flags rollout dark-mode --app checkout --env prod --stages 10:1h,25:1h,50:2h,100"),
        ('x', "flags experiment dark-mode --app checkout --env prod"),
        ('t', "flags target dark-mode --serve on --rule "),
        ('w', "flags weights dark-mode "),
        ('e', "flags eval dark-mode --context targetingKey="),
    ] {
        a.mode = Mode::Normal;
        a.on_key(key(k));
        let Mode::Palette { input, .. } = &a.mode else { panic!("{k}: {:?}", a.mode) };
        assert!(input.value().starts_with(start), "{k}: {}", input.value());
    }
}

#[test]
fn turning_off_a_flag_others_depend_on_names_them() {
    let mut a = app();
    a.pane = Pane::Flags;
    let set = a.snapshot.flag_set.as_mut().unwrap();
    set.add_dependency("saved-carts", "dark-mode").unwrap();
    set.add_dependency("search-ranking-v2", "dark-mode").unwrap();
    let (needed, dependents) = ("dark-mode", ["saved-carts", "search-ranking-v2"]);
    a.sel_flag = a.visible_flags().iter().position(|f| f.key == needed).unwrap();
    a.on_key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE));
    let Mode::Confirm(c) = &a.mode else { panic!("{:?}", a.mode) };
    for d in dependents {
        assert!(c.body.contains(d), "{}", c.body);
    }
}

#[test]
fn the_flag_detail_shows_rules_traffic_and_changes() {
    let mut a = app();
    a.pane = Pane::Flags;
    let screen = text(&render(&a, 160, 48));
    for needle in ["dark-mode — definition", "variants", "who gets it", "last minute", "rolled out to 50%", "dana"] {
        assert!(screen.contains(needle), "`{needle}` not on screen:\n{screen}");
    }
}

#[test]
fn the_rollout_pane_shows_the_release_notes_of_the_selected_release() {
    let mut a = app();
    a.pane = Pane::Rollout;
    let mut notes = crate::model::ReleaseNotes::unavailable("checkout", "1.5.0", Some("1.4.0"), "");
    notes.problem = None;
    notes.range = Some("v1.4.0..v1.5.0".into());
    let parse = crate::notify::notes::parse_commit;
    notes.breaking.push(parse("aaaaaaaaaaaa", "Ann", "feat(api)!: drop v0"));
    notes.fixes.push(parse("bbbbbbbbbbbb", "Ann", "fix(cart): keep items on reload"));
    a.snapshot.detail.notes = Some(notes);
    let screen = text(&render(&a, 160, 48));
    assert!(screen.contains("Release notes (v1.4.0..v1.5.0): 1 breaking, 0 features, 1 fix, 0 other"), "{screen}");
    assert!(
        screen.contains("breaking api: drop v0") && screen.contains("fix      cart: keep items on reload"),
        "{screen}"
    );
    a.snapshot.detail.notes =
        Some(crate::model::ReleaseNotes::unavailable("checkout", "1.5.0", None, "checkout has no `repo`"));
    let screen = text(&render(&a, 160, 48));
    assert!(screen.contains("Release notes: no release notes: checkout has no `repo`"), "{screen}");
}

/// The fixture with prod on Kubernetes (context kind-a, namespace shop), prod selected.
fn kube_app() -> App {
    use crate::cluster::kube::switch::KubePlace;
    let mut a = app();
    a.snapshot.kube.insert("prod".into(), KubePlace { context: "kind-a".into(), namespace: "shop".into() });
    a.snapshot.kube_contexts = vec!["kind-a".into(), "kind-b".into(), "gke-prod".into()];
    a.sel_env = a.snapshot.envs.iter().position(|e| e == "prod").unwrap();
    a
}

#[test]
fn ctx_and_ns_parse_against_the_kubeconfigs_contexts_and_namespace_names() {
    use super::palette::{PaletteAction, parse};
    let snap = kube_app().snapshot;
    assert_eq!(parse("ctx kind-b", &snap), Ok(PaletteAction::KubeContext("kind-b".into())));
    assert_eq!(parse("ns shop-canary", &snap), Ok(PaletteAction::KubeNamespace("shop-canary".into())));
    let e = parse("ctx minikube", &snap).unwrap_err();
    assert!(e.contains("no context `minikube`") && e.contains("kind-a, kind-b, gke-prod"), "{e}");
    assert!(parse("ns Shop_1", &snap).unwrap_err().contains("not a namespace name"));
    assert!(parse("ctx", &snap).unwrap_err().starts_with("usage: ctx CONTEXT"));
}

#[test]
fn ctx_completes_the_kubeconfigs_contexts_and_ns_the_namespaces_in_use() {
    use super::palette::complete;
    let snap = kube_app().snapshot;
    assert!(complete("c", &snap).contains(&"ctx".to_string()));
    assert_eq!(complete("ctx ", &snap), ["kind-a", "kind-b", "gke-prod"]);
    assert_eq!(complete("ctx kind-", &snap), ["kind-a", "kind-b"]);
    assert_eq!(complete("ns ", &snap), ["shop"]);
    assert!(complete("ctx kind-a ", &snap).is_empty());
}

#[test]
fn ctx_switches_the_selected_kubernetes_environment_even_read_only_and_the_header_shows_where_it_points() {
    let mut a = kube_app();
    a.readonly = true;
    assert!(text(&render(&a, 160, 48)).lines().next().unwrap().contains("⎈ kind-a/shop"));
    a.on_key(key(':'));
    let effects = type_line(&mut a, "ctx kind-b");
    assert_eq!(
        effects,
        [Effect::Execute(Command::SwitchKubernetes {
            env: "prod".into(),
            context: Some("kind-b".into()),
            namespace: None
        })]
    );
    a.on_key(key(':'));
    let effects = type_line(&mut a, "ns shop-canary");
    assert_eq!(
        effects,
        [Effect::Execute(Command::SwitchKubernetes {
            env: "prod".into(),
            context: None,
            namespace: Some("shop-canary".into())
        })]
    );

    // dev runs on the local cluster: nothing to switch, and no context in the header.
    a.sel_env = a.snapshot.envs.iter().position(|e| e == "dev").unwrap();
    assert!(!text(&render(&a, 160, 48)).lines().next().unwrap().contains('⎈'));
    a.on_key(key(':'));
    assert!(type_line(&mut a, "ctx kind-b").is_empty());
    let (message, _) = a.message.clone().unwrap();
    assert!(message.contains("dev runs on the local cluster") && message.contains("prod"), "{message}");
}

/// Who holds each app's lease, a rollout another console drives and the cluster's Events.
fn live_app() -> App {
    use crate::cluster::{ClusterEvent, Driver, Target};
    let mut snap = fixture();
    let renewed = Some(fixture::at(8));
    let driver = |holder: &str, mine: bool, lapsed: bool| Driver { holder: holder.into(), mine, lapsed, renewed };
    let set = |snap: &mut crate::tui::snapshot::Snapshot, env: &str, app: &str, d: Driver| {
        if let Some(w) = snap.workloads.get_mut(&Target::new(env, app)) {
            w.driver = Some(d);
        }
    };
    set(&mut snap, "prod", "checkout", driver("alice (pid 4711) on host-x", false, false));
    set(&mut snap, "staging", "payments", driver("bob (pid 7) on laptop", false, true));
    set(&mut snap, "dev", "checkout", driver("carol (pid 99) on here", true, false));
    snap.log.push(crate::tui::snapshot::kube_line(ClusterEvent {
        at: fixture::at(9),
        target: Target::new("prod", "checkout"),
        warning: true,
        reason: "BackOff".into(),
        object: "pod/checkout-1-6-0-bad-7d9f-x2x".into(),
        note: "Back-off restarting failed container".into(),
        count: 4,
    }));
    let mut a = fixture::app_with(snap, Theme::embedded("dark").unwrap(), Keymap::load("default", None).unwrap());
    a.sel_app = a.visible_apps().iter().position(|x| x == "checkout").unwrap();
    a.sel_env = a.snapshot.envs.iter().position(|e| e == "prod").unwrap();
    a
}

#[test]
fn the_console_shows_who_drives_each_app_and_a_rollout_driven_elsewhere() {
    let mut a = live_app();
    a.pane = Pane::Environments;
    let term = render(&a, 80, 24);
    let screen = text(&term);
    assert!(
        screen.contains("⚿ running 2/7") && screen.contains("⚿ paused 4/7") && screen.contains("⚿ - you"),
        "{screen}"
    );
    assert_eq!(style_at(&term, "⚿ running").fg, a.theme.style(Role::Important).fg);
    assert_eq!(style_at(&term, "⚿ paused").fg, a.theme.style(Role::Muted).fg);
    insta::assert_snapshot!("environments_leases_80x24", screen);
    let wide = text(&render(&a, 160, 48));
    assert!(wide.contains("⚿ running 2/7 1.6.0-bad alice") && wide.contains("⚿ paused 4/7 2.1.0 lapsed"), "{wide}");

    a.pane = Pane::Rollout;
    let term = render(&a, 80, 24);
    let screen = text(&term);
    assert!(screen.contains("⚿ driven elsewhere, by alice (pid 4711) on host-x"), "{screen}");
    insta::assert_snapshot!("rollout_driven_elsewhere_80x24", screen);

    a.pane = Pane::Events;
    let screen = text(&render(&a, 160, 48));
    assert!(
        screen.contains("k8s      prod/checkout Warning BackOff pod/checkout-1-6-0-bad-7d9f-x2x: Back-off restarting failed container (×4)"),
        "{screen}"
    );
}
