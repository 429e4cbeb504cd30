//! One module per pane. Each draws from the [`App`](super::app::App) alone.

pub mod analysis;
pub mod argo;
pub mod emergency;
pub mod environments;
pub mod events;
pub mod flag_detail;
pub mod flags;
pub mod rollout;
pub mod wizard;

use ratatui::style::Style;

use crate::config::theme::{Role, Theme};
use crate::model::Status;

/// The theme role that carries a release status's meaning.
pub fn status_style(theme: &Theme, status: Status) -> Style {
    theme.style(match status {
        Status::Verified | Status::Deployed => Role::Ok,
        Status::InProgress => Role::Info,
        Status::Paused | Status::Planned => Role::Warn,
        Status::Failed | Status::RolledBack | Status::Aborted => Role::Error,
    })
}

pub fn block<'a>(theme: &Theme, title: String) -> ratatui::widgets::Block<'a> {
    ratatui::widgets::Block::bordered()
        .title(title)
        .title_style(theme.style(Role::Title))
        .border_style(theme.style(Role::BorderFocused))
        .style(theme.style(Role::Base))
}

/// The first of `rows` rows to draw when `visible` fit, so that `selected` is on screen: the
/// list scrolls once the selection passes the middle of the page and stops at the last page.
/// Panes build only the rows from there, so a long list costs what a page costs.
pub fn scroll_offset(selected: usize, rows: usize, visible: usize) -> usize {
    if visible == 0 || rows <= visible {
        return 0;
    }
    selected.saturating_sub(visible / 2).min(rows - visible)
}

/// `, 41–60 shown` when only part of `rows` fits, for a pane's title.
pub fn shown(offset: usize, drawn: usize, rows: usize) -> String {
    if drawn >= rows { String::new() } else { format!(", {}–{} shown", offset + 1, offset + drawn) }
}
