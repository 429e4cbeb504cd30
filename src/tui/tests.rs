//! Every pane rendered at 80×24 and 160×48 against stored snapshots, with colours checked
//! where they carry meaning, and what keys do.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{App, Effect, Mode, Pane};
use super::snapshot::{LogLine, ReleaseDetail, Snapshot, WorkloadView};
use super::view;
use crate::cluster::{Routing, Target, VersionReplicas, WorkloadState};
use crate::config::Estate;
use crate::config::keymap::Keymap;
use crate::config::theme::{Role, Theme};
use crate::engine::Command;
use crate::flags::{DEMO_FLAGS, FlagSet};
use crate::model::*;

fn at(secs: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

/// The demo estate mid-way through a canary of checkout 1.6.0-bad in prod that just failed
/// its analysis, and a paused blue-green in staging.
pub fn fixture() -> Snapshot {
    let estate = Estate::demo().unwrap();
    let mut workloads = BTreeMap::new();
    for (t, s) in estate.targets() {
        let v = s.initial_version.clone().unwrap();
        let mut state = WorkloadState { routing: Routing::all_to(&v), ..Default::default() };
        state.versions.insert(
            v.clone(),
            VersionReplicas { desired: s.replicas, updated: s.replicas, ready: s.replicas, available: s.replicas },
        );
        state.actual_weights.insert(v.clone(), 100.0);
        workloads.insert(
            t,
            WorkloadView { state, settings: Some(s), release: None, last_verified: Some(v), pending: Vec::new() },
        );
    }
    let settings = estate.settings("prod", "checkout").unwrap().clone();
    let plan = crate::engine::plan::build(StrategyKind::Canary, &settings, Some("1.4.0"));
    let release = Release {
        id: "prod-checkout-1.6.0-bad-20261127120000".into(),
        app: "checkout".into(),
        env: "prod".into(),
        version: "1.6.0-bad".into(),
        previous_version: Some("1.4.0".into()),
        strategy: StrategyKind::Canary,
        kind: ReleaseKind::Deploy,
        promoted_from: None,
        status: Status::InProgress,
        plan,
        cursor: 1,
        requested_by: "alice".into(),
        created_at: at(0),
        updated_at: at(9),
        reason: None,
        interrupted: false,
        weight: 20,
    };
    let prod = workloads.get_mut(&Target::new("prod", "checkout")).unwrap();
    prod.state.routing = Routing::split("1.4.0", "1.6.0-bad", 20);
    prod.state.versions.insert("1.6.0-bad".into(), VersionReplicas { desired: 1, updated: 1, ready: 1, available: 1 });
    prod.state.actual_weights = [("1.4.0".to_string(), 81.2), ("1.6.0-bad".to_string(), 18.8)].into_iter().collect();
    prod.release = Some(release.clone());
    let mut paused = release.clone();
    paused.id = "staging-payments-2.1.0-20261127115500".into();
    paused.app = "payments".into();
    paused.env = "staging".into();
    paused.version = "2.1.0".into();
    paused.previous_version = Some("2.0.0".into());
    paused.strategy = StrategyKind::BlueGreen;
    paused.status = Status::Paused;
    paused.reason = Some("paused by bob at step 4/7".into());
    paused.cursor = 3;
    paused.plan = crate::engine::plan::build(
        StrategyKind::BlueGreen,
        estate.settings("staging", "payments").unwrap(),
        Some("2.0.0"),
    );
    workloads.get_mut(&Target::new("staging", "payments")).unwrap().release = Some(paused);
    let mut planned = release.clone();
    planned.id = "prod-search-3.2.0-20261127115000".into();
    planned.app = "search".into();
    planned.status = Status::Planned;
    workloads.get_mut(&Target::new("prod", "search")).unwrap().pending = vec![planned];

    let m = |s: i64, verdict: Verdict, ce: f64, detail: &str| Measurement {
        release_id: release.id.clone(),
        step: 1,
        at: at(s),
        verdict,
        canary_requests: 48,
        canary_error_rate: Some(ce),
        canary_p99_ms: Some(23.0 + s as f64 / 10.0),
        stable_requests: 190,
        stable_error_rate: Some(0.0),
        stable_p99_ms: Some(24.0),
        detail: detail.into(),
    };
    let detail = ReleaseDetail {
        steps: vec![
            StepRecord {
                release_id: release.id.clone(),
                index: 0,
                description: "set weight 20%".into(),
                started_at: at(0),
                finished_at: Some(at(1)),
                outcome: Some("done".into()),
            },
            StepRecord {
                release_id: release.id.clone(),
                index: 1,
                description: "analysis".into(),
                started_at: at(1),
                finished_at: None,
                outcome: None,
            },
        ],
        measurements: vec![
            m(4, Verdict::Pass, 0.0, "error_rate 0.000 vs 0.000, p99 23.4 ms vs 24.0 ms"),
            m(7, Verdict::Inconclusive, 0.0, "not enough canary traffic: 6 requests, 10 needed (about 4 more)"),
            m(10, Verdict::Fail, 0.081, "error_rate: canary 0.081 > 1.5 × stable 0.000 (4 of 48 requests failed)"),
        ],
    };
    let log = (0..30)
        .map(|i| LogLine {
            at: at(i),
            kind: if i % 3 == 0 { "audit".into() } else { "step".into() },
            text: format!("event number {i}"),
        })
        .collect();
    Snapshot {
        envs: estate.env_names().into_iter().map(String::from).collect(),
        promotes_to: estate.environments.iter().map(|e| (e.name.clone(), e.promotes_to.clone())).collect(),
        apps: estate.apps.clone(),
        workloads,
        detail,
        flags: FlagSet::parse(DEMO_FLAGS, "demo").unwrap().views(),
        log,
        now: at(12),
    }
}

fn app() -> App {
    let mut app = App::new(fixture(), Theme::embedded("dark").unwrap(), Keymap::load("default", None).unwrap(), false);
    app.sel_app = 0; // checkout
    app.sel_env = 2; // prod
    app
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
            strategy: None
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
