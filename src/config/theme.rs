//! Colour themes. Widgets ask for a semantic [`Role`] ("this is an error", "this is the canary
//! series"), never for a colour, so a theme can change every colour at once and a theme that
//! leaves a role out still renders sensibly through the role's fallback chain.

use std::collections::BTreeMap;
use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use serde::{Deserialize, Serialize};

/// The shipped themes, compiled in so that shipdeck works with no files on disk.
const EMBEDDED: [(&str, &str); 3] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    ("high-contrast", include_str!("../../themes/high-contrast.toml")),
];

const EMBEDDED_NAMES: [&str; 3] = ["dark", "light", "high-contrast"];

const COLOUR_NAMES: [(&str, Color); 17] = [
    ("black", Color::Black),
    ("red", Color::Red),
    ("green", Color::Green),
    ("yellow", Color::Yellow),
    ("blue", Color::Blue),
    ("magenta", Color::Magenta),
    ("cyan", Color::Cyan),
    ("gray", Color::Gray),
    ("darkgray", Color::DarkGray),
    ("lightred", Color::LightRed),
    ("lightgreen", Color::LightGreen),
    ("lightyellow", Color::LightYellow),
    ("lightblue", Color::LightBlue),
    ("lightmagenta", Color::LightMagenta),
    ("lightcyan", Color::LightCyan),
    ("white", Color::White),
    ("reset", Color::Reset),
];

const MODIFIER_NAMES: [(&str, Modifier); 6] = [
    ("bold", Modifier::BOLD),
    ("dim", Modifier::DIM),
    ("italic", Modifier::ITALIC),
    ("underlined", Modifier::UNDERLINED),
    ("reversed", Modifier::REVERSED),
    ("crossed_out", Modifier::CROSSED_OUT),
];

/// What a piece of text means. Themes style meanings, not widgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Normal text; its background is the console's background.
    Base,
    /// Secondary text: timestamps, hints, inactive tabs.
    Muted,
    Title,
    Border,
    BorderFocused,
    /// The selected row.
    Selection,
    /// Table headers.
    Header,
    /// Keys shown in the footer and the help.
    KeyHint,
    /// Success, verified, pass.
    Ok,
    /// Paused, inconclusive, warnings.
    Warn,
    /// Failed, rolled back, fail verdicts.
    Error,
    /// In progress.
    Info,
    /// The canary series in charts.
    Canary,
    /// The stable series in charts.
    Stable,
    /// Threshold lines in charts.
    Threshold,
    /// Things that need a person: pending approvals, interrupted releases.
    Important,
}

impl Role {
    pub const ALL: [Role; 16] = [
        Role::Base,
        Role::Muted,
        Role::Title,
        Role::Border,
        Role::BorderFocused,
        Role::Selection,
        Role::Header,
        Role::KeyHint,
        Role::Ok,
        Role::Warn,
        Role::Error,
        Role::Info,
        Role::Canary,
        Role::Stable,
        Role::Threshold,
        Role::Important,
    ];

