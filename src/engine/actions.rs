//! Commands: checked against the estate and the store, turned into releases or into actions
//! for the task that drives one.

use chrono::Utc;

use super::{Action, Command, Engine, EngineError, Event, Inner, Outcome, plan};
use crate::cluster::{ProbeRequest, Target};
use crate::model::{AppSettings, Approval, Release, ReleaseKind, Status, Step, StrategyKind, VerifyPhase};
use crate::store::ReleaseFilter;

use super::kube_actions::{argo_action, driven_elsewhere, revision_version, switch_kubernetes};

pub(super) async fn execute(engine: &Engine, actor: &str, command: Command) -> Result<Outcome, EngineError> {
    let inner = &engine.inner;
    match command {
        Command::Deploy { app, env, version, strategy, flags } => {
            let settings = lookup(inner, &env, &app)?.clone();
            let strategy = strategy.unwrap_or(settings.strategy);
            create(inner, actor, &settings, &env, &version, strategy, ReleaseKind::Deploy, None, flags, None).await
        }
        Command::Promote { app, from, to } => promote(inner, actor, &app, &from, &to).await,
        Command::Approve { release_id } => approve(inner, actor, &release_id),
        Command::Pause { app, env } => pause(inner, actor, &env, &app),
        Command::Resume { app, env, full } => resume(inner, actor, &env, &app, full),
        Command::Abort { app, env } => abort(inner, actor, &env, &app, false).await,
        Command::Retry { app, env } => retry(inner, actor, &env, &app),
        Command::Rollback { app, env, to } => rollback(inner, actor, &env, &app, to, None).await,
        Command::RolloutUndo { app, env, revision } => rollback(inner, actor, &env, &app, None, Some(revision)).await,
        Command::Restart { app, env, version } => restart(inner, actor, &env, &app, version).await,
        Command::SetFlag { key, enabled } => {
            let word = if enabled { "on" } else { "off" };
            change_flag(inner, actor, &key, &format!("turned {word}"), |s| s.set_enabled(&key, enabled)).await
        }
        Command::SetFlagRollout { key, percent } => {
            change_flag(inner, actor, &key, &format!("rolled out to {percent}%"), |s| s.set_rollout(&key, percent))
                .await
        }
        Command::EditFlag { key, edit } => {
            edit.rule().map_err(|e| EngineError::BadInput(e.to_string()))?;
            change_flag(inner, actor, &key, &edit.action(), |s| edit.apply(s, &key)).await
        }
        Command::FlagRollout { key, app, env, stages, template } => {
            start_flag_rollout(engine, actor, key, &app, &env, stages, template).await
        }
        Command::SwitchKubernetes { env, context, namespace } => {
            switch_kubernetes(inner, actor, &env, context, namespace).await
        }
        Command::Argo { env, rollout, action, to_revision } => {
            argo_action(inner, actor, &env, &rollout, action, to_revision).await
        }
        c @ (Command::CreateEmergency { .. } | Command::ApproveEmergency { .. } | Command::ExecuteEmergency { .. }) => {
            let o = super::emergency::execute(inner, actor, c).await?;
            Ok(Outcome { message: o.message, release: None, running: o.running })
        }
        Command::FlagExperiment { key, app, env, control, treatment, duration_secs, hypothesis } => {
            let settings = lookup(inner, &env, &app)?;
            let store = inner.flags.get().ok_or_else(|| EngineError::Refused("no flag store is configured".into()))?;
            if inner.flag_metrics().is_none() {
                return Err(EngineError::Refused("no flag metrics: experiments need the local cluster".into()));
            }
            if duration_secs == 0 || control == treatment {
                return Err(EngineError::BadInput(
                    "an experiment needs a duration above 0s and two different variants".into(),
                ));
            }
            // Would the split apply? Refuse now rather than fail in the background.
            let mut set = store.load().await.map_err(flag_load_error)?.0;
            set.set_enabled(&key, true)
                .and_then(|()| set.set_weights(&key, &[(control.clone(), 50), (treatment.clone(), 50)]))
                .map_err(|e| EngineError::BadInput(e.to_string()))?;
            let experiment = super::experiment::Experiment {
                key: key.clone(),
                target: Target::new(&env, &app),
                control: control.clone(),
                treatment: treatment.clone(),
                duration: std::time::Duration::from_secs(duration_secs),
                hypothesis,
                actor: actor.to_string(),
                min_requests: settings.canary.min_requests,
            };
            tokio::spawn(super::experiment::run(inner.clone(), experiment));
            Ok(Outcome {
                message: format!(
                    "experiment on {key} started: {control} vs {treatment}, 50/50 for {} on {app} in {env}",
                    crate::model::HumanDuration(std::time::Duration::from_secs(duration_secs))
                ),
                release: None,
                running: true,
            })
        }
    }
}

