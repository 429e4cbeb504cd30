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

pub const CONFIG_DIR_ENV: &str = "SHIPDECK_CONFIG_DIR";

/// Where user themes (`themes/*.toml`), `keymap.toml` and `config.toml` live:
/// `$SHIPDECK_CONFIG_DIR`, else the platform's config directory.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(CONFIG_DIR_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    directories::ProjectDirs::from("dev", "shipdeck", "shipdeck").map(|d| d.config_dir().to_path_buf())
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
    os_user().unwrap_or_else(|| "unknown".into())
}

/// The login name of the process's user, from the password database.
fn os_user() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name out at
    // once and never keep the pointer.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name).to_str().ok().map(str::to_string)
    }
}
