//! Where shipdeck keeps its state: one data directory holds the store, the lock and logs.

use std::path::{Path, PathBuf};

pub const DATA_DIR_ENV: &str = "SHIPDECK_DATA_DIR";

/// `--data-dir`, else `$SHIPDECK_DATA_DIR`, else the platform's data directory.
pub fn data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    directories::ProjectDirs::from("dev", "shipdeck", "shipdeck")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".shipdeck"))
}

pub fn store_file(data_dir: &Path) -> PathBuf {
    data_dir.join("shipdeck.db")
}

pub fn lock_file(data_dir: &Path) -> PathBuf {
    data_dir.join("shipdeck.lock")
}

pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// Who is acting: `--as`, else `$SHIPDECK_USER`, else the OS user.
pub fn identity(flag: Option<&str>) -> String {
    if let Some(a) = flag.filter(|a| !a.trim().is_empty()) {
        return a.trim().to_string();
    }
    for var in ["SHIPDECK_USER", "USER", "LOGNAME", "USERNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return v.trim().to_string();
        }
    }
    "unknown".into()
}
