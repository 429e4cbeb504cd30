//! Targeting rules the console edits, compiled to the JsonLogic flagd evaluates.
//!
//! A rule is one or more conditions (`attribute operator value`) that must all (`all`) or any
//! (`any`) hold, and the variant it serves. A flag's rules become one `if` chain, first match
//! wins, falling back to the flag's fractional split when it has one, else to `null` (flagd's
//! DEFAULT: the default variant):
//!
//! ```json
//! {"if": [{"and": [{"in": [{"var": "plan"}, ["pro", "enterprise"]]}]}, "on",
//!         {"fractional": [["on", 10], ["off", 90]]}]}
//! ```
//!
//! What each operator compiles to (`A` is `{"var": attribute}`):
//!
//! | operator | JsonLogic |
//! |---|---|
//! | `equals v` | `{"==": [A, v]}` |
//! | `not_equals v` | `{"!=": [A, v]}` |
//! | `contains s` | `{"in": [s, A]}` (substring of a string attribute) |
//! | `greater_than n` | `{">": [A, n]}` |
//! | `less_than n` | `{"<": [A, n]}` |
//! | `in_segment a,b` | `{"in": [A, [a, b]]}` |
//! | `starts_with s` | `{"and": [A, {"starts_with": [A, s]}]}` |
//! | `ends_with s` | `{"and": [A, {"ends_with": [A, s]}]}` |
//! | `semver OP V` | `{"and": [A, {"sem_ver": [A, OP, V]}]}` with OP one of `= != < <= > >= ^ ~` |
//!
//! flagd's custom operations (`starts_with`, `ends_with`, `sem_ver`) given input they cannot use
//! make the whole targeting `null` (the default variant), skipping every later rule and the
//! split; the `and` guard keeps a context without the attribute from doing that, so such a
//! context simply does not match the condition. (An attribute of the wrong type, e.g. a version
//! that is not one, still does: flagd evaluates it so.)
//!
//! `equals`, `not_equals` and `in_segment` values are typed as `flags eval --context` types
//! them: a number or boolean as JSON, anything else a string. `regex` is refused: flagd's
//! JsonLogic has no regular-expression operation, so no flagd could evaluate the rule.

use std::fmt;

use serde_json::{Map, Value, json};

use super::eval::ops::Version;
use super::{FlagError, FlagSet};

/// The operators a condition may use, as written on the command line.
pub const OPERATORS: &[&str] = &[
    "equals",
    "not_equals",
    "contains",
    "greater_than",
    "less_than",
    "in_segment",
    "starts_with",
    "ends_with",
    "semver",
];

/// flagd's `sem_ver` comparisons.
pub const SEMVER_COMPARISONS: &[&str] = &["=", "!=", "<", "<=", ">", ">=", "^", "~"];

#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    Equals(Value),
    NotEquals(Value),
    Contains(String),
    GreaterThan(Value),
    LessThan(Value),
    InSegment(Vec<Value>),
    StartsWith(String),
    EndsWith(String),
    /// A comparison (one of [`SEMVER_COMPARISONS`]) and a version.
    SemVer(String, String),
}

/// `attribute operator value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub attribute: String,
    pub operator: Operator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    All,
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub conditions: Vec<Condition>,
    pub matching: Match,
    pub serve: String,
}

fn refused(message: String) -> FlagError {
    FlagError::Refused(message)
}

