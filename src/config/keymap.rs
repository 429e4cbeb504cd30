//! Key bindings. Every key runs a named [`Action`] in a [`Context`] (a pane, a dialog, the input
//! line), and every binding carries a description, so the help overlay and the footer are built
//! from the same table that decides what a key does: they cannot drift apart.
//!
//! Bindings are checked when loaded. A keymap that would make a key ambiguous, hide a global
//! action inside a pane, or put something destructive on `ctrl-d` is refused with the file, the
//! context, the key and the clash, rather than half-working at three in the morning.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde::{Deserialize, Serialize};

/// The shipped keymaps, compiled in so that shipdeck works with no files on disk.
const EMBEDDED: [(&str, &str); 2] =
    [("default", include_str!("../../keymaps/default.toml")), ("emacs", include_str!("../../keymaps/emacs.toml"))];

const EMBEDDED_NAMES: [&str; 2] = ["default", "emacs"];

/// The user's keymap file, inside the config directory.
pub const USER_FILE: &str = "keymap.toml";

/// How to write a key, for error messages.
const KEY_SYNTAX: &str = "write one character (`q`, `?`, `A` for shift-a) or a name (enter, esc, tab, backtab, \
     backspace, up, down, left, right, pageup, pagedown, home, end, space, delete, insert, f1 to f12), \
     optionally after ctrl-, alt- or shift- (`ctrl-c`, `alt-x`, `shift-up`)";

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
    Refresh,
}

/// Every action with its file name and default description, in declaration order (a test keeps
/// it so, because [`Action::info`] indexes it by discriminant).
const ACTIONS: [(Action, &str, &str); 36] = [
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
    (Action::Refresh, "refresh", "Refresh now"),
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
    /// A confirmation dialog: `select` confirms, `back` cancels.
    Dialog,
    /// The palette and filter line: `select`, `back`, and `up`/`down` for history.
    Input,
}

impl Context {
    pub const ALL: [Context; 9] = [
        Context::Global,
        Context::Environments,
        Context::Rollout,
        Context::Analysis,
        Context::Flags,
        Context::Emergency,
        Context::Events,
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
    fn allowed(self) -> Option<&'static [Action]> {
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

/// A key as keymap files write it. Kept normalised so that equal keys compare equal however the
/// terminal reported them: a character never carries SHIFT (`A` is shift-a), and shift-tab is
/// `backtab`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read key `{text}`: {problem}; {syntax}", syntax = KEY_SYNTAX)]
pub struct KeyError {
    pub text: String,
    pub problem: String,
}

const NAMED_KEYS: [(&str, KeyCode); 16] = [
    ("enter", KeyCode::Enter),
    ("esc", KeyCode::Esc),
    ("tab", KeyCode::Tab),
    ("backtab", KeyCode::BackTab),
    ("backspace", KeyCode::Backspace),
    ("up", KeyCode::Up),
    ("down", KeyCode::Down),
    ("left", KeyCode::Left),
    ("right", KeyCode::Right),
    ("pageup", KeyCode::PageUp),
    ("pagedown", KeyCode::PageDown),
    ("home", KeyCode::Home),
    ("end", KeyCode::End),
    ("space", KeyCode::Char(' ')),
    ("delete", KeyCode::Delete),
    ("insert", KeyCode::Insert),
];

const MODIFIER_PREFIXES: [(&str, KeyModifiers); 3] =
    [("ctrl-", KeyModifiers::CONTROL), ("alt-", KeyModifiers::ALT), ("shift-", KeyModifiers::SHIFT)];

impl Key {
    /// A key, normalised (see [`Key`]).
    pub fn new(code: KeyCode, modifiers: KeyModifiers) -> Key {
        let shift = modifiers.contains(KeyModifiers::SHIFT);
        let code = match code {
            KeyCode::Char(c) if shift && c.is_lowercase() => {
                let mut upper = c.to_uppercase();
                match (upper.next(), upper.next()) {
                    (Some(u), None) => KeyCode::Char(u),
                    _ => code,
                }
            }
            KeyCode::Tab if shift => KeyCode::BackTab,
            other => other,
        };
        let modifiers = match code {
            KeyCode::Char(_) | KeyCode::BackTab => modifiers - KeyModifiers::SHIFT,
            _ => modifiers,
        };
        Key { code, modifiers }
    }

    /// The key a terminal event stands for. Terminals differ on whether `A` or `?` arrives with
    /// SHIFT; both forms give the same key.
    pub fn from_event(event: &KeyEvent) -> Key {
        Key::new(event.code, event.modifiers)
    }

    /// Parses the keymap-file syntax: `q`, `A`, `?`, `enter`, `ctrl-c`, `alt->`, `shift-up`, `f5`.
    pub fn parse(text: impl AsRef<str>) -> Result<Key, KeyError> {
        let text = text.as_ref();
        let fail = |problem: &str| KeyError { text: text.to_string(), problem: problem.to_string() };
        let mut rest = text;
        let mut modifiers = KeyModifiers::NONE;
        'prefixes: loop {
            for (prefix, modifier) in MODIFIER_PREFIXES {
                let matches = rest.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix));
                if matches && rest.len() > prefix.len() {
                    modifiers |= modifier;
                    rest = &rest[prefix.len()..];
                    continue 'prefixes;
                }
            }
            break;
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (None, _) => return Err(fail("it is empty")),
            (Some(c), None) if c.is_whitespace() || c.is_control() => {
                return Err(fail("write `space` for the space bar; other blank characters cannot be keys"));
            }
            (Some(c), None) => {
                if modifiers.contains(KeyModifiers::SHIFT) && !c.is_alphabetic() {
                    return Err(fail(
                        "shift- goes with letters and named keys; for other characters write the character \
                         shift gives, like `?` rather than `shift-/`",
                    ));
                }
                KeyCode::Char(c)
            }
            _ => {
                let lower = rest.to_ascii_lowercase();
                if let Some((_, code)) = NAMED_KEYS.iter().find(|(n, _)| *n == lower) {
                    *code
                } else if let Some(n) = lower.strip_prefix('f').and_then(|n| n.parse::<u8>().ok()) {
                    if !(1..=12).contains(&n) {
                        return Err(fail("function keys go from f1 to f12"));
                    }
                    KeyCode::F(n)
                } else {
                    return Err(fail("it is neither one character nor a key name"));
                }
            }
        };
        Ok(Key::new(code, modifiers))
    }

    /// Whether typing this key would insert text in an input line.
    fn is_printable(&self) -> bool {
        matches!(self.code, KeyCode::Char(_)) && !self.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    }

    fn is_ctrl_d(&self) -> bool {
        matches!(self.code, KeyCode::Char('d' | 'D')) && self.modifiers.contains(KeyModifiers::CONTROL)
    }
}

