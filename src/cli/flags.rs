//! `shipdeck flags …`: the flagd-format flags in the data dir (`flags.json`), read, evaluated
//! and changed. A change goes to the shipdeck that holds the data dir when one does (so its
//! console and pods see it at once); otherwise it is saved here, with the same checks and the
//! same record.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Ctx, EXIT_BACKEND, EXIT_BAD_INPUT, EXIT_OK, confirm, fail};
use crate::engine::Command as EngineCommand;
use crate::flags::change::{self, ChangeError};
use crate::flags::edit::FlagEdit;
use crate::flags::eval::{Context, FlagEvaluator};
use crate::flags::{DEMO_FLAGS, FileFlagStore, FlagError, FlagSet};
use crate::host::{DataDirLock, HostError};
use crate::store::Store;

#[derive(Debug, Subcommand)]
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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MatchArg {
    All,
    Any,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TagAction {
    Add,
    Remove,
}

pub(crate) async fn run(ctx: &Ctx<'_>, cmd: &FlagsCmd) -> i32 {
    let cli = ctx.cli;
    let path = ctx.flags_file();
    if let Err(e) = std::fs::create_dir_all(&ctx.data_dir) {
        return fail(cli, EXIT_BACKEND, &format!("cannot create the data dir {}: {e}", ctx.data_dir.display()));
    }
    // A file named with --flags must exist; the data dir's own is made with the demo flags.
    let seed = if cli.flags_file.is_some() { None } else { Some(DEMO_FLAGS) };
    if seed.is_none() && !path.exists() {
        return fail(cli, EXIT_BAD_INPUT, &format!("flag file {} does not exist; check --flags", path.display()));
    }
    let store = match FileFlagStore::open(&path, seed) {
        Ok(s) => s,
        Err(e) => return fail(cli, flag_exit(&e), &e.to_string()),
    };
    let set = match store.load() {
        Ok((set, _)) => set,
        Err(e) => return fail(cli, flag_exit(&e), &e.to_string()),
    };
    match cmd {
        FlagsCmd::List => list(ctx, &set),
        FlagsCmd::Show { flag } => show(ctx, &set, flag),
        FlagsCmd::Eval { flag, context } => eval(ctx, &set, flag, context),
        FlagsCmd::Preview { flag, sample } => preview(ctx, &set, flag, *sample),
        FlagsCmd::History { flag, limit } => history(ctx, &set, flag, *limit),
        FlagsCmd::Enable { flag } => change_flag(ctx, &store, flag, true, None).await,
        FlagsCmd::Disable { flag } => change_flag(ctx, &store, flag, false, None).await,
        FlagsCmd::SetRollout { flag, percent } => change_flag(ctx, &store, flag, true, Some(*percent)).await,
        FlagsCmd::Target { flag, rules, matching, serve, clear } => {
            let e = if *clear {
                Ok(FlagEdit::ClearRules)
            } else {
                match serve {
                    Some(serve) => Ok(FlagEdit::AddRule {
                        conditions: rules.clone(),
                        any: matches!(matching, MatchArg::Any),
                        serve: serve.clone(),
                    }),
                    None => Err("give --serve VARIANT".to_string()),
                }
            };
            match e {
                Ok(e) => edit(ctx, &store, flag, e).await,
                Err(why) => fail(cli, EXIT_BAD_INPUT, &why),
            }
        }
        FlagsCmd::Weights { flag, weights } => match parse_weights(weights) {
            Ok(weights) => edit(ctx, &store, flag, FlagEdit::Weights { weights }).await,
            Err(why) => fail(cli, EXIT_BAD_INPUT, &why),
        },
        FlagsCmd::Tag { flag, action, tag } => {
            let add = matches!(action, TagAction::Add);
            edit(ctx, &store, flag, FlagEdit::Tag { tag: tag.clone(), add }).await
        }
        FlagsCmd::Depend { flag, on, remove } => match (on, remove) {
            (Some(on), _) => edit(ctx, &store, flag, FlagEdit::Depend { on: on.clone(), add: true }).await,
            (None, Some(g)) => edit(ctx, &store, flag, FlagEdit::Depend { on: g.clone(), add: false }).await,
            (None, None) => fail(cli, EXIT_BAD_INPUT, "give --on FLAG or --remove FLAG"),
        },
        FlagsCmd::Experiment { flag, app, env, control, treatment, duration, hypothesis } => {
            let command = EngineCommand::FlagExperiment {
                key: flag.clone(),
                app: app.clone(),
                env: env.clone(),
                control: control.clone(),
                treatment: treatment.clone(),
                duration_secs: duration.as_secs(),
                hypothesis: hypothesis.clone(),
            };
            experiment(ctx, flag, command).await
        }
        FlagsCmd::Experiments { flag } => experiments(ctx, flag),
        FlagsCmd::Rollout { flag, app, env, stages, template } => {
            progressive(ctx, flag, app, env, stages.as_deref(), template.clone()).await
        }
    }
}

/// Starts a progressive rollout on a host of this data dir and prints each stage until it ends.
async fn progressive(
    ctx: &Ctx<'_>,
    flag: &str,
    app: &str,
    env: &str,
    stages: Option<&str>,
    template: Option<String>,
) -> i32 {
    use crate::engine::{Event, flag_rollout};
    let cli = ctx.cli;
    if cli.readonly {
        return fail(cli, EXIT_BAD_INPUT, "read-only: a progressive rollout would change the flags");
    }
    let stages = match stages.map(flag_rollout::parse_stages).transpose() {
        Ok(s) => s,
        Err(e) => return fail(cli, EXIT_BAD_INPUT, &format!("--stages: {e}")),
    };
    let command = EngineCommand::FlagRollout {
        key: flag.to_string(),
        app: app.to_string(),
        env: env.to_string(),
        stages,
        template,
    };
    follow_on_host(ctx, command, |event| match event {
        Event::FlagRollout { key, finished, ok, message } if key == flag => {
            say(cli, json!({"type": "flag_rollout", "finished": finished, "ok": ok, "message": message}), message);
            finished.then_some(if *ok { EXIT_OK } else { super::EXIT_RELEASE_FAILED })
        }
        _ => None,
    })
    .await
}

/// Runs `command` on a host of this data dir (or hands it to the holder) and passes every
/// engine event to `on` until it answers with an exit code.
async fn follow_on_host(
    ctx: &Ctx<'_>,
    command: EngineCommand,
    mut on: impl FnMut(&crate::engine::Event) -> Option<i32>,
) -> i32 {
    use tokio::sync::broadcast::error::RecvError;
    let cli = ctx.cli;
    let host = match ctx.start_host(false, command.name()).await {
        Ok(h) => h,
        Err(e @ HostError::Busy { .. }) => return super::relay(ctx, command, &e).await,
        Err(e) => return fail(cli, e.exit_code(), &e.to_string()),
    };
    let mut rx = host.engine.subscribe();
    let code = match host.engine.execute(&ctx.actor, command).await {
        Err(e) => super::engine_fail(cli, &e),
        Ok(out) => {
            say(cli, json!({"type": "started", "message": out.message}), &out.message);
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        if let Some(code) = on(&event) {
                            break code;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break EXIT_BACKEND,
                }
            }
        }
    };
    host.stop().await;
    code
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 30s, 10m, 1h"))
}

