//! Releases, their plans and statuses.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::estate::StrategyKind;

/// planned → in_progress → (paused ↔ in_progress) → deployed → verified, or → failed /
/// rolled_back / aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created, waiting for approvals or for its turn.
    Planned,
    InProgress,
    Paused,
    Deployed,
    Verified,
    Failed,
    RolledBack,
    Aborted,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Planned,
        Status::InProgress,
        Status::Paused,
        Status::Deployed,
        Status::Verified,
        Status::Failed,
        Status::RolledBack,
        Status::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Planned => "planned",
            Status::InProgress => "in_progress",
            Status::Paused => "paused",
            Status::Deployed => "deployed",
            Status::Verified => "verified",
            Status::Failed => "failed",
            Status::RolledBack => "rolled_back",
            Status::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The release will not move again by itself (an aborted one can still be retried).
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Verified | Status::Failed | Status::RolledBack | Status::Aborted)
    }

    /// Holds the app in its environment: no other release may start.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Planned | Status::InProgress | Status::Paused | Status::Deployed)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseKind {
    Deploy,
    Promotion,
    Rollback,
}

/// Where in the blue-green flow a verification runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyPhase {
    PrePromotion,
    PostPromotion,
    PostDeploy,
}

/// One step of a release's plan. Executing a step again from its start is always safe, which
/// is what makes a resume after a crash possible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    /// Run `replicas` pods of the new version and wait until they are ready.
    ScaleNew { replicas: u32 },
    /// Run `replicas` pods of the old version (scale it down).
    ScaleOld { replicas: u32 },
    /// One batch of a rolling update: old down to `old_before` (allowed by max_unavailable),
    /// new up to `new` and ready, then old down to `old_after`.
    RollingBatch { new: u32, old_before: u32, old_after: u32 },
    /// Weights: canary gets `weight`%, stable the rest. Canary pods are sized to the weight.
    SetWeight { weight: u32 },
    /// Wait this long, or (None) until resumed.
    Pause { seconds: Option<u64> },
    /// Measure the canary every `interval_secs`, at most `count` times, and let the judge and
    /// the metrics' conditions of `rules` decide.
    Analysis {
        interval_secs: u64,
        count: u32,
        inconclusive_limit: u32,
        #[serde(default)]
        rules: super::AnalysisRules,
    },
    /// All traffic and full size to the new version, old version removed.
    Promote,
    /// Point the preview entry at the new version (blue-green).
    Preview,
    /// Run the verification checks against the new version's pods.
    Verify { phase: VerifyPhase },
    /// Wait for the blue-green switch: automatic after `seconds`, or (None) on a resume.
    AwaitSwitch { seconds: Option<u64> },
    /// Point the active entry at the new version (blue-green).
    Switch,
    /// Wait `seconds`, then remove the old version's pods.
    RemoveOld { delay_secs: u64 },
    /// A/B: send the audience matching a header/cookie to the new version for `seconds`,
    /// then compare the two versions.
    AbExperiment { seconds: u64 },
    /// Apply the flag changes the release carries (after its verification).
    ApplyFlags { changes: Vec<FlagSetting> },
    /// Put back the flags release `release_id` changed (a rollback of it).
    RevertFlags { release_id: String },
    /// Watch the new version's error rate for `seconds`, one window every `interval_secs`:
    /// a window of at least `min_requests` requests above `max_error_rate` fails the release
    /// (an emergency fix's canary and its monitoring, with the plan's rollback threshold).
    Monitor { seconds: u64, interval_secs: u64, max_error_rate: f64, min_requests: u64 },
    /// Roll the app's own Deployment to the new version and follow its controller to the end
    /// (Kubernetes). `in_base`: the previous version ran in it (a rolling update of running
    /// pods); otherwise the previous version runs in its own Deployment, removed at the end.
    NativeRollout { strategy: crate::cluster::NativeStrategy, replicas: u32, in_base: bool },
    /// `kubectl rollout undo` of the app's own Deployment to `revision` (`--to-revision`), or to
    /// the newest revision that ran the release's version, followed to the end.
    NativeUndo {
        #[serde(default)]
        revision: Option<i64>,
    },
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::ScaleNew { replicas } => format!("scale new version to {replicas}"),
            Step::ScaleOld { replicas } => format!("scale old version to {replicas}"),
            Step::RollingBatch { new, old_after, .. } => format!("roll: new {new}, old {old_after}"),
            Step::SetWeight { weight } => format!("set weight {weight}%"),
            Step::Pause { seconds: Some(s) } => format!("pause {}", fmt_secs(*s)),
            Step::Pause { seconds: None } => "pause until resumed".into(),
            Step::Analysis { interval_secs, count, rules, .. } => {
                format!("analysis {count}×{} {}", fmt_secs(*interval_secs), rules.judge)
            }
            Step::Promote => "promote".into(),
            Step::Preview => "preview new colour".into(),
            Step::Verify { phase } => match phase {
                VerifyPhase::PrePromotion => "verify preview".into(),
                VerifyPhase::PostPromotion => "verify after switch".into(),
                VerifyPhase::PostDeploy => "verify".into(),
            },
            Step::AwaitSwitch { seconds: Some(s) } => format!("switch in {}", fmt_secs(*s)),
            Step::AwaitSwitch { seconds: None } => "switch when resumed".into(),
            Step::Switch => "switch active".into(),
            Step::RemoveOld { delay_secs } => format!("remove old after {}", fmt_secs(*delay_secs)),
            Step::AbExperiment { seconds } => format!("A/B for {}", fmt_secs(*seconds)),
            Step::ApplyFlags { changes } => {
                let list: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                format!("flags {}", list.join(", "))
            }
            Step::RevertFlags { .. } => "revert its flags".into(),
            Step::Monitor { seconds, max_error_rate, .. } => {
                format!("monitor {}, errors ≤ {:.1}%", fmt_secs(*seconds), max_error_rate * 100.0)
            }
            Step::NativeRollout { strategy, replicas, .. } => {
                format!("roll out deployment, {replicas} pods, {strategy}")
            }
            Step::NativeUndo { revision: None } => "rollout undo of the deployment".into(),
            Step::NativeUndo { revision: Some(r) } => format!("rollout undo of the deployment to revision {r}"),
        }
    }
}

