//! `shipdeck screenshots`: every pane and the help overlay, drawn by the console's own view
//! code from the built-in demo data ([`crate::tui::fixture`]) at a fixed size, written as SVG.
//! No engine starts and no user config is read (but a user theme named by --theme), so the
//! images are the same on every machine.

use std::io::Write;
use std::path::{Path, PathBuf};

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::{Cli, EXIT_BACKEND, EXIT_BAD_INPUT, EXIT_OK, fail};
use crate::config::keymap::Keymap;
use crate::config::paths;
use crate::config::theme::Theme;
use crate::tui::app::{App, Mode, Pane};
use crate::tui::{fixture, svg, view};

pub const WIDTH: u16 = 160;
pub const HEIGHT: u16 = 48;

/// Write `<out>/<pane>.svg` for each pane and `<out>/help.svg`; returns the exit code.
pub fn write_all(cli: &Cli, out: &Path) -> i32 {
    let (theme, keymap) = match look(cli) {
        Ok(l) => l,
        Err(e) => return fail(cli, EXIT_BAD_INPUT, &e),
    };
    if let Err(e) = std::fs::create_dir_all(out) {
        return fail(cli, EXIT_BACKEND, &format!("cannot create {}: {e}", out.display()));
    }
    let mut shots: Vec<(String, App)> = Vec::new();
    for pane in Pane::ALL {
        let mut app = fixture::app_with(fixture::fixture(), theme.clone(), keymap.clone());
        app.pane = pane;
        shots.push((pane.name().to_string(), app));
    }
    let mut help = fixture::app_with(fixture::fixture(), theme.clone(), keymap.clone());
    help.mode = Mode::Help;
    shots.push(("help".into(), help));

    let mut stdout = std::io::stdout().lock();
    for (name, app) in shots {
        let path: PathBuf = out.join(format!("{name}.svg"));
        let image = render(&app);
        if let Err(e) = std::fs::write(&path, image) {
            return fail(cli, EXIT_BACKEND, &format!("cannot write {}: {e}", path.display()));
        }
        // A closed stdout (`| head`) is no reason to stop writing images.
        let _ = if cli.json {
            writeln!(stdout, "{}", serde_json::json!({"type": "screenshot", "name": name, "path": path}))
        } else {
            writeln!(stdout, "{}", path.display())
        };
    }
    EXIT_OK
}

/// One frame of `app` at [`WIDTH`]×[`HEIGHT`], as SVG.
pub fn render(app: &App) -> String {
    let mut terminal = match Terminal::new(TestBackend::new(WIDTH, HEIGHT)) {
        Ok(t) => t,
        Err(never) => match never {},
    };
    let _ = terminal.draw(|f| view::draw(f, app));
    svg::render(terminal.backend().buffer(), &app.theme)
}

/// The --theme (an embedded theme as shipped, else a user theme or a path; default dark) and
/// the embedded --keymap (default "default"), without the user's keymap.toml.
fn look(cli: &Cli) -> Result<(Theme, Keymap), String> {
    let name = cli.theme.as_deref().unwrap_or("dark");
    let theme = match Theme::embedded(name) {
        Some(t) => t,
        None => Theme::load(name, paths::config_dir().as_deref()).map_err(|e| e.to_string())?,
    };
    let keymap_name = cli.keymap.as_deref().unwrap_or("default");
    let keymap = Keymap::embedded(keymap_name)
        .ok_or_else(|| {
            format!("no embedded keymap named `{keymap_name}` (embedded: {})", Keymap::embedded_names().join(", "))
        })?
        .map_err(|e| e.to_string())?;
    Ok((theme, keymap))
}