/// Starts an experiment on a host of this data dir and prints its result when it ends.
async fn experiment(ctx: &Ctx<'_>, flag: &str, command: EngineCommand) -> i32 {
    use crate::engine::Event;
    let cli = ctx.cli;
    if cli.readonly {
        return fail(cli, EXIT_BAD_INPUT, "read-only: an experiment would change the flags");
    }
    follow_on_host(ctx, command, |event| match event {
        Event::Experiment { result } if result.flag == flag => {
            print_experiment(cli, result);
            Some(EXIT_OK)
        }
        Event::FlagRollout { key, finished: true, ok: false, message } if key == flag => {
            Some(fail(cli, EXIT_BACKEND, message))
        }
        _ => None,
    })
    .await
}

fn print_experiment(cli: &super::Cli, r: &crate::model::ExperimentResult) {
    if cli.json {
        println!("{}", json!({"type": "experiment", "result": r}));
        return;
    }
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", v * 100.0));
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    println!(
        "experiment on {} ({} in {}), {} → {}: {}",
        r.flag,
        r.app,
        r.env,
        r.started_at.format("%Y-%m-%d %H:%M:%S"),
        r.ended_at.format("%H:%M:%S"),
        if r.hypothesis.is_empty() { "(no hypothesis)" } else { &r.hypothesis }
    );
    println!("  {:<12} {:>9} {:>7} {:>10} {:>10} {:>10}", "VARIANT", "REQUESTS", "ERRORS", "ERROR RATE", "P50", "P99");
    for v in &r.variants {
        let role = if v.variant == r.control { " (control)" } else { " (treatment)" };
        println!(
            "  {:<12} {:>9} {:>7} {:>10} {:>10} {:>10}{role}",
            v.variant,
            v.requests,
            v.errors,
            pct(v.error_rate),
            ms(v.p50_ms),
            ms(v.p99_ms)
        );
    }
    println!("  {}", r.conclusion);
}

