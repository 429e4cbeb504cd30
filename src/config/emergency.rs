//! Checking the estate's emergency settings: the `[emergency.P…]` plan overrides and each
//! app's `[apps.emergency]` build and critical test commands.

use std::collections::BTreeSet;

use crate::model::{EmergencyCommands, EmergencyOverrides, Severity};

/// Durations above 0, P0 without a canary duration, environments that exist (each once).
pub(super) fn check_overrides(o: &EmergencyOverrides, env_names: &BTreeSet<&str>) -> Result<(), String> {
    for severity in Severity::ALL {
        let Some(over) = o.get(severity) else { continue };
        let at = |key: &str| format!("emergency.{}.{key}", severity.name());
        if let Some(d) = over.canary_duration {
            if severity == Severity::P0 {
                return Err(format!("{}: a P0 fix goes out without a canary; remove the key", at("canary_duration")));
            }
            if d.0.is_zero() {
                return Err(format!("{} must be more than 0s", at("canary_duration")));
            }
        }
        if over.monitoring_duration.is_some_and(|d| d.0.is_zero()) {
            return Err(format!("{} must be more than 0s", at("monitoring_duration")));
        }
        if let Some(envs) = &over.environments {
            if envs.is_empty() {
                return Err(format!("{} must name at least one environment", at("environments")));
            }
            let mut seen = BTreeSet::new();
            for e in envs {
                if !env_names.contains(e.as_str()) {
                    let known: Vec<&str> = env_names.iter().copied().collect();
                    return Err(format!(
                        "{}: no environment is named `{e}` (environments: {})",
                        at("environments"),
                        known.join(", ")
                    ));
                }
                if !seen.insert(e.as_str()) {
                    return Err(format!("{}: `{e}` is named twice", at("environments")));
                }
            }
        }
    }
    Ok(())
}

/// Commands that are not blank and timeouts above 0. The error starts with the key at fault
/// (`.build_timeout must …`), to follow `apps `NAME`: emergency`.
pub(super) fn check_commands(c: &EmergencyCommands) -> Result<(), String> {
    if c.build.as_deref().is_some_and(|b| b.trim().is_empty()) {
        return Err(".build is empty; remove it or give the command that builds the fix".into());
    }
    for (suite, cmd) in c.critical_tests.suites() {
        if cmd.is_some_and(|b| b.trim().is_empty()) {
            return Err(format!(
                ".critical_tests.{suite} is empty; remove it (the suite is then skipped) or give its command"
            ));
        }
    }
    for (key, d) in [("build_timeout", c.build_timeout), ("test_timeout", c.test_timeout)] {
        if d.0.is_zero() {
            return Err(format!(".{key} must be more than 0s"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Estate;
    use crate::model::Severity;

    fn estate(top: &str, app: &str) -> Result<Estate, String> {
        let text = format!(
            "{top}\n[[environments]]\nname = \"staging\"\n[[environments]]\nname = \"prod\"\n[[apps]]\nname = \"a\"\n{app}\n[[apps.versions]]\nversion = \"1.0.0\"\n"
        );
        Estate::parse(&text, "e.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn overrides_change_the_standard_plan_and_commands_parse() {
        let e = estate(
            "[emergency.P1]\ncanary_duration = \"30s\"\nmonitoring_duration = \"1m\"\n[emergency.P0]\nenvironments = [\"prod\"]",
            "[apps.emergency]\nbuild = \"echo build\"\ntest_timeout = \"20s\"\n[apps.emergency.critical_tests]\nsecurity = \"true\"",
        )
        .unwrap();
        let p1 = e.emergency_plan(Severity::P1);
        assert_eq!((p1.canary_duration.0.as_secs(), p1.monitoring_duration.0.as_secs()), (30, 60));
        assert_eq!((p1.canary_percent, p1.rollback_threshold), (10, 0.02), "the rest is the standard's");
        assert_eq!(e.emergency_plan(Severity::P0).environments, ["prod"]);
        assert_eq!(e.emergency_plan(Severity::P2).canary_duration.0.as_secs(), 1800);
        let c = &e.settings("prod", "a").unwrap().emergency;
        assert_eq!(c.build.as_deref(), Some("echo build"));
        assert_eq!((c.test_timeout.0.as_secs(), c.build_timeout.0.as_secs()), (20, 600));
        assert_eq!(c.critical_tests.suites().iter().filter(|(_, c)| c.is_some()).count(), 1);
    }

    #[test]
    fn bad_emergency_settings_are_refused_naming_the_key() {
        for (top, app, want) in [
            ("[emergency.P1]\ncanary_duration = \"0s\"", "", "emergency.P1.canary_duration must be more than 0s"),
            ("[emergency.P0]\ncanary_duration = \"30s\"", "", "emergency.P0.canary_duration: a P0 fix"),
            ("[emergency.P2]\nmonitoring_duration = \"0s\"", "", "emergency.P2.monitoring_duration"),
            (
                "[emergency.P1]\nenvironments = [\"dev\"]",
                "",
                "no environment is named `dev` (environments: prod, staging)",
            ),
            ("[emergency.P3]\ncanary_duration = \"1s\"", "", "P3"),
            ("[emergency.P1]\ncanary_percent = 5", "", "canary_percent"),
            ("", "[apps.emergency]\nbuild = \" \"", "apps `a`: emergency.build is empty"),
            ("", "[apps.emergency]\ntest_timeout = \"0s\"", "apps `a`: emergency.test_timeout must be more than 0s"),
            ("", "[apps.emergency.critical_tests]\nsecurty = \"true\"", "securty"),
            (
                "",
                "[apps.emergency.critical_tests]\napi_contract = \"\"",
                "emergency.critical_tests.api_contract is empty",
            ),
        ] {
            let err = estate(top, app).unwrap_err();
            assert!(err.contains("e.toml") && err.contains(want), "{top}{app}: {err}");
        }
    }
}
