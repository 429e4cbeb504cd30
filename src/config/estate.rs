//! Loading and checking the estate file. Every error names the file and the key at fault
//! and says what was expected.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::merge::deep_merge;
use crate::cluster::Target;
use crate::model::{AnalysisTemplate, AppSettings, Channel, EmergencyOverrides, Environment, PrometheusSettings};

mod checks;
use checks::{
    check_app, check_channels, check_environments, check_kubernetes_app, check_name, check_prometheus, check_template,
    join,
};

/// The embedded demo estate: three apps × dev/staging/prod with good and bad versions.
pub const DEMO_ESTATE: &str = include_str!("demo-estate.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read estate file {path}: {message}")]
    Read { path: String, message: String },
    #[error("estate file {source_name} is not valid: {message}")]
    Invalid { source_name: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EstateFile {
    environments: Vec<Environment>,
    #[serde(default)]
    prometheus: Option<PrometheusSettings>,
    #[serde(default)]
    analysis_templates: BTreeMap<String, AnalysisTemplate>,
    /// Per-severity changes to the standard's emergency plans.
    #[serde(default)]
    emergency: EmergencyOverrides,
    #[serde(default)]
    notifications: Vec<Channel>,
    apps: Vec<AppSettings>,
}

/// The estate, checked, with every app's effective settings per environment.
#[derive(Debug, Clone)]
pub struct Estate {
    /// Where it came from: a path, or `embedded demo estate`.
    pub source: String,
    pub environments: Vec<Environment>,
    /// Where the `prometheus` metrics provider asks, when the estate names one.
    pub prometheus: Option<PrometheusSettings>,
    /// App names in file order.
    pub apps: Vec<String>,
    /// The `[emergency]` table: per-severity changes to the standard's plans.
    pub emergency: EmergencyOverrides,
    /// Webhook channels (`[[notifications]]`).
    pub notifications: Vec<Channel>,
    /// Shared with every snapshot that shows them (5,000 apps' settings are megabytes).
    settings: BTreeMap<Target, Arc<AppSettings>>,
}

impl Estate {
    pub fn demo() -> Result<Self, ConfigError> {
        Self::parse(DEMO_ESTATE, "embedded demo estate")
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Self::parse_at(&text, &path.display().to_string(), path.parent())
    }

    /// Parse an estate; relative `repo` paths are taken from the working directory.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        Self::parse_at(text, source_name, None)
    }

    /// Parse an estate whose relative `repo` paths are relative to `base` (the estate file's directory).
    pub fn parse_at(text: &str, source_name: &str, base_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { source_name: source_name.to_string(), message };
        let file: EstateFile = toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
        check_environments(&file.environments).map_err(invalid)?;
        let env_names: BTreeSet<&str> = file.environments.iter().map(|e| e.name.as_str()).collect();
        if let Some(p) = &file.prometheus {
            check_prometheus(p).map_err(invalid)?;
        }
        for (name, t) in &file.analysis_templates {
            check_name("analysis template", name).map_err(invalid)?;
            check_template(t).map_err(|e| invalid(format!("analysis_templates.{name}: {e}")))?;
        }
        let has_prometheus = file.prometheus.is_some();
        super::emergency::check_overrides(&file.emergency, &env_names).map_err(invalid)?;
        check_channels(&file.notifications, &env_names).map_err(invalid)?;

        let mut apps = Vec::new();
        let mut settings = BTreeMap::new();
        for app in &file.apps {
            if apps.contains(&app.name) {
                return Err(invalid(format!("app `{}` is declared twice; app names must be unique", app.name)));
            }
            apps.push(app.name.clone());
            let mut app = app.clone();
            for (name, t) in &file.analysis_templates {
                app.analysis_templates.entry(name.clone()).or_insert_with(|| t.clone());
            }
            let app = &app;
            check_app(app, "", has_prometheus).map_err(invalid)?;
            for env in app.overrides.keys() {
                if !env_names.contains(env.as_str()) {
                    return Err(invalid(format!(
                        "apps `{}`: overrides.{env}: no environment is named `{env}` (environments: {})",
                        app.name,
                        join(env_names.iter())
                    )));
                }
            }
            let base = toml::Table::try_from(app).map_err(|e| invalid(format!("apps `{}`: {e}", app.name)))?;
            for env in &file.environments {
                let mut merged = base.clone();
                if let Some(over) = app.overrides.get(&env.name) {
                    for forbidden in ["name", "versions", "overrides"] {
                        if over.contains_key(forbidden) {
                            return Err(invalid(format!(
                                "apps `{}`: overrides.{}: `{forbidden}` cannot be overridden per environment",
                                app.name, env.name
                            )));
                        }
                    }
                    deep_merge(&mut merged, over);
                }
                let mut effective: AppSettings = merged.try_into().map_err(|e: toml::de::Error| {
                    invalid(format!("apps `{}`: overrides.{}: {}", app.name, env.name, e.to_string().trim_end()))
                })?;
                if let (Some(repo), Some(dir)) = (&effective.repo, base_dir)
                    && repo.is_relative()
                {
                    effective.repo = Some(dir.join(repo));
                }
                check_app(&effective, &format!(" in {}", env.name), has_prometheus).map_err(invalid)?;
                if !env.cluster.is_local() {
                    check_kubernetes_app(&effective, &env.name).map_err(invalid)?;
                }
                settings.insert(Target::new(&env.name, &app.name), Arc::new(effective));
            }
        }
        if apps.is_empty() {
            return Err(invalid("no apps: add at least one [[apps]] table".into()));
        }
        Ok(Self {
            source: source_name.to_string(),
            environments: file.environments,
            prometheus: file.prometheus,
            apps,
            emergency: file.emergency,
            notifications: file.notifications,
            settings,
        })
    }

    /// The plan an emergency of `severity` follows here: the standard's, with the estate's
    /// `[emergency.P…]` changes.
    pub fn emergency_plan(&self, severity: crate::model::Severity) -> crate::model::EmergencyPlan {
        crate::model::EmergencyPlan::standard(severity).with(self.emergency.get(severity))
    }

    pub fn env(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    pub fn env_names(&self) -> Vec<&str> {
        self.environments.iter().map(|e| e.name.as_str()).collect()
    }

    pub fn settings(&self, env: &str, app: &str) -> Option<&AppSettings> {
        self.settings.get(&Target::new(env, app)).map(Arc::as_ref)
    }

    /// Every (environment, app) with its effective settings, environments in file order.
    pub fn targets(&self) -> Vec<(Target, AppSettings)> {
        self.shared_targets().into_iter().map(|(t, s)| (t, Arc::unwrap_or_clone(s))).collect()
    }

    /// [`Estate::targets`] with the settings shared rather than copied.
    pub fn shared_targets(&self) -> Vec<(Target, Arc<AppSettings>)> {
        let mut out = Vec::new();
        for env in &self.environments {
            for app in &self.apps {
                let t = Target::new(&env.name, app);
                if let Some(s) = self.settings.get(&t) {
                    out.push((t, s.clone()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CanaryStep;

    #[test]
    fn the_demo_estate_parses() {
        let e = Estate::demo().unwrap();
        assert!(e.apps.len() >= 2);
        assert_eq!(e.env_names(), vec!["dev", "staging", "prod"]);
    }

    #[test]
    fn environment_overrides_are_deep_merged_over_the_base() {
        let e = Estate::demo().unwrap();
        let dev = e.settings("dev", "checkout").unwrap();
        let prod = e.settings("prod", "checkout").unwrap();
        assert!(prod.replicas > dev.replicas);
        assert_eq!(prod.canary.steps, dev.canary.steps);
    }

    fn minimal(extra_env: &str, extra_app: &str) -> String {
        format!(
            "[[environments]]\nname = \"dev\"\n{extra_env}\n[[apps]]\nname = \"a\"\n{extra_app}\n[[apps.versions]]\nversion = \"1.0.0\"\n"
        )
    }

    /// An estate with `top` (templates, prometheus) before it and one canary app whose steps are `steps`.
    fn templated(top: &str, steps: &str, app_extra: &str) -> Result<Estate, String> {
        let text = format!(
            "{top}\n[[environments]]\nname = \"dev\"\n[[environments]]\nname = \"prod\"\n[[apps]]\nname = \"a\"\nstrategy = \"canary\"\n{app_extra}\n[apps.canary]\nsteps = {steps}\n[[apps.versions]]\nversion = \"1.0.0\"\n"
        );
        Estate::parse(&text, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_step_names_a_template_and_overrides_its_keys_per_step_and_per_environment() {
        let top = "[analysis_templates.quick]\njudge = \"threshold\"\ninterval = \"5s\"\ncount = 4\n\
                   [[analysis_templates.quick.metrics]]\nname = \"error_rate\"\nfailure_condition = \"result > 0.02\"\n";
        let app = "[apps.overrides.prod.analysis_templates.quick]\ncount = 20";
        let e = templated(top, r#"[{ analysis = { template = "quick", interval = "10s" } }]"#, app).unwrap();
        let resolve = |env: &str| {
            let s = e.settings(env, "a").unwrap();
            let CanaryStep::Analysis(spec) = &s.canary.steps[0] else { panic!("not an analysis") };
            s.analysis_template(spec).unwrap()
        };
        let dev = resolve("dev");
        assert_eq!((dev.judge.as_str(), dev.interval.0.as_secs(), dev.count), ("threshold", 10, 4));
        assert_eq!(dev.metrics.len(), 1);
        assert_eq!(dev.min_requests, Some(10), "the app's canary.min_requests");
        assert_eq!(resolve("prod").count, 20);
    }

    #[test]
    fn template_mistakes_are_refused_naming_the_key_and_the_fix() {
        let cases = [
            ("", r#"[{ analysis = { template = "nope" } }]"#, "template `nope` is not declared"),
            (
                "[analysis_templates.x]\njudge = \"magic\"",
                "[]",
                "analysis_templates.x: judge `magic` is not one of standard, threshold, mann-whitney, sequential",
            ),
            ("", r#"[{ analysis = { judge = "magic" } }]"#, "canary.steps[0].analysis: judge `magic`"),
            ("", r#"[{ analysis = { interval = "0s" } }]"#, "interval must be at least 1s"),
            ("", r#"[{ analysis = { count = 0 } }]"#, "count must be at least 1"),
            (
                "",
                r#"[{ analysis = { metrics = [{ name = "error_rate" }] } }]"#,
                "needs a success_condition or a failure_condition",
            ),
            (
                "",
                r#"[{ analysis = { metrics = [{ name = "error_rate", failure_condition = "reslt > 1" }] } }]"#,
                "unknown name `reslt`",
            ),
            (
                "",
                r#"[{ analysis = { metrics = [{ name = "latency", failure_condition = "result > 1" }] } }]"#,
                "latency",
            ),
            ("", r#"[{ analysis = { provider = "prometheus" } }]"#, "needs a [prometheus] table"),
            ("[prometheus]\nurl = \"localhost:9090\"", "[]", "prometheus.url"),
        ];
        for (top, steps, want) in cases {
            let err = templated(top, steps, "").unwrap_err();
            assert!(err.contains(want) && err.contains("t.toml"), "{steps}: {err}");
        }
        assert!(
            templated(
                "[prometheus]\nurl = \"http://127.0.0.1:9090\"",
                r#"[{ analysis = { provider = "prometheus" } }]"#,
                ""
            )
            .is_ok()
        );
    }

    #[test]
    fn a_version_s_flag_changes_parse_and_a_bad_one_names_the_flag() {
        let ok = "[[apps.versions]]\nversion = \"1.1.0\"\nflags = { new-checkout = \"on\", dark-mode = \"25%\" }";
        let e = Estate::parse(&minimal("", ok), "x.toml").unwrap();
        let flags = &e.settings("dev", "a").unwrap().profile("1.1.0").unwrap().flags;
        assert_eq!(flags.iter().map(|f| f.to_string()).collect::<Vec<_>>(), ["dark-mode=25%", "new-checkout=on"]);
        let bad = "[[apps.versions]]\nversion = \"1.1.0\"\nflags = { new-checkout = \"maybe\" }";
        let err = Estate::parse(&minimal("", bad), "x.toml").unwrap_err().to_string();
        assert!(err.contains("flags.new-checkout") && err.contains("not on, off or a percentage"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let err = Estate::parse(&minimal("", "replcas = 3"), "x.toml").unwrap_err().to_string();
        assert!(err.contains("x.toml") && err.contains("replcas"), "{err}");
    }

    #[test]
    fn a_promotion_to_an_unknown_environment_is_refused() {
        let err = Estate::parse(&minimal("promotes_to = [\"prd\"]", ""), "x.toml").unwrap_err().to_string();
        assert!(err.contains("`prd`"), "{err}");
    }

    #[test]
    fn an_error_rate_above_one_is_refused() {
        let text = minimal("", "").replace("version = \"1.0.0\"", "version = \"1.0.0\"\nerror_rate = 8.0");
        let err = Estate::parse(&text, "x.toml").unwrap_err().to_string();
        assert!(err.contains("error_rate") && err.contains("0.08"), "{err}");
    }

    #[test]
    fn a_bad_duration_says_how_to_write_one() {
        let err = Estate::parse(&minimal("", "[apps.rolling]\nprogress_deadline = \"soon\""), "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("30s"), "{err}");
    }

    fn with_channel(channel: &str) -> Result<Estate, String> {
        let text = format!("[[notifications]]\nname = \"page\"\n{channel}\n{}", minimal("", ""));
        Estate::parse(&text, "x.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn notification_channels_parse_with_defaults_and_bad_ones_name_the_field() {
        let e = with_channel(
            "url = \"http://127.0.0.1:9/hook\"\nformat = \"slack\"\naudience = [\"oncall\", \"executives\"]",
        )
        .unwrap();
        let c = &e.notifications[0];
        assert_eq!((c.format, c.attempts, c.events.len()), (crate::model::ChannelFormat::Slack, 4, 8));
        assert_eq!(c.audience, [crate::model::Audience::Oncall, crate::model::Audience::Executives]);
        for (channel, want) in [
            ("url = \"127.0.0.1:9/hook\"", "notifications `page`: url `127.0.0.1:9/hook` is not a URL"),
            (
                "url = \"ftp://127.0.0.1/h\"",
                "notifications `page`: url `ftp://127.0.0.1/h`: scheme `ftp` is not http or https",
            ),
            ("url = \"http://127.0.0.1/h\"\nevents = []", "notifications `page`: events is empty"),
            ("url = \"http://127.0.0.1/h\"\nevents = [\"rolledback\"]", "unknown variant `rolledback`"),
            ("url = \"http://127.0.0.1/h\"\naudience = [\"ceo\"]", "unknown variant `ceo`"),
            ("url = \"http://127.0.0.1/h\"\nenvironments = [\"prd\"]", "no environment is named `prd`"),
            ("url = \"http://127.0.0.1/h\"\nattempts = 0", "attempts = 0 must be between 1 and 10"),
            ("url = \"http://127.0.0.1/h\"\ntimeout = \"0s\"", "timeout must be more than 0s"),
            ("url = \"http://127.0.0.1/h\"\nformat = \"teams\"", "unknown variant `teams`"),
        ] {
            let err = with_channel(channel).unwrap_err();
            assert!(err.contains("x.toml") && err.contains(want), "{channel}: {err}");
        }
    }

    #[test]
    fn a_repo_is_relative_to_the_estate_file_and_a_tag_needs_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("estate.toml");
        std::fs::write(&path, minimal("", "repo = \"../code/web\"\ntag = \"web-v{version}\"")).unwrap();
        let e = Estate::load(&path).unwrap();
        let s = e.settings("dev", "a").unwrap();
        assert_eq!(s.repo.as_deref(), Some(dir.path().join("../code/web").as_path()));
        assert_eq!(s.tag.as_deref(), Some("web-v{version}"));
        let err = Estate::parse(&minimal("", "tag = \"release\""), "x.toml").unwrap_err().to_string();
        assert!(err.contains("tag = \"release\" must contain `{version}`"), "{err}");
    }

    fn with_effect(effect: &str) -> Result<Estate, String> {
        let text =
            minimal("", "").replace("version = \"1.0.0\"", &format!("version = \"1.0.0\"\nflag_effects = [{effect}]"));
        Estate::parse(&text, "x.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn flag_effects_parse_and_bad_ones_are_refused_naming_the_key() {
        let e = with_effect(r#"{ flag = "new-checkout", variant = "on", error_rate = 0.1, extra_latency_ms = 30 }"#)
            .unwrap();
        let effects = &e.settings("dev", "a").unwrap().versions[0].flag_effects;
        assert_eq!(effects.len(), 1);
        assert_eq!((effects[0].error_rate, effects[0].extra_latency_ms), (Some(0.1), 30.0));
        let only_latency = with_effect(r#"{ flag = "f", variant = "on", extra_latency_ms = 5 }"#).unwrap();
        assert_eq!(only_latency.settings("dev", "a").unwrap().versions[0].flag_effects[0].error_rate, None);
        for (effect, want) in [
            (r#"{ flag = "f", variant = "on", error_rate = 1.5 }"#, "flag_effects[0]: error_rate = 1.5"),
            (r#"{ flag = "f", variant = "on", extra_latency_ms = -1 }"#, "extra_latency_ms = -1"),
            (r#"{ flag = "f", variant = "on", eror_rate = 0.1 }"#, "eror_rate"),
            (r#"{ flag = "New Checkout", variant = "on" }"#, "x-shipdeck-flag-<flag>"),
            (r#"{ flag = "f", variant = "" }"#, "variant"),
            (r#"{ variant = "on" }"#, "flag"),
        ] {
            let err = with_effect(effect).unwrap_err();
            assert!(err.contains("x.toml") && err.contains(want), "{effect}: {err}");
        }
    }

    #[test]
    fn an_environment_can_run_on_kubernetes_and_apps_name_their_objects() {
        let text = "[[environments]]\nname = \"dev\"\n[[environments]]\nname = \"prod\"\n\
                    cluster = { kubernetes = { context = \"kind-prod\", namespace = \"shop\" } }\n\
                    [[apps]]\nname = \"web\"\n[apps.kubernetes]\nservice = \"web-svc\"\nhttp_route = \"web\"\n\
                    verify_url = \"https://web-{slug}.staging.example.com/\"\n[[apps.versions]]\nversion = \"1.0.0\"\n";
        let e = Estate::parse(text, "t.toml").unwrap();
        assert!(e.env("dev").unwrap().cluster.is_local(), "the local cluster stays the default");
        let k = e.env("prod").unwrap().cluster.kubernetes().unwrap();
        assert_eq!((k.context.as_deref(), k.namespace.as_deref()), (Some("kind-prod"), Some("shop")));
        let objects = e.settings("prod", "web").unwrap().kubernetes.resolve("web");
        assert_eq!(objects.deployment, "web");
        assert_eq!(objects.container, "web");
        assert_eq!(objects.service, "web-svc");
        assert_eq!(objects.preview_service, "web-svc-preview");
        assert_eq!(objects.http_route.as_deref(), Some("web"));
        let url = objects.verify_url.as_deref().unwrap();
        assert_eq!(crate::model::verify_url_of(url, "1.1.0"), "https://web-1-1-0.staging.example.com/");
        // `cluster = "local"` says the default out loud.
        let local = minimal("cluster = \"local\"", "");
        assert!(Estate::parse(&local, "t.toml").unwrap().env("dev").unwrap().cluster.is_local());
    }

    #[test]
    fn kubernetes_mistakes_name_the_key() {
        let kube = |ns: &str| format!("cluster = {{ kubernetes = {{ namespace = \"{ns}\" }} }}");
        let cases = [
            (kube("Shop_1"), String::new(), "environments `dev`: cluster.kubernetes.namespace = \"Shop_1\""),
            (
                "cluster = { kubernetes = { context = \"\" } }".to_string(),
                String::new(),
                "cluster.kubernetes.context is empty",
            ),
            ("cluster = { kubernetes = { namespce = \"x\" } }".to_string(), String::new(), "namespce"),
            ("cluster = { nomad = {} }".to_string(), String::new(), "nomad"),
            (kube("shop"), "[apps.kubernetes]\nservice = \"Web\"".into(), "kubernetes.service = \"Web\""),
            (kube("shop"), "[apps.kubernetes]\nhttp_route = \"a.b\"".into(), "kubernetes.http_route"),
            (kube("shop"), "[apps.kubernetes]\ndeploymnt = \"a\"".into(), "deploymnt"),
            (
                kube("shop"),
                "[apps.kubernetes]\nverify_url = \"https://web.example.com\"".into(),
                "kubernetes.verify_url = \"https://web.example.com\" names no version: put {version} or {slug}",
            ),
            (
                kube("shop"),
                "[apps.kubernetes]\nverify_url = \"web-{slug}.example.com\"".into(),
                "kubernetes.verify_url = \"web-{slug}.example.com\" is not a URL",
            ),
            (
                kube("shop"),
                "[apps.kubernetes]\nverify_url = \"ftp://web-{slug}.example.com\"".into(),
                "must be an http or https URL",
            ),
            (
                kube("shop"),
                "[apps.kubernetes]\nverify_url = \"https://{app}-{slug}.x\"".into(),
                "only {version} and {slug}",
            ),
        ];
        for (env, app, want) in cases {
            let err = Estate::parse(&minimal(&env, &app), "t.toml").unwrap_err().to_string();
            assert!(err.contains(want), "{env} {app}: {err}");
        }
        // A default taken from an app name Kubernetes would refuse says which key to set.
        let text = format!(
            "[[environments]]\nname = \"dev\"\n{}\n[[apps]]\nname = \"Web_App\"\n[[apps.versions]]\nversion = \"1.0.0\"\n",
            kube("shop")
        );
        let err = Estate::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(
            err.contains("kubernetes.deployment defaults to the app's name") && err.contains("[apps.kubernetes]"),
            "{err}"
        );
        // The same app name is fine where the environment is local.
        let local = text.replace(&kube("shop"), "");
        assert!(Estate::parse(&local, "t.toml").is_ok());
    }
}
