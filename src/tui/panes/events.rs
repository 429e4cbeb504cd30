//! The audit log, the engine's events and, for Kubernetes environments, the cluster's Events
//! about the apps' objects (`k8s`), newest at the bottom, filterable with `/`.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::block;
use crate::config::theme::Role;
use crate::tui::app::App;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let height = area.height.saturating_sub(2) as usize;
    let (mut log, total) = app.log_tail(height, app.events_scroll);
    if log.len() < height && app.events_scroll > 0 {
        // Scrolled past the oldest line: show the oldest page.
        log = app.log_tail(height, total.saturating_sub(height)).0;
    }
    let lines: Vec<Line> = log
        .iter()
        .map(|l| {
            let role = match l.kind.as_str() {
                "analysis" if l.text.contains("fail") => Role::Error,
                "release"
                    if l.text.contains("rolled_back") || l.text.contains("failed") || l.text.contains("aborted") =>
                {
                    Role::Error
                }
                "release" if l.text.contains("verified") => Role::Ok,
                "audit" => Role::Muted,
                "k8s" if l.text.contains(" Warning ") => Role::Warn,
                _ => Role::Base,
            };
            Line::from(vec![
                Span::styled(l.at.format("%H:%M:%S ").to_string(), t.style(Role::Muted)),
                Span::styled(format!("{:<9}", l.kind), t.style(Role::Info)),
                Span::styled(l.text.clone(), t.style(role)),
            ])
        })
        .collect();
    let title = if app.filter_on(crate::tui::app::Pane::Events).is_empty() {
        format!(" Events — {total} ")
    } else {
        format!(" Events — {total} matching `{}` ", app.filter)
    };
    frame.render_widget(Paragraph::new(lines).block(block(t, title)), area);
}
