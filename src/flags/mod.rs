//! Feature flags in flagd's flag-definition format, so any app that runs flagd or an
//! OpenFeature in-process provider on the same file sees every change. This module keeps the
//! document as JSON (targeting rules it does not edit pass through untouched) and edits what
//! the console edits today: a flag's state and its rollout percentage.

pub mod change;
pub mod eval;
pub mod file;

use serde::Serialize;
use serde_json::{Map, Value, json};

pub use eval::FlagEvaluator;
pub use file::FileFlagStore;

/// The demo flags written to a new data dir.
pub const DEMO_FLAGS: &str = include_str!("demo-flags.json");

#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("flag file {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("flag file {path}: {message}")]
    Io { path: String, message: String },
    #[error("flag file {path} changed on disk since it was read; nothing was saved, reload and try again")]
    Conflict { path: String },
    #[error("no flag named `{key}` (flags: {known})")]
    Unknown { key: String, known: String },
    #[error("{0}")]
    Refused(String),
}

/// What the console shows of one flag.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FlagView {
    pub key: String,
    pub enabled: bool,
    pub default_variant: String,
    pub variants: Vec<String>,
    /// Share (0–100) of users getting the `on` variant, when targeting is a plain rollout.
    pub rollout: Option<u32>,
    pub description: String,
}

/// A flagd document.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagSet {
    doc: Value,
}

