//! The estate's checks: each says which key is wrong and what was expected.

use std::collections::BTreeSet;

use crate::model::{
    AnalysisTemplate, AppSettings, CanaryStep, Channel, Environment, MetricsSource, PrometheusSettings, is_dns_label,
};

pub(super) fn join<I: IntoIterator<Item = T>, T: std::fmt::Display>(items: I) -> String {
    items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

pub(super) fn check_environments(envs: &[Environment]) -> Result<(), String> {
    if envs.is_empty() {
        return Err("no environments: add at least one [[environments]] table".into());
    }
    let names: BTreeSet<&str> = envs.iter().map(|e| e.name.as_str()).collect();
    if names.len() != envs.len() {
        return Err("environment names must be unique".into());
    }
    for env in envs {
        check_name("environment", &env.name)?;
        check_cluster(env)?;
        for to in &env.promotes_to {
            if !names.contains(to.as_str()) {
                return Err(format!(
                    "environments `{}`: promotes_to names `{to}`, which is not an environment (environments: {})",
                    env.name,
                    join(names.iter())
                ));
            }
            if to == &env.name {
                return Err(format!("environments `{}`: promotes_to cannot name the environment itself", env.name));
            }
        }
    }
    Ok(())
}

/// An environment's `cluster.kubernetes`: a context name if given, a namespace that can exist.
pub(super) fn check_cluster(env: &Environment) -> Result<(), String> {
    let Some(k) = env.cluster.kubernetes() else { return Ok(()) };
    let at = |key: &str| format!("environments `{}`: cluster.kubernetes.{key}", env.name);
    if let Some(ctx) = &k.context
        && ctx.trim().is_empty()
    {
        return Err(format!(
            "{} is empty; name a context of your kubeconfig, or leave it out for the current one",
            at("context")
        ));
    }
    if let Some(ns) = &k.namespace
        && !is_dns_label(ns)
    {
        return Err(format!(
            "{} = {ns:?} is not a Kubernetes namespace name (lowercase letters, digits and `-`, at most 63)",
            at("namespace")
        ));
    }
    Ok(())
}

/// The names an app's objects get in a Kubernetes environment must be names Kubernetes takes,
/// and leave room for the per-version suffix shipdeck adds.
pub(super) fn check_kubernetes_app(app: &AppSettings, env: &str) -> Result<(), String> {
    let objects = app.kubernetes.resolve(&app.name);
    let keys: [(&str, Option<&String>, &String); 4] = [
        ("deployment", app.kubernetes.deployment.as_ref(), &objects.deployment),
        ("container", app.kubernetes.container.as_ref(), &objects.container),
        ("service", app.kubernetes.service.as_ref(), &objects.service),
        ("preview_service", app.kubernetes.preview_service.as_ref(), &objects.preview_service),
    ];
    let route = objects.http_route.as_ref();
    for (key, given, value) in keys.into_iter().chain(route.map(|r| ("http_route", Some(r), r))) {
        if is_dns_label(value) {
            continue;
        }
        let why = "lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63";
        return Err(match given {
            Some(_) => {
                format!("apps `{}` in {env}: kubernetes.{key} = {value:?} is not a Kubernetes name ({why})", app.name)
            }
            None => format!(
                "apps `{}` in {env}: kubernetes.{key} defaults to the app's name, {value:?}, which is not a Kubernetes \
                 name ({why}); set [apps.kubernetes] {key} = \"…\"",
                app.name
            ),
        });
    }
    if let Some(url) = &app.kubernetes.verify_url
        && let Err(why) = crate::model::check_verify_url(url)
    {
        return Err(format!("apps `{}` in {env}: kubernetes.verify_url = {url:?} {why}", app.name));
    }
    Ok(())
}

pub(super) fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name `{name}` must start with a letter or digit and use only letters, digits, `-`, `_` and `.`"
        ))
    }
}