async fn start_flag_rollout(
    engine: &Engine,
    actor: &str,
    key: String,
    app: &str,
    env: &str,
    stages: Option<Vec<super::flag_rollout::Stage>>,
    template: Option<String>,
) -> Result<Outcome, EngineError> {
    use super::flag_rollout::{self, Rollout};
    let inner = &engine.inner;
    let settings = lookup(inner, env, app)?;
    let store = inner.flags.get().ok_or_else(|| EngineError::Refused("no flag store is configured".into()))?;
    if inner.flag_metrics().is_none() {
        return Err(EngineError::Refused("no flag metrics: progressive rollouts need the local cluster".into()));
    }
    let set = store.load().await.map_err(flag_load_error)?.0;
    if set.flag(&key).is_none() {
        return Err(EngineError::BadInput(format!("no flag named `{key}` (flags: {})", set.keys().join(", "))));
    }
    // Would the first stage apply? Refuse now rather than fail in the background.
    set.clone().set_rollout(&key, 1).map_err(|e| EngineError::BadInput(e.to_string()))?;
    let template = match template {
        Some(name) => settings.analysis_templates.get(&name).cloned().ok_or_else(|| {
            let known: Vec<&String> = settings.analysis_templates.keys().collect();
            EngineError::BadInput(format!("{app} has no analysis template `{name}` (templates: {known:?})"))
        })?,
        None => {
            crate::model::AnalysisTemplate { min_requests: Some(settings.canary.min_requests), ..Default::default() }
        }
    };
    let stages = stages.unwrap_or_else(flag_rollout::default_stages);
    let plan: Vec<String> = stages
        .iter()
        .map(|s| match s.hold {
            Some(h) => format!("{}% for {}", s.percent, crate::model::HumanDuration(h)),
            None => format!("{}%", s.percent),
        })
        .collect();
    let rollout =
        Rollout { key: key.clone(), target: Target::new(env, app), stages, template, actor: actor.to_string() };
    inner.audit(actor, "flag", &key, &format!("progressive rollout started: {}", plan.join(", ")));
    tokio::spawn(flag_rollout::run(inner.clone(), rollout));
    Ok(Outcome {
        message: format!("progressive rollout of {key} started, judged on {app} in {env}: {}", plan.join(" → ")),
        release: None,
        running: true,
    })
}

async fn change_flag(
    inner: &Inner,
    actor: &str,
    key: &str,
    what: &str,
    change: impl FnOnce(&mut crate::flags::FlagSet) -> Result<(), crate::flags::FlagError> + Send,
) -> Result<Outcome, EngineError> {
    use crate::flags::change::ChangeError;
    let store = inner.flags.get().ok_or_else(|| EngineError::Refused("no flag store is configured".into()))?;
    let applied = crate::flags::change::apply(store.as_ref(), &inner.store, actor, key, what, change).await;
    let flag = applied.map_err(|e| match e {
        ChangeError::Flag(ref f) if f.is_backend() => EngineError::Backend(e.to_string()),
        ChangeError::Record { .. } => EngineError::Backend(e.to_string()),
        other => EngineError::BadInput(other.to_string()),
    })?;
    let message = format!("flag {key} {what} by {actor}");
    inner.emit(Event::Flag { flag, by: actor.to_string() });
    Ok(Outcome { message, release: None, running: false })
}

