//! Approvals, the audit log, and the desired state of each workload.

use std::collections::BTreeMap;

use chrono::Utc;
use rusqlite::{Connection, params};

use super::codec::{Row, to_json, ts};
use super::{Store, StoreError};
use crate::cluster::{Target, WorkloadSpec};
use crate::model::{Approval, AuditEntry};

pub(super) fn insert_audit(conn: &Connection, e: &AuditEntry) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![ts(e.at), e.actor, e.action, e.target, e.detail],
    )?;
    Ok(())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl Store {
    /// Records an approval; a second approval by the same person is refused with
    /// [`StoreError::DuplicateApproval`].
    pub fn add_approval(&self, a: &Approval) -> Result<(), StoreError> {
        self.write(
            || format!("saving approval of release {} by {}", a.release_id, a.by),
            |tx| {
                let inserted = tx.execute(
                    r#"INSERT INTO approvals (release_id, "by", at) VALUES (?1, ?2, ?3)"#,
                    params![a.release_id, a.by, ts(a.at)],
                );
                match inserted {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => {
                        Err(StoreError::DuplicateApproval { release_id: a.release_id.clone(), by: a.by.clone() })
                    }
                    Err(e) => Err(e.into()),
                }
            },
        )
    }

    /// The approvals of a release, oldest first.
    pub fn approvals(&self, release_id: &str) -> Result<Vec<Approval>, StoreError> {
        self.read(
            || format!("reading approvals of release {release_id}"),
            |conn| {
                let mut stmt =
                    conn.prepare_cached(r#"SELECT id, "by", at FROM approvals WHERE release_id = ?1 ORDER BY at, id"#)?;
                let raw = stmt
                    .query_map([release_id], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                raw.into_iter()
                    .map(|(id, by, at)| {
                        let id = id.to_string();
                        let row = Row { table: "approvals", id: &id };
                        Ok(Approval { release_id: release_id.to_string(), by, at: row.time("at", &at)? })
                    })
                    .collect()
            },
        )
    }

    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.write(|| format!("saving audit entry {} {}", entry.action, entry.target), |tx| insert_audit(tx, entry))
    }

    /// Audit entries, newest first, at most `limit`; with `target_contains`, only those
    /// whose target contains it (case-sensitive substring).
    pub fn audit_log(&self, target_contains: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(
            || "reading the audit log".into(),
            |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, at, actor, action, target, detail FROM audit
                     WHERE ?1 IS NULL OR instr(target, ?1) > 0
                     ORDER BY at DESC, id DESC LIMIT ?2",
                )?;
                let raw = stmt
                    .query_map(params![target_contains, limit], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, String>(4)?,
                            row.get::<_, String>(5)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                raw.into_iter()
                    .map(|(id, at, actor, action, target, detail)| {
                        let id = id.to_string();
                        let row = Row { table: "audit", id: &id };
                        Ok(AuditEntry { at: row.time("at", &at)?, actor, action, target, detail })
                    })
                    .collect()
            },
        )
    }

    /// Saves the desired state of a workload, replacing what was saved for it before.
    pub fn save_workload(&self, target: &Target, spec: &WorkloadSpec) -> Result<(), StoreError> {
        self.write(
            || format!("saving workload {target}"),
            |tx| {
                let json = to_json(|| format!("workload {target}"), spec)?;
                tx.execute(
                    "INSERT INTO workloads (env, app, spec, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (env, app) DO UPDATE SET
                        spec = excluded.spec, updated_at = excluded.updated_at",
                    params![target.env, target.app, json, ts(Utc::now())],
                )?;
                Ok(())
            },
        )
    }

    /// The desired state of every workload saved.
    pub fn workloads(&self) -> Result<BTreeMap<Target, WorkloadSpec>, StoreError> {
        self.read(
            || "reading workloads".into(),
            |conn| {
                let mut stmt = conn.prepare_cached("SELECT env, app, spec FROM workloads")?;
                let raw = stmt
                    .query_map([], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                raw.into_iter()
                    .map(|(env, app, spec)| {
                        let target = Target::new(env, app);
                        let id = target.to_string();
                        let row = Row { table: "workloads", id: &id };
                        Ok((target, row.json("spec", &spec)?))
                    })
                    .collect()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Status, Verdict};
    use crate::store::fixtures::{at, entry, measurement, release, spec, step, store_with_release};

    #[test]
    fn duplicate_approval_is_refused() {
        let (store, r) = store_with_release();
        let bob = Approval { release_id: r.id.clone(), by: "bob".into(), at: at(5) };
        let carol = Approval { release_id: r.id.clone(), by: "carol".into(), at: at(6) };
        store.add_approval(&bob).unwrap();
        store.add_approval(&carol).unwrap();

        let again = Approval { at: at(7), ..bob.clone() };
        let err = store.add_approval(&again).unwrap_err();
        assert!(
            matches!(&err, StoreError::DuplicateApproval { release_id, by }
                if *release_id == r.id && by == "bob"),
            "{err:?}"
        );
        assert_eq!(store.approvals(&r.id).unwrap(), vec![bob, carol]);
    }

    #[test]
    fn audit_log_is_newest_first_with_filter_and_limit() {
        let store = Store::open_in_memory().unwrap();
        let a = entry(0, "prod/web", "deploy");
        let b = entry(10, "staging/api", "deploy");
        let c = entry(20, "prod/web-2.0.0", "approve");
        let d = entry(30, "prod/api", "abort");
        for e in [&b, &a, &d, &c] {
            store.audit(e).unwrap();
        }
        assert_eq!(store.audit_log(None, 10).unwrap(), vec![d.clone(), c.clone(), b, a.clone()]);
        assert_eq!(store.audit_log(Some("prod/web"), 10).unwrap(), vec![c.clone(), a]);
        assert_eq!(store.audit_log(Some("prod"), 2).unwrap(), vec![d, c]);
        assert_eq!(store.audit_log(Some("PROD"), 10).unwrap(), vec![]);
    }

    #[test]
    fn audit_filter_treats_like_wildcards_literally() {
        let store = Store::open_in_memory().unwrap();
        store.audit(&entry(0, "prod/web", "deploy")).unwrap();
        assert_eq!(store.audit_log(Some("%"), 10).unwrap(), vec![]);
        assert_eq!(store.audit_log(Some("_"), 10).unwrap(), vec![]);
    }

    #[test]
    fn workloads_round_trip_and_upsert() {
        let store = Store::open_in_memory().unwrap();
        let web = Target::new("prod", "web");
        let api = Target::new("prod", "api");
        store.save_workload(&web, &spec(&[("1.0.0", 3)])).unwrap();
        store.save_workload(&api, &spec(&[("4.1.0", 2)])).unwrap();
        store.save_workload(&web, &spec(&[("1.0.0", 3), ("2.0.0", 1)])).unwrap();

        let expected = BTreeMap::from([(api, spec(&[("4.1.0", 2)])), (web, spec(&[("1.0.0", 3), ("2.0.0", 1)]))]);
        assert_eq!(store.workloads().unwrap(), expected);
    }

    #[test]
    fn file_backed_store_reopened_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("shipdeck.db");
        let r = release("prod", "web", "2.0.0", Status::Planned, 0);
        let mut moved = r.clone();
        moved.status = Status::InProgress;
        moved.cursor = 1;
        moved.updated_at = at(10);
        let approval = Approval { release_id: r.id.clone(), by: "bob".into(), at: at(5) };
        let m = measurement(&r, 30, Verdict::Pass);
        let log = entry(40, &r.id, "approve");
        let target = Target::new("prod", "web");
        let workload = spec(&[("1.0.0", 2), ("2.0.0", 1)]);
        {
            let store = Store::open(&path).unwrap();
            store.insert_release(&r, "requested").unwrap();
            store.add_approval(&approval).unwrap();
            store.transition(&moved, Status::Planned, "approved").unwrap();
            store.step_started(&step(&r, 0, 20)).unwrap();
            store.add_measurement(&m).unwrap();
            store.audit(&log).unwrap();
            store.save_workload(&target, &workload).unwrap();
        }

        let store = Store::open(&path).unwrap();
        assert_eq!(store.release(&r.id).unwrap(), Some(moved.clone()));
        assert_eq!(store.active_release("prod", "web").unwrap(), Some(moved));
        assert_eq!(store.transitions(&r.id).unwrap().len(), 2);
        assert_eq!(store.approvals(&r.id).unwrap(), vec![approval]);
        assert_eq!(store.steps(&r.id).unwrap(), vec![step(&r, 0, 20)]);
        assert_eq!(store.measurements(&r.id).unwrap(), vec![m]);
        assert_eq!(store.audit_log(None, 10).unwrap(), vec![log]);
        assert_eq!(store.workloads().unwrap(), BTreeMap::from([(target, workload)]));
    }

    #[test]
    fn a_corrupt_workload_spec_is_reported_with_table_and_target() {
        let store = Store::open_in_memory().unwrap();
        store.save_workload(&Target::new("prod", "web"), &spec(&[("1.0.0", 1)])).unwrap();
        store.conn().execute("UPDATE workloads SET spec = 'not json'", []).unwrap();
        let err = store.workloads().unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { table: "workloads", id, .. } if id == "prod/web"), "{err:?}");
    }
}