pub fn fmt_secs(s: u64) -> String {
    crate::model::duration::HumanDuration(Duration::from_secs(s)).to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// `<env>-<app>-<version>-<UTC yyyymmddHHMMSS>`
    pub id: String,
    pub app: String,
    pub env: String,
    pub version: String,
    /// What ran before (the stable version); None for a first deploy.
    pub previous_version: Option<String>,
    pub strategy: StrategyKind,
    pub kind: ReleaseKind,
    /// For a promotion, the environment it came from.
    pub promoted_from: Option<String>,
    pub status: Status,
    pub plan: Vec<Step>,
    /// Index of the step running now (== plan.len() once every step is done).
    pub cursor: usize,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Why it is paused, failed, rolled back or aborted, in plain words.
    pub reason: Option<String>,
    /// Set when the process that drove it died while it was in progress.
    pub interrupted: bool,
    /// The router's current canary weight as this release last set it.
    pub weight: u32,
}

impl Release {
    pub fn make_id(env: &str, app: &str, version: &str, at: DateTime<Utc>) -> String {
        format!("{env}-{app}-{version}-{}", at.format("%Y%m%d%H%M%S"))
    }

    /// ` (promotion from dev)`, ` (rollback)` or nothing for a plain deploy.
    pub fn kind_label(&self) -> String {
        match (self.kind, &self.promoted_from) {
            (ReleaseKind::Promotion, Some(from)) => format!(" (promotion from {from})"),
            (ReleaseKind::Rollback, _) => " (rollback)".into(),
            _ => String::new(),
        }
    }