/// Reading the flags failed: the store's backend (exit 3), else what it holds (exit 2).
fn flag_load_error(e: crate::flags::FlagError) -> EngineError {
    match e {
        crate::flags::FlagError::Cluster { .. } => EngineError::Backend(e.to_string()),
        other => EngineError::BadInput(other.to_string()),
    }
}

fn lookup<'a>(inner: &'a Inner, env: &str, app: &str) -> Result<&'a AppSettings, EngineError> {
    let estate = &inner.estate;
    if estate.env(env).is_none() {
        return Err(EngineError::BadInput(format!(
            "unknown environment `{env}` (environments in {}: {})",
            estate.source,
            estate.env_names().join(", ")
        )));
    }
    estate.settings(env, app).ok_or_else(|| {
        EngineError::BadInput(format!("unknown app `{app}` (apps in {}: {})", estate.source, estate.apps.join(", ")))
    })
}

fn check_version(settings: &AppSettings, version: &str) -> Result<(), EngineError> {
    if settings.profile(version).is_some() {
        return Ok(());
    }
    Err(EngineError::BadInput(format!(
        "image {}:{version} cannot be pulled: version `{version}` is not in the estate (known versions of {}: {})",
        settings.name,
        settings.name,
        settings.known_versions().join(", ")
    )))
}

fn active(inner: &Inner, env: &str, app: &str) -> Result<Release, EngineError> {
    lookup(inner, env, app)?;
    inner.store.active_release(env, app)?.ok_or_else(|| {
        EngineError::Refused(format!(
            "no release of {app} in {env} is in progress (see `shipdeck history --app {app} --env {env}`)"
        ))
    })
}

/// The pre-deployment checks: the version exists, nothing else is in progress, the current
/// version is healthy. Returns the current version.
async fn prechecks(
    inner: &Inner,
    settings: &AppSettings,
    env: &str,
    version: &str,
    kind: ReleaseKind,
) -> Result<Option<String>, EngineError> {
    let app = &settings.name;
    check_version(settings, version)?;
    if let Some(r) = inner.store.active_release(env, app)? {
        return Err(EngineError::Refused(format!(
            "pre-deployment check failed: {app} in {env} already has release {} ({}); wait for it, or `shipdeck abort {app} --env {env}`",
            r.id, r.status
        )));
    }
    let target = Target::new(env, app);
    let current = inner.current_version(&target).await?;
    if current.as_deref() == Some(version) {
        return Err(EngineError::Refused(format!(
            "pre-deployment check failed: {app} {version} already runs in {env}"
        )));
    }
    if let (Some(cur), false) = (&current, kind == ReleaseKind::Rollback) {
        let ready = inner.cluster.state(&target).await?.replicas(cur).ready;
        let health = ProbeRequest { method: "GET".into(), path: "/health".into(), body: None, timeout_ms: 3000 };
        let healthy = ready > 0 && matches!(inner.cluster.probe(&target, cur, &health).await, Ok(r) if r.status == 200);
        if !healthy {
            return Err(EngineError::Refused(format!(
                "pre-deployment check failed: the current version {cur} of {app} in {env} is not healthy ({ready} pods ready); \
                 fix it or roll back first (`shipdeck rollback {app} --env {env}`)"
            )));
        }
    }
    Ok(current)
}

