//! The console's state and what keys do to it. Pure: keys in, [`Effect`]s out; the event loop
//! carries effects to the engine, so this file never blocks and is tested without a terminal.

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

use super::palette::{self, PaletteAction};
use super::snapshot::{LogLine, Snapshot, WorkloadView};
use crate::cluster::Target;
use crate::config::keymap::{Action, Context, Keymap};
use crate::config::theme::Theme;
use crate::engine::{Command, Event};
use crate::model::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Environments,
    Rollout,
    Analysis,
    Flags,
    Emergency,
    Events,
    Argo,
}

impl Pane {
    pub const ALL: [Pane; 7] =
        [Pane::Environments, Pane::Rollout, Pane::Analysis, Pane::Flags, Pane::Emergency, Pane::Events, Pane::Argo];

    pub fn name(self) -> &'static str {
        match self {
            Pane::Environments => "environments",
            Pane::Rollout => "rollout",
            Pane::Analysis => "analysis",
            Pane::Flags => "flags",
            Pane::Emergency => "emergency",
            Pane::Events => "events",
            Pane::Argo => "argo",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Pane::Environments => "Environments",
            Pane::Rollout => "Rollout",
            Pane::Analysis => "Canary analysis",
            Pane::Flags => "Flags",
            Pane::Emergency => "Emergency",
            Pane::Events => "Events",
            Pane::Argo => "Argo Rollouts",
        }
    }

    /// For the header on narrow terminals.
    pub fn short(self) -> &'static str {
        match self {
            Pane::Environments => "Envs",
            Pane::Analysis => "Analysis",
            // Seven panes fit 80 columns.
            Pane::Emergency => "Emerg",
            Pane::Argo => "Argo",
            other => other.title(),
        }
    }

    pub fn context(self) -> Context {
        match self {
            Pane::Environments => Context::Environments,
            Pane::Rollout => Context::Rollout,
            Pane::Analysis => Context::Analysis,
            Pane::Flags => Context::Flags,
            Pane::Emergency => Context::Emergency,
            Pane::Events => Context::Events,
            Pane::Argo => Context::Argo,
        }
    }

    fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// A destructive command waiting for a yes.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    pub title: String,
    pub body: String,
    /// What a yes does.
    pub effect: Effect,
}

#[derive(Debug, Clone)]
pub enum Mode {
    Normal,
    Palette { input: Input, history_pos: Option<usize>, candidates: Vec<String> },
    Filter { input: Input },
    Confirm(Confirm),
    Help,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Info,
    Ok,
    Error,
}

/// What the event loop must do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Execute(Command),
    Quit,
    /// Close the hotfix wizard (after its confirmation); the event loop has nothing to do.
    CloseWizard,
}

pub struct App {
    pub snapshot: Snapshot,
    pub pane: Pane,
    pub mode: Mode,
    pub sel_app: usize,
    pub sel_env: usize,
    pub sel_flag: usize,
    /// Lines scrolled up from the newest event.
    pub events_scroll: usize,
    /// The `/` filter, and the pane it filters (each list keeps its own meaning of a row).
    pub filter: String,
    pub filter_pane: Pane,
    pub history: Vec<String>,
    pub message: Option<(String, Tone)>,
    pub readonly: bool,
    pub theme: Theme,
    pub keymap: Keymap,
    /// Engine events seen since start, oldest first (bounded).
    pub live: Vec<LogLine>,
    /// The latest word of each flag's progressive rollout or experiment: (finished, ok, message).
    pub flag_progress: std::collections::BTreeMap<String, (bool, bool, String)>,
    /// The hotfix wizard, while it is open in the Emergency pane.
    pub wizard: Option<super::wizard::Wizard>,
    /// The emergency under the cursor in the Emergency pane's list.
    pub sel_emergency: usize,
    /// The Argo Rollout under the cursor in the Argo Rollouts pane (of the selected environment).
    pub sel_argo: usize,
    /// Commands an engine event calls for (the wizard's execution once approved), for the
    /// event loop to send.
    pub pending: Vec<Effect>,
}

