//! Console frame time on a large estate, and key press to changed frame.
//!
//! Builds a snapshot of 300 apps × 3 environments, 2,000 flags, 50,000 log lines and 200
//! measurements of the selected release (`shipdeck::tui::fixture::large`), and draws it with
//! the console's own view code into a 160×48 `TestBackend`:
//!
//! - every pane, ~2,000 frames each after a warm-up: median, p90, p99 and max, against the
//!   targets median < 1 ms and p99 < 4 ms;
//! - typical keys (`App::on_key` then a draw of the frame it changed): p50 and p99 against
//!   16 ms, one frame at 60 Hz.
//!
//! Run: `cargo bench --bench tui_render`. Prints Markdown tables.

#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use shipdeck::config::keymap::Keymap;
use shipdeck::config::theme::Theme;
use shipdeck::tui::app::{App, Mode, Pane};
use shipdeck::tui::{fixture, view};
use tui_input::Input;

const WIDTH: u16 = 160;
const HEIGHT: u16 = 48;
const APPS: usize = 300;
const FLAGS: usize = 2_000;
const EVENTS: usize = 50_000;
const MEASUREMENTS: usize = 200;
const WARMUP: usize = 200;
const ITERATIONS: usize = 2_000;
const KEY_ITERATIONS: usize = 500;

const FRAME_MEDIAN: Duration = Duration::from_millis(1);
const FRAME_P99: Duration = Duration::from_millis(4);
const KEY_TO_FRAME: Duration = Duration::from_millis(16);