/// A number or boolean as JSON, anything else as a string (as `flags eval --context` does).
fn scalar(text: &str) -> Value {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(|v| v.is_number() || v.is_boolean())
        .unwrap_or_else(|| Value::String(text.to_string()))
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Condition {
    /// Parse `attribute operator value`, e.g. `plan in_segment pro,enterprise`,
    /// `country equals NL`, `version semver >= 2.1.0`.
    pub fn parse(text: &str) -> Result<Self, FlagError> {
        let text = text.trim();
        let mut words = text.splitn(2, char::is_whitespace);
        let attribute = words.next().unwrap_or("").to_string();
        let rest = words.next().unwrap_or("").trim_start();
        let mut words = rest.splitn(2, char::is_whitespace);
        let op = words.next().unwrap_or("");
        let value = words.next().unwrap_or("").trim();
        let form = "write a condition as `ATTRIBUTE OPERATOR VALUE`, e.g. `country equals NL`";
        if attribute.is_empty() || op.is_empty() {
            return Err(refused(format!("rule `{text}`: {form}")));
        }
        if op == "regex" || op == "matches" {
            return Err(refused(format!(
                "rule `{text}`: flagd cannot evaluate regular expressions (its JsonLogic has no regex \
                 operation), so a `regex` rule would never work in a real app; use starts_with, \
                 ends_with, contains or in_segment"
            )));
        }
        if !OPERATORS.contains(&op) {
            return Err(refused(format!(
                "rule `{text}`: unknown operator `{op}` (operators: {})",
                OPERATORS.join(", ")
            )));
        }
        if value.is_empty() {
            return Err(refused(format!("rule `{text}`: `{op}` needs a value; {form}")));
        }
        let number = |v: &str| match scalar(v) {
            n @ Value::Number(_) => Ok(n),
            _ => Err(refused(format!("rule `{text}`: `{op}` compares numbers, and `{v}` is not one"))),
        };
        let operator = match op {
            "equals" => Operator::Equals(scalar(value)),
            "not_equals" => Operator::NotEquals(scalar(value)),
            "contains" => Operator::Contains(value.to_string()),
            "greater_than" => Operator::GreaterThan(number(value)?),
            "less_than" => Operator::LessThan(number(value)?),
            "starts_with" => Operator::StartsWith(value.to_string()),
            "ends_with" => Operator::EndsWith(value.to_string()),
            "in_segment" => {
                let items: Vec<&str> = value.split(',').map(str::trim).collect();
                if items.iter().any(|i| i.is_empty()) {
                    return Err(refused(format!(
                        "rule `{text}`: a segment is a comma-separated list without empty entries, e.g. `pro,enterprise`"
                    )));
                }
                Operator::InSegment(items.into_iter().map(scalar).collect())
            }
            _ => {
                // semver: `CMP VERSION` or `CMPVERSION`.
                let cmp_len =
                    value.find(|c: char| !matches!(c, '=' | '!' | '<' | '>' | '^' | '~')).unwrap_or(value.len());
                let (cmp, version) = (&value[..cmp_len], value[cmp_len..].trim());
                if !SEMVER_COMPARISONS.contains(&cmp) {
                    return Err(refused(format!(
                        "rule `{text}`: semver needs a comparison ({}) then a version, e.g. `version semver >= 2.1.0`",
                        SEMVER_COMPARISONS.join(" ")
                    )));
                }
                if Version::parse(version).is_none() {
                    return Err(refused(format!(
                        "rule `{text}`: `{version}` is not a semantic version (e.g. 2.1.0, 2.1.0-rc.1)"
                    )));
                }
                Operator::SemVer(cmp.to_string(), version.to_string())
            }
        };
        Ok(Self { attribute, operator })
    }

    /// The condition as flagd JsonLogic.
    pub fn to_logic(&self) -> Value {
        let a = json!({"var": self.attribute});
        match &self.operator {
            Operator::Equals(v) => json!({"==": [a, v]}),
            Operator::NotEquals(v) => json!({"!=": [a, v]}),
            Operator::Contains(s) => json!({"in": [s, a]}),
            Operator::GreaterThan(n) => json!({">": [a, n]}),
            Operator::LessThan(n) => json!({"<": [a, n]}),
            Operator::InSegment(items) => json!({"in": [a, items]}),
            Operator::StartsWith(s) => json!({"and": [a, {"starts_with": [a, s]}]}),
            Operator::EndsWith(s) => json!({"and": [a, {"ends_with": [a, s]}]}),
            Operator::SemVer(cmp, v) => json!({"and": [a, {"sem_ver": [a, cmp, v]}]}),
        }
    }

    /// The condition a piece of JsonLogic was compiled from, if it was.
    pub fn from_logic(logic: &Value) -> Option<Self> {
        let var = |v: &Value| -> Option<String> {
            let (name, attr) = single(v)?;
            (name == "var").then(|| attr.as_str().map(str::to_string)).flatten()
        };
        let (mut op, mut args) = single(logic)?;
        let mut guard = None;
        // The presence guard around a custom operation: `{"and": [A, {op: [A, …]}]}`.
        if op == "and"
            && let Some([a, inner]) = args.as_array().map(Vec::as_slice)
        {
            guard = Some(var(a)?);
            (op, args) = single(inner)?;
            if !matches!(op, "starts_with" | "ends_with" | "sem_ver") {
                return None;
            }
        }
        let args = args.as_array()?;
        let scalar_ok = |v: &Value| v.is_string() || v.is_number() || v.is_boolean();
        let (attribute, operator) = match (op, args.as_slice()) {
            ("==", [a, v]) if scalar_ok(v) => (var(a)?, Operator::Equals(v.clone())),
            ("!=", [a, v]) if scalar_ok(v) => (var(a)?, Operator::NotEquals(v.clone())),
            (">", [a, v]) if v.is_number() => (var(a)?, Operator::GreaterThan(v.clone())),
            ("<", [a, v]) if v.is_number() => (var(a)?, Operator::LessThan(v.clone())),
            ("in", [Value::String(s), a]) => (var(a)?, Operator::Contains(s.clone())),
            ("in", [a, Value::Array(items)]) if items.iter().all(scalar_ok) => {
                (var(a)?, Operator::InSegment(items.clone()))
            }
            ("starts_with", [a, Value::String(s)]) => (var(a)?, Operator::StartsWith(s.clone())),
            ("ends_with", [a, Value::String(s)]) => (var(a)?, Operator::EndsWith(s.clone())),
            ("sem_ver", [a, Value::String(c), Value::String(v)]) if SEMVER_COMPARISONS.contains(&c.as_str()) => {
                (var(a)?, Operator::SemVer(c.clone(), v.clone()))
            }
            _ => return None,
        };
        let custom = matches!(operator, Operator::StartsWith(_) | Operator::EndsWith(_) | Operator::SemVer(..));
        if custom != guard.is_some() || guard.is_some_and(|g| g != attribute) {
            return None;
        }
        Some(Self { attribute, operator })
    }
}

/// The one `{"op": args}` of a JsonLogic operation.
fn single(v: &Value) -> Option<(&str, &Value)> {
    let map = v.as_object()?;
    if map.len() != 1 {
        return None;
    }
    map.iter().next().map(|(k, v)| (k.as_str(), v))
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.attribute;
        match &self.operator {
            Operator::Equals(v) => write!(f, "{a} equals {}", scalar_text(v)),
            Operator::NotEquals(v) => write!(f, "{a} not_equals {}", scalar_text(v)),
            Operator::Contains(s) => write!(f, "{a} contains {s}"),
            Operator::GreaterThan(n) => write!(f, "{a} greater_than {n}"),
            Operator::LessThan(n) => write!(f, "{a} less_than {n}"),
            Operator::InSegment(items) => {
                write!(f, "{a} in_segment {}", items.iter().map(scalar_text).collect::<Vec<_>>().join(","))
            }
            Operator::StartsWith(s) => write!(f, "{a} starts_with {s}"),
            Operator::EndsWith(s) => write!(f, "{a} ends_with {s}"),
            Operator::SemVer(c, v) => write!(f, "{a} semver {c} {v}"),
        }
    }
}