#[allow(clippy::too_many_arguments)]
async fn create(
    inner: &std::sync::Arc<Inner>,
    actor: &str,
    settings: &AppSettings,
    env: &str,
    version: &str,
    strategy: StrategyKind,
    kind: ReleaseKind,
    promoted_from: Option<String>,
    flags: Vec<crate::model::FlagSetting>,
    undo_to: Option<i64>,
) -> Result<Outcome, EngineError> {
    let previous = prechecks(inner, settings, env, version, kind).await?;
    let target = Target::new(env, &settings.name);
    let mut plan = match kind {
        ReleaseKind::Rollback => match super::native::rollback_plan(inner, &target, previous.as_deref(), undo_to).await
        {
            Some(p) => p,
            None => {
                let mut p = plan::rolling(settings.replicas, settings.replicas, 0);
                p.push(Step::Verify { phase: VerifyPhase::PostDeploy });
                p
            }
        },
        _ => match super::native::plan(inner, &target, strategy, settings, previous.as_deref()).await {
            Some(p) => p,
            None => plan::build(strategy, settings, previous.as_deref()),
        },
    };
    plan.extend(flag_steps(inner, settings, env, version, kind, previous.as_deref(), flags).await?);
    let now = Utc::now();
    let mut id = Release::make_id(env, &settings.name, version, now);
    let mut n = 2;
    while inner.store.release(&id)?.is_some() {
        id = format!("{}-{n}", Release::make_id(env, &settings.name, version, now));
        n += 1;
    }
    let mut release = Release {
        id,
        app: settings.name.clone(),
        env: env.to_string(),
        version: version.to_string(),
        previous_version: previous,
        strategy: if kind == ReleaseKind::Rollback { StrategyKind::Rolling } else { strategy },
        kind,
        promoted_from,
        status: Status::Planned,
        plan,
        cursor: 0,
        requested_by: actor.to_string(),
        created_at: now,
        updated_at: now,
        reason: None,
        interrupted: false,
        weight: 0,
    };
    let needs_approval = kind != ReleaseKind::Rollback && inner.estate.env(env).is_some_and(|e| e.approval_required);
    let cause = format!("{} requested by {actor}", kind_word(kind));
    if needs_approval {
        release.reason = Some(approval_hint(inner, &release));
    }
    inner.store.insert_release(&release, &cause)?;
    inner.audit(actor, kind_word(kind), &target_of(&release), &format!("{} {} ({strategy})", release.id, version));
    inner.emit(Event::Release { release: Box::new(release.clone()), cause });
    if needs_approval {
        let message = release.reason.clone().unwrap_or_default();
        return Ok(Outcome { message, release: Some(release), running: false });
    }
    let message = format!("release {} started", release.id);
    inner.spawn(release.clone(), None);
    Ok(Outcome { message, release: Some(release), running: true })
}

/// The flag step a release ends with: a deploy or promotion applies the flags its version
/// declares and the command adds (checked against the flag store now, so a typo is refused
/// before anything moves); a rollback puts back the flags of the release it replaces.
async fn flag_steps(
    inner: &Inner,
    settings: &AppSettings,
    env: &str,
    version: &str,
    kind: ReleaseKind,
    previous: Option<&str>,
    extra: Vec<crate::model::FlagSetting>,
) -> Result<Option<Step>, EngineError> {
    if kind == ReleaseKind::Rollback {
        let Some(current) = previous else { return Ok(None) };
        let filter = ReleaseFilter { env: Some(env.to_string()), app: Some(settings.name.clone()), limit: Some(50) };
        let replaced =
            inner.store.releases(&filter)?.into_iter().find(|r| r.version == current && r.status == Status::Verified);
        let Some(replaced) = replaced else { return Ok(None) };
        if inner.store.flag_changes_of_release(&replaced.id)?.is_empty() {
            return Ok(None);
        }
        return Ok(Some(Step::RevertFlags { release_id: replaced.id }));
    }
    let mut changes = settings.profile(version).map(|p| p.flags.clone()).unwrap_or_default();
    for c in extra {
        changes.retain(|x| x.flag != c.flag);
        changes.push(c);
    }
    if changes.is_empty() {
        return Ok(None);
    }
    let store = inner.flags.get().ok_or_else(|| {
        EngineError::Refused("the release carries flag changes but no flag store is configured".into())
    })?;
    let mut set = store.load().await.map_err(flag_load_error)?.0;
    for c in &changes {
        crate::flags::change::set(&mut set, c).map_err(|e| EngineError::BadInput(format!("flag change {c}: {e}")))?;
    }
    Ok(Some(Step::ApplyFlags { changes }))
}