    pub fn current_step(&self) -> Option<&Step> {
        self.plan.get(self.cursor)
    }
}

/// A status change, stored with its time and its cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub release_id: String,
    pub from: Option<Status>,
    pub to: Status,
    pub cause: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Argo's Successful: enough traffic, no condition failed, the judge saw no harm.
    Pass,
    /// Argo's Failed: a condition failed, or the judge found the canary worse.
    Fail,
    Inconclusive,
    /// No canary requests in the window.
    NoData,
    /// The metrics provider failed; says nothing about the canary.
    Error,
}

impl Verdict {
    pub const ALL: [Verdict; 5] =
        [Verdict::Pass, Verdict::Fail, Verdict::Inconclusive, Verdict::NoData, Verdict::Error];

    /// How the console and the CLI show it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NoData => "no data",
            Verdict::Error => "ERROR",
        }
    }
}

/// One canary/A-B measurement: canary against stable over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub release_id: String,
    pub step: usize,
    pub at: DateTime<Utc>,
    pub verdict: Verdict,
    pub canary_requests: u64,
    pub canary_error_rate: Option<f64>,
    pub canary_p99_ms: Option<f64>,
    pub stable_requests: u64,
    pub stable_error_rate: Option<f64>,
    pub stable_p99_ms: Option<f64>,
    /// For a failure, the condition and the value that failed it.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub release_id: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// One change to a feature flag, with its definition (flagd JSON) before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagChange {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub flag: String,
    /// What was done, e.g. `turned off`, `rolled out to 25%`.
    pub action: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// The release that carried the change, when a flag travelled with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
}

/// An experiment on a flag: users split between a control and a treatment variant for a
/// duration, and what each variant's users got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResult {
    pub flag: String,
    pub app: String,
    pub env: String,
    pub hypothesis: String,
    pub control: String,
    pub treatment: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    /// Per variant: requests, errors, error rate, p50 and p99 over the whole experiment.
    pub variants: Vec<VariantResult>,
    /// What the comparison says, e.g. `treatment fails more: error_rate 0.140 vs 0.040 (…)`.
    pub conclusion: String,
    /// `fail`: the treatment did harm; `pass`: evidence it is no worse; `inconclusive`: neither.
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantResult {
    pub variant: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// A flag change a release carries: applied when the release is verified, reverted when it is
/// rolled back. Written `F=on`, `F=off` or `F=25%`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagSetting {
    pub flag: String,
    pub to: FlagTo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagTo {
    On,
    Off,
    /// On, with this share of users on `on`.
    Percent(u32),
}

impl FlagSetting {
    /// `F=on`, `F=off`, `F=25%`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (flag, to) = text
            .split_once('=')
            .filter(|(f, _)| !f.trim().is_empty())
            .ok_or_else(|| format!("`{text}`: write FLAG=on, FLAG=off or FLAG=25%"))?;
        Ok(Self { flag: flag.trim().to_string(), to: FlagTo::parse(to.trim()).map_err(|e| format!("`{text}`: {e}"))? })
    }
}

impl FlagTo {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "on" => Ok(FlagTo::On),
            "off" => Ok(FlagTo::Off),
            p => p
                .strip_suffix('%')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n <= 100)
                .map(FlagTo::Percent)
                .ok_or_else(|| format!("`{p}` is not on, off or a percentage 0-100% (e.g. 25%)")),
        }
    }
}

impl std::fmt::Display for FlagSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to {
            FlagTo::On => write!(f, "{}=on", self.flag),
            FlagTo::Off => write!(f, "{}=off", self.flag),
            FlagTo::Percent(p) => write!(f, "{}={p}%", self.flag),
        }
    }
}

/// The outcome of one step, kept for per-step durations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub release_id: String,
    pub index: usize,
    pub description: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
}
