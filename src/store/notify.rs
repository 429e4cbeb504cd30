//! Release notes, stored with their release, and every webhook delivery with its outcome.

use rusqlite::{OptionalExtension, params};

use super::codec::{Row, to_json, ts};
use super::{Store, StoreError};
use crate::model::{Delivery, ReleaseNotes};

impl Store {
    /// Keep the notes of a release (replacing any it had).
    pub fn save_release_notes(&self, release_id: &str, notes: &ReleaseNotes) -> Result<(), StoreError> {
        let json = to_json(|| format!("release notes of {release_id}"), notes)?;
        self.write(
            || format!("saving the release notes of {release_id}"),
            |tx| {
                tx.execute(
                    "INSERT INTO release_notes (release_id, notes, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (release_id) DO UPDATE SET notes = excluded.notes, created_at = excluded.created_at",
                    params![release_id, json, ts(notes.generated_at)],
                )?;
                Ok(())
            },
        )
    }

    pub fn release_notes(&self, release_id: &str) -> Result<Option<ReleaseNotes>, StoreError> {
        self.read(
            || format!("reading the release notes of {release_id}"),
            |conn| {
                let text: Option<String> = conn
                    .query_row("SELECT notes FROM release_notes WHERE release_id = ?1", [release_id], |r| r.get(0))
                    .optional()?;
                text.map(|t| Row { table: "release_notes", id: release_id }.json("notes", &t)).transpose()
            },
        )
    }

    pub fn add_delivery(&self, d: &Delivery) -> Result<(), StoreError> {
        self.write(
            || format!("saving a delivery to channel {}", d.channel),
            |tx| {
                tx.execute(
                    "INSERT INTO deliveries (at, channel, event, subject, attempts, ok, last_error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![ts(d.at), d.channel, d.event, d.subject, d.attempts, d.ok, d.last_error],
                )?;
                Ok(())
            },
        )
    }

    /// Deliveries, newest first, at most `limit`.
    pub fn deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(
            || "reading webhook deliveries".into(),
            |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, at, channel, event, subject, attempts, ok, last_error FROM deliveries
                     ORDER BY at DESC, id DESC LIMIT ?1",
                )?;
                #[allow(clippy::type_complexity)]
                let raw: Vec<(i64, String, String, String, String, u32, bool, Option<String>)> = stmt
                    .query_map([limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
                    })?
                    .collect::<Result<_, _>>()?;
                raw.into_iter()
                    .map(|(id, at, channel, event, subject, attempts, ok, last_error)| {
                        let id = id.to_string();
                        let at = Row { table: "deliveries", id: &id }.time("at", &at)?;
                        Ok(Delivery { at, channel, event, subject, attempts, ok, last_error })
                    })
                    .collect()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn notes_and_deliveries_round_trip() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.release_notes("r1").unwrap(), None);
        let mut notes = ReleaseNotes::unavailable("web", "1.1.0", Some("1.0.0"), "no repo");
        store.save_release_notes("r1", &notes).unwrap();
        notes.problem = None;
        store.save_release_notes("r1", &notes).unwrap();
        assert_eq!(store.release_notes("r1").unwrap(), Some(notes));
        let d = Delivery {
            at: Utc::now(),
            channel: "oncall".into(),
            event: "rolled_back".into(),
            subject: "r1".into(),
            attempts: 3,
            ok: false,
            last_error: Some("connection refused".into()),
        };
        store.add_delivery(&d).unwrap();
        assert_eq!(store.deliveries(10).unwrap(), vec![d]);
    }
}
