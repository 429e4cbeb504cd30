//! `shipdeck flags …`: the flagd-format flags in the data dir (`flags.json`), read, evaluated
//! and changed. A change goes to the shipdeck that holds the data dir when one does (so its
//! console and pods see it at once); otherwise it is saved here, with the same checks and the
//! same record.

use serde_json::{Value, json};

mod args;
mod served;

pub use args::FlagsCmd;

use super::{Ctx, EXIT_BACKEND, EXIT_BAD_INPUT, EXIT_OK, confirm, fail};
use crate::engine::Command as EngineCommand;
use crate::flags::change::{self, ChangeError};
use crate::flags::edit::FlagEdit;
use crate::flags::eval::{Context, FlagEvaluator};
use crate::flags::preview;
use crate::flags::{DEMO_FLAGS, FileFlagStore, FlagError, FlagSet, FlagStore};
use crate::host::{DataDirLock, HostError};
use crate::store::Store;

pub(crate) async fn run(ctx: &Ctx<'_>, cmd: &FlagsCmd) -> i32 {
    let cli = ctx.cli;
    if let Err(e) = std::fs::create_dir_all(&ctx.data_dir) {
        return fail(cli, EXIT_BACKEND, &format!("cannot create the data dir {}: {e}", ctx.data_dir.display()));
    }
    // A store named with --flags must be there (a file that exists, a FeatureFlag that can be
    // read); the data dir's own file is made with the demo flags.
    let opened = match ctx.flag_source() {
        Err(why) => return fail(cli, EXIT_BAD_INPUT, &why),
        Ok(Some(source)) => source.open().await,
        Ok(None) => FileFlagStore::open(&ctx.data_dir.join("flags.json"), Some(DEMO_FLAGS))
            .map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn FlagStore>),
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => return fail(cli, flag_exit(&e), &e.to_string()),
    };
    let store = store.as_ref();
    let set = match store.load().await {
        Ok((set, _)) => set,
        Err(e) => return fail(cli, flag_exit(&e), &e.to_string()),
    };
    match cmd {
        FlagsCmd::List => list(ctx, &set),
        FlagsCmd::Show { flag } => show(ctx, &set, flag).await,
        FlagsCmd::Eval { flag, context } => eval(ctx, &set, flag, context),
        FlagsCmd::Preview { flag, sample } => preview(ctx, &set, flag, *sample),
        FlagsCmd::History { flag, limit } => history(ctx, &set, flag, *limit),
        FlagsCmd::Enable { flag } => change_flag(ctx, store, flag, true, None).await,
        FlagsCmd::Disable { flag } => change_flag(ctx, store, flag, false, None).await,
        FlagsCmd::SetRollout { flag, percent } => change_flag(ctx, store, flag, true, Some(*percent)).await,
        FlagsCmd::Target { flag, .. }
        | FlagsCmd::Weights { flag, .. }
        | FlagsCmd::Tag { flag, .. }
        | FlagsCmd::Depend { flag, .. } => match cmd.edit() {
            Some(Ok(e)) => edit(ctx, store, flag, e).await,
            Some(Err(why)) => fail(cli, EXIT_BAD_INPUT, &why),
            None => fail(cli, EXIT_BAD_INPUT, "not an edit"),
        },
        FlagsCmd::Experiment { flag, .. } => match cmd.engine_command() {
            Ok(Some(command)) => experiment(ctx, flag, command).await,
            Ok(None) => fail(cli, EXIT_BAD_INPUT, "not an experiment"),
            Err(why) => fail(cli, EXIT_BAD_INPUT, &why),
        },
        FlagsCmd::Experiments { flag } => experiments(ctx, flag),
        FlagsCmd::Rollout { flag, .. } => match cmd.engine_command() {
            Ok(Some(command)) => progressive(ctx, flag, command).await,
            Ok(None) => fail(cli, EXIT_BAD_INPUT, "not a rollout"),
            Err(why) => fail(cli, EXIT_BAD_INPUT, &why),
        },
    }
}

