//! Releases: storing them and finding them.

use rusqlite::{Connection, OptionalExtension, Params, params};

use super::codec::{Row, kind_str, sql_list, to_json, ts};
use super::history::insert_transition;
use super::{Store, StoreError};
use crate::model::{Release, Status, Transition};

/// Which releases [`Store::releases`] lists. Every `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct ReleaseFilter {
    pub env: Option<String>,
    pub app: Option<String>,
    pub limit: Option<usize>,
}

const COLUMNS: &str = "id, app, env, version, previous_version, strategy, kind, promoted_from, \
    status, plan, cursor, requested_by, created_at, updated_at, reason, interrupted, weight";

const NEWEST_FIRST: &str = "ORDER BY created_at DESC, id DESC";

/// Statuses that hold the app in its environment.
fn active() -> String {
    sql_list(Status::ALL.into_iter().filter(|s| s.is_active()))
}

/// Active statuses in which a process was driving the release.
pub(super) fn driven() -> String {
    sql_list(Status::ALL.into_iter().filter(|s| s.is_active() && *s != Status::Planned))
}

/// A `releases` row as stored, before its values are decoded.
struct RawRelease {
    id: String,
    app: String,
    env: String,
    version: String,
    previous_version: Option<String>,
    strategy: String,
    kind: String,
    promoted_from: Option<String>,
    status: String,
    plan: String,
    cursor: usize,
    requested_by: String,
    created_at: String,
    updated_at: String,
    reason: Option<String>,
    interrupted: bool,
    weight: u32,
}

impl RawRelease {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            app: row.get(1)?,
            env: row.get(2)?,
            version: row.get(3)?,
            previous_version: row.get(4)?,
            strategy: row.get(5)?,
            kind: row.get(6)?,
            promoted_from: row.get(7)?,
            status: row.get(8)?,
            plan: row.get(9)?,
            cursor: row.get(10)?,
            requested_by: row.get(11)?,
            created_at: row.get(12)?,
            updated_at: row.get(13)?,
            reason: row.get(14)?,
            interrupted: row.get(15)?,
            weight: row.get(16)?,
        })
    }

    fn decode(self) -> Result<Release, StoreError> {
        let row = Row { table: "releases", id: &self.id };
        Ok(Release {
            strategy: row.strategy("strategy", &self.strategy)?,
            kind: row.kind("kind", &self.kind)?,
            status: row.status("status", &self.status)?,
            plan: row.json("plan", &self.plan)?,
            created_at: row.time("created_at", &self.created_at)?,
            updated_at: row.time("updated_at", &self.updated_at)?,
            id: self.id,
            app: self.app,
            env: self.env,
            version: self.version,
            previous_version: self.previous_version,
            promoted_from: self.promoted_from,
            cursor: self.cursor,
            requested_by: self.requested_by,
            reason: self.reason,
            interrupted: self.interrupted,
            weight: self.weight,
        })
    }
}

/// Releases selected by `SELECT <columns> FROM releases <rest>`.
pub(super) fn select(conn: &Connection, rest: &str, params: impl Params) -> Result<Vec<Release>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM releases {rest}"))?;
    let raw = stmt.query_map(params, RawRelease::from_row)?.collect::<Result<Vec<_>, _>>()?;
    raw.into_iter().map(RawRelease::decode).collect()
}

pub(super) fn update(conn: &Connection, r: &Release) -> Result<(), StoreError> {
    let plan = to_json(|| format!("plan of release {}", r.id), &r.plan)?;
    let changed = conn.execute(
        "UPDATE releases SET app = ?2, env = ?3, version = ?4, previous_version = ?5,
            strategy = ?6, kind = ?7, promoted_from = ?8, status = ?9, plan = ?10,
            cursor = ?11, requested_by = ?12, created_at = ?13, updated_at = ?14,
            reason = ?15, interrupted = ?16, weight = ?17
         WHERE id = ?1",
        params![
            r.id,
            r.app,
            r.env,
            r.version,
            r.previous_version,
            r.strategy.as_str(),
            kind_str(r.kind),
            r.promoted_from,
            r.status.as_str(),
            plan,
            r.cursor,
            r.requested_by,
            ts(r.created_at),
            ts(r.updated_at),
            r.reason,
            r.interrupted,
            r.weight,
        ],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound { what: format!("release {}", r.id) });
    }
    Ok(())
}

