//! The emergency hotfix wizard in the Emergency pane: type → severity → description → affected
//! services → fix version → plan → (one confirmation) → approvals as they arrive → execution with
//! its live log → outcome. Every field is checked where it is entered; nothing is created or run
//! before the confirmation on the plan, and the fix executes by itself once its approvals are in.

use crossterm::event::{Event as TermEvent, KeyEvent};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

use crate::config::keymap::{Action, Context, Keymap};
use crate::engine::Command;
use crate::model::{Emergency, EmergencyPlan, EmergencyStatus, EmergencyType, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Type,
    Severity,
    Description,
    Services,
    Version,
    Plan,
    /// Created; waiting for approvals (or for the engine to start it).
    Approvals,
    Running,
    Outcome,
}

impl Step {
    pub const FORM: [Step; 6] =
        [Step::Type, Step::Severity, Step::Description, Step::Services, Step::Version, Step::Plan];

    pub fn title(self) -> &'static str {
        match self {
            Step::Type => "type",
            Step::Severity => "severity",
            Step::Description => "description",
            Step::Services => "affected services",
            Step::Version => "fix version",
            Step::Plan => "plan",
            Step::Approvals => "approvals",
            Step::Running => "execution",
            Step::Outcome => "outcome",
        }
    }

    /// Steps whose keys are typed text.
    pub fn is_text(self) -> bool {
        matches!(self, Step::Description | Step::Version)
    }
}

/// What a key in the wizard asks the console to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Nothing,
    /// Ask before closing the wizard (what the body says is lost or goes on).
    ConfirmAbandon(String),
    /// Ask, then send this command (the creation on the plan step).
    Confirm {
        title: String,
        body: String,
        command: Command,
    },
    /// Close without asking (after the outcome).
    Close,
}

#[derive(Debug, Clone)]
pub struct Wizard {
    pub step: Step,
    pub kind: usize,
    pub severity: usize,
    pub description: Input,
    /// Every app of the estate and whether it is affected.
    pub services: Vec<(String, bool)>,
    pub service_cursor: usize,
    pub version: Input,
    /// Why the current step cannot go on yet.
    pub error: Option<String>,
    /// The plan per severity, as the estate sets it.
    pub plans: Vec<(Severity, EmergencyPlan)>,
    /// Known versions per app, for checking the fix version.
    pub versions: Vec<(String, Vec<String>)>,
    /// Once created: the emergency as the engine last reported it.
    pub emergency: Option<Emergency>,
    /// The execution was asked for.
    pub executing: bool,
}

impl Wizard {
    pub fn new(apps: &[String], versions: Vec<(String, Vec<String>)>, plans: Vec<(Severity, EmergencyPlan)>) -> Self {
        Wizard {
            step: Step::Type,
            kind: 0,
            severity: 1,
            description: Input::default(),
            services: apps.iter().map(|a| (a.clone(), false)).collect(),
            service_cursor: 0,
            version: Input::default(),
            error: None,
            plans,
            versions,
            emergency: None,
            executing: false,
        }
    }

    /// A wizard that follows an existing emergency (opened from the pane's list).
    pub fn follow(emergency: Emergency) -> Self {
        let mut w = Wizard::new(&[], Vec::new(), Vec::new());
        w.step = step_for(emergency.status);
        w.executing =
            emergency.status != EmergencyStatus::PendingApproval && emergency.status != EmergencyStatus::Approved;
        w.emergency = Some(emergency);
        w
    }

    pub fn kind(&self) -> EmergencyType {
        EmergencyType::ALL[self.kind.min(EmergencyType::ALL.len() - 1)]
    }

    pub fn severity(&self) -> Severity {
        Severity::ALL[self.severity.min(Severity::ALL.len() - 1)]
    }

