//! The command line: clap definitions and the non-interactive subcommands.

mod argo;
mod console;
mod emergency;
pub mod flags;
mod follow;
mod notes;
mod report;
mod screenshots;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::{Estate, paths};
use crate::engine::{Command as EngineCommand, EngineError};
use crate::host::Host;
use crate::model::StrategyKind;

/// Exit codes, as DESIGN.md fixes them.
pub const EXIT_OK: i32 = 0;
pub const EXIT_RELEASE_FAILED: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;
pub const EXIT_BACKEND: i32 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "shipdeck",
    version,
    about = "Release software safely: rollouts, canaries, rollbacks and promotions from the terminal"
)]
pub struct Cli {
    /// Estate file (TOML) to use instead of the embedded demo estate.
    #[arg(long, global = true, value_name = "FILE", env = "SHIPDECK_ESTATE")]
    pub estate: Option<PathBuf>,
    /// Where all state lives (store, lock, logs). Default: $SHIPDECK_DATA_DIR, else the OS data dir.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Who is acting, for approvals and the audit log. Default: $SHIPDECK_USER, else the OS user.
    #[arg(long = "as", global = true, value_name = "NAME")]
    pub actor: Option<String>,
    /// One JSON object per line: events while following, then a summary.
    #[arg(long, global = true)]
    pub json: bool,
    /// Refuse every change.
    #[arg(long, global = true)]
    pub readonly: bool,
    /// Feature flags from this flagd file, or from OpenFeature's FeatureFlag resource in a cluster
    /// (`k8s:CONTEXT/NAMESPACE/NAME`, an empty CONTEXT for the kubeconfig's current one), instead
    /// of `<data dir>/flags.json`.
    #[arg(
        long = "flags",
        id = "flags_file",
        global = true,
        value_name = "FILE|k8s:CONTEXT/NAMESPACE/NAME",
        env = "SHIPDECK_FLAGS"
    )]
    pub flags_file: Option<PathBuf>,
    /// Confirm destructive actions (abort, rollback, restart, resume --full) without asking.
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Console theme: dark, light, high-contrast, or a user theme (default: config, else dark).
    #[arg(long, global = true, value_name = "NAME")]
    pub theme: Option<String>,
    /// Console keymap: default or emacs, before the user's keymap.toml (default: config, else default).
    #[arg(long, global = true, value_name = "NAME")]
    pub keymap: Option<String>,
    /// Serve shipdeck's own metrics (Prometheus/OpenMetrics text) on http://ADDR/metrics while
    /// the console or a release command runs, e.g. 127.0.0.1:9184 (port 0 picks a free one).
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Debug, Args, Clone)]
pub struct AppEnv {
    /// App name, as in the estate.
    pub app: String,
    /// Environment name, as in the estate.
    #[arg(long)]
    pub env: String,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// What runs where, and the releases in flight.
    Status {
        /// Only this environment.
        #[arg(long)]
        env: Option<String>,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
    },
    /// Release VERSION of APP into an environment and follow it to the end.
    Deploy {
        /// App name, as in the estate.
        app: String,
        /// A version the estate knows for the app.
        version: String,
        /// Environment to deploy into.
        #[arg(long)]
        env: String,
        /// rolling, recreate, blue-green, canary or ab (default: the app's).
        #[arg(long, value_parser = parse_strategy)]
        strategy: Option<StrategyKind>,
        /// A flag change the release carries, applied when it is verified and put back when it
        /// is rolled back: FLAG=on, FLAG=off or FLAG=25% (repeatable).
        #[arg(long = "flag", value_name = "FLAG=on|off|PCT%", value_parser = crate::model::FlagSetting::parse)]
        flags: Vec<crate::model::FlagSetting>,
    },
    /// Pause the release in progress.
    Pause(AppEnv),
    /// Resume a paused or interrupted release.
    Resume {
        #[command(flatten)]
        target: AppEnv,
        /// Skip the remaining steps and analysis and promote now (asks for confirmation).
        #[arg(long)]
        full: bool,
    },
    /// Send all traffic back to stable now; the new version's pods go after the abort delay.
    Abort(AppEnv),
    /// Run an aborted release again from its first step.
    Retry(AppEnv),
    /// Roll back the release in progress, or go back to the previous verified version.
    Rollback {
        #[command(flatten)]
        target: AppEnv,
        /// The version to go back to (default: the previous verified one).
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// On Kubernetes, this revision of the app's Deployment (`kubectl rollout undo --to-revision`).
        #[arg(long, value_name = "N", conflicts_with = "to", value_parser = clap::value_parser!(i64).range(1..))]
        to_revision: Option<i64>,
    },
    /// Replace the pods of a version one at a time (default: the current version).
    Restart {
        #[command(flatten)]
        target: AppEnv,
        /// The version whose pods restart.
        #[arg(long)]
        version: Option<String>,
    },
    /// Promote the verified release of APP from one environment to the next.
    Promote {
        /// App name, as in the estate.
        app: String,
        /// Environment whose latest verified release is promoted.
        #[arg(long)]
        from: String,
        /// One of the environments `from` promotes to.
        #[arg(long)]
        to: String,
    },
    /// Approve a release that waits for approval, and follow it.
    Approve {
        /// The release id, as `history` or the promote command printed it.
        release_id: String,
    },
    /// Releases, newest first, with their status transitions.
    History {
        /// Only this environment.
        #[arg(long)]
        env: Option<String>,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// At most this many releases.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Feature flags (flagd format, `flags.json` in the data dir): list, show, eval, preview,
    /// history, enable, disable, set-rollout.
    Flags {
        #[command(subcommand)]
        what: flags::FlagsCmd,
    },
    /// Release notes of VERSION of APP: the commits since the previous version in the app's git
    /// repository (`repo` in the estate), grouped as breaking changes, features, fixes and other.
    Notes {
        /// App name, as in the estate.
        app: String,
        /// The version the notes are for (its tag, as the app's `tag` maps it).
        version: String,
        /// Start after this version (default: with --env, the version that ran before it
        /// there; else the version before it in the estate).
        #[arg(long, value_name = "VERSION")]
        from: Option<String>,
        /// Start from what ran in this environment before the version's release (or runs now);
        /// notes stored with that release are shown as stored.
        #[arg(long)]
        env: Option<String>,
    },
    /// Emergency releases (the standard's hotfix procedure): create, approve, execute, show,
    /// list, report.
    Emergency {
        #[command(subcommand)]
        what: emergency::EmergencyCmd,
    },
    /// Environment reports.
    Env {
        #[command(subcommand)]
        what: EnvCmd,
    },
    /// Argo Rollouts in a Kubernetes environment: list, promote, promote-full, abort, retry,
    /// undo — as the `kubectl argo rollouts` plugin does them.
    Argo {
        #[command(subcommand)]
        what: argo::ArgoCmd,
    },
    /// Write an SVG image of every console pane and of the help overlay, drawn from built-in
    /// demo data at 160×48 in the --theme (default dark), to DIR/<pane>.svg and DIR/help.svg.
    Screenshots {
        /// The directory for the images (created if missing).
        #[arg(long, value_name = "DIR", default_value = "screenshots")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnvCmd {
    /// Per environment: what runs, effective settings, drift and pending approvals.
    Report,
}

fn parse_strategy(s: &str) -> Result<StrategyKind, String> {
    StrategyKind::parse(s).ok_or_else(|| {
        let all: Vec<&str> = StrategyKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown strategy `{s}` (one of: {})", all.join(", "))
    })
}

/// Run the command line; returns the process's exit code.
pub async fn run(cli: Cli) -> i32 {
    let estate = match &cli.estate {
        Some(p) => Estate::load(p),
        None => Estate::demo(),
    };
    let estate = match estate {
        Ok(e) => Arc::new(e),
        Err(e) => return fail(&cli, EXIT_BAD_INPUT, &format!("{e}")),
    };
    let data_dir = paths::data_dir(cli.data_dir.as_deref());
    let actor = paths::identity(cli.actor.as_deref());
    let ctx = Ctx { cli: &cli, estate, data_dir, actor };
    match &cli.command {
        None => console::open(&ctx).await,
        Some(Cmd::Status { env, app }) => report::status(&ctx, env.as_deref(), app.as_deref()),
        Some(Cmd::History { env, app, limit }) => report::history(&ctx, env.as_deref(), app.as_deref(), *limit),
        Some(Cmd::Env { what: EnvCmd::Report }) => report::env_report(&ctx),
        Some(Cmd::Notes { app, version, from, env }) => {
            notes::run(&ctx, app, version, from.as_deref(), env.as_deref()).await
        }
        Some(Cmd::Flags { what }) => flags::run(&ctx, what).await,
        Some(Cmd::Emergency { what }) => emergency::run(&ctx, what).await,
        Some(Cmd::Screenshots { out }) => screenshots::write_all(&cli, out),
        Some(Cmd::Argo { what }) => argo::run(&ctx, what).await,
        Some(other) => match to_engine_command(other) {
            Some((command, destructive)) => act(&ctx, command, destructive).await,
            None => fail(&cli, EXIT_BAD_INPUT, "unsupported command"),
        },
    }
}

pub(crate) struct Ctx<'a> {
    pub cli: &'a Cli,
    pub estate: Arc<Estate>,
    pub data_dir: PathBuf,
    pub actor: String,
}

impl Ctx<'_> {
    /// The process that holds the data dir, with the flags `--flags` names if any.
    /// With `--metrics-addr`, the host serves `/metrics` too.
    pub async fn start_host(&self, readonly: bool, what: &str) -> Result<Host, crate::host::HostError> {
        let flags = self.flag_source().map_err(crate::host::HostError::Flags)?;
        let mut host = Host::start_with(self.estate.clone(), &self.data_dir, flags.as_ref(), readonly, what).await?;
        if let Some(addr) = self.cli.metrics_addr {
            match host.serve_metrics(addr).await {
                Ok(bound) => {
                    tracing::info!("serving metrics on http://{bound}/metrics");
                    if what != "console" && !self.cli.json {
                        eprintln!("metrics: http://{bound}/metrics");
                    }
                }
                Err(e) => {
                    host.stop().await;
                    return Err(e);
                }
            }
        }
        Ok(host)
    }

