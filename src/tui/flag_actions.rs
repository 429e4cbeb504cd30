//! What the Flags pane's keys and the palette's `flags …` lines do: changes go to the engine
//! after a confirmation; reads (`eval`, `preview`, `show`) are answered from the snapshot's flag
//! document without touching a backend.

use crate::cli::flags::FlagsCmd;
use crate::config::keymap::Action;
use crate::engine::Command;
use crate::flags::{FlagSet, preview};

use super::app::{App, Effect, Pane, Tone};

impl App {
    /// The key of the flag under the cursor in the Flags pane.
    pub fn selected_flag(&self) -> Option<String> {
        self.visible_flags().get(self.sel_flag).map(|f| f.key.clone())
    }

    pub(super) fn flag_action(&mut self, action: Action) -> Vec<Effect> {
        let Some(flag) = self.visible_flags().get(self.sel_flag).map(|f| (*f).clone()) else {
            self.message = Some(("no flag selected".into(), Tone::Error));
            return Vec::new();
        };
        let key = flag.key.clone();
        // Where rollouts and experiments are judged: the selected app and environment.
        let target = self.selected_target();
        let (app, env) = target.map(|t| (t.app, t.env)).unwrap_or_default();
        match action {
            Action::ToggleFlag => {
                let command = Command::SetFlag { key, enabled: !flag.enabled };
                let body = describe_change(&command, self.snapshot.flag_set.as_ref());
                self.request(command, Some(body))
            }
            Action::FlagPercentUp | Action::FlagPercentDown => {
                let Some(now) = flag.rollout else {
                    self.message = Some((
                        format!("{key} has no percentage rollout to change; `w` sets weights, `r` rolls it out"),
                        Tone::Error,
                    ));
                    return Vec::new();
                };
                let step = 5;
                let percent =
                    if action == Action::FlagPercentUp { (now + step).min(100) } else { now.saturating_sub(step) };
                self.request(Command::SetFlagRollout { key, percent }, None)
            }
            Action::FlagRollout => {
                self.open_palette(&format!(
                    "flags rollout {key} --app {app} --env {env} --stages 10:1h,25:1h,50:2h,100"
                ));
                Vec::new()
            }
            Action::FlagExperiment => {
                self.open_palette(&format!(
                    "flags experiment {key} --app {app} --env {env} --control off --treatment on --duration 30m --hypothesis "
                ));
                Vec::new()
            }
            Action::FlagTarget => {
                let serve = if flag.variants.iter().any(|v| v == "on") { "on" } else { &flag.default_variant };
                self.open_palette(&format!("flags target {key} --serve {serve} --rule "));
                Vec::new()
            }
            Action::FlagWeights => {
                let n = flag.variants.len().max(1) as u32;
                let split: Vec<String> = flag
                    .variants
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("{v}={}", 100 / n + u32::from((i as u32) < 100 % n)))
                    .collect();
                self.open_palette(&format!("flags weights {key} {}", split.join(" ")));
                Vec::new()
            }
            _ => {
                self.open_palette(&format!("flags eval {key} --context targetingKey=user-1"));
                Vec::new()
            }
        }
    }

    /// A palette `flags …` line that only reads: answered here, from the snapshot.
    pub(super) fn flag_read(&mut self, cmd: &FlagsCmd) {
        let Some(set) = self.snapshot.flag_set.clone() else {
            self.message = Some(("the flag file could not be read; see the Events pane".into(), Tone::Error));
            return;
        };
        let Some(key) = cmd.flag() else {
            self.pane = Pane::Flags;
            return;
        };
        if set.flag(key).is_none() {
            self.message = Some((format!("no flag named `{key}` (flags: {})", set.keys().join(", ")), Tone::Error));
            return;
        }
        self.message = Some(match cmd {
            FlagsCmd::Eval { context, .. } => {
                match preview::context_from_pairs(context).and_then(|c| preview::describe(&set, key, &c)) {
                    Ok(text) => (format!("{key} for {}: {text}", context.join(" ")), Tone::Info),
                    Err(e) => (e, Tone::Error),
                }
            }
            FlagsCmd::Preview { sample: 0, .. } => ("--sample must be at least 1".into(), Tone::Error),
            FlagsCmd::Preview { sample, .. } => match preview::shares(&set, key, *sample) {
                Ok(shares) => {
                    let parts: Vec<String> = shares.iter().map(|(v, p)| format!("{v} {p:.1}%")).collect();
                    (format!("{key} over {sample} synthetic users: {}", parts.join(" · ")), Tone::Info)
                }
                Err(e) => (e, Tone::Error),
            },
            _ => {
                self.select_flag(key);
                (format!("{key}: its definition, traffic and latest changes are below the list"), Tone::Info)
            }
        });
    }

    fn select_flag(&mut self, key: &str) {
        self.pane = Pane::Flags;
        if !self.visible_flags().iter().any(|f| f.key == key) {
            self.filter.clear();
        }
        if let Some(i) = self.visible_flags().iter().position(|f| f.key == key) {
            self.sel_flag = i;
        }
    }
}

/// What a confirmation says a flag change will do.
pub fn describe_change(command: &Command, set: Option<&FlagSet>) -> String {
    match command {
        Command::SetFlag { key, enabled: false } => {
            let dependents = set.map(|s| s.enabled_dependents(key)).unwrap_or_default();
            let also = if dependents.is_empty() {
                String::new()
            } else {
                format!(" These flags depend on it and stay on: {}.", dependents.join(", "))
            };
            format!("Turn flag {key} off: every user gets the default variant.{also}")
        }
        Command::SetFlag { key, enabled: true } => format!("Turn flag {key} on: its targeting applies again."),
        Command::SetFlagRollout { key, percent } => format!("Give {percent}% of users flag {key}'s `on` variant."),
        Command::EditFlag { key, edit } => format!("Flag {key}: {}.", edit.action()),
        Command::FlagRollout { key, app, env, stages, .. } => {
            let stages = match stages {
                Some(s) => s.iter().map(|s| format!("{}%", s.percent)).collect::<Vec<_>>().join(" → "),
                None => "10% → 25% → 50% → 100%".into(),
            };
            format!(
                "Roll flag {key} out in stages ({stages}) judged on {app}'s traffic in {env}; \
                 a failed stage turns it back to how it is now."
            )
        }
        Command::FlagExperiment { key, app, env, control, treatment, duration_secs, .. } => format!(
            "Split users 50/50 between {control} and {treatment} of flag {key} for {} on {app}'s traffic in {env}; \
             it stops early if {treatment} does harm, and the flag is put back afterwards.",
            crate::model::HumanDuration::from_secs(*duration_secs)
        ),
        other => format!("Run `{}`.", other.name()),
    }
}
