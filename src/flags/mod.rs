//! Feature flags in flagd's flag-definition format, so any app that runs flagd or an
//! OpenFeature in-process provider on the same file sees every change. This module keeps the
//! document as JSON (targeting rules it does not edit pass through untouched) and edits what
//! the console edits: a flag's state, its rollout percentage or weighted split, targeting rules
//! ([`rules`]), tags and dependencies.
//!
//! Tags and dependencies live in the flag's `metadata` as comma-separated strings
//! (`"tags": "checkout,payments"`, `"dependsOn": "payments-kill-switch"`): flagd's schema
//! allows only strings, numbers and booleans as metadata values, so a JSON list there would
//! make the file one flagd refuses. A list written by hand is read too.

pub mod change;
pub mod edit;
pub mod eval;
pub mod file;
pub mod kube;
pub mod preview;
pub mod rules;
pub mod source;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value, json};

pub use eval::FlagEvaluator;
pub use file::FileFlagStore;
pub use kube::{FeatureFlagRef, KubeFlagStore};
pub use source::FlagSource;

/// The demo flags written to a new data dir.
pub const DEMO_FLAGS: &str = include_str!("demo-flags.json");

#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("flag file {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("flag file {path}: {message}")]
    Io { path: String, message: String },
    /// Someone else saved since the set was read. `what` says what changed and where ("flag file
    /// X changed on disk", "FeatureFlag shop/flags changed in the cluster").
    #[error("{what} since it was read; nothing was saved, reload and try again")]
    Conflict { what: String },
    /// A flag resource in a cluster that flagd could not use; the message names the JSON path.
    #[error("{resource}: {message}")]
    BadResource { resource: String, message: String },
    /// The store's cluster could not be used (unreachable, forbidden, not found, …).
    #[error("{resource}: {message}")]
    Cluster { resource: String, message: String },
    #[error("no flag named `{key}` (flags: {known})")]
    Unknown { key: String, known: String },
    #[error("{0}")]
    Refused(String),
}

impl FlagError {
    /// The store could not be reached or read (a backend failure, not bad input).
    pub fn is_backend(&self) -> bool {
        matches!(self, FlagError::Io { .. } | FlagError::Cluster { .. })
    }
}

/// What the store held when it was read, to detect a change by someone else: the file's text,
/// or the FeatureFlag resource as read (its `resourceVersion` is what the API server checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision(String);

/// Where a flag set is kept: loaded whole with its [`Revision`], saved whole only when the
/// stored one is still that revision (compare-and-swap), else [`FlagError::Conflict`] and
/// nothing is written.
#[async_trait]
pub trait FlagStore: Send + Sync {
    /// What and where the store is, for messages ("flag file /x/flags.json", "FeatureFlag shop/flags").
    fn describe(&self) -> String;

    /// The flag set as stored now, and its revision.
    async fn load(&self) -> Result<(FlagSet, Revision), FlagError>;

    /// Save `set` if the store still holds revision `read`; the new revision.
    async fn save(&self, set: &FlagSet, read: &Revision) -> Result<Revision, FlagError>;

    /// The flag set to show (the console's refresh): a store behind a network may answer from
    /// what it read a moment ago instead of asking again every second.
    async fn current(&self) -> Result<FlagSet, FlagError> {
        Ok(self.load().await?.0)
    }

    /// Changes whenever the store sees the flags change by itself (a store that watches them).
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

impl dyn FlagStore + '_ {
    /// Load, change, save; a conflict leaves the store as the other writer left it.
    pub async fn update(
        &self,
        change: impl FnOnce(&mut FlagSet) -> Result<(), FlagError> + Send,
    ) -> Result<FlagSet, FlagError> {
        let (mut set, rev) = self.load().await?;
        change(&mut set)?;
        self.save(&set, &rev).await?;
        Ok(set)
    }
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
                enabled: is_enabled(f),
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

    /// Turn a flag on or off. A flag cannot be turned on while a flag it depends on is off;
    /// turning one off is always allowed (see [`FlagSet::enabled_dependents`] to warn first).
    pub fn set_enabled(&mut self, key: &str, enabled: bool) -> Result<(), FlagError> {
        self.flag_mut(key)?;
        if enabled {
            for dep in self.depends_on(key) {
                match self.flag(&dep).map(is_enabled) {
                    Some(true) => {}
                    Some(false) => {
                        return Err(FlagError::Refused(format!(
                            "`{key}` depends on `{dep}`, which is off; turn `{dep}` on first"
                        )));
                    }
                    None => {
                        return Err(FlagError::Refused(format!(
                            "`{key}` depends on `{dep}`, which is not in the flag file; remove the dependency with \
                             `shipdeck flags depend {key} --remove {dep}`"
                        )));
                    }
                }
            }
        }
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
        let split = json!({"fractional": [["on", percent], ["off", 100 - percent]]});
        // With targeting rules, the percentage is what the rules fall back to.
        if let rules::Targeting::Rules { rules, .. } = rules::Targeting::of(flag.get("targeting")) {
            if let Some(t) = rules::compile(&rules, Some(split)) {
                flag.insert("targeting".into(), t);
            }
            return Ok(());
        }
        if flag.get("targeting").is_some_and(|t| !t.is_null() && rollout_of(Some(t)).is_none()) {
            return Err(FlagError::Refused(format!(
                "`{key}` has targeting rules of its own; change them in the flag file, a percentage would replace them"
            )));
        }
        flag.insert("targeting".into(), split);
        Ok(())
    }

