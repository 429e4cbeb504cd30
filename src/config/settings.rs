//! `config.toml` in the config directory: the console's theme and keymap.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub theme: Option<String>,
    pub keymap: Option<String>,
}

impl Settings {
    /// The settings in `<dir>/config.toml`, or the defaults when there is none.
    pub fn load(dir: Option<&Path>) -> Result<Settings, String> {
        let Some(path) = dir.map(|d| d.join("config.toml")).filter(|p| p.exists()) else {
            return Ok(Settings::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{} is not valid: {}", path.display(), e.to_string().trim_end()))
    }
}