impl Rule {
    /// The rule's condition: `{"and": [...]}` for `all`, `{"or": [...]}` for `any`.
    pub fn condition_logic(&self) -> Value {
        let conditions: Vec<Value> = self.conditions.iter().map(Condition::to_logic).collect();
        match self.matching {
            Match::All => json!({"and": conditions}),
            Match::Any => json!({"or": conditions}),
        }
    }

    fn from_logic(condition: &Value, serve: &Value) -> Option<Self> {
        let (op, args) = single(condition)?;
        let matching = match op {
            "and" => Match::All,
            "or" => Match::Any,
            _ => return None,
        };
        let conditions = args.as_array()?.iter().map(Condition::from_logic).collect::<Option<Vec<_>>>()?;
        if conditions.is_empty() {
            return None;
        }
        Some(Self { conditions, matching, serve: serve.as_str()?.to_string() })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joiner = match self.matching {
            Match::All => " and ",
            Match::Any => " or ",
        };
        let conditions: Vec<String> = self.conditions.iter().map(ToString::to_string).collect();
        write!(f, "{} → {}", conditions.join(joiner), self.serve)
    }
}

/// What a flag's targeting is, as far as the console's edits are concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Targeting {
    /// No targeting: everyone gets the default variant.
    None,
    /// A `fractional` split and nothing else.
    Split(Value),
    /// Rules compiled here, then the split they fall back to (if any).
    Rules { rules: Vec<Rule>, fallback: Option<Value> },
    /// Targeting written by hand, which the console does not edit.
    Custom,
}