    /// The name used in theme files.
    pub fn name(self) -> &'static str {
        match self {
            Role::Base => "base",
            Role::Muted => "muted",
            Role::Title => "title",
            Role::Border => "border",
            Role::BorderFocused => "border_focused",
            Role::Selection => "selection",
            Role::Header => "header",
            Role::KeyHint => "key_hint",
            Role::Ok => "ok",
            Role::Warn => "warn",
            Role::Error => "error",
            Role::Info => "info",
            Role::Canary => "canary",
            Role::Stable => "stable",
            Role::Threshold => "threshold",
            Role::Important => "important",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The role a theme's missing role borrows from: the nearest in meaning, so a partial theme
    /// still tells the canary from the stable series and a focused border from a plain one as
    /// far as it can. Every chain ends in `base`.
    pub fn fallback(self) -> Option<Role> {
        match self {
            Role::Base => None,
            Role::Canary => Some(Role::Info),
            Role::Stable | Role::Border => Some(Role::Muted),
            Role::Threshold | Role::Important => Some(Role::Warn),
            Role::BorderFocused | Role::KeyHint | Role::Header => Some(Role::Title),
            Role::Selection => Some(Role::Important),
            Role::Muted | Role::Title | Role::Ok | Role::Warn | Role::Error | Role::Info => Some(Role::Base),
        }
    }

    /// The role itself, then its fallbacks, ending with `base`.
    pub fn chain(self) -> impl Iterator<Item = Role> {
        std::iter::successors(Some(self), |r| r.fallback())
    }

    /// Under NO_COLOR, what stands in for the colour of a role whose colour carries meaning.
    fn emphasis_without_colour(self) -> Modifier {
        match self {
            Role::Error => Modifier::BOLD | Modifier::UNDERLINED,
            Role::Selection => Modifier::REVERSED,
            Role::Warn | Role::Important | Role::Title | Role::BorderFocused => Modifier::BOLD,
            _ => Modifier::empty(),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("cannot read theme file {path}: {message}")]
    Read { path: String, message: String },
    #[error("no theme named `{name}`: {detail}")]
    NotFound { name: String, detail: String },
    #[error("theme file {file} is not valid TOML: {message}")]
    Syntax { file: String, message: String },
    #[error("theme file {file}: {key}: {message}")]
    Invalid { file: String, key: String, message: String },
}

/// A set of role styles. Roles left out borrow from their fallbacks (see [`Role::fallback`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    /// Where it came from: `embedded theme dark`, or a file path.
    pub source: String,
    roles: BTreeMap<Role, Style>,
}

impl Theme {
    /// One of the embedded themes by name ("dark", "light", "high-contrast").
    pub fn embedded(name: &str) -> Option<Theme> {
        let (name, text) = EMBEDDED.iter().find(|(n, _)| *n == name)?;
        // The shipped themes are checked by the tests; `None` here would be a build defect.
        Self::parse_named(text, &format!("embedded theme {name}"), name).ok()
    }

    pub fn embedded_names() -> &'static [&'static str] {
        &EMBEDDED_NAMES
    }

    /// `name` is a user theme `<config_dir>/themes/<name>.toml`, an embedded theme, or a path to
    /// a .toml file. A file in the themes directory wins over an embedded theme of the same name,
    /// so a person can adjust "dark" in place; it may set `inherits = "dark"` to start from the
    /// embedded one.
    pub fn load(name: &str, config_dir: Option<&Path>) -> Result<Theme, ThemeError> {
        if name.ends_with(".toml") || name.contains('/') || name.contains(std::path::MAIN_SEPARATOR) {
            let path = Path::new(name);
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(name);
            return Self::load_file(path, stem);
        }
        let user_file = config_dir.map(|dir| dir.join("themes").join(format!("{name}.toml")));
        if let Some(path) = user_file.as_deref().filter(|p| p.is_file()) {
            return Self::load_file(path, name);
        }
        if let Some(theme) = Self::embedded(name) {
            return Ok(theme);
        }
        let mut detail = format!("the embedded themes are {}", EMBEDDED_NAMES.join(", "));
        match &user_file {
            Some(p) => detail.push_str(&format!(", and {} does not exist", p.display())),
            None => detail.push_str(", and there is no config directory to look for user themes in"),
        }
        detail.push_str("; pick an embedded theme, create that file, or give a path to a .toml file");
        Err(ThemeError::NotFound { name: name.to_string(), detail })
    }

    /// Parses a theme file's text; `source` names it in errors (a path, usually). A file without
    /// `name` is named after `source`'s file stem.
    pub fn parse(text: &str, source: &str) -> Result<Theme, ThemeError> {
        let stem = Path::new(source).file_stem().and_then(|s| s.to_str()).unwrap_or(source);
        Self::parse_named(text, source, stem)
    }

