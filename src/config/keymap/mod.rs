//! Key bindings. Every key runs a named [`Action`] in a [`Context`] (a pane, a dialog, the input
//! line), and every binding carries a description, so the help overlay and the footer are built
//! from the same table that decides what a key does: they cannot drift apart.
//!
//! Bindings are checked when loaded. A keymap that would make a key ambiguous, hide a global
//! action inside a pane, or put something destructive on `ctrl-d` is refused with the file, the
//! context, the key and the clash, rather than half-working at three in the morning.

mod action;
mod key;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crossterm::event::{KeyEvent, KeyEventKind};

pub use action::{Action, Context};
pub use key::{Key, KeyError};

/// The shipped keymaps, compiled in so that shipdeck works with no files on disk.
const EMBEDDED: [(&str, &str); 2] = [
    ("default", include_str!("../../../keymaps/default.toml")),
    ("emacs", include_str!("../../../keymaps/emacs.toml")),
];

const EMBEDDED_NAMES: [&str; 2] = ["default", "emacs"];

/// The user's keymap file, inside the config directory.
pub const USER_FILE: &str = "keymap.toml";

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
