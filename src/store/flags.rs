//! Every change to a flag: who, when, what, and the flag's definition before and after.

use rusqlite::params;

use super::codec::{Row, ts};
use super::{Store, StoreError};
use crate::model::{ExperimentResult, FlagChange};

impl Store {
    pub fn add_flag_change(&self, c: &FlagChange) -> Result<(), StoreError> {
        let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
        self.write(
            || format!("saving a change of flag {}", c.flag),
            |tx| {
                tx.execute(
                    "INSERT INTO flag_changes (at, actor, flag, action, before, after, release_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![ts(c.at), c.actor, c.flag, c.action, json(&c.before), json(&c.after), c.release_id],
                )?;
                Ok(())
            },
        )
    }

    /// The changes of `flag` (every flag when None), newest first, at most `limit`.
    pub fn flag_changes(&self, flag: Option<&str>, limit: usize) -> Result<Vec<FlagChange>, StoreError> {
        self.query_flag_changes(flag, None, limit)
    }

    pub fn add_experiment(&self, e: &ExperimentResult) -> Result<(), StoreError> {
        let result = super::codec::to_json(|| format!("experiment on {}", e.flag), e)?;
        self.write(
            || format!("saving an experiment on flag {}", e.flag),
            |tx| {
                tx.execute(
                    "INSERT INTO experiments (flag, started_at, result) VALUES (?1, ?2, ?3)",
                    params![e.flag, ts(e.started_at), result],
                )?;
                Ok(())
            },
        )
    }

    /// The experiments on `flag`, newest first.
    pub fn experiments(&self, flag: &str) -> Result<Vec<ExperimentResult>, StoreError> {
        self.read(
            || format!("reading the experiments on flag {flag}"),
            |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, result FROM experiments WHERE flag = ?1 ORDER BY started_at DESC, id DESC",
                )?;
                let raw: Vec<(i64, String)> =
                    stmt.query_map([flag], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
                raw.into_iter()
                    .map(|(id, text)| {
                        let id = id.to_string();
                        Row { table: "experiments", id: &id }.json("result", &text)
                    })
                    .collect()
            },
        )
    }

    /// The flag changes release `release_id` made, newest first.
    pub fn flag_changes_of_release(&self, release_id: &str) -> Result<Vec<FlagChange>, StoreError> {
        self.query_flag_changes(None, Some(release_id), usize::MAX)
    }

    fn query_flag_changes(
        &self,
        flag: Option<&str>,
        release_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FlagChange>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(
            || format!("reading the changes of flag {}", flag.unwrap_or("(all)")),
            |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, at, actor, flag, action, before, after, release_id FROM flag_changes
                     WHERE (?1 IS NULL OR flag = ?1) AND (?2 IS NULL OR release_id = ?2)
                     ORDER BY at DESC, id DESC LIMIT ?3",
                )?;
                type Raw = (i64, String, String, String, String, Option<String>, Option<String>, Option<String>);
                let raw: Vec<Raw> = stmt
                    .query_map(params![flag, release_id, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
                    })?
                    .collect::<Result<_, _>>()?;
                raw.into_iter()
                    .map(|(id, at, actor, flag, action, before, after, release_id)| {
                        let id = id.to_string();
                        let row = Row { table: "flag_changes", id: &id };
                        let json = |column: &str, t: Option<String>| t.map(|t| row.json(column, &t)).transpose();
                        Ok(FlagChange {
                            at: row.time("at", &at)?,
                            actor,
                            flag,
                            action,
                            before: json("before", before)?,
                            after: json("after", after)?,
                            release_id,
                        })
                    })
                    .collect()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn change(flag: &str, secs: i64, action: &str) -> FlagChange {
        FlagChange {
            at: Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap(),
            actor: "alice".into(),
            flag: flag.into(),
            action: action.into(),
            before: Some(json!({"state": "ENABLED"})),
            after: Some(json!({"state": "DISABLED"})),
            release_id: None,
        }
    }

    #[test]
    fn flag_changes_read_back_newest_first_per_flag() {
        let store = Store::open_in_memory().unwrap();
        store.add_flag_change(&change("a", 1, "turned off")).unwrap();
        store.add_flag_change(&change("b", 2, "turned on")).unwrap();
        store.add_flag_change(&change("a", 3, "rolled out to 25%")).unwrap();
        let a = store.flag_changes(Some("a"), 10).unwrap();
        assert_eq!(a.iter().map(|c| c.action.as_str()).collect::<Vec<_>>(), ["rolled out to 25%", "turned off"]);
        assert_eq!(a[0], change("a", 3, "rolled out to 25%"));
        assert_eq!(store.flag_changes(None, 10).unwrap().len(), 3);
        assert_eq!(store.flag_changes(None, 1).unwrap().len(), 1);
    }
}
