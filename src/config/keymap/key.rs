//! Keys as keymap files write them: parsing, display, and conversion from crossterm events.

use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// How to write a key, for error messages.
const KEY_SYNTAX: &str = "write one character (`q`, `?`, `A` for shift-a) or a name (enter, esc, tab, backtab, \
     backspace, up, down, left, right, pageup, pagedown, home, end, space, delete, insert, f1 to f12), \
     optionally after ctrl-, alt- or shift- (`ctrl-c`, `alt-x`, `shift-up`)";

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
    pub(super) fn is_printable(&self) -> bool {
        matches!(self.code, KeyCode::Char(_)) && !self.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    }

    pub(super) fn is_ctrl_d(&self) -> bool {
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
