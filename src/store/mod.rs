//! Durable history in SQLite: releases and their transitions, steps, measurements,
//! approvals, the audit log, the desired state of each workload, release notes and webhook
//! deliveries.
//!
//! Every write is one transaction, committed before the function returns, so killing the
//! process right after a call loses nothing. The schema is versioned with
//! `PRAGMA user_version` and migrated forward on open.

mod codec;
mod emergencies;
#[cfg(test)]
mod fixtures;
mod flags;
mod history;
mod notify;
mod records;
mod releases;
mod steps;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use releases::ReleaseFilter;

/// Schema migrations, in order. Script `i` takes the database from `user_version` `i` to
/// `i + 1`. Never edit a script once released: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE releases (
        id               TEXT PRIMARY KEY NOT NULL,
        app              TEXT NOT NULL,
        env              TEXT NOT NULL,
        version          TEXT NOT NULL,
        previous_version TEXT,
        strategy         TEXT NOT NULL,
        kind             TEXT NOT NULL,
        promoted_from    TEXT,
        status           TEXT NOT NULL,
        plan             TEXT NOT NULL,
        cursor           INTEGER NOT NULL,
        requested_by     TEXT NOT NULL,
        created_at       TEXT NOT NULL,
        updated_at       TEXT NOT NULL,
        reason           TEXT,
        interrupted      INTEGER NOT NULL DEFAULT 0,
        weight           INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX releases_env_app_created ON releases (env, app, created_at);
    CREATE INDEX releases_status ON releases (status);

    CREATE TABLE transitions (
        id          INTEGER PRIMARY KEY,
        release_id  TEXT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
        from_status TEXT,
        to_status   TEXT NOT NULL,
        cause       TEXT NOT NULL,
        at          TEXT NOT NULL
    ) STRICT;
    CREATE INDEX transitions_release ON transitions (release_id);

    CREATE TABLE steps (
        release_id  TEXT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
        idx         INTEGER NOT NULL,
        description TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        outcome     TEXT,
        PRIMARY KEY (release_id, idx)
    ) STRICT;

    CREATE TABLE measurements (
        id                INTEGER PRIMARY KEY,
        release_id        TEXT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
        step              INTEGER NOT NULL,
        at                TEXT NOT NULL,
        verdict           TEXT NOT NULL,
        canary_requests   INTEGER NOT NULL,
        canary_error_rate REAL,
        canary_p99_ms     REAL,
        stable_requests   INTEGER NOT NULL,
        stable_error_rate REAL,
        stable_p99_ms     REAL,
        detail            TEXT NOT NULL
    ) STRICT;
    CREATE INDEX measurements_release ON measurements (release_id, at);

    CREATE TABLE approvals (
        id         INTEGER PRIMARY KEY,
        release_id TEXT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
        "by"       TEXT NOT NULL,
        at         TEXT NOT NULL,
        UNIQUE (release_id, "by")
    ) STRICT;

    CREATE TABLE audit (
        id     INTEGER PRIMARY KEY,
        at     TEXT NOT NULL,
        actor  TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_at ON audit (at);

    CREATE TABLE workloads (
        env        TEXT NOT NULL,
        app        TEXT NOT NULL,
        spec       TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (env, app)
    ) STRICT;
    "#,
    // 2: every flag change, with the flag before and after.
    r#"
    CREATE TABLE flag_changes (
        id     INTEGER PRIMARY KEY,
        at     TEXT NOT NULL,
        actor  TEXT NOT NULL,
        flag   TEXT NOT NULL,
        action TEXT NOT NULL,
        before TEXT,
        after  TEXT,
        -- the release that made the change (flags that travel with a release), if any
        release_id TEXT
    ) STRICT;
    CREATE INDEX flag_changes_flag_at ON flag_changes (flag, at);
    CREATE INDEX flag_changes_release ON flag_changes (release_id);

    CREATE TABLE experiments (
        id         INTEGER PRIMARY KEY,
        flag       TEXT NOT NULL,
        started_at TEXT NOT NULL,
        result     TEXT NOT NULL
    ) STRICT;
    CREATE INDEX experiments_flag ON experiments (flag, started_at);
    "#,
    // 3: emergency releases, their approvals, status changes and execution log.
    r#"
    CREATE TABLE emergencies (
        id           TEXT PRIMARY KEY NOT NULL,
        kind         TEXT NOT NULL,
        severity     TEXT NOT NULL,
        status       TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        ended_at     TEXT,
        -- the emergency as JSON, without its approvers and log (kept in the tables below)
        data         TEXT NOT NULL
    ) STRICT;
    CREATE INDEX emergencies_status ON emergencies (status);
    CREATE INDEX emergencies_created ON emergencies (created_at);

    CREATE TABLE emergency_approvals (
        id           INTEGER PRIMARY KEY,
        emergency_id TEXT NOT NULL REFERENCES emergencies (id) ON DELETE CASCADE,
        "by"         TEXT NOT NULL,
        at           TEXT NOT NULL,
        UNIQUE (emergency_id, "by")
    ) STRICT;

    CREATE TABLE emergency_transitions (
        id           INTEGER PRIMARY KEY,
        emergency_id TEXT NOT NULL REFERENCES emergencies (id) ON DELETE CASCADE,
        from_status  TEXT,
        to_status    TEXT NOT NULL,
        cause        TEXT NOT NULL,
        at           TEXT NOT NULL
    ) STRICT;
    CREATE INDEX emergency_transitions_emergency ON emergency_transitions (emergency_id, id);

    CREATE TABLE emergency_log (
        id           INTEGER PRIMARY KEY,
        emergency_id TEXT NOT NULL REFERENCES emergencies (id) ON DELETE CASCADE,
        at           TEXT NOT NULL,
        step         TEXT NOT NULL,
        ok           INTEGER NOT NULL,
        message      TEXT NOT NULL
    ) STRICT;
    CREATE INDEX emergency_log_emergency ON emergency_log (emergency_id, id);
    "#,
    // 4: release notes per release, and every webhook delivery.
    r#"
    CREATE TABLE release_notes (
        release_id TEXT PRIMARY KEY NOT NULL,
        notes      TEXT NOT NULL,
        created_at TEXT NOT NULL
    ) STRICT;

    CREATE TABLE deliveries (
        id         INTEGER PRIMARY KEY,
        at         TEXT NOT NULL,
        channel    TEXT NOT NULL,
        event      TEXT NOT NULL,
        subject    TEXT NOT NULL,
        attempts   INTEGER NOT NULL,
        ok         INTEGER NOT NULL,
        last_error TEXT
    ) STRICT;
    CREATE INDEX deliveries_at ON deliveries (at);
    "#,
];

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An SQLite error without further context (only seen inside the store; every public
    /// function turns it into [`StoreError::Db`]).
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An SQLite error, with what the store was doing.
    #[error("store: {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The data dir could not be created.
    #[error("store: creating {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A row holds a value that does not decode (bad JSON, unknown status, bad timestamp).
    #[error("store: corrupt row in table {table} ({id}): {message}")]
    Corrupt { table: &'static str, id: String, message: String },
    /// A value could not be encoded for storage.
    #[error("store: encoding {what}: {message}")]
    Encode { what: String, message: String },
    #[error(
        "the data dir was written by a newer shipdeck (schema version {found}, this shipdeck \
         supports up to {supported}); upgrade shipdeck or use another data dir"
    )]
    TooNew { found: u32, supported: u32 },
    #[error("{by} has already approved release {release_id}")]
    DuplicateApproval { release_id: String, by: String },
    #[error("store: {what} not found")]
    NotFound { what: String },
}