fn kind_word(kind: ReleaseKind) -> &'static str {
    match kind {
        ReleaseKind::Deploy => "deploy",
        ReleaseKind::Promotion => "promote",
        ReleaseKind::Rollback => "rollback",
    }
}

fn target_of(r: &Release) -> String {
    format!("{}/{}", r.env, r.app)
}

fn approval_hint(inner: &Inner, r: &Release) -> String {
    let who = match inner.estate.env(&r.env).map(|e| e.approvers.clone()).unwrap_or_default() {
        a if a.is_empty() => format!("anyone but {}", r.requested_by),
        a => format!("one of {} (not {})", a.join(", "), r.requested_by),
    };
    format!("waiting for approval by {who}: `shipdeck approve {} --as NAME`", r.id)
}

async fn promote(
    inner: &std::sync::Arc<Inner>,
    actor: &str,
    app: &str,
    from: &str,
    to: &str,
) -> Result<Outcome, EngineError> {
    let estate = &inner.estate;
    lookup(inner, from, app)?;
    let settings = lookup(inner, to, app)?.clone();
    let source = estate.env(from).map(|e| e.promotes_to.clone()).unwrap_or_default();
    if !source.iter().any(|t| t == to) {
        let allowed = if source.is_empty() { "nowhere (it is the last stage)".to_string() } else { source.join(", ") };
        return Err(EngineError::BadInput(format!(
            "cannot promote {app} from {from} to {to}: {from} promotes only to {allowed}"
        )));
    }
    let filter = ReleaseFilter { env: Some(from.into()), app: Some(app.into()), limit: Some(1) };
    let last = inner.store.releases(&filter)?.into_iter().next();
    let version = match last {
        Some(r) if r.status == Status::Verified => r.version,
        Some(r) => {
            return Err(EngineError::Refused(format!(
                "nothing verified to promote: the latest release of {app} in {from} is {} ({})",
                r.id, r.status
            )));
        }
        None => {
            return Err(EngineError::Refused(format!("nothing verified to promote: {app} has no release in {from}")));
        }
    };
    create(
        inner,
        actor,
        &settings,
        to,
        &version,
        settings.strategy,
        ReleaseKind::Promotion,
        Some(from.to_string()),
        vec![],
        None,
    )
    .await
}

fn approve(inner: &std::sync::Arc<Inner>, actor: &str, id: &str) -> Result<Outcome, EngineError> {
    let Some(release) = inner.store.release(id)? else {
        return Err(EngineError::BadInput(format!("no release with id `{id}` (see `shipdeck history`)")));
    };
    if release.status != Status::Planned {
        return Err(EngineError::BadInput(format!(
            "release {id} is not waiting for approval (it is {})",
            release.status
        )));
    }
    if release.requested_by == actor {
        return Err(EngineError::BadInput(format!(
            "{actor} requested release {id} and cannot approve it; someone else must (`--as NAME` or SHIPDECK_USER)"
        )));
    }
    let approvers = inner.estate.env(&release.env).map(|e| e.approvers.clone()).unwrap_or_default();
    if !approvers.is_empty() && !approvers.iter().any(|a| a == actor) {
        return Err(EngineError::BadInput(format!(
            "{actor} may not approve releases into {}; approvers: {}",
            release.env,
            approvers.join(", ")
        )));
    }
    if inner.store.approvals(id)?.iter().any(|a| a.by == actor) {
        return Err(EngineError::BadInput(format!("{actor} already approved release {id}")));
    }
    inner.store.add_approval(&Approval { release_id: id.to_string(), by: actor.to_string(), at: Utc::now() })?;
    inner.audit(actor, "approve", &target_of(&release), id);
    let message = format!("release {id} approved by {actor}; starting");
    inner.spawn(release.clone(), None);
    Ok(Outcome { message, release: Some(release), running: true })
}

