//! Status transitions of releases, and what start-up makes of releases a dead process left.

use chrono::Utc;
use rusqlite::{Connection, params};

use super::codec::{Row, ts};
use super::records::insert_audit;
use super::releases::{driven, select, update};
use super::{Store, StoreError};
use crate::model::{AuditEntry, Release, Status, Transition};

fn interrupted_detail(r: &Release) -> String {
    let at = match r.current_step() {
        Some(step) => format!("at step {} of {} ({})", r.cursor + 1, r.plan.len(), step.describe()),
        None => "after its last step".to_string(),
    };
    format!("shipdeck stopped while the release was {} {at}", r.status)
}

pub(super) fn insert_transition(conn: &Connection, t: &Transition) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO transitions (release_id, from_status, to_status, cause, at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![t.release_id, t.from.map(Status::as_str), t.to.as_str(), t.cause, ts(t.at)],
    )?;
    Ok(())
}

impl Store {
    /// Saves the release (its `status` already the new one) and records the transition
    /// from `from` at its `updated_at`.
    pub fn transition(&self, r: &Release, from: Status, cause: &str) -> Result<(), StoreError> {
        self.write(
            || format!("saving transition of release {} from {from} to {}", r.id, r.status),
            |tx| {
                update(tx, r)?;
                insert_transition(
                    tx,
                    &Transition {
                        release_id: r.id.clone(),
                        from: Some(from),
                        to: r.status,
                        cause: cause.to_string(),
                        at: r.updated_at,
                    },
                )
            },
        )
    }

    /// The status changes of a release, oldest first.
    pub fn transitions(&self, release_id: &str) -> Result<Vec<Transition>, StoreError> {
        self.read(
            || format!("reading transitions of release {release_id}"),
            |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, from_status, to_status, cause, at FROM transitions
                     WHERE release_id = ?1 ORDER BY at, id",
                )?;
                let raw = stmt
                    .query_map([release_id], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, Option<String>>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, String>(4)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                raw.into_iter()
                    .map(|(id, from, to, cause, at)| {
                        let id = id.to_string();
                        let row = Row { table: "transitions", id: &id };
                        Ok(Transition {
                            release_id: release_id.to_string(),
                            from: from.map(|f| row.status("from_status", &f)).transpose()?,
                            to: row.status("to_status", &to)?,
                            cause,
                            at: row.time("at", &at)?,
                        })
                    })
                    .collect()
            },
        )
    }

    /// Flags every in-progress, paused or deployed release as interrupted (their driver
    /// died), audits each, and returns them. Called at start-up.
    pub fn mark_interrupted(&self) -> Result<Vec<Release>, StoreError> {
        self.write(
            || "marking interrupted releases".into(),
            |tx| {
                let statuses = driven();
                let mut releases = select(tx, &format!("WHERE status IN ({statuses}) ORDER BY created_at, id"), [])?;
                tx.execute(&format!("UPDATE releases SET interrupted = 1 WHERE status IN ({statuses})"), [])?;
                let now = Utc::now();
                for r in &mut releases {
                    r.interrupted = true;
                    insert_audit(
                        tx,
                        &AuditEntry {
                            at: now,
                            actor: "shipdeck".into(),
                            action: "interrupted".into(),
                            target: r.id.clone(),
                            detail: interrupted_detail(r),
                        },
                    )?;
                }
                Ok(releases)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{at, release};

    fn store() -> Store {
        Store::open_in_memory().unwrap()
    }

    #[test]
    fn transition_history_is_stored_in_order_with_causes() {
        let store = store();
        let mut r = release("prod", "web", "2.0.0", Status::Planned, 0);
        store.insert_release(&r, "requested by ann").unwrap();
        let moves = [
            (Status::InProgress, "approved by bob", 10),
            (Status::Paused, "paused by ann", 20),
            (Status::InProgress, "resumed by ann", 30),
            (Status::Failed, "error rate 12% > 5%", 40),
        ];
        for (to, cause, secs) in moves {
            let from = r.status;
            r.status = to;
            r.updated_at = at(secs);
            store.transition(&r, from, cause).unwrap();
        }

        let got = store.transitions(&r.id).unwrap();
        let summary: Vec<_> = got.iter().map(|t| (t.from, t.to, t.cause.as_str(), t.at)).collect();
        assert_eq!(
            summary,
            vec![
                (None, Status::Planned, "requested by ann", at(0)),
                (Some(Status::Planned), Status::InProgress, "approved by bob", at(10)),
                (Some(Status::InProgress), Status::Paused, "paused by ann", at(20)),
                (Some(Status::Paused), Status::InProgress, "resumed by ann", at(30)),
                (Some(Status::InProgress), Status::Failed, "error rate 12% > 5%", at(40)),
            ]
        );
        assert!(got.iter().all(|t| t.release_id == r.id));
        assert_eq!(store.release(&r.id).unwrap().unwrap().status, Status::Failed);
    }

    #[test]
    fn mark_interrupted_flags_in_progress_releases_only() {
        let store = store();
        let mut ids = Vec::new();
        for (i, status) in Status::ALL.into_iter().enumerate() {
            let r = release("prod", status.as_str(), "1.0.1", status, i as i64);
            store.insert_release(&r, "requested").unwrap();
            ids.push((status, r.id));
        }

        let marked = store.mark_interrupted().unwrap();

        let mut marked_statuses: Vec<_> = marked.iter().map(|r| r.status).collect();
        marked_statuses.sort_by_key(|s| s.as_str());
        assert_eq!(marked_statuses, [Status::Deployed, Status::InProgress, Status::Paused]);
        assert!(marked.iter().all(|r| r.interrupted));
        for (status, id) in &ids {
            let stored = store.release(id).unwrap().unwrap();
            let expected = matches!(status, Status::InProgress | Status::Paused | Status::Deployed);
            assert_eq!(stored.interrupted, expected, "{status}");
        }
        let audit = store.audit_log(None, 100).unwrap();
        assert_eq!(audit.len(), 3);
        assert!(audit.iter().all(|e| e.actor == "shipdeck" && e.action == "interrupted"));
        let mut targets: Vec<_> = audit.iter().map(|e| e.target.clone()).collect();
        targets.sort();
        let mut expected: Vec<_> = marked.iter().map(|r| r.id.clone()).collect();
        expected.sort();
        assert_eq!(targets, expected);
    }
}
