//! Emergency releases: the emergency itself (a row with its key fields and the rest as JSON),
//! its approvals, its status changes and its execution log.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{Row, to_json, ts};
use super::{Store, StoreError};
use crate::model::{Emergency, EmergencyLogEntry, EmergencyStatus, EmergencyTransition};

/// The JSON kept in `data`: everything but the approvers and the log.
fn data(e: &Emergency) -> Result<String, StoreError> {
    let mut bare = e.clone();
    bare.approvers.clear();
    bare.log.clear();
    to_json(|| format!("emergency {}", e.id), &bare)
}

fn insert_transition(
    conn: &Connection,
    e: &Emergency,
    from: Option<EmergencyStatus>,
    cause: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO emergency_transitions (emergency_id, from_status, to_status, cause, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![e.id, from.map(|s| s.as_str()), e.status.as_str(), cause, ts(at)],
    )?;
    Ok(())
}

fn insert_log(conn: &Connection, id: &str, entry: &EmergencyLogEntry) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO emergency_log (emergency_id, at, step, ok, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, ts(entry.at), entry.step, entry.ok, entry.message],
    )?;
    Ok(())
}

fn update(conn: &Connection, e: &Emergency) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE emergencies SET status = ?2, ended_at = ?3, data = ?4 WHERE id = ?1",
        params![e.id, e.status.as_str(), e.ended_at.map(ts), data(e)?],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound { what: format!("emergency {}", e.id) });
    }
    Ok(())
}

