//! Drawing a frame: header with the panes, the focused pane, the message line, the footer with
//! the keys that work here, and overlays (help, palette, filter, confirmation).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::app::{App, Mode, Pane, Tone};
use super::panes;
use crate::config::keymap::{Action, Context};
use crate::config::theme::Role;

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let t = &app.theme;
    frame.render_widget(Block::new().style(t.style(Role::Base)), area);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "The terminal is {}×{}; shipdeck needs at least {MIN_WIDTH}×{MIN_HEIGHT}. Enlarge it, or press q to quit.",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(msg).style(t.style(Role::Warn)).wrap(Wrap { trim: true }), area);
        return;
    }
    let [header, body, message, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(1), Constraint::Length(1)])
            .areas(area);
    draw_header(frame, app, header);
    match app.pane {
        Pane::Environments => panes::environments::draw(frame, app, body),
        Pane::Rollout => panes::rollout::draw(frame, app, body),
        Pane::Analysis => panes::analysis::draw(frame, app, body),
        Pane::Flags => panes::flags::draw(frame, app, body),
        Pane::Emergency => panes::emergency::draw(frame, app, body),
        Pane::Events => panes::events::draw(frame, app, body),
        Pane::Argo => panes::argo::draw(frame, app, body),
    }
    draw_message(frame, app, message);
    draw_footer(frame, app, footer);
    match &app.mode {
        Mode::Help => draw_help(frame, app, body),
        Mode::Confirm(c) => draw_confirm(frame, app, body, &c.title, &c.body),
        _ => {}
    }
}

/// The frame shown while the local cluster comes up.
pub fn draw_starting(frame: &mut Frame, theme: &crate::config::theme::Theme) {
    let area = frame.area();
    frame.render_widget(Block::new().style(theme.style(Role::Base)), area);
    let [header, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let title = Line::from(vec![
        Span::styled(" shipdeck ", theme.style(Role::Title)),
        Span::styled(" starting", theme.style(Role::Muted)),
    ]);
    frame.render_widget(title, header);
    let text = "Bringing the cluster's pods up as they were recorded…";
    frame.render_widget(Paragraph::new(text).style(theme.style(Role::Muted)), body);
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let mut spans = vec![Span::styled(" shipdeck ", t.style(Role::Title))];
    for (i, p) in Pane::ALL.iter().enumerate() {
        let style = if *p == app.pane { t.style(Role::Selection) } else { t.style(Role::Muted) };
        let name = if area.width < 120 { p.short() } else { p.title() };
        spans.push(Span::styled(format!(" {} {name} ", i + 1), style));
    }
    // The selected environment's Kubernetes context and namespace, as k9s shows them.
    if let Some(place) = app.snapshot.envs.get(app.sel_env).and_then(|e| app.snapshot.kube.get(e)) {
        spans.push(Span::styled(format!(" ⎈ {}/{} ", place.context, place.namespace), t.style(Role::Info)));
    }
    if app.readonly {
        spans.push(Span::styled(" READ-ONLY ", t.style(Role::Important)));
    }
    frame.render_widget(Line::from(spans), area);
}

fn draw_message(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    match &app.mode {
        Mode::Palette { input, candidates, .. } => {
            let prefix = ":";
            let width = area.width.saturating_sub(2) as usize;
            let scroll = input.visual_scroll(width);
            let mut spans = vec![
                Span::styled(prefix, t.style(Role::KeyHint)),
                Span::raw(input.value().chars().skip(scroll).collect::<String>()),
            ];
            if !candidates.is_empty() {
                spans.push(Span::styled(
                    format!("   {}", candidates.iter().take(8).cloned().collect::<Vec<_>>().join("  ")),
                    t.style(Role::Muted),
                ));
            }
            frame.render_widget(Line::from(spans), area);
            let x = area.x + 1 + (input.visual_cursor().saturating_sub(scroll)) as u16;
            frame.set_cursor_position((x.min(area.right().saturating_sub(1)), area.y));
        }
        Mode::Filter { input } => {
            let line =
                Line::from(vec![Span::styled("/", t.style(Role::KeyHint)), Span::raw(input.value().to_string())]);
            frame.render_widget(line, area);
            let x = area.x + 1 + input.visual_cursor() as u16;
            frame.set_cursor_position((x.min(area.right().saturating_sub(1)), area.y));
        }
        _ => {
            let (text, style) = match &app.message {
                Some((m, Tone::Error)) => (m.clone(), t.style(Role::Error)),
                Some((m, Tone::Ok)) => (m.clone(), t.style(Role::Ok)),
                Some((m, Tone::Info)) => (m.clone(), t.style(Role::Info)),
                None if !app.filter_on(app.pane).is_empty() => {
                    (format!("filter: {}  (esc clears)", app.filter), t.style(Role::Muted))
                }
                None => (String::new(), Style::default()),
            };
            frame.render_widget(Paragraph::new(text).style(style), area);
        }
    }
}

/// The keys that work here, from the active keymap: what the help shows, in short.
fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let ctx = app.context();
    let mut spans = Vec::new();
    let mut width = 0usize;
    let mut seen = Vec::new();
    for b in app.keymap.bindings(ctx) {
        // In the wizard, the pane's own list keys (new, approve) do not apply.
        let in_wizard = app.wizard.is_some() && app.pane == Pane::Emergency;
        if seen.contains(&b.action)
            || footer_skips(b.action, ctx)
            || in_wizard && matches!(b.action, Action::NewEmergency | Action::Approve)
        {
            continue;
        }
        seen.push(b.action);
        let key = b.keys.first().map(|k| k.to_string()).unwrap_or_default();
        let label = if ctx == Context::Argo { argo_short(b.action) } else { short(b.action) };
        let len = key.chars().count() + label.chars().count() + 3;
        if width + len > area.width as usize {
            break;
        }
        width += len;
        spans.push(Span::styled(key, t.style(Role::KeyHint)));
        spans.push(Span::styled(format!(" {label}  "), t.style(Role::Muted)));
    }
    frame.render_widget(Line::from(spans), area);
}