fn experiments(ctx: &Ctx<'_>, flag: &str) -> i32 {
    let cli = ctx.cli;
    match Store::open(&crate::config::paths::store_file(&ctx.data_dir)).and_then(|s| s.experiments(flag)) {
        Ok(list) => {
            if list.is_empty() && !cli.json {
                println!("{flag}: no experiments recorded");
            }
            for r in &list {
                print_experiment(cli, r);
            }
            EXIT_OK
        }
        Err(e) => fail(cli, EXIT_BACKEND, &e.to_string()),
    }
}

fn say(cli: &super::Cli, json: Value, text: &str) {
    if cli.json {
        println!("{json}");
    } else {
        println!("{text}");
    }
}

fn flag_exit(e: &FlagError) -> i32 {
    match e {
        FlagError::Io { .. } => EXIT_BACKEND,
        _ => EXIT_BAD_INPUT,
    }
}

fn known(set: &FlagSet, flag: &str) -> Result<(), String> {
    if set.flag(flag).is_some() {
        Ok(())
    } else {
        Err(FlagError::Unknown { key: flag.to_string(), known: set.keys().join(", ") }.to_string())
    }
}

fn list(ctx: &Ctx<'_>, set: &FlagSet) -> i32 {
    let views = set.views();
    if ctx.cli.json {
        for v in &views {
            let (tags, deps, rules) = (set.tags(&v.key), set.depends_on(&v.key), set.rules(&v.key).len());
            println!("{}", json!({"type": "flag", "flag": v, "tags": tags, "depends_on": deps, "rules": rules}));
        }
        return EXIT_OK;
    }
    println!("{:<24} {:<8} {:<10} {:>8}  {:<16} TAGS", "FLAG", "STATE", "DEFAULT", "ROLLOUT", "VARIANTS");
    for v in &views {
        let rollout = match (v.rollout, set.rules(&v.key).len()) {
            (Some(r), _) => format!("{r}%"),
            (None, 0) => "-".to_string(),
            (None, n) => format!("{n} rule{}", if n == 1 { "" } else { "s" }),
        };
        let state = if v.enabled { "on" } else { "off" };
        let tags = set.tags(&v.key).join(", ");
        let variants = v.variants.join(", ");
        println!("{:<24} {:<8} {:<10} {:>8}  {variants:<16} {tags}", v.key, state, v.default_variant, rollout);
    }
    EXIT_OK
}

/// Shares per variant over `n` synthetic users `user-0` …, as (variant or "(code default)", share %).
fn shares(set: &FlagSet, flag: &str, n: u32) -> Result<Vec<(String, f64)>, String> {
    let evaluator = FlagEvaluator::new(set).map_err(|e| e.to_string())?;
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for i in 0..n {
        let ctx: Context = [("targetingKey", Value::String(format!("user-{i}")))].into_iter().collect();
        let r = evaluator.evaluate(flag, &ctx);
        *counts.entry(r.variant.unwrap_or("(code default)").to_string()).or_default() += 1;
    }
    let total = f64::from(n.max(1));
    Ok(counts.into_iter().map(|(v, c)| (v, c as f64 * 100.0 / total)).collect())
}

fn show(ctx: &Ctx<'_>, set: &FlagSet, flag: &str) -> i32 {
    let cli = ctx.cli;
    if let Err(e) = known(set, flag) {
        return fail(cli, EXIT_BAD_INPUT, &e);
    }
    let who = match shares(set, flag, 10_000) {
        Ok(s) => s,
        Err(e) => return fail(cli, EXIT_BAD_INPUT, &e),
    };
    let changes = Store::open(&crate::config::paths::store_file(&ctx.data_dir))
        .and_then(|s| s.flag_changes(Some(flag), 5))
        .unwrap_or_default();
    let definition = set.flag(flag).cloned().unwrap_or(Value::Null);
    let (tags, deps) = (set.tags(flag), set.depends_on(flag));
    let rules: Vec<String> = set.rules(flag).iter().map(ToString::to_string).collect();
    if cli.json {
        let who: serde_json::Map<String, Value> = who.iter().map(|(v, s)| (v.clone(), json!(s))).collect();
        println!(
            "{}",
            json!({"type": "flag", "key": flag, "definition": definition, "who_gets_it": who, "changes": changes,
                   "tags": tags, "depends_on": deps, "dependents_on": set.enabled_dependents(flag), "rules": rules})
        );
        return EXIT_OK;
    }
    println!("{flag}");
    if !tags.is_empty() {
        println!("tags: {}", tags.join(", "));
    }
    if !deps.is_empty() {
        println!("depends on: {}", deps.join(", "));
    }
    for (i, r) in rules.iter().enumerate() {
        println!("rule {}: {r}", i + 1);
    }
    println!("{}", serde_json::to_string_pretty(&definition).unwrap_or_default());
    println!("who gets it (10,000 synthetic users):");
    for (v, s) in &who {
        println!("  {v:<16} {s:5.1}%");
    }
    if !changes.is_empty() {
        println!("latest changes:");
        for c in &changes {
            println!("  {}  {:<10} {}", c.at.format("%Y-%m-%d %H:%M:%S"), c.actor, c.action);
        }
    }
    EXIT_OK
}

