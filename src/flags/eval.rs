//! Flag evaluation as flagd evaluates: JsonLogic targeting (datalogic-rs, compiled once per
//! document load) plus flagd's custom operations `fractional`, `sem_ver`, `starts_with` and
//! `ends_with`, written here rather than taken from datalogic-rs's `flagd` feature (see
//! [`ops`]); `$flagd.flagKey` and `$flagd.timestamp` in the context; shared `$evaluators`
//! inlined where a rule says `{"$ref": "name"}`.
//!
//! The result of a targeting rule picks the variant: a variant name (or `true` / `false`, for
//! the variants named `"true"` / `"false"`) is a TARGETING_MATCH, `null` is DEFAULT, anything
//! else is an ERROR. A custom operation given input it cannot use makes the whole rule `null`,
//! so the flag falls back to its default variant, as flagd's conformance suite asks
//! (`@operator-errors`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use datalogic_rs::bumpalo::Bump;
use datalogic_rs::datavalue::NumberValue;
use datalogic_rs::{DataValue, Engine, ErrorKind, Logic};
use serde_json::{Map, Value};

use super::{FlagError, FlagSet};

pub mod ops;

self_cell::self_cell!(
    struct ContextCell {
        owner: Bump,
        #[covariant]
        dependent: DataValue,
    }
);

/// The evaluation context: attributes the rules read with `var`, and `targetingKey`.
///
/// Built once, from a JSON object or from pairs, into one small arena of its own in the form
/// the rules read (a datalogic-rs value): an evaluation borrows it, neither converting nor
/// copying it, and its attributes sit together in memory. A `$flagd` attribute is dropped, as
/// the evaluator supplies its own (as flagd does). It is `Send` but not `Sync`.
pub struct Context(ContextCell);

impl Context {
    /// No attributes.
    pub fn new() -> Self {
        Self::build(std::iter::empty())
    }

    fn build<'k>(attrs: impl Iterator<Item = (&'k str, &'k Value)>) -> Self {
        let attrs: Vec<(&str, &Value)> = attrs.filter(|(k, _)| *k != "$flagd").collect();
        let size: usize = attrs.iter().map(|(k, v)| k.len() + size_of::<(&str, DataValue)>() + data_size(v)).sum();
        Self(ContextCell::new(Bump::with_capacity(size.max(16)), |arena| {
            DataValue::Object(
                arena.alloc_slice_fill_iter(attrs.iter().map(|(k, v)| (&*arena.alloc_str(k), to_data(v, arena)))),
            )
        }))
    }

    /// The attributes, in order.
    pub fn attributes(&self) -> &[(&str, DataValue<'_>)] {
        self.0.borrow_dependent().as_object().unwrap_or(&[])
    }

    pub fn len(&self) -> usize {
        self.attributes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.attributes().is_empty()
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Context({})", self.0.borrow_dependent())
    }
}

impl From<&Map<String, Value>> for Context {
    fn from(map: &Map<String, Value>) -> Self {
        Self::build(map.iter().map(|(k, v)| (k.as_str(), v)))
    }
}

impl From<Map<String, Value>> for Context {
    fn from(map: Map<String, Value>) -> Self {
        Self::from(&map)
    }
}

/// From `(name, value)` pairs; a later pair replaces an earlier one of the same name.
impl<K: AsRef<str>> FromIterator<(K, Value)> for Context {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        let mut pairs: Vec<(K, Value)> = Vec::new();
        for (k, v) in iter {
            match pairs.iter_mut().find(|(seen, _)| seen.as_ref() == k.as_ref()) {
                Some(slot) => slot.1 = v,
                None => pairs.push((k, v)),
            }
        }
        Self::build(pairs.iter().map(|(k, v)| (k.as_ref(), v)))
    }
}

/// Bytes a value takes in a context's arena (enough to size it in one piece).
fn data_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(|i| size_of::<DataValue>() + data_size(i)).sum(),
        Value::Object(m) => m.iter().map(|(k, i)| k.len() + size_of::<(&str, DataValue)>() + data_size(i)).sum(),
        _ => 0,
    }
}

/// The time `$flagd.timestamp` reports, in Unix seconds. Injectable for tests.
pub trait Clock: Send + Sync {
    fn unix_seconds(&self) -> i64;
}

