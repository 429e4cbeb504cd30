//! The terminal console. The event loop selects over the terminal's input, the engine's
//! events, finished commands and refreshed snapshots; commands and snapshot loads run as
//! tasks, so nothing blocks the input loop, and a frame is drawn only when something changed
//! (at most 60 a second).

pub mod app;
mod emergency_actions;
pub mod fixture;
mod flag_actions;
pub mod palette;
pub mod panes;
pub mod snapshot;
pub mod svg;
pub mod view;
pub mod wizard;

#[cfg(test)]
mod argo_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wizard_tests;

use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use ratatui::DefaultTerminal;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::keymap::Keymap;
use crate::config::theme::Theme;
use crate::engine::Engine;
use crate::host::Host;
use app::{App, Effect};
use snapshot::Snapshot;

pub struct Options {
    pub theme: Theme,
    pub keymap: Keymap,
    pub readonly: bool,
    pub actor: String,
}

const FRAME: Duration = Duration::from_millis(16);
const LOG_LIMIT: usize = 1000;

/// Open the console on `host` until the user quits; the terminal is restored on the way out,
/// also after an error or a panic.
///
/// The first frame is drawn before the host starts (bringing the local cluster's pods up takes
/// as long as their readiness delays), so the console answers at once.
pub async fn run<F>(start: F, opts: Options) -> color_eyre::Result<()>
where
    F: std::future::Future<Output = Result<Host, crate::host::HostError>>,
{
    let mut terminal = ratatui::try_init()?;
    let theme = opts.theme.clone();
    terminal.draw(|f| view::draw_starting(f, &theme))?;
    let host = match start.await {
        Ok(h) => h,
        Err(e) => {
            ratatui::restore();
            return Err(e.into());
        }
    };
    let result = event_loop(&mut terminal, &host.engine, opts).await;
    ratatui::restore();
    host.stop().await;
    result
}

pub async fn event_loop(terminal: &mut DefaultTerminal, engine: &Engine, opts: Options) -> color_eyre::Result<()> {
    let mut events = engine.subscribe();
    let first = snapshot::load(engine, None, None, LOG_LIMIT).await;
    let mut app = App::new(first, opts.theme, opts.keymap, opts.readonly);
    let mut input = EventStream::new();
    let (result_tx, mut results) = mpsc::unbounded_channel::<Result<String, String>>();
    let (snap_tx, mut snaps) = mpsc::channel::<Snapshot>(1);
    // Watches outside the engine (Argo Rollouts, the FeatureFlag) say when what they show
    // changed, so the console shows it now rather than at the next once-a-second refresh.
    let (news_tx, mut news) = mpsc::channel::<()>(1);
    let _news_tasks: Vec<AbortOnDrop> = engine
        .news()
        .into_iter()
        .map(|mut rx| {
            let tx = news_tx.clone();
            AbortOnDrop(tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    // Full: a reload is already asked for.
                    let _ = tx.try_send(());
                }
            }))
        })
        .collect();
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut loading;
    let mut reload_wanted = false;
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;

    let load = |engine: &Engine, app: &App, tx: &mpsc::Sender<Snapshot>| {
        let (engine, tx, selected, flag) = (engine.clone(), tx.clone(), app.selected_target(), app.selected_flag());
        tokio::spawn(async move {
            let s = snapshot::load(&engine, selected.as_ref(), flag.as_deref(), LOG_LIMIT).await;
            let _ = tx.send(s).await;
        });
    };
    load(engine, &app, &snap_tx);
    loading = true;
    // Commands go to the engine in their own task; the answer comes back as a result.
    let send = |effect: Effect| {
        if let Effect::Execute(command) = effect {
            let (engine, tx, actor) = (engine.clone(), result_tx.clone(), opts.actor.clone());
            tokio::spawn(async move {
                let r = engine.execute(&actor, command).await.map(|o| o.message).map_err(|e| e.to_string());
                let _ = tx.send(r);
            });
        }
    };

    loop {
        if dirty && last_draw.elapsed() >= FRAME {
            terminal.draw(|f| view::draw(f, &app))?;
            dirty = false;
            last_draw = Instant::now();
        }
        let next_frame = last_draw + FRAME;
        let before = (app.selected_target(), app.selected_flag());
        tokio::select! {
            maybe = input.next() => match maybe {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    for effect in app.on_key(key) {
                        if effect == Effect::Quit {
                            return Ok(());
                        }
                        send(effect);
                    }
                    dirty = true;
                    if (app.selected_target(), app.selected_flag()) != before {
                        reload_wanted = true;
                    }
                }
                Some(Ok(TermEvent::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            ev = events.recv() => {
                match ev {
                    Ok(ev) => {
                        app.record(&ev);
                        app.take_pending().into_iter().for_each(&send);
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Ok(()),
                }
                reload_wanted = true;
                dirty = true;
            }
            Some(r) = results.recv() => {
                app.on_result(r);
                reload_wanted = true;
                dirty = true;
            }
            Some(mut s) = snaps.recv() => {
                loading = false;
                let moving = s.workloads.values().any(|w| w.active().is_some());
                if !moving {
                    s.now = app.snapshot.now;
                }
                if s != app.snapshot {
                    app.set_snapshot(s);
                    dirty = true;
                }
            }
            Some(()) = news.recv() => reload_wanted = true,
            _ = refresh.tick() => reload_wanted = true,
            _ = tokio::time::sleep_until(next_frame), if dirty => {}
        }
        if reload_wanted && !loading {
            load(engine, &app, &snap_tx);
            loading = true;
            reload_wanted = false;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
