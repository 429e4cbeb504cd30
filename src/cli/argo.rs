//! `shipdeck argo …`: the Argo Rollouts of a Kubernetes environment's namespace, listed and acted
//! on as the `kubectl argo rollouts` plugin does (see `cluster::kube::argo`). These talk to the
//! cluster directly: no data dir, no engine, no release of shipdeck's own.

use clap::{Args, Subcommand};
use serde_json::json;

use super::{Ctx, EXIT_BACKEND, EXIT_BAD_INPUT, EXIT_OK, confirm, fail};
use crate::cluster::kube::argo::{ArgoAction, ArgoError, ArgoOutcome, ArgoRollout, ArgoRollouts, Revision};

#[derive(Debug, Subcommand)]
pub enum ArgoCmd {
    /// Every Rollout of the environment's namespace: strategy, status, step, set and actual
    /// weight, stable and canary revisions and images, analysis.
    List {
        /// A Kubernetes environment of the estate.
        #[arg(long)]
        env: String,
    },
    /// Move a paused rollout on: past its pause, or its current step (`kubectl argo rollouts promote`).
    Promote(RolloutArg),
    /// Skip every remaining step, pause and analysis and make the new version stable (asks).
    PromoteFull(RolloutArg),
    /// Send all traffic back to the stable ReplicaSet now (asks).
    Abort(RolloutArg),
    /// Start an aborted rollout again.
    Retry(RolloutArg),
    /// Put a previous revision's pod template back (default: the one before the newest; asks).
    Undo {
        #[command(flatten)]
        target: RolloutArg,
        /// The revision to go back to, as `rollout.argoproj.io/revision` numbers them.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        to_revision: Option<u64>,
    },
}

#[derive(Debug, Args, Clone)]
pub struct RolloutArg {
    /// The Rollout's name.
    pub rollout: String,
    /// A Kubernetes environment of the estate.
    #[arg(long)]
    pub env: String,
}

pub async fn run(ctx: &Ctx<'_>, cmd: &ArgoCmd) -> i32 {
    let cli = ctx.cli;
    let (env, action) = match cmd {
        ArgoCmd::List { env } => (env, None),
        ArgoCmd::Promote(t) | ArgoCmd::PromoteFull(t) | ArgoCmd::Abort(t) | ArgoCmd::Retry(t) => (&t.env, Some(t)),
        ArgoCmd::Undo { target, .. } => (&target.env, Some(target)),
    };
    let Some(environment) = ctx.estate.env(env) else {
        let known = ctx.estate.env_names().join(", ");
        return fail(cli, EXIT_BAD_INPUT, &format!("no environment `{env}` in the estate (environments: {known})"));
    };
    if environment.cluster.kubernetes().is_none() {
        return fail(
            cli,
            EXIT_BAD_INPUT,
            &format!(
                "environment {env} runs on the embedded local cluster, not Kubernetes: Argo Rollouts live in a \
                 Kubernetes namespace (cluster = {{ kubernetes = {{ context = \"…\", namespace = \"…\" }} }})"
            ),
        );
    }
    if let Some(t) = action {
        if cli.readonly {
            return fail(
                cli,
                EXIT_BAD_INPUT,
                &format!("read-only: `argo {}` would change rollout {}", name(cmd), t.rollout),
            );
        }
        if let Some(what) = action_of(cmd).and_then(|(a, to)| a.warning(&t.rollout, env, to))
            && let Err(why) = confirm(cli, &what)
        {
            return fail(cli, EXIT_BAD_INPUT, &why);
        }
    }
    let connection = match crate::cluster::kube::client_for(environment, None).await {
        Ok(c) => c,
        Err(message) => return fail(cli, EXIT_BACKEND, &message),
    };
    let argo = ArgoRollouts::new(connection.client, &connection.namespace, env);
    let (Some(t), Some((what, to_revision))) = (action, action_of(cmd)) else {
        return list(ctx, &argo, env).await;
    };
    let result = argo.act(what, &t.rollout, to_revision).await;
    match result {
        Ok(outcome) => {
            report(ctx, env, argo.namespace(), &outcome);
            EXIT_OK
        }
        Err(e) => failed(ctx, &e),
    }
}

