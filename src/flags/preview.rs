//! Reading a flag without changing it: one evaluation for a context given as `KEY=VALUE` pairs,
//! and "who gets it" over a sample of synthetic users. The CLI and the console share these.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::FlagSet;
use super::eval::{Context, FlagEvaluator};

/// Shares per variant over `n` synthetic users `user-0` …, as (variant or "(code default)", share %).
pub fn shares(set: &FlagSet, flag: &str, n: u32) -> Result<Vec<(String, f64)>, String> {
    let evaluator = FlagEvaluator::new(set).map_err(|e| e.to_string())?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..n {
        let ctx: Context = [("targetingKey", Value::String(format!("user-{i}")))].into_iter().collect();
        let r = evaluator.evaluate(flag, &ctx);
        *counts.entry(r.variant.unwrap_or("(code default)").to_string()).or_default() += 1;
    }
    let total = f64::from(n.max(1));
    Ok(counts.into_iter().map(|(v, c)| (v, c as f64 * 100.0 / total)).collect())
}

/// An evaluation context from `KEY=VALUE` pairs: numbers and booleans as JSON, anything else as
/// a string.
pub fn context_from_pairs(pairs: &[String]) -> Result<Map<String, Value>, String> {
    let mut context = Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(format!("context `{p}`: write KEY=VALUE, e.g. plan=pro"));
        };
        let value = serde_json::from_str::<Value>(v).ok().filter(|j| !j.is_object() && !j.is_array());
        context.insert(k.to_string(), value.unwrap_or_else(|| Value::String(v.to_string())));
    }
    Ok(context)
}

/// One evaluation in words: `variant on = true, reason TARGETING_MATCH`.
pub fn describe(set: &FlagSet, flag: &str, context: &Map<String, Value>) -> Result<String, String> {
    let evaluator = FlagEvaluator::new(set).map_err(|e| e.to_string())?;
    let r = evaluator.evaluate(flag, &Context::from(context));
    let value = r.value.map_or("(the application's default)".to_string(), |v| v.to_string());
    let error = r.error.map_or(String::new(), |e| format!(" ({e})"));
    Ok(format!("variant {} = {value}, reason {}{error}", r.variant.unwrap_or("-"), r.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_become_typed_context() {
        let ctx = context_from_pairs(&["plan=pro".into(), "age=42".into(), "beta=true".into()]).unwrap();
        assert_eq!(ctx["plan"], Value::String("pro".into()));
        assert_eq!(ctx["age"], serde_json::json!(42));
        assert_eq!(ctx["beta"], Value::Bool(true));
        let err = context_from_pairs(&["=x".into()]).unwrap_err();
        assert!(err.contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn shares_sum_to_everyone() {
        let set = FlagSet::parse(super::super::DEMO_FLAGS, "demo").unwrap();
        let s = shares(&set, "dark-mode", 1000).unwrap();
        let total: f64 = s.iter().map(|(_, p)| p).sum();
        assert!((total - 100.0).abs() < 1e-9, "{s:?}");
    }
}
