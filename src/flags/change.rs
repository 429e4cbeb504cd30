//! One change to one flag, done the same way whoever asks (the engine for the console and a
//! holder's control socket, or the command line when no shipdeck holds the data dir): saved
//! atomically with conflict detection, then recorded with the flag before and after, and in
//! the audit log.

use chrono::Utc;

use super::{FlagError, FlagSet, FlagStore, FlagView};
use crate::model::{AuditEntry, FlagChange, FlagSetting, FlagTo};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Flag(#[from] FlagError),
    /// The file was saved; recording the change failed.
    #[error("flag {key} was changed, but recording it failed: {message}")]
    Record { key: String, message: String },
}

/// Applies `change` to flag `key` and records it as `action` by `actor`.
pub async fn apply(
    flags: &dyn FlagStore,
    db: &Store,
    actor: &str,
    key: &str,
    action: &str,
    change: impl FnOnce(&mut FlagSet) -> Result<(), FlagError> + Send,
) -> Result<FlagView, ChangeError> {
    let views = apply_many(flags, db, actor, None, &[(key.to_string(), action.to_string())], change).await?;
    views.into_iter().next().ok_or_else(|| FlagError::Unknown { key: key.to_string(), known: String::new() }.into())
}

/// Applies `change`, which edits the flags named in `edits` (key, action), in one save, and
/// records each with its before and after, and with the release that carries them if any.
pub async fn apply_many(
    flags: &dyn FlagStore,
    db: &Store,
    actor: &str,
    release_id: Option<&str>,
    edits: &[(String, String)],
    change: impl FnOnce(&mut FlagSet) -> Result<(), FlagError> + Send,
) -> Result<Vec<FlagView>, ChangeError> {
    let mut before = Vec::new();
    let set = flags
        .update(|s| {
            before = edits.iter().map(|(k, _)| s.flag(k).cloned()).collect();
            change(s)
        })
        .await?;
    let views = set.views();
    let at = Utc::now();
    let mut out = Vec::new();
    for ((key, action), before) in edits.iter().zip(before) {
        let view = views
            .iter()
            .find(|f| &f.key == key)
            .cloned()
            .ok_or_else(|| FlagError::Unknown { key: key.clone(), known: set.keys().join(", ") })?;
        let record = FlagChange {
            at,
            actor: actor.to_string(),
            flag: key.clone(),
            action: action.clone(),
            before,
            after: set.flag(key).cloned(),
            release_id: release_id.map(str::to_string),
        };
        let entry = AuditEntry {
            at,
            actor: actor.to_string(),
            action: "flag".into(),
            target: key.clone(),
            detail: action.clone(),
        };
        let recorded = db.add_flag_change(&record).and_then(|()| db.audit(&entry));
        recorded.map_err(|e| ChangeError::Record { key: key.clone(), message: e.to_string() })?;
        out.push(view);
    }
    Ok(out)
}

/// The edit of one setting a release carries.
pub fn set(s: &mut FlagSet, setting: &FlagSetting) -> Result<(), FlagError> {
    match setting.to {
        FlagTo::On => s.set_enabled(&setting.flag, true),
        FlagTo::Off => s.set_enabled(&setting.flag, false),
        FlagTo::Percent(p) => {
            s.set_enabled(&setting.flag, true)?;
            s.set_rollout(&setting.flag, p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::FileFlagStore;

    #[tokio::test]
    async fn a_change_is_saved_and_recorded_with_the_flag_before_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let flags = FileFlagStore::open(&dir.path().join("flags.json"), Some(super::super::DEMO_FLAGS)).unwrap();
        let db = Store::open_in_memory().unwrap();
        let key = flags.load().unwrap().0.keys()[0].clone();
        let view = apply(&flags, &db, "alice", &key, "turned off", |s| s.set_enabled(&key, false)).await.unwrap();
        assert!(!view.enabled);
        let changes = db.flag_changes(Some(&key), 10).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].action, "turned off");
        assert_eq!(changes[0].after.as_ref().and_then(|f| f["state"].as_str()), Some("DISABLED"));
        assert!(changes[0].before.is_some());
        assert_eq!(db.audit_log(Some(&key), 10).unwrap()[0].detail, "turned off");
    }

    #[tokio::test]
    async fn an_unknown_flag_changes_nothing_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        let flags = FileFlagStore::open(&path, Some(super::super::DEMO_FLAGS)).unwrap();
        let on_disk = std::fs::read_to_string(&path).unwrap();
        let db = Store::open_in_memory().unwrap();
        let err =
            apply(&flags, &db, "alice", "nope", "turned off", |s| s.set_enabled("nope", false)).await.unwrap_err();
        assert!(err.to_string().contains("no flag named `nope`"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), on_disk);
        assert!(db.flag_changes(None, 10).unwrap().is_empty());
    }
}