    /// The flag store `--flags` names, if it does; `None`: `<data dir>/flags.json`.
    pub fn flag_source(&self) -> Result<Option<crate::flags::FlagSource>, String> {
        self.cli.flags_file.as_deref().map(crate::flags::FlagSource::parse).transpose()
    }
}

/// The engine command, and what a confirmation must say when it is destructive.
fn to_engine_command(cmd: &Cmd) -> Option<(EngineCommand, Option<String>)> {
    let c = |t: &AppEnv| (t.app.clone(), t.env.clone());
    Some(match cmd {
        Cmd::Deploy { app, version, env, strategy, flags } => (
            EngineCommand::Deploy {
                app: app.clone(),
                env: env.clone(),
                version: version.clone(),
                strategy: *strategy,
                flags: flags.clone(),
            },
            None,
        ),
        Cmd::Pause(t) => {
            let (app, env) = c(t);
            (EngineCommand::Pause { app, env }, None)
        }
        Cmd::Resume { target, full } => {
            let (app, env) = c(target);
            let warn = full.then(|| {
                format!("resume --full skips every remaining step and analysis of {app} in {env} and promotes now")
            });
            (EngineCommand::Resume { app, env, full: *full }, warn)
        }
        Cmd::Abort(t) => {
            let (app, env) = c(t);
            let warn = format!("abort the release of {app} in {env}: all traffic goes back to the stable version now");
            (EngineCommand::Abort { app, env }, Some(warn))
        }
        Cmd::Retry(t) => {
            let (app, env) = c(t);
            (EngineCommand::Retry { app, env }, None)
        }
        Cmd::Rollback { target, to, to_revision: Some(revision) } if to.is_none() => {
            let (app, env) = c(target);
            let warn = format!("roll {app} in {env} back to revision {revision} of its Deployment");
            (EngineCommand::RolloutUndo { app, env, revision: *revision }, Some(warn))
        }
        Cmd::Rollback { target, to, .. } => {
            let (app, env) = c(target);
            let dest = to.as_deref().map_or("the previous verified version".to_string(), |v| v.to_string());
            let warn = format!("roll {app} in {env} back to {dest}");
            (EngineCommand::Rollback { app, env, to: to.clone() }, Some(warn))
        }
        Cmd::Restart { target, version } => {
            let (app, env) = c(target);
            let warn = format!("restart every pod of {app} in {env}, one at a time");
            (EngineCommand::Restart { app, env, version: version.clone() }, Some(warn))
        }
        Cmd::Promote { app, from, to } => {
            (EngineCommand::Promote { app: app.clone(), from: from.clone(), to: to.clone() }, None)
        }
        Cmd::Approve { release_id } => (EngineCommand::Approve { release_id: release_id.clone() }, None),
        Cmd::Status { .. }
        | Cmd::History { .. }
        | Cmd::Env { .. }
        | Cmd::Flags { .. }
        | Cmd::Notes { .. }
        | Cmd::Emergency { .. }
        | Cmd::Argo { .. }
        | Cmd::Screenshots { .. } => {
            return None;
        }
    })
}

