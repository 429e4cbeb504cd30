//! `shipdeck notes APP VERSION`: the release notes of a version, from the app's git repository.

use serde_json::json;

use super::{Ctx, EXIT_BACKEND, EXIT_BAD_INPUT, EXIT_OK, fail};
use crate::config::paths;
use crate::model::ReleaseNotes;
use crate::notify::notes;
use crate::store::{ReleaseFilter, Store};

/// Where the notes start: `--from`, else (with `--env`) the version that ran before the
/// version's release there (or runs there now), else the version before it in the estate.
pub(super) async fn run(ctx: &Ctx<'_>, app: &str, version: &str, from: Option<&str>, env: Option<&str>) -> i32 {
    let cli = ctx.cli;
    let estate = &ctx.estate;
    if !estate.apps.iter().any(|a| a == app) {
        return fail(cli, EXIT_BAD_INPUT, &format!("unknown app `{app}` (apps: {})", estate.apps.join(", ")));
    }
    let env_name = match env {
        Some(e) if estate.env(e).is_none() => {
            let msg = format!("unknown environment `{e}` (environments: {})", estate.env_names().join(", "));
            return fail(cli, EXIT_BAD_INPUT, &msg);
        }
        Some(e) => e.to_string(),
        None => estate.env_names().first().map(|e| e.to_string()).unwrap_or_default(),
    };
    let Some(settings) = estate.settings(&env_name, app) else {
        return fail(cli, EXIT_BAD_INPUT, &format!("{app} has no settings in {env_name}"));
    };
    let known = settings.known_versions().contains(&version);
    let start = match (from, env) {
        (Some(f), _) => Some(f.to_string()),
        (None, Some(env)) => match from_history(ctx, app, version, env) {
            Ok(Found::Stored(n)) => return print(ctx, &n),
            Ok(Found::From(f)) => f,
            Err(code) => return code,
        },
        (None, None) if !known => {
            let msg = format!(
                "{app} {version} is not one of the estate's versions ({}); pass --from VERSION to say where the notes start",
                settings.known_versions().join(", ")
            );
            return fail(cli, EXIT_BAD_INPUT, &msg);
        }
        (None, None) => notes::previous_in_estate(settings, version),
    };
    match notes::try_generate(settings, start.as_deref(), version).await {
        Ok(n) => print(ctx, &n),
        Err(e) => fail(cli, if e.is_bad_input() { EXIT_BAD_INPUT } else { EXIT_BACKEND }, &e.to_string()),
    }
}

enum Found {
    /// The notes stored with the version's latest release in the environment.
    Stored(Box<ReleaseNotes>),
    /// Where the notes start.
    From(Option<String>),
}

fn from_history(ctx: &Ctx<'_>, app: &str, version: &str, env: &str) -> Result<Found, i32> {
    let store =
        Store::open(&paths::store_file(&ctx.data_dir)).map_err(|e| fail(ctx.cli, EXIT_BACKEND, &e.to_string()))?;
    let filter = ReleaseFilter { env: Some(env.to_string()), app: Some(app.to_string()), limit: Some(200) };
    let releases = store.releases(&filter).map_err(|e| fail(ctx.cli, EXIT_BACKEND, &e.to_string()))?;
    if let Some(r) = releases.iter().find(|r| r.version == version) {
        if let Ok(Some(n)) = store.release_notes(&r.id)
            && n.problem.is_none()
        {
            return Ok(Found::Stored(Box::new(n)));
        }
        return Ok(Found::From(r.previous_version.clone()));
    }
    let target = crate::cluster::Target::new(env, app);
    let (spec, _) = super::report::recorded(ctx, &store, &target);
    let now = spec.routing.weights.iter().filter(|(_, w)| **w > 0).max_by_key(|(_, w)| **w).map(|(v, _)| v.clone());
    Ok(Found::From(now.filter(|v| v != version)))
}

fn print(ctx: &Ctx<'_>, n: &ReleaseNotes) -> i32 {
    if ctx.cli.json {
        println!("{}", json!({"type": "notes", "notes": n}));
    } else {
        print!("{}", n.to_markdown());
        if let Some(range) = &n.range {
            println!("\n({range})");
        }
    }
    EXIT_OK
}
