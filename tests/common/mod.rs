//! Running the real `shipdeck` binary on an isolated data dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub struct Shipdeck {
    pub dir: tempfile::TempDir,
}

impl Shipdeck {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shipdeck"));
        c.arg("--data-dir").arg(self.dir.path()).args(args);
        c.env_remove("SHIPDECK_DATA_DIR").env_remove("SHIPDECK_ESTATE").env("SHIPDECK_USER", "alice");
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run shipdeck")
    }

    /// Runs and returns (exit code, stdout, stderr).
    pub fn sh(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.run(args);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into(),
            String::from_utf8_lossy(&o.stderr).into(),
        )
    }

    /// `--json` output, one object per line.
    pub fn json(&self, args: &[&str]) -> (i32, Vec<Value>) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (code, out, err) = self.sh(&all);
        let lines = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\nstderr: {err}")))
            .collect();
        (code, lines)
    }

    /// The release objects of `history --json`, newest first.
    pub fn history(&self, app: &str) -> Vec<Value> {
        let (code, lines) = self.json(&["history", "--app", app]);
        assert_eq!(code, 0);
        lines.into_iter().filter(|l| l["type"] == "release").collect()
    }

    /// The recorded workload of app in env from `status --json`.
    pub fn workload(&self, env: &str, app: &str) -> Value {
        let (code, lines) = self.json(&["status", "--env", env, "--app", app]);
        assert_eq!(code, 0);
        lines[0]["workloads"][0].clone()
    }
}

pub fn statuses(release: &Value) -> Vec<String> {
    release["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|t| t["to"].as_str().unwrap_or("").to_string())
        .collect()
}

pub fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}
