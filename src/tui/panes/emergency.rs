//! The emergency procedure: the plan per severity (as the estate sets it), the latest
//! emergencies with their status and approvals, and the hotfix wizard when it is open.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, Wrap};

use super::{block, scroll_offset};
use crate::config::theme::{Role, Theme};
use crate::model::{EmergencyPlan, EmergencyStatus};
use crate::tui::app::App;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    if let Some(w) = &app.wizard {
        super::wizard::draw(frame, app, w, area);
        return;
    }
    let t = &app.theme;
    let report_height = if area.height >= 30 { 9 } else { 0 };
    let [plans, list, report] =
        Layout::vertical([Constraint::Length(6), Constraint::Min(3), Constraint::Length(report_height)]).areas(area);
    draw_plans(frame, app, plans);
    if report_height > 0 {
        frame.render_widget(boxed(t, " Report (shipdeck emergency report) ".into(), report_lines(app)), report);
    }
    let emergencies = &app.snapshot.emergencies;
    let wide = list.width >= 110;
    let visible = list.height.saturating_sub(3) as usize;
    let offset = scroll_offset(app.sel_emergency, emergencies.len(), visible);
    let rows: Vec<Row> = emergencies
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(i, e)| {
            let needed = e.plan.approvals_needed as usize;
            let approvals = if needed == 0 {
                "not needed".to_string()
            } else {
                format!("{}/{needed}", e.approvers.len().min(needed))
            };
            let mut cells = vec![
                Span::raw(e.id.clone()),
                Span::raw(e.severity.name()),
                Span::raw(e.kind.name().replace('_', " ")),
                Span::styled(status_name(e.status), t.style(status_role(e.status))),
                Span::raw(approvals),
                Span::raw(e.fix_version.clone()),
                Span::raw(e.affected_services.join(", ")),
                Span::styled(e.description.clone(), t.style(Role::Muted)),
            ];
            if !wide {
                cells.remove(2);
                cells.pop();
            }
            let row = Row::new(cells);
            if i == app.sel_emergency { row.style(t.style(Role::Selection)) } else { row }
        })
        .collect();
    // At 80 columns the type gives way, so the id is whole.
    let mut widths = vec![
        Constraint::Length(18),
        Constraint::Length(3),
        Constraint::Length(16),
        Constraint::Length(16),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(18),
        Constraint::Fill(1),
    ];
    let mut header = vec!["ID", "SEV", "TYPE", "STATUS", "APPROVALS", "FIX", "SERVICES", "DESCRIPTION"];
    if !wide {
        widths = vec![
            Constraint::Length(18),
            Constraint::Length(3),
            Constraint::Length(16),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Fill(1),
        ];
        header = vec!["ID", "SEV", "STATUS", "APPROVALS", "FIX", "SERVICES"];
    }
    let title = if emergencies.is_empty() {
        " Emergencies — none yet; n starts the hotfix wizard ".to_string()
    } else {
        format!(" Emergencies — latest {}; n new · enter follow · A approve ", emergencies.len())
    };
    let table = Table::new(rows, widths).header(Row::new(header).style(t.style(Role::Header))).block(block(t, title));
    frame.render_widget(table, list);
}

fn draw_plans(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let rows: Vec<Row> = app.snapshot.emergency_plans.iter().map(|(sev, p)| plan_row(sev.name(), p)).collect();
    let widths = [
        Constraint::Length(4),
        Constraint::Length(11),
        Constraint::Length(22),
        Constraint::Length(16),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(
            Row::new(vec!["SEV", "PACE", "ORDER", "CANARY", "APPROVAL", "MONITOR", "ROLLBACK AT"])
                .style(t.style(Role::Header)),
        )
        .block(block(t, " Emergency release plans (the standard's procedure, as the estate sets it) ".into()));
    frame.render_widget(table, area);
}

fn plan_row(sev: &str, p: &EmergencyPlan) -> Row<'static> {
    let canary = if p.canary_percent == 0 {
        "none".to_string()
    } else {
        format!("{}% for {}", p.canary_percent, p.canary_duration)
    };
    let approval = if p.approval_required { format!("yes ({})", p.approvals_needed) } else { "no".into() };
    Row::new(vec![
        sev.to_string(),
        p.strategy.clone(),
        p.environments.join(" → "),
        canary,
        approval,
        p.monitoring_duration.to_string(),
        format!("{}% errors", p.rollback_threshold * 100.0),
    ])
}

