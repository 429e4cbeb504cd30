//! The `:` command palette: parsing, completion and history. Commands read like the CLI's:
//! `deploy checkout 1.5.0 staging`, `rollback checkout prod`, `env prod`, `flag dark-mode off`.

use crate::engine::Command;
use crate::model::StrategyKind;

use super::flag_actions::describe_change;
use super::snapshot::Snapshot;

/// What a palette line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum PaletteAction {
    /// An engine command; `confirm` holds what a confirmation must say when it is destructive.
    Run {
        command: Command,
        confirm: Option<String>,
    },
    /// Select an environment (`env prod`) or an app (`app checkout`).
    SelectEnv(String),
    SelectApp(String),
    Pane(super::app::Pane),
    Help,
    Quit,
    /// Point the selected Kubernetes environment at a context (`ctx NAME`) or a namespace
    /// (`ns NAME`).
    KubeContext(String),
    KubeNamespace(String),
    /// A `flags …` line that only reads (`eval`, `preview`, `show`, `history`, …).
    FlagRead(crate::cli::flags::FlagsCmd),
}

pub const VERBS: &[&str] = &[
    "deploy",
    "rollback",
    "abort",
    "pause",
    "resume",
    "resume-full",
    "retry",
    "restart",
    "promote",
    "approve",
    "flag",
    "flags",
    "env",
    "app",
    "pane",
    "ctx",
    "ns",
    "help",
    "quit",
];

fn usage(verb: &str) -> &'static str {
    match verb {
        "deploy" => "deploy APP VERSION ENV [STRATEGY]",
        "rollback" => "rollback APP ENV [VERSION]",
        "abort" | "pause" | "resume" | "resume-full" | "retry" | "restart" => "VERB APP ENV",
        "promote" => "promote APP FROM TO",
        "approve" => "approve RELEASE_ID",
        "flag" => "flag KEY on|off|PERCENT",
        "flags" => {
            "flags enable|disable|set-rollout|target|weights|tag|depend|rollout|experiment|eval|preview|show KEY …"
        }
        "env" => "env NAME",
        "app" => "app NAME",
        "pane" => "pane environments|rollout|analysis|flags|emergency|events",
        "ctx" => "ctx CONTEXT (of the kubeconfig; moves the selected Kubernetes environment)",
        "ns" => "ns NAMESPACE (moves the selected Kubernetes environment)",
        _ => "",
    }
}

/// `flags …` with the CLI's own arguments (quotes group words: `--rule "plan equals pro"`).
fn parse_flags(rest: &str, snap: &Snapshot) -> Result<PaletteAction, String> {
    use clap::Parser;
    #[derive(Parser)]
    #[command(name = "flags", no_binary_name = true, disable_help_subcommand = true)]
    struct Line {
        #[command(subcommand)]
        cmd: crate::cli::flags::FlagsCmd,
    }
    let words = shlex::split(rest).ok_or("a quote is not closed")?;
    if words.is_empty() {
        return Err(format!("usage: {}", usage("flags")));
    }
    let line = Line::try_parse_from(words).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
        match text.lines().find(|l| l.starts_with("Usage:")) {
            Some(u) => format!("{first} — {}", u.trim_start_matches("Usage: ")),
            None => first,
        }
    })?;
    Ok(match line.cmd.engine_command()? {
        Some(command) => {
            PaletteAction::Run { confirm: Some(describe_change(&command, snap.flag_set.as_ref())), command }
        }
        None => PaletteAction::FlagRead(line.cmd),
    })
}