fn is_split(v: &Value) -> bool {
    single(v).is_some_and(|(op, _)| op == "fractional")
}

impl Targeting {
    pub fn of(targeting: Option<&Value>) -> Self {
        let Some(t) = targeting.filter(|t| !t.is_null()) else { return Self::None };
        if is_split(t) {
            return Self::Split(t.clone());
        }
        let Some(("if", Value::Array(args))) = single(t) else { return Self::Custom };
        if args.len() < 2 {
            return Self::Custom;
        }
        let (pairs, fallback) = if args.len() % 2 == 1 {
            let last = &args[args.len() - 1];
            if !is_split(last) {
                return Self::Custom;
            }
            (&args[..args.len() - 1], Some(last.clone()))
        } else {
            (&args[..], None)
        };
        let rules = pairs.chunks(2).map(|p| Rule::from_logic(&p[0], &p[1])).collect::<Option<Vec<_>>>();
        match rules {
            Some(rules) => Self::Rules { rules, fallback },
            None => Self::Custom,
        }
    }

    /// The targeting to store (`None`: no targeting at all).
    pub fn to_logic(&self) -> Option<Value> {
        match self {
            Self::None | Self::Custom => None,
            Self::Split(s) => Some(s.clone()),
            Self::Rules { rules, fallback } if rules.is_empty() => fallback.clone(),
            Self::Rules { rules, fallback } => {
                let mut args = Vec::with_capacity(rules.len() * 2 + 1);
                for r in rules {
                    args.push(r.condition_logic());
                    args.push(Value::String(r.serve.clone()));
                }
                args.extend(fallback.clone());
                Some(json!({ "if": args }))
            }
        }
    }
}

/// Compile `rules`, in order, falling back to `fallback` (a `fractional` split) or to `null`.
pub fn compile(rules: &[Rule], fallback: Option<Value>) -> Option<Value> {
    Targeting::Rules { rules: rules.to_vec(), fallback }.to_logic()
}

fn set_targeting(flag: &mut Map<String, Value>, t: &Targeting) {
    match t.to_logic() {
        Some(v) => {
            flag.insert("targeting".into(), v);
        }
        None => {
            flag.remove("targeting");
        }
    }
}

fn variants_of(flag: &Map<String, Value>) -> Vec<String> {
    flag.get("variants").and_then(Value::as_object).map(|v| v.keys().cloned().collect()).unwrap_or_default()
}

impl FlagSet {
    /// The flag's targeting as the console sees it.
    pub fn targeting(&self, key: &str) -> Targeting {
        Targeting::of(self.flag(key).and_then(|f| f.get("targeting")))
    }

    /// The rules the console compiled into the flag's targeting (none for hand-written targeting).
    pub fn rules(&self, key: &str) -> Vec<Rule> {
        match self.targeting(key) {
            Targeting::Rules { rules, .. } => rules,
            _ => Vec::new(),
        }
    }

    /// Add `rule` after the flag's rules, keeping its fractional split as the fallback.
    pub fn add_rule(&mut self, key: &str, rule: Rule) -> Result<(), FlagError> {
        let flag = self.flag_mut(key)?;
        let variants = variants_of(flag);
        if !variants.contains(&rule.serve) {
            return Err(refused(format!(
                "`{key}` has no variant `{}` to serve (variants: {})",
                rule.serve,
                variants.join(", ")
            )));
        }
        if rule.conditions.is_empty() {
            return Err(refused("a rule needs at least one condition".into()));
        }
        let next = match Targeting::of(flag.get("targeting")) {
            Targeting::None => Targeting::Rules { rules: vec![rule], fallback: None },
            Targeting::Split(s) => Targeting::Rules { rules: vec![rule], fallback: Some(s) },
            Targeting::Rules { mut rules, fallback } => {
                rules.push(rule);
                Targeting::Rules { rules, fallback }
            }
            Targeting::Custom => {
                return Err(refused(format!(
                    "`{key}` has targeting written by hand; edit it in the flag file, or remove it with \
                     `shipdeck flags target {key} --clear` first"
                )));
            }
        };
        set_targeting(flag, &next);
        self.check()
    }

