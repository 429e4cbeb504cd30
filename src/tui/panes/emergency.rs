//! The emergency procedure, as the standard gives it: the rollout plan per severity. The
//! guided hotfix wizard that runs it is not part of this version; this pane says so plainly.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row, Table, Wrap};

use super::block;
use crate::config::theme::Role;
use crate::tui::app::App;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let [plans, note] = Layout::vertical([Constraint::Length(7), Constraint::Min(3)]).areas(area);
    let rows = vec![
        Row::new(vec!["P0", "immediate", "prod → staging → dev", "none", "no", "5 min", "5%"]),
        Row::new(vec!["P1", "rapid", "prod → staging", "10% for 10 min", "yes (2)", "30 min", "2%"]),
        Row::new(vec!["P2", "controlled", "staging → prod", "25% for 30 min", "yes (2)", "1 h", "1%"]),
    ];
    let widths = [
        Constraint::Length(4),
        Constraint::Length(11),
        Constraint::Length(22),
        Constraint::Length(15),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(
            Row::new(vec!["SEV", "PACE", "ORDER", "CANARY", "APPROVAL", "MONITOR", "ROLLBACK AT"])
                .style(t.style(Role::Header)),
        )
        .block(block(t, " Emergency release plans (the standard's procedure) ".into()));
    frame.render_widget(table, plans);
    let text = vec![
        Line::styled("The guided hotfix wizard is not in this version of shipdeck.", t.style(Role::Warn)),
        Line::raw(
            "Until it is, ship a fix with the palette (:deploy APP VERSION ENV canary) and watch it in the Rollout pane; abort (a) or roll back (b) from the keyboard.",
        ),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }).block(block(t, " Hotfix ".into())), note);
}
