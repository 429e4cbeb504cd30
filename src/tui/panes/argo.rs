//! Argo Rollouts of the selected environment's namespace, as `kubectl argo rollouts get rollout`
//! derives them: status, step, weight set vs actual, stable and canary revisions, analysis; the
//! selected one's details below. Live from the watches; ←/→ picks the environment.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::{block, scroll_offset, shown};
use crate::cluster::kube::argo::{ArgoRollout, Revision};
use crate::cluster::kube::argo_watch::ArgoStatus;
use crate::config::theme::{Role, Theme};
use crate::tui::app::App;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let env = app.snapshot.envs.get(app.sel_env).map(String::as_str).unwrap_or("-");
    let Some(view) = app.snapshot.argo.get(env) else {
        let why = if app.snapshot.kube.contains_key(env) {
            format!("{env} is not connected to its Kubernetes cluster, so its Argo Rollouts are not watched.")
        } else {
            format!("{env} runs on the local cluster; Argo Rollouts live in a Kubernetes environment's namespace.")
        };
        let hint = kube_hint(app);
        let text = vec![Line::styled(why, t.style(Role::Muted)), Line::styled(hint, t.style(Role::Muted))];
        let p = Paragraph::new(text).wrap(Wrap { trim: true }).block(block(t, format!(" Argo Rollouts — {env} ")));
        frame.render_widget(p, area);
        return;
    };
    let ns = &view.namespace;
    let status: Option<(String, Role)> = match &view.status {
        ArgoStatus::Listing => Some((format!("listing the Rollouts of namespace {ns}…"), Role::Muted)),
        ArgoStatus::NotInstalled => Some((
            format!(
                "Argo Rollouts is not installed here: the cluster has no argoproj.io/v1alpha1 Rollout resource \
                 (namespace {ns})."
            ),
            Role::Muted,
        )),
        ArgoStatus::Stopped(why) => Some((why.clone(), Role::Error)),
        ArgoStatus::Watching if view.rollouts.is_empty() => {
            Some((format!("No Argo Rollouts in namespace {ns}."), Role::Muted))
        }
        ArgoStatus::Watching => None,
    };
    let title = format!(" Argo Rollouts — {env} · {ns} ");
    if let Some((text, role)) = status {
        let mut lines = vec![Line::styled(text, t.style(role))];
        if let Some(p) = &view.problem {
            lines.push(Line::styled(p.clone(), t.style(Role::Warn)));
        }
        let p = Paragraph::new(lines).wrap(Wrap { trim: true }).block(block(t, title));
        frame.render_widget(p, area);
        return;
    }
    let rollouts = app.visible_rollouts();
    let problem_height = u16::from(view.problem.is_some());
    let list_height = (rollouts.len() as u16 + 3).clamp(5, area.height.saturating_sub(problem_height) / 2);
    let [problem_area, top, bottom] =
        Layout::vertical([Constraint::Length(problem_height), Constraint::Length(list_height), Constraint::Min(0)])
            .areas(area);
    if let Some(p) = &view.problem {
        frame.render_widget(Line::styled(format!("watch: {p}"), t.style(Role::Warn)), problem_area);
    }
    let visible = top.height.saturating_sub(3) as usize;
    let offset = scroll_offset(app.sel_argo, rollouts.len(), visible);
    // At 80 columns the revisions go to the details below.
    let wide = area.width >= 120;
    let rows: Vec<Row> = rollouts
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(i, r)| {
            let mut cells = vec![
                Cell::from(r.name.clone()),
                Cell::from(r.strategy.clone().unwrap_or_else(|| "-".into())),
                Cell::from(Span::styled(status_text(r), phase_style(t, r))),
                Cell::from(r.step.map_or_else(|| "-".into(), |s| format!("{}/{}", s.index, s.total))),
                Cell::from(weights(r)),
            ];
            if wide {
                cells.push(Cell::from(revision_short(r.stable.as_ref())));
                cells.push(Cell::from(revision_short(r.canary.as_ref())));
            }
            cells.push(Cell::from(analysis_short(r)));
            let row = Row::new(cells);
            if i == app.sel_argo { row.style(t.style(Role::Selection)) } else { row }
        })
        .collect();
    let drawn = rows.len();
    let (widths, header) = if wide {
        let widths = vec![
            Constraint::Length(18),
            Constraint::Length(9),
            Constraint::Length(18),
            Constraint::Length(5),
            Constraint::Length(10),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Length(18),
        ];
        (widths, vec!["NAME", "STRATEGY", "STATUS", "STEP", "SET/ACTUAL", "STABLE", "CANARY", "ANALYSIS"])
    } else {
        let widths = vec![
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(18),
            Constraint::Length(4),
            Constraint::Length(10),
            Constraint::Length(16),
        ];
        (widths, vec!["NAME", "STRATEGY", "STATUS", "STEP", "SET/ACTUAL", "ANALYSIS"])
    };
    let title = format!(" Argo Rollouts — {env} · {ns} · {}{} ", rollouts.len(), shown(offset, drawn, rollouts.len()));
    let table = Table::new(rows, widths).header(Row::new(header).style(t.style(Role::Header))).block(block(t, title));
    frame.render_widget(table, top);
    if bottom.height >= 3
        && let Some(r) = rollouts.get(app.sel_argo)
    {
        draw_detail(frame, t, r, bottom);
    }
}