impl Store {
    /// Stores a new release and its first transition (from nothing to its status).
    pub fn insert_release(&self, r: &Release, cause: &str) -> Result<(), StoreError> {
        self.write(
            || format!("inserting release {}", r.id),
            |tx| {
                let plan = to_json(|| format!("plan of release {}", r.id), &r.plan)?;
                tx.execute(
                    &format!(
                        "INSERT INTO releases ({COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                                 ?15, ?16, ?17)"
                    ),
                    params![
                        r.id,
                        r.app,
                        r.env,
                        r.version,
                        r.previous_version,
                        r.strategy.as_str(),
                        kind_str(r.kind),
                        r.promoted_from,
                        r.status.as_str(),
                        plan,
                        r.cursor,
                        r.requested_by,
                        ts(r.created_at),
                        ts(r.updated_at),
                        r.reason,
                        r.interrupted,
                        r.weight,
                    ],
                )?;
                insert_transition(
                    tx,
                    &Transition {
                        release_id: r.id.clone(),
                        from: None,
                        to: r.status,
                        cause: cause.to_string(),
                        at: r.created_at,
                    },
                )
            },
        )
    }

    /// Saves every field of an existing release, without recording a transition.
    pub fn save_release(&self, r: &Release) -> Result<(), StoreError> {
        self.write(|| format!("saving release {}", r.id), |tx| update(tx, r))
    }

    pub fn release(&self, id: &str) -> Result<Option<Release>, StoreError> {
        self.read(
            || format!("reading release {id}"),
            |conn| Ok(select(conn, "WHERE id = ?1", [id])?.into_iter().next()),
        )
    }

    /// Releases matching the filter, newest first (by creation time, then id).
    pub fn releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>, StoreError> {
        let limit = filter.limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        self.read(
            || "listing releases".into(),
            |conn| {
                select(
                    conn,
                    &format!(
                        "WHERE (?1 IS NULL OR env = ?1) AND (?2 IS NULL OR app = ?2)
                         {NEWEST_FIRST} LIMIT ?3"
                    ),
                    params![filter.env, filter.app, limit],
                )
            },
        )
    }

    /// The planned, in-progress, paused or deployed release of `app` in `env` (the newest,
    /// should there be several).
    pub fn active_release(&self, env: &str, app: &str) -> Result<Option<Release>, StoreError> {
        self.read(
            || format!("finding the active release of {env}/{app}"),
            |conn| {
                let rest = format!("WHERE env = ?1 AND app = ?2 AND status IN ({}) {NEWEST_FIRST} LIMIT 1", active());
                Ok(select(conn, &rest, [env, app])?.into_iter().next())
            },
        )
    }

    /// Every planned, in-progress, paused or deployed release, newest first.
    pub fn active_releases(&self) -> Result<Vec<Release>, StoreError> {
        self.read(
            || "listing active releases".into(),
            |conn| select(conn, &format!("WHERE status IN ({}) {NEWEST_FIRST}", active()), []),
        )
    }

