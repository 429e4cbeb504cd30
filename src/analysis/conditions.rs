//! A metric's `success_condition` / `failure_condition`: a boolean expression over `result`
//! (the metric's value in the window), compiled once with `evalexpr` and checked when the
//! estate is loaded, so a typo is an estate error, not a failed release.

use evalexpr::{ContextWithMutableVariables, DefaultNumericTypes, HashMapContext, Node, Value};

use crate::model::{MetricCheck, MetricName};

#[derive(Debug, Clone)]
pub struct Condition {
    text: String,
    node: Node<DefaultNumericTypes>,
}

impl Condition {
    /// Compiles `text`; the only variable it may use is `result`, and it must be boolean.
    pub fn parse(text: &str) -> Result<Self, String> {
        let node = evalexpr::build_operator_tree::<DefaultNumericTypes>(text).map_err(|e| format!("`{text}`: {e}"))?;
        if let Some(other) = node.iter_variable_identifiers().find(|v| *v != "result") {
            return Err(format!("`{text}`: unknown name `{other}`; a condition can only use `result`"));
        }
        if let Some(f) = node.iter_function_identifiers().next() {
            return Err(format!("`{text}`: functions such as `{f}` are not supported; compare `result` with numbers"));
        }
        let c = Condition { text: text.to_string(), node };
        c.eval(0.5).map_err(|e| format!("`{text}`: {e}"))?;
        Ok(c)
    }

