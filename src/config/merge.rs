//! Deep merge of TOML tables: an environment's overrides over an app's base settings.

use toml::{Table, Value};

/// Merges `over` into `base`: tables merge key by key, recursively; anything else (arrays
/// included) is replaced whole.
pub fn deep_merge(base: &mut Table, over: &Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => deep_merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_tables_merge_and_arrays_are_replaced() {
        let mut base: Table = toml::from_str(
            "replicas = 2\n[rolling]\nmax_surge = 1\nmax_unavailable = 0\n[verification]\nchecks = [1, 2]",
        )
        .unwrap();
        let over: Table =
            toml::from_str("replicas = 5\n[rolling]\nmax_surge = 2\n[verification]\nchecks = [3]").unwrap();
        deep_merge(&mut base, &over);
        assert_eq!(base["replicas"].as_integer(), Some(5));
        assert_eq!(base["rolling"]["max_surge"].as_integer(), Some(2));
        assert_eq!(base["rolling"]["max_unavailable"].as_integer(), Some(0));
        assert_eq!(base["verification"]["checks"].as_array().map(|a| a.len()), Some(1));
    }
}