    pub fn plan(&self) -> EmergencyPlan {
        let sev = self.severity();
        self.plans
            .iter()
            .find(|(s, _)| *s == sev)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| EmergencyPlan::standard(sev))
    }

    pub fn affected(&self) -> Vec<String> {
        self.services.iter().filter(|(_, on)| *on).map(|(a, _)| a.clone()).collect()
    }

    /// Which keymap context the current step reads keys in.
    pub fn context(&self) -> Context {
        if self.step.is_text() { Context::Input } else { Context::Emergency }
    }

    pub fn on_key(&mut self, key: KeyEvent, keymap: &Keymap) -> Outcome {
        let action = keymap.action(self.context(), &key);
        if action == Some(Action::Back) {
            return match self.step {
                Step::Outcome => Outcome::Close,
                s if Step::FORM.contains(&s) => Outcome::ConfirmAbandon(
                    "Leave the hotfix wizard? Nothing has been created; what you entered is lost.".into(),
                ),
                _ => Outcome::ConfirmAbandon(format!(
                    "Leave the wizard? Emergency {} stays as it is{}; follow it with `shipdeck emergency show {}`.",
                    self.id(),
                    if self.executing { " and its execution goes on" } else { "" },
                    self.id()
                )),
            };
        }
        match self.step {
            Step::Description | Step::Version => {
                if action == Some(Action::Select) {
                    return self.next();
                }
                let input = if self.step == Step::Description { &mut self.description } else { &mut self.version };
                input.handle_event(&TermEvent::Key(key));
                self.error = None;
                Outcome::Nothing
            }
            _ => match action {
                Some(Action::Up) => {
                    self.move_cursor(-1);
                    Outcome::Nothing
                }
                Some(Action::Down) => {
                    self.move_cursor(1);
                    Outcome::Nothing
                }
                Some(Action::Left) => {
                    self.back();
                    Outcome::Nothing
                }
                Some(Action::Mark) if self.step == Step::Services => {
                    if let Some((_, on)) = self.services.get_mut(self.service_cursor) {
                        *on = !*on;
                    }
                    self.error = None;
                    Outcome::Nothing
                }
                Some(Action::Select) => self.next(),
                _ => Outcome::Nothing,
            },
        }
    }

    fn move_cursor(&mut self, by: isize) {
        let (cursor, len) = match self.step {
            Step::Type => (&mut self.kind, EmergencyType::ALL.len()),
            Step::Severity => (&mut self.severity, Severity::ALL.len()),
            Step::Services => (&mut self.service_cursor, self.services.len()),
            _ => return,
        };
        *cursor = (*cursor as isize + by).clamp(0, len.saturating_sub(1) as isize) as usize;
    }

    /// One form step back (left arrow on a list step).
    fn back(&mut self) {
        if let Some(i) = Step::FORM.iter().position(|s| *s == self.step).filter(|i| *i > 0) {
            self.step = Step::FORM[i - 1];
            self.error = None;
        }
    }

    /// Check the current step and go on; the plan step asks for the one confirmation.
    fn next(&mut self) -> Outcome {
        self.error = self.check();
        if self.error.is_some() {
            return Outcome::Nothing;
        }
        self.step = match self.step {
            Step::Type => Step::Severity,
            Step::Severity => Step::Description,
            Step::Description => Step::Services,
            Step::Services => Step::Version,
            Step::Version => Step::Plan,
            Step::Plan => {
                let plan = self.plan();
                let sev = self.severity();
                let then = if plan.approval_required {
                    format!(
                        "It waits for {} approvals from people other than you (`shipdeck emergency approve ID`), then runs by itself.",
                        plan.approvals_needed
                    )
                } else {
                    "P0 needs no approval: it runs at once and everyone on the P0 route is notified.".to_string()
                };
                return Outcome::Confirm {
                    title: format!("{} {} emergency", sev.name(), self.kind().name().replace('_', " ")),
                    body: format!(
                        "Create it and ship {} of {} to {} in that order ({} plan). The build and the critical test suites run first; any failure rolls back what it changed. {then}",
                        self.version.value().trim(),
                        self.affected().join(", "),
                        plan.environments.join(" → "),
                        plan.strategy,
                    ),
                    command: Command::CreateEmergency {
                        kind: self.kind(),
                        severity: sev,
                        description: self.description.value().trim().to_string(),
                        affected_services: self.affected(),
                        fix_version: self.version.value().trim().to_string(),
                    },
                };
            }
            Step::Outcome => return Outcome::Close,
            other => other,
        };
        Outcome::Nothing
    }

    /// Why the current step's value is not acceptable, if it is not.
    fn check(&self) -> Option<String> {
        match self.step {
            Step::Description => {
                let d = self.description.value().trim();
                (d.chars().count() < 10).then(|| {
                    "describe what is broken in at least 10 characters: the approvers and the report read it".into()
                })
            }
            Step::Services => self.affected().is_empty().then(|| "mark at least one service with space".into()),
            Step::Version => {
                let v = self.version.value().trim();
                if v.is_empty() {
                    return Some("type the version that carries the fix".into());
                }
                for app in self.affected() {
                    let known = self.versions.iter().find(|(a, _)| *a == app).map(|(_, v)| v.as_slice()).unwrap_or(&[]);
                    if !known.iter().any(|k| k == v) {
                        return Some(format!("{app} has no version {v} in the estate (known: {})", known.join(", ")));
                    }
                }
                None
            }
            _ => None,
        }
    }

    pub fn id(&self) -> String {
        self.emergency.as_ref().map(|e| e.id.clone()).unwrap_or_else(|| "(not created)".into())
    }

    /// The confirmation on the plan was given and the creation sent.
    pub fn created(&mut self) {
        self.step = Step::Approvals;
    }

    /// Take in an emergency the engine reported. Returns the execution to start when this one
    /// is ours and has its approvals.
    pub fn on_emergency(&mut self, e: &Emergency) -> Option<Command> {
        let ours = match &self.emergency {
            Some(mine) => mine.id == e.id,
            // The one this wizard created: created after the confirmation, with what was entered.
            None => {
                self.step == Step::Approvals
                    && e.description == self.description.value().trim()
                    && e.fix_version == self.version.value().trim()
                    && e.affected_services == self.affected()
            }
        };
        if !ours {
            return None;
        }
        self.emergency = Some(e.clone());
        self.step = step_for(e.status);
        if e.status == EmergencyStatus::Approved && !self.executing {
            self.executing = true;
            self.step = Step::Running;
            return Some(Command::ExecuteEmergency { id: e.id.clone() });
        }
        None
    }
}

fn step_for(status: EmergencyStatus) -> Step {
    match status {
        EmergencyStatus::PendingApproval | EmergencyStatus::Approved => Step::Approvals,
        EmergencyStatus::Executing => Step::Running,
        _ => Step::Outcome,
    }
}
