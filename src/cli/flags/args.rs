//! The `flags` subcommands' arguments, shared by the CLI and the console's palette, and the
//! engine command each change asks for.

use clap::Subcommand;

use crate::engine::Command as EngineCommand;
use crate::flags::edit::FlagEdit;

#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum FlagsCmd {
    /// Every flag: state, default variant, variants and rollout.
    List,
    /// One flag: its definition, who gets it over a sample of users, and its latest changes.
    Show { flag: String },
    /// Turn a flag on.
    Enable { flag: String },
    /// Turn a flag off: every user gets the application's default (asks first).
    Disable { flag: String },
    /// Give PCT percent of users the flag's `on` variant (a fractional rollout).
    SetRollout {
        flag: String,
        #[arg(value_name = "PCT")]
        percent: u32,
    },
    /// Evaluate a flag for one context, with flagd's reason.
    Eval {
        flag: String,
        /// Context values, e.g. `--context targetingKey=user-7 --context plan=pro`.
        #[arg(long = "context", value_name = "KEY=VALUE")]
        context: Vec<String>,
    },
    /// Who gets it: the share of each variant over N synthetic users (user-0 … user-N-1).
    Preview {
        flag: String,
        #[arg(long, default_value_t = 10_000)]
        sample: u32,
    },
    /// Roll a flag out in stages, each held while users served `on` do no worse than those
    /// served `off` on APP's traffic in ENV; a failed stage turns the flag back. Follows it.
    Rollout {
        flag: String,
        #[arg(long)]
        app: String,
        #[arg(long)]
        env: String,
        /// Percent:hold for each stage, e.g. `10:10m,25:10m,50:20m,100` (default 10%, 25%, 50%
        /// held 1 h, 1 h, 2 h, then 100%).
        #[arg(long)]
        stages: Option<String>,
        /// One of the app's analysis templates (default: the sequential judge, measuring every
        /// 30 s or each stage's hold if shorter).
        #[arg(long)]
        template: Option<String>,
    },
    /// Add a targeting rule: users matching its conditions get the `--serve` variant; rules
    /// apply in order, the rest get the flag's rollout split or its default variant.
    /// `--clear` removes the rules (keeping the split).
    Target {
        flag: String,
        /// A condition `ATTRIBUTE OPERATOR VALUE`; operators: equals, not_equals, contains,
        /// greater_than, less_than, in_segment (a,b,c), starts_with, ends_with,
        /// semver (`version semver >= 2.1.0`; = != < <= > >= ^ ~). Repeat for more.
        #[arg(long = "rule", value_name = "CONDITION", required_unless_present = "clear")]
        rules: Vec<String>,
        /// Whether all conditions must hold, or any one.
        #[arg(long = "match", value_enum, default_value_t = MatchArg::All)]
        matching: MatchArg,
        /// The variant the rule serves.
        #[arg(long, required_unless_present = "clear")]
        serve: Option<String>,
        /// Remove the flag's targeting rules.
        #[arg(long, conflicts_with_all = ["rules", "serve"])]
        clear: bool,
    },
    /// Split users over the flag's variants by weight, e.g. `on=20 off=70 beta=10`.
    Weights {
        flag: String,
        #[arg(value_name = "VARIANT=WEIGHT", required = true)]
        weights: Vec<String>,
    },
    /// Add a tag to a flag, or remove one.
    Tag {
        flag: String,
        #[arg(value_enum)]
        action: TagAction,
        tag: String,
    },
    /// Make a flag depend on another (it cannot be turned on while that one is off), or not.
    Depend {
        flag: String,
        /// The flag it depends on.
        #[arg(long, value_name = "FLAG", required_unless_present = "remove", conflicts_with = "remove")]
        on: Option<String>,
        /// Remove its dependency on FLAG.
        #[arg(long, value_name = "FLAG")]
        remove: Option<String>,
    },
    /// An experiment: split users 50/50 between two variants for a while on APP's traffic in
    /// ENV, then report what each variant's users got (stops early if the treatment does harm;
    /// the flag is put back as it was). Follows it.
    Experiment {
        flag: String,
        #[arg(long)]
        app: String,
        #[arg(long)]
        env: String,
        #[arg(long, default_value = "off")]
        control: String,
        #[arg(long, default_value = "on")]
        treatment: String,
        /// How long, e.g. 10m.
        #[arg(long, value_parser = parse_duration)]
        duration: std::time::Duration,
        /// What the experiment is meant to show.
        #[arg(long, default_value = "")]
        hypothesis: String,
    },
    /// The stored results of a flag's experiments, newest first.
    Experiments { flag: String },
    /// A flag's changes, newest first: who, when, what, before and after.
    History {
        flag: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum MatchArg {
    All,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum TagAction {
    Add,
    Remove,
}

/// `VARIANT=WEIGHT` pairs.
pub(super) fn parse_weights(texts: &[String]) -> Result<Vec<(String, u32)>, String> {
    texts
        .iter()
        .map(|t| {
            t.split_once('=')
                .and_then(|(v, w)| Some((v.trim(), w.trim().parse::<u32>().ok()?)))
                .filter(|(v, _)| !v.is_empty())
                .map(|(v, w)| (v.to_string(), w))
                .ok_or_else(|| format!("`{t}`: write VARIANT=WEIGHT with a whole number, e.g. on=20"))
        })
        .collect()
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 30s, 10m, 1h"))
}

impl FlagsCmd {
    /// The flag a subcommand is about (`None` for `list`).
    pub fn flag(&self) -> Option<&str> {
        match self {
            FlagsCmd::List => None,
            FlagsCmd::Show { flag }
            | FlagsCmd::Enable { flag }
            | FlagsCmd::Disable { flag }
            | FlagsCmd::SetRollout { flag, .. }
            | FlagsCmd::Eval { flag, .. }
            | FlagsCmd::Preview { flag, .. }
            | FlagsCmd::Rollout { flag, .. }
            | FlagsCmd::Target { flag, .. }
            | FlagsCmd::Weights { flag, .. }
            | FlagsCmd::Tag { flag, .. }
            | FlagsCmd::Depend { flag, .. }
            | FlagsCmd::Experiment { flag, .. }
            | FlagsCmd::Experiments { flag }
            | FlagsCmd::History { flag, .. } => Some(flag),
        }
    }

    /// The edit `target`, `weights`, `tag` and `depend` ask for; `None` for other subcommands.
    pub fn edit(&self) -> Option<Result<FlagEdit, String>> {
        Some(match self {
            FlagsCmd::Target { clear: true, .. } => Ok(FlagEdit::ClearRules),
            FlagsCmd::Target { rules, matching, serve, .. } => match serve {
                Some(serve) => Ok(FlagEdit::AddRule {
                    conditions: rules.clone(),
                    any: matches!(matching, MatchArg::Any),
                    serve: serve.clone(),
                }),
                None => Err("give --serve VARIANT".to_string()),
            },
            FlagsCmd::Weights { weights, .. } => parse_weights(weights).map(|weights| FlagEdit::Weights { weights }),
            FlagsCmd::Tag { action, tag, .. } => {
                Ok(FlagEdit::Tag { tag: tag.clone(), add: matches!(action, TagAction::Add) })
            }
            FlagsCmd::Depend { on, remove, .. } => match (on, remove) {
                (Some(on), _) => Ok(FlagEdit::Depend { on: on.clone(), add: true }),
                (None, Some(g)) => Ok(FlagEdit::Depend { on: g.clone(), add: false }),
                (None, None) => Err("give --on FLAG or --remove FLAG".to_string()),
            },
            _ => return None,
        })
    }

    /// The engine command a change asks for; `Ok(None)` for the subcommands that only read.
    pub fn engine_command(&self) -> Result<Option<EngineCommand>, String> {
        use crate::engine::flag_rollout::parse_stages;
        if let Some(edit) = self.edit() {
            let edit = edit?;
            edit.rule().map_err(|e| format!("--rule: {e}"))?;
            let key = self.flag().unwrap_or_default().to_string();
            return Ok(Some(EngineCommand::EditFlag { key, edit }));
        }
        Ok(Some(match self {
            FlagsCmd::Enable { flag } => EngineCommand::SetFlag { key: flag.clone(), enabled: true },
            FlagsCmd::Disable { flag } => EngineCommand::SetFlag { key: flag.clone(), enabled: false },
            FlagsCmd::SetRollout { flag, percent } => {
                if *percent > 100 {
                    return Err(format!("rollout {percent}% must be between 0 and 100"));
                }
                EngineCommand::SetFlagRollout { key: flag.clone(), percent: *percent }
            }
            FlagsCmd::Rollout { flag, app, env, stages, template } => EngineCommand::FlagRollout {
                key: flag.clone(),
                app: app.clone(),
                env: env.clone(),
                stages: stages.as_deref().map(parse_stages).transpose().map_err(|e| format!("--stages: {e}"))?,
                template: template.clone(),
            },
            FlagsCmd::Experiment { flag, app, env, control, treatment, duration, hypothesis } => {
                EngineCommand::FlagExperiment {
                    key: flag.clone(),
                    app: app.clone(),
                    env: env.clone(),
                    control: control.clone(),
                    treatment: treatment.clone(),
                    duration_secs: duration.as_secs(),
                    hypothesis: hypothesis.clone(),
                }
            }
            _ => return Ok(None),
        }))
    }
}
