//! One module per pane. Each draws from the [`App`](super::app::App) alone.

pub mod analysis;
pub mod emergency;
pub mod environments;
pub mod events;
pub mod flags;
pub mod rollout;

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