    fn load_file(path: &Path, default_name: &str) -> Result<Theme, ThemeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ThemeError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Self::parse_named(&text, &path.display().to_string(), default_name)
    }

    fn parse_named(text: &str, source: &str, default_name: &str) -> Result<Theme, ThemeError> {
        let invalid = |key: &str, message: String| ThemeError::Invalid {
            file: source.to_string(),
            key: key.to_string(),
            message,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ThemeError::Syntax { file: source.into(), message: e.to_string() })?;

        let mut name = default_name.to_string();
        let mut roles = BTreeMap::new();
        if let Some(parent) = table.get("inherits") {
            let parent = parent.as_str().ok_or_else(|| {
                invalid("inherits", "expected the name of an embedded theme in quotes, like \"dark\"".into())
            })?;
            let theme = Self::embedded(parent).ok_or_else(|| {
                invalid(
                    "inherits",
                    format!("no embedded theme named `{parent}`; embedded themes are {}", EMBEDDED_NAMES.join(", ")),
                )
            })?;
            roles = theme.roles;
        }
        for (key, value) in &table {
            match key.as_str() {
                "inherits" => {}
                "name" => {
                    name = value
                        .as_str()
                        .filter(|s| !s.trim().is_empty())
                        .ok_or_else(|| invalid("name", "expected a non-empty string, like \"my-theme\"".into()))?
                        .to_string();
                }
                "roles" => {
                    let table = value.as_table().ok_or_else(|| {
                        invalid("roles", "expected a table: write [roles] and one line per role".into())
                    })?;
                    for (role_name, spec) in table {
                        let key = format!("roles.{role_name}");
                        let role = Role::from_name(role_name).ok_or_else(|| {
                            invalid(&key, format!("unknown role `{role_name}`; known roles are {}", known_roles()))
                        })?;
                        roles.insert(role, parse_style(spec).map_err(|(sub, m)| invalid(&format!("{key}{sub}"), m))?);
                    }
                }
                other => {
                    return Err(invalid(
                        other,
                        format!("unknown key `{other}`; a theme has `name`, `inherits` and a [roles] table"),
                    ));
                }
            }
        }
        Ok(Theme { name, source: source.to_string(), roles })
    }

    /// The style of a role with fallbacks applied, over the base style so that every role
    /// carries the theme's foreground and background unless it sets its own.
    pub fn style(&self, role: Role) -> Style {
        let base = self.roles.get(&Role::Base).copied().unwrap_or_default();
        base.patch(self.own(role))
    }

    /// Whether the theme (or the embedded theme it inherits) sets this role itself.
    pub fn defines(&self, role: Role) -> bool {
        self.roles.contains_key(&role)
    }

    /// The first style set along the role's chain, without the base underneath.
    fn own(&self, role: Role) -> Style {
        role.chain().find_map(|r| self.roles.get(&r)).copied().unwrap_or_default()
    }

    /// For NO_COLOR (<https://no-color.org>): drops every colour and keeps modifiers. Roles whose
    /// colour carries meaning get a modifier instead, so an error still stands out: error →
    /// bold + underlined, warn, important, title and border_focused → bold, selection → reversed.
    pub fn without_color(self) -> Theme {
        let mut roles = BTreeMap::new();
        for role in Role::ALL {
            let emphasis = role.emphasis_without_colour();
            if self.defines(role) || !emphasis.is_empty() {
                let own = self.own(role);
                let style = Style::new().add_modifier(own.add_modifier).remove_modifier(own.sub_modifier);
                roles.insert(role, style.add_modifier(emphasis));
            }
        }
        Theme { roles, ..self }
    }
}

/// Whether the environment asks for no colour: `NO_COLOR` set to anything but the empty string.
pub fn no_color_requested() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

fn known_roles() -> String {
    Role::ALL.map(Role::name).join(", ")
}

/// One role's `{ fg, bg, modifiers }`. Errors carry the sub-key (like `.fg`) and the message.
fn parse_style(value: &toml::Value) -> Result<Style, (String, String)> {
    let table = value
        .as_table()
        .ok_or_else(|| (String::new(), "expected a table like { fg = \"red\", modifiers = [\"bold\"] }".to_string()))?;
    let mut style = Style::new();
    for (key, value) in table {
        match key.as_str() {
            "fg" => style.fg = Some(parse_colour(value).map_err(|m| (".fg".to_string(), m))?),
            "bg" => style.bg = Some(parse_colour(value).map_err(|m| (".bg".to_string(), m))?),
            "modifiers" => {
                let at = || ".modifiers".to_string();
                let list = value.as_array().ok_or_else(|| (at(), "expected a list like [\"bold\"]".to_string()))?;
                for item in list {
                    let word = item.as_str();
                    let modifier = MODIFIER_NAMES.iter().find(|(n, _)| Some(*n) == word).map(|(_, m)| *m);
                    let modifier = modifier.ok_or_else(|| {
                        let names = MODIFIER_NAMES.map(|(n, _)| n).join(", ");
                        let shown = word.map_or_else(|| item.to_string(), |w| format!("`{w}`"));
                        (at(), format!("unknown modifier {shown}; known modifiers are {names}"))
                    })?;
                    style = style.add_modifier(modifier);
                }
            }
            other => {
                return Err((
                    format!(".{other}"),
                    format!("unknown key `{other}`; a role takes `fg`, `bg` and `modifiers`"),
                ));
            }
        }
    }
    Ok(style)
}