fn name(cmd: &ArgoCmd) -> &'static str {
    action_of(cmd).map_or("list", |(action, _)| action.name())
}

/// The action a command asks for (none for list), with undo's revision.
fn action_of(cmd: &ArgoCmd) -> Option<(ArgoAction, Option<u64>)> {
    Some(match cmd {
        ArgoCmd::List { .. } => return None,
        ArgoCmd::Promote(_) => (ArgoAction::Promote, None),
        ArgoCmd::PromoteFull(_) => (ArgoAction::PromoteFull, None),
        ArgoCmd::Abort(_) => (ArgoAction::Abort, None),
        ArgoCmd::Retry(_) => (ArgoAction::Retry, None),
        ArgoCmd::Undo { to_revision, .. } => (ArgoAction::Undo, *to_revision),
    })
}

fn failed(ctx: &Ctx<'_>, e: &ArgoError) -> i32 {
    let code = match e.exit_code() {
        2 => EXIT_BAD_INPUT,
        _ => EXIT_BACKEND,
    };
    fail(ctx.cli, code, &e.to_string())
}

fn report(ctx: &Ctx<'_>, env: &str, namespace: &str, o: &ArgoOutcome) {
    if ctx.cli.json {
        println!(
            "{}",
            json!({"type": "argo_action", "env": env, "namespace": namespace, "rollout": o.rollout,
                   "action": o.action, "changed": o.changed, "message": o.message})
        );
    } else {
        println!("{}", o.message);
    }
}

async fn list(ctx: &Ctx<'_>, argo: &ArgoRollouts, env: &str) -> i32 {
    let all = match argo.list().await {
        Ok(all) => all,
        Err(e) => return failed(ctx, &e),
    };
    let namespace = argo.namespace();
    if ctx.cli.json {
        for r in &all {
            let mut line = json!({"type": "rollout", "env": env, "namespace": namespace});
            if let (Some(o), Ok(serde_json::Value::Object(fields))) = (line.as_object_mut(), serde_json::to_value(r)) {
                o.extend(fields);
            }
            println!("{line}");
        }
        println!("{}", json!({"type": "summary", "env": env, "namespace": namespace, "count": all.len()}));
    } else if all.is_empty() {
        println!("no Argo Rollouts in namespace {namespace} ({env})");
    } else {
        print!("{}", table(&all));
    }
    EXIT_OK
}

fn revision_text(r: Option<&Revision>) -> String {
    let Some(r) = r else { return "-".into() };
    let number = r.revision.map_or_else(|| r.pod_template_hash.clone(), |n| format!("rev {n}"));
    if r.images.is_empty() { number } else { format!("{number} {}", r.images.join(",")) }
}

/// The rollouts as a table, like `kubectl argo rollouts list rollouts` with the revisions added.
pub fn table(all: &[ArgoRollout]) -> String {
    let header = ["NAME", "STRATEGY", "STATUS", "STEP", "SET", "ACTUAL", "STABLE", "CANARY", "ANALYSIS", "MESSAGE"];
    let rows: Vec<[String; 10]> = all
        .iter()
        .map(|r| {
            let dash = || "-".to_string();
            let analysis: Vec<String> =
                r.analysis.iter().map(|a| format!("{} {} {}", a.kind, a.name, a.phase)).collect();
            [
                r.name.clone(),
                r.strategy.clone().unwrap_or_else(dash),
                if r.aborted { format!("{} (aborted)", r.phase) } else { r.phase.clone() },
                r.step.map_or_else(dash, |s| format!("{}/{}", s.index, s.total)),
                r.set_weight.map_or_else(dash, |w| w.to_string()),
                r.actual_weight.map_or_else(dash, |w| w.to_string()),
                revision_text(r.stable.as_ref()),
                revision_text(r.canary.as_ref()),
                if analysis.is_empty() { dash() } else { analysis.join("; ") },
                if r.message.is_empty() { dash() } else { r.message.clone() },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