/// Movement and pane-number keys take footer room without telling much; help lists them.
fn footer_skips(a: Action, ctx: Context) -> bool {
    use Action::*;
    matches!(ctx, Context::Dialog | Context::Input) && matches!(a, Up | Down)
        || matches!(
            a,
            Up | Down
                | Left
                | Right
                | PageUp
                | PageDown
                | Top
                | Bottom
                | PaneEnvironments
                | PaneRollout
                | PaneAnalysis
                | PaneFlags
                | PaneEmergency
                | PaneEvents
                | PaneArgo
                | PrevPane
                | Refresh
        )
}

fn short(a: Action) -> &'static str {
    use Action::*;
    match a {
        Quit => "quit",
        Help => "help",
        Palette => "command",
        Filter => "filter",
        NextPane => "next pane",
        Select => "select",
        Back => "back",
        Pause => "pause",
        Resume => "resume",
        ResumeFull => "resume full",
        Abort => "abort",
        Rollback => "rollback",
        Retry => "retry",
        Restart => "restart",
        Promote => "promote",
        Approve => "approve",
        Deploy => "deploy",
        ToggleFlag => "toggle",
        FlagPercentUp => "+5%",
        FlagPercentDown => "-5%",
        FlagRollout => "rollout",
        FlagExperiment => "experiment",
        FlagTarget => "target",
        FlagWeights => "weights",
        FlagEval => "eval",
        NewEmergency => "new hotfix",
        Mark => "mark",
        other => other.describe(),
    }
}

/// In the Argo Rollouts pane the release keys are the `kubectl argo rollouts` commands.
fn argo_short(a: Action) -> &'static str {
    match a {
        Action::Resume => "promote",
        Action::ResumeFull => "promote --full",
        Action::Rollback => "undo",
        other => short(other),
    }
}

pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

fn draw_help(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let ctx = app.pane.context();
    let mut lines =
        vec![Line::styled(format!("Keys in {} (from the active keymap)", app.pane.title()), t.style(Role::Title))];
    let rows: Vec<(String, &str)> = app
        .keymap
        .bindings(ctx)
        .into_iter()
        .map(|b| (b.keys.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", "), b.desc.as_str()))
        .collect();
    // The key column fits the longest key list, so a description never runs into it.
    let key_width = rows.iter().map(|(k, _)| k.chars().count() + 2).max().unwrap_or(0).max(16);
    for (keys, desc) in rows {
        lines.push(Line::from(vec![
            Span::styled(format!("{keys:<key_width$}"), t.style(Role::KeyHint)),
            Span::styled(desc.to_string(), t.style(Role::Base)),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        ": opens the command palette: deploy APP VERSION ENV [STRATEGY], rollback APP ENV [VERSION], abort/pause/resume/retry/restart APP ENV, promote APP FROM TO, approve ID, flag KEY on|off|PCT, env NAME, app NAME, ctx CONTEXT, ns NAMESPACE (Kubernetes environments)",
        t.style(Role::Muted),
    ));
    let height = (lines.len() as u16 + 4).min(area.height);
    let rect = centered(area, area.width.saturating_sub(8).min(100), height);
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(" Help — esc closes ")
        .border_style(t.style(Role::BorderFocused))
        .style(t.style(Role::Base));
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), rect);
}

fn draw_confirm(frame: &mut Frame, app: &App, area: Rect, title: &str, body: &str) {
    let t = &app.theme;
    let yes = app.keymap.key_for(Context::Dialog, Action::Select).map(|k| k.to_string()).unwrap_or_else(|| "y".into());
    let no = app.keymap.key_for(Context::Dialog, Action::Back).map(|k| k.to_string()).unwrap_or_else(|| "n".into());
    let lines = vec![
        Line::styled(body.to_string(), t.style(Role::Base)),
        Line::raw(""),
        Line::from(vec![
            Span::styled(format!(" {yes} "), t.style(Role::Error)),
            Span::raw(" confirm    "),
            Span::styled(format!(" {no} "), t.style(Role::KeyHint)),
            Span::raw(" cancel"),
        ]),
    ];
    let rect = centered(area, 70, 9);
    frame.render_widget(Clear, rect);
    let block =
        Block::bordered().title(format!(" {title} ")).border_style(t.style(Role::Error)).style(t.style(Role::Base));
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: true }), rect);
}
