//! Canary analysis: error rate and p99 latency of canary against stable over time, with the
//! threshold drawn, and below them every measurement with its verdict and, for a failure, the
//! condition and the value that failed it.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::Span;
use ratatui::widgets::{Axis, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table};

use super::block;
use crate::analysis::standard::{ERROR_RATE_FACTOR, P99_FACTOR};
use crate::config::theme::{Role, Theme};
use crate::model::{Measurement, Verdict};
use crate::tui::app::App;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let ms = &app.snapshot.detail.measurements;
    let title = match app.selected().and_then(|w| w.release.as_ref()) {
        Some(r) => format!(" Canary analysis — {} ", r.id),
        None => " Canary analysis ".into(),
    };
    if ms.is_empty() {
        let text = "No measurements for the selected release. Analysis steps of canary and A/B releases measure the new version against the stable one.";
        frame.render_widget(Paragraph::new(text).style(t.style(Role::Muted)).block(block(t, title)), area);
        return;
    }
    let [charts, table] = Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let [left, right] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    let start = ms[0].at;
    let x = |m: &Measurement| (m.at - start).num_milliseconds() as f64 / 1000.0;
    let series = |f: &dyn Fn(&Measurement) -> Option<f64>| -> Vec<(f64, f64)> {
        ms.iter().filter_map(|m| f(m).map(|v| (x(m), v))).collect()
    };
    let err_c = series(&|m| m.canary_error_rate.map(|v| v * 100.0));
    let err_s = series(&|m| m.stable_error_rate.map(|v| v * 100.0));
    let err_th = series(&|m| m.stable_error_rate.map(|v| v * 100.0 * ERROR_RATE_FACTOR));
    let lat_c = series(&|m| m.canary_p99_ms);
    let lat_s = series(&|m| m.stable_p99_ms);
    let lat_th = series(&|m| m.stable_p99_ms.map(|v| v * P99_FACTOR));
    let span = ms.last().map(x).unwrap_or(1.0).max(1.0);
    frame.render_widget(
        chart(t, " Error rate % ", &err_c, &err_s, &err_th, span, format!("{ERROR_RATE_FACTOR}× stable")),
        left,
    );
    frame.render_widget(
        chart(t, " p99 latency ms ", &lat_c, &lat_s, &lat_th, span, format!("{P99_FACTOR}× stable")),
        right,
    );

    let rows: Vec<Row> = ms
        .iter()
        .rev()
        .map(|m| {
            let role = match m.verdict {
                Verdict::Pass => Role::Ok,
                Verdict::Fail | Verdict::Error => Role::Error,
                Verdict::Inconclusive | Verdict::NoData => Role::Warn,
            };
            let word = m.verdict.label();
            Row::new(vec![
                Cell::from(m.at.format("%H:%M:%S").to_string()),
                Cell::from(Span::styled(word, t.style(role))),
                Cell::from(format!("{}/{}", m.canary_requests, m.stable_requests)),
                Cell::from(Span::styled(
                    m.detail.clone(),
                    if m.verdict == Verdict::Fail { t.style(Role::Error) } else { t.style(Role::Base) },
                )),
            ])
        })
        .collect();
    let widths = [Constraint::Length(9), Constraint::Length(13), Constraint::Length(11), Constraint::Fill(1)];
    let table_widget = Table::new(rows, widths)
        .header(Row::new(vec!["TIME", "VERDICT", "REQ C/S", "WHY"]).style(t.style(Role::Header)))
        .block(block(t, title));
    frame.render_widget(table_widget, table);
}

fn chart<'a>(
    t: &Theme,
    title: &'a str,
    canary: &'a [(f64, f64)],
    stable: &'a [(f64, f64)],
    threshold: &'a [(f64, f64)],
    span: f64,
    th_name: String,
) -> Chart<'a> {
    let max = canary.iter().chain(stable).chain(threshold).map(|p| p.1).fold(0.0f64, f64::max).max(0.001) * 1.15;
    let datasets = vec![
        Dataset::default()
            .name(th_name)
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.style(Role::Threshold))
            .data(threshold),
        Dataset::default()
            .name("stable")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.style(Role::Stable))
            .data(stable),
        Dataset::default()
            .name("canary")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.style(Role::Canary))
            .data(canary),
    ];
    Chart::new(datasets)
        .block(block(t, title.to_string()))
        .x_axis(
            Axis::default()
                .bounds([0.0, span])
                .labels(vec![
                    Span::raw("0s"),
                    Span::raw(format!("{:.0}s", span / 2.0)),
                    Span::raw(format!("{span:.0}s")),
                ])
                .style(t.style(Role::Muted)),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, max])
                .labels(vec![Span::raw("0"), Span::raw(format!("{:.1}", max / 2.0)), Span::raw(format!("{max:.1}"))])
                .style(t.style(Role::Muted)),
        )
}
