//! How values are written to and read from columns: timestamps as RFC 3339 text, enums as
//! their serde names, plans and specs as JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use crate::model::{ReleaseKind, Status, StrategyKind, Verdict};

/// RFC 3339 in UTC with nanoseconds: fixed width, so text order is time order, and exact.
pub(super) fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Decodes the value of one column of one row; errors name the table, the row and the column.
pub(super) struct Row<'a> {
    pub table: &'static str,
    pub id: &'a str,
}

impl Row<'_> {
    fn corrupt(&self, column: &str, message: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { table: self.table, id: self.id.to_string(), message: format!("{column}: {message}") }
    }

    pub fn time(&self, column: &str, text: &str) -> Result<DateTime<Utc>, StoreError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| self.corrupt(column, format!("bad timestamp {text:?}: {e}")))
    }

    pub fn opt_time(&self, column: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, StoreError> {
        text.map(|t| self.time(column, t)).transpose()
    }

    pub fn status(&self, column: &str, text: &str) -> Result<Status, StoreError> {
        Status::parse(text).ok_or_else(|| self.corrupt(column, format!("unknown status {text:?}")))
    }

    pub fn strategy(&self, column: &str, text: &str) -> Result<StrategyKind, StoreError> {
        StrategyKind::parse(text).ok_or_else(|| self.corrupt(column, format!("unknown strategy {text:?}")))
    }

    pub fn kind(&self, column: &str, text: &str) -> Result<ReleaseKind, StoreError> {
        parse_kind(text).ok_or_else(|| self.corrupt(column, format!("unknown kind {text:?}")))
    }

    pub fn verdict(&self, column: &str, text: &str) -> Result<Verdict, StoreError> {
        parse_verdict(text).ok_or_else(|| self.corrupt(column, format!("unknown verdict {text:?}")))
    }

    pub fn json<T: DeserializeOwned>(&self, column: &str, text: &str) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|e| self.corrupt(column, format!("bad JSON: {e}")))
    }
}

pub(super) fn to_json<T: Serialize>(what: impl FnOnce() -> String, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Encode { what: what(), message: e.to_string() })
}

/// The serde (snake_case) name of a release kind.
pub(super) fn kind_str(kind: ReleaseKind) -> &'static str {
    match kind {
        ReleaseKind::Deploy => "deploy",
        ReleaseKind::Promotion => "promotion",
        ReleaseKind::Rollback => "rollback",
    }
}

fn parse_kind(text: &str) -> Option<ReleaseKind> {
    [ReleaseKind::Deploy, ReleaseKind::Promotion, ReleaseKind::Rollback].into_iter().find(|k| kind_str(*k) == text)
}

/// The serde (snake_case) name of a verdict.
pub(super) fn verdict_str(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
        Verdict::NoData => "no_data",
        Verdict::Error => "error",
    }
}

fn parse_verdict(text: &str) -> Option<Verdict> {
    Verdict::ALL.into_iter().find(|v| verdict_str(*v) == text)
}

/// `'planned', 'in_progress', …`: statuses as an SQL list, for `status IN (…)`.
pub(super) fn sql_list(statuses: impl IntoIterator<Item = Status>) -> String {
    statuses.into_iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_name<T: Serialize>(value: T) -> String {
        serde_json::to_value(value).unwrap().as_str().unwrap().to_string()
    }

    #[test]
    fn enum_names_match_serde() {
        for k in [ReleaseKind::Deploy, ReleaseKind::Promotion, ReleaseKind::Rollback] {
            assert_eq!(kind_str(k), serde_name(k));
            assert_eq!(parse_kind(kind_str(k)), Some(k));
        }
        for v in Verdict::ALL {
            assert_eq!(verdict_str(v), serde_name(v));
            assert_eq!(parse_verdict(verdict_str(v)), Some(v));
        }
        for s in Status::ALL {
            assert_eq!(s.as_str(), serde_name(s));
        }
        for s in StrategyKind::ALL {
            assert_eq!(s.as_str(), serde_name(s));
        }
    }

    #[test]
    fn timestamps_round_trip_exactly_and_sort_as_text() {
        let a = Utc::now();
        let b = a + chrono::Duration::nanoseconds(1);
        let row = Row { table: "t", id: "x" };
        assert_eq!(row.time("at", &ts(a)).unwrap(), a);
        assert!(ts(a) < ts(b));
        assert_eq!(ts(a).len(), ts(b).len());
    }

    #[test]
    fn corrupt_value_names_table_and_row() {
        let row = Row { table: "releases", id: "r1" };
        let err = row.json::<Vec<u32>>("plan", "{nope").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("releases") && text.contains("r1") && text.contains("plan"), "{text}");
    }
}
