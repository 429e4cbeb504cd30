//! Apps × environments: what runs where, its health, the release moving, drift between
//! environments and pending approvals.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{block, scroll_offset, shown, status_style};
use crate::cluster::Target;
use crate::config::theme::Role;
use crate::tui::app::App;
use crate::tui::snapshot::WorkloadView;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let snap = &app.snapshot;
    let apps = app.visible_apps();
    let pending: Vec<String> = snap
        .workloads
        .values()
        .flat_map(|w| w.pending.iter())
        .map(|r| format!("{} waits for approval (requested by {})", r.id, r.requested_by))
        .collect();
    let [table_area, notes_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length((pending.len() as u16 + 2).clamp(3, 8))]).areas(area);

    let mut header = vec![Cell::from("APP")];
    header.extend(snap.envs.iter().map(|e| Cell::from(e.to_uppercase())));
    header.push(Cell::from("DRIFT"));
    // Two lines a row, under the border and the header.
    let visible = (table_area.height.saturating_sub(3) / 2) as usize;
    let offset = scroll_offset(app.sel_app, apps.len(), visible);
    let mut rows = Vec::new();
    for (i, a) in apps.iter().enumerate().skip(offset).take(visible) {
        let mut cells = vec![Cell::from(Span::styled(a.clone(), t.style(Role::Title)))];
        let mut versions = Vec::new();
        for (j, e) in snap.envs.iter().enumerate() {
            let w = snap.workload(&Target::new(e, a));
            let selected = i == app.sel_app && j == app.sel_env;
            let mut cell = cell_for(app, w);
            if selected {
                cell = cell.style(t.style(Role::Selection));
            }
            cells.push(cell);
            versions.push(w.and_then(|w| w.current_version()).unwrap_or("-").to_string());
        }
        cells.push(Cell::from(drift(&snap.envs, &versions)).style(t.style(Role::Muted)));
        rows.push(Row::new(cells).height(2));
    }
    let rows_drawn = rows.len();
    let mut widths = vec![Constraint::Length(12)];
    widths.extend(snap.envs.iter().map(|_| Constraint::Fill(1)));
    widths.push(Constraint::Length(24));
    let (n, more) = (apps.len(), shown(offset, rows_drawn, apps.len()));
    let title = format!(" Environments — {n} apps × {} environments{more} ", snap.envs.len());
    let table = Table::new(rows, widths).header(Row::new(header).style(t.style(Role::Header))).block(block(t, title));
    frame.render_widget(table, table_area);

    let notes: Vec<Line> = if pending.is_empty() {
        vec![Line::styled("No release waits for approval.", t.style(Role::Muted))]
    } else {
        pending.into_iter().map(|p| Line::styled(p, t.style(Role::Important))).collect()
    };
    frame.render_widget(Paragraph::new(notes).block(block(t, " Pending approvals ".into())), notes_area);
}

/// Two lines: `1.5.0 ● 4/4` and the release's status and step.
fn cell_for<'a>(app: &App, w: Option<&WorkloadView>) -> Cell<'a> {
    let t = &app.theme;
    let Some(w) = w else { return Cell::from("-") };
    if let Some(why) = &w.error {
        // Not "nothing runs": the cluster could not be read.
        let first = Line::from(Span::styled("⚠ state unknown", t.style(Role::Error)));
        return Cell::from(vec![first, Line::styled(why.clone(), t.style(Role::Error))]);
    }
    let version = w.current_version().unwrap_or("nothing").to_string();
    let (ready, desired) = w.state.versions.values().fold((0, 0), |(r, d), v| (r + v.ready, d + v.desired));
    let health = if desired > 0 && ready >= desired {
        Span::styled("● ", t.style(Role::Ok))
    } else if ready > 0 {
        Span::styled("◐ ", t.style(Role::Warn))
    } else {
        Span::styled("○ ", t.style(Role::Error))
    };
    let first = Line::from(vec![health, Span::raw(format!("{version} {ready}/{desired}"))]);
    let mut second = match &w.release {
        Some(r) if r.status.is_active() => {
            let word = if r.interrupted { "interrupted" } else { status_word(r.status) };
            let s = format!("{word} {}/{} {}", (r.cursor + 1).min(r.plan.len()), r.plan.len(), r.version);
            Line::from(Span::styled(s, status_style(t, r.status)))
        }
        Some(r) => {
            Line::from(Span::styled(format!("{} {}", status_word(r.status), r.version), status_style(t, r.status)))
        }
        None => Line::styled("-", t.style(Role::Muted)),
    };
    // The mark first, so that a narrow cell still shows it; who holds it after the status.
    if let Some(d) = &w.driver {
        let (mark, who) = lease_spans(app, d);
        second.spans.insert(0, mark);
        second.push_span(who);
    }
    Cell::from(vec![first, second])
}

/// `⚿ ` and ` alice` (another console drives it), ` you`, ` lapsed` (its holder stopped renewing).
pub fn lease_spans(app: &App, d: &crate::cluster::Driver) -> (Span<'static>, Span<'static>) {
    let t = &app.theme;
    let (who, role) = if d.mine {
        ("you".to_string(), Role::Info)
    } else if d.lapsed {
        ("lapsed".to_string(), Role::Muted)
    } else {
        (d.holder.split_whitespace().next().unwrap_or("someone").to_string(), Role::Important)
    };
    (Span::styled("⚿ ", t.style(role)), Span::styled(format!(" {who}"), t.style(role)))
}

/// Short words that fit a cell at 80 columns.
fn status_word(s: crate::model::Status) -> &'static str {
    use crate::model::Status::*;
    match s {
        Planned => "approval?",
        InProgress => "running",
        Paused => "paused",
        Deployed => "deployed",
        Verified => "verified",
        Failed => "failed",
        RolledBack => "rolled back",
        Aborted => "aborted",
    }
}

/// `dev ahead` when environments run different versions, in promotion order.
fn drift(envs: &[String], versions: &[String]) -> String {
    let distinct: std::collections::BTreeSet<&String> = versions.iter().collect();
    if distinct.len() <= 1 {
        return "in step".into();
    }
    let pairs: Vec<String> = envs.iter().zip(versions).map(|(e, v)| format!("{e} {v}")).collect();
    pairs.join(" · ")
}