/// Parse a line; errors say what was expected.
pub fn parse(line: &str, snap: &Snapshot) -> Result<PaletteAction, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&verb, args)) = words.split_first() else {
        return Err("type a command, e.g. `deploy checkout 1.5.0 dev`".into());
    };
    let need = |n: usize| -> Result<(), String> {
        if args.len() < n { Err(format!("usage: {}", usage(verb).replace("VERB", verb))) } else { Ok(()) }
    };
    let app_env = |args: &[&str]| (args[0].to_string(), args[1].to_string());
    Ok(match verb {
        "deploy" => {
            need(3)?;
            let strategy = match args.get(3) {
                Some(s) => Some(StrategyKind::parse(s).ok_or_else(|| format!("unknown strategy `{s}`"))?),
                None => None,
            };
            PaletteAction::Run {
                command: Command::Deploy {
                    app: args[0].into(),
                    version: args[1].into(),
                    env: args[2].into(),
                    strategy,
                    flags: Vec::new(),
                },
                confirm: None,
            }
        }
        "rollback" => {
            need(2)?;
            let (app, env) = app_env(args);
            let to = args.get(2).map(|v| v.to_string());
            let dest = to.clone().unwrap_or_else(|| "the previous verified version".into());
            PaletteAction::Run {
                confirm: Some(format!("Roll {app} in {env} back to {dest}.")),
                command: Command::Rollback { app, env, to },
            }
        }
        "abort" => {
            need(2)?;
            let (app, env) = app_env(args);
            PaletteAction::Run {
                confirm: Some(format!("Abort the release of {app} in {env}: all traffic goes back to stable now.")),
                command: Command::Abort { app, env },
            }
        }
        "pause" | "resume" | "retry" => {
            need(2)?;
            let (app, env) = app_env(args);
            let command = match verb {
                "pause" => Command::Pause { app, env },
                "resume" => Command::Resume { app, env, full: false },
                _ => Command::Retry { app, env },
            };
            PaletteAction::Run { command, confirm: None }
        }
        "resume-full" => {
            need(2)?;
            let (app, env) = app_env(args);
            PaletteAction::Run {
                confirm: Some(format!("Skip every remaining step and analysis of {app} in {env} and promote now.")),
                command: Command::Resume { app, env, full: true },
            }
        }
        "restart" => {
            need(2)?;
            let (app, env) = app_env(args);
            PaletteAction::Run {
                confirm: Some(format!("Restart every pod of {app} in {env}, one at a time.")),
                command: Command::Restart { app, env, version: None },
            }
        }
        "promote" => {
            need(3)?;
            PaletteAction::Run {
                command: Command::Promote { app: args[0].into(), from: args[1].into(), to: args[2].into() },
                confirm: None,
            }
        }
        "approve" => {
            need(1)?;
            PaletteAction::Run { command: Command::Approve { release_id: args[0].into() }, confirm: None }
        }
        "flags" => return parse_flags(line.trim_start().trim_start_matches("flags"), snap),
        "flag" => {
            need(2)?;
            let key = args[0].to_string();
            let command = match args[1] {
                "on" => Command::SetFlag { key: key.clone(), enabled: true },
                "off" => Command::SetFlag { key: key.clone(), enabled: false },
                p => {
                    let percent = p
                        .trim_end_matches('%')
                        .parse::<u32>()
                        .map_err(|_| format!("`{p}` is not on, off or a percentage"))?;
                    Command::SetFlagRollout { key: key.clone(), percent }
                }
            };
            PaletteAction::Run { confirm: Some(describe_change(&command, snap.flag_set.as_ref())), command }
        }
        "env" => {
            need(1)?;
            if !snap.envs.iter().any(|e| e == args[0]) {
                return Err(format!("unknown environment `{}` (environments: {})", args[0], snap.envs.join(", ")));
            }
            PaletteAction::SelectEnv(args[0].into())
        }
        "app" => {
            need(1)?;
            if !snap.apps.iter().any(|a| a == args[0]) {
                return Err(format!("unknown app `{}` (apps: {})", args[0], snap.apps.join(", ")));
            }
            PaletteAction::SelectApp(args[0].into())
        }
        "pane" => {
            need(1)?;
            let pane = super::app::Pane::ALL
                .into_iter()
                .find(|p| p.name() == args[0])
                .ok_or_else(|| format!("unknown pane `{}`", args[0]))?;
            PaletteAction::Pane(pane)
        }
        "ctx" => {
            need(1)?;
            if !snap.kube_contexts.iter().any(|c| c == args[0]) {
                let known = if snap.kube_contexts.is_empty() { "none".into() } else { snap.kube_contexts.join(", ") };
                return Err(format!("the kubeconfig has no context `{}` (contexts: {known})", args[0]));
            }
            PaletteAction::KubeContext(args[0].into())
        }
        "ns" => {
            need(1)?;
            if !crate::model::is_dns_label(args[0]) {
                return Err(format!("`{}` is not a namespace name (lowercase letters, digits and `-`)", args[0]));
            }
            PaletteAction::KubeNamespace(args[0].into())
        }
        "help" => PaletteAction::Help,
        "quit" | "q" => PaletteAction::Quit,
        other => return Err(format!("unknown command `{other}` (commands: {})", VERBS.join(", "))),
    })
}

/// Candidates for the word being typed: verbs first, then apps, versions, environments or flags
/// as the verb's position calls for.
pub fn complete(line: &str, snap: &Snapshot) -> Vec<String> {
    let ends_with_space = line.ends_with(' ');
    let words: Vec<&str> = line.split_whitespace().collect();
    let (done, partial) = match (words.len(), ends_with_space) {
        (0, _) => (Vec::new(), ""),
        (_, true) => (words.clone(), ""),
        (n, false) => (words[..n - 1].to_vec(), words[n - 1]),
    };
    let pool: Vec<String> = match done.as_slice() {
        [] => VERBS.iter().map(|s| s.to_string()).collect(),
        ["env"] => snap.envs.clone(),
        ["app"] => snap.apps.clone(),
        ["flag"] => snap.flags.iter().map(|f| f.key.clone()).collect(),
        ["flag", _] => vec!["on".into(), "off".into(), "10".into(), "25".into(), "50".into(), "100".into()],
        ["pane"] => super::app::Pane::ALL.iter().map(|p| p.name().to_string()).collect(),
        ["ctx"] => snap.kube_contexts.clone(),
        ["ns"] => {
            let mut known: Vec<String> = snap.kube.values().map(|p| p.namespace.clone()).collect();
            known.sort();
            known.dedup();
            known
        }
        ["ctx", ..] | ["ns", ..] => Vec::new(),
        [_, ..] if done.len() == 1 && done[0] != "approve" => snap.apps.clone(),
        ["deploy", app] => versions(snap, app),
        ["deploy", _, _] | ["promote", _] | ["promote", _, _] => snap.envs.clone(),
        ["deploy", _, _, _] => StrategyKind::ALL.iter().map(|k| k.as_str().to_string()).collect(),
        ["rollback", _, _] => versions(snap, done[1]),
        [_, _] => snap.envs.clone(),
        _ => Vec::new(),
    };
    pool.into_iter().filter(|c| c.starts_with(partial) && c != partial).collect()
}

pub(super) fn versions(snap: &Snapshot, app: &str) -> Vec<String> {
    snap.workloads
        .iter()
        .find(|(t, _)| t.app == app)
        .and_then(|(_, w)| w.settings.as_ref())
        .map(|s| s.versions.iter().map(|v| v.version.clone()).collect())
        .unwrap_or_default()
}

/// The line with its last word replaced by `candidate`.
pub fn apply_completion(line: &str, candidate: &str) -> String {
    let keep = if line.ends_with(' ') || line.is_empty() {
        line.to_string()
    } else {
        line.rsplit_once(' ').map(|(head, _)| format!("{head} ")).unwrap_or_default()
    };
    format!("{keep}{candidate} ")
}
