//! Feature flags inside the local cluster's pods: the evaluator every pod reads on every API
//! request (swapped as a whole by [`super::LocalCluster::set_flags`], so a change applies to the
//! very next request), the evaluation context a pod builds from request headers, and the
//! response header that tells the router which variant a request was served.
//!
//! Request headers a pod reads (only for the flags its version declares effects for):
//! - `x-user-id: <id>` becomes the context's `targetingKey` (what flagd's `fractional` buckets
//!   on);
//! - `x-shipdeck-ctx-<name>: <value>` becomes the attribute `<name>` (a string; header names
//!   are case-insensitive, so `<name>` is lowercase): `x-shipdeck-ctx-plan: pro` is
//!   `{"plan": "pro"}` for a rule's `{"var": "plan"}`.
//!
//! Response header a pod writes for each such flag: `x-shipdeck-flag-<flag>: <variant>`, where
//! `<variant>` is the variant served, or [`CODE_DEFAULT`] when the flag resolved to no variant
//! (disabled, an error, or no default variant: the application's code default).

use std::sync::{Arc, RwLock};

use hyper::HeaderMap;
use hyper::header::HeaderName;
use serde_json::Value;

use crate::flags::FlagEvaluator;
use crate::flags::eval::Context;

/// `x-user-id`: the request's user, the context's `targetingKey`.
pub const USER_HEADER: HeaderName = HeaderName::from_static("x-user-id");
/// `x-shipdeck-ctx-<name>`: one context attribute per header.
pub const CONTEXT_HEADER_PREFIX: &str = "x-shipdeck-ctx-";
/// `x-shipdeck-flag-<flag>`: the variant of `<flag>` a pod served, on its response.
pub const FLAG_HEADER_PREFIX: &str = "x-shipdeck-flag-";
/// The variant label (metrics, response header) of a flag that resolved to no variant: a
/// disabled flag, an evaluation error, or a flag without a default variant. The application
/// then uses the default written in its code.
pub const CODE_DEFAULT: &str = "<code default>";

/// The evaluator the pods use now; none until the first `set_flags` (every flag then resolves
/// to the code default).
#[derive(Default)]
pub(crate) struct FlagSlot {
    current: RwLock<Option<Arc<FlagEvaluator>>>,
}

impl FlagSlot {
    pub(crate) fn set(&self, evaluator: Arc<FlagEvaluator>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(evaluator);
    }

    pub(crate) fn current(&self) -> Option<Arc<FlagEvaluator>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The evaluation context of a request, from its headers (see the module's documentation).
pub(crate) fn context_from_headers(headers: &HeaderMap) -> Context {
    attributes_from_headers(headers).into_iter().collect()
}

/// The context's attributes, name and value, as the headers give them.
fn attributes_from_headers(headers: &HeaderMap) -> std::collections::BTreeMap<String, Value> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let value = Value::String(value.to_str().ok()?.to_string());
            if *name == USER_HEADER {
                return Some(("targetingKey".to_string(), value));
            }
            let attr = name.as_str().strip_prefix(CONTEXT_HEADER_PREFIX).filter(|a| !a.is_empty())?;
            Some((attr.to_string(), value))
        })
        .collect()
}

/// The response header naming the variant of `flag`, if `flag` can be part of a header name.
pub(crate) fn flag_header(flag: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(format!("{FLAG_HEADER_PREFIX}{flag}").as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn the_context_comes_from_the_user_and_ctx_headers() {
        let mut h = HeaderMap::new();
        h.insert(USER_HEADER, HeaderValue::from_static("user-7"));
        h.insert("x-shipdeck-ctx-plan", HeaderValue::from_static("pro"));
        h.insert(HeaderName::from_bytes(b"X-Shipdeck-Ctx-Country").unwrap(), HeaderValue::from_static("NL"));
        h.insert("x-shipdeck-ctx-", HeaderValue::from_static("ignored"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        let ctx = attributes_from_headers(&h);
        assert_eq!(ctx.len(), 3, "{ctx:?}");
        assert_eq!(ctx["targetingKey"], "user-7");
        assert_eq!(ctx["plan"], "pro");
        assert_eq!(ctx["country"], "NL");
    }

    #[test]
    fn flag_headers_are_lowercase_and_refuse_what_cannot_be_a_header() {
        assert_eq!(flag_header("new-checkout").map(|h| h.to_string()), Some("x-shipdeck-flag-new-checkout".into()));
        assert!(flag_header("a b").is_none());
    }
}
