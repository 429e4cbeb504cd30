//! The hotfix wizard: the steps on the left (done, current, to come), the current one on the
//! right, and what is wrong with it, if anything, underneath.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};

use super::emergency::{boxed, plan_lines, status_name, status_role};
use crate::config::theme::Role;
use crate::model::{EmergencyType, Severity};
use crate::tui::app::App;
use crate::tui::wizard::{Step, Wizard};

pub fn draw(frame: &mut Frame, app: &App, w: &Wizard, area: Rect) {
    let t = &app.theme;
    let [steps, body] = Layout::horizontal([Constraint::Length(26), Constraint::Min(20)]).areas(area);
    let all = [
        Step::Type,
        Step::Severity,
        Step::Description,
        Step::Services,
        Step::Version,
        Step::Plan,
        Step::Approvals,
        Step::Running,
        Step::Outcome,
    ];
    let current = all.iter().position(|s| *s == w.step).unwrap_or(0);
    let lines: Vec<Line> = all
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (mark, role) = if i < current {
                ("✓", Role::Ok)
            } else if i == current {
                ("▶", Role::Selection)
            } else {
                (" ", Role::Muted)
            };
            Line::styled(format!(" {mark} {}. {}", i + 1, s.title()), t.style(role))
        })
        .collect();
    frame.render_widget(boxed(t, " Hotfix wizard ".into(), lines), steps);

    let [main, error] = Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(body);
    let title = format!(" {} — {} ", w.step.title(), hint(w.step));
    let inner = (main.height.saturating_sub(2) as usize, main.width.saturating_sub(2) as usize);
    frame.render_widget(boxed(t, title, content(app, w, inner)), main);
    let problem = match &w.error {
        Some(e) => Line::styled(e.clone(), t.style(Role::Error)),
        None => Line::styled("esc leaves the wizard (asks first)", t.style(Role::Muted)),
    };
    frame.render_widget(boxed(t, String::new(), vec![problem]), error);
    if w.step.is_text() {
        // The terminal cursor sits in the text being typed.
        let input = if w.step == Step::Description { &w.description } else { &w.version };
        let x = main.x + 1 + input.visual_cursor().min(main.width.saturating_sub(3) as usize) as u16;
        frame.set_cursor_position((x, main.y + 1));
    }
}

fn hint(step: Step) -> &'static str {
    match step {
        Step::Type | Step::Severity => "↑↓ choose, enter next, ← back",
        Step::Services => "↑↓ move, space mark, enter next, ← back",
        Step::Description | Step::Version => "type, enter next",
        Step::Plan => "enter creates it (asks first), ← back",
        Step::Approvals => "approvals arrive live",
        Step::Running => "the live log",
        Step::Outcome => "enter or esc closes",
    }
}

/// What the current step shows, for an inner area of (rows, columns).
fn content(app: &App, w: &Wizard, (height, width): (usize, usize)) -> Vec<Line<'static>> {
    let t = &app.theme;
    let choice = |selected: bool, text: String| {
        if selected {
            Line::styled(format!("▶ {text}"), t.style(Role::Selection))
        } else {
            Line::raw(format!("  {text}"))
        }
    };
    match w.step {
        Step::Type => EmergencyType::ALL
            .iter()
            .enumerate()
            .map(|(i, k)| choice(i == w.kind, k.name().replace('_', " ")))
            .collect(),
        Step::Severity => Severity::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let p = w
                    .plans
                    .iter()
                    .find(|(x, _)| x == s)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_else(|| crate::model::EmergencyPlan::standard(*s));
                let canary =
                    if p.canary_percent == 0 { "no canary".into() } else { format!("{}% canary", p.canary_percent) };
                let approval = if p.approval_required { "2 approvals" } else { "no approval" };
                choice(
                    i == w.severity,
                    format!("{}  {}: {} · {canary} · {approval}", s.name(), p.strategy, p.environments.join(" → ")),
                )
            })
            .collect(),
        Step::Description => vec![
            Line::raw(w.description.value().to_string()),
            Line::default(),
            Line::styled(
                "What is broken, for the approvers and the report (at least 10 characters).",
                t.style(Role::Muted),
            ),
        ],
        Step::Services => w
            .services
            .iter()
            .enumerate()
            .map(|(i, (app, on))| choice(i == w.service_cursor, format!("[{}] {app}", if *on { "x" } else { " " })))
            .collect(),
        Step::Version => {
            let mut out = vec![Line::raw(w.version.value().to_string()), Line::default()];
            for app in w.affected() {
                let known = w.versions.iter().find(|(a, _)| *a == app).map(|(_, v)| v.join(", ")).unwrap_or_default();
                out.push(Line::styled(format!("{app}: {known}"), t.style(Role::Muted)));
            }
            out
        }
        Step::Plan => {
            let item = |k: &str, v: String| {
                Line::from(vec![Span::styled(format!("{k:<24}"), t.style(Role::Muted)), Span::raw(v)])
            };
            let mut out = vec![
                item("emergency", format!("{} {}", w.severity().name(), w.kind().name().replace('_', " "))),
                item("description", w.description.value().trim().to_string()),
                item("services", w.affected().join(", ")),
                item("fix version", w.version.value().trim().to_string()),
                Line::default(),
            ];
            out.extend(plan_lines(t, &w.plan()));
            out.push(Line::default());
            out.push(Line::styled(
                "Nothing has run yet. Enter asks once more, then creates it; it executes as soon as it is approved.",
                t.style(Role::Warn),
            ));
            out
        }
        Step::Approvals | Step::Running | Step::Outcome => follow(app, w, height, width),
    }
}