    /// Check the document still compiles for evaluation (after an edit).
    fn check(&self) -> Result<(), FlagError> {
        FlagEvaluator::new(self).map(|_| ())
    }

    /// A comma-separated metadata list (`tags`, `dependsOn`); a JSON list is read too.
    fn meta_list(&self, key: &str, field: &str) -> Vec<String> {
        match self.flag(key).and_then(|f| f.get("metadata")).and_then(|m| m.get(field)) {
            Some(Value::String(s)) => {
                s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()
            }
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }

    fn set_meta_list(&mut self, key: &str, field: &str, items: &[String]) -> Result<(), FlagError> {
        let flag = self.flag_mut(key)?;
        let meta = flag.entry("metadata").or_insert_with(|| json!({}));
        let Some(meta) = meta.as_object_mut() else {
            return Err(FlagError::Refused(format!("`{key}`: its metadata is not a JSON object")));
        };
        if items.is_empty() {
            meta.remove(field);
        } else {
            meta.insert(field.into(), Value::String(items.join(",")));
        }
        Ok(())
    }

    /// The flag's tags (`metadata.tags`).
    pub fn tags(&self, key: &str) -> Vec<String> {
        self.meta_list(key, "tags")
    }

    /// Tag a flag (`add`) or untag it.
    pub fn set_tag(&mut self, key: &str, tag: &str, add: bool) -> Result<(), FlagError> {
        self.flag_mut(key)?;
        let ok = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/');
        if tag.is_empty() || !tag.chars().all(ok) {
            return Err(FlagError::Refused(format!(
                "tag `{tag}`: a tag is letters, digits and - _ . : / (no spaces or commas)"
            )));
        }
        let mut tags = self.tags(key);
        match (add, tags.iter().any(|t| t == tag)) {
            (true, true) => return Err(FlagError::Refused(format!("`{key}` is already tagged `{tag}`"))),
            (false, false) => {
                return Err(FlagError::Refused(format!(
                    "`{key}` has no tag `{tag}` (tags: {})",
                    if tags.is_empty() { "none".to_string() } else { tags.join(", ") }
                )));
            }
            (true, false) => tags.push(tag.to_string()),
            (false, true) => tags.retain(|t| t != tag),
        }
        self.set_meta_list(key, "tags", &tags)
    }

    /// The flags `key` depends on (`metadata.dependsOn`).
    pub fn depends_on(&self, key: &str) -> Vec<String> {
        self.meta_list(key, "dependsOn")
    }

    /// The enabled flags that depend on `key`.
    pub fn enabled_dependents(&self, key: &str) -> Vec<String> {
        let Some(flags) = self.flags() else { return Vec::new() };
        flags
            .iter()
            .filter(|(k, f)| is_enabled(f) && self.depends_on(k).iter().any(|d| d == key))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Make `key` depend on `on`. Refused for an unknown flag, itself, a cycle, a dependency
    /// already there, or when `key` is on and `on` is off (it could not have been enabled).
    pub fn add_dependency(&mut self, key: &str, on: &str) -> Result<(), FlagError> {
        self.flag_mut(key)?;
        let Some(target) = self.flag(on) else {
            return Err(FlagError::Unknown { key: on.to_string(), known: self.keys().join(", ") });
        };
        if key == on {
            return Err(FlagError::Refused(format!("`{key}` cannot depend on itself")));
        }
        if on.contains(',') {
            return Err(FlagError::Refused(format!("`{on}`: a dependency's key cannot contain a comma")));
        }
        let mut deps = self.depends_on(key);
        if deps.iter().any(|d| d == on) {
            return Err(FlagError::Refused(format!("`{key}` already depends on `{on}`")));
        }
        if self.flag(key).is_some_and(is_enabled) && !is_enabled(target) {
            return Err(FlagError::Refused(format!(
                "`{key}` is on and `{on}` is off; turn `{on}` on (or `{key}` off) before making `{key}` depend on it"
            )));
        }
        // A cycle: `on` already depends, directly or not, on `key`.
        let mut seen = vec![on.to_string()];
        let mut i = 0;
        while let Some(f) = seen.get(i).cloned() {
            for d in self.depends_on(&f) {
                if d == key {
                    return Err(FlagError::Refused(format!(
                        "`{on}` already depends on `{key}`; a dependency cycle could never be turned on"
                    )));
                }
                if !seen.contains(&d) {
                    seen.push(d);
                }
            }
            i += 1;
        }
        deps.push(on.to_string());
        self.set_meta_list(key, "dependsOn", &deps)
    }

    /// Remove `key`'s dependency on `on`.
    pub fn remove_dependency(&mut self, key: &str, on: &str) -> Result<(), FlagError> {
        self.flag_mut(key)?;
        let mut deps = self.depends_on(key);
        if !deps.iter().any(|d| d == on) {
            return Err(FlagError::Refused(format!(
                "`{key}` does not depend on `{on}` (depends on: {})",
                if deps.is_empty() { "nothing".to_string() } else { deps.join(", ") }
            )));
        }
        deps.retain(|d| d != on);
        self.set_meta_list(key, "dependsOn", &deps)
    }
}

fn is_enabled(flag: &Value) -> bool {
    flag.get("state").and_then(Value::as_str) == Some("ENABLED")
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
    fn a_flag_cannot_be_enabled_while_a_flag_it_depends_on_is_off() {
        let mut f = FlagSet::parse(DEMO_FLAGS, "demo").unwrap();
        // payments-kill-switch is off in the demo; dark-mode is on.
        let err = f.add_dependency("dark-mode", "payments-kill-switch").unwrap_err().to_string();
        assert!(err.contains("turn `payments-kill-switch` on"), "{err}");
        f.set_enabled("dark-mode", false).unwrap();
        f.add_dependency("dark-mode", "payments-kill-switch").unwrap();
        assert_eq!(f.flag("dark-mode").unwrap()["metadata"]["dependsOn"], "payments-kill-switch");
        let err = f.set_enabled("dark-mode", true).unwrap_err().to_string();
        assert!(err.contains("depends on `payments-kill-switch`, which is off"), "{err}");
        f.set_enabled("payments-kill-switch", true).unwrap();
        f.set_enabled("dark-mode", true).unwrap();
        assert_eq!(f.enabled_dependents("payments-kill-switch"), ["dark-mode"]);
        // Turning the dependency off is allowed; its dependents stay as they are.
        f.set_enabled("payments-kill-switch", false).unwrap();
        assert!(f.views().iter().any(|v| v.key == "dark-mode" && v.enabled));

        assert!(f.add_dependency("dark-mode", "dark-mode").is_err());
        assert!(f.add_dependency("dark-mode", "payments-kill-switch").unwrap_err().to_string().contains("already"));
        assert!(matches!(f.add_dependency("dark-mode", "nope"), Err(FlagError::Unknown { .. })));
        f.add_dependency("saved-carts", "new-checkout").unwrap();
        let err = f.add_dependency("new-checkout", "saved-carts").unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");
        f.remove_dependency("dark-mode", "payments-kill-switch").unwrap();
        assert!(f.flag("dark-mode").unwrap()["metadata"].get("dependsOn").is_none());
        assert!(f.remove_dependency("dark-mode", "payments-kill-switch").is_err());
    }

    #[test]
    fn tags_are_a_comma_separated_metadata_string_flagd_accepts() {
        let mut f = FlagSet::parse(DEMO_FLAGS, "demo").unwrap();
        f.set_tag("dark-mode", "ui", true).unwrap();
        f.set_tag("dark-mode", "storefront", true).unwrap();
        assert_eq!(f.tags("dark-mode"), ["ui", "storefront"]);
        assert_eq!(f.flag("dark-mode").unwrap()["metadata"]["tags"], "ui,storefront");
        assert!(f.set_tag("dark-mode", "ui", true).is_err());
        assert!(f.set_tag("dark-mode", "a,b", true).is_err());
        assert!(f.set_tag("dark-mode", "nope", false).is_err());
        f.set_tag("dark-mode", "ui", false).unwrap();
        f.set_tag("dark-mode", "storefront", false).unwrap();
        assert!(f.flag("dark-mode").unwrap()["metadata"].get("tags").is_none());
    }

    #[test]
    fn a_rollout_with_rules_moves_what_the_rules_fall_back_to() {
        let mut f = FlagSet::parse(DEMO_FLAGS, "demo").unwrap();
        let rule = rules::Rule {
            conditions: vec![rules::Condition::parse("plan equals pro").unwrap()],
            matching: rules::Match::All,
            serve: "on".into(),
        };
        f.add_rule("new-checkout-flow", rule.clone()).unwrap();
        f.set_rollout("new-checkout-flow", 40).unwrap();
        assert_eq!(
            f.targeting("new-checkout-flow"),
            rules::Targeting::Rules {
                rules: vec![rule],
                fallback: Some(json!({"fractional": [["on", 40], ["off", 60]]}))
            }
        );
    }

    #[test]
    fn a_file_without_flags_or_with_a_bad_state_is_refused() {
        assert!(FlagSet::parse("{}", "x.json").unwrap_err().to_string().contains("top-level `flags`"));
        let bad = r#"{"flags":{"a":{"state":"ON","variants":{"on":true}}}}"#;
        assert!(FlagSet::parse(bad, "x.json").unwrap_err().to_string().contains("ENABLED"));
    }
}