    pub fn eval(&self, result: f64) -> Result<bool, String> {
        let mut ctx = HashMapContext::<DefaultNumericTypes>::new();
        ctx.set_value("result".into(), Value::Float(result)).map_err(|e| e.to_string())?;
        match self.node.eval_with_context(&ctx) {
            Ok(Value::Boolean(b)) => Ok(b),
            Ok(other) => Err(format!("is not true or false but {other}; write a comparison such as `result < 0.02`")),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The outcome of one metric in one measurement.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricOutcome {
    Successful,
    /// The condition that failed, with the value, e.g. `error_rate: 0.081 > 0.02` style.
    Failed(String),
    /// No value in the window, or both conditions false.
    Inconclusive(String),
}

/// Checks one metric's conditions against its value (None: no data in the window), as Argo
/// Rollouts does: a failure condition that holds fails; a success condition that does not hold
/// fails when there is no failure condition, and is inconclusive when there is one.
pub fn check(metric: &MetricCheck, value: Option<f64>) -> Result<MetricOutcome, String> {
    let name = metric.name.as_str();
    let Some(v) = value.filter(|v| !v.is_nan()) else {
        return Ok(MetricOutcome::Inconclusive(format!("{name}: no value in the window")));
    };
    let failure = metric.failure_condition.as_deref().map(Condition::parse).transpose()?;
    let success = metric.success_condition.as_deref().map(Condition::parse).transpose()?;
    if let Some(f) = &failure
        && f.eval(v)?
    {
        return Ok(MetricOutcome::Failed(format!("{name}: {} (failure condition `{}`)", fmt(v), f.text())));
    }
    match (&success, &failure) {
        (Some(s), _) if s.eval(v)? => Ok(MetricOutcome::Successful),
        (Some(s), None) => Ok(MetricOutcome::Failed(format!("{name}: {} does not meet `{}`", fmt(v), s.text()))),
        (Some(s), Some(_)) => Ok(MetricOutcome::Inconclusive(format!(
            "{name}: {} meets neither `{}` nor the failure condition",
            fmt(v),
            s.text()
        ))),
        (None, _) => Ok(MetricOutcome::Successful),
    }
}

/// Checks what a metric's conditions say when the estate is loaded.
pub fn validate(metric: &MetricCheck) -> Result<(), String> {
    if metric.success_condition.is_none() && metric.failure_condition.is_none() {
        return Err(format!(
            "metric `{}` needs a success_condition or a failure_condition, e.g. `result <= 0.02`",
            metric.name.as_str()
        ));
    }
    for c in [&metric.success_condition, &metric.failure_condition].into_iter().flatten() {
        Condition::parse(c)?;
    }
    Ok(())
}

/// The value of `name` for a window.
pub fn value(name: MetricName, canary: &super::VersionMetrics, stable: &super::VersionMetrics) -> Option<f64> {
    let ratio = |c: Option<f64>, s: Option<f64>| match (c, s) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        (Some(0.0), Some(_)) => Some(1.0),
        // Canary errs (or is slow) where stable does not: worse by any ratio.
        (Some(_), Some(_)) => Some(f64::INFINITY),
        _ => None,
    };
    match name {
        MetricName::ErrorRate => canary.error_rate(),
        MetricName::ErrorRateRatio => ratio(canary.error_rate(), stable.error_rate()),
        MetricName::P50Ms => canary.p50_ms,
        MetricName::P99Ms => canary.p99_ms,
        MetricName::P99Ratio => ratio(canary.p99_ms, stable.p99_ms),
        MetricName::Requests => Some(canary.requests as f64),
    }
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 { format!("{v:.0}") } else { format!("{v:.4}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(success: Option<&str>, failure: Option<&str>) -> MetricCheck {
        MetricCheck {
            name: MetricName::ErrorRate,
            success_condition: success.map(String::from),
            failure_condition: failure.map(String::from),
            dry_run: false,
        }
    }

    #[test]
    fn conditions_compare_result_with_numbers_ints_and_floats_alike() {
        let c = Condition::parse("result <= 0.02 && result >= 0").unwrap();
        assert!(c.eval(0.01).unwrap());
        assert!(!c.eval(0.03).unwrap());
        assert!(Condition::parse("result > 1").unwrap().eval(1.5).unwrap());
        assert!(Condition::parse("!(result < 5)").unwrap().eval(5.0).unwrap());
    }

    #[test]
    fn a_condition_with_another_name_a_function_or_no_boolean_is_refused_with_a_hint() {
        assert!(Condition::parse("reslt < 1").unwrap_err().contains("unknown name `reslt`"));
        assert!(Condition::parse("len(result) > 0").unwrap_err().contains("functions"));
        assert!(Condition::parse("result + 1").unwrap_err().contains("result < 0.02"));
        assert!(Condition::parse("result <").is_err());
    }

    #[test]
    fn outcomes_follow_argo_rules_and_name_the_condition_and_value() {
        let only_failure = metric(None, Some("result > 0.02"));
        let out = check(&only_failure, Some(0.081)).unwrap();
        assert_eq!(out, MetricOutcome::Failed("error_rate: 0.0810 (failure condition `result > 0.02`)".into()));
        assert_eq!(check(&only_failure, Some(0.01)).unwrap(), MetricOutcome::Successful);

        let only_success = metric(Some("result <= 0.02"), None);
        assert!(
            matches!(check(&only_success, Some(0.05)).unwrap(), MetricOutcome::Failed(m) if m.contains("0.0500 does not meet"))
        );

        let both = metric(Some("result <= 0.01"), Some("result > 0.05"));
        assert!(matches!(check(&both, Some(0.03)).unwrap(), MetricOutcome::Inconclusive(_)));
        assert_eq!(check(&both, Some(0.0)).unwrap(), MetricOutcome::Successful);
        assert!(matches!(check(&both, None).unwrap(), MetricOutcome::Inconclusive(m) if m.contains("no value")));
    }

    #[test]
    fn a_metric_needs_a_condition() {
        assert!(validate(&metric(None, None)).is_err());
        assert!(validate(&metric(Some("result < 0.1"), None)).is_ok());
    }
}

#[cfg(test)]
mod review_tests {
    use super::*;
    use crate::analysis::VersionMetrics;

    #[test]
    fn error_rate_ratio_fails_a_canary_that_errs_when_stable_does_not() {
        let m = MetricCheck {
            name: MetricName::ErrorRateRatio,
            success_condition: None,
            failure_condition: Some("result > 2".into()),
            dry_run: false,
        };
        let canary = VersionMetrics { requests: 1000, errors: 80, ..Default::default() };
        let stable = VersionMetrics { requests: 3000, errors: 0, ..Default::default() };
        let out = check(&m, value(m.name, &canary, &stable)).unwrap();
        assert!(matches!(out, MetricOutcome::Failed(_)), "8% errors vs stable's 0%: {out:?}");
    }
}
