//! Emergency releases: what went wrong, how bad, and the plan the standard prescribes for it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// What kind of emergency a hotfix answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmergencyType {
    SecurityPatch,
    CriticalBug,
    DataCorruption,
    ServiceOutage,
    ComplianceIssue,
}

impl EmergencyType {
    pub const ALL: [EmergencyType; 5] = [
        EmergencyType::SecurityPatch,
        EmergencyType::CriticalBug,
        EmergencyType::DataCorruption,
        EmergencyType::ServiceOutage,
        EmergencyType::ComplianceIssue,
    ];

    /// The name used in files, on the command line and in JSON (`security_patch`, …).
    pub fn name(self) -> &'static str {
        match self {
            EmergencyType::SecurityPatch => "security_patch",
            EmergencyType::CriticalBug => "critical_bug",
            EmergencyType::DataCorruption => "data_corruption",
            EmergencyType::ServiceOutage => "service_outage",
            EmergencyType::ComplianceIssue => "compliance_issue",
        }
    }

    /// Accepts `security_patch`, `security-patch` or `security patch`, in any case.
    pub fn parse(s: &str) -> Option<Self> {
        let norm = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Self::ALL.into_iter().find(|t| t.name() == norm)
    }
}

/// P0 (everything is down or data is at risk) to P2 (serious, can wait for a controlled rollout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    P0,
    P1,
    P2,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::P0, Severity::P1, Severity::P2];

    pub fn name(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
            Severity::P2 => "P2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name().eq_ignore_ascii_case(s.trim()))
    }
}

/// pending_approval → approved → executing → completed, or → failed / rolled_back / abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmergencyStatus {
    PendingApproval,
    Approved,
    Executing,
    Completed,
    Failed,
    RolledBack,
    Abandoned,
}

impl EmergencyStatus {
    pub const ALL: [EmergencyStatus; 7] = [
        EmergencyStatus::PendingApproval,
        EmergencyStatus::Approved,
        EmergencyStatus::Executing,
        EmergencyStatus::Completed,
        EmergencyStatus::Failed,
        EmergencyStatus::RolledBack,
        EmergencyStatus::Abandoned,
    ];

    /// The serde name (`pending_approval`, …), as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            EmergencyStatus::PendingApproval => "pending_approval",
            EmergencyStatus::Approved => "approved",
            EmergencyStatus::Executing => "executing",
            EmergencyStatus::Completed => "completed",
            EmergencyStatus::Failed => "failed",
            EmergencyStatus::RolledBack => "rolled_back",
            EmergencyStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EmergencyStatus::Completed
                | EmergencyStatus::Failed
                | EmergencyStatus::RolledBack
                | EmergencyStatus::Abandoned
        )
    }
}

/// The rollout a severity prescribes (the standard's Emergency Release Procedures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmergencyPlan {
    /// `immediate` (P0), `rapid` (P1) or `controlled` (P2).
    pub strategy: String,
    /// Environments in the order the fix goes out.
    pub environments: Vec<String>,
    /// Share of traffic the canary gets; 0 means no canary.
    pub canary_percent: u32,
    pub canary_duration: HumanDuration,
    pub approval_required: bool,
    /// Approvals needed, each from a different person other than the requester.
    pub approvals_needed: u32,
    pub monitoring_duration: HumanDuration,
    /// Error rate above which the fix is rolled back (0.05 = 5%).
    pub rollback_threshold: f64,
}

