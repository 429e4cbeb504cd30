//! `shipdeck` with no subcommand: the console, on a terminal; elsewhere, the status.

use std::io::IsTerminal;

use super::{Ctx, EXIT_BAD_INPUT, EXIT_OK, fail, report};
use crate::config::keymap::Keymap;
use crate::config::paths;
use crate::config::settings::Settings;
use crate::config::theme::Theme;

/// Theme and keymap from the flags, else config.toml, else the defaults; NO_COLOR honoured.
pub fn look(cli: &super::Cli) -> Result<(Theme, Keymap), String> {
    let dir = paths::config_dir();
    let settings = Settings::load(dir.as_deref())?;
    let theme_name = cli.theme.clone().or(settings.theme).unwrap_or_else(|| "dark".into());
    let keymap_name = cli.keymap.clone().or(settings.keymap).unwrap_or_else(|| "default".into());
    let mut theme = Theme::load(&theme_name, dir.as_deref()).map_err(|e| e.to_string())?;
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        theme = theme.without_color();
    }
    let keymap = Keymap::load(&keymap_name, dir.as_deref()).map_err(|e| e.to_string())?;
    Ok((theme, keymap))
}

pub(super) async fn open(ctx: &Ctx<'_>) -> i32 {
    let cli = ctx.cli;
    let (theme, keymap) = match look(cli) {
        Ok(l) => l,
        Err(e) => return fail(cli, EXIT_BAD_INPUT, &e),
    };
    if cli.json || !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return report::overview(ctx);
    }
    let start = ctx.start_host(cli.readonly, "console");
    let opts = crate::tui::Options { theme, keymap, readonly: cli.readonly, actor: ctx.actor.clone() };
    match crate::tui::run(start, opts).await {
        Ok(()) => EXIT_OK,
        Err(e) => match e.downcast_ref::<crate::host::HostError>() {
            Some(h) => fail(cli, h.exit_code(), &h.to_string()),
            None => fail(cli, super::EXIT_BACKEND, &format!("the console stopped: {e}")),
        },
    }
}