/// The system clock. On Linux it reads the coarse real-time clock (a few nanoseconds, where a
/// precise reading costs tens): it lags the precise one by at most a scheduler tick (a few
/// milliseconds), far below the second `$flagd.timestamp` counts in.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[cfg(target_os = "linux")]
    fn unix_seconds(&self) -> i64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec, which `ts` is.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
            return ts.tv_sec;
        }
        chrono::Utc::now().timestamp()
    }

    #[cfg(not(target_os = "linux"))]
    fn unix_seconds(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

/// A clock that always says the same second.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn unix_seconds(&self) -> i64 {
        self.0
    }
}

/// Why a flag resolved as it did (OpenFeature's reasons, as flagd reports them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// No targeting: the default variant, always.
    Static,
    /// The targeting rule named a variant.
    TargetingMatch,
    /// The targeting rule returned null (or a custom operation could not evaluate): the
    /// default variant, or the application's code default when the flag has none.
    Default,
    /// The flag is DISABLED: the application's code default.
    Disabled,
    /// See the error code.
    Error,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        })
    }
}

/// OpenFeature error codes flagd returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    FlagNotFound,
    /// The rule failed to evaluate or returned something that is not one of the variants.
    ParseError,
    TypeMismatch,
    General,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::General => "GENERAL",
        })
    }
}

/// One evaluation's outcome. `variant` and `value` are `None` when the application's code
/// default applies (DISABLED, ERROR, or no default variant).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution<'e> {
    pub variant: Option<&'e str>,
    pub value: Option<&'e Value>,
    pub reason: Reason,
    pub error: Option<ErrorCode>,
}

impl Resolution<'_> {
    fn error(code: ErrorCode) -> Self {
        Self { variant: None, value: None, reason: Reason::Error, error: Some(code) }
    }
}

/// The type an application asks for; a variant of another type is a TYPE_MISMATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagType {
    Boolean,
    String,
    /// Integer or float: JSON does not tell them apart.
    Number,
    Object,
}

impl FlagType {
    fn holds(self, v: &Value) -> bool {
        match self {
            FlagType::Boolean => v.is_boolean(),
            FlagType::String => v.is_string(),
            FlagType::Number => v.is_number(),
            FlagType::Object => v.is_object(),
        }
    }
}

struct CompiledFlag {
    /// The flag's key, which `$flagd.flagKey` reports.
    key: Box<str>,
    enabled: bool,
    /// Few in practice: a linear search by name beats hashing.
    variants: Vec<(Box<str>, Value)>,
    /// Index in `variants`.
    default_variant: Option<usize>,
    targeting: Option<Logic>,
}

/// Every flag of a document, its targeting compiled once; evaluate as often as needed.
pub struct FlagEvaluator {
    engine: Engine,
    flags: HashMap<Box<str>, CompiledFlag, BuildHasherDefault<KeyHasher>>,
    clock: Arc<dyn Clock>,
}

/// FxHash (rustc's hasher) for flag keys: a multiply and a rotate per 8 bytes, where the
/// default SipHash costs tens of nanoseconds per lookup. The table is built from the flag
/// document and never grows from callers' input, so there is no flooding to resist.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl KeyHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl fmt::Debug for FlagEvaluator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagEvaluator").field("flags", &self.flags.len()).finish()
    }
}

/// The datalogic-rs engine with flagd's custom operations.
fn engine() -> Engine {
    Engine::builder()
        .add_operator("fractional", ops::Fractional)
        .add_operator("sem_ver", ops::SemVer)
        .add_operator(ops::STARTS_WITH.name, ops::STARTS_WITH)
        .add_operator(ops::ENDS_WITH.name, ops::ENDS_WITH)
        .build()
}

thread_local! {
    static ARENA: RefCell<Bump> = RefCell::new(Bump::with_capacity(4096));
}

impl FlagEvaluator {
    /// Compile every flag of `set`, with the system clock.
    pub fn new(set: &FlagSet) -> Result<Self, FlagError> {
        Self::with_clock(set, Arc::new(SystemClock))
    }

    pub fn with_clock(set: &FlagSet, clock: Arc<dyn Clock>) -> Result<Self, FlagError> {
        Self::from_doc(&set.doc, "the flag document", clock)
    }