fn pause(inner: &std::sync::Arc<Inner>, actor: &str, env: &str, app: &str) -> Result<Outcome, EngineError> {
    let mut r = active(inner, env, app)?;
    let target = Target::new(env, app);
    inner.audit(actor, "pause", &target.to_string(), &r.id);
    match r.status {
        Status::Paused => Err(EngineError::Refused(format!("release {} is already paused", r.id))),
        Status::Planned => {
            Err(EngineError::Refused(format!("release {} has not started (it waits for approval)", r.id)))
        }
        _ if inner.send_action(&target, &r.id, Action::Pause { actor: actor.into() }) => {
            Ok(Outcome { message: format!("pausing release {}", r.id), release: Some(r), running: true })
        }
        _ => {
            driven_elsewhere(inner, &target, &r)?;
            let from = r.status;
            let cause = format!("paused by {actor} at step {}/{}", r.cursor + 1, r.plan.len());
            r.status = Status::Paused;
            r.reason = Some(cause.clone());
            r.updated_at = Utc::now();
            inner.store.transition(&r, from, &cause)?;
            inner.emit(Event::Release { release: Box::new(r.clone()), cause: cause.clone() });
            Ok(Outcome { message: cause, release: Some(r), running: false })
        }
    }
}

fn resume(
    inner: &std::sync::Arc<Inner>,
    actor: &str,
    env: &str,
    app: &str,
    full: bool,
) -> Result<Outcome, EngineError> {
    let r = active(inner, env, app)?;
    let target = Target::new(env, app);
    let action = Action::Resume { actor: actor.into(), full };
    let running = inner.is_driving(&target, &r.id);
    match r.status {
        Status::Planned => {
            return Err(EngineError::Refused(format!("release {} waits for approval, not a resume", r.id)));
        }
        Status::InProgress | Status::Deployed if running && !full => {
            return Err(EngineError::Refused(format!("release {} is not paused", r.id)));
        }
        Status::Paused | Status::InProgress | Status::Deployed if running => {
            inner.send_action(&target, &r.id, action);
        }
        Status::Paused => {
            driven_elsewhere(inner, &target, &r)?;
            inner.spawn(r.clone(), Some(action))
        }
        _ => {
            driven_elsewhere(inner, &target, &r)?;
            inner.spawn(r.clone(), full.then_some(action))
        }
    }
    inner.audit(actor, if full { "resume --full" } else { "resume" }, &target.to_string(), &r.id);
    Ok(Outcome { message: format!("resuming release {}", r.id), release: Some(r), running: true })
}

async fn abort(
    inner: &std::sync::Arc<Inner>,
    actor: &str,
    env: &str,
    app: &str,
    rollback: bool,
) -> Result<Outcome, EngineError> {
    let mut r = match active(inner, env, app) {
        Ok(r) => r,
        // A release that failed without rolling back (rollback_on_failure = false) can still
        // leave traffic on its version: abort and rollback take it back.
        Err(refused) => failed_with_traffic(inner, env, app).await?.ok_or(refused)?,
    };
    let target = Target::new(env, app);
    let verb = if rollback { "rollback" } else { "abort" };
    if !inner.is_driving(&target, &r.id) {
        driven_elsewhere(inner, &target, &r)?;
    }
    inner.audit(actor, verb, &target.to_string(), &r.id);
    if r.status == Status::Planned {
        let cause = format!("{verb} by {actor} before it started");
        r.status = if rollback { Status::RolledBack } else { Status::Aborted };
        r.reason = Some(cause.clone());
        r.updated_at = Utc::now();
        inner.store.transition(&r, Status::Planned, &cause)?;
        inner.emit(Event::Release { release: Box::new(r.clone()), cause: cause.clone() });
        return Ok(Outcome { message: cause, release: Some(r), running: false });
    }
    let action =
        if rollback { Action::Rollback { actor: actor.into() } } else { Action::Abort { actor: actor.into() } };
    if !inner.send_action(&target, &r.id, action.clone()) {
        inner.spawn(r.clone(), Some(action));
    }
    Ok(Outcome { message: format!("{verb} of release {} under way", r.id), release: Some(r), running: true })
}