/// The Kubernetes environments, for a hint on where rollouts can be seen.
fn kube_hint(app: &App) -> String {
    let kube: Vec<&str> = app.snapshot.argo.keys().map(String::as_str).collect();
    match kube.as_slice() {
        [] => "No environment of the estate is watched on Kubernetes.".into(),
        some => format!("←/→ selects another environment; Argo Rollouts are watched in {}.", some.join(", ")),
    }
}

fn status_text(r: &ArgoRollout) -> String {
    if r.aborted { format!("{} (aborted)", r.phase) } else { r.phase.clone() }
}

fn phase_style(t: &Theme, r: &ArgoRollout) -> Style {
    t.style(match r.phase.as_str() {
        _ if r.aborted => Role::Error,
        "Healthy" => Role::Ok,
        "Paused" => Role::Warn,
        "Degraded" => Role::Error,
        _ => Role::Info,
    })
}

/// `20/17`: the weight the step sets and the weight that is real now (canary only).
fn weights(r: &ArgoRollout) -> String {
    match (r.set_weight, r.actual_weight) {
        (Some(s), Some(a)) => format!("{s}/{a}"),
        (Some(s), None) => format!("{s}/-"),
        _ => "-".into(),
    }
}

/// `rev 3 web:1.0.0`: the revision and the images' last path segments.
fn revision_short(r: Option<&Revision>) -> String {
    let Some(r) = r else { return "-".into() };
    let number = r.revision.map_or_else(|| r.pod_template_hash.clone(), |n| format!("rev {n}"));
    let images: Vec<&str> = r.images.iter().map(|i| i.rsplit('/').next().unwrap_or(i)).collect();
    if images.is_empty() { number } else { format!("{number} {}", images.join(",")) }
}

/// `step Running`, `bg Failed +1`: the first analysis run, its kind short.
fn analysis_short(r: &ArgoRollout) -> String {
    let Some(a) = r.analysis.first() else { return "-".into() };
    let kind = match a.kind.as_str() {
        "background" => "bg",
        "prePromotion" => "pre",
        "postPromotion" => "post",
        other => other,
    };
    let more = if r.analysis.len() > 1 { format!(" +{}", r.analysis.len() - 1) } else { String::new() };
    format!("{kind} {}{more}", a.phase)
}

fn draw_detail(frame: &mut Frame, t: &Theme, r: &ArgoRollout, area: Rect) {
    let label = |s: &str| Span::styled(format!("{s:<10}"), t.style(Role::Muted));
    let mut lines = vec![Line::from(vec![
        label("Status"),
        Span::styled(status_text(r), phase_style(t, r)),
        Span::raw(if r.message.is_empty() { String::new() } else { format!(" — {}", r.message) }),
        Span::styled(if r.paused && r.phase != "Paused" { "  (paused)" } else { "" }, t.style(Role::Warn)),
    ])];
    if let (Some(set), Some(actual)) = (r.set_weight, r.actual_weight) {
        let step = r.step.map_or_else(String::new, |s| format!("step {}/{} · ", s.index, s.total));
        let style = if set == actual { t.style(Role::Base) } else { t.style(Role::Warn) };
        lines.push(Line::from(vec![
            label("Weight"),
            Span::styled(format!("{step}set {set}% · actual {actual}%"), style),
        ]));
    }
    let p = r.replicas;
    lines.push(Line::from(vec![
        label("Replicas"),
        Span::raw(format!(
            "desired {} · current {} · updated {} · ready {} · available {}",
            p.desired, p.current, p.updated, p.ready, p.available
        )),
    ]));
    for (name, rev, role) in [("Stable", r.stable.as_ref(), Role::Stable), ("Canary", r.canary.as_ref(), Role::Canary)]
    {
        let Some(rev) = rev else { continue };
        let number = rev.revision.map_or_else(|| "revision ?".into(), |n| format!("revision {n}"));
        lines.push(Line::from(vec![
            label(name),
            Span::styled(format!("{number} ({})", rev.pod_template_hash), t.style(role)),
            Span::raw(format!(" {}/{} available  {}", rev.available, rev.replicas, rev.images.join(", "))),
        ]));
    }
    for a in &r.analysis {
        let style = t.style(match a.phase.as_str() {
            "Successful" => Role::Ok,
            "Failed" | "Error" => Role::Error,
            "Inconclusive" => Role::Warn,
            _ => Role::Info,
        });
        let message = if a.message.is_empty() { String::new() } else { format!(" — {}", a.message) };
        lines.push(Line::from(vec![
            label("Analysis"),
            Span::styled(format!("{} {}", a.kind, a.phase), style),
            Span::raw(format!(" {}{message}", a.name)),
        ]));
    }
    let p = Paragraph::new(lines).wrap(Wrap { trim: true }).block(block(t, format!(" {} ", r.name)));
    frame.render_widget(p, area);
}
