//! The flag store on a file: read whole, written whole and atomically (a temporary file in the
//! same directory, then a rename), so a watching flagd never reads half a file. A save whose
//! file changed on disk since it was read is refused as a conflict.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

pub use super::Revision;
use super::{FlagError, FlagSet, FlagStore};

pub struct FileFlagStore {
    path: PathBuf,
}

impl FileFlagStore {
    /// The store at `path`; when the file does not exist, `seed` is written there first.
    pub fn open(path: &Path, seed: Option<&str>) -> Result<Self, FlagError> {
        let store = Self { path: path.to_path_buf() };
        if !path.exists()
            && let Some(seed) = seed
        {
            FlagSet::parse(seed, "the embedded demo flags")?;
            store.write(seed)?;
        }
        store.load()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: std::io::Error) -> FlagError {
        FlagError::Io { path: self.path.display().to_string(), message: e.to_string() }
    }

    pub fn load(&self) -> Result<(FlagSet, Revision), FlagError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.io(e))?;
        let set = FlagSet::parse(&text, &self.path.display().to_string())?;
        Ok((set, Revision(text)))
    }

    /// Save `set` if the file still holds what `read` saw.
    pub fn save(&self, set: &FlagSet, read: &Revision) -> Result<Revision, FlagError> {
        let now = std::fs::read_to_string(&self.path).map_err(|e| self.io(e))?;
        if now != read.0 {
            return Err(FlagError::Conflict { what: format!("flag file {} changed on disk", self.path.display()) });
        }
        let text = set.to_json();
        // Never write a file that would not load again (e.g. a restored definition whose `$ref`
        // was removed meanwhile): every later read, and flagd, would refuse it.
        FlagSet::parse(&text, &self.path.display().to_string())?;
        self.write(&text)?;
        Ok(Revision(text))
    }

    fn write(&self, text: &str) -> Result<(), FlagError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("flags.json");
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))
    }

    /// Load, change, save; a conflict leaves the file as the other writer left it.
    pub fn update(&self, change: impl FnOnce(&mut FlagSet) -> Result<(), FlagError>) -> Result<FlagSet, FlagError> {
        let (mut set, rev) = self.load()?;
        change(&mut set)?;
        self.save(&set, &rev)?;
        Ok(set)
    }
}

#[async_trait]
impl FlagStore for FileFlagStore {
    fn describe(&self) -> String {
        format!("flag file {}", self.path.display())
    }

    async fn load(&self) -> Result<(FlagSet, Revision), FlagError> {
        FileFlagStore::load(self)
    }

    async fn save(&self, set: &FlagSet, read: &Revision) -> Result<Revision, FlagError> {
        FileFlagStore::save(self, set, read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_after_someone_else_changed_the_file_is_a_conflict_and_keeps_their_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        let store = FileFlagStore::open(&path, Some(super::super::DEMO_FLAGS)).unwrap();
        let (mut set, rev) = store.load().unwrap();
        let theirs = super::super::DEMO_FLAGS.replace("\"DISABLED\"", "\"ENABLED\"");
        std::fs::write(&path, &theirs).unwrap();
        set.set_enabled("dark-mode", false).unwrap();
        let err = store.save(&set, &rev).unwrap_err();
        assert!(matches!(err, FlagError::Conflict { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "flag file {} changed on disk since it was read; nothing was saved, reload and try again",
                path.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), theirs);
    }

    #[test]
    fn update_writes_the_whole_file_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        let store = FileFlagStore::open(&path, Some(super::super::DEMO_FLAGS)).unwrap();
        store.update(|s| s.set_enabled("dark-mode", false)).unwrap();
        let (set, _) = store.load().unwrap();
        assert!(!set.views().iter().find(|v| v.key == "dark-mode").unwrap().enabled);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