/// Adds context to the SQLite errors of a store operation.
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T, E: Into<StoreError>> Context<T> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|e| match e.into() {
            StoreError::Sqlite(source) => StoreError::Db { context: what(), source },
            other => other,
        })
    }
}

/// The history database. Cheap to share: wrap it in an `Arc`.
pub struct Store {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::Io { path: dir.display().to_string(), source })?;
        }
        let shown = path.display();
        let conn = Connection::open(path).context(|| format!("opening {shown}"))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .context(|| format!("enabling WAL on {shown}"))?;
        Self::configure(conn, &shown.to_string())
    }

    /// A private database that lives as long as the store; for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory().context(|| "opening in-memory database".into())?;
        Self::configure(conn, ":memory:")
    }

    fn configure(mut conn: Connection, name: &str) -> Result<Store, StoreError> {
        conn.pragma_update(None, "synchronous", "NORMAL")
            .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
            .and_then(|()| conn.busy_timeout(Duration::from_millis(5000)))
            .context(|| format!("configuring {name}"))?;
        migrate(&mut conn).context(|| format!("migrating {name}"))?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    /// The schema version of the database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let conn = self.conn();
        user_version(&conn).context(|| "reading schema version".into())
    }

    /// The connection; a panic while it was held does not make the store unusable (any
    /// transaction open then was rolled back when it unwound).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in one write transaction and commits it; any error rolls it back.
    fn write<T>(
        &self,
        what: impl FnOnce() -> String,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let run = || -> Result<T, StoreError> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run().context(what)
    }

    /// Runs a read-only `f` against the connection.
    fn read<T>(
        &self,
        what: impl FnOnce() -> String,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn();
        f(&conn).context(what)
    }
}