    /// Compile a flagd document; an error names the JSON path of the problem.
    pub(crate) fn from_doc(doc: &Value, source: &str, clock: Arc<dyn Clock>) -> Result<Self, FlagError> {
        let invalid = |message: String| FlagError::Invalid { path: source.to_string(), message };
        let engine = engine();
        let evaluators = match doc.get("$evaluators") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(invalid("$evaluators must be an object".into())),
        };
        let flags = doc
            .get("flags")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("needs a top-level `flags` object".into()))?;
        let mut compiled = HashMap::with_capacity_and_hasher(flags.len(), BuildHasherDefault::default());
        for (key, flag) in flags {
            let path = format!("flags.{key}");
            let flag = flag.as_object().ok_or_else(|| invalid(format!("{path} must be an object")))?;
            let enabled = match flag.get("state").and_then(Value::as_str) {
                Some("ENABLED") => true,
                Some("DISABLED") => false,
                _ => return Err(invalid(format!("{path}.state must be \"ENABLED\" or \"DISABLED\""))),
            };
            let variants = match flag.get("variants") {
                Some(Value::Object(v)) if !v.is_empty() => v.clone(),
                _ => return Err(invalid(format!("{path}.variants must be an object with at least one variant"))),
            };
            let default_variant = match flag.get("defaultVariant") {
                None | Some(Value::Null) => None,
                Some(Value::String(d)) if variants.contains_key(d) => variants.keys().position(|k| k == d),
                Some(Value::String(d)) => {
                    return Err(invalid(format!("{path}.defaultVariant `{d}` is not one of its variants")));
                }
                Some(_) => return Err(invalid(format!("{path}.defaultVariant must be a string or null"))),
            };
            let targeting = match flag.get("targeting") {
                None | Some(Value::Null) => None,
                Some(Value::Object(o)) if o.is_empty() => None,
                Some(t @ Value::Object(_)) => {
                    let t =
                        resolve_refs(t, &evaluators, &format!("{path}.targeting"), &mut Vec::new()).map_err(invalid)?;
                    unknown_operator(&t, &engine, &format!("{path}.targeting")).map_or(Ok(()), |e| Err(invalid(e)))?;
                    let logic = engine
                        .compile(&t)
                        .map_err(|e| invalid(format!("{path}.targeting is not valid JsonLogic: {e}")))?;
                    Some(logic)
                }
                Some(_) => return Err(invalid(format!("{path}.targeting must be a JsonLogic object"))),
            };
            let variants = variants.into_iter().map(|(k, v)| (k.into_boxed_str(), v)).collect();
            compiled.insert(
                key.as_str().into(),
                CompiledFlag { key: key.as_str().into(), enabled, variants, default_variant, targeting },
            );
        }
        Ok(Self { engine, flags: compiled, clock })
    }

    /// Evaluate `key` for `ctx`, as flagd's generic resolve does.
    pub fn evaluate(&self, key: &str, ctx: &Context) -> Resolution<'_> {
        let Some(flag) = self.flags.get(key) else {
            return Resolution::error(ErrorCode::FlagNotFound);
        };
        if !flag.enabled {
            return Resolution { variant: None, value: None, reason: Reason::Disabled, error: None };
        }
        let Some(logic) = &flag.targeting else {
            return flag.default_resolution(Reason::Static);
        };
        let now = self.clock.unix_seconds();
        let picked = ARENA.with(|cell| match cell.try_borrow_mut() {
            Ok(mut arena) => {
                arena.reset();
                self.run(logic, flag, ctx, now, &arena)
            }
            Err(_) => self.run(logic, flag, ctx, now, &Bump::new()),
        });
        match picked {
            Picked::Null => flag.default_resolution(Reason::Default),
            Picked::Variant(name, value) => {
                Resolution { variant: Some(name), value: Some(value), reason: Reason::TargetingMatch, error: None }
            }
            Picked::Invalid => Resolution::error(ErrorCode::ParseError),
        }
    }

    /// Evaluate and check the value's type, as flagd's typed resolvers do.
    pub fn evaluate_as(&self, key: &str, ctx: &Context, ty: FlagType) -> Resolution<'_> {
        let r = self.evaluate(key, ctx);
        match r.value {
            Some(v) if !ty.holds(v) => Resolution { variant: r.variant, ..Resolution::error(ErrorCode::TypeMismatch) },
            _ => r,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.keys().map(|k| &**k)
    }

    fn run<'e>(&'e self, logic: &Logic, flag: &'e CompiledFlag, ctx: &Context, now: i64, arena: &Bump) -> Picked<'e> {
        let data = context_value(ctx, &flag.key, now, arena);
        match self.engine.evaluate(logic, data, arena) {
            Ok(result) => flag.pick(result),
            Err(e) if is_operator_error(&e.kind) => Picked::Null,
            Err(_) => Picked::Invalid,
        }
    }
}

enum Picked<'e> {
    Null,
    Variant(&'e str, &'e Value),
    Invalid,
}