/// Starts a progressive rollout on a host of this data dir and prints each stage until it ends.
async fn progressive(ctx: &Ctx<'_>, flag: &str, command: EngineCommand) -> i32 {
    use crate::engine::Event;
    let cli = ctx.cli;
    if cli.readonly {
        return fail(cli, EXIT_BAD_INPUT, "read-only: a progressive rollout would change the flags");
    }
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
        e if e.is_backend() => EXIT_BACKEND,
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

async fn show(ctx: &Ctx<'_>, set: &FlagSet, flag: &str) -> i32 {
    let cli = ctx.cli;
    if let Err(e) = known(set, flag) {
        return fail(cli, EXIT_BAD_INPUT, &e);
    }
    let who = match preview::shares(set, flag, 10_000) {
        Ok(s) => s,
        Err(e) => return fail(cli, EXIT_BAD_INPUT, &e),
    };
    let changes = Store::open(&crate::config::paths::store_file(&ctx.data_dir))
        .and_then(|s| s.flag_changes(Some(flag), 5))
        .unwrap_or_default();
    let definition = set.flag(flag).cloned().unwrap_or(Value::Null);
    let (tags, deps) = (set.tags(flag), set.depends_on(flag));
    let rules: Vec<String> = set.rules(flag).iter().map(ToString::to_string).collect();
    let served = served::served(&ctx.data_dir, flag).await;
    let total: u64 = served.iter().flat_map(|m| m.values()).sum();
    let on = served.as_ref().and_then(|m| m.get("on")).copied().unwrap_or(0);
    let enablement = (total > 0).then(|| on as f64 / total as f64);
    if cli.json {
        let who: serde_json::Map<String, Value> = who.iter().map(|(v, s)| (v.clone(), json!(s))).collect();
        println!(
            "{}",
            json!({"type": "flag", "key": flag, "definition": definition, "who_gets_it": who, "changes": changes,
                   "tags": tags, "depends_on": deps, "dependents_on": set.enabled_dependents(flag), "rules": rules,
                   "served": served, "enablement_ratio": enablement})
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
    match &served {
        Some(m) if total > 0 => {
            let parts: Vec<String> =
                m.iter().map(|(v, n)| format!("{v} {n} ({:.1}%)", *n as f64 * 100.0 / total as f64)).collect();
            println!("served by the local pods since they started: {}", parts.join(" · "));
            println!("enablement ratio: {:.1}% of evaluations served `on`", enablement.unwrap_or(0.0) * 100.0);
        }
        Some(_) => println!("served by the local pods: no evaluations yet"),
        None => println!("served: no pods answered (they run while `shipdeck` runs on this data dir)"),
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
    let context = match preview::context_from_pairs(pairs) {
        Ok(c) => c,
        Err(e) => return fail(cli, EXIT_BAD_INPUT, &format!("--{e}")),
    };
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
    match preview::shares(set, flag, n) {
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

async fn change_flag(ctx: &Ctx<'_>, store: &dyn FlagStore, flag: &str, enable: bool, percent: Option<u32>) -> i32 {
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
        store.load().await.map(|(s, _)| s.enabled_dependents(flag)).unwrap_or_default()
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
    let (_lock, db) = match hold_or_relay(ctx, command).await {
        Ok(held) => held,
        Err(code) => return code,
    };
    let (action, result) = match percent {
        Some(p) => {
            let action = format!("rolled out to {p}%");
            let r = change::apply(store, &db, &ctx.actor, flag, &action, |s| s.set_rollout(flag, p)).await;
            (action, r)
        }
        None => {
            let action = if enable { "turned on" } else { "turned off" }.to_string();
            let r = change::apply(store, &db, &ctx.actor, flag, &action, |s| s.set_enabled(flag, enable)).await;
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

/// The data dir's lock and store, for a change made here; or, when another shipdeck holds the
/// data dir, the exit code of handing `command` to it (or of failing to).
async fn hold_or_relay(ctx: &Ctx<'_>, command: EngineCommand) -> Result<(DataDirLock, Store), i32> {
    let lock = match DataDirLock::acquire(&ctx.data_dir, command.name()) {
        Ok(lock) => lock,
        Err(busy @ HostError::Busy { .. }) => return Err(super::relay(ctx, command, &busy).await),
        Err(err) => return Err(fail(ctx.cli, err.exit_code(), &err.to_string())),
    };
    match Store::open(&crate::config::paths::store_file(&ctx.data_dir)) {
        Ok(db) => Ok((lock, db)),
        Err(err) => Err(fail(ctx.cli, EXIT_BACKEND, &err.to_string())),
    }
}

/// One flag edit: saved and recorded here, or handed to the shipdeck that holds the data dir.
async fn edit(ctx: &Ctx<'_>, store: &dyn FlagStore, flag: &str, e: FlagEdit) -> i32 {
    let cli = ctx.cli;
    if cli.readonly {
        return fail(cli, EXIT_BAD_INPUT, "read-only: a flag change would change the estate");
    }
    if let Err(err) = e.rule() {
        return fail(cli, EXIT_BAD_INPUT, &format!("--rule: {err}"));
    }
    let command = EngineCommand::EditFlag { key: flag.to_string(), edit: e.clone() };
    let (_lock, db) = match hold_or_relay(ctx, command).await {
        Ok(held) => held,
        Err(code) => return code,
    };
    let action = e.action();
    match change::apply(store, &db, &ctx.actor, flag, &action, |s| e.apply(s, flag)).await {
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