const LIVE_LIMIT: usize = 5_000;

impl App {
    pub fn new(snapshot: Snapshot, theme: Theme, keymap: Keymap, readonly: bool) -> Self {
        let mut app = Self {
            snapshot,
            pane: Pane::Environments,
            mode: Mode::Normal,
            sel_app: 0,
            sel_env: 0,
            sel_flag: 0,
            events_scroll: 0,
            filter: String::new(),
            filter_pane: Pane::Environments,
            history: Vec::new(),
            message: None,
            readonly,
            theme,
            keymap,
            live: Vec::new(),
            flag_progress: Default::default(),
            wizard: None,
            sel_emergency: 0,
            sel_argo: 0,
            pending: Vec::new(),
        };
        if readonly {
            app.message = Some(("read-only: every change is refused".into(), Tone::Info));
        }
        app
    }

    pub fn selected_target(&self) -> Option<Target> {
        let app = self.visible_apps().get(self.sel_app).cloned()?;
        let env = self.snapshot.envs.get(self.sel_env)?;
        Some(Target::new(env, &app))
    }

    pub fn selected(&self) -> Option<&WorkloadView> {
        self.selected_target().and_then(|t| self.snapshot.workloads.get(&t))
    }

    /// The filter of `pane`, empty when the filter belongs to another pane.
    pub fn filter_on(&self, pane: Pane) -> &str {
        if self.filter_pane == pane { &self.filter } else { "" }
    }

    /// Apps that pass the environments pane's filter. The selection indexes this list on every
    /// pane, so the rollout pane acts on the app that was selected.
    pub fn visible_apps(&self) -> Vec<String> {
        let f = self.filter_on(Pane::Environments).to_lowercase();
        self.snapshot.apps.iter().filter(|a| f.is_empty() || a.to_lowercase().contains(&f)).cloned().collect()
    }

    /// The selected environment's Argo Rollouts that pass the Argo pane's filter.
    pub fn visible_rollouts(&self) -> Vec<&crate::cluster::kube::argo::ArgoRollout> {
        let f = self.filter_on(Pane::Argo).to_lowercase();
        let Some(view) = self.snapshot.envs.get(self.sel_env).and_then(|e| self.snapshot.argo.get(e)) else {
            return Vec::new();
        };
        view.rollouts.iter().filter(|r| f.is_empty() || r.name.to_lowercase().contains(&f)).collect()
    }

    pub fn visible_flags(&self) -> Vec<&crate::flags::FlagView> {
        let f = self.filter_on(Pane::Flags).to_lowercase();
        self.snapshot
            .flags
            .iter()
            .filter(|x| f.is_empty() || x.key.to_lowercase().contains(&f) || x.description.to_lowercase().contains(&f))
            .collect()
    }

    /// The newest `n` lines of the audit log and live events that pass the filter, after
    /// skipping the newest `skip`, oldest first; and how many lines pass in all. Both lists are
    /// in time order, so they merge from the back without sorting 50,000 lines a frame.
    pub fn log_tail(&self, n: usize, skip: usize) -> (Vec<&LogLine>, usize) {
        let f = self.filter_on(Pane::Events).to_lowercase();
        // This runs over every line while a filter is set (50,000 of them, each frame): a line
        // without capitals is searched as it is, others are folded into one reused buffer.
        let mut folded = String::new();
        let mut pass = |l: &LogLine| {
            if f.is_empty() {
                return true;
            }
            let text = &l.text;
            let hit = if !text.is_ascii() {
                text.to_lowercase().contains(&f)
            } else if !text.bytes().fold(false, |upper, b| upper | b.is_ascii_uppercase()) {
                text.contains(&f)
            } else {
                folded.clear();
                folded.push_str(text);
                folded.make_ascii_lowercase();
                folded.contains(&f)
            };
            // The length check spares reading the kind for most lines.
            hit || (l.kind.len() >= f.len() && l.kind.contains(&f))
        };
        let (mut a, mut b) = (self.snapshot.log.iter().rev().peekable(), self.live.iter().rev().peekable());
        let mut out = Vec::new();
        let mut matched = 0;
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => {
                    if x.at >= y.at {
                        a.next()
                    } else {
                        b.next()
                    }
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            let Some(line) = next else { break };
            if !pass(line) {
                continue;
            }
            matched += 1;
            if matched > skip && out.len() < n {
                out.push(line);
            }
            if out.len() >= n && f.is_empty() {
                matched = self.snapshot.log.len() + self.live.len();
                break;
            }
        }
        out.reverse();
        (out, matched)
    }

