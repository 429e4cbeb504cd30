//! flagd's custom JsonLogic operations, as datalogic-rs custom operators (their arguments
//! arrive evaluated, as in flagd's Go evaluator).
//!
//! datalogic-rs 5.4's own `flagd` feature is not used: its `fractional` differs from flagd's
//! (an empty `targetingKey` gives null where flagd hashes the flag key alone; a non-integer or
//! non-numeric weight counts as 1 where flagd refuses it; variants must be strings where flagd
//! also takes booleans, numbers and null; no check of the int32 weight limits) and its
//! `sem_ver` accepts numbers and a `V` prefix where flagd refuses them. Built-in operators
//! cannot be overridden in datalogic-rs, so the feature stays off and these are registered
//! under flagd's names.
//!
//! Input an operation cannot use is an [`OperatorError`]: the evaluator turns the whole rule
//! into `null` and the flag falls back to its default variant.

use std::cmp::Ordering;
use std::fmt;

use datalogic_rs::bumpalo::Bump;
use datalogic_rs::operator::EvalContext;
use datalogic_rs::{ArenaExt, CustomOperator, DataValue, Error, Result};

/// An operation given input it cannot evaluate.
#[derive(Debug)]
pub struct OperatorError(pub String);

impl fmt::Display for OperatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OperatorError {}

fn fail<T>(message: &str) -> Result<T> {
    Err(Error::wrap(OperatorError(message.to_string())))
}

/// MurmurHash3 x86 32-bit (Austin Appleby's reference algorithm).
pub fn murmur3_x86_32(bytes: &[u8], seed: u32) -> u32 {
    murmur3_x86_32_concat(&[bytes], seed)
}

