//! The Emergency pane's keys: open the hotfix wizard, follow or approve an emergency from the
//! list, and pass keys to the wizard while it is open.

use crossterm::event::KeyEvent;

use crate::config::keymap::{Action, Context};
use crate::engine::Command;

use super::app::{App, Confirm, Effect, Mode, Tone};
use super::wizard::{Outcome, Wizard};

impl App {
    pub(super) fn emergency_action(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::NewEmergency if self.wizard.is_some() => {
                self.message = Some(("the hotfix wizard is open; esc leaves it first".into(), Tone::Error));
                Vec::new()
            }
            Action::Approve if self.wizard.is_some() => {
                self.message = Some(("approve from the list: esc leaves the wizard first".into(), Tone::Error));
                Vec::new()
            }
            Action::NewEmergency => {
                let versions = self
                    .snapshot
                    .apps
                    .iter()
                    .map(|a| (a.clone(), super::palette::versions(&self.snapshot, a)))
                    .collect();
                self.wizard = Some(Wizard::new(&self.snapshot.apps, versions, self.snapshot.emergency_plans.clone()));
                self.message = None;
                Vec::new()
            }
            Action::Select => {
                if let Some(e) = self.snapshot.emergencies.get(self.sel_emergency) {
                    self.wizard = Some(Wizard::follow(e.clone()));
                }
                Vec::new()
            }
            Action::Approve => match self.snapshot.emergencies.get(self.sel_emergency) {
                Some(e) => {
                    let body = format!(
                        "Approve emergency {} ({} {}: {} of {})? P1 and P2 need two approvals from people other than {}.",
                        e.id,
                        e.severity.name(),
                        e.kind.name().replace('_', " "),
                        e.fix_version,
                        e.affected_services.join(", "),
                        e.requested_by
                    );
                    self.request(Command::ApproveEmergency { id: e.id.clone() }, Some(body))
                }
                None => {
                    self.message = Some(("no emergency to approve; `n` starts one".into(), Tone::Error));
                    Vec::new()
                }
            },
            _ => Vec::new(),
        }
    }

    /// Keys while the wizard is open: its own, else the pane's and the global ones.
    pub(super) fn on_wizard_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(wizard) = self.wizard.as_mut() else { return Vec::new() };
        let own = match wizard.context() {
            Context::Input => true,
            ctx => matches!(
                self.keymap.action(ctx, &key),
                Some(Action::Up | Action::Down | Action::Left | Action::Mark | Action::Select | Action::Back)
            ),
        };
        if !own {
            return match self.keymap.action(Context::Emergency, &key) {
                Some(action) => self.on_action(action),
                None => Vec::new(),
            };
        }
        match wizard.on_key(key, &self.keymap) {
            Outcome::Nothing => Vec::new(),
            Outcome::Close => {
                self.wizard = None;
                Vec::new()
            }
            Outcome::ConfirmAbandon(body) => {
                self.mode =
                    Mode::Confirm(Confirm { title: "leave the wizard?".into(), body, effect: Effect::CloseWizard });
                Vec::new()
            }
            Outcome::Confirm { title, body, command } => {
                if self.readonly {
                    self.message = Some(("read-only: an emergency would change the estate".into(), Tone::Error));
                    return Vec::new();
                }
                self.mode = Mode::Confirm(Confirm { title, body, effect: Effect::Execute(command) });
                Vec::new()
            }
        }
    }

    /// A confirmation said yes: what it confirmed happens.
    pub(super) fn confirmed(&mut self, effect: Effect) -> Vec<Effect> {
        match effect {
            Effect::CloseWizard => {
                self.wizard = None;
                self.message = Some(("left the hotfix wizard".into(), Tone::Info));
                Vec::new()
            }
            Effect::Execute(c @ Command::CreateEmergency { .. }) => {
                if let Some(w) = self.wizard.as_mut() {
                    w.created();
                }
                vec![Effect::Execute(c)]
            }
            other => vec![other],
        }
    }

    /// Commands engine events called for since the last call.
    pub fn take_pending(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.pending)
    }
}