/// Ask before a destructive action: `--yes`, or `y` typed at a terminal.
fn confirm(cli: &Cli, what: &str) -> Result<(), String> {
    use std::io::{BufRead, IsTerminal, Write};
    if cli.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!("this would {what}; pass --yes to confirm"));
    }
    eprint!("This will {what}. Continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if matches!(line.trim(), "y" | "Y" | "yes") { Ok(()) } else { Err("cancelled; nothing changed".into()) }
}

async fn act(ctx: &Ctx<'_>, command: EngineCommand, destructive: Option<String>) -> i32 {
    let cli = ctx.cli;
    if cli.readonly {
        return fail(cli, EXIT_BAD_INPUT, &format!("read-only: `{}` would change the estate", command.name()));
    }
    if let Some(what) = destructive
        && let Err(why) = confirm(cli, &what)
    {
        return fail(cli, EXIT_BAD_INPUT, &why);
    }
    let name = command.name();
    let host = match ctx.start_host(false, name).await {
        Ok(h) => h,
        Err(e @ crate::host::HostError::Busy { .. }) => return relay(ctx, command, &e).await,
        Err(e) => return fail(cli, e.exit_code(), &e.to_string()),
    };
    let code = follow::execute_and_follow(ctx, &host, command).await;
    host.stop().await;
    code
}

/// Another shipdeck holds the data dir: hand the command to it over the control socket.
async fn relay(ctx: &Ctx<'_>, command: EngineCommand, busy: &crate::host::HostError) -> i32 {
    let cli = ctx.cli;
    let Some(reply) = crate::control::send(&ctx.data_dir, &ctx.actor, command).await else {
        return fail(cli, EXIT_BACKEND, &busy.to_string());
    };
    if !reply.ok {
        return fail(cli, reply.exit_code, &reply.message);
    }
    let note = "done by the shipdeck that holds this data dir; follow it there, or with `shipdeck status`";
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"type": "accepted", "message": reply.message, "release": reply.release, "via": "control socket"})
        );
    } else {
        println!("{} ({note})", reply.message);
    }
    EXIT_OK
}

/// Print an error (as JSON with --json) and return its exit code.
pub(crate) fn fail(cli: &Cli, code: i32, message: &str) -> i32 {
    if cli.json {
        println!("{}", serde_json::json!({"type": "error", "exit_code": code, "message": message}));
    } else {
        eprintln!("error: {message}");
    }
    code
}

pub(crate) fn engine_fail(cli: &Cli, e: &EngineError) -> i32 {
    fail(cli, e.exit_code(), &e.to_string())
}