/// The latest release of the app in env when it failed and its version still takes traffic.
async fn failed_with_traffic(inner: &Inner, env: &str, app: &str) -> Result<Option<Release>, EngineError> {
    let filter = ReleaseFilter { env: Some(env.into()), app: Some(app.into()), limit: Some(1) };
    let Some(r) = inner.store.releases(&filter)?.into_iter().next().filter(|r| r.status == Status::Failed) else {
        return Ok(None);
    };
    let routing = inner.cluster.state(&Target::new(env, app)).await?.routing;
    Ok(routing.weights.get(&r.version).is_some_and(|w| *w > 0).then_some(r))
}

fn retry(inner: &std::sync::Arc<Inner>, actor: &str, env: &str, app: &str) -> Result<Outcome, EngineError> {
    lookup(inner, env, app)?;
    if let Some(r) = inner.store.active_release(env, app)? {
        return Err(EngineError::Refused(format!(
            "release {} of {app} in {env} is still {}; only an aborted release can be retried",
            r.id, r.status
        )));
    }
    let filter = ReleaseFilter { env: Some(env.into()), app: Some(app.into()), limit: Some(1) };
    let Some(mut r) = inner.store.releases(&filter)?.into_iter().next().filter(|r| r.status == Status::Aborted) else {
        return Err(EngineError::Refused(format!(
            "the latest release of {app} in {env} was not aborted; nothing to retry"
        )));
    };
    let target = Target::new(env, app);
    inner.cancel_removal(&target, &r.version);
    let gated = inner.estate.env(env).is_some_and(|e| e.approval_required) && r.kind != ReleaseKind::Rollback;
    if gated && inner.store.approvals(&r.id)?.is_empty() {
        // Aborted before anyone approved it: a retry waits for the approval it never had.
        let cause = format!("retried by {actor}; waits for approval");
        r.status = Status::Planned;
        r.cursor = 0;
        r.weight = 0;
        r.reason = Some(approval_hint(inner, &r));
        r.updated_at = Utc::now();
        inner.store.transition(&r, Status::Aborted, &cause)?;
        inner.audit(actor, "retry", &target.to_string(), &r.id);
        inner.emit(Event::Release { release: Box::new(r.clone()), cause });
        let message = r.reason.clone().unwrap_or_default();
        return Ok(Outcome { message, release: Some(r), running: false });
    }
    let cause = format!("retried by {actor}");
    r.status = Status::InProgress;
    r.cursor = 0;
    r.weight = 0;
    r.reason = None;
    r.updated_at = Utc::now();
    inner.store.transition(&r, Status::Aborted, &cause)?;
    inner.audit(actor, "retry", &target.to_string(), &r.id);
    inner.emit(Event::Release { release: Box::new(r.clone()), cause });
    inner.spawn(r.clone(), None);
    Ok(Outcome { message: format!("release {} restarted from step 1", r.id), release: Some(r), running: true })
}

