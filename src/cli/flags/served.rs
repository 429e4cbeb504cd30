//! What the local cluster's pods served of a flag, for `flags show`: each pod's
//! `flag_evaluations_total{flag,variant}` counter, read from its `/metrics`, summed over the
//! pods listed in the data dir's `prometheus-targets.json` (which a running shipdeck keeps
//! current). Nothing is served when no shipdeck runs on this data dir.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Evaluations per variant since the pods started, or `None` when no pod answered.
pub async fn served(data_dir: &Path, flag: &str) -> Option<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(crate::host::scrape_targets_file(data_dir)).ok()?;
    let groups: Vec<serde_json::Value> = serde_json::from_str(&text).ok()?;
    let addrs: Vec<String> = groups
        .iter()
        .filter_map(|g| g.get("targets")?.as_array().cloned())
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let client = crate::http::client_builder().timeout(Duration::from_millis(800)).build().ok()?;
    let scrapes = addrs.iter().map(|addr| {
        let client = client.clone();
        async move { client.get(format!("http://{addr}/metrics")).send().await.ok()?.text().await.ok() }
    });
    let bodies: Vec<String> = futures::future::join_all(scrapes).await.into_iter().flatten().collect();
    if bodies.is_empty() {
        return None;
    }
    let mut out = BTreeMap::new();
    for body in &bodies {
        for (variant, n) in counts(body, flag) {
            *out.entry(variant).or_default() += n;
        }
    }
    Some(out)
}

/// `(variant, count)` from the `flag_evaluations_total` lines of one exposition for `flag`.
fn counts(exposition: &str, flag: &str) -> Vec<(String, u64)> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("flag_evaluations_total{"))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once("} ")?;
            let labels = parse_labels(labels);
            let get = |name: &str| labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            if get("flag")? != flag {
                return None;
            }
            Some((get("variant")?, value.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// `a="x",b="y \"q\""` → `[(a, x), (b, y "q")]`, the label syntax of the text exposition format.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() || chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => return out,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((name.trim_start_matches(',').trim().to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_flags_counters_from_an_exposition() {
        let text = "# TYPE flag_evaluations_total counter\n\
            flag_evaluations_total{app=\"checkout\",env=\"dev\",version=\"1.0.0\",flag=\"dark-mode\",variant=\"on\"} 12\n\
            flag_evaluations_total{app=\"checkout\",env=\"dev\",version=\"1.0.0\",flag=\"dark-mode\",variant=\"off\"} 3\n\
            flag_evaluations_total{app=\"a \\\"q\\\"\",env=\"dev\",version=\"1\",flag=\"other\",variant=\"on\"} 99\n\
            http_requests_total{app=\"checkout\"} 5\n";
        assert_eq!(counts(text, "dark-mode"), [("on".to_string(), 12), ("off".to_string(), 3)]);
        assert_eq!(counts(text, "other"), [("on".to_string(), 99)]);
        assert!(counts(text, "nope").is_empty());
    }

    #[test]
    fn label_values_keep_escaped_quotes() {
        assert_eq!(
            parse_labels(r#"a="x",b="y \"q\"""#),
            [("a".to_string(), "x".to_string()), ("b".to_string(), "y \"q\"".to_string())]
        );
    }
}