/// A colour name, `#rrggbb`, or a palette index 0–255 (as a string or a number).
fn parse_colour(value: &toml::Value) -> Result<Color, String> {
    let bad = |shown: String| {
        let names = COLOUR_NAMES.map(|(n, _)| n).join(", ");
        format!("bad colour {shown}; write a name like `red` ({names}), `#rrggbb`, or an index 0–255")
    };
    if let Some(n) = value.as_integer() {
        return u8::try_from(n).map(Color::Indexed).map_err(|_| bad(n.to_string()));
    }
    let text = value.as_str().ok_or_else(|| bad(value.to_string()))?;
    colour_from_str(text).ok_or_else(|| bad(format!("`{text}`")))
}

fn colour_from_str(text: &str) -> Option<Color> {
    if let Some(hex) = text.strip_prefix('#') {
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        return Some(Color::Rgb(channel(0)?, channel(2)?, channel(4)?));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Color::Indexed);
    }
    let normal = text.to_ascii_lowercase().replace(['-', '_', ' '], "").replace("grey", "gray");
    COLOUR_NAMES.iter().find(|(n, _)| *n == normal).map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> String {
        format!("{}/src/config/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn load_err(fixture: &str) -> String {
        match Theme::load(&testdata(fixture), None) {
            Ok(t) => panic!("{fixture} should be refused, got {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_mentions(message: &str, parts: &[&str]) {
        for part in parts {
            assert!(message.contains(part), "`{part}` missing from: {message}");
        }
    }

    #[test]
    fn every_shipped_theme_parses_and_defines_every_role() {
        assert_eq!(Theme::embedded_names(), EMBEDDED.map(|(n, _)| n));
        for name in Theme::embedded_names() {
            let (_, text) = EMBEDDED.iter().find(|(n, _)| n == name).unwrap();
            let theme = Theme::parse_named(text, name, name).unwrap();
            assert_eq!(&theme.name, name);
            for role in Role::ALL {
                assert!(theme.defines(role), "theme {name} leaves out role {role}");
            }
            assert_eq!(Theme::embedded(name).map(|t| t.roles), Some(theme.roles));
        }
        assert_eq!(Theme::embedded("solarized"), None);
    }

    /// WCAG relative luminance of an RGB colour.
    fn luminance(c: Color) -> f64 {
        let Color::Rgb(r, g, b) = c else { panic!("shipped themes use #rrggbb colours, got {c:?}") };
        let lin = |v: u8| {
            let v = f64::from(v) / 255.0;
            if v <= 0.03928 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) }
        };
        0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
    }

    fn contrast(a: Color, b: Color) -> f64 {
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn shipped_themes_have_readable_contrast_and_the_right_background() {
        for name in Theme::embedded_names() {
            let theme = Theme::embedded(name).unwrap();
            let base_bg = theme.style(Role::Base).bg.unwrap();
            let dark_bg = luminance(base_bg) < 0.2;
            assert_eq!(dark_bg, *name != "light", "{name}: background {base_bg:?}");
            for role in Role::ALL {
                let s = theme.style(role);
                let ratio = contrast(s.fg.unwrap(), s.bg.unwrap());
                let needed = if role == Role::Border { 3.0 } else { 4.5 };
                assert!(ratio >= needed, "{name}: {role} has contrast {ratio:.2}, needs {needed}");
            }
        }
        let hc = Theme::embedded("high-contrast").unwrap();
        assert_eq!(hc.style(Role::Base).fg, Some(Color::Rgb(255, 255, 255)));
        assert_eq!(hc.style(Role::Base).bg, Some(Color::Rgb(0, 0, 0)));
        assert!(hc.style(Role::Error).add_modifier.contains(Modifier::BOLD));
    }

    #[test]
    fn a_theme_with_only_base_gives_every_role_the_base_style() {
        let theme = Theme::parse("[roles]\nbase = { fg = \"white\", bg = \"black\" }", "mini.toml").unwrap();
        assert_eq!(theme.name, "mini");
        let base = Style::new().fg(Color::White).bg(Color::Black);
        for role in Role::ALL {
            assert_eq!(theme.style(role), base, "{role}");
        }
    }

    #[test]
    fn fallbacks_follow_the_chain_and_keep_the_base_background() {
        let text = r##"
            [roles]
            base = { fg = "white", bg = "#101010" }
            info = { fg = "blue" }
            warn = { fg = "yellow", modifiers = ["bold"] }
            title = { fg = "cyan" }
        "##;
        let theme = Theme::parse(text, "t.toml").unwrap();
        let bg = Some(Color::Rgb(16, 16, 16));
        assert_eq!(theme.style(Role::Canary), Style { fg: Some(Color::Blue), bg, ..Style::default() });
        assert_eq!(theme.style(Role::Threshold), theme.style(Role::Warn));
        assert_eq!(theme.style(Role::Selection), theme.style(Role::Warn), "selection → important → warn");
        assert_eq!(theme.style(Role::KeyHint).fg, Some(Color::Cyan));
        assert_eq!(theme.style(Role::BorderFocused).fg, Some(Color::Cyan));
        assert_eq!(theme.style(Role::Ok).fg, Some(Color::White));
        for role in Role::ALL {
            assert_eq!(role.chain().last(), Some(Role::Base), "{role}");
        }
        assert_eq!(Role::Canary.chain().collect::<Vec<_>>(), [Role::Canary, Role::Info, Role::Base]);
    }

    #[test]
    fn role_names_match_serde() {
        for role in Role::ALL {
            let via_serde: Role = serde_json::from_value(serde_json::json!(role.name())).unwrap();
            assert_eq!(via_serde, role);
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
    }

    #[test]
    fn colours_modifiers_and_indices_parse() {
        let text = r##"
            name = "mine"
            [roles]
            base = { fg = "light-red", bg = "42" }
            muted = { fg = 7, bg = "#0A0b0c", modifiers = ["dim", "italic", "crossed_out"] }
            error = { fg = "Dark_Grey", modifiers = ["reversed", "underlined"] }
            ok = { fg = "reset" }
        "##;
        let theme = Theme::parse(text, "x").unwrap();
        assert_eq!(theme.name, "mine");
        assert_eq!(theme.style(Role::Base), Style::new().fg(Color::LightRed).bg(Color::Indexed(42)));
        let muted = theme.style(Role::Muted);
        assert_eq!((muted.fg, muted.bg), (Some(Color::Indexed(7)), Some(Color::Rgb(10, 11, 12))));
        assert_eq!(muted.add_modifier, Modifier::DIM | Modifier::ITALIC | Modifier::CROSSED_OUT);
        assert_eq!(theme.style(Role::Error).fg, Some(Color::DarkGray));
        assert_eq!(theme.style(Role::Ok).fg, Some(Color::Reset));
    }

    #[test]
    fn no_color_strips_colours_and_keeps_modifiers() {
        for name in Theme::embedded_names() {
            let theme = Theme::embedded(name).unwrap().without_color();
            for role in Role::ALL {
                let s = theme.style(role);
                assert_eq!((s.fg, s.bg), (None, None), "{name}: {role} still has a colour");
            }
            let error = theme.style(Role::Error).add_modifier;
            assert!(error.contains(Modifier::BOLD | Modifier::UNDERLINED), "{name}: {error:?}");
            assert!(theme.style(Role::Warn).add_modifier.contains(Modifier::BOLD));
            assert!(theme.style(Role::Important).add_modifier.contains(Modifier::BOLD));
            assert!(theme.style(Role::Title).add_modifier.contains(Modifier::BOLD));
            assert!(theme.style(Role::Selection).add_modifier.contains(Modifier::REVERSED));
        }
        // The theme's own modifiers survive; `ok` gets nothing extra.
        let text = r#"
            [roles]
            base = { fg = "white" }
            ok = { fg = "green" }
            info = { fg = "blue", modifiers = ["italic"] }
        "#;
        let theme = Theme::parse(text, "t").unwrap().without_color();
        assert_eq!(theme.style(Role::Ok), Style::new());
        assert_eq!(theme.style(Role::Info), Style::new().add_modifier(Modifier::ITALIC));
        assert_eq!(theme.style(Role::Canary), Style::new().add_modifier(Modifier::ITALIC), "fallback kept");
        assert_eq!(theme.style(Role::Error), Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    }

    #[test]
    fn user_theme_inherits_and_overrides_and_wins_over_an_embedded_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("themes")).unwrap();
        std::fs::write(dir.path().join("themes/mine.toml"), "inherits = \"dark\"\n[roles]\nerror = { fg = \"red\" }\n")
            .unwrap();
        std::fs::write(dir.path().join("themes/light.toml"), "[roles]\nbase = { fg = \"black\" }\n").unwrap();

        let mine = Theme::load("mine", Some(dir.path())).unwrap();
        let dark = Theme::embedded("dark").unwrap();
        assert_eq!(mine.name, "mine");
        assert_eq!(mine.style(Role::Error).fg, Some(Color::Red));
        assert!(!mine.style(Role::Error).add_modifier.contains(Modifier::BOLD), "a role is replaced whole");
        assert_eq!(mine.style(Role::Ok), dark.style(Role::Ok));
        assert_eq!(mine.style(Role::Base), dark.style(Role::Base));

        assert_eq!(Theme::load("light", Some(dir.path())).unwrap().style(Role::Base).fg, Some(Color::Black));
        assert_eq!(Theme::load("light", None).unwrap(), Theme::embedded("light").unwrap());
        assert_eq!(Theme::load("high-contrast", Some(dir.path())).unwrap().name, "high-contrast");

        let by_path = dir.path().join("themes/mine.toml");
        assert_eq!(Theme::load(by_path.to_str().unwrap(), None).unwrap().style(Role::Error).fg, Some(Color::Red));
    }

    #[test]
    fn unknown_theme_names_what_was_tried() {
        let dir = tempfile::tempdir().unwrap();
        let e = Theme::load("solarized", Some(dir.path())).unwrap_err().to_string();
        assert_mentions(&e, &["`solarized`", "dark, light, high-contrast", "themes/solarized.toml"]);
        let e = Theme::load("/nonexistent/x.toml", None).unwrap_err().to_string();
        assert_mentions(&e, &["cannot read theme file /nonexistent/x.toml"]);
    }

    #[test]
    fn bad_colour_names_file_role_and_syntax() {
        let e = load_err("broken_theme_bad_colour.toml");
        assert_mentions(
            &e,
            &["broken_theme_bad_colour.toml", "roles.error.fg", "bad colour `#zz0000`", "`red`", "#rrggbb", "0–255"],
        );
    }

    #[test]
    fn unknown_role_lists_the_known_ones() {
        let e = load_err("broken_theme_unknown_role.toml");
        assert_mentions(&e, &["broken_theme_unknown_role.toml", "roles.errr", "unknown role `errr`", &known_roles()]);
    }

    #[test]
    fn unknown_modifier_lists_the_known_ones() {
        let e = load_err("broken_theme_unknown_modifier.toml");
        assert_mentions(
            &e,
            &[
                "broken_theme_unknown_modifier.toml",
                "roles.warn.modifiers",
                "unknown modifier `blink`",
                "bold, dim, italic, underlined, reversed, crossed_out",
            ],
        );
    }

    #[test]
    fn other_mistakes_are_named() {
        let cases = [
            ("inherits = \"solarized\"", "inherits: no embedded theme named `solarized`"),
            ("colours = {}", "colours: unknown key `colours`"),
            ("[roles]\nok = \"green\"", "roles.ok: expected a table"),
            ("[roles]\nok = { colour = \"green\" }", "roles.ok.colour: unknown key `colour`"),
            ("[roles]\nok = { fg = 300 }", "roles.ok.fg: bad colour 300"),
            ("[roles]\nok = { fg = \"#12345\" }", "bad colour `#12345`"),
            ("[roles]\nok = { fg = \"256\" }", "bad colour `256`"),
            ("[roles]\nok = { modifiers = \"bold\" }", "roles.ok.modifiers: expected a list"),
            ("name = \"\"", "name: expected a non-empty string"),
        ];
        for (text, expected) in cases {
            let e = Theme::parse(text, "t.toml").unwrap_err().to_string();
            assert_mentions(&e, &["theme file t.toml", expected]);
        }
        let e = Theme::parse("[roles\n", "t.toml").unwrap_err().to_string();
        assert_mentions(&e, &["theme file t.toml is not valid TOML", "line 1"]);
    }
}
