//! Helpers for the notifier's tests: a git repository with known commits.

use std::path::PathBuf;

/// A git repository in a temp dir; commits are empty and dated one minute apart.
pub struct Repo {
    dir: tempfile::TempDir,
    n: u32,
}

impl Repo {
    pub fn new() -> Self {
        let r = Repo { dir: tempfile::tempdir().unwrap(), n: 0 };
        r.git(&["init", "--quiet", "--initial-branch=main"]);
        r
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn git(&self, args: &[&str]) {
        let date = format!("2024-01-01T00:{:02}:00Z", self.n);
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(self.dir.path())
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Ann Author")
            .env("GIT_AUTHOR_EMAIL", "ann@example.test")
            .env("GIT_COMMITTER_NAME", "Ann Author")
            .env("GIT_COMMITTER_EMAIL", "ann@example.test")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn commit(&mut self, message: &str) {
        self.n += 1;
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
    }

    pub fn tag(&self, name: &str) {
        self.git(&["tag", name]);
    }
}