fn eval(ctx: &Ctx<'_>, set: &FlagSet, flag: &str, pairs: &[String]) -> i32 {
    let cli = ctx.cli;
    if let Err(e) = known(set, flag) {
        return fail(cli, EXIT_BAD_INPUT, &e);
    }
    let mut context = serde_json::Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return fail(cli, EXIT_BAD_INPUT, &format!("--context `{p}`: write KEY=VALUE, e.g. plan=pro"));
        };
        // Numbers and booleans as JSON, anything else as a string.
        let value = serde_json::from_str::<Value>(v).ok().filter(|j| !j.is_object() && !j.is_array());
        context.insert(k.to_string(), value.unwrap_or_else(|| Value::String(v.to_string())));
    }
    let evaluator = match FlagEvaluator::new(set) {
        Ok(e) => e,
        Err(e) => return fail(cli, EXIT_BAD_INPUT, &e.to_string()),
    };
    let r = evaluator.evaluate(flag, &Context::from(&context));
    if cli.json {
        println!(
            "{}",
            json!({"type": "evaluation", "flag": flag, "variant": r.variant, "value": r.value,
                   "reason": r.reason, "error": r.error, "context": context})
        );
    } else {
        let value = r.value.map_or("(the application's default)".to_string(), |v| v.to_string());
        let error = r.error.map_or(String::new(), |e| format!(" ({e})"));
        println!("{flag}: variant {} = {value}, reason {}{error}", r.variant.unwrap_or("-"), r.reason);
    }
    EXIT_OK
}

fn preview(ctx: &Ctx<'_>, set: &FlagSet, flag: &str, n: u32) -> i32 {
    let cli = ctx.cli;
    if n == 0 {
        return fail(cli, EXIT_BAD_INPUT, "--sample must be at least 1");
    }
    if let Err(e) = known(set, flag) {
        return fail(cli, EXIT_BAD_INPUT, &e);
    }
    match shares(set, flag, n) {
        Ok(s) if cli.json => {
            let m: serde_json::Map<String, Value> = s.iter().map(|(v, p)| (v.clone(), json!(p))).collect();
            println!("{}", json!({"type": "preview", "flag": flag, "sample": n, "shares": m}));
            EXIT_OK
        }
        Ok(s) => {
            println!("{flag} over {n} synthetic users:");
            for (v, p) in &s {
                println!("  {v:<16} {p:5.1}%");
            }
            EXIT_OK
        }
        Err(e) => fail(cli, EXIT_BAD_INPUT, &e),
    }
}

fn history(ctx: &Ctx<'_>, set: &FlagSet, flag: &str, limit: usize) -> i32 {
    let cli = ctx.cli;
    let changes = match Store::open(&crate::config::paths::store_file(&ctx.data_dir))
        .and_then(|s| s.flag_changes(Some(flag), limit))
    {
        Ok(c) => c,
        Err(e) => return fail(cli, EXIT_BACKEND, &e.to_string()),
    };
    if changes.is_empty()
        && let Err(e) = known(set, flag)
    {
        return fail(cli, EXIT_BAD_INPUT, &e);
    }
    if cli.json {
        for c in &changes {
            println!("{}", json!({"type": "flag_change", "change": c}));
        }
        return EXIT_OK;
    }
    if changes.is_empty() {
        println!("{flag}: no changes recorded");
    }
    for c in &changes {
        println!("{}  {:<10} {}", c.at.format("%Y-%m-%d %H:%M:%S"), c.actor, c.action);
    }
    EXIT_OK
}

