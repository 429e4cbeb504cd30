//! What a key can do ([`Action`]) and where it is pressed ([`Context`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Something a key can make shipdeck do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Quit,
    Help,
    Palette,
    Filter,
    NextPane,
    PrevPane,
    PaneEnvironments,
    PaneRollout,
    PaneAnalysis,
    PaneFlags,
    PaneEmergency,
    PaneEvents,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Select,
    Back,
    Pause,
    Resume,
    ResumeFull,
    Abort,
    Rollback,
    Retry,
    Restart,
    Promote,
    Approve,
    Deploy,
    ToggleFlag,
    FlagPercentUp,
    FlagPercentDown,
    FlagRollout,
    FlagExperiment,
    FlagTarget,
    FlagWeights,
    FlagEval,
    NewEmergency,
    Mark,
    Refresh,
    PaneArgo,
}

/// Every action with its file name and default description, in declaration order (a test keeps
/// it so, because [`Action::info`] indexes it by discriminant).
pub(super) const ACTIONS: [(Action, &str, &str); 44] = [
    (Action::Quit, "quit", "Quit"),
    (Action::Help, "help", "Show the keys that work here"),
    (Action::Palette, "palette", "Open the command palette"),
    (Action::Filter, "filter", "Filter the rows of this pane"),
    (Action::NextPane, "next_pane", "Next pane"),
    (Action::PrevPane, "prev_pane", "Previous pane"),
    (Action::PaneEnvironments, "pane_environments", "Environments pane"),
    (Action::PaneRollout, "pane_rollout", "Rollout pane"),
    (Action::PaneAnalysis, "pane_analysis", "Analysis pane"),
    (Action::PaneFlags, "pane_flags", "Flags pane"),
    (Action::PaneEmergency, "pane_emergency", "Emergency pane"),
    (Action::PaneEvents, "pane_events", "Events pane"),
    (Action::Up, "up", "Move up"),
    (Action::Down, "down", "Move down"),
    (Action::Left, "left", "Move left"),
    (Action::Right, "right", "Move right"),
    (Action::PageUp, "page_up", "Page up"),
    (Action::PageDown, "page_down", "Page down"),
    (Action::Top, "top", "Go to the top"),
    (Action::Bottom, "bottom", "Go to the bottom"),
    (Action::Select, "select", "Select / confirm"),
    (Action::Back, "back", "Back / cancel"),
    (Action::Pause, "pause", "Pause the release"),
    (Action::Resume, "resume", "Resume the release"),
    (Action::ResumeFull, "resume_full", "Resume, skipping to the full rollout"),
    (Action::Abort, "abort", "Abort: all traffic back to stable"),
    (Action::Rollback, "rollback", "Roll back to the previous version"),
    (Action::Retry, "retry", "Run the aborted release again"),
    (Action::Restart, "restart", "Restart the pods one at a time"),
    (Action::Promote, "promote", "Promote to the next environment"),
    (Action::Approve, "approve", "Approve the waiting release"),
    (Action::Deploy, "deploy", "Deploy a version"),
    (Action::ToggleFlag, "toggle_flag", "Turn the flag on or off"),
    (Action::FlagPercentUp, "flag_percent_up", "Raise the flag's rollout percentage"),
    (Action::FlagPercentDown, "flag_percent_down", "Lower the flag's rollout percentage"),
    (Action::FlagRollout, "flag_rollout", "Start a progressive rollout of the flag"),
    (Action::FlagExperiment, "flag_experiment", "Start an experiment on the flag"),
    (Action::FlagTarget, "flag_target", "Add a targeting rule to the flag"),
    (Action::FlagWeights, "flag_weights", "Split users over the flag's variants by weight"),
    (Action::FlagEval, "flag_eval", "Evaluate the flag for a context"),
    (Action::NewEmergency, "new_emergency", "Start the emergency hotfix wizard"),
    (Action::Mark, "mark", "Mark or unmark the item under the cursor"),
    (Action::Refresh, "refresh", "Refresh now"),
    (Action::PaneArgo, "pane_argo", "Argo Rollouts pane"),
];

impl Action {
    pub fn all() -> impl Iterator<Item = Action> {
        ACTIONS.into_iter().map(|(a, _, _)| a)
    }

    fn info(self) -> (&'static str, &'static str) {
        let (_, name, desc) = ACTIONS[self as usize];
        (name, desc)
    }

    /// The name used in keymap files.
    pub fn name(self) -> &'static str {
        self.info().0
    }

    pub fn from_name(name: &str) -> Option<Action> {
        ACTIONS.iter().find(|(_, n, _)| *n == name).map(|(a, _, _)| *a)
    }

    /// Whether the action changes production in a way that is hard to take back; the console asks
    /// before doing it, and no keymap may bind it to `ctrl-d`.
    pub fn destructive(self) -> bool {
        matches!(self, Action::Abort | Action::Rollback | Action::ResumeFull | Action::Restart | Action::ToggleFlag)
    }

    /// A short description, used when a binding gives no `desc`.
    pub fn describe(self) -> &'static str {
        self.info().1
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a key is pressed: a pane, a confirmation dialog, or the palette/filter input line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Context {
    Global,
    Environments,
    Rollout,
    Analysis,
    Flags,
    Emergency,
    Events,
    /// The Argo Rollouts pane.
    Argo,
    /// A confirmation dialog: `select` confirms, `back` cancels.
    Dialog,
    /// The palette and filter line: `select`, `back`, and `up`/`down` for history.
    Input,
}

impl Context {
    pub const ALL: [Context; 10] = [
        Context::Global,
        Context::Environments,
        Context::Rollout,
        Context::Analysis,
        Context::Flags,
        Context::Emergency,
        Context::Events,
        Context::Argo,
        Context::Dialog,
        Context::Input,
    ];

    /// The name used in keymap files (`[[rollout]]`).
    pub fn name(self) -> &'static str {
        match self {
            Context::Global => "global",
            Context::Environments => "environments",
            Context::Rollout => "rollout",
            Context::Analysis => "analysis",
            Context::Flags => "flags",
            Context::Emergency => "emergency",
            Context::Events => "events",
            Context::Argo => "argo",
            Context::Dialog => "dialog",
            Context::Input => "input",
        }
    }

    pub fn from_name(name: &str) -> Option<Context> {
        Context::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Panes fall through to the global keys. A dialog and the input line never do: a stray `q`
    /// must not quit in the middle of a confirmation, and letters typed into the palette must
    /// reach the palette.
    pub fn falls_back_to_global(self) -> bool {
        !matches!(self, Context::Dialog | Context::Input)
    }

    /// The only actions this context may bind, where it is restricted.
    pub(super) fn allowed(self) -> Option<&'static [Action]> {
        match self {
            Context::Dialog => Some(&[Action::Select, Action::Back]),
            Context::Input => Some(&[Action::Select, Action::Back, Action::Up, Action::Down]),
            _ => None,
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