impl std::str::FromStr for Key {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Key::parse(s)
    }
}

/// The keymap-file form, so help and footers show keys the way a person writes them.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (prefix, modifier) in MODIFIER_PREFIXES {
            if self.modifiers.contains(modifier) {
                f.write_str(prefix)?;
            }
        }
        if let Some((name, _)) = NAMED_KEYS.iter().find(|(_, code)| *code == self.code) {
            return f.write_str(name);
        }
        match self.code {
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::F(n) => write!(f, "f{n}"),
            other => write!(f, "{}", format!("{other:?}").to_lowercase()),
        }
    }
}

/// Keys that run one action, with the description the help shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub keys: Vec<Key>,
    pub action: Action,
    pub desc: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeymapError {
    #[error("cannot read keymap file {path}: {message}")]
    Read { path: String, message: String },
    #[error("no embedded keymap named `{name}`; embedded keymaps are {known}")]
    NotFound { name: String, known: String },
    #[error("keymap file {file} is not valid TOML: {message}")]
    Syntax { file: String, message: String },
    #[error("keymap file {file}: {at}: {message}")]
    Invalid { file: String, at: String, message: String },
}

/// Where a binding was written, for errors that point at it.
#[derive(Debug, Clone)]
struct Origin {
    file: String,
    /// 1-based position among the file's `[[context]]` tables of that context.
    index: usize,
    embedded: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    context: Context,
    binding: Binding,
    origin: Origin,
}

impl Entry {
    fn at(&self) -> String {
        format!("[[{}]] #{} (run = \"{}\")", self.context, self.origin.index, self.binding.action)
    }

    /// How to point at this entry from an error about `from`: the file too, if it differs.
    fn pointer(&self, from: &Entry) -> String {
        if self.origin.file == from.origin.file {
            format!("[[{}]] #{}", self.context, self.origin.index)
        } else {
            format!("[[{}]] #{} of {}", self.context, self.origin.index, self.origin.file)
        }
    }

    fn invalid(&self, message: String) -> KeymapError {
        KeymapError::Invalid { file: self.origin.file.clone(), at: self.at(), message }
    }
}

/// What one file says, before it is checked as a whole.
struct FileSpec {
    base: Option<String>,
    entries: Vec<Entry>,
}

/// A checked set of bindings.
#[derive(Debug, Clone)]
pub struct Keymap {
    entries: Vec<Entry>,
    lookup: HashMap<(Context, Key), usize>,
}

impl Keymap {
    /// One of the embedded keymaps by name ("default", "emacs").
    pub fn embedded(name: &str) -> Option<Result<Keymap, KeymapError>> {
        embedded_entries(name).map(|entries| entries.and_then(Keymap::build))
    }