fn user_version(conn: &Connection) -> Result<u32, rusqlite::Error> {
    conn.query_row("PRAGMA user_version", [], |row| row.get::<_, u32>(0))
}

/// Applies every migration the database has not seen yet, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found = user_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew { found, supported: SCHEMA_VERSION });
    }
    for (i, script) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated between our check and this lock.
        let now = user_version(&tx)?;
        if now as usize > i {
            continue;
        }
        tx.execute_batch(script)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }

    #[test]
    fn writes_from_many_threads_are_all_kept() {
        let store = std::sync::Arc::new(Store::open_in_memory().unwrap());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        let entry = crate::model::AuditEntry {
                            at: chrono::Utc::now(),
                            actor: format!("t{i}"),
                            action: "note".into(),
                            target: format!("{i}/{j}"),
                            detail: String::new(),
                        };
                        store.audit(&entry).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.audit_log(None, 1000).unwrap().len(), 80);
    }

    #[test]
    fn store_keeps_working_after_a_panic_while_locked() {
        let store = std::sync::Arc::new(Store::open_in_memory().unwrap());
        let s = store.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = s.conn();
            panic!("boom");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn new_store_is_at_the_latest_schema_version() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn reopening_a_file_does_not_rerun_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let store = Store::open(&path).unwrap();
        let audit = crate::model::AuditEntry {
            at: chrono::Utc::now(),
            actor: "ann".into(),
            action: "note".into(),
            target: "prod/web".into(),
            detail: "kept".into(),
        };
        store.audit(&audit).unwrap();
        drop(store);
        // The first migration creates its tables without IF NOT EXISTS, so running it
        // again would fail.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.audit_log(None, 10).unwrap(), vec![audit]);
    }

    #[test]
    fn database_from_a_newer_shipdeck_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(conn);

        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::TooNew { found, supported }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err:?}"
        );
        assert!(err.to_string().contains("newer shipdeck"), "{err}");
    }

    #[test]
    fn open_creates_missing_parent_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("history.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(path.exists());
    }

    #[test]
    fn file_store_uses_wal_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("history.db")).unwrap();
        let conn = store.conn();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!((mode.as_str(), fk), ("wal", 1));
    }

    #[test]
    fn sqlite_errors_carry_their_context() {
        let err: Result<(), _> = Err(rusqlite::Error::QueryReturnedNoRows);
        let err = err.context(|| "saving release r1".into()).unwrap_err();
        assert!(err.to_string().starts_with("store: saving release r1: "), "{err}");
    }
}
