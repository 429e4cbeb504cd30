//! Release notes from git: the commits between the version that ran before and the new one,
//! read as conventional commits (`type(scope)!: subject`) and grouped as breaking changes,
//! features, fixes and other.
//!
//! The `git` command does the reading (it is on every machine that builds software, and it
//! reads every repository format and configuration a team uses, which a library may not);
//! each call has a timeout and is killed if the notes are no longer wanted.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;

use crate::model::{AppSettings, Change, ReleaseNotes};

/// At most this many commits are listed; the notes say when there were more.
pub const MAX_COMMITS: usize = 500;
const GIT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotesError {
    #[error("{app} has no `repo` in the estate; add `repo = \"PATH\"` (a local git repository) to the app")]
    NoRepo { app: String },
    #[error("git has no ref for {app} {version} in {repo} (tried {tried}); tag the release, or set `tag` on the app")]
    UnknownRef { app: String, version: String, repo: String, tried: String },
    #[error("git failed in {repo}: {message}")]
    Git { repo: String, message: String },
}

impl NotesError {
    /// True when the estate or the arguments are at fault, false when git could not run.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, NotesError::Git { .. })
    }
}

/// The notes of `version` of the app since `from` (None: from the start of its history); a
/// problem (no repo, no tag, git failing) is told in the notes, never an error.
pub async fn generate(settings: &AppSettings, from: Option<&str>, version: &str) -> ReleaseNotes {
    match try_generate(settings, from, version).await {
        Ok(n) => n,
        Err(e) => ReleaseNotes::unavailable(&settings.name, version, from, e.to_string()),
    }
}

/// As [`generate`], with the problem as an error.
pub async fn try_generate(
    settings: &AppSettings,
    from: Option<&str>,
    version: &str,
) -> Result<ReleaseNotes, NotesError> {
    let app = settings.name.as_str();
    let repo = settings.repo.as_deref().ok_or_else(|| NotesError::NoRepo { app: app.to_string() })?;
    let to_ref = resolve(repo, app, settings.tag.as_deref(), version).await?;
    let from_ref = match from {
        Some(f) => Some(resolve(repo, app, settings.tag.as_deref(), f).await?),
        None => None,
    };
    let (range, shown) = match &from_ref {
        Some((hash, name)) => (format!("{hash}..{}", to_ref.0), format!("{name}..{}", to_ref.1)),
        None => (to_ref.0.clone(), to_ref.1.clone()),
    };
    let max = format!("--max-count={}", MAX_COMMITS + 1);
    let log = git(
        repo,
        &["-c", "log.showSignature=false", "log", "--no-merges", &max, "--format=%H%x1f%an%x1f%B%x1e", &range],
    )
    .await?;
    let mut changes: Vec<Change> = log
        .split('\u{1e}')
        .map(|r| r.trim_start_matches('\n'))
        .filter(|r| !r.trim().is_empty())
        .filter_map(|record| {
            let mut fields = record.splitn(3, '\u{1f}');
            let (hash, author, message) = (fields.next()?, fields.next()?, fields.next()?);
            Some(parse_commit(hash, author, message))
        })
        .collect();
    let truncated = changes.len() > MAX_COMMITS;
    changes.truncate(MAX_COMMITS);
    let mut notes = ReleaseNotes::unavailable(app, version, from, "");
    notes.problem = None;
    notes.range = Some(shown);
    notes.truncated = truncated;
    notes.generated_at = Utc::now();
    for c in changes {
        match (c.breaking, c.kind.as_deref()) {
            (true, _) => notes.breaking.push(c),
            (false, Some("feat")) => notes.features.push(c),
            (false, Some("fix")) => notes.fixes.push(c),
            _ => notes.other.push(c),
        }
    }
    Ok(notes)
}

/// The version before `version` in the order the estate lists the app's versions.
pub fn previous_in_estate(settings: &AppSettings, version: &str) -> Option<String> {
    let versions = settings.known_versions();
    let i = versions.iter().position(|v| *v == version)?;
    i.checked_sub(1).map(|p| versions[p].to_string())
}

/// The commit a version is tagged at: the app's `tag` template, else `v{version}`, then `{version}`.
async fn resolve(
    repo: &Path,
    app: &str,
    template: Option<&str>,
    version: &str,
) -> Result<(String, String), NotesError> {
    let candidates = match template {
        Some(t) => vec![t.replace("{version}", version)],
        None => vec![format!("v{version}"), version.to_string()],
    };
    for name in &candidates {
        if name.starts_with('-') {
            continue;
        }
        let spec = format!("refs/tags/{name}^{{commit}}");
        let by_tag = git(repo, &["rev-parse", "--verify", "--quiet", &spec]).await;
        let found = match by_tag {
            Ok(h) => Ok(h),
            Err(_) => git(repo, &["rev-parse", "--verify", "--quiet", &format!("{name}^{{commit}}")]).await,
        };
        if let Ok(hash) = found {
            let hash = hash.trim().to_string();
            if !hash.is_empty() {
                return Ok((hash, name.clone()));
            }
        }
    }
    // Tell a missing repository apart from a missing tag.
    git(repo, &["rev-parse", "--git-dir"]).await?;
    Err(NotesError::UnknownRef {
        app: app.to_string(),
        version: version.to_string(),
        repo: repo.display().to_string(),
        tried: candidates.join(", "),
    })
}

async fn git(repo: &Path, args: &[&str]) -> Result<String, NotesError> {
    let err = |message: String| NotesError::Git { repo: repo.display().to_string(), message };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err("the `git` command is not installed or not on PATH".into()));
        }
        Ok(Err(e)) => return Err(err(e.to_string())),
        Err(_) => return Err(err(format!("git {} took more than {GIT_TIMEOUT:?}", args.join(" ")))),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        return Err(err(format!("{} ({})", first.trim(), out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One commit as a conventional commit; a subject that is not one keeps its whole first line.
pub fn parse_commit(hash: &str, author: &str, message: &str) -> Change {
    let mut lines = message.lines();
    let header = lines.next().unwrap_or_default().trim();
    let breaking_note = lines.find_map(|l| {
        l.strip_prefix("BREAKING CHANGE:").or_else(|| l.strip_prefix("BREAKING-CHANGE:")).map(|n| n.trim().to_string())
    });
    let commit: String = hash.trim().chars().take(12).collect();
    let plain = Change {
        commit: commit.clone(),
        kind: None,
        scope: None,
        subject: header.to_string(),
        breaking: breaking_note.is_some(),
        breaking_note: breaking_note.clone(),
        author: author.trim().to_string(),
    };
    let Some((prefix, subject)) = header.split_once(':') else { return plain };
    let subject = subject.trim();
    let (prefix, bang) = match prefix.strip_suffix('!') {
        Some(p) => (p, true),
        None => (prefix, false),
    };
    let (kind, scope) = match prefix.split_once('(') {
        Some((k, rest)) => match rest.strip_suffix(')') {
            Some(s) if !s.trim().is_empty() && !s.contains(['(', ')']) => (k, Some(s.trim().to_string())),
            _ => return plain,
        },
        None => (prefix, None),
    };
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !word(kind) || subject.is_empty() {
        return plain;
    }
    Change {
        kind: Some(kind.to_ascii_lowercase()),
        scope,
        subject: subject.to_string(),
        breaking: bang || breaking_note.is_some(),
        ..plain
    }
}

#[cfg(test)]
mod tests;