    pub fn embedded_names() -> &'static [&'static str] {
        &EMBEDDED_NAMES
    }

    /// Starts from the embedded keymap `base`, then applies `<config_dir>/keymap.toml` if it
    /// exists. A user binding for (context, action) replaces that action's keys in that context;
    /// everything else stays. The user file may set `base = "emacs"` to start from another one.
    pub fn load(base: &str, config_dir: Option<&Path>) -> Result<Keymap, KeymapError> {
        let user_file = config_dir.map(|dir| dir.join(USER_FILE)).filter(|p| p.is_file());
        let Some(path) = user_file else {
            return Keymap::embedded(base).unwrap_or_else(|| Err(not_found(base)));
        };
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| KeymapError::Read { path: file.clone(), message: e.to_string() })?;
        let spec = read_spec(&text, &file, false)?;
        let base_entries = match &spec.base {
            Some(name) => base_from_file(name, &file)?,
            None => embedded_entries(base).unwrap_or_else(|| Err(not_found(base)))?,
        };
        Keymap::build(overlay(base_entries, spec.entries))
    }

    /// Parses a keymap file's text; `source` names it in errors. A file that sets `base` is laid
    /// over that embedded keymap, as in [`Keymap::load`]; otherwise it stands alone.
    pub fn parse(text: &str, source: &str) -> Result<Keymap, KeymapError> {
        let spec = read_spec(text, source, false)?;
        let entries = match &spec.base {
            Some(name) => overlay(base_from_file(name, source)?, spec.entries),
            None => spec.entries,
        };
        Keymap::build(entries)
    }

    /// The action a key event runs in a context: the context's own binding, else (for panes) the
    /// global one. Key releases run nothing (Windows and the kitty protocol report them).
    pub fn action(&self, context: Context, key: &KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let key = Key::from_event(key);
        let own = self.lookup.get(&(context, key));
        let found = own
            .or_else(|| if context.falls_back_to_global() { self.lookup.get(&(Context::Global, key)) } else { None });
        found.map(|&i| self.entries[i].binding.action)
    }

    /// Bindings that work in a context (its own, then global ones not shadowed by it), in file
    /// order: for the footer and the help overlay.
    pub fn bindings(&self, context: Context) -> Vec<&Binding> {
        let own = self.entries.iter().filter(|e| e.context == context);
        let mut out: Vec<&Binding> = own.map(|e| &e.binding).collect();
        if context != Context::Global && context.falls_back_to_global() {
            let shadowed = |b: &Binding| b.keys.iter().all(|k| self.lookup.contains_key(&(context, *k)));
            let global = self.entries.iter().filter(|e| e.context == Context::Global).map(|e| &e.binding);
            out.extend(global.filter(|b| !shadowed(b)));
        }
        out
    }

    /// The first key bound to an action in a context (falling back to global for panes), for
    /// hints like "press a to abort".
    pub fn key_for(&self, context: Context, action: Action) -> Option<&Key> {
        let first = |ctx: Context| {
            self.entries
                .iter()
                .filter(|e| e.context == ctx && e.binding.action == action)
                .find_map(|e| e.binding.keys.first())
        };
        first(context).or_else(|| if context.falls_back_to_global() { first(Context::Global) } else { None })
    }

    /// Checks the bindings as a whole and indexes them.
    fn build(entries: Vec<Entry>) -> Result<Keymap, KeymapError> {
        let mut lookup: HashMap<(Context, Key), usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let action = e.binding.action;
            if let Some(allowed) = e.context.allowed().filter(|allowed| !allowed.contains(&action)) {
                let names: Vec<&str> = allowed.iter().map(|a| a.name()).collect();
                return Err(e.invalid(format!(
                    "`{action}` cannot be bound in [[{}]]; it takes only {}",
                    e.context,
                    names.join(", ")
                )));
            }
            for key in &e.binding.keys {
                if action.destructive() && key.is_ctrl_d() {
                    return Err(e.invalid(format!(
                        "`{key}` runs `{action}`, which is destructive; ctrl-d must never do something destructive \
                         (it is the habitual key for page down and for leaving a shell) — choose another key"
                    )));
                }
                if e.context == Context::Input && key.is_printable() {
                    return Err(e.invalid(format!(
                        "`{key}` would stop you typing `{key}` in the palette and the filter; \
                         bind a named key or one with ctrl- or alt- instead"
                    )));
                }
                if let Some(&j) = lookup.get(&(e.context, *key)) {
                    let other = &entries[j];
                    if other.binding.action != action {
                        let (at, other) = blame(e, other);
                        return Err(at.invalid(format!(
                            "key `{key}` runs `{}` here, but {} binds it to `{}` in the same context; \
                             one key can do only one thing in one context — give one of them another key",
                            at.binding.action,
                            other.pointer(at),
                            other.binding.action
                        )));
                    }
                } else {
                    lookup.insert((e.context, *key), i);
                }
            }
        }
        for e in entries.iter().filter(|e| e.context != Context::Global && e.context.falls_back_to_global()) {
            for key in &e.binding.keys {
                let Some(global) = lookup.get(&(Context::Global, *key)).map(|&j| &entries[j]) else { continue };
                if global.binding.action != e.binding.action {
                    let (at, _) = blame(e, global);
                    return Err(at.invalid(format!(
                        "key `{key}` is bound to `{}` in {} and to `{}` in {}; in the {} pane the pane's binding \
                         would hide `{}` — give one of them another key",
                        e.binding.action,
                        e.pointer(at),
                        global.binding.action,
                        global.pointer(at),
                        e.context,
                        global.binding.action
                    )));
                }
            }
        }
        Ok(Keymap { entries, lookup })
    }
}

/// Of two clashing entries, the one to report at: the user's rather than an embedded one, since
/// the user's file is the one to edit.
fn blame<'a>(a: &'a Entry, b: &'a Entry) -> (&'a Entry, &'a Entry) {
    if a.origin.embedded && !b.origin.embedded { (b, a) } else { (a, b) }
}

fn not_found(name: &str) -> KeymapError {
    KeymapError::NotFound { name: name.to_string(), known: EMBEDDED_NAMES.join(", ") }
}

