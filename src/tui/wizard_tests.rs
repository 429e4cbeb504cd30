//! The hotfix wizard, key by key: each field checked where it is entered, one confirmation
//! before anything is created, execution sent once the approvals are in, esc asks first.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Effect, Mode, Pane};
use super::fixture::{self, fixture};
use super::wizard::Step;
use crate::config::keymap::Keymap;
use crate::config::theme::Theme;
use crate::engine::{Command, Event};
use crate::model::{Emergency, EmergencyPlan, EmergencyStatus, EmergencyType, Severity};

fn app() -> App {
    let mut a = fixture::app_with(fixture(), Theme::embedded("dark").unwrap(), Keymap::load("default", None).unwrap());
    a.pane = Pane::Emergency;
    a
}

fn press(a: &mut App, code: KeyCode) -> Vec<Effect> {
    a.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn typed(a: &mut App, text: &str) {
    for c in text.chars() {
        press(a, KeyCode::Char(c));
    }
}

fn step(a: &App) -> Step {
    a.wizard.as_ref().expect("the wizard is open").step
}

fn error(a: &App) -> String {
    a.wizard.as_ref().and_then(|w| w.error.clone()).unwrap_or_default()
}

fn emergency(status: EmergencyStatus, approvers: &[&str]) -> Emergency {
    Emergency {
        id: "ER-20261127120000".into(),
        kind: EmergencyType::CriticalBug,
        severity: Severity::P1,
        description: "checkout fails every card payment".into(),
        affected_services: vec!["checkout".into()],
        fix_version: "1.5.0".into(),
        requested_by: "alice".into(),
        created_at: chrono::Utc::now(),
        approvers: approvers.iter().map(|s| s.to_string()).collect(),
        status,
        plan: EmergencyPlan::standard(Severity::P1),
        log: Vec::new(),
        ended_at: None,
        cause: None,
        tests: None,
    }
}

/// Walks the form to the plan: critical bug, P1, a description, checkout, 1.5.0.
fn fill_form(a: &mut App) {
    typed(a, "n");
    assert_eq!(step(a), Step::Type);
    press(a, KeyCode::Down);
    press(a, KeyCode::Enter);
    assert_eq!(step(a), Step::Severity);
    press(a, KeyCode::Enter); // P1 is preselected
    assert_eq!(step(a), Step::Description);
    typed(a, "broken"); // j and k are typed, not moves
    press(a, KeyCode::Enter);
    assert_eq!(step(a), Step::Description, "too short");
    assert!(error(a).contains("at least 10 characters"), "{}", error(a));
    let w = a.wizard.as_mut().unwrap();
    w.description = tui_input::Input::new(String::new());
    typed(a, "checkout fails every card payment");
    press(a, KeyCode::Enter);
    assert_eq!(step(a), Step::Services);
    press(a, KeyCode::Enter);
    assert!(error(a).contains("mark at least one service"), "{}", error(a));
    press(a, KeyCode::Char(' ')); // checkout, the first app
    press(a, KeyCode::Enter);
    assert_eq!(step(a), Step::Version);
    typed(a, "9.9.9");
    press(a, KeyCode::Enter);
    assert_eq!(step(a), Step::Version);
    assert!(error(a).contains("checkout has no version 9.9.9") && error(a).contains("1.5.0"), "{}", error(a));
    for _ in 0..5 {
        press(a, KeyCode::Backspace);
    }
    typed(a, "1.5.0");
    press(a, KeyCode::Enter);
    assert_eq!(step(a), Step::Plan);
}

#[test]
fn the_wizard_checks_each_field_and_creates_only_after_the_confirmation() {
    let mut a = app();
    fill_form(&mut a);
    let effects = press(&mut a, KeyCode::Enter);
    assert!(effects.is_empty(), "nothing before the confirmation: {effects:?}");
    let Mode::Confirm(c) = &a.mode else { panic!("{:?}", a.mode) };
    assert!(c.body.contains("prod → staging") && c.body.contains("2 approvals"), "{}", c.body);
    let effects = press(&mut a, KeyCode::Char('y'));
    let [Effect::Execute(Command::CreateEmergency { kind, severity, description, affected_services, fix_version })] =
        &effects[..]
    else {
        panic!("{effects:?}")
    };
    assert_eq!(
        (*kind, *severity, description.as_str(), affected_services.as_slice(), fix_version.as_str()),
        (
            EmergencyType::CriticalBug,
            Severity::P1,
            "checkout fails every card payment",
            &["checkout".to_string()][..],
            "1.5.0"
        )
    );
    assert_eq!(step(&a), Step::Approvals);

    // Approvals arrive; the second one makes it approved, and the wizard starts the execution.
    a.record(&Event::Emergency {
        emergency: Box::new(emergency(EmergencyStatus::PendingApproval, &[])),
        message: "created".into(),
    });
    assert!(a.take_pending().is_empty());
    a.record(&Event::Emergency {
        emergency: Box::new(emergency(EmergencyStatus::PendingApproval, &["bob"])),
        message: "approved by bob".into(),
    });
    assert!(a.take_pending().is_empty(), "one approval is not enough");
    a.record(&Event::Emergency {
        emergency: Box::new(emergency(EmergencyStatus::Approved, &["bob", "carol"])),
        message: "approved by carol".into(),
    });
    let pending = a.take_pending();
    assert!(
        matches!(&pending[..], [Effect::Execute(Command::ExecuteEmergency { id })] if id == "ER-20261127120000"),
        "{pending:?}"
    );
    assert_eq!(step(&a), Step::Running);
    // Another emergency's news changes nothing here.
    let mut other = emergency(EmergencyStatus::Approved, &["x", "y"]);
    other.id = "ER-20261127120001".into();
    a.record(&Event::Emergency { emergency: Box::new(other), message: "approved".into() });
    assert!(a.take_pending().is_empty());
    a.record(&Event::Emergency {
        emergency: Box::new(emergency(EmergencyStatus::Completed, &["bob", "carol"])),
        message: "completed".into(),
    });
    assert_eq!(step(&a), Step::Outcome);
    press(&mut a, KeyCode::Enter);
    assert!(a.wizard.is_none(), "enter closes the outcome");
}

#[test]
fn esc_asks_before_abandoning_and_no_keeps_what_was_typed() {
    let mut a = app();
    typed(&mut a, "n");
    press(&mut a, KeyCode::Enter);
    press(&mut a, KeyCode::Enter);
    typed(&mut a, "half a sentence");
    press(&mut a, KeyCode::Esc);
    let Mode::Confirm(c) = &a.mode else { panic!("{:?}", a.mode) };
    assert!(c.body.contains("Nothing has been created"), "{}", c.body);
    press(&mut a, KeyCode::Char('n'));
    assert_eq!(a.wizard.as_ref().unwrap().description.value(), "half a sentence");
    press(&mut a, KeyCode::Esc);
    let effects = press(&mut a, KeyCode::Char('y'));
    assert!(effects.is_empty() && a.wizard.is_none(), "{effects:?}");
}

#[test]
fn left_goes_back_a_step_and_the_pane_keys_still_work_on_list_steps() {
    let mut a = app();
    typed(&mut a, "n");
    press(&mut a, KeyCode::Enter);
    assert_eq!(step(&a), Step::Severity);
    press(&mut a, KeyCode::Left);
    assert_eq!(step(&a), Step::Type);
    typed(&mut a, "1");
    assert_eq!(a.pane, Pane::Environments, "global keys work on a list step");
    a.pane = Pane::Emergency;
    assert_eq!(step(&a), Step::Type, "the wizard kept its place");
}

#[test]
fn a_p0_runs_as_soon_as_it_is_created() {
    let mut a = app();
    typed(&mut a, "n");
    press(&mut a, KeyCode::Enter);
    press(&mut a, KeyCode::Up); // P0
    press(&mut a, KeyCode::Enter);
    typed(&mut a, "the whole site is down");
    press(&mut a, KeyCode::Enter);
    press(&mut a, KeyCode::Char(' '));
    press(&mut a, KeyCode::Enter);
    typed(&mut a, "1.5.0");
    press(&mut a, KeyCode::Enter);
    press(&mut a, KeyCode::Enter);
    let Mode::Confirm(c) = &a.mode else { panic!("{:?}", a.mode) };
    assert!(c.body.contains("P0 needs no approval") && c.body.contains("prod → staging → dev"), "{}", c.body);
    press(&mut a, KeyCode::Char('y'));
    let mut e = emergency(EmergencyStatus::Approved, &[]);
    e.severity = Severity::P0;
    e.kind = EmergencyType::SecurityPatch;
    e.description = "the whole site is down".into();
    a.record(&Event::Emergency { emergency: Box::new(e), message: "created".into() });
    assert!(matches!(&a.take_pending()[..], [Effect::Execute(Command::ExecuteEmergency { .. })]));
}

#[test]
fn an_emergency_in_the_list_is_approved_after_a_confirmation() {
    let mut a = app();
    a.snapshot.emergencies = vec![emergency(EmergencyStatus::PendingApproval, &["bob"])];
    typed(&mut a, "A");
    let Mode::Confirm(c) = &a.mode else { panic!("{:?}", a.mode) };
    assert!(c.body.contains("ER-20261127120000") && c.body.contains("other than alice"), "{}", c.body);
    let effects = press(&mut a, KeyCode::Char('y'));
    assert!(matches!(&effects[..], [Effect::Execute(Command::ApproveEmergency { id })] if id == "ER-20261127120000"));
}

#[test]
fn n_and_a_do_not_replace_or_approve_while_the_wizard_is_open() {
    let mut a = app();
    a.snapshot.emergencies = vec![emergency(EmergencyStatus::PendingApproval, &["bob"])];
    typed(&mut a, "n");
    press(&mut a, KeyCode::Down);
    typed(&mut a, "n");
    assert_eq!(a.wizard.as_ref().unwrap().kind, 1, "the wizard kept what was chosen");
    let effects = a.on_key(KeyEvent::new(KeyCode::Char('A'), KeyModifiers::NONE));
    assert!(effects.is_empty() && !matches!(a.mode, Mode::Confirm(_)), "{effects:?}");
    assert!(a.message.clone().unwrap().0.contains("esc leaves the wizard"));
}

#[test]
fn the_live_log_always_shows_its_newest_line() {
    use ratatui::{Terminal, backend::TestBackend};
    let mut e = emergency(EmergencyStatus::Executing, &["bob", "carol"]);
    e.log = (0..100)
        .map(|i| crate::model::EmergencyLogEntry {
            at: chrono::Utc::now(),
            step: "tests payments".into(),
            ok: true,
            message: format!("line {i}: {}", "a long line of test output that wraps ".repeat(4)),
        })
        .collect();
    for (w, h) in [(80, 24), (160, 48)] {
        let mut a = app();
        a.wizard = Some(super::wizard::Wizard::follow(e.clone()));
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|f| super::view::draw(f, &a)).unwrap();
        let screen: String = term.backend().buffer().content().iter().map(|c| c.symbol()).collect();
        assert!(screen.contains("line 99:"), "{w}×{h}: the newest line is on screen");
        assert!(screen.contains("line 98:"), "{w}×{h}: and the one before it");
    }
}