impl EmergencyPlan {
    /// The standard's plan for a severity, before any estate override.
    pub fn standard(severity: Severity) -> Self {
        let env = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        match severity {
            Severity::P0 => EmergencyPlan {
                strategy: "immediate".into(),
                environments: env(&["prod", "staging", "dev"]),
                canary_percent: 0,
                canary_duration: HumanDuration::default(),
                approval_required: false,
                approvals_needed: 0,
                monitoring_duration: HumanDuration::from_secs(5 * 60),
                rollback_threshold: 0.05,
            },
            Severity::P1 => EmergencyPlan {
                strategy: "rapid".into(),
                environments: env(&["prod", "staging"]),
                canary_percent: 10,
                canary_duration: HumanDuration::from_secs(10 * 60),
                approval_required: true,
                approvals_needed: 2,
                monitoring_duration: HumanDuration::from_secs(30 * 60),
                rollback_threshold: 0.02,
            },
            Severity::P2 => EmergencyPlan {
                strategy: "controlled".into(),
                environments: env(&["staging", "prod"]),
                canary_percent: 25,
                canary_duration: HumanDuration::from_secs(30 * 60),
                approval_required: true,
                approvals_needed: 2,
                monitoring_duration: HumanDuration::from_secs(60 * 60),
                rollback_threshold: 0.01,
            },
        }
    }

    /// This plan with the estate's overrides for its severity applied.
    pub fn with(mut self, over: Option<&PlanOverride>) -> Self {
        let Some(o) = over else { return self };
        if let Some(d) = o.canary_duration
            && self.canary_percent > 0
        {
            self.canary_duration = d;
        }
        if let Some(d) = o.monitoring_duration {
            self.monitoring_duration = d;
        }
        if let Some(envs) = &o.environments {
            self.environments = envs.clone();
        }
        self
    }

    /// One line: `rapid: prod → staging, 10% canary for 10m, monitor 30m, roll back above 2.0% errors, 2 approvals`.
    pub fn summary(&self) -> String {
        let canary = if self.canary_percent == 0 {
            "no canary".to_string()
        } else {
            format!("{}% canary for {}", self.canary_percent, self.canary_duration)
        };
        let approvals = if self.approval_required {
            format!("{} approvals from people other than the requester", self.approvals_needed)
        } else {
            "no approval (notify instead)".to_string()
        };
        format!(
            "{}: {}, {canary}, monitor {}, roll back above {:.1}% errors, {approvals}",
            self.strategy,
            self.environments.join(" → "),
            self.monitoring_duration,
            self.rollback_threshold * 100.0
        )
    }
}

/// `[emergency.P1]` in the estate: what the estate changes in the standard's plan of a severity
/// (the demo shortens the durations so a demo takes minutes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_duration: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring_duration: Option<HumanDuration>,
    /// For estates whose environments are not named prod, staging and dev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<String>>,
}

/// The estate's `[emergency]` table: an override per severity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyOverrides {
    #[serde(rename = "P0", default, skip_serializing_if = "Option::is_none")]
    pub p0: Option<PlanOverride>,
    #[serde(rename = "P1", default, skip_serializing_if = "Option::is_none")]
    pub p1: Option<PlanOverride>,
    #[serde(rename = "P2", default, skip_serializing_if = "Option::is_none")]
    pub p2: Option<PlanOverride>,
}

impl EmergencyOverrides {
    pub fn get(&self, severity: Severity) -> Option<&PlanOverride> {
        match severity {
            Severity::P0 => self.p0.as_ref(),
            Severity::P1 => self.p1.as_ref(),
            Severity::P2 => self.p2.as_ref(),
        }
    }
}

/// An app's `[apps.emergency]`: how a fix is built and which critical suites test it. Commands
/// run with `sh -c`, with `SHIPDECK_APP`, `SHIPDECK_VERSION` and `SHIPDECK_SUITE` set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyCommands {
    /// Builds the fix; absent: nothing to build (the log says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(default = "default_command_timeout")]
    pub build_timeout: HumanDuration,
    #[serde(default)]
    pub critical_tests: CriticalTests,
    /// Each suite is stopped (and failed) after this long.
    #[serde(default = "default_command_timeout")]
    pub test_timeout: HumanDuration,
}

fn default_command_timeout() -> HumanDuration {
    HumanDuration::from_secs(10 * 60)
}

impl Default for EmergencyCommands {
    fn default() -> Self {
        Self {
            build: None,
            build_timeout: default_command_timeout(),
            critical_tests: CriticalTests::default(),
            test_timeout: default_command_timeout(),
        }
    }
}