fn embedded_entries(name: &str) -> Option<Result<Vec<Entry>, KeymapError>> {
    let (name, text) = EMBEDDED.iter().find(|(n, _)| *n == name)?;
    Some(read_spec(text, &format!("embedded keymap {name}"), true).map(|spec| spec.entries))
}

/// The embedded keymap a user file names with `base = "…"`.
fn base_from_file(name: &str, file: &str) -> Result<Vec<Entry>, KeymapError> {
    embedded_entries(name).unwrap_or_else(|| {
        Err(KeymapError::Invalid {
            file: file.to_string(),
            at: "base".into(),
            message: format!("no embedded keymap named `{name}`; embedded keymaps are {}", EMBEDDED_NAMES.join(", ")),
        })
    })
}

/// Lays user bindings over base ones: a user binding for (context, action) replaces every base
/// binding of that pair, in the place of the first one, so help keeps the base file's order.
fn overlay(base: Vec<Entry>, user: Vec<Entry>) -> Vec<Entry> {
    let key = |e: &Entry| (e.context, e.binding.action);
    let replaced: HashSet<(Context, Action)> = user.iter().map(key).collect();
    let mut placed = HashSet::new();
    let mut out = Vec::new();
    for e in base {
        let k = key(&e);
        if !replaced.contains(&k) {
            out.push(e);
        } else if placed.insert(k) {
            out.extend(user.iter().filter(|u| key(u) == k).cloned());
        }
    }
    out.extend(user.into_iter().filter(|u| !placed.contains(&key(u))));
    out
}

/// Reads one file's bindings, checking each on its own.
fn read_spec(text: &str, file: &str, embedded: bool) -> Result<FileSpec, KeymapError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| KeymapError::Syntax { file: file.to_string(), message: e.to_string() })?;
    let invalid = |at: String, message: String| KeymapError::Invalid { file: file.to_string(), at, message };
    let mut base = None;
    for (key, value) in &table {
        if key == "base" {
            let name = value.as_str().ok_or_else(|| {
                invalid("base".into(), "expected the name of an embedded keymap in quotes, like \"emacs\"".into())
            })?;
            base = Some(name.to_string());
        } else if Context::from_name(key).is_none() {
            let known: Vec<&str> = Context::ALL.iter().map(|c| c.name()).collect();
            return Err(invalid(
                key.clone(),
                format!("unknown context `{key}`; known contexts are {} (and `base` at the top)", known.join(", ")),
            ));
        }
    }
    let mut entries = Vec::new();
    for context in Context::ALL {
        let Some(value) = table.get(context.name()) else { continue };
        let list = value.as_array().ok_or_else(|| {
            invalid(context.name().into(), format!("expected a list of bindings: write [[{context}]] above each one"))
        })?;
        for (i, item) in list.iter().enumerate() {
            let origin = Origin { file: file.to_string(), index: i + 1, embedded };
            let at = format!("[[{context}]] #{}", i + 1);
            let binding = read_binding(item).map_err(|message| invalid(at, message))?;
            entries.push(Entry { context, binding, origin });
        }
    }
    Ok(FileSpec { base, entries })
}

