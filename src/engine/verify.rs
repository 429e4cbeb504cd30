//! Post-deployment verification, as the standard describes it: health, readiness,
//! dependencies, functional and performance checks, then smoke tests; each check retried with
//! exponential backoff; a critical failure fails the release, any other failure is a warning.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ProbeRequest, ProbeResponse, Target};
use crate::model::{Check, CheckKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub kind: CheckKind,
    pub critical: bool,
    pub passed: bool,
    pub attempts: u32,
    /// What was seen, in words: the status, the body field that failed, the latency.
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub checks: Vec<CheckResult>,
}

impl Report {
    pub fn critical_failures(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| !c.passed && c.critical).collect()
    }

    pub fn warnings(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| !c.passed && !c.critical).collect()
    }

    /// One line: `6 checks, 0 critical failures, 1 warning (response_time: …)`.
    pub fn summary(&self) -> String {
        let fails = self.critical_failures();
        let warns = self.warnings();
        let mut s =
            format!("{} checks, {} critical failures, {} warnings", self.checks.len(), fails.len(), warns.len());
        for c in fails.iter().chain(warns.iter()) {
            s.push_str(&format!("; {}: {}", c.name, c.detail));
        }
        s
    }
}

/// Runs every check against `version`'s pods; the smoke tests only when nothing critical
/// failed before them, as in the standard.
pub async fn verify(cluster: &dyn Cluster, target: &Target, version: &str, checks: &[Check]) -> Report {
    let (smoke, basic): (Vec<&Check>, Vec<&Check>) = checks.iter().partition(|c| c.kind == CheckKind::Smoke);
    let mut report = Report {
        checks: futures::future::join_all(basic.iter().map(|c| run_check(cluster, target, version, c))).await,
    };
    if report.critical_failures().is_empty() {
        for c in smoke {
            report.checks.push(run_check(cluster, target, version, c).await);
        }
    }
    report
}

async fn run_check(cluster: &dyn Cluster, target: &Target, version: &str, check: &Check) -> CheckResult {
    let mut backoff = check.backoff.0;
    let mut detail = String::new();
    for attempt in 1..=check.retries.max(1) {
        match attempt_check(cluster, target, version, check).await {
            Ok(seen) => {
                return CheckResult {
                    name: check.name.clone(),
                    kind: check.kind,
                    critical: check.critical,
                    passed: true,
                    attempts: attempt,
                    detail: seen,
                };
            }
            Err(why) => detail = why,
        }
        if attempt < check.retries {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(Duration::from_secs(60));
        }
    }
    CheckResult {
        name: check.name.clone(),
        kind: check.kind,
        critical: check.critical,
        passed: false,
        attempts: check.retries.max(1),
        detail,
    }
}

async fn send(
    cluster: &dyn Cluster,
    target: &Target,
    version: &str,
    check: &Check,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<ProbeResponse, String> {
    let req = ProbeRequest {
        method: method.to_string(),
        path: path.to_string(),
        body,
        timeout_ms: check.timeout.0.as_millis().min(u64::MAX as u128) as u64,
    };
    cluster.probe(target, version, &req).await.map_err(|e| e.to_string())
}

fn json(resp: &ProbeResponse) -> Result<serde_json::Value, String> {
    serde_json::from_str(&resp.body).map_err(|_| format!("status {} with a body that is not JSON", resp.status))
}

/// Ok(what was seen) when the check passes, Err(why not) otherwise.
async fn attempt_check(cluster: &dyn Cluster, target: &Target, version: &str, check: &Check) -> Result<String, String> {
    let path = check.path.as_str();
    match check.kind {
        CheckKind::Health => {
            let r = send(cluster, target, version, check, "GET", path, None).await?;
            let body = json(&r)?;
            let status = body.get("status").and_then(|s| s.as_str()).unwrap_or("missing");
            if r.status == 200 && status == "healthy" {
                Ok(format!("{path}: healthy"))
            } else {
                Err(format!("{path}: status {} with \"status\": {status:?}, expected 200 and \"healthy\"", r.status))
            }
        }
        CheckKind::Readiness => {
            let r = send(cluster, target, version, check, "GET", path, None).await?;
            let ready = json(&r)?.get("ready").and_then(|v| v.as_bool()).unwrap_or(false);
            if r.status == 200 && ready {
                Ok(format!("{path}: ready"))
            } else {
                Err(format!("{path}: status {}, not ready", r.status))
            }
        }
        CheckKind::Dependencies => {
            let r = send(cluster, target, version, check, "GET", path, None).await?;
            let body = json(&r)?;
            let deps = body.get("dependencies").and_then(|d| d.as_array()).cloned().unwrap_or_default();
            let down: Vec<String> = deps
                .iter()
                .filter(|d| !d.get("healthy").and_then(|h| h.as_bool()).unwrap_or(false))
                .map(|d| d.get("name").and_then(|n| n.as_str()).unwrap_or("?").to_string())
                .collect();
            if deps.is_empty() {
                Err(format!("{path}: status {}, no dependencies listed", r.status))
            } else if down.is_empty() {
                Ok(format!("{path}: {} dependencies healthy", deps.len()))
            } else {
                Err(format!("{path}: unhealthy: {}", down.join(", ")))
            }
        }
        CheckKind::Functional => {
            let r = send(cluster, target, version, check, &check.method, path, None).await?;
            if r.status < 400 {
                Ok(format!("{} {path}: {}", check.method, r.status))
            } else {
                Err(format!("{} {path}: status {}", check.method, r.status))
            }
        }
        CheckKind::Performance => {
            let r = send(cluster, target, version, check, "GET", path, None).await?;
            let limit = check.max_latency_ms.unwrap_or(100.0);
            if r.status >= 400 {
                Err(format!("GET {path}: status {}", r.status))
            } else if r.latency_ms > limit {
                Err(format!("GET {path}: {:.1} ms > {limit} ms", r.latency_ms))
            } else {
                Ok(format!("GET {path}: {:.1} ms", r.latency_ms))
            }
        }
        CheckKind::Smoke => {
            let body = Some(r#"{"name":"Test User","email":"test@example.com"}"#.to_string());
            let tests: [(&str, &str, &str, Option<String>); 3] = [
                ("create_user", "POST", "/api/v1/users", body),
                ("get_user", "GET", "/api/v1/users/1", None),
                ("list_users", "GET", "/api/v1/users", None),
            ];
            let mut passed = Vec::new();
            for (name, method, p, b) in tests {
                let r = send(cluster, target, version, check, method, p, b).await?;
                if r.status >= 400 {
                    return Err(format!("smoke test {name} ({method} {p}): status {}", r.status));
                }
                passed.push(name);
            }
            Ok(format!("{} smoke tests passed", passed.len()))
        }
    }
}
