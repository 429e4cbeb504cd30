//! What each step of a release did and what the canary analysis measured.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::codec::{Row, ts, verdict_str};
use super::{Store, StoreError};
use crate::model::{Measurement, StepRecord};

impl Store {
    /// Records that a step started. A step run again (after a resume) overwrites its
    /// previous record, clearing its finish.
    pub fn step_started(&self, s: &StepRecord) -> Result<(), StoreError> {
        self.write(
            || format!("recording start of step {} of release {}", s.index, s.release_id),
            |tx| {
                tx.execute(
                    "INSERT INTO steps (release_id, idx, description, started_at, finished_at,
                                        outcome)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (release_id, idx) DO UPDATE SET
                        description = excluded.description,
                        started_at = excluded.started_at,
                        finished_at = excluded.finished_at,
                        outcome = excluded.outcome",
                    params![s.release_id, s.index, s.description, ts(s.started_at), s.finished_at.map(ts), s.outcome,],
                )?;
                Ok(())
            },
        )
    }

    /// Records how a started step ended.
    pub fn step_finished(
        &self,
        release_id: &str,
        index: usize,
        at: DateTime<Utc>,
        outcome: &str,
    ) -> Result<(), StoreError> {
        self.write(
            || format!("recording end of step {index} of release {release_id}"),
            |tx| {
                let changed = tx.execute(
                    "UPDATE steps SET finished_at = ?3, outcome = ?4
                     WHERE release_id = ?1 AND idx = ?2",
                    params![release_id, index, ts(at), outcome],
                )?;
                if changed == 0 {
                    return Err(StoreError::NotFound { what: format!("started step {index} of release {release_id}") });
                }
                Ok(())
            },
        )
    }

    /// The step records of a release, by index.
    pub fn steps(&self, release_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        self.read(
            || format!("reading steps of release {release_id}"),
            |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT idx, description, started_at, finished_at, outcome FROM steps
                     WHERE release_id = ?1 ORDER BY idx",
                )?;
                let raw = stmt
                    .query_map([release_id], |row| {
                        Ok((
                            row.get::<_, usize>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, Option<String>>(3)?,
                            row.get::<_, Option<String>>(4)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                raw.into_iter()
                    .map(|(index, description, started, finished, outcome)| {
                        let id = format!("{release_id}#{index}");
                        let row = Row { table: "steps", id: &id };
                        Ok(StepRecord {
                            release_id: release_id.to_string(),
                            index,
                            description,
                            started_at: row.time("started_at", &started)?,
                            finished_at: row.opt_time("finished_at", finished.as_deref())?,
                            outcome,
                        })
                    })
                    .collect()
            },
        )
    }

    pub fn add_measurement(&self, m: &Measurement) -> Result<(), StoreError> {
        self.write(
            || format!("saving measurement of release {}", m.release_id),
            |tx| {
                tx.execute(
                    "INSERT INTO measurements (release_id, step, at, verdict, canary_requests,
                        canary_error_rate, canary_p99_ms, stable_requests, stable_error_rate,
                        stable_p99_ms, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        m.release_id,
                        m.step,
                        ts(m.at),
                        verdict_str(m.verdict),
                        m.canary_requests,
                        m.canary_error_rate,
                        m.canary_p99_ms,
                        m.stable_requests,
                        m.stable_error_rate,
                        m.stable_p99_ms,
                        m.detail,
                    ],
                )?;
                Ok(())
            },
        )
    }

    /// The measurements of a release, oldest first.
    pub fn measurements(&self, release_id: &str) -> Result<Vec<Measurement>, StoreError> {
        struct Raw {
            id: i64,
            step: usize,
            at: String,
            verdict: String,
            canary_requests: u64,
            canary_error_rate: Option<f64>,
            canary_p99_ms: Option<f64>,
            stable_requests: u64,
            stable_error_rate: Option<f64>,
            stable_p99_ms: Option<f64>,
            detail: String,
        }
        self.read(
            || format!("reading measurements of release {release_id}"),
            |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, step, at, verdict, canary_requests, canary_error_rate,
                        canary_p99_ms, stable_requests, stable_error_rate, stable_p99_ms, detail
                     FROM measurements WHERE release_id = ?1 ORDER BY at, id",
                )?;
                let raw = stmt
                    .query_map([release_id], |row| {
                        Ok(Raw {
                            id: row.get(0)?,
                            step: row.get(1)?,
                            at: row.get(2)?,
                            verdict: row.get(3)?,
                            canary_requests: row.get(4)?,
                            canary_error_rate: row.get(5)?,
                            canary_p99_ms: row.get(6)?,
                            stable_requests: row.get(7)?,
                            stable_error_rate: row.get(8)?,
                            stable_p99_ms: row.get(9)?,
                            detail: row.get(10)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                raw.into_iter()
                    .map(|m| {
                        let id = m.id.to_string();
                        let row = Row { table: "measurements", id: &id };
                        Ok(Measurement {
                            release_id: release_id.to_string(),
                            step: m.step,
                            at: row.time("at", &m.at)?,
                            verdict: row.verdict("verdict", &m.verdict)?,
                            canary_requests: m.canary_requests,
                            canary_error_rate: m.canary_error_rate,
                            canary_p99_ms: m.canary_p99_ms,
                            stable_requests: m.stable_requests,
                            stable_error_rate: m.stable_error_rate,
                            stable_p99_ms: m.stable_p99_ms,
                            detail: m.detail,
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
    use crate::model::Verdict;
    use crate::store::fixtures::{at, measurement, step, store_with_release};

    #[test]
    fn steps_are_listed_by_index_with_their_outcome() {
        let (store, r) = store_with_release();
        store.step_started(&step(&r, 1, 20)).unwrap();
        store.step_started(&step(&r, 0, 10)).unwrap();
        store.step_finished(&r.id, 0, at(15), "done").unwrap();

        let mut first = step(&r, 0, 10);
        first.finished_at = Some(at(15));
        first.outcome = Some("done".into());
        assert_eq!(store.steps(&r.id).unwrap(), vec![first, step(&r, 1, 20)]);
    }

    #[test]
    fn rerun_step_overwrites_start_and_clears_finish() {
        let (store, r) = store_with_release();
        store.step_started(&step(&r, 0, 10)).unwrap();
        store.step_finished(&r.id, 0, at(15), "interrupted").unwrap();
        store.step_started(&step(&r, 0, 100)).unwrap();
        assert_eq!(store.steps(&r.id).unwrap(), vec![step(&r, 0, 100)]);
    }

    #[test]
    fn finishing_a_step_never_started_is_an_error() {
        let (store, r) = store_with_release();
        let err = store.step_finished(&r.id, 3, at(1), "done").unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    }

    #[test]
    fn measurements_round_trip_oldest_first() {
        let (store, r) = store_with_release();
        let later = measurement(&r, 20, Verdict::Fail);
        let earlier = measurement(&r, 10, Verdict::NoData);
        store.add_measurement(&later).unwrap();
        store.add_measurement(&earlier).unwrap();
        assert_eq!(store.measurements(&r.id).unwrap(), vec![earlier, later]);
    }

    #[test]
    fn measurement_of_an_unknown_release_is_refused() {
        let (store, r) = store_with_release();
        let mut m = measurement(&r, 10, Verdict::Pass);
        m.release_id = "nope".into();
        assert!(matches!(store.add_measurement(&m), Err(StoreError::Db { .. })));
    }
}
