//! The selected release live: strategy, step k/n with the step list and per-step durations,
//! a countdown on timed pauses, an ETA, set vs actual weight, replicas per version, and why it
//! is paused or failed in plain words, and the release notes stored with it.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Gauge, Paragraph, Row, Table, Wrap};

use super::{block, status_style};
use crate::config::theme::Role;
use crate::model::{Release, ReleaseNotes, Status, Step, StepRecord, fmt_secs};
use crate::tui::app::App;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let Some(target) = app.selected_target() else {
        frame.render_widget(Paragraph::new("No app selected.").block(block(t, " Rollout ".into())), area);
        return;
    };
    let w = app.selected().cloned().unwrap_or_default();
    let Some(r) = w.release.clone() else {
        let text = match &w.error {
            Some(why) => format!("{target}: {why}"),
            None => format!(
                "{target} has had no release yet. Press d (or :deploy {} VERSION {}) to start one.",
                target.app, target.env
            ),
        };
        frame.render_widget(
            Paragraph::new(text).style(t.style(Role::Muted)).block(block(t, format!(" Rollout — {target} "))),
            area,
        );
        return;
    };
    let now = app.snapshot.now;
    let steps = &app.snapshot.detail.steps;
    let lease = w.driver.as_ref().map(|d| lease_line(app, d, &r, now));
    let [top, middle, bottom] =
        Layout::vertical([Constraint::Length(5 + lease.is_some() as u16), Constraint::Min(6), Constraint::Length(7)])
            .areas(area);

    // Summary.
    let step_no = (r.cursor + 1).min(r.plan.len());
    let end = if r.status.is_active() { now } else { r.updated_at };
    let elapsed = (end - r.created_at).num_seconds().max(0) as u64;
    let mut head = vec![
        Line::from(vec![
            Span::styled(format!("{} ", r.id), t.style(Role::Title)),
            Span::styled(r.status.to_string(), status_style(t, r.status)),
            Span::raw(format!(
                "{}  {}  {} → {}",
                if r.interrupted { " (interrupted)" } else { "" },
                r.strategy,
                r.previous_version.as_deref().unwrap_or("nothing"),
                r.version
            )),
        ]),
        Line::raw(format!(
            "step {step_no}/{}  elapsed {}  {}  requested by {}",
            r.plan.len(),
            fmt_secs(elapsed),
            eta(&r, steps, now).map(|s| format!("ETA {}", fmt_secs(s))).unwrap_or_default(),
            r.requested_by
        )),
    ];
    if let Some(why) = &w.error {
        head.push(Line::styled(format!("state unknown: {why}"), t.style(Role::Error)));
    }
    if let Some(why) = &r.reason {
        let role = match r.status {
            Status::Paused | Status::Planned => Role::Warn,
            Status::Verified | Status::Deployed => Role::Ok,
            _ => Role::Error,
        };
        head.push(Line::styled(why.clone(), t.style(role)));
    }
    head.extend(lease);
    frame.render_widget(
        Paragraph::new(head).wrap(Wrap { trim: true }).block(block(t, format!(" Rollout — {target} "))),
        top,
    );

    // Steps and weights.
    let [list, right] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(middle);
    let rows: Vec<Row> = r
        .plan
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let rec = steps.iter().find(|s| s.index == i);
            let (mark, role) = if i < r.cursor {
                ("✓", Role::Ok)
            } else if i == r.cursor && r.status.is_active() {
                ("▶", Role::Info)
            } else if i == r.cursor && matches!(r.status, Status::Failed | Status::RolledBack | Status::Aborted) {
                ("✗", Role::Error)
            } else {
                ("·", Role::Muted)
            };
            let took = rec.map(|s| duration_of(s, now)).unwrap_or_default();
            let mut what = step.describe();
            if i == r.cursor
                && r.status == Status::InProgress
                && let Some(left) = countdown(step, rec, now).filter(|l| *l > 0)
            {
                what.push_str(&format!(" — {} left", fmt_secs(left)));
            }
            Row::new(vec![
                Cell::from(Span::styled(mark, t.style(role))),
                Cell::from(format!("{}", i + 1)),
                Cell::from(what),
                Cell::from(took),
            ])
        })
        .collect();
    let table =
        Table::new(rows, [Constraint::Length(2), Constraint::Length(3), Constraint::Fill(1), Constraint::Length(8)])
            .header(Row::new(vec!["", "#", "STEP", "TOOK"]).style(t.style(Role::Header)))
            .block(block(t, " Steps ".into()));
    frame.render_widget(table, list);

    let [set_area, actual_area, note] =
        Layout::vertical([Constraint::Length(3), Constraint::Length(3), Constraint::Min(1)]).areas(right);
    let set = w.state.routing.weights.get(&r.version).copied().unwrap_or(0).min(100);
    let actual = w.state.actual_weights.get(&r.version).copied().unwrap_or(0.0).clamp(0.0, 100.0);
    frame.render_widget(
        Gauge::default()
            .block(block(t, format!(" Set weight of {} ", r.version)))
            .gauge_style(t.style(Role::Canary))
            .percent(set as u16),
        set_area,
    );
    frame.render_widget(
        Gauge::default()
            .block(block(t, " Actual share of requests (last 5s) ".into()))
            .gauge_style(t.style(Role::Stable))
            .ratio(actual / 100.0)
            .label(format!("{actual:.1}%")),
        actual_area,
    );
    let mut routes: Vec<Line> =
        w.state.routing.matches.iter().map(|m| Line::raw(format!("{}={} → {}", m.name, m.value, m.version))).collect();
    if let Some(p) = &w.state.routing.preview {
        routes.push(Line::raw(format!("preview entry → {p}")));
    }
    if let Some(n) = &app.snapshot.detail.notes {
        routes.extend(notes_lines(app, n));
    }
    frame.render_widget(Paragraph::new(routes).style(t.style(Role::Muted)), note);

    // Replicas per version.
    let rows: Vec<Row> = w
        .state
        .versions
        .iter()
        .map(|(v, rep)| {
            let role = if rep.ready >= rep.desired { Role::Ok } else { Role::Warn };
            let weight = w.state.routing.weights.get(v).copied().unwrap_or(0);
            Row::new(vec![
                Cell::from(v.clone()),
                Cell::from(rep.desired.to_string()),
                Cell::from(rep.updated.to_string()),
                Cell::from(Span::styled(rep.ready.to_string(), t.style(role))),
                Cell::from(rep.available.to_string()),
                Cell::from(format!("{weight}%")),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(10),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new(vec!["VERSION", "DESIRED", "UPDATED", "READY", "AVAILABLE", "WEIGHT"]).style(t.style(Role::Header)),
    )
    .block(block(t, replicas_title(w.state.native.as_ref())));
    frame.render_widget(table, bottom);
}

/// The app's own Deployment rolling natively (Kubernetes): its counts against the desired size
/// and the rollout's condition, in `kubectl rollout status` words.
fn replicas_title(native: Option<&crate::cluster::NativeStatus>) -> String {
    use crate::cluster::NativeCondition;
    let Some(n) = native.filter(|n| n.desired > 0 || n.total > 0) else { return " Replicas ".into() };
    let revision = n.revision.map(|r| format!(" rev {r}")).unwrap_or_default();
    let version = n.version.as_deref().unwrap_or("?");
    let condition = match &n.condition {
        NativeCondition::Complete => "complete".to_string(),
        NativeCondition::Progressing { message } => message.clone(),
        NativeCondition::DeadlineExceeded { message } => format!("ProgressDeadlineExceeded: {message}"),
    };
    format!(
        " Replicas · deployment {}{revision} → {version}: {}/{d} updated, {}/{d} ready, {}/{d} available · {condition} ",
        n.deployment,
        n.updated,
        n.ready,
        n.available,
        d = n.desired
    )
}

/// The release notes, one line per change under a one-line summary; what does not fit is cut.
fn notes_lines<'a>(app: &App, n: &'a ReleaseNotes) -> Vec<Line<'a>> {
    let t = &app.theme;
    let range = n.range.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
    let mut lines = vec![Line::from(vec![
        Span::styled("Release notes", t.style(Role::Title)),
        Span::raw(format!("{range}: {}", n.summary())),
    ])];
    let marks = [("breaking", Role::Error), ("feature", Role::Ok), ("fix", Role::Info), ("other", Role::Muted)];
    for ((_, changes), (mark, role)) in n.groups().into_iter().zip(marks) {
        for c in changes {
            let scope = c.scope.as_deref().map(|s| format!("{s}: ")).unwrap_or_default();
            lines.push(Line::from(vec![
                Span::styled(format!("{mark:<9}"), t.style(role)),
                Span::raw(format!("{scope}{}", c.subject)),
            ]));
        }
    }
    lines
}

