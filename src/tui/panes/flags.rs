//! Feature flags: state, rollout percentage, variants; toggle and change the percentage.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table};

use super::{block, scroll_offset, shown};
use crate::config::theme::Role;
use crate::tui::app::App;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    // The list on top, the selected flag's details below when there is room for both.
    let rows = app.visible_flags().len() as u16;
    if area.height >= 18 {
        let list = (rows + 3).clamp(5, area.height / 2);
        let [top, bottom] = Layout::vertical([Constraint::Length(list), Constraint::Min(1)]).areas(area);
        draw_list(frame, app, top);
        super::flag_detail::draw(frame, app, bottom);
    } else {
        draw_list(frame, app, area);
    }
}

fn draw_list(frame: &mut Frame, app: &App, area: Rect) {
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
                Cell::from(served(app.snapshot.flag_served.get(&f.key))),
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
        Constraint::Length(27),
        Constraint::Length(14),
        Constraint::Fill(1),
    ];
    let header = ["FLAG", "STATE", "ROLLOUT", "SERVED (LAST MINUTE)", "VARIANTS", "DESCRIPTION"];
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(t.style(Role::Header)))
        .block(block(t, format!(" Flags — {}{} (flagd format) ", flags.len(), shown(offset, drawn, flags.len()))));
    if let Some(problem) = &app.snapshot.flag_problem {
        let text = ratatui::widgets::Paragraph::new(problem.clone())
            .style(t.style(Role::Error))
            .wrap(ratatui::widgets::Wrap { trim: true })
            .block(block(t, " Flags ".into()));
        frame.render_widget(text, area);
        return;
    }
    frame.render_widget(table, area);
}

/// What the pods served of a flag: each variant's share of the requests, and the count.
pub(super) fn served(by_variant: Option<&std::collections::BTreeMap<String, u64>>) -> String {
    let Some(by_variant) = by_variant.filter(|m| m.values().any(|n| *n > 0)) else { return "—".into() };
    let total: u64 = by_variant.values().sum();
    let shares: Vec<String> =
        by_variant.iter().map(|(v, n)| format!("{v} {:.0}%", *n as f64 * 100.0 / total as f64)).collect();
    format!("{} · {total} req", shares.join(" · "))
}

fn bar(percent: u32) -> String {
    let filled = (percent as usize).div_ceil(10).min(10);
    format!("{}{}", "█".repeat(filled), "░".repeat(10 - filled))
}