/// MurmurHash3 x86 32-bit of the concatenation of `parts`, streamed: no joined copy is built.
pub fn murmur3_x86_32_concat(parts: &[&[u8]], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h = seed;
    let mut len = 0usize;
    // Bytes of a 4-byte block not yet complete, carried across parts.
    let mut pending = [0u8; 4];
    let mut filled = 0usize;
    for part in parts {
        len += part.len();
        let mut bytes = *part;
        if filled > 0 {
            let take = (4 - filled).min(bytes.len());
            pending[filled..filled + take].copy_from_slice(&bytes[..take]);
            filled += take;
            bytes = &bytes[take..];
            if filled < 4 {
                continue;
            }
            h ^= mix(u32::from_le_bytes(pending));
            h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
        }
        let mut blocks = bytes.chunks_exact(4);
        for b in &mut blocks {
            h ^= mix(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
        }
        let tail = blocks.remainder();
        pending[..tail.len()].copy_from_slice(tail);
        filled = tail.len();
    }
    if filled > 0 {
        let mut k = 0u32;
        for (i, byte) in pending[..filled].iter().enumerate() {
            k |= u32::from(*byte) << (8 * i);
        }
        h ^= mix(k);
    }
    h ^= len as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The bucket of `key` among `total_weight` buckets: `(murmur3(key) × total) >> 32`.
pub fn bucket(key: &str, total_weight: u32) -> u64 {
    bucket_concat(&[key.as_bytes()], total_weight)
}

/// [`bucket`] of the concatenation of `parts`.
pub fn bucket_concat(parts: &[&[u8]], total_weight: u32) -> u64 {
    (u64::from(murmur3_x86_32_concat(parts, 0)) * u64::from(total_weight)) >> 32
}

fn lookup<'a>(v: &'a DataValue<'a>, key: &str) -> Option<&'a DataValue<'a>> {
    v.as_object()?.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// `fractional`: `[bucketing value?, [variant, weight?]...]`. Without a string bucketing
/// value, the key is `$flagd.flagKey` followed by `targetingKey`.
pub struct Fractional;

impl CustomOperator for Fractional {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        ctx: &mut EvalContext<'_, 'a>,
        _arena: &'a Bump,
    ) -> Result<&'a DataValue<'a>> {
        let Some(first) = args.first() else { return fail("fractional needs buckets") };
        // The bucketing key: the string given, or `$flagd.flagKey` followed by `targetingKey`
        // (hashed as one string without joining them).
        let (key, buckets): ([&[u8]; 2], &[&DataValue<'a>]) = match first.as_str() {
            Some(s) => ([s.as_bytes(), b""], &args[1..]),
            None => {
                let root = ctx.root_input();
                let Some(targeting_key) = lookup(root, "targetingKey").and_then(DataValue::as_str) else {
                    return fail("fractional: no bucketing value and no targetingKey in the context");
                };
                let flag_key = lookup(root, "$flagd").and_then(|f| lookup(f, "flagKey")).and_then(DataValue::as_str);
                let flag_key = flag_key.unwrap_or("");
                let rest = if first.is_null() { &args[1..] } else { args };
                ([flag_key.as_bytes(), targeting_key.as_bytes()], rest)
            }
        };
        if buckets.is_empty() {
            return fail("fractional needs at least one bucket");
        }
        let mut total: u64 = 0;
        // Few buckets in practice: parse twice rather than allocate.
        for b in buckets {
            total += parse_bucket(b)?.1;
        }
        if total == 0 {
            return fail("fractional: the weights add up to 0");
        }
        if total > i32::MAX as u64 {
            return fail("fractional: the weights add up to more than 2147483647");
        }
        let at = bucket_concat(&key, total as u32);
        let mut end = 0u64;
        for b in buckets {
            let (variant, weight) = parse_bucket(b)?;
            end += weight;
            if at < end {
                return Ok(variant);
            }
        }
        fail("fractional: no bucket") // unreachable: at < total
    }
}

/// A `[variant, weight?]` bucket: the variant a string, boolean, number or null; the weight
/// an integer (1 when missing or null, negative ones count as 0).
fn parse_bucket<'a>(b: &'a DataValue<'a>) -> Result<(&'a DataValue<'a>, u64)> {
    let Some(items) = b.as_array() else { return fail("fractional: a bucket must be an array") };
    let Some(variant) = items.first() else { return fail("fractional: a bucket needs a variant") };
    if !matches!(variant, DataValue::String(_) | DataValue::Bool(_) | DataValue::Number(_) | DataValue::Null) {
        return fail("fractional: a bucket's variant must be a string, boolean, number or null");
    }
    let weight = match items.get(1) {
        None | Some(DataValue::Null) => 1,
        Some(w) => {
            let Some(f) = w.as_f64().filter(|_| w.is_number()) else {
                return fail("fractional: a weight must be a number");
            };
            if f.fract() != 0.0 {
                return fail("fractional: weights must be integers");
            }
            if f > i32::MAX as f64 {
                return fail("fractional: a weight exceeds 2147483647");
            }
            if f < 0.0 { 0 } else { f as u64 }
        }
    };
    Ok((variant, weight))
}

fn two_strings<'a>(args: &[&'a DataValue<'a>], op: &str) -> Result<(&'a str, &'a str)> {
    match args {
        [a, b] => match (a.as_str(), b.as_str()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => fail(&format!("{op}: both arguments must be strings")),
        },
        _ => fail(&format!("{op} takes two arguments")),
    }
}

/// `starts_with` (`[value, prefix]`) and `ends_with` (`[value, suffix]`), both strings.
pub struct StringTest {
    pub name: &'static str,
    pub test: fn(&str, &str) -> bool,
}

pub const STARTS_WITH: StringTest = StringTest { name: "starts_with", test: |value, prefix| value.starts_with(prefix) };
pub const ENDS_WITH: StringTest = StringTest { name: "ends_with", test: |value, suffix| value.ends_with(suffix) };

impl CustomOperator for StringTest {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> Result<&'a DataValue<'a>> {
        let (value, affix) = two_strings(args, self.name)?;
        Ok(arena.bool((self.test)(value, affix)))
    }
}