/// Reads one emergency with its approvers and log.
fn load(conn: &Connection, id: &str) -> Result<Option<Emergency>, StoreError> {
    let raw: Option<String> =
        conn.query_row("SELECT data FROM emergencies WHERE id = ?1", [id], |row| row.get(0)).optional()?;
    let Some(raw) = raw else { return Ok(None) };
    let row = Row { table: "emergencies", id };
    let mut e: Emergency = row.json("data", &raw)?;
    let mut stmt =
        conn.prepare_cached(r#"SELECT "by" FROM emergency_approvals WHERE emergency_id = ?1 ORDER BY id"#)?;
    e.approvers = stmt.query_map([id], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
    let mut stmt =
        conn.prepare_cached("SELECT at, step, ok, message FROM emergency_log WHERE emergency_id = ?1 ORDER BY id")?;
    let raw = stmt
        .query_map([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, r.get::<_, String>(3)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let row = Row { table: "emergency_log", id };
    e.log = raw
        .into_iter()
        .map(|(at, step, ok, message)| Ok(EmergencyLogEntry { at: row.time("at", &at)?, step, ok, message }))
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(e))
}

impl Store {
    /// Stores a new emergency with its log so far and its first status. `Ok(false)` when an
    /// emergency with its id exists already (nothing is written then).
    pub fn insert_emergency(&self, e: &Emergency, cause: &str) -> Result<bool, StoreError> {
        self.write(
            || format!("saving emergency {}", e.id),
            |tx| {
                let n = tx.execute(
                    "INSERT OR IGNORE INTO emergencies (id, kind, severity, status, requested_by, created_at, ended_at, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        e.id,
                        e.kind.name(),
                        e.severity.name(),
                        e.status.as_str(),
                        e.requested_by,
                        ts(e.created_at),
                        e.ended_at.map(ts),
                        data(e)?
                    ],
                )?;
                if n == 0 {
                    return Ok(false);
                }
                insert_transition(tx, e, None, cause, e.created_at)?;
                for entry in &e.log {
                    insert_log(tx, &e.id, entry)?;
                }
                Ok(true)
            },
        )
    }

    /// Saves the emergency's new status (it was `from`) with why, in one transaction.
    pub fn emergency_transition(&self, e: &Emergency, from: EmergencyStatus, cause: &str) -> Result<(), StoreError> {
        self.write(
            || format!("saving emergency {} {} → {}", e.id, from.as_str(), e.status.as_str()),
            |tx| {
                update(tx, e)?;
                insert_transition(tx, e, Some(from), cause, Utc::now())
            },
        )
    }

    /// Saves the emergency's fields (test counts, cause) without a status change.
    pub fn save_emergency(&self, e: &Emergency) -> Result<(), StoreError> {
        self.write(|| format!("saving emergency {}", e.id), |tx| update(tx, e))
    }

    pub fn add_emergency_log(&self, id: &str, entry: &EmergencyLogEntry) -> Result<(), StoreError> {
        self.write(|| format!("saving the log of emergency {id}"), |tx| insert_log(tx, id, entry))
    }

    /// Records an approval; a second one by the same person is refused with
    /// [`StoreError::DuplicateApproval`].
    pub fn add_emergency_approval(&self, id: &str, by: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(
            || format!("saving approval of emergency {id} by {by}"),
            |tx| {
                let n = tx.execute(
                    r#"INSERT OR IGNORE INTO emergency_approvals (emergency_id, "by", at) VALUES (?1, ?2, ?3)"#,
                    params![id, by, ts(at)],
                )?;
                if n == 0 {
                    return Err(StoreError::DuplicateApproval { release_id: id.to_string(), by: by.to_string() });
                }
                Ok(())
            },
        )
    }

    pub fn emergency(&self, id: &str) -> Result<Option<Emergency>, StoreError> {
        self.read(|| format!("reading emergency {id}"), |conn| load(conn, id))
    }

    /// Emergencies newest first, only those in `status` when given, at most `limit`.
    pub fn emergencies(
        &self,
        status: Option<EmergencyStatus>,
        limit: Option<usize>,
    ) -> Result<Vec<Emergency>, StoreError> {
        let limit = limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        self.read(
            || "listing emergencies".into(),
            |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id FROM emergencies WHERE ?1 IS NULL OR status = ?1
                     ORDER BY created_at DESC, id DESC LIMIT ?2",
                )?;
                let ids = stmt
                    .query_map(params![status.map(|s| s.as_str()), limit], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                ids.iter().filter_map(|id| load(conn, id).transpose()).collect()
            },
        )
    }

    /// The status changes of an emergency, oldest first.
    pub fn emergency_transitions(&self, id: &str) -> Result<Vec<EmergencyTransition>, StoreError> {
        self.read(
            || format!("reading the status changes of emergency {id}"),
            |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT from_status, to_status, cause, at FROM emergency_transitions
                     WHERE emergency_id = ?1 ORDER BY id",
                )?;
                let raw = stmt
                    .query_map([id], |r| {
                        Ok((
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let row = Row { table: "emergency_transitions", id };
                let status = |text: &str| {
                    EmergencyStatus::parse(text).ok_or_else(|| StoreError::Corrupt {
                        table: "emergency_transitions",
                        id: id.to_string(),
                        message: format!("unknown status {text:?}"),
                    })
                };
                raw.into_iter()
                    .map(|(from, to, cause, at)| {
                        Ok(EmergencyTransition {
                            emergency_id: id.to_string(),
                            from: from.as_deref().map(status).transpose()?,
                            to: status(&to)?,
                            cause,
                            at: row.time("at", &at)?,
                        })
                    })
                    .collect()
            },
        )
    }

    /// The report over every stored emergency.
    pub fn emergency_report(&self) -> Result<crate::model::EmergencyReport, StoreError> {
        Ok(crate::model::EmergencyReport::of(&self.emergencies(None, None)?))
    }

    /// Emergencies whose execution was cut short by the process stopping: marked failed with
    /// cause "interrupted", and returned. Called at start-up, before anything runs.
    pub fn fail_interrupted_emergencies(&self) -> Result<Vec<Emergency>, StoreError> {
        let executing = self.emergencies(Some(EmergencyStatus::Executing), None)?;
        let mut out = Vec::new();
        for mut e in executing {
            let cause = "interrupted: the shipdeck executing it stopped before it ended; check what runs \
                         where (`shipdeck status`) and create a new emergency if the fix is still needed";
            let now = Utc::now();
            e.status = EmergencyStatus::Failed;
            e.ended_at = Some(now);
            e.cause = Some(cause.to_string());
            let entry = EmergencyLogEntry { at: now, step: "interrupted".into(), ok: false, message: cause.into() };
            self.emergency_transition(&e, EmergencyStatus::Executing, cause)?;
            self.add_emergency_log(&e.id, &entry)?;
            e.log.push(entry);
            out.push(e);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EmergencyPlan, EmergencyType, Severity};

    pub(crate) fn emergency(id: &str, status: EmergencyStatus) -> Emergency {
        Emergency {
            id: id.into(),
            kind: EmergencyType::SecurityPatch,
            severity: Severity::P1,
            description: "CVE in the session parser".into(),
            affected_services: vec!["web".into()],
            fix_version: "1.1.0".into(),
            requested_by: "ann".into(),
            created_at: Utc::now(),
            approvers: vec![],
            status,
            plan: EmergencyPlan::standard(Severity::P1),
            log: vec![EmergencyLogEntry { at: Utc::now(), step: "created".into(), ok: true, message: "hi".into() }],
            ended_at: None,
            cause: None,
            tests: None,
        }
    }

    #[test]
    fn an_emergency_round_trips_with_approvals_log_and_transitions() {
        let store = Store::open_in_memory().unwrap();
        let mut e = emergency("ER-20260101000000", EmergencyStatus::PendingApproval);
        assert!(store.insert_emergency(&e, "created by ann").unwrap());
        assert!(!store.insert_emergency(&e, "again").unwrap(), "the id is taken");
        store.add_emergency_approval(&e.id, "bob", Utc::now()).unwrap();
        let dup = store.add_emergency_approval(&e.id, "bob", Utc::now()).unwrap_err();
        assert!(matches!(dup, StoreError::DuplicateApproval { .. }), "{dup}");
        store.add_emergency_approval(&e.id, "carol", Utc::now()).unwrap();
        e.status = EmergencyStatus::Approved;
        store.emergency_transition(&e, EmergencyStatus::PendingApproval, "approved by bob and carol").unwrap();
        let got = store.emergency(&e.id).unwrap().unwrap();
        assert_eq!(got.approvers, ["bob", "carol"]);
        assert_eq!(got.log.len(), 1);
        assert_eq!(got.status, EmergencyStatus::Approved);
        let ts = store.emergency_transitions(&e.id).unwrap();
        assert_eq!(
            ts.iter().map(|t| (t.from, t.to)).collect::<Vec<_>>(),
            [
                (None, EmergencyStatus::PendingApproval),
                (Some(EmergencyStatus::PendingApproval), EmergencyStatus::Approved)
            ]
        );
        assert!(store.emergency("ER-nope").unwrap().is_none());
    }

    #[test]
    fn lists_filter_by_status_and_interrupted_executions_are_failed() {
        let store = Store::open_in_memory().unwrap();
        for (id, status) in [
            ("ER-20260101000001", EmergencyStatus::Completed),
            ("ER-20260101000002", EmergencyStatus::Executing),
            ("ER-20260101000003", EmergencyStatus::PendingApproval),
        ] {
            let mut e = emergency(id, status);
            e.created_at = DateTime::parse_from_rfc3339(&format!("2026-01-01T00:00:0{}Z", &id[id.len() - 1..]))
                .unwrap()
                .with_timezone(&Utc);
            store.insert_emergency(&e, "created").unwrap();
        }
        let all: Vec<String> = store.emergencies(None, None).unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(all, ["ER-20260101000003", "ER-20260101000002", "ER-20260101000001"], "newest first");
        assert_eq!(store.emergencies(Some(EmergencyStatus::Completed), None).unwrap().len(), 1);
        assert_eq!(store.emergencies(None, Some(1)).unwrap().len(), 1);
        let failed = store.fail_interrupted_emergencies().unwrap();
        assert_eq!(failed.len(), 1);
        let e = store.emergency("ER-20260101000002").unwrap().unwrap();
        assert_eq!(e.status, EmergencyStatus::Failed);
        assert!(e.cause.unwrap().starts_with("interrupted"));
        assert!(e.ended_at.is_some() && e.log.last().unwrap().step == "interrupted");
        assert!(store.emergencies(Some(EmergencyStatus::Executing), None).unwrap().is_empty());
    }
}
