//! Release notes and webhook channels: plain data. Making notes from git and delivering
//! webhooks live in `notify`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// One commit, read as a conventional commit (`type(scope)!: subject`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The commit's hash, abbreviated to 12 characters.
    pub commit: String,
    /// `feat`, `fix`, `docs`, …; None when the subject is not a conventional commit.
    pub kind: Option<String>,
    pub scope: Option<String>,
    pub subject: String,
    /// `!` after the type, or a `BREAKING CHANGE:` footer.
    pub breaking: bool,
    /// The text of the `BREAKING CHANGE:` footer, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaking_note: Option<String>,
    pub author: String,
}

/// What changed between two versions of an app, grouped; or why that could not be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseNotes {
    pub app: String,
    pub version: String,
    /// The version the notes start from (None: from the start of history).
    pub from: Option<String>,
    /// The git range that was read, e.g. `v1.4.0..v1.5.0`.
    pub range: Option<String>,
    pub breaking: Vec<Change>,
    pub features: Vec<Change>,
    pub fixes: Vec<Change>,
    pub other: Vec<Change>,
    /// Why there are no notes (no repo, a version without a tag, git failed).
    pub problem: Option<String>,
    /// More commits than the notes list were in the range.
    #[serde(default)]
    pub truncated: bool,
    pub generated_at: DateTime<Utc>,
}

impl ReleaseNotes {
    /// Notes that say why they could not be made.
    pub fn unavailable(app: &str, version: &str, from: Option<&str>, problem: impl Into<String>) -> Self {
        Self {
            app: app.to_string(),
            version: version.to_string(),
            from: from.map(String::from),
            range: None,
            breaking: Vec::new(),
            features: Vec::new(),
            fixes: Vec::new(),
            other: Vec::new(),
            problem: Some(problem.into()),
            truncated: false,
            generated_at: Utc::now(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.breaking.is_empty() && self.features.is_empty() && self.fixes.is_empty() && self.other.is_empty()
    }

    /// The groups in the order they are shown, with their titles.
    pub fn groups(&self) -> [(&'static str, &[Change]); 4] {
        [
            ("Breaking changes", &self.breaking),
            ("Features", &self.features),
            ("Fixes", &self.fixes),
            ("Other", &self.other),
        ]
    }

    /// `2 breaking, 3 features, 1 fix, 4 other`, or the problem.
    pub fn summary(&self) -> String {
        if let Some(p) = &self.problem {
            return format!("no release notes: {p}");
        }
        if self.is_empty() {
            return "no commits in the range".into();
        }
        let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        [
            plural(self.breaking.len(), "breaking", "breaking"),
            plural(self.features.len(), "feature", "features"),
            plural(self.fixes.len(), "fix", "fixes"),
            plural(self.other.len(), "other", "other"),
        ]
        .join(", ")
    }

    /// Markdown: a title, then one section per non-empty group.
    pub fn to_markdown(&self) -> String {
        let from = self.from.as_deref().map(|f| format!(" (since {f})")).unwrap_or_default();
        let mut out = format!("# {} {}{from}\n", self.app, self.version);
        if let Some(p) = &self.problem {
            out.push_str(&format!("\nNo release notes: {p}\n"));
            return out;
        }
        if self.is_empty() {
            out.push_str("\nNo commits in the range.\n");
        }
        for (title, changes) in self.groups() {
            if changes.is_empty() {
                continue;
            }
            out.push_str(&format!("\n## {title}\n"));
            for c in changes {
                out.push_str(&format!("- {}\n", c.line()));
            }
        }
        if self.truncated {
            out.push_str("\n(more commits than shown)\n");
        }
        out
    }
}

impl Change {
    /// `scope: subject (abc123def456)`, with the breaking footer when there is one.
    pub fn line(&self) -> String {
        let scope = self.scope.as_deref().map(|s| format!("{s}: ")).unwrap_or_default();
        let mut s = format!("{scope}{} ({})", self.subject, self.commit);
        if let Some(note) = &self.breaking_note {
            s.push_str(&format!(" — {note}"));
        }
        s
    }
}

/// The payload a channel receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelFormat {
    /// `{"text": …}`, which Slack's and compatible incoming webhooks accept.
    Slack,
    /// `{"event", "severity", "release" | "emergency", "text", "notes"}`.
    Json,
}

/// Who a channel reaches, for routing emergencies by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    Oncall,
    Executives,
    TechLeads,
    Standard,
}

/// What a channel can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    ReleaseStarted,
    ApprovalRequested,
    ReleaseVerified,
    ReleaseFailed,
    RolledBack,
    ReleaseAborted,
    EmergencyCreated,
    EmergencyCompleted,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 8] = [
        NotifyEvent::ReleaseStarted,
        NotifyEvent::ApprovalRequested,
        NotifyEvent::ReleaseVerified,
        NotifyEvent::ReleaseFailed,
        NotifyEvent::RolledBack,
        NotifyEvent::ReleaseAborted,
        NotifyEvent::EmergencyCreated,
        NotifyEvent::EmergencyCompleted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::ReleaseStarted => "release_started",
            NotifyEvent::ApprovalRequested => "approval_requested",
            NotifyEvent::ReleaseVerified => "release_verified",
            NotifyEvent::ReleaseFailed => "release_failed",
            NotifyEvent::RolledBack => "rolled_back",
            NotifyEvent::ReleaseAborted => "release_aborted",
            NotifyEvent::EmergencyCreated => "emergency_created",
            NotifyEvent::EmergencyCompleted => "emergency_completed",
        }
    }

    pub fn is_emergency(self) -> bool {
        matches!(self, NotifyEvent::EmergencyCreated | NotifyEvent::EmergencyCompleted)
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[[notifications]]` in the estate: one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub name: String,
    pub url: String,
    #[serde(default = "default_format")]
    pub format: ChannelFormat,
    /// The events it is told about; default: every event.
    #[serde(default = "all_events")]
    pub events: Vec<NotifyEvent>,
    /// Who it reaches; emergencies go to channels of their severity's audiences. Default: standard.
    #[serde(default = "standard")]
    pub audience: Vec<Audience>,
    /// Only releases in these environments; default: every environment.
    #[serde(default)]
    pub environments: Vec<String>,
    /// How long one attempt may take.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Attempts before a delivery is given up (1-10).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each next one, at most 30 s.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
}

fn default_format() -> ChannelFormat {
    ChannelFormat::Json
}
fn all_events() -> Vec<NotifyEvent> {
    NotifyEvent::ALL.to_vec()
}
fn standard() -> Vec<Audience> {
    vec![Audience::Standard]
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_attempts() -> u32 {
    4
}
fn default_backoff() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(500))
}

/// One delivery to a channel, after its last attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub at: DateTime<Utc>,
    pub channel: String,
    pub event: String,
    /// The release or emergency it was about.
    pub subject: String,
    pub attempts: u32,
    pub ok: bool,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}