async fn rollback(
    inner: &std::sync::Arc<Inner>,
    actor: &str,
    env: &str,
    app: &str,
    to: Option<String>,
    revision: Option<i64>,
) -> Result<Outcome, EngineError> {
    let settings = lookup(inner, env, app)?.clone();
    if inner.store.active_release(env, app)?.is_some() || failed_with_traffic(inner, env, app).await?.is_some() {
        if let Some(n) = revision {
            return Err(EngineError::Refused(format!(
                "a release of {app} in {env} is in progress: `shipdeck rollback` returns it to its stable version;                  --to-revision {n} is for finished releases"
            )));
        }
        if let Some(v) = to {
            return Err(EngineError::BadInput(format!(
                "a release of {app} in {env} is in progress: rollback returns to its stable version; --to {v} is for finished releases"
            )));
        }
        return abort(inner, actor, env, app, true).await;
    }
    let target = Target::new(env, app);
    let current = inner.current_version(&target).await?;
    let filter = ReleaseFilter { env: Some(env.into()), app: Some(app.into()), limit: None };
    let history = inner.store.releases(&filter)?;
    // A version that reached `verified` here once (it may have been rolled back since), or the
    // one the environment started with.
    let was_verified = |r: &Release| {
        r.status == Status::Verified
            || inner.store.transitions(&r.id).is_ok_and(|ts| ts.iter().any(|t| t.to == Status::Verified))
    };
    let known_good = |v: &str| {
        history.iter().any(|r| r.version == v && was_verified(r)) || settings.initial_version.as_deref() == Some(v)
    };
    let to = match revision {
        Some(n) => Some(revision_version(inner, &target, n).await?),
        None => to,
    };
    let version = match to {
        Some(v) if revision.is_some() => {
            check_version(&settings, &v)?;
            if current.as_deref() == Some(v.as_str()) {
                return Err(EngineError::Refused(format!(
                    "revision {} of {app}'s Deployment runs {v}, which already runs in {env}; nothing to roll back to",
                    revision.unwrap_or_default()
                )));
            }
            v
        }
        Some(v) => {
            check_version(&settings, &v)?;
            if current.as_deref() == Some(v.as_str()) {
                return Err(EngineError::Refused(format!("{app} {v} already runs in {env}; nothing to roll back to")));
            }
            if !known_good(&v) {
                return Err(EngineError::Refused(format!(
                    "{app} {v} was never verified in {env}; a rollback only returns to a version that ran there. \
                     Deploy it instead (`shipdeck deploy {app} {v} --env {env}`), which goes through the checks and approvals"
                )));
            }
            v
        }
        None => {
            let earlier = history.iter().find(|r| r.status == Status::Verified && Some(&r.version) != current.as_ref());
            match earlier {
                Some(r) => r.version.clone(),
                None => {
                    return Err(EngineError::Refused(format!(
                        "no earlier verified version of {app} in {env} to roll back to; name one with --to VERSION"
                    )));
                }
            }
        }
    };
    let outcome = create(
        inner,
        actor,
        &settings,
        env,
        &version,
        StrategyKind::Rolling,
        ReleaseKind::Rollback,
        None,
        vec![],
        revision,
    )
    .await?;
    // The release being rolled back is marked, once the rollback exists, so history says what
    // happened to it.
    if let Some(mut last) = history.into_iter().find(|r| r.status == Status::Verified)
        && Some(&last.version) == current.as_ref()
    {
        let cause = format!("rolled back to {version} by {actor}");
        last.status = Status::RolledBack;
        last.reason = Some(cause.clone());
        last.updated_at = Utc::now();
        inner.store.transition(&last, Status::Verified, &cause)?;
        inner.emit(Event::Release { release: Box::new(last), cause });
    }
    Ok(outcome)
}

async fn restart(
    inner: &std::sync::Arc<Inner>,
    actor: &str,
    env: &str,
    app: &str,
    version: Option<String>,
) -> Result<Outcome, EngineError> {
    let settings = lookup(inner, env, app)?;
    let target = Target::new(env, app);
    let version = match version {
        Some(v) => {
            check_version(settings, &v)?;
            v
        }
        None => inner
            .current_version(&target)
            .await?
            .ok_or_else(|| EngineError::Refused(format!("{app} runs nothing in {env}; nothing to restart")))?,
    };
    let state = inner.cluster.state(&target).await?;
    if state.replicas(&version).desired == 0 {
        return Err(EngineError::Refused(format!("{app} {version} has no pods in {env}; nothing to restart")));
    }
    inner.audit(actor, "restart", &target.to_string(), &version);
    inner.cluster.restart(&target, &version).await?;
    let message = format!("restarted the pods of {app} {version} in {env}, one at a time");
    inner.emit(Event::Note { release_id: None, message: message.clone() });
    Ok(Outcome { message, release: None, running: false })
}