    /// Remove the flag's rules, keeping its fractional split; hand-written targeting is removed
    /// whole. Returns what was removed, for the record (`None`: nothing to remove).
    pub fn clear_rules(&mut self, key: &str) -> Result<Option<String>, FlagError> {
        let flag = self.flag_mut(key)?;
        let (next, removed) = match Targeting::of(flag.get("targeting")) {
            Targeting::None | Targeting::Split(_) => return Ok(None),
            Targeting::Rules { rules, fallback } => {
                let next = fallback.map_or(Targeting::None, Targeting::Split);
                (next, format!("{} targeting rule(s)", rules.len()))
            }
            Targeting::Custom => (Targeting::None, "its hand-written targeting".to_string()),
        };
        set_targeting(flag, &next);
        self.check()?;
        Ok(Some(removed))
    }

    /// Split users over any of the flag's variants by weight (flagd's `fractional`); with rules,
    /// the split is what the rules fall back to.
    pub fn set_weights(&mut self, key: &str, weights: &[(String, u32)]) -> Result<(), FlagError> {
        let flag = self.flag_mut(key)?;
        let variants = variants_of(flag);
        if weights.is_empty() {
            return Err(refused("give at least one VARIANT=WEIGHT".into()));
        }
        for (i, (v, _)) in weights.iter().enumerate() {
            if !variants.contains(v) {
                return Err(refused(format!("`{key}` has no variant `{v}` (variants: {})", variants.join(", "))));
            }
            if weights[..i].iter().any(|(seen, _)| seen == v) {
                return Err(refused(format!("variant `{v}` is weighted twice")));
            }
        }
        let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return Err(refused("the weights add up to 0; at least one variant needs a weight above 0".into()));
        }
        if total > 2_147_483_647 {
            return Err(refused(format!("the weights add up to {total}, more than flagd accepts")));
        }
        let split = json!({"fractional": weights.iter().map(|(v, w)| json!([v, w])).collect::<Vec<_>>()});
        let next = match Targeting::of(flag.get("targeting")) {
            Targeting::None | Targeting::Split(_) => Targeting::Split(split),
            Targeting::Rules { rules, .. } => Targeting::Rules { rules, fallback: Some(split) },
            Targeting::Custom => {
                return Err(refused(format!(
                    "`{key}` has targeting written by hand; weights would replace it. Edit the flag file, \
                     or `shipdeck flags target {key} --clear` first"
                )));
            }
        };
        set_targeting(flag, &next);
        self.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::eval::{Context, FlagEvaluator, Reason};
    use proptest::prelude::*;