/// A created emergency: status, approvals, then its log: the newest entries that fit, one row
/// each (cut at the width), so the latest line is always on screen.
fn follow(app: &App, w: &Wizard, height: usize, width: usize) -> Vec<Line<'static>> {
    let t = &app.theme;
    let Some(e) = &w.emergency else {
        return vec![Line::styled("Creating the emergency…", t.style(Role::Info))];
    };
    let mut out = vec![Line::from(vec![
        Span::raw(format!("{} {} {} · ", e.id, e.severity.name(), e.kind.name().replace('_', " "))),
        Span::styled(status_name(e.status), t.style(status_role(e.status))),
        Span::raw(format!(" · {} of {}", e.fix_version, e.affected_services.join(", "))),
    ])];
    let needed = e.plan.approvals_needed as usize;
    if needed > 0 {
        let by = if e.approvers.is_empty() { "nobody yet".to_string() } else { e.approvers.join(", ") };
        out.push(Line::raw(format!("approvals {}/{needed}: {by}", e.approvers.len().min(needed))));
        if e.approvers.len() < needed {
            out.push(Line::styled(
                format!(
                    "waiting: `shipdeck emergency approve {} --as NAME` from people other than {} (or `A` in another console's Emergency list)",
                    e.id, e.requested_by
                ),
                t.style(Role::Warn),
            ));
        }
    } else {
        out.push(Line::raw("no approval needed (P0): it runs at once"));
    }
    if let Some(cause) = &e.cause {
        out.push(Line::styled(format!("cause: {cause}"), t.style(Role::Error)));
    }
    if w.step == Step::Outcome {
        let verdict = match e.status {
            crate::model::EmergencyStatus::Completed => ("The fix is out and verified everywhere.", Role::Ok),
            _ => ("The fix did not go out; what it changed was rolled back.", Role::Error),
        };
        out.push(Line::styled(verdict.0, t.style(verdict.1)));
    }
    out.push(Line::default());
    // The lines above wrap; count the rows they take.
    let used: usize = out.iter().map(|l| l.width().max(1).div_ceil(width.max(1))).sum();
    let room = height.saturating_sub(used);
    let skip = e.log.len().saturating_sub(room);
    for entry in e.log.iter().skip(skip) {
        let step = format!("{:<14} ", entry.step);
        let room = width.saturating_sub(9 + step.chars().count());
        let mut message: String = entry.message.chars().take(room).collect();
        if entry.message.chars().count() > room && room > 0 {
            message.pop();
            message.push('…');
        }
        out.push(Line::from(vec![
            Span::styled(format!("{} ", entry.at.format("%H:%M:%S")), t.style(Role::Muted)),
            Span::styled(step, t.style(if entry.ok { Role::Info } else { Role::Error })),
            Span::raw(message),
        ]));
    }
    out
}