/// `sem_ver`: `[version, operator, version]` with `=`, `!=`, `<`, `<=`, `>`, `>=`, `^` (same
/// major) and `~` (same major and minor), versions parsed as Go's `golang.org/x/mod/semver`
/// does after flagd prefixes a `v`: `1` and `1.2` stand for `1.0.0` and `1.2.0`, build
/// metadata is ignored.
pub struct SemVer;

impl CustomOperator for SemVer {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> Result<&'a DataValue<'a>> {
        let [a, op, b] = args else { return fail("sem_ver takes a version, an operator and a version") };
        let (Some(a), Some(op), Some(b)) = (a.as_str(), op.as_str(), b.as_str()) else {
            return fail("sem_ver: the versions and the operator must be strings");
        };
        let (Some(a), Some(b)) = (Version::parse(a), Version::parse(b)) else {
            return fail("sem_ver: not a semantic version");
        };
        let result = match op {
            "=" => a.cmp(&b) == Ordering::Equal,
            "!=" => a.cmp(&b) != Ordering::Equal,
            "<" => a.cmp(&b) == Ordering::Less,
            "<=" => a.cmp(&b) != Ordering::Greater,
            ">" => a.cmp(&b) == Ordering::Greater,
            ">=" => a.cmp(&b) != Ordering::Less,
            "^" => a.major == b.major,
            "~" => a.major == b.major && a.minor == b.minor,
            _ => return fail("sem_ver: unknown operator"),
        };
        Ok(arena.bool(result))
    }
}

/// A version as `golang.org/x/mod/semver` parses it (numbers kept as digit strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version<'s> {
    major: &'s str,
    minor: &'s str,
    patch: &'s str,
    /// Dot-separated identifiers after `-`; empty when none.
    pre: &'s str,
}

impl<'s> Version<'s> {
    /// Parse as flagd does: `v` is prefixed unless present, then x/mod/semver's grammar.
    pub fn parse(s: &'s str) -> Option<Self> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let (major, rest) = number(s)?;
        let (minor, rest) = match rest.strip_prefix('.') {
            None if rest.is_empty() => return Some(Self { major, minor: "0", patch: "0", pre: "" }),
            None => return None,
            Some(r) => number(r)?,
        };
        let (patch, rest) = match rest.strip_prefix('.') {
            None if rest.is_empty() => return Some(Self { major, minor, patch: "0", pre: "" }),
            None => return None,
            Some(r) => number(r)?,
        };
        let (pre, rest) = match rest.strip_prefix('-') {
            Some(r) => {
                let end = r.find('+').unwrap_or(r.len());
                let pre = &r[..end];
                if !pre.split('.').all(|id| ident(id) && !(numeric(id) && id.len() > 1 && id.starts_with('0'))) {
                    return None;
                }
                (pre, &r[end..])
            }
            None => ("", rest),
        };
        match rest.strip_prefix('+') {
            Some(build) if build.split('.').all(ident) => {}
            None if rest.is_empty() => {}
            _ => return None,
        }
        Some(Self { major, minor, patch, pre })
    }
}

fn number(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = &s[..end];
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    Some((n, &s[end..]))
}

fn ident(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

fn numeric(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|c| c.is_ascii_digit())
}

fn cmp_num(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for Version<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_num(self.major, other.major)
            .then_with(|| cmp_num(self.minor, other.minor))
            .then_with(|| cmp_num(self.patch, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    let (mut a, mut b) = (self.pre.split('.'), other.pre.split('.'));
                    loop {
                        match (a.next(), b.next()) {
                            (None, None) => return Ordering::Equal,
                            (None, Some(_)) => return Ordering::Less,
                            (Some(_), None) => return Ordering::Greater,
                            (Some(x), Some(y)) if x == y => continue,
                            (Some(x), Some(y)) => {
                                return match (numeric(x), numeric(y)) {
                                    (true, true) => cmp_num(x, y),
                                    (true, false) => Ordering::Less,
                                    (false, true) => Ordering::Greater,
                                    (false, false) => x.cmp(y),
                                };
                            }
                        }
                    }
                }
            })
    }
}

impl PartialOrd for Version<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