/// The four critical suites an emergency runs instead of the full test suite; an absent one
/// is counted as skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticalTests {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_integrity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_contract: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_path: Option<String>,
}

impl CriticalTests {
    /// Every suite in the order they run, with its command if the app has one.
    pub fn suites(&self) -> [(&'static str, Option<&str>); 4] {
        [
            ("security", self.security.as_deref()),
            ("data_integrity", self.data_integrity.as_deref()),
            ("api_contract", self.api_contract.as_deref()),
            ("critical_path", self.critical_path.as_deref()),
        ]
    }
}

/// Critical suites run for an emergency, over every affected app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCounts {
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
}

/// One emergency release and what has happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emergency {
    /// `ER-<UTC yyyymmddHHMMSS>`.
    pub id: String,
    pub kind: EmergencyType,
    pub severity: Severity,
    pub description: String,
    pub affected_services: Vec<String>,
    pub fix_version: String,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub approvers: Vec<String>,
    pub status: EmergencyStatus,
    pub plan: EmergencyPlan,
    pub log: Vec<EmergencyLogEntry>,
    /// When it reached a terminal status.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it failed or was rolled back.
    pub cause: Option<String>,
    /// The critical suites' results, once they ran.
    #[serde(default)]
    pub tests: Option<TestCounts>,
}

impl Emergency {
    /// The id for an emergency created at `at`.
    pub fn id_for(at: DateTime<Utc>) -> String {
        format!("ER-{}", at.format("%Y%m%d%H%M%S"))
    }

    /// Approvals still missing before it may run.
    pub fn approvals_missing(&self) -> u32 {
        if self.plan.approval_required {
            self.plan.approvals_needed.saturating_sub(self.approvers.len() as u32)
        } else {
            0
        }
    }
}

/// One line of an emergency's execution log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmergencyLogEntry {
    pub at: DateTime<Utc>,
    /// `build`, `tests`, `deploy prod`, `verify prod`, `rollback`, …
    pub step: String,
    pub ok: bool,
    pub message: String,
}

/// One status change of an emergency, with its cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmergencyTransition {
    pub emergency_id: String,
    pub from: Option<EmergencyStatus>,
    pub to: EmergencyStatus,
    pub cause: String,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_the_standards() {
        let p0 = EmergencyPlan::standard(Severity::P0);
        assert_eq!(p0.environments, ["prod", "staging", "dev"]);
        assert!(!p0.approval_required && p0.canary_percent == 0 && p0.rollback_threshold == 0.05);
        let p1 = EmergencyPlan::standard(Severity::P1);
        assert_eq!(p1.environments, ["prod", "staging"]);
        assert_eq!(
            (p1.canary_percent, p1.canary_duration.0.as_secs(), p1.monitoring_duration.0.as_secs()),
            (10, 600, 1800)
        );
        let p2 = EmergencyPlan::standard(Severity::P2);
        assert_eq!(p2.environments, ["staging", "prod"]);
        assert_eq!(
            (p2.canary_percent, p2.canary_duration.0.as_secs(), p2.monitoring_duration.0.as_secs()),
            (25, 1800, 3600)
        );
        assert_eq!(p2.rollback_threshold, 0.01);
    }

    #[test]
    fn names_parse_back() {
        for t in EmergencyType::ALL {
            assert_eq!(EmergencyType::parse(t.name()), Some(t));
        }
        assert_eq!(EmergencyType::parse("Security Patch"), Some(EmergencyType::SecurityPatch));
        assert_eq!(Severity::parse("p1"), Some(Severity::P1));
        assert_eq!(Severity::parse("P3"), None);
        assert_eq!(Emergency::id_for(chrono::DateTime::UNIX_EPOCH), "ER-19700101000000");
        for s in EmergencyStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str(), "stored names are the serde names");
            assert_eq!(EmergencyStatus::parse(s.as_str()), Some(s));
        }
    }
}