fn duration_of(s: &StepRecord, now: DateTime<Utc>) -> String {
    let end = s.finished_at.unwrap_or(now);
    let secs = (end - s.started_at).num_milliseconds().max(0) as f64 / 1000.0;
    if secs < 10.0 { format!("{secs:.1}s") } else { fmt_secs(secs as u64) }
}

/// Seconds a step lasts by itself, when it is timed.
fn timed(step: &Step) -> Option<u64> {
    match step {
        Step::Pause { seconds: Some(s) } | Step::AwaitSwitch { seconds: Some(s) } => Some(*s),
        Step::AbExperiment { seconds } => Some(*seconds),
        Step::RemoveOld { delay_secs } => Some(*delay_secs),
        Step::Monitor { seconds, .. } => Some(*seconds),
        Step::Analysis { interval_secs, count, .. } => Some(interval_secs * *count as u64),
        _ => None,
    }
}

fn countdown(step: &Step, rec: Option<&StepRecord>, now: DateTime<Utc>) -> Option<u64> {
    let total = timed(step)?;
    let spent = rec.map(|r| (now - r.started_at).num_seconds().max(0) as u64).unwrap_or(0);
    Some(total.saturating_sub(spent))
}

/// Who holds the app's lease: `⚿ driven elsewhere, by alice (pid 4711) on host-x (followed live)`.
fn lease_line(app: &App, d: &crate::cluster::Driver, r: &Release, now: DateTime<Utc>) -> Line<'static> {
    let t = &app.theme;
    let ago = |at: Option<DateTime<Utc>>| at.map(|at| fmt_secs((now - at).num_seconds().max(0) as u64));
    let (text, role) = if d.mine {
        ("⚿ held by you: this console drives it".to_string(), Role::Info)
    } else if d.lapsed {
        let since = ago(d.renewed).map(|s| format!(" {s} ago")).unwrap_or_default();
        let what = if r.status.is_active() { "resume or abort here takes it over" } else { "free to take" };
        (format!("⚿ lease of {} lapsed (last renewed{since}): {what}", d.holder), Role::Warn)
    } else if r.status.is_active() {
        (format!("⚿ driven elsewhere, by {} (followed live)", d.holder), Role::Important)
    } else {
        (format!("⚿ held by {}", d.holder), Role::Important)
    };
    Line::styled(text, t.style(role))
}