fn read_binding(item: &toml::Value) -> Result<Binding, String> {
    let table = item.as_table().ok_or("expected a table with `on`, `run` and `desc`")?;
    if let Some(other) = table.keys().find(|k| !matches!(k.as_str(), "on" | "run" | "desc")) {
        return Err(format!("unknown key `{other}`; a binding takes `on`, `run` and `desc`"));
    }
    let empty_on = "`on` is empty: give a key like \"q\" or a list like [\"?\", \"f1\"]";
    let texts: Vec<&str> = match table.get("on") {
        None => return Err(empty_on.replace("is empty", "is missing")),
        Some(toml::Value::String(s)) => vec![s.as_str()],
        Some(toml::Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().ok_or("`on` must hold keys in quotes, like [\"?\", \"f1\"]"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`on` must be a key in quotes or a list of them, like \"q\" or [\"?\", \"f1\"]".into()),
    };
    if texts.is_empty() || texts.iter().any(|t| t.is_empty()) {
        return Err(empty_on.into());
    }
    let keys = texts.iter().map(Key::parse).collect::<Result<Vec<_>, _>>().map_err(|e| format!("`on`: {e}"))?;
    let run = table.get("run").ok_or("`run` is missing: name the action this key runs, like run = \"quit\"")?;
    let run = run.as_str().ok_or("`run` must be an action name in quotes, like \"quit\"")?;
    let action = Action::from_name(run).ok_or_else(|| {
        let known: Vec<&str> = Action::all().map(Action::name).collect();
        format!("unknown action `{run}`; known actions are {}", known.join(", "))
    })?;
    let desc = match table.get("desc") {
        None => action.describe().to_string(),
        Some(d) => d.as_str().ok_or("`desc` must be text in quotes")?.trim().to_string(),
    };
    let desc = if desc.is_empty() { action.describe().to_string() } else { desc };
    Ok(Binding { keys, action, desc })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> String {
        format!("{}/src/config/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// A fixture's error, parsed the way `load` would read it from disk.
    fn fixture_err(name: &str) -> String {
        let path = testdata(name);
        let text = std::fs::read_to_string(&path).unwrap();
        match Keymap::parse(&text, &path) {
            Ok(_) => panic!("{name} should be refused"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_mentions(message: &str, parts: &[&str]) {
        for part in parts {
            assert!(message.contains(part), "`{part}` missing from: {message}");
        }
    }

    fn key(text: &str) -> Key {
        Key::parse(text).unwrap()
    }

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    fn event(k: &Key) -> KeyEvent {
        KeyEvent::new(k.code, k.modifiers)
    }

    fn shipped() -> Vec<(&'static str, Keymap)> {
        Keymap::embedded_names().iter().map(|n| (*n, Keymap::embedded(n).unwrap().unwrap())).collect()
    }

    #[test]
    fn action_table_matches_the_enum_and_serde() {
        for (i, (action, name, desc)) in ACTIONS.iter().enumerate() {
            assert_eq!(*action as usize, i, "ACTIONS is out of order at {name}");
            assert_eq!(serde_json::to_value(action).unwrap(), serde_json::json!(name));
            assert_eq!(Action::from_name(name), Some(*action));
            assert!(!desc.is_empty());
        }
        for context in Context::ALL {
            assert_eq!(serde_json::to_value(context).unwrap(), serde_json::json!(context.name()));
        }
        let destructive: Vec<Action> = Action::all().filter(|a| a.destructive()).collect();
        use Action::*;
        assert_eq!(destructive, [ResumeFull, Abort, Rollback, Restart, ToggleFlag]);
    }

    #[test]
    fn every_shipped_keymap_parses_and_every_binding_has_a_desc() {
        assert_eq!(Keymap::embedded_names(), EMBEDDED.map(|(n, _)| n));
        assert!(Keymap::embedded("vim").is_none());
        for (name, text) in EMBEDDED {
            let table: toml::Table = text.parse().unwrap();
            for (context, list) in &table {
                for (i, b) in list.as_array().unwrap().iter().enumerate() {
                    let desc = b.get("desc").and_then(|d| d.as_str()).unwrap_or_default();
                    assert!(!desc.trim().is_empty(), "{name}: [[{context}]] #{} has no desc", i + 1);
                }
            }
            assert!(Keymap::parse(text, name).is_ok());
        }
    }

    /// Where each action must work, for a keymap to be usable.
    fn required() -> Vec<(Context, Action)> {
        let panes = [
            Context::Environments,
            Context::Rollout,
            Context::Analysis,
            Context::Flags,
            Context::Emergency,
            Context::Events,
        ];
        let mut out = Vec::new();
        for action in Action::all() {
            use Action::*;
            match action {
                Pause | Resume | ResumeFull | Abort | Rollback | Retry | Restart => {
                    out.push((Context::Rollout, action))
                }
                Promote | Approve | Deploy => out.push((Context::Environments, action)),
                ToggleFlag | FlagPercentUp | FlagPercentDown => out.push((Context::Flags, action)),
                _ => out.extend(panes.iter().map(|p| (*p, action))),
            }
        }
        out.extend([Action::Select, Action::Back].map(|a| (Context::Dialog, a)));
        out.extend([Action::Select, Action::Back, Action::Up, Action::Down].map(|a| (Context::Input, a)));
        out
    }

    #[test]
    fn every_action_is_reachable_in_its_context() {
        for (name, keymap) in shipped() {
            for (context, action) in required() {
                let k = keymap.key_for(context, action);
                let k = k.unwrap_or_else(|| panic!("{name}: no key for {action} in {context}"));
                assert_eq!(keymap.action(context, &event(k)), Some(action), "{name}: `{k}` in {context}");
                for b in keymap.bindings(context).into_iter().filter(|b| b.action == action) {
                    for k in &b.keys {
                        assert_eq!(keymap.action(context, &event(k)), Some(action), "{name}: `{k}` in {context}");
                    }
                }
            }
        }
    }

    #[test]
    fn default_keys_are_the_documented_ones() {
        let keymap = Keymap::embedded("default").unwrap().unwrap();
        let cases = [
            (Context::Rollout, "q", Action::Quit),
            (Context::Rollout, "ctrl-c", Action::Quit),
            (Context::Events, "?", Action::Help),
            (Context::Events, "f1", Action::Help),
            (Context::Events, ":", Action::Palette),
            (Context::Events, "/", Action::Filter),
            (Context::Analysis, "j", Action::Down),
            (Context::Analysis, "G", Action::Bottom),
            (Context::Analysis, "ctrl-d", Action::PageDown),
            (Context::Analysis, "backtab", Action::PrevPane),
            (Context::Analysis, "5", Action::PaneEmergency),
            (Context::Rollout, "R", Action::ResumeFull),
            (Context::Rollout, "a", Action::Abort),
            (Context::Environments, "A", Action::Approve),
            (Context::Flags, "space", Action::ToggleFlag),
            (Context::Flags, "=", Action::FlagPercentUp),
            (Context::Dialog, "y", Action::Select),
            (Context::Dialog, "esc", Action::Back),
            (Context::Input, "up", Action::Up),
        ];
        for (context, k, action) in cases {
            assert_eq!(keymap.action(context, &event(&key(k))), Some(action), "`{k}` in {context}");
        }
        let emacs = Keymap::embedded("emacs").unwrap().unwrap();
        let cases = [
            (Context::Rollout, "ctrl-n", Action::Down),
            (Context::Rollout, "ctrl-p", Action::Up),
            (Context::Rollout, "ctrl-f", Action::Right),
            (Context::Rollout, "alt-v", Action::PageUp),
            (Context::Rollout, "alt->", Action::Bottom),
            (Context::Rollout, "ctrl-g", Action::Back),
            (Context::Rollout, "alt-x", Action::Palette),
            (Context::Dialog, "ctrl-g", Action::Back),
            (Context::Input, "ctrl-p", Action::Up),
        ];
        for (context, k, action) in cases {
            assert_eq!(emacs.action(context, &event(&key(k))), Some(action), "emacs: `{k}` in {context}");
        }
    }

    #[test]
    fn key_syntax_parses_and_round_trips() {
        let cases = [
            ("q", KeyCode::Char('q'), KeyModifiers::NONE),
            ("A", KeyCode::Char('A'), KeyModifiers::NONE),
            ("shift-a", KeyCode::Char('A'), KeyModifiers::NONE),
            ("?", KeyCode::Char('?'), KeyModifiers::NONE),
            ("-", KeyCode::Char('-'), KeyModifiers::NONE),
            ("ctrl--", KeyCode::Char('-'), KeyModifiers::CONTROL),
            ("ctrl-c", KeyCode::Char('c'), KeyModifiers::CONTROL),
            ("Ctrl-Alt-x", KeyCode::Char('x'), KeyModifiers::CONTROL.union(KeyModifiers::ALT)),
            ("alt->", KeyCode::Char('>'), KeyModifiers::ALT),
            ("space", KeyCode::Char(' '), KeyModifiers::NONE),
            ("Enter", KeyCode::Enter, KeyModifiers::NONE),
            ("backtab", KeyCode::BackTab, KeyModifiers::NONE),
            ("shift-tab", KeyCode::BackTab, KeyModifiers::NONE),
            ("shift-up", KeyCode::Up, KeyModifiers::SHIFT),
            ("pagedown", KeyCode::PageDown, KeyModifiers::NONE),
            ("f12", KeyCode::F(12), KeyModifiers::NONE),
            ("é", KeyCode::Char('é'), KeyModifiers::NONE),
        ];
        for (text, code, modifiers) in cases {
            let k = key(text);
            assert_eq!(k, Key { code, modifiers }, "{text}");
            assert_eq!(Key::parse(k.to_string()), Ok(k), "{text} → {k}");
        }
        assert_eq!(key("ctrl-c").to_string(), "ctrl-c");
        assert_eq!(key("shift-a").to_string(), "A");
        assert_eq!(key("space").to_string(), "space");
        assert_eq!("alt->".parse::<Key>().map(|k| k.to_string()), Ok("alt->".to_string()));
        for (_, keymap) in shipped() {
            for context in Context::ALL {
                for b in keymap.bindings(context) {
                    for k in &b.keys {
                        assert_eq!(Key::parse(k.to_string()), Ok(*k));
                    }
                }
            }
        }
    }

    #[test]
    fn bad_keys_say_what_is_wrong_and_the_syntax() {
        let cases = [
            ("", "it is empty"),
            ("ctrl+c", "neither one character nor a key name"),
            ("f13", "f1 to f12"),
            ("shift-1", "write the character shift gives"),
            (" ", "write `space`"),
            ("ctrl-", "neither one character nor a key name"),
        ];
        for (text, problem) in cases {
            let e = Key::parse(text).unwrap_err().to_string();
            assert_mentions(&e, &[&format!("`{text}`"), problem, "ctrl-, alt- or shift-", "pageup"]);
        }
    }

    #[test]
    fn events_match_however_the_terminal_reports_shift() {
        let keymap = Keymap::embedded("default").unwrap().unwrap();
        let rollout = |code, mods| keymap.action(Context::Rollout, &press(code, mods));
        assert_eq!(rollout(KeyCode::Char('R'), KeyModifiers::NONE), Some(Action::ResumeFull));
        assert_eq!(rollout(KeyCode::Char('R'), KeyModifiers::SHIFT), Some(Action::ResumeFull));
        assert_eq!(rollout(KeyCode::Char('r'), KeyModifiers::SHIFT), Some(Action::ResumeFull));
        assert_eq!(rollout(KeyCode::Char('r'), KeyModifiers::NONE), Some(Action::Resume));
        assert_eq!(rollout(KeyCode::Char('?'), KeyModifiers::SHIFT), Some(Action::Help));
        assert_eq!(rollout(KeyCode::BackTab, KeyModifiers::SHIFT), Some(Action::PrevPane));
        assert_eq!(rollout(KeyCode::Tab, KeyModifiers::SHIFT), Some(Action::PrevPane));
        assert_eq!(rollout(KeyCode::Char('c'), KeyModifiers::CONTROL), Some(Action::Quit));
        assert_eq!(rollout(KeyCode::Char('a'), KeyModifiers::ALT), None);
        assert_eq!(rollout(KeyCode::Char('a'), KeyModifiers::SUPER), None);
        let mut release = press(KeyCode::Char('a'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(keymap.action(Context::Rollout, &release), None, "a key release must not abort twice");
        release.kind = KeyEventKind::Repeat;
        assert_eq!(keymap.action(Context::Rollout, &release), Some(Action::Abort));
    }

    #[test]
    fn panes_fall_back_to_global_but_dialogs_and_input_do_not() {
        let keymap = Keymap::embedded("default").unwrap().unwrap();
        let q = press(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(keymap.action(Context::Events, &q), Some(Action::Quit));
        assert_eq!(keymap.action(Context::Global, &q), Some(Action::Quit));
        assert_eq!(keymap.action(Context::Dialog, &q), None);
        assert_eq!(keymap.action(Context::Input, &q), None);
        let a = press(KeyCode::Char('a'), KeyModifiers::NONE);
        assert_eq!(keymap.action(Context::Rollout, &a), Some(Action::Abort));
        assert_eq!(keymap.action(Context::Environments, &a), None, "abort lives in the rollout pane only");

        assert_eq!(keymap.key_for(Context::Dialog, Action::Select), Some(&key("y")));
        assert_eq!(keymap.key_for(Context::Dialog, Action::Back), Some(&key("n")));
        assert_eq!(keymap.key_for(Context::Rollout, Action::Abort), Some(&key("a")));
        assert_eq!(keymap.key_for(Context::Rollout, Action::Quit), Some(&key("q")));
        assert_eq!(keymap.key_for(Context::Dialog, Action::Quit), None);
        assert_eq!(keymap.key_for(Context::Events, Action::Abort), None);
    }

    #[test]
    fn bindings_list_own_then_unshadowed_global_in_file_order() {
        let keymap = Keymap::embedded("default").unwrap().unwrap();
        let env = keymap.bindings(Context::Environments);
        let actions: Vec<Action> = env.iter().map(|b| b.action).collect();
        assert_eq!(actions[..4], [Action::Select, Action::Promote, Action::Approve, Action::Deploy]);
        assert_eq!(actions[4], Action::Quit);
        assert_eq!(actions.iter().filter(|a| **a == Action::Select).count(), 1, "global enter is shadowed");
        assert!(env[0].desc.contains("release"), "the pane's own description wins: {}", env[0].desc);
        assert_eq!(actions.last(), Some(&Action::Refresh));

        let dialog: Vec<Action> = keymap.bindings(Context::Dialog).iter().map(|b| b.action).collect();
        assert_eq!(dialog, [Action::Select, Action::Back]);
        let global = keymap.bindings(Context::Global);
        assert_eq!(global.first().map(|b| b.action), Some(Action::Quit));
        assert!(global.iter().all(|b| b.action != Action::Abort));
    }

    fn config_dir_with(user_file: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(USER_FILE), user_file).unwrap();
        dir
    }

    #[test]
    fn a_user_binding_replaces_the_default_keys_of_that_action_only() {
        let dir = config_dir_with(
            r#"
                [[rollout]]
                on = "x"
                run = "abort"
                desc = "Abort, my way"

                [[global]]
                on = "Q"
                run = "quit"
            "#,
        );
        let keymap = Keymap::load("default", Some(dir.path())).unwrap();
        let at = |ctx, k: &str| keymap.action(ctx, &event(&key(k)));
        assert_eq!(at(Context::Rollout, "x"), Some(Action::Abort));
        assert_eq!(at(Context::Rollout, "a"), None, "the default key is gone");
        assert_eq!(at(Context::Rollout, "p"), Some(Action::Pause), "other defaults stay");
        assert_eq!(at(Context::Rollout, "Q"), Some(Action::Quit));
        assert_eq!(at(Context::Rollout, "q"), None);
        assert_eq!(at(Context::Rollout, "ctrl-c"), None, "every default key of the action is replaced");

        let rollout = keymap.bindings(Context::Rollout);
        let abort = rollout.iter().position(|b| b.action == Action::Abort);
        assert_eq!(abort, Some(3), "in the default's place");
        assert_eq!(rollout[3].desc, "Abort, my way");
        let quit = keymap.bindings(Context::Global).into_iter().find(|b| b.action == Action::Quit);
        assert_eq!(quit.map(|b| b.desc.as_str()), Some(Action::Quit.describe()), "desc defaults to describe()");

        let none = tempfile::tempdir().unwrap();
        let plain = Keymap::load("emacs", Some(none.path())).unwrap();
        assert_eq!(plain.action(Context::Events, &event(&key("ctrl-n"))), Some(Action::Down));
        assert!(Keymap::load("default", None).is_ok());
    }

    #[test]
    fn a_user_file_can_start_from_emacs() {
        let dir = config_dir_with("base = \"emacs\"\n[[rollout]]\non = \"k\"\nrun = \"abort\"\n");
        let keymap = Keymap::load("default", Some(dir.path())).unwrap();
        assert_eq!(keymap.action(Context::Rollout, &event(&key("ctrl-n"))), Some(Action::Down));
        assert_eq!(keymap.action(Context::Rollout, &event(&key("k"))), Some(Action::Abort));
        assert_eq!(keymap.action(Context::Rollout, &event(&key("a"))), None);
    }

    #[test]
    fn unknown_bases_are_refused() {
        let e = Keymap::load("vim", None).unwrap_err().to_string();
        assert_mentions(&e, &["`vim`", "default, emacs"]);
        let dir = config_dir_with("base = \"vim\"\n");
        let e = Keymap::load("default", Some(dir.path())).unwrap_err().to_string();
        assert_mentions(&e, &[USER_FILE, "base", "`vim`", "default, emacs"]);
    }

    #[test]
    fn a_key_bound_twice_in_one_context_is_refused() {
        let e = fixture_err("keymap_clash.toml");
        assert_mentions(&e, &["keymap_clash.toml", "[[rollout]] #2", "`p`", "`retry`", "[[rollout]] #1", "`pause`"]);
    }

    #[test]
    fn a_pane_key_hiding_a_global_one_is_refused_naming_both() {
        let e = fixture_err("keymap_shadow.toml");
        assert_mentions(
            &e,
            &[
                "keymap_shadow.toml",
                "[[global]] #1 (run = \"refresh\")",
                "key `p` is bound to `pause` in [[rollout]] #1 of embedded keymap default",
                "and to `refresh` in [[global]] #1;",
                "in the rollout pane the pane's binding would hide `refresh`",
            ],
        );
        // The same clash within one file.
        let text = "[[global]]\non = \"a\"\nrun = \"refresh\"\n[[rollout]]\non = \"a\"\nrun = \"abort\"\n";
        let e = Keymap::parse(text, "k.toml").unwrap_err().to_string();
        assert_mentions(
            &e,
            &["[[rollout]] #1 (run = \"abort\")", "`a` is bound to `abort`", "to `refresh` in [[global]] #1"],
        );
    }

    #[test]
    fn ctrl_d_never_runs_something_destructive() {
        let e = fixture_err("keymap_ctrl_d_abort.toml");
        assert_mentions(
            &e,
            &["keymap_ctrl_d_abort.toml", "[[rollout]] #1", "`ctrl-d`", "`abort`", "ctrl-d must never"],
        );
        for action in Action::all().filter(|a| a.destructive()) {
            let text = format!("[[flags]]\non = \"ctrl-D\"\nrun = \"{action}\"\n");
            assert!(Keymap::parse(&text, "k").is_err(), "{action} on ctrl-D");
        }
    }

    #[test]
    fn an_unknown_action_lists_the_known_ones() {
        let e = fixture_err("keymap_unknown_action.toml");
        assert_mentions(&e, &["keymap_unknown_action.toml", "[[rollout]] #1", "unknown action `abortt`", "quit, help"]);
        assert_mentions(&e, &["flag_percent_down, refresh"]);
    }

    #[test]
    fn an_unparsable_key_gives_the_syntax() {
        let e = fixture_err("keymap_bad_key.toml");
        assert_mentions(&e, &["keymap_bad_key.toml", "[[global]] #1", "`ctrl+c`", "optionally after ctrl-"]);
    }

    #[test]
    fn an_empty_on_is_refused() {
        let e = fixture_err("keymap_empty_on.toml");
        assert_mentions(&e, &["keymap_empty_on.toml", "[[global]] #1", "`on` is empty"]);
        let e = Keymap::parse("[[global]]\non = \"\"\nrun = \"help\"", "k").unwrap_err().to_string();
        assert_mentions(&e, &["`on` is empty"]);
    }

    #[test]
    fn an_unknown_context_lists_the_known_ones() {
        let e = fixture_err("keymap_unknown_context.toml");
        assert_mentions(
            &e,
            &["keymap_unknown_context.toml", "unknown context `rollouts`", "global, environments, rollout"],
        );
    }

    #[test]
    fn dialogs_and_the_input_line_take_only_their_actions() {
        let e = Keymap::parse("[[dialog]]\non = \"a\"\nrun = \"abort\"", "k").unwrap_err().to_string();
        assert_mentions(&e, &["[[dialog]] #1", "`abort` cannot be bound in [[dialog]]", "select, back"]);
        let e = Keymap::parse("[[input]]\non = \"tab\"\nrun = \"next_pane\"", "k").unwrap_err().to_string();
        assert_mentions(&e, &["select, back, up, down"]);
        let e = Keymap::parse("[[input]]\non = \"k\"\nrun = \"up\"", "k").unwrap_err().to_string();
        assert_mentions(&e, &["`k` would stop you typing `k`"]);
        assert!(Keymap::parse("[[input]]\non = \"ctrl-k\"\nrun = \"up\"", "k").is_ok());
    }

    #[test]
    fn other_mistakes_are_named() {
        let cases = [
            ("[[global]]\non = \"q\"", "[[global]] #1: `run` is missing"),
            ("[[global]]\nrun = \"quit\"", "`on` is missing"),
            ("[[global]]\non = \"q\"\nrun = \"quit\"\nkey = \"x\"", "unknown key `key`"),
            ("[[global]]\non = 1\nrun = \"quit\"", "`on` must be a key in quotes"),
            ("global = \"q\"", "global: expected a list of bindings"),
            ("base = 1", "base: expected the name of an embedded keymap"),
        ];
        for (text, expected) in cases {
            let e = Keymap::parse(text, "k.toml").unwrap_err().to_string();
            assert_mentions(&e, &["keymap file k.toml", expected]);
        }
        let e = Keymap::parse("[[global]\n", "k.toml").unwrap_err().to_string();
        assert_mentions(&e, &["keymap file k.toml is not valid TOML"]);
        let same = "[[global]]\non = [\"q\", \"q\"]\nrun = \"quit\"";
        assert!(Keymap::parse(same, "k").is_ok(), "a key repeated for the same action is harmless");
    }
}