    /// The version of the newest verified release of `app` in `env`, other than `except`.
    pub fn last_verified_version(
        &self,
        env: &str,
        app: &str,
        except: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        self.read(
            || format!("finding the last verified version of {env}/{app}"),
            |conn| {
                let sql = format!(
                    "SELECT version FROM releases
                     WHERE env = ?1 AND app = ?2 AND status = ?3 AND (?4 IS NULL OR id <> ?4)
                     {NEWEST_FIRST} LIMIT 1"
                );
                let version = conn
                    .query_row(&sql, params![env, app, Status::Verified.as_str(), except], |row| row.get(0))
                    .optional()?;
                Ok(version)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ReleaseKind, StrategyKind};
    use crate::store::fixtures::{at, release};

    fn store() -> Store {
        Store::open_in_memory().unwrap()
    }

    #[test]
    fn release_with_a_plan_round_trips() {
        let store = store();
        let mut r = release("prod", "web", "2.0.0", Status::Planned, 0);
        r.strategy = StrategyKind::BlueGreen;
        r.kind = ReleaseKind::Promotion;
        r.promoted_from = Some("staging".into());
        r.reason = Some("waiting for approval".into());
        store.insert_release(&r, "requested").unwrap();
        assert_eq!(store.release(&r.id).unwrap(), Some(r));
    }

    #[test]
    fn unknown_release_is_none() {
        assert_eq!(store().release("nope").unwrap(), None);
    }

    #[test]
    fn save_release_stores_progress_without_a_transition() {
        let store = store();
        let mut r = release("prod", "web", "2.0.0", Status::InProgress, 0);
        store.insert_release(&r, "started").unwrap();
        r.cursor = 2;
        r.weight = 20;
        r.reason = Some("analysing".into());
        r.interrupted = true;
        r.updated_at = at(60);
        store.save_release(&r).unwrap();
        assert_eq!(store.release(&r.id).unwrap(), Some(r.clone()));
        assert_eq!(store.transitions(&r.id).unwrap().len(), 1);
    }

    #[test]
    fn saving_an_unknown_release_is_an_error_naming_it() {
        let r = release("prod", "web", "2.0.0", Status::InProgress, 0);
        let err = store().save_release(&r).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains(&r.id), "{err}");
    }

    #[test]
    fn inserting_a_release_twice_is_an_error_with_context() {
        let store = store();
        let r = release("prod", "web", "2.0.0", Status::Planned, 0);
        store.insert_release(&r, "requested").unwrap();
        let err = store.insert_release(&r, "requested").unwrap_err();
        assert!(matches!(err, StoreError::Db { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("store: inserting release {}: ", r.id)));
    }

    #[test]
    fn releases_lists_newest_first_with_filters_and_limit() {
        let store = store();
        let a = release("prod", "web", "1.1.0", Status::Verified, 0);
        let b = release("staging", "web", "1.2.0", Status::Verified, 10);
        let c = release("prod", "api", "3.0.0", Status::Failed, 20);
        let d = release("prod", "web", "1.2.0", Status::InProgress, 30);
        for r in [&a, &b, &c, &d] {
            store.insert_release(r, "requested").unwrap();
        }
        let ids = |f: ReleaseFilter| -> Vec<String> { store.releases(&f).unwrap().into_iter().map(|r| r.id).collect() };
        assert_eq!(ids(ReleaseFilter::default()), [d.id.as_str(), &c.id, &b.id, &a.id]);
        let prod_web = ReleaseFilter { env: Some("prod".into()), app: Some("web".into()), limit: None };
        assert_eq!(ids(prod_web), [d.id.as_str(), &a.id]);
        let web = ReleaseFilter { app: Some("web".into()), limit: Some(2), ..Default::default() };
        assert_eq!(ids(web), [d.id.as_str(), &b.id]);
    }

    #[test]
    fn active_release_finds_the_in_progress_one_and_ignores_verified_ones() {
        let store = store();
        let old = release("prod", "web", "1.1.0", Status::Verified, 0);
        let running = release("prod", "web", "1.2.0", Status::InProgress, 10);
        let other_env = release("staging", "web", "1.3.0", Status::InProgress, 20);
        let newer_verified = release("prod", "web", "1.0.9", Status::Verified, 30);
        for r in [&old, &running, &other_env, &newer_verified] {
            store.insert_release(r, "requested").unwrap();
        }
        assert_eq!(store.active_release("prod", "web").unwrap(), Some(running));
        assert_eq!(store.active_release("prod", "api").unwrap(), None);
    }

    #[test]
    fn active_release_counts_planned_paused_and_deployed_but_not_terminal() {
        let store = store();
        for (i, status) in Status::ALL.into_iter().enumerate() {
            let r = release("prod", status.as_str(), "1.0.1", status, i as i64);
            store.insert_release(&r, "requested").unwrap();
            let found = store.active_release("prod", status.as_str()).unwrap();
            assert_eq!(found.is_some(), status.is_active(), "{status}");
        }
        let mut active: Vec<_> = store.active_releases().unwrap().into_iter().map(|r| r.status).collect();
        active.sort_by_key(|s| s.as_str());
        assert_eq!(active, [Status::Deployed, Status::InProgress, Status::Paused, Status::Planned]);
    }

    #[test]
    fn last_verified_version_is_the_newest_verified_one() {
        let store = store();
        for (version, status, secs) in
            [("1.0.0", Status::Verified, 0), ("1.1.0", Status::Verified, 10), ("1.2.0", Status::RolledBack, 20)]
        {
            store.insert_release(&release("prod", "web", version, status, secs), "x").unwrap();
        }
        store.insert_release(&release("staging", "web", "1.3.0", Status::Verified, 30), "x").unwrap();
        let v = store.last_verified_version("prod", "web", None).unwrap();
        assert_eq!(v.as_deref(), Some("1.1.0"));
        assert_eq!(store.last_verified_version("prod", "api", None).unwrap(), None);
    }

    #[test]
    fn last_verified_version_skips_except() {
        let store = store();
        let older = release("prod", "web", "1.0.0", Status::Verified, 0);
        let newest = release("prod", "web", "1.1.0", Status::Verified, 10);
        store.insert_release(&older, "x").unwrap();
        store.insert_release(&newest, "x").unwrap();
        let v = store.last_verified_version("prod", "web", Some(&newest.id)).unwrap();
        assert_eq!(v.as_deref(), Some("1.0.0"));
        let v = store.last_verified_version("prod", "web", Some(&older.id)).unwrap();
        assert_eq!(v.as_deref(), Some("1.1.0"));
    }

    #[test]
    fn a_corrupt_plan_is_reported_with_table_and_id() {
        let store = store();
        let r = release("prod", "web", "2.0.0", Status::Planned, 0);
        store.insert_release(&r, "requested").unwrap();
        store.conn().execute("UPDATE releases SET plan = '[{\"type\":\"warp\"}]'", []).unwrap();
        let err = store.release(&r.id).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { table: "releases", id, .. } if *id == r.id), "{err:?}");
    }
}