/// The report in a few lines: counts, time to resolve, success rate, services, recent weeks.
fn report_lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let Some(r) = app.snapshot.emergency_report.as_ref().filter(|r| r.total > 0) else {
        return vec![Line::styled("No emergencies recorded yet.", t.style(Role::Muted))];
    };
    let join = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter().map(|(k, n)| format!("{} {n}", k.replace('_', " "))).collect::<Vec<_>>().join(" · ")
    };
    let item =
        |k: &str, v: String| Line::from(vec![Span::styled(format!("{k:<18}"), t.style(Role::Muted)), Span::raw(v)]);
    let resolve = r.average_resolution_secs.map_or("-".to_string(), |s| {
        crate::model::HumanDuration(std::time::Duration::from_secs(s.round() as u64)).to_string()
    });
    let success = r.success_rate.map_or("-".to_string(), |s| format!("{:.0}%", s * 100.0));
    let services: Vec<String> =
        r.top_affected_services.iter().map(|s| format!("{} {}", s.service, s.emergencies)).collect();
    let weeks: Vec<String> =
        r.trend.iter().rev().take(6).map(|w| format!("{} {} ({} ok)", w.week, w.total, w.completed)).collect();
    vec![
        item("emergencies", format!("{} · {}", r.total, join(&r.by_severity))),
        item("by type", join(&r.by_type)),
        item("by status", join(&r.by_status)),
        item("time to resolve", format!("{resolve} on average (completed ones)")),
        item("success rate", success),
        item("most affected", services.join(" · ")),
        item("by week", weeks.join(" · ")),
    ]
}

/// The plan as lines, for the wizard's preview.
pub fn plan_lines(t: &Theme, p: &EmergencyPlan) -> Vec<Line<'static>> {
    let item =
        |k: &str, v: String| Line::from(vec![Span::styled(format!("{k:<24}"), t.style(Role::Muted)), Span::raw(v)]);
    vec![
        item("pace", p.strategy.clone()),
        item("environments, in order", p.environments.join(" → ")),
        item(
            "canary",
            if p.canary_percent == 0 {
                "none: the fix takes all traffic at once".into()
            } else {
                format!("{}% of traffic for {}", p.canary_percent, p.canary_duration)
            },
        ),
        item(
            "approvals",
            if p.approval_required {
                format!("{} people other than the requester", p.approvals_needed)
            } else {
                "none: runs at once and notifies".into()
            },
        ),
        item("monitoring", format!("{} per environment", p.monitoring_duration)),
        item("rolls back above", format!("{}% errors", p.rollback_threshold * 100.0)),
    ]
}

pub fn status_name(s: EmergencyStatus) -> &'static str {
    match s {
        EmergencyStatus::PendingApproval => "pending approval",
        EmergencyStatus::Approved => "approved",
        EmergencyStatus::Executing => "executing",
        EmergencyStatus::Completed => "completed",
        EmergencyStatus::Failed => "failed",
        EmergencyStatus::RolledBack => "rolled back",
        EmergencyStatus::Abandoned => "abandoned",
    }
}

pub fn status_role(s: EmergencyStatus) -> Role {
    match s {
        EmergencyStatus::PendingApproval => Role::Warn,
        EmergencyStatus::Approved | EmergencyStatus::Executing => Role::Info,
        EmergencyStatus::Completed => Role::Ok,
        _ => Role::Error,
    }
}

/// A paragraph in a titled block, wrapped.
pub fn boxed<'a>(t: &Theme, title: String, lines: Vec<Line<'a>>) -> Paragraph<'a> {
    Paragraph::new(lines).wrap(Wrap { trim: false }).block(block(t, title))
}