/// Webhook channels: unique names, an http(s) URL, something to be told, sane retries.
pub(super) fn check_channels(channels: &[Channel], env_names: &BTreeSet<&str>) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for c in channels {
        check_name("notification channel", &c.name)?;
        if !seen.insert(c.name.as_str()) {
            return Err(format!("notifications `{}` is declared twice; channel names must be unique", c.name));
        }
        let at = |key: &str| format!("notifications `{}`: {key}", c.name);
        let example = "write e.g. `http://127.0.0.1:8080/hooks/releases`";
        match reqwest::Url::parse(&c.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => {
                return Err(format!(
                    "{} `{}`: scheme `{}` is not http or https; {example}",
                    at("url"),
                    c.url,
                    u.scheme()
                ));
            }
            Err(e) => return Err(format!("{} `{}` is not a URL ({e}); {example}", at("url"), c.url)),
        }
        if c.events.is_empty() {
            let all: Vec<&str> = crate::model::NotifyEvent::ALL.iter().map(|e| e.name()).collect();
            return Err(format!("{} is empty; list at least one of {}", at("events"), all.join(", ")));
        }
        if c.audience.is_empty() {
            return Err(format!(
                "{} is empty; list at least one of oncall, executives, tech_leads, standard",
                at("audience")
            ));
        }
        for env in &c.environments {
            if !env_names.contains(env.as_str()) {
                return Err(format!(
                    "{}: no environment is named `{env}` (environments: {})",
                    at("environments"),
                    join(env_names.iter())
                ));
            }
        }
        if !(1..=10).contains(&c.attempts) {
            return Err(format!("{} = {} must be between 1 and 10", at("attempts"), c.attempts));
        }
        if c.timeout.0.is_zero() {
            return Err(format!("{} must be more than 0s", at("timeout")));
        }
    }
    Ok(())
}

pub(super) fn check_prometheus(p: &PrometheusSettings) -> Result<(), String> {
    match reqwest::Url::parse(&p.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        Ok(u) => {
            return Err(format!(
                "prometheus.url `{}`: scheme `{}` is not supported; write e.g. `http://127.0.0.1:9090` (http or https)",
                p.url,
                u.scheme()
            ));
        }
        Err(e) => {
            return Err(format!("prometheus.url `{}` is not a URL ({e}); write e.g. `http://127.0.0.1:9090`", p.url));
        }
    }
    if p.timeout.0.is_zero() {
        return Err("prometheus.timeout must be more than 0s".into());
    }
    Ok(())
}

/// A template on its own: a judge that exists, a usable interval and count, conditions that compile.
pub(super) fn check_template(t: &AnalysisTemplate) -> Result<(), String> {
    if !crate::analysis::judges::JUDGE_NAMES.contains(&t.judge.as_str()) {
        return Err(format!("judge `{}` is not one of {}", t.judge, crate::analysis::judges::JUDGE_NAMES.join(", ")));
    }
    if t.interval.0.as_secs() == 0 {
        return Err("interval must be at least 1s".into());
    }
    if t.count == 0 {
        return Err("count must be at least 1".into());
    }
    for m in &t.metrics {
        crate::analysis::conditions::validate(m)?;
    }
    Ok(())
}

