//! The selected flag in the Flags pane: definition (variants, rules, split, tags, dependencies)
//! on the left; traffic, who gets it, the running rollout or experiment and the latest changes
//! on the right.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use serde_json::Value;

use super::block;
use crate::config::theme::{Role, Theme};
use crate::flags::rules::Targeting;
use crate::tui::app::App;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let Some(key) = app.selected_flag() else {
        frame.render_widget(Paragraph::new("No flag selected.").block(block(t, " Flag ".into())), area);
        return;
    };
    let [left, right] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let definition = definition_lines(app, &key);
    frame.render_widget(
        Paragraph::new(definition).wrap(Wrap { trim: false }).block(block(t, format!(" {key} — definition "))),
        left,
    );
    let activity = activity_lines(app, &key);
    frame.render_widget(
        Paragraph::new(activity).wrap(Wrap { trim: false }).block(block(t, format!(" {key} — activity "))),
        right,
    );
}

fn label(t: &Theme, name: &str) -> Span<'static> {
    Span::styled(format!("{name:<13}"), t.style(Role::Muted))
}

fn definition_lines(app: &App, key: &str) -> Vec<Line<'static>> {
    let t = &app.theme;
    let Some(set) = app.snapshot.flag_set.as_ref() else {
        return vec![Line::from("The flag file could not be read.")];
    };
    let Some(def) = set.flag(key) else { return vec![Line::from("Not in the flag file (any more).")] };
    let mut out = Vec::new();
    let enabled = def.get("state").and_then(Value::as_str) == Some("ENABLED");
    let default = def.get("defaultVariant").and_then(Value::as_str).unwrap_or("-").to_string();
    out.push(Line::from(vec![
        label(t, "state"),
        if enabled {
            Span::styled("ENABLED", t.style(Role::Ok))
        } else {
            Span::styled("DISABLED", t.style(Role::Error))
        },
        Span::raw(format!("   default variant {default}")),
    ]));
    let variants: Vec<String> = def
        .get("variants")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    out.push(Line::from(vec![label(t, "variants"), Span::raw(variants.join("  "))]));
    match set.targeting(key) {
        Targeting::None => {
            out.push(Line::from(vec![label(t, "targeting"), Span::raw("none: everyone gets the default")]))
        }
        Targeting::Split(split) => out.push(Line::from(vec![label(t, "split"), Span::raw(split_text(&split))])),
        Targeting::Rules { rules, fallback } => {
            for (i, r) in rules.iter().enumerate() {
                out.push(Line::from(vec![label(t, &format!("rule {}", i + 1)), Span::raw(r.to_string())]));
            }
            let rest = fallback.as_ref().map_or(format!("default {default}"), split_text);
            out.push(Line::from(vec![label(t, "otherwise"), Span::raw(rest)]));
        }
        Targeting::Custom => out.push(Line::from(vec![
            label(t, "targeting"),
            Span::styled(
                "written by hand (JsonLogic); shipdeck evaluates it but does not edit it",
                t.style(Role::Warn),
            ),
        ])),
    }
    let tags = set.tags(key);
    if !tags.is_empty() {
        out.push(Line::from(vec![label(t, "tags"), Span::raw(tags.join(", "))]));
    }
    let deps = set.depends_on(key);
    if !deps.is_empty() {
        out.push(Line::from(vec![label(t, "depends on"), Span::raw(deps.join(", "))]));
    }
    let needed_by = set.enabled_dependents(key);
    if !needed_by.is_empty() {
        out.push(Line::from(vec![label(t, "needed by"), Span::raw(needed_by.join(", "))]));
    }
    out.push(Line::default());
    out.push(Line::from(Span::styled(
        "r rollout · x experiment · t target · w weights · e eval · :flags … for the rest",
        t.style(Role::Muted),
    )));
    out
}

/// `on 25 · off 75` for a `fractional` split.
fn split_text(split: &Value) -> String {
    let parts: Vec<String> = split
        .get("fractional")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_array)
                .filter_map(|p| {
                    Some(format!("{} {}", p.first()?.as_str()?, p.get(1).and_then(Value::as_u64).unwrap_or(1)))
                })
                .collect()
        })
        .unwrap_or_default();
    format!("{} (by weight, per user)", parts.join(" · "))
}

fn activity_lines(app: &App, key: &str) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut out = Vec::new();
    let served = app.snapshot.flag_served.get(key);
    out.push(Line::from(vec![label(t, "last minute"), Span::raw(super::flags::served(served))]));
    if let Some(by_variant) = served {
        let total: u64 = by_variant.values().sum();
        if total > 0 {
            let on = by_variant.get("on").copied().unwrap_or(0);
            out.push(Line::from(vec![
                label(t, "enabled"),
                Span::raw(format!("{:.1}% of evaluations served `on`", on as f64 * 100.0 / total as f64)),
            ]));
        }
    }
    let detail = &app.snapshot.flag_detail;
    if detail.key == key && !detail.who.is_empty() {
        let who: Vec<String> = detail.who.iter().map(|(v, p)| format!("{v} {p:.1}%")).collect();
        out.push(Line::from(vec![label(t, "who gets it"), Span::raw(format!("{} (10,000 users)", who.join(" · ")))]));
    }
    if let Some((finished, ok, message)) = app.flag_progress.get(key) {
        let role = match (finished, ok) {
            (false, _) => Role::Info,
            (true, true) => Role::Ok,
            (true, false) => Role::Error,
        };
        out.push(Line::from(vec![label(t, "rollout"), Span::styled(message.clone(), t.style(role))]));
    }
    if detail.key == key
        && let Some(e) = &detail.experiment
    {
        out.push(Line::from(vec![
            label(t, "experiment"),
            Span::raw(format!("{} ({}): {}", e.ended_at.format("%m-%d %H:%M"), e.hypothesis, e.conclusion)),
        ]));
    }
    if detail.key == key && !detail.changes.is_empty() {
        out.push(Line::from(Span::styled("latest changes", t.style(Role::Header))));
        for c in &detail.changes {
            out.push(Line::from(vec![
                Span::styled(format!("{} ", c.at.format("%m-%d %H:%M:%S")), t.style(Role::Muted)),
                Span::raw(format!("{:<10} {}", c.actor, c.action)),
            ]));
        }
    }
    out
}