    pub fn set_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshot = snapshot;
        self.sel_app = self.sel_app.min(self.visible_apps().len().saturating_sub(1));
        self.sel_env = self.sel_env.min(self.snapshot.envs.len().saturating_sub(1));
        self.sel_flag = self.sel_flag.min(self.visible_flags().len().saturating_sub(1));
        self.sel_argo = self.sel_argo.min(self.visible_rollouts().len().saturating_sub(1));
    }

    /// Keep a readable line of an engine event for the Events pane.
    pub fn record(&mut self, event: &Event) {
        let (kind, text) = match event {
            Event::Release { release, cause } => ("release", format!("{} {}: {cause}", release.id, release.status)),
            Event::Step { release_id, index, total, description } => {
                ("step", format!("{release_id} step {}/{total} {description}", index + 1))
            }
            Event::Measurement { measurement: m } => {
                ("analysis", format!("{} {:?}: {}", m.release_id, m.verdict, m.detail).to_lowercase())
            }
            Event::Check { release_id, result } => (
                "check",
                format!(
                    "{release_id} {} {}: {}",
                    result.name,
                    if result.passed { "passed" } else { "failed" },
                    result.detail
                ),
            ),
            Event::Note { message, .. } => ("note", message.clone()),
            Event::Flag { flag, by } => {
                ("flag", format!("{} {} by {by}", flag.key, if flag.enabled { "on" } else { "off" }))
            }
            Event::FlagRollout { key, finished, ok, message } => {
                self.flag_progress.insert(key.clone(), (*finished, *ok, message.clone()));
                ("flag", message.clone())
            }
            Event::Experiment { result } => ("flag", format!("experiment on {}: {}", result.flag, result.conclusion)),
            Event::Emergency { emergency, message } => {
                if let Some(command) = self.wizard.as_mut().and_then(|w| w.on_emergency(emergency)) {
                    self.pending.push(Effect::Execute(command));
                }
                ("emergency", format!("{} {message}", emergency.id))
            }
            Event::Finished { .. } => return,
        };
        self.live.push(LogLine { at: chrono::Utc::now(), kind: kind.into(), text });
        if self.live.len() > LIVE_LIMIT {
            self.live.drain(..self.live.len() - LIVE_LIMIT);
        }
    }

    pub fn context(&self) -> Context {
        match self.mode {
            Mode::Confirm(_) => Context::Dialog,
            Mode::Palette { .. } | Mode::Filter { .. } => Context::Input,
            _ => match &self.wizard {
                Some(w) if self.pane == Pane::Emergency => w.context(),
                _ => self.pane.context(),
            },
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Confirm(c) => match self.keymap.action(Context::Dialog, &key) {
                Some(Action::Select) => {
                    self.message = Some((format!("{}…", c.title), Tone::Info));
                    return self.confirmed(c.effect);
                }
                Some(Action::Back) => self.message = Some(("cancelled; nothing changed".into(), Tone::Info)),
                _ => self.mode = Mode::Confirm(c),
            },
            Mode::Help => {
                let a = self.keymap.action(self.pane.context(), &key);
                if !matches!(a, Some(Action::Back | Action::Help | Action::Quit | Action::Select)) {
                    self.mode = Mode::Help;
                }
            }
            Mode::Filter { mut input } => match self.keymap.action(Context::Input, &key) {
                Some(Action::Select) => self.filter = input.value().to_string(),
                Some(Action::Back) => self.filter.clear(),
                _ => {
                    input.handle_event(&TermEvent::Key(key));
                    self.filter = input.value().to_string();
                    self.mode = Mode::Filter { input };
                }
            },
            Mode::Palette { input, history_pos, candidates } => {
                return self.on_palette_key(key, input, history_pos, candidates);
            }
            Mode::Normal => {
                if self.pane == Pane::Emergency && self.wizard.is_some() {
                    return self.on_wizard_key(key);
                }
                if let Some(action) = self.keymap.action(self.pane.context(), &key) {
                    return self.on_action(action);
                }
            }
        }
        Vec::new()
    }

    fn on_palette_key(
        &mut self,
        key: KeyEvent,
        mut input: Input,
        mut pos: Option<usize>,
        mut candidates: Vec<String>,
    ) -> Vec<Effect> {
        if key.code == KeyCode::Tab {
            candidates = palette::complete(input.value(), &self.snapshot);
            if candidates.len() == 1 {
                input = Input::new(palette::apply_completion(input.value(), &candidates[0]));
                candidates = palette::complete(input.value(), &self.snapshot);
            }
            self.mode = Mode::Palette { input, history_pos: pos, candidates };
            return Vec::new();
        }
        match self.keymap.action(Context::Input, &key) {
            Some(Action::Select) => {
                let line = input.value().trim().to_string();
                if line.is_empty() {
                    return Vec::new();
                }
                self.history.retain(|h| h != &line);
                self.history.push(line.clone());
                return match palette::parse(&line, &self.snapshot) {
                    Ok(action) => self.on_palette_action(action),
                    Err(e) => {
                        self.message = Some((e, Tone::Error));
                        Vec::new()
                    }
                };
            }
            Some(Action::Back) => return Vec::new(),
            Some(a @ (Action::Up | Action::Down)) if !self.history.is_empty() => {
                let last = self.history.len() - 1;
                pos = Some(match (a, pos) {
                    (Action::Up, None) => last,
                    (Action::Up, Some(p)) => p.saturating_sub(1),
                    (_, None) => last,
                    (_, Some(p)) => (p + 1).min(last),
                });
                input = Input::new(self.history[pos.unwrap_or(last)].clone());
            }
            _ => {
                input.handle_event(&TermEvent::Key(key));
                candidates = Vec::new();
            }
        }
        self.mode = Mode::Palette { input, history_pos: pos, candidates };
        Vec::new()
    }

    fn on_palette_action(&mut self, action: PaletteAction) -> Vec<Effect> {
        match action {
            PaletteAction::Run { command, confirm } => self.request(command, confirm),
            PaletteAction::SelectEnv(e) => {
                self.sel_env = self.snapshot.envs.iter().position(|x| *x == e).unwrap_or(0);
                self.pane = Pane::Environments;
                Vec::new()
            }
            PaletteAction::SelectApp(a) => {
                self.filter.clear();
                self.sel_app = self.snapshot.apps.iter().position(|x| *x == a).unwrap_or(0);
                Vec::new()
            }
            PaletteAction::Pane(p) => {
                self.pane = p;
                Vec::new()
            }
            PaletteAction::Help => {
                self.mode = Mode::Help;
                Vec::new()
            }
            PaletteAction::Quit => vec![Effect::Quit],
            PaletteAction::FlagRead(cmd) => {
                self.flag_read(&cmd);
                Vec::new()
            }
            PaletteAction::KubeContext(c) => self.switch_kubernetes(Some(c), None),
            PaletteAction::KubeNamespace(n) => self.switch_kubernetes(None, Some(n)),
        }
    }

    /// `:ctx`/`:ns` on the selected environment. Allowed read-only: it changes what the console
    /// looks at, not the estate.
    fn switch_kubernetes(&mut self, context: Option<String>, namespace: Option<String>) -> Vec<Effect> {
        let Some(env) = self.snapshot.envs.get(self.sel_env).cloned() else { return Vec::new() };
        if !self.snapshot.kube.contains_key(&env) {
            let kube: Vec<&str> = self.snapshot.kube.keys().map(String::as_str).collect();
            let hint = match kube.as_slice() {
                [] => "no environment of the estate runs on Kubernetes".to_string(),
                some => format!("select one with `env NAME` ({})", some.join(", ")),
            };
            self.message = Some((format!("{env} runs on the local cluster: {hint}"), Tone::Error));
            return Vec::new();
        }
        self.message = Some((format!("switching {env}…"), Tone::Info));
        vec![Effect::Execute(Command::SwitchKubernetes { env, context, namespace })]
    }

    /// A command for the engine, after a confirmation when it is destructive.
    pub(super) fn request(&mut self, command: Command, confirm: Option<String>) -> Vec<Effect> {
        if self.readonly {
            self.message = Some((format!("read-only: `{}` would change the estate", command.name()), Tone::Error));
            return Vec::new();
        }
        match confirm {
            Some(body) => {
                let title = format!("{} — are you sure?", command.name());
                self.mode = Mode::Confirm(Confirm { title, body, effect: Effect::Execute(command) });
                Vec::new()
            }
            None => vec![Effect::Execute(command)],
        }
    }

    pub(super) fn on_action(&mut self, action: Action) -> Vec<Effect> {
        let rows = match self.pane {
            Pane::Environments => self.visible_apps().len(),
            Pane::Flags => self.visible_flags().len(),
            Pane::Emergency => self.snapshot.emergencies.len(),
            Pane::Argo => self.visible_rollouts().len(),
            _ => 0,
        };
        let selected = self.selected_target();
        let app_env = selected.as_ref().map(|t| (t.app.clone(), t.env.clone()));
        match action {
            Action::Quit => return self.quit(),
            Action::Help => self.mode = Mode::Help,
            Action::Palette => {
                self.mode = Mode::Palette { input: Input::default(), history_pos: None, candidates: Vec::new() }
            }
            Action::Filter => {
                let keep = self.filter_on(self.pane).to_string();
                self.filter_pane = self.pane;
                self.filter = keep.clone();
                self.mode = Mode::Filter { input: Input::new(keep) };
            }
            Action::NextPane => self.pane = Pane::ALL[(self.pane.index() + 1) % Pane::ALL.len()],
            Action::PrevPane => self.pane = Pane::ALL[(self.pane.index() + Pane::ALL.len() - 1) % Pane::ALL.len()],
            Action::PaneEnvironments => self.pane = Pane::Environments,
            Action::PaneRollout => self.pane = Pane::Rollout,
            Action::PaneAnalysis => self.pane = Pane::Analysis,
            Action::PaneFlags => self.pane = Pane::Flags,
            Action::PaneEmergency => self.pane = Pane::Emergency,
            Action::PaneEvents => self.pane = Pane::Events,
            Action::PaneArgo => self.pane = Pane::Argo,
            Action::Up | Action::Down | Action::PageUp | Action::PageDown | Action::Top | Action::Bottom => {
                self.move_cursor(action, rows)
            }
            Action::Resume | Action::ResumeFull | Action::Abort | Action::Retry | Action::Rollback
                if self.pane == Pane::Argo =>
            {
                return self.argo_action(action);
            }
            Action::Left => self.sel_env = self.sel_env.saturating_sub(1),
            Action::Right => self.sel_env = (self.sel_env + 1).min(self.snapshot.envs.len().saturating_sub(1)),
            Action::Select | Action::Approve if self.pane == Pane::Emergency => return self.emergency_action(action),
            Action::Select => {
                if self.pane == Pane::Environments {
                    self.pane = Pane::Rollout;
                }
            }
            Action::Back => {
                if !self.filter_on(self.pane).is_empty() {
                    self.filter.clear();
                } else {
                    self.message = None;
                }
            }
            Action::Refresh => self.message = Some(("refreshing".into(), Tone::Info)),
            Action::ToggleFlag
            | Action::FlagPercentUp
            | Action::FlagPercentDown
            | Action::FlagRollout
            | Action::FlagExperiment
            | Action::FlagTarget
            | Action::FlagWeights
            | Action::FlagEval => return self.flag_action(action),
            Action::NewEmergency | Action::Mark => return self.emergency_action(action),
            Action::Pause
            | Action::Resume
            | Action::ResumeFull
            | Action::Abort
            | Action::Rollback
            | Action::Retry
            | Action::Restart
            | Action::Promote
            | Action::Approve
            | Action::Deploy => {
                let Some((app, env)) = app_env else {
                    self.message = Some(("select an app first".into(), Tone::Error));
                    return Vec::new();
                };
                return self.release_action(action, app, env);
            }
        }
        Vec::new()
    }

    /// Quit at once, unless releases are moving: leaving stops driving them (they show as
    /// interrupted and keep their traffic as it is), so that asks first.
    fn quit(&mut self) -> Vec<Effect> {
        let moving: Vec<String> = self
            .snapshot
            .workloads
            .iter()
            .filter(|(_, w)| {
                w.release.as_ref().is_some_and(|r| matches!(r.status, Status::InProgress | Status::Deployed))
            })
            .map(|(t, _)| t.to_string())
            .collect();
        if moving.is_empty() || self.readonly {
            return vec![Effect::Quit];
        }
        let body = format!(
            "{} in progress ({}). Quitting stops driving them: they stay as they are, with their traffic, and show as interrupted until someone resumes or aborts them.",
            if moving.len() == 1 { "A release is".to_string() } else { format!("{} releases are", moving.len()) },
            moving.join(", ")
        );
        self.mode = Mode::Confirm(Confirm { title: "quit — are you sure?".into(), body, effect: Effect::Quit });
        Vec::new()
    }

    fn move_cursor(&mut self, action: Action, rows: usize) {
        let last = rows.saturating_sub(1);
        let cur = match self.pane {
            Pane::Environments => &mut self.sel_app,
            Pane::Flags => &mut self.sel_flag,
            Pane::Emergency => &mut self.sel_emergency,
            Pane::Argo => &mut self.sel_argo,
            Pane::Events => {
                self.events_scroll = match action {
                    Action::Up => self.events_scroll + 1,
                    Action::PageUp => self.events_scroll + 10,
                    Action::Down => self.events_scroll.saturating_sub(1),
                    Action::PageDown => self.events_scroll.saturating_sub(10),
                    Action::Top => usize::MAX / 2,
                    _ => 0,
                };
                return;
            }
            _ => return,
        };
        *cur = match action {
            Action::Up => cur.saturating_sub(1),
            Action::Down => (*cur + 1).min(last),
            Action::PageUp => cur.saturating_sub(10),
            Action::PageDown => (*cur + 10).min(last),
            Action::Top => 0,
            _ => last,
        };
    }

    fn release_action(&mut self, action: Action, app: String, env: String) -> Vec<Effect> {
        let w = self.selected().cloned().unwrap_or_default();
        let stable = w.active().and_then(|r| r.previous_version.clone()).unwrap_or_else(|| "the stable version".into());
        let (command, confirm) = match action {
            Action::Pause => (Command::Pause { app, env }, None),
            Action::Resume => (Command::Resume { app, env, full: false }, None),
            Action::Retry => (Command::Retry { app, env }, None),
            Action::ResumeFull => {
                let body = format!(
                    "Skip every remaining step and analysis of {app} in {env} and send all traffic to the new version now."
                );
                (Command::Resume { app, env, full: true }, Some(body))
            }
            Action::Abort => {
                let delay =
                    w.settings.as_ref().map(|s| s.canary.abort_scale_down_delay.to_string()).unwrap_or_default();
                let body = format!(
                    "Abort the release of {app} in {env}: all traffic goes back to {stable} now; the new pods are removed after {delay}."
                );
                (Command::Abort { app, env }, Some(body))
            }
            Action::Rollback => {
                let body = match w.active() {
                    Some(_) => format!(
                        "Roll back the release of {app} in {env}: all traffic back to {stable} now, new pods removed."
                    ),
                    None => format!("Roll {app} in {env} back to the previous verified version."),
                };
                (Command::Rollback { app, env, to: None }, Some(body))
            }
            Action::Restart => {
                let body = format!(
                    "Restart every pod of {app} {} in {env}, one at a time.",
                    w.current_version().unwrap_or("")
                );
                (Command::Restart { app, env, version: None }, Some(body))
            }
            Action::Approve => match w.pending.first() {
                Some(r) => (Command::Approve { release_id: r.id.clone() }, None),
                None => {
                    self.message = Some((format!("nothing waits for approval for {app} in {env}"), Tone::Info));
                    return Vec::new();
                }
            },
            Action::Promote => {
                let targets = self.snapshot_env_promotions(&env);
                match targets.as_slice() {
                    [to] => {
                        let version = w.last_verified.clone().unwrap_or_else(|| "its verified version".into());
                        let body = format!(
                            "Promote {app} {version} from {env} to {to}. If {to} requires approval, the release waits for someone other than you."
                        );
                        (Command::Promote { app, from: env, to: to.clone() }, Some(body))
                    }
                    [] => {
                        self.message = Some((format!("{env} promotes nowhere"), Tone::Info));
                        return Vec::new();
                    }
                    many => {
                        self.open_palette(&format!("promote {app} {env} "));
                        self.message = Some((format!("promote to which? {}", many.join(", ")), Tone::Info));
                        return Vec::new();
                    }
                }
            }
            _ => {
                self.open_palette(&format!("deploy {app} "));
                return Vec::new();
            }
        };
        self.request(command, confirm)
    }

    /// promote (resume), promote --full, abort, retry or undo (rollback) of the Argo Rollout under
    /// the cursor, through the engine; the destructive ones ask first, naming the rollout.
    fn argo_action(&mut self, action: Action) -> Vec<Effect> {
        use crate::cluster::kube::argo::ArgoAction;
        let Some(env) = self.snapshot.envs.get(self.sel_env).cloned() else { return Vec::new() };
        let Some(rollout) = self.visible_rollouts().get(self.sel_argo).map(|r| r.name.clone()) else {
            let why = if self.snapshot.argo.contains_key(&env) {
                format!("no Argo Rollout is selected in {env}")
            } else {
                format!("{env} has no Argo Rollouts watch: ←/→ selects a Kubernetes environment")
            };
            self.message = Some((why, Tone::Error));
            return Vec::new();
        };
        let what = match action {
            Action::Resume => ArgoAction::Promote,
            Action::ResumeFull => ArgoAction::PromoteFull,
            Action::Abort => ArgoAction::Abort,
            Action::Retry => ArgoAction::Retry,
            _ => ArgoAction::Undo,
        };
        let confirm = what.warning(&rollout, &env, None).map(|w| {
            let mut chars = w.chars();
            let first = chars.next().map(|c| c.to_uppercase().collect::<String>()).unwrap_or_default();
            format!("{first}{}.", chars.as_str())
        });
        self.request(Command::Argo { env, rollout, action: what, to_revision: None }, confirm)
    }

    fn snapshot_env_promotions(&self, env: &str) -> Vec<String> {
        self.snapshot.promotes_to.get(env).cloned().unwrap_or_default()
    }

    pub(super) fn open_palette(&mut self, text: &str) {
        let input = Input::new(text.to_string());
        let candidates = palette::complete(text, &self.snapshot);
        self.mode = Mode::Palette { input, history_pos: None, candidates };
    }

    /// Show the engine's answer to a command.
    pub fn on_result(&mut self, result: Result<String, String>) {
        self.message = Some(match result {
            Ok(m) => (m, Tone::Ok),
            Err(e) => (e, Tone::Error),
        });
    }
}
