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
}

impl Emergency {
    /// The id for an emergency created at `at`.
    pub fn id_for(at: DateTime<Utc>) -> String {
        format!("ER-{}", at.format("%Y%m%d%H%M%S"))
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
    }
}
