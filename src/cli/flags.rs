//! `shipdeck flags …`: the flagd-format flags in the data dir (`flags.json`), read, evaluated
//! and changed. A change goes to the shipdeck that holds the data dir when one does (so its
//! console and pods see it at once); otherwise it is saved here, with the same checks and the
//! same record.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Ctx, EXIT_BACKEND, EXIT_BAD_INPUT, EXIT_OK, confirm, fail};
use crate::engine::Command as EngineCommand;
use crate::flags::change::{self, ChangeError};
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
    /// A flag's changes, newest first: who, when, what, before and after.
    History {
        flag: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

pub(crate) async fn run(ctx: &Ctx<'_>, cmd: &FlagsCmd) -> i32 {
    let cli = ctx.cli;
    let path = ctx.data_dir.join("flags.json");
    if let Err(e) = std::fs::create_dir_all(&ctx.data_dir) {
        return fail(cli, EXIT_BACKEND, &format!("cannot create the data dir {}: {e}", ctx.data_dir.display()));
    }
    let store = match FileFlagStore::open(&path, Some(DEMO_FLAGS)) {
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
    let host = match crate::host::Host::start(ctx.estate.clone(), &ctx.data_dir, false, command.name()).await {
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
                    Ok(Event::FlagRollout { key, finished, ok, message }) if key == flag => {
                        say(
                            cli,
                            json!({"type": "flag_rollout", "finished": finished, "ok": ok, "message": message}),
                            &message,
                        );
                        if finished {
                            break if ok { EXIT_OK } else { super::EXIT_RELEASE_FAILED };
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break EXIT_BACKEND,
                }
            }
        }
    };
    host.stop().await;
    code
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
            println!("{}", json!({"type": "flag", "flag": v}));
        }
        return EXIT_OK;
    }
    println!("{:<24} {:<8} {:<10} {:>8}  VARIANTS", "FLAG", "STATE", "DEFAULT", "ROLLOUT");
    for v in &views {
        let rollout = v.rollout.map_or("-".to_string(), |r| format!("{r}%"));
        let state = if v.enabled { "on" } else { "off" };
        println!("{:<24} {:<8} {:<10} {:>8}  {}", v.key, state, v.default_variant, rollout, v.variants.join(", "));
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
    if cli.json {
        let who: serde_json::Map<String, Value> = who.iter().map(|(v, s)| (v.clone(), json!(s))).collect();
        println!(
            "{}",
            json!({"type": "flag", "key": flag, "definition": definition, "who_gets_it": who, "changes": changes})
        );
        return EXIT_OK;
    }
    println!("{flag}");
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
    if !enable && let Err(why) = confirm(cli, &format!("turn flag {flag} off for every user")) {
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
                println!("{}", json!({"type": "flag", "flag": view, "action": action, "by": ctx.actor}));
            } else {
                println!("flag {flag} {action} by {}", ctx.actor);
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
