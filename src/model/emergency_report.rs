//! The emergency report: how many, of which kind and severity, how fast they were resolved, how
//! often they worked, which services they touched most, and the trend by ISO week.

use std::collections::BTreeMap;

use chrono::Datelike;
use serde::{Deserialize, Serialize};

use super::emergency::{Emergency, EmergencyStatus};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmergencyReport {
    pub total: usize,
    /// Count per type name (`security_patch`, …).
    pub by_type: BTreeMap<String, usize>,
    /// Count per severity (`P0`, …).
    pub by_severity: BTreeMap<String, usize>,
    /// Count per status (`completed`, `rolled_back`, …).
    pub by_status: BTreeMap<String, usize>,
    /// Mean time from creation to the end, over the completed ones.
    pub average_resolution_secs: Option<f64>,
    /// Completed out of those that were executed and ended (completed, failed, rolled back);
    /// abandoned and still open ones do not count.
    pub success_rate: Option<f64>,
    /// Services by how many emergencies named them, most first (ties by name).
    pub top_affected_services: Vec<ServiceCount>,
    /// Per ISO week (`2026-W48`), oldest first.
    pub trend: Vec<WeekCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCount {
    pub service: String,
    pub emergencies: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeekCount {
    pub week: String,
    pub total: usize,
    pub completed: usize,
    /// Failed or rolled back.
    pub failed: usize,
}

impl EmergencyReport {
    pub fn of(all: &[Emergency]) -> Self {
        let mut r = EmergencyReport { total: all.len(), ..Default::default() };
        let mut services: BTreeMap<&str, usize> = BTreeMap::new();
        let mut weeks: BTreeMap<String, WeekCount> = BTreeMap::new();
        let (mut resolved_secs, mut resolved) = (0.0, 0usize);
        let (mut ok, mut ended) = (0usize, 0usize);
        for e in all {
            *r.by_type.entry(e.kind.name().to_string()).or_default() += 1;
            *r.by_severity.entry(e.severity.name().to_string()).or_default() += 1;
            *r.by_status.entry(e.status.as_str().to_string()).or_default() += 1;
            for s in &e.affected_services {
                *services.entry(s.as_str()).or_default() += 1;
            }
            let iso = e.created_at.iso_week();
            let week = format!("{}-W{:02}", iso.year(), iso.week());
            let w = weeks.entry(week.clone()).or_insert_with(|| WeekCount { week, ..Default::default() });
            w.total += 1;
            match e.status {
                EmergencyStatus::Completed => {
                    w.completed += 1;
                    ok += 1;
                    ended += 1;
                    if let Some(end) = e.ended_at {
                        resolved_secs += (end - e.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                        resolved += 1;
                    }
                }
                EmergencyStatus::Failed | EmergencyStatus::RolledBack => {
                    w.failed += 1;
                    ended += 1;
                }
                _ => {}
            }
        }
        r.average_resolution_secs = (resolved > 0).then(|| resolved_secs / resolved as f64);
        r.success_rate = (ended > 0).then(|| ok as f64 / ended as f64);
        let mut top: Vec<ServiceCount> =
            services.into_iter().map(|(s, n)| ServiceCount { service: s.to_string(), emergencies: n }).collect();
        top.sort_by(|a, b| b.emergencies.cmp(&a.emergencies).then_with(|| a.service.cmp(&b.service)));
        r.top_affected_services = top;
        r.trend = weeks.into_values().collect();
        r
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;
    use crate::model::{EmergencyPlan, EmergencyType, Severity};

    fn e(
        day: &str,
        kind: EmergencyType,
        sev: Severity,
        services: &[&str],
        status: EmergencyStatus,
        mins: i64,
    ) -> Emergency {
        let created: DateTime<Utc> = DateTime::parse_from_rfc3339(&format!("{day}T10:00:00Z")).unwrap().into();
        Emergency {
            id: Emergency::id_for(created),
            kind,
            severity: sev,
            description: "d".into(),
            affected_services: services.iter().map(|s| s.to_string()).collect(),
            fix_version: "1".into(),
            requested_by: "ann".into(),
            created_at: created,
            approvers: vec![],
            status,
            plan: EmergencyPlan::standard(sev),
            log: vec![],
            ended_at: status.is_terminal().then(|| created + Duration::minutes(mins)),
            cause: None,
            tests: None,
        }
    }

    #[test]
    fn counts_averages_rates_services_and_weeks() {
        use EmergencyStatus::*;
        use EmergencyType::*;
        let all = [
            e("2026-11-23", SecurityPatch, Severity::P1, &["web", "api"], Completed, 30),
            e("2026-11-24", SecurityPatch, Severity::P0, &["web"], Completed, 10),
            e("2026-11-25", CriticalBug, Severity::P2, &["web"], RolledBack, 50),
            e("2026-11-30", DataCorruption, Severity::P1, &["db"], Failed, 5),
            e("2026-11-30", CriticalBug, Severity::P1, &["api"], PendingApproval, 0),
        ];
        let r = EmergencyReport::of(&all);
        assert_eq!(r.total, 5);
        assert_eq!(r.by_type.get("security_patch"), Some(&2));
        assert_eq!(r.by_severity.get("P1"), Some(&3));
        assert_eq!(r.average_resolution_secs, Some(20.0 * 60.0), "completed only");
        assert_eq!(r.success_rate, Some(0.5), "2 of the 4 that ended");
        assert_eq!(r.top_affected_services[0], ServiceCount { service: "web".into(), emergencies: 3 });
        assert_eq!(r.top_affected_services[1].service, "api");
        let weeks: Vec<(&str, usize, usize, usize)> =
            r.trend.iter().map(|w| (w.week.as_str(), w.total, w.completed, w.failed)).collect();
        assert_eq!(weeks, [("2026-W48", 3, 2, 1), ("2026-W49", 2, 0, 1)]);
        assert_eq!(EmergencyReport::of(&[]).success_rate, None);
    }
}