impl FlagSet {
    /// Parse and check the parts of flagd's schema this module relies on.
    pub fn parse(text: &str, source: &str) -> Result<Self, FlagError> {
        let invalid = |message: String| FlagError::Invalid { path: source.to_string(), message };
        let doc: Value = serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let flags = doc
            .get("flags")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("needs a top-level `flags` object".into()))?;
        for (key, flag) in flags {
            let state = flag.get("state").and_then(Value::as_str);
            if !matches!(state, Some("ENABLED" | "DISABLED")) {
                return Err(invalid(format!("flags.{key}.state must be \"ENABLED\" or \"DISABLED\"")));
            }
            let variants = flag.get("variants").and_then(Value::as_object);
            let Some(variants) = variants.filter(|v| !v.is_empty()) else {
                return Err(invalid(format!("flags.{key}.variants must be an object with at least one variant")));
            };
            if let Some(d) = flag.get("defaultVariant").and_then(Value::as_str)
                && !variants.contains_key(d)
            {
                return Err(invalid(format!("flags.{key}.defaultVariant `{d}` is not one of its variants")));
            }
        }
        // Targeting must compile (JsonLogic, known operators, every `$ref` defined).
        FlagEvaluator::from_doc(&doc, source, std::sync::Arc::new(eval::SystemClock))?;
        Ok(Self { doc })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.doc).unwrap_or_default() + "\n"
    }

    fn flags(&self) -> Option<&Map<String, Value>> {
        self.doc.get("flags").and_then(Value::as_object)
    }

    fn flag_mut(&mut self, key: &str) -> Result<&mut Map<String, Value>, FlagError> {
        let known = self.keys().join(", ");
        self.doc
            .get_mut("flags")
            .and_then(Value::as_object_mut)
            .and_then(|f| f.get_mut(key))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| FlagError::Unknown { key: key.to_string(), known })
    }

    /// One flag's definition, as flagd JSON.
    pub fn flag(&self, key: &str) -> Option<&Value> {
        self.flags().and_then(|f| f.get(key))
    }

    pub fn keys(&self) -> Vec<String> {
        self.flags().map(|f| f.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn views(&self) -> Vec<FlagView> {
        let Some(flags) = self.flags() else { return Vec::new() };
        flags
            .iter()
            .map(|(key, f)| FlagView {
                key: key.clone(),
                enabled: f.get("state").and_then(Value::as_str) == Some("ENABLED"),
                default_variant: f.get("defaultVariant").and_then(Value::as_str).unwrap_or("").to_string(),
                variants: f
                    .get("variants")
                    .and_then(Value::as_object)
                    .map(|v| v.keys().cloned().collect())
                    .unwrap_or_default(),
                rollout: rollout_of(f.get("targeting")),
                description: f.pointer("/metadata/description").and_then(Value::as_str).unwrap_or("").to_string(),
            })
            .collect()
    }

    pub fn set_enabled(&mut self, key: &str, enabled: bool) -> Result<(), FlagError> {
        let flag = self.flag_mut(key)?;
        flag.insert("state".into(), json!(if enabled { "ENABLED" } else { "DISABLED" }));
        Ok(())
    }

    /// Put a flag's definition back as it was (e.g. before a failed progressive rollout).
    pub fn restore_flag(&mut self, key: &str, definition: Value) -> Result<(), FlagError> {
        let flag = self.flag_mut(key)?;
        let Value::Object(def) = definition else {
            return Err(FlagError::Refused(format!("`{key}`: a flag definition is a JSON object")));
        };
        *flag = def;
        Ok(())
    }

    /// Send `percent`% of users to `on` (the rest to `off`), by flagd's `fractional`.
    pub fn set_rollout(&mut self, key: &str, percent: u32) -> Result<(), FlagError> {
        if percent > 100 {
            return Err(FlagError::Refused(format!("a rollout is 0–100%, not {percent}%")));
        }
        let flag = self.flag_mut(key)?;
        let variants = flag.get("variants").and_then(Value::as_object);
        if !variants.is_some_and(|v| v.contains_key("on") && v.contains_key("off")) {
            return Err(FlagError::Refused(format!("`{key}` has no `on` and `off` variants to split users between")));
        }
        if flag.get("targeting").is_some_and(|t| !t.is_null() && rollout_of(Some(t)).is_none()) {
            return Err(FlagError::Refused(format!(
                "`{key}` has targeting rules of its own; change them in the flag file, a percentage would replace them"
            )));
        }
        flag.insert("targeting".into(), json!({"fractional": [["on", percent], ["off", 100 - percent]]}));
        Ok(())
    }
}

/// The `on` share of a targeting rule that is a plain `fractional` split over on/off.
fn rollout_of(targeting: Option<&Value>) -> Option<u32> {
    let buckets = targeting?.get("fractional")?.as_array()?;
    let mut on = 0u64;
    let mut total = 0u64;
    for b in buckets {
        let Some(pair) = b.as_array() else { continue }; // a bucketing expression
        let (name, weight) = (pair.first()?.as_str()?, pair.get(1).and_then(Value::as_u64).unwrap_or(1));
        total += weight;
        match name {
            "on" => on += weight,
            "off" => {}
            _ => return None,
        }
    }
    (total > 0).then(|| (on * 100 / total) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_flags_parse() {
        let f = FlagSet::parse(DEMO_FLAGS, "demo").unwrap();
        assert!(f.views().len() >= 3);
    }

    #[test]
    fn a_rollout_is_a_fractional_split_flagd_evaluates() {
        let mut f = FlagSet::parse(DEMO_FLAGS, "demo").unwrap();
        let key = f.views().into_iter().find(|v| v.rollout.is_some()).unwrap().key;
        f.set_rollout(&key, 40).unwrap();
        let v = f.views().into_iter().find(|v| v.key == key).unwrap();
        assert_eq!(v.rollout, Some(40));
        assert!(f.to_json().contains(r#""fractional""#));
        assert!(f.set_rollout(&key, 101).is_err());
    }

    #[test]
    fn toggling_changes_only_the_state() {
        let mut f = FlagSet::parse(DEMO_FLAGS, "demo").unwrap();
        let v = f.views()[0].clone();
        f.set_enabled(&v.key, !v.enabled).unwrap();
        assert_eq!(f.views()[0].enabled, !v.enabled);
        assert!(matches!(f.set_enabled("nope", true), Err(FlagError::Unknown { .. })));
    }

    #[test]
    fn a_file_without_flags_or_with_a_bad_state_is_refused() {
        assert!(FlagSet::parse("{}", "x.json").unwrap_err().to_string().contains("top-level `flags`"));
        let bad = r#"{"flags":{"a":{"state":"ON","variants":{"on":true}}}}"#;
        assert!(FlagSet::parse(bad, "x.json").unwrap_err().to_string().contains("ENABLED"));
    }
}
