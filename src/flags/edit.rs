//! The flag edits besides on/off and rollout (targeting rules, weights, tags, dependencies),
//! as data, so the engine can apply one for any caller: the console, or a command line
//! process handing it to the shipdeck that holds the data dir.

use serde::{Deserialize, Serialize};

use super::rules::{Condition, Match, Rule};
use super::{FlagError, FlagSet};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "edit", rename_all = "snake_case")]
pub enum FlagEdit {
    /// Add a rule: conditions written `ATTRIBUTE OPERATOR VALUE`, `all` or `any` of them, serving `serve`.
    AddRule {
        conditions: Vec<String>,
        any: bool,
        serve: String,
    },
    ClearRules,
    Weights {
        weights: Vec<(String, u32)>,
    },
    Tag {
        tag: String,
        add: bool,
    },
    Depend {
        on: String,
        add: bool,
    },
}

impl FlagEdit {
    /// Checks the edit's own text (conditions) before anything is read or written.
    pub fn rule(&self) -> Result<Option<Rule>, FlagError> {
        let FlagEdit::AddRule { conditions, any, serve } = self else { return Ok(None) };
        let conditions = conditions.iter().map(|c| Condition::parse(c)).collect::<Result<Vec<_>, _>>()?;
        let matching = if *any { Match::Any } else { Match::All };
        Ok(Some(Rule { conditions, matching, serve: serve.clone() }))
    }

    /// What the change record says, e.g. `targeting rule added: …`, `tagged q3`.
    pub fn action(&self) -> String {
        match self {
            FlagEdit::AddRule { .. } => match self.rule() {
                Ok(Some(rule)) => format!("targeting rule added: {rule}"),
                _ => "targeting rule added".into(),
            },
            FlagEdit::ClearRules => "cleared its targeting rules".into(),
            FlagEdit::Weights { weights } => {
                let split: Vec<String> = weights.iter().map(|(v, w)| format!("{v}={w}")).collect();
                format!("weighted {}", split.join(" "))
            }
            FlagEdit::Tag { tag, add: true } => format!("tagged {tag}"),
            FlagEdit::Tag { tag, add: false } => format!("untagged {tag}"),
            FlagEdit::Depend { on, add: true } => format!("now depends on {on}"),
            FlagEdit::Depend { on, add: false } => format!("no longer depends on {on}"),
        }
    }

    pub fn apply(&self, s: &mut FlagSet, key: &str) -> Result<(), FlagError> {
        match self {
            FlagEdit::AddRule { .. } => match self.rule()? {
                Some(rule) => s.add_rule(key, rule),
                None => Ok(()),
            },
            FlagEdit::ClearRules => match s.clear_rules(key)? {
                Some(_) => Ok(()),
                None => Err(FlagError::Refused(format!("`{key}` has no targeting rules to clear"))),
            },
            FlagEdit::Weights { weights } => s.set_weights(key, weights),
            FlagEdit::Tag { tag, add } => s.set_tag(key, tag, *add),
            FlagEdit::Depend { on, add: true } => s.add_dependency(key, on),
            FlagEdit::Depend { on, add: false } => s.remove_dependency(key, on),
        }
    }
}