    const DOC: &str = r#"{"flags": {"f": {"state": "ENABLED",
        "variants": {"on": true, "off": false, "beta": true}, "defaultVariant": "off"}}}"#;

    fn rule(conditions: &[&str], matching: Match, serve: &str) -> Rule {
        let conditions = conditions.iter().map(|c| Condition::parse(c).unwrap()).collect();
        Rule { conditions, matching, serve: serve.into() }
    }

    fn eval(set: &FlagSet, ctx: Value) -> (Option<String>, Reason) {
        let e = FlagEvaluator::new(set).unwrap();
        let Value::Object(map) = ctx else { panic!("context is an object") };
        let r = e.evaluate("f", &Context::from(&map));
        (r.variant.map(str::to_string), r.reason)
    }

    #[test]
    fn each_operator_compiles_to_flagd_jsonlogic() {
        let cases = [
            ("country equals NL", json!({"==": [{"var": "country"}, "NL"]})),
            ("age equals 30", json!({"==": [{"var": "age"}, 30]})),
            ("country not_equals NL", json!({"!=": [{"var": "country"}, "NL"]})),
            ("email contains @acme", json!({"in": ["@acme", {"var": "email"}]})),
            ("age greater_than 17", json!({">": [{"var": "age"}, 17]})),
            ("age less_than 65.5", json!({"<": [{"var": "age"}, 65.5]})),
            ("plan in_segment pro, enterprise", json!({"in": [{"var": "plan"}, ["pro", "enterprise"]]})),
            (
                "email starts_with admin",
                json!({"and": [{"var": "email"}, {"starts_with": [{"var": "email"}, "admin"]}]}),
            ),
            (
                "email ends_with @acme.com",
                json!({"and": [{"var": "email"}, {"ends_with": [{"var": "email"}, "@acme.com"]}]}),
            ),
            (
                "version semver >= 2.1.0",
                json!({"and": [{"var": "version"}, {"sem_ver": [{"var": "version"}, ">=", "2.1.0"]}]}),
            ),
            ("version semver ^2", json!({"and": [{"var": "version"}, {"sem_ver": [{"var": "version"}, "^", "2"]}]})),
            ("city equals New York", json!({"==": [{"var": "city"}, "New York"]})),
        ];
        for (text, logic) in cases {
            let c = Condition::parse(text).unwrap();
            assert_eq!(c.to_logic(), logic, "{text}");
            assert_eq!(Condition::from_logic(&logic), Some(c.clone()), "{text}");
            assert_eq!(Condition::parse(&c.to_string()).unwrap(), c, "{text} displays as it parses");
        }
    }

    #[test]
    fn bad_conditions_are_refused_saying_why() {
        for (text, expect) in [
            ("email regex ^a.*", "flagd cannot evaluate regular expressions"),
            ("country like NL", "unknown operator `like`"),
            ("country", "ATTRIBUTE OPERATOR VALUE"),
            ("country equals", "needs a value"),
            ("age greater_than ten", "is not one"),
            ("version semver >= 2.x", "not a semantic version"),
            ("version semver 2.0.0", "needs a comparison"),
            ("version semver => 2.0.0", "needs a comparison"),
            ("plan in_segment pro,,free", "without empty entries"),
        ] {
            let err = Condition::parse(text).unwrap_err().to_string();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }

    #[test]
    fn rules_chain_in_order_and_fall_back_to_the_split_or_the_default() {
        let mut set = FlagSet::parse(DOC, "t").unwrap();
        set.add_rule("f", rule(&["plan in_segment pro,enterprise", "country equals NL"], Match::All, "on")).unwrap();
        set.add_rule("f", rule(&["version semver >= 2.0.0", "email ends_with @acme.com"], Match::Any, "beta")).unwrap();
        let ctx = |v: Value| v;
        assert_eq!(eval(&set, ctx(json!({"plan": "pro", "country": "NL"}))).0.as_deref(), Some("on"));
        assert_eq!(
            eval(&set, ctx(json!({"plan": "pro", "country": "DE", "version": "2.3.1"}))).0.as_deref(),
            Some("beta")
        );
        assert_eq!(eval(&set, ctx(json!({"email": "x@acme.com"}))).0.as_deref(), Some("beta"));
        assert_eq!(eval(&set, ctx(json!({"plan": "free"}))), (Some("off".into()), Reason::Default));
        assert_eq!(set.rules("f").len(), 2);

        // A split becomes the fallback, and stays when the rules are cleared.
        set.set_weights("f", &[("on".into(), 0), ("beta".into(), 1)]).unwrap();
        assert_eq!(eval(&set, json!({"targetingKey": "u1"})), (Some("beta".into()), Reason::TargetingMatch));
        assert_eq!(eval(&set, json!({"plan": "pro", "country": "NL"})).0.as_deref(), Some("on"));
        assert!(set.clear_rules("f").unwrap().is_some());
        assert_eq!(set.targeting("f"), Targeting::Split(json!({"fractional": [["on", 0], ["beta", 1]]})));
        assert_eq!(set.clear_rules("f").unwrap(), None);
    }

    #[test]
    fn weights_refuse_unknown_variants_duplicates_and_zero_totals() {
        let mut set = FlagSet::parse(DOC, "t").unwrap();
        let w = |pairs: &[(&str, u32)]| pairs.iter().map(|(v, w)| (v.to_string(), *w)).collect::<Vec<_>>();
        assert!(set.set_weights("f", &w(&[("gamma", 1)])).unwrap_err().to_string().contains("no variant `gamma`"));
        assert!(set.set_weights("f", &w(&[("on", 0), ("off", 0)])).unwrap_err().to_string().contains("add up to 0"));
        assert!(set.set_weights("f", &w(&[("on", 1), ("on", 2)])).unwrap_err().to_string().contains("twice"));
        assert!(set.add_rule("f", rule(&["a equals 1"], Match::All, "nope")).is_err());
        assert_eq!(set.targeting("f"), Targeting::None);
    }

    #[test]
    fn hand_written_targeting_is_not_edited() {
        let doc = DOC.replace(
            r#""defaultVariant": "off""#,
            r#""defaultVariant": "off", "targeting": {"if": [{"var": "x"}, "on", "off"]}"#,
        );
        let mut set = FlagSet::parse(&doc, "t").unwrap();
        assert_eq!(set.targeting("f"), Targeting::Custom);
        assert!(
            set.add_rule("f", rule(&["a equals 1"], Match::All, "on")).unwrap_err().to_string().contains("by hand")
        );
        assert!(set.set_weights("f", &[("on".into(), 1)]).is_err());
        assert_eq!(set.clear_rules("f").unwrap().as_deref(), Some("its hand-written targeting"));
        assert_eq!(set.targeting("f"), Targeting::None);
    }

    /// A condition, with a context it holds for and one it does not.
    fn case() -> impl Strategy<Value = (String, Value, Value)> {
        // Words stay strings when typed as `flags eval --context` types them.
        let word = || "[a-z]{1,8}".prop_filter("a string", |w| w != "true" && w != "false");
        prop_oneof![
            (word(), word()).prop_filter("distinct", |(a, b)| a != b).prop_map(|(a, b)| (
                format!("attr equals {a}"),
                json!(a),
                json!(b)
            )),
            (word(), word()).prop_filter("distinct", |(a, b)| a != b).prop_map(|(a, b)| (
                format!("attr not_equals {a}"),
                json!(b),
                json!(a)
            )),
            (word(), word(), word())
                .prop_filter("absent", |(n, _, o)| !o.contains(n.as_str()))
                .prop_map(|(n, h, o)| (format!("attr contains {n}"), json!(format!("{h}{n}{h}")), json!(o))),
            (-1000i64..1000, 1i64..100).prop_map(|(n, d)| (
                format!("attr greater_than {n}"),
                json!(n + d),
                json!(n - d + 1)
            )),
            (-1000i64..1000, 1i64..100).prop_map(|(n, d)| (format!("attr less_than {n}"), json!(n - d), json!(n))),
            (proptest::collection::vec(word(), 1..4), word())
                .prop_filter("outside", |(seg, o)| !seg.contains(o))
                .prop_map(|(seg, o)| (format!("attr in_segment {}", seg.join(",")), json!(seg[0]), json!(o))),
            (word(), word()).prop_filter("no prefix", |(p, o)| !o.starts_with(p.as_str())).prop_map(|(p, o)| (
                format!("attr starts_with {p}"),
                json!(format!("{p}{o}")),
                json!(o)
            )),
            (word(), word()).prop_filter("no suffix", |(s, o)| !o.ends_with(s.as_str())).prop_map(|(s, o)| (
                format!("attr ends_with {s}"),
                json!(format!("{o}{s}")),
                json!(o)
            )),
            (0u32..20, 0u32..20, 0u32..20).prop_map(|(a, b, c)| (
                format!("attr semver >= {a}.{b}.{c}"),
                json!(format!("{a}.{b}.{}", c + 1)),
                json!(format!("{a}.{b}.{c}-rc.1"))
            )),
            (1u32..20, 0u32..20).prop_map(|(a, b)| (
                format!("attr semver ^ {a}.{b}.0"),
                json!(format!("{a}.{}.7", b + 3)),
                json!(format!("{}.{b}.0", a + 1))
            )),
            (1u32..20, 0u32..20).prop_map(|(a, b)| (
                format!("attr semver ~ {a}.{b}.0"),
                json!(format!("{a}.{b}.9")),
                json!(format!("{a}.{}.0", b + 1))
            )),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// A compiled rule, evaluated as flagd does, serves its variant to a matching context
        /// and falls back (to the split, else the default variant) for one that does not match.
        #[test]
        fn a_compiled_rule_serves_its_variant_exactly_when_it_matches(
            (text, hit, miss) in case(),
            any_match in any::<bool>(),
            with_split in any::<bool>(),
        ) {
            let mut set = FlagSet::parse(DOC, "t").unwrap();
            if with_split {
                set.set_weights("f", &[("off".into(), 0), ("beta".into(), 5)]).unwrap();
            }
            let matching = if any_match { Match::Any } else { Match::All };
            set.add_rule("f", rule(&[&text], matching, "on")).unwrap();
            prop_assert_eq!(eval(&set, json!({"attr": hit, "targetingKey": "k"})), (Some("on".to_string()), Reason::TargetingMatch));
            let fallback = if with_split { (Some("beta".to_string()), Reason::TargetingMatch) } else { (Some("off".to_string()), Reason::Default) };
            prop_assert_eq!(eval(&set, json!({"attr": miss, "targetingKey": "k"})), fallback);
            prop_assert_eq!(set.rules("f"), vec![rule(&[&text], matching, "on")]);
        }
    }
}