fn main() {
    let built = Instant::now();
    let snapshot = fixture::large(APPS, FLAGS, EVENTS, MEASUREMENTS);
    let theme = Theme::embedded("dark").expect("embedded theme");
    let keymap = Keymap::embedded("default").and_then(Result::ok).expect("embedded keymap");
    let mut app = fixture::app_with(snapshot, theme, keymap);
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("test backend");
    eprintln!("built the large snapshot in {:?}", built.elapsed());

    println!("## Console render bench (`cargo bench --bench tui_render`)\n");
    println!("{}", common::machine_table());
    println!(
        "Estate: {APPS} apps × {} environments ({} workloads), {} flags, {} log lines, {} measurements. \
         Frame: {WIDTH}×{HEIGHT}, ratatui `TestBackend`, {ITERATIONS} frames per row after {WARMUP} warm-up frames.\n",
        app.snapshot.envs.len(),
        app.snapshot.workloads.len(),
        app.snapshot.flags.len(),
        app.snapshot.log.len(),
        app.snapshot.detail.measurements.len(),
    );

    // Full frames, per pane.
    println!("### Full frame (target: median < 1 ms, p99 < 4 ms)\n");
    println!("| pane | median | p90 | p99 | max | result |\n|---|---|---|---|---|---|");
    let mut all_pass = true;
    let mut cases: Vec<(String, Setup)> = Pane::ALL
        .iter()
        .map(|p| {
            let p = *p;
            (p.name().to_string(), Box::new(move |a: &mut App| a.pane = p) as Setup)
        })
        .collect();
    cases.push((
        "environments, row 150 selected".into(),
        Box::new(|a: &mut App| {
            a.pane = Pane::Environments;
            a.sel_app = 150;
        }),
    ));
    cases.push((
        "flags, row 1,000 selected".into(),
        Box::new(|a: &mut App| {
            a.pane = Pane::Flags;
            a.sel_flag = 1_000;
        }),
    ));
    cases.push((
        "events, filtered (`svc-0042`)".into(),
        Box::new(|a: &mut App| {
            a.pane = Pane::Events;
            a.filter = "svc-0042".into();
        }),
    ));
    cases.push((
        "help overlay".into(),
        Box::new(|a: &mut App| {
            a.pane = Pane::Rollout;
            a.mode = Mode::Help;
        }),
    ));
    for (name, setup) in &cases {
        reset(&mut app);
        setup(&mut app);
        for _ in 0..WARMUP {
            term.draw(|f| view::draw(f, &app)).expect("draw");
        }
        let mut times = Vec::with_capacity(ITERATIONS);
        for _ in 0..ITERATIONS {
            let t = Instant::now();
            term.draw(|f| view::draw(f, &app)).expect("draw");
            times.push(t.elapsed());
        }
        let s = Stats::of(times);
        let pass = s.p50 < FRAME_MEDIAN && s.p99 < FRAME_P99;
        all_pass &= pass;
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max),
            if pass { "PASS" } else { "FAIL" }
        );
    }

    // Key press to changed frame.
    println!("\n### Key press to changed frame (`App::on_key` + draw; target < 16 ms)\n");
    println!("| key | where | p50 | p99 | max | result |\n|---|---|---|---|---|---|");
    let key = |c: KeyCode| KeyEvent::new(c, KeyModifiers::NONE);
    let keys: Vec<(&str, &str, KeyEvent, Setup)> = vec![
        (
            "down",
            "environments, row 150",
            key(KeyCode::Down),
            Box::new(|a: &mut App| {
                a.pane = Pane::Environments;
                a.sel_app = 150;
            }),
        ),
        (
            "down",
            "flags, row 1,000",
            key(KeyCode::Down),
            Box::new(|a: &mut App| {
                a.pane = Pane::Flags;
                a.sel_flag = 1_000;
            }),
        ),
        ("up", "events (scroll)", key(KeyCode::Up), Box::new(|a: &mut App| a.pane = Pane::Events)),
        ("tab", "environments → rollout", key(KeyCode::Tab), Box::new(|a: &mut App| a.pane = Pane::Environments)),
        ("tab", "analysis → flags", key(KeyCode::Tab), Box::new(|a: &mut App| a.pane = Pane::Analysis)),
        (":", "open the palette", key(KeyCode::Char(':')), Box::new(|a: &mut App| a.pane = Pane::Environments)),
        (
            "2",
            "typing `/flag-01` + 2 in the flags filter",
            key(KeyCode::Char('2')),
            Box::new(|a: &mut App| {
                a.pane = Pane::Flags;
                a.filter = "flag-01".into();
                a.mode = Mode::Filter { input: Input::new("flag-01".into()) };
            }),
        ),
    ];
    for (label, place, k, setup) in &keys {
        let mut times = Vec::with_capacity(KEY_ITERATIONS);
        for i in 0..WARMUP / 4 + KEY_ITERATIONS {
            reset(&mut app);
            setup(&mut app);
            // The frame before the key is on the screen, so the timed draw is a changed frame.
            term.draw(|f| view::draw(f, &app)).expect("draw");
            let t = Instant::now();
            let _ = app.on_key(*k);
            term.draw(|f| view::draw(f, &app)).expect("draw");
            if i >= WARMUP / 4 {
                times.push(t.elapsed());
            }
        }
        let s = Stats::of(times);
        let pass = s.p99 < KEY_TO_FRAME;
        all_pass &= pass;
        println!(
            "| {label} | {place} | {} | {} | {} | {} |",
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            if pass { "PASS" } else { "FAIL" }
        );
    }
    println!("\nOverall: {}", if all_pass { "PASS" } else { "FAIL" });
}

/// Puts the console in the state a row measures.
type Setup = Box<dyn Fn(&mut App)>;

/// Back to the environments pane in normal mode, nothing filtered or scrolled.
fn reset(app: &mut App) {
    app.mode = Mode::Normal;
    app.pane = Pane::Environments;
    app.filter.clear();
    app.message = None;
    app.sel_app = 0;
    app.sel_env = 2;
    app.sel_flag = 0;
    app.events_scroll = 0;
}

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut times: Vec<Duration>) -> Self {
        times.sort();
        let at = |q: f64| times[((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
        Self { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: times[times.len() - 1] }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}