/// What the timed steps still need; None when a step waits for a person.
fn eta(r: &Release, steps: &[StepRecord], now: DateTime<Utc>) -> Option<u64> {
    if !r.status.is_active() {
        return None;
    }
    let mut total = 0;
    for (i, step) in r.plan.iter().enumerate().skip(r.cursor) {
        if matches!(step, Step::Pause { seconds: None } | Step::AwaitSwitch { seconds: None }) {
            return None;
        }
        total += if i == r.cursor {
            countdown(step, steps.iter().find(|s| s.index == i), now).unwrap_or(0)
        } else {
            timed(step).unwrap_or(0)
        };
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{NativeCondition, NativeStatus};

    #[test]
    fn a_native_rollout_shows_its_counts_and_condition_over_the_replicas() {
        let mut n = NativeStatus {
            deployment: "web".into(),
            version: Some("1.1.0".into()),
            revision: Some(4),
            desired: 3,
            updated: 2,
            total: 4,
            ready: 3,
            available: 3,
            condition: NativeCondition::Progressing { message: "2 out of 3 new replicas have been updated".into() },
        };
        assert_eq!(
            replicas_title(Some(&n)),
            " Replicas · deployment web rev 4 → 1.1.0: 2/3 updated, 3/3 ready, 3/3 available · 2 out of 3 new \
             replicas have been updated "
        );
        n.condition =
            NativeCondition::DeadlineExceeded { message: "ReplicaSet \"web-7d9\" has timed out progressing.".into() };
        assert!(
            replicas_title(Some(&n))
                .ends_with("· ProgressDeadlineExceeded: ReplicaSet \"web-7d9\" has timed out progressing. ")
        );
        assert_eq!(replicas_title(None), " Replicas ");
    }
}