async fn change_flag(ctx: &Ctx<'_>, store: &FileFlagStore, flag: &str, enable: bool, percent: Option<u32>) -> i32 {
    let cli = ctx.cli;
    if cli.readonly {
        return fail(cli, EXIT_BAD_INPUT, "read-only: a flag change would change the estate");
    }
    if let Some(p) = percent
        && p > 100
    {
        return fail(cli, EXIT_BAD_INPUT, &format!("rollout {p}% must be between 0 and 100"));
    }
    // Enabled flags that depend on this one: named before turning it off, and after.
    let dependents = if enable || percent.is_some() {
        Vec::new()
    } else {
        store.load().map(|(s, _)| s.enabled_dependents(flag)).unwrap_or_default()
    };
    let also = if dependents.is_empty() {
        String::new()
    } else {
        format!(" ({} depend on it and stay on)", dependents.join(", "))
    };
    if !enable && let Err(why) = confirm(cli, &format!("turn flag {flag} off for every user{also}")) {
        return fail(cli, EXIT_BAD_INPUT, &why);
    }
    let command = match percent {
        Some(percent) => EngineCommand::SetFlagRollout { key: flag.to_string(), percent },
        None => EngineCommand::SetFlag { key: flag.to_string(), enabled: enable },
    };
    let _lock = match DataDirLock::acquire(&ctx.data_dir, command.name()) {
        Ok(lock) => lock,
        Err(e @ HostError::Busy { .. }) => return super::relay(ctx, command, &e).await,
        Err(e) => return fail(cli, e.exit_code(), &e.to_string()),
    };
    let db = match Store::open(&crate::config::paths::store_file(&ctx.data_dir)) {
        Ok(db) => db,
        Err(e) => return fail(cli, EXIT_BACKEND, &e.to_string()),
    };
    let (action, result) = match percent {
        Some(p) => {
            let action = format!("rolled out to {p}%");
            let r = change::apply(store, &db, &ctx.actor, flag, &action, |s| s.set_rollout(flag, p));
            (action, r)
        }
        None => {
            let action = if enable { "turned on" } else { "turned off" }.to_string();
            let r = change::apply(store, &db, &ctx.actor, flag, &action, |s| s.set_enabled(flag, enable));
            (action, r)
        }
    };
    match result {
        Ok(view) => {
            if cli.json {
                println!(
                    "{}",
                    json!({"type": "flag", "flag": view, "action": action, "by": ctx.actor, "dependents_on": dependents})
                );
            } else {
                println!("flag {flag} {action} by {}{also}", ctx.actor);
                if !view.enabled && percent.is_some() {
                    println!("note: {flag} is off, so nobody gets it until `shipdeck flags enable {flag}`");
                }
            }
            EXIT_OK
        }
        Err(ChangeError::Flag(e)) => fail(cli, flag_exit(&e), &e.to_string()),
        Err(e) => fail(cli, EXIT_BACKEND, &e.to_string()),
    }
}

/// `VARIANT=WEIGHT` pairs.
fn parse_weights(texts: &[String]) -> Result<Vec<(String, u32)>, String> {
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

/// One flag edit: saved and recorded here, or handed to the shipdeck that holds the data dir.
async fn edit(ctx: &Ctx<'_>, store: &FileFlagStore, flag: &str, e: FlagEdit) -> i32 {
    let cli = ctx.cli;
    if cli.readonly {
        return fail(cli, EXIT_BAD_INPUT, "read-only: a flag change would change the estate");
    }
    if let Err(err) = e.rule() {
        return fail(cli, EXIT_BAD_INPUT, &format!("--rule: {err}"));
    }
    let command = EngineCommand::EditFlag { key: flag.to_string(), edit: e.clone() };
    let _lock = match DataDirLock::acquire(&ctx.data_dir, command.name()) {
        Ok(lock) => lock,
        Err(busy @ HostError::Busy { .. }) => return super::relay(ctx, command, &busy).await,
        Err(err) => return fail(cli, err.exit_code(), &err.to_string()),
    };
    let db = match Store::open(&crate::config::paths::store_file(&ctx.data_dir)) {
        Ok(db) => db,
        Err(err) => return fail(cli, EXIT_BACKEND, &err.to_string()),
    };
    let action = e.action();
    match change::apply(store, &db, &ctx.actor, flag, &action, |s| e.apply(s, flag)) {
        Ok(view) => {
            if cli.json {
                println!("{}", json!({"type": "flag", "flag": view, "action": action, "by": ctx.actor}));
            } else {
                println!("flag {flag} {action} by {}", ctx.actor);
            }
            EXIT_OK
        }
        Err(ChangeError::Flag(err)) => fail(cli, flag_exit(&err), &err.to_string()),
        Err(err) => fail(cli, EXIT_BACKEND, &err.to_string()),
    }
}