pub(super) fn check_app(app: &AppSettings, in_env: &str, has_prometheus: bool) -> Result<(), String> {
    let at = |key: &str| format!("apps `{}`{in_env}: {key}", app.name);
    check_name("app", &app.name)?;
    if app.replicas == 0 {
        return Err(format!("{} must be at least 1", at("replicas")));
    }
    if app.replicas > 100 {
        return Err(format!("{} = {} is more than the local cluster runs (at most 100)", at("replicas"), app.replicas));
    }
    if !(app.rps.is_finite() && app.rps >= 0.0 && app.rps <= 20_000.0) {
        return Err(format!("{} = {} must be between 0 and 20000", at("rps"), app.rps));
    }
    if app.versions.is_empty() {
        return Err(format!("{}: declare at least one [[apps.versions]]", at("versions")));
    }
    if let Some(tag) = &app.tag
        && !tag.contains("{version}")
    {
        return Err(format!("{} = {tag:?} must contain `{{version}}`, e.g. \"v{{version}}\"", at("tag")));
    }
    let mut seen = BTreeSet::new();
    for v in &app.versions {
        check_name("version", &v.version)?;
        if !seen.insert(v.version.as_str()) {
            return Err(format!("{} `{}` is declared twice", at("versions"), v.version));
        }
        let vat = |key: &str| at(&format!("versions `{}`.{key}", v.version));
        if !(0.0..=1.0).contains(&v.error_rate) {
            return Err(format!(
                "{} = {} must be between 0.0 and 1.0 (0.08 means 8%)",
                vat("error_rate"),
                v.error_rate
            ));
        }
        if !(v.p50_ms.is_finite() && v.p50_ms >= 0.0 && v.p50_ms <= 60_000.0) {
            return Err(format!("{} = {} must be between 0 and 60000", vat("p50_ms"), v.p50_ms));
        }
        if !(v.p99_ms.is_finite() && v.p99_ms >= v.p50_ms && v.p99_ms <= 60_000.0) {
            return Err(format!(
                "{} = {} must be at least p50_ms ({}) and at most 60000",
                vat("p99_ms"),
                v.p99_ms,
                v.p50_ms
            ));
        }
        for (i, e) in v.flag_effects.iter().enumerate() {
            check_flag_effect(e).map_err(|m| format!("{}: {m}", vat(&format!("flag_effects[{i}]"))))?;
        }
    }
    if let Some(init) = &app.initial_version
        && !seen.contains(init.as_str())
    {
        return Err(format!("{} `{init}` is not one of the versions ({})", at("initial_version"), join(seen.iter())));
    }
    if app.rolling.max_surge == 0 && app.rolling.max_unavailable == 0 {
        return Err(format!("{}: max_surge and max_unavailable cannot both be 0 (nothing could move)", at("rolling")));
    }
    if app.rolling.progress_deadline.0.is_zero() {
        return Err(format!("{} must be more than 0s", at("rolling.progress_deadline")));
    }
    for (name, t) in &app.analysis_templates {
        check_template(t).map_err(|e| format!("{}: {e}", at(&format!("analysis_templates.{name}"))))?;
        if t.provider == MetricsSource::Prometheus && !has_prometheus {
            return Err(format!(
                "{}: provider `prometheus` needs a [prometheus] table with the server's url",
                at(&format!("analysis_templates.{name}"))
            ));
        }
    }
    for (i, step) in app.canary.steps.iter().enumerate() {
        match step {
            CanaryStep::SetWeight(w) if *w > 100 => {
                return Err(format!(
                    "{} set_weight = {w} must be between 0 and 100",
                    at(&format!("canary.steps[{i}]"))
                ));
            }
            CanaryStep::Analysis(a) => {
                let here = at(&format!("canary.steps[{i}].analysis"));
                let Some(t) = app.analysis_template(a) else {
                    let known: Vec<&String> = app.analysis_templates.keys().collect();
                    return Err(format!(
                        "{here}: template `{}` is not declared; add [analysis_templates.{0}] (declared: {})",
                        a.template.as_deref().unwrap_or_default(),
                        if known.is_empty() { "none".to_string() } else { join(known) }
                    ));
                };
                check_template(&t).map_err(|e| format!("{here}: {e}"))?;
                if t.provider == MetricsSource::Prometheus && !has_prometheus {
                    return Err(format!(
                        "{here}: provider `prometheus` needs a [prometheus] table with the server's url"
                    ));
                }
            }
            _ => {}
        }
    }
    if !(0.0..=1.0).contains(&app.ab.audience) {
        return Err(format!("{} = {} must be between 0.0 and 1.0", at("ab.audience"), app.ab.audience));
    }
    if app.ab.match_name.trim().is_empty() {
        return Err(format!("{} must not be empty", at("ab.match_name")));
    }
    crate::config::emergency::check_commands(&app.emergency).map_err(|e| format!("{}{e}", at("emergency")))?;
    for c in &app.verification.checks {
        if c.retries == 0 {
            return Err(format!("{} must be at least 1", at(&format!("verification.checks `{}`.retries", c.name))));
        }
    }
    Ok(())
}

/// A flag key the pods can name in a response header (`x-shipdeck-flag-<flag>`), a variant
/// they can send as its value, and an effect within bounds.
pub(super) fn check_flag_effect(e: &crate::model::FlagEffect) -> Result<(), String> {
    let header_safe = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    };
    if !header_safe(&e.flag) {
        return Err(format!(
            "flag = {:?}: a flag with effects needs a key of lowercase letters, digits, `-`, `_` or `.` \
             (pods name it in the `x-shipdeck-flag-<flag>` response header)",
            e.flag
        ));
    }
    if e.variant.is_empty() || !e.variant.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("variant = {:?} must be a variant name of visible ASCII characters", e.variant));
    }
    if let Some(rate) = e.error_rate
        && !(0.0..=1.0).contains(&rate)
    {
        return Err(format!("error_rate = {rate} must be between 0.0 and 1.0 (0.1 means 10%)"));
    }
    if !(e.extra_latency_ms.is_finite() && (0.0..=60_000.0).contains(&e.extra_latency_ms)) {
        return Err(format!("extra_latency_ms = {} must be between 0 and 60000", e.extra_latency_ms));
    }
    Ok(())
}
