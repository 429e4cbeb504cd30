//! Feature flags: state, rollout percentage, variants; toggle and change the percentage.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table};

use super::{block, scroll_offset, shown};
use crate::config::theme::Role;
use crate::tui::app::App;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let flags = app.visible_flags();
    // One line a row, under the border and the header.
    let visible = area.height.saturating_sub(3) as usize;
    let offset = scroll_offset(app.sel_flag, flags.len(), visible);
    let rows: Vec<Row> = flags
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(i, f)| {
            let state = if f.enabled {
                Span::styled("ON ", t.style(Role::Ok))
            } else {
                Span::styled("OFF", t.style(Role::Error))
            };
            let rollout = match f.rollout {
                Some(p) => format!("{:<10} {p:>3}%", bar(p)),
                None => format!("default: {}", f.default_variant),
            };
            let row = Row::new(vec![
                Cell::from(f.key.clone()),
                Cell::from(state),
                Cell::from(rollout),
                Cell::from(f.variants.join(", ")),
                Cell::from(Span::styled(f.description.clone(), t.style(Role::Muted))),
            ]);
            if i == app.sel_flag { row.style(t.style(Role::Selection)) } else { row }
        })
        .collect();
    let drawn = rows.len();
    let widths = [
        Constraint::Length(24),
        Constraint::Length(5),
        Constraint::Length(16),
        Constraint::Length(14),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(vec!["FLAG", "STATE", "ROLLOUT", "VARIANTS", "DESCRIPTION"]).style(t.style(Role::Header)))
        .block(block(t, format!(" Flags — {}{} (flagd format) ", flags.len(), shown(offset, drawn, flags.len()))));
    frame.render_widget(table, area);
}

fn bar(percent: u32) -> String {
    let filled = (percent as usize).div_ceil(10).min(10);
    format!("{}{}", "█".repeat(filled), "░".repeat(10 - filled))
}