impl CompiledFlag {
    fn default_resolution(&self, reason: Reason) -> Resolution<'_> {
        match self.default_variant.and_then(|d| self.variants.get(d)) {
            Some((name, value)) => Resolution { variant: Some(name), value: Some(value), reason, error: None },
            // No default variant: the application's code default, reported as DEFAULT.
            None => Resolution { variant: None, value: None, reason: Reason::Default, error: None },
        }
    }

    /// The variant a targeting result names.
    fn pick(&self, result: &DataValue<'_>) -> Picked<'_> {
        let name = match result {
            DataValue::Null => return Picked::Null,
            DataValue::String(s) => *s,
            DataValue::Bool(true) => "true",
            DataValue::Bool(false) => "false",
            _ => return Picked::Invalid,
        };
        match self.variants.iter().find(|(n, _)| **n == *name) {
            Some((name, value)) => Picked::Variant(name, value),
            None => Picked::Invalid,
        }
    }
}

fn is_operator_error(kind: &ErrorKind) -> bool {
    matches!(kind, ErrorKind::Custom(source) if source.downcast_ref::<ops::OperatorError>().is_some())
}

/// The context as the rules see it: the caller's attributes (borrowed) plus `$flagd` (any
/// `$flagd` the caller sent was dropped when the context was built, as flagd replaces it).
fn context_value<'a>(ctx: &'a Context, flag_key: &'a str, now: i64, arena: &'a Bump) -> &'a DataValue<'a> {
    let flagd = arena.alloc_slice_copy(&[
        ("flagKey", DataValue::String(flag_key)),
        ("timestamp", DataValue::Number(NumberValue::from_i64(now))),
    ]);
    let attrs = ctx.attributes();
    let pairs = arena.alloc_slice_fill_with(attrs.len() + 1, |i| {
        attrs.get(i).copied().unwrap_or(("$flagd", DataValue::Object(flagd)))
    });
    arena.alloc(DataValue::Object(pairs))
}

fn to_data<'a>(v: &Value, arena: &'a Bump) -> DataValue<'a> {
    match v {
        Value::Null => DataValue::Null,
        Value::Bool(b) => DataValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => DataValue::Number(NumberValue::from_i64(i)),
            None => DataValue::Number(NumberValue::from_f64(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => DataValue::String(arena.alloc_str(s)),
        Value::Array(items) => DataValue::Array(arena.alloc_slice_fill_iter(items.iter().map(|i| to_data(i, arena)))),
        Value::Object(m) => DataValue::Object(
            arena.alloc_slice_fill_iter(m.iter().map(|(k, v)| (&*arena.alloc_str(k), to_data(v, arena)))),
        ),
    }
}

/// The first single-key object (a JsonLogic operation) whose operator the engine does not know.
fn unknown_operator(v: &Value, engine: &Engine, path: &str) -> Option<String> {
    match v {
        Value::Object(o) => {
            if let Some((op, _)) = o.iter().next().filter(|_| o.len() == 1)
                && !engine.has_custom_operator(op)
                && !engine.builtin_operator_names().any(|b| b == op)
            {
                return Some(format!("{path}: unknown JsonLogic operation `{op}`"));
            }
            o.iter().find_map(|(k, item)| unknown_operator(item, engine, &format!("{path}.{k}")))
        }
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, item)| unknown_operator(item, engine, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

/// Inline `{"$ref": "name"}` with the shared evaluator `name`, recursively; a reference to
/// nothing or a cycle is an error naming the JSON path.
fn resolve_refs(
    v: &Value,
    evaluators: &Map<String, Value>,
    path: &str,
    seen: &mut Vec<String>,
) -> Result<Value, String> {
    match v {
        Value::Object(o) if o.len() == 1 && o.contains_key("$ref") => {
            let Some(name) = o.get("$ref").and_then(Value::as_str) else {
                return Err(format!("{path}.$ref must be the name of a shared evaluator"));
            };
            let Some(target) = evaluators.get(name) else {
                return Err(format!("{path}: $ref to `{name}`, which is not in $evaluators"));
            };
            if seen.iter().any(|s| s == name) {
                return Err(format!("{path}: $ref `{name}` refers to itself"));
            }
            seen.push(name.to_string());
            let out = resolve_refs(target, evaluators, &format!("$evaluators.{name}"), seen);
            seen.pop();
            out
        }
        Value::Object(o) => {
            let mut out = Map::with_capacity(o.len());
            for (k, item) in o {
                out.insert(k.clone(), resolve_refs(item, evaluators, &format!("{path}.{k}"), seen)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| resolve_refs(item, evaluators, &format!("{path}[{i}]"), seen))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests;
