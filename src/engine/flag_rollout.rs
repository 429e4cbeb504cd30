//! A flag's progressive rollout: stages (default 10%, 25%, 50%, 100%) that advance only while
//! the success criteria hold. During each stage the users served `on` are compared with those
//! served `off` by an analysis template's judge (the default template's sequential judge unless
//! the app's template is named); a failed stage, or one that cannot be judged, turns the flag
//! back to what it was before the rollout and records why. Every stage is a recorded flag change, so `flags
//! history` tells the story.

use std::sync::Arc;
use std::time::Duration;

use super::{Event, Inner};
use crate::analysis::judges::{self, Decision};
use crate::cluster::Target;
use crate::flags::change;
use crate::model::{AnalysisTemplate, HumanDuration};

/// One stage: this share of users on `on`, held this long (None: the last stage, kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    pub percent: u32,
    pub hold: Option<Duration>,
}

/// The standard's stages: 10% for an hour, 25% for an hour, 50% for two, then 100%.
pub fn default_stages() -> Vec<Stage> {
    let h = |n: u64| Some(Duration::from_secs(n * 3600));
    vec![
        Stage { percent: 10, hold: h(1) },
        Stage { percent: 25, hold: h(1) },
        Stage { percent: 50, hold: h(2) },
        Stage { percent: 100, hold: None },
    ]
}

/// `10:30s,25:1m,50:2m,100`: percent, then how long to hold it (the last stage needs none).
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, String> {
    let mut stages = Vec::new();
    let mut last = 0;
    for part in text.split(',').map(str::trim) {
        let (pct, hold) = match part.split_once(':') {
            Some((p, h)) => (p, Some(h)),
            None => (part, None),
        };
        let percent: u32 = pct
            .parse()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| format!("stage `{part}`: the percentage must be 1-100, e.g. `25:30s`"))?;
        if percent <= last {
            return Err(format!("stage `{part}`: percentages must rise from stage to stage"));
        }
        last = percent;
        let hold = match hold {
            Some(h) => Some(
                humantime::parse_duration(h)
                    .map_err(|e| format!("stage `{part}`: `{h}` is not a duration ({e}); write e.g. 30s, 10m, 1h"))?,
            ),
            None => None,
        };
        if hold.is_none() && percent < 100 {
            return Err(format!("stage `{part}`: say how long to hold it, e.g. `{percent}:10m`"));
        }
        stages.push(Stage { percent, hold });
    }
    if stages.is_empty() {
        return Err("no stages; write e.g. `10:10m,25:10m,50:20m,100`".into());
    }
    Ok(stages)
}

pub(crate) struct Rollout {
    pub key: String,
    pub target: Target,
    pub stages: Vec<Stage>,
    pub template: AnalysisTemplate,
    pub actor: String,
}

/// Runs the rollout to its end; emits `Event::FlagRollout` for each stage and at the end.
pub(crate) async fn run(inner: Arc<Inner>, r: Rollout) {
    let done = |ok: bool, message: String| Event::FlagRollout { key: r.key.clone(), finished: true, ok, message };
    let (Some(flags), Some(metrics)) = (inner.flags.get(), inner.flag_metrics()) else {
        inner.emit(done(false, "no flag store or no flag metrics: nothing was changed".into()));
        return;
    };
    let before = match flags.load().await {
        Ok((set, _)) => set.flag(&r.key).cloned(),
        Err(e) => {
            inner.emit(done(false, format!("cannot read the flags: {e}")));
            return;
        }
    };
    let Some(before) = before else {
        inner.emit(done(false, format!("no flag named `{}`", r.key)));
        return;
    };
    let n = r.stages.len();
    // What this rollout last wrote: if the flag differs from it, someone else changed it
    // meanwhile (a kill switch, say), and the rollout leaves it alone.
    let mut last = Some(before.clone());
    let mut written = None;
    for (i, stage) in r.stages.iter().enumerate() {
        let action = format!("progressive rollout stage {}/{n}: {}%", i + 1, stage.percent);
        let applied = change::apply(flags.as_ref(), &inner.store, &r.actor, &r.key, &action, |s| {
            unchanged_since(s, &r.key, &last)?;
            s.set_enabled(&r.key, true)?;
            s.set_rollout(&r.key, stage.percent)?;
            written = s.flag(&r.key).cloned();
            Ok(())
        })
        .await;
        match applied {
            Ok(flag) => {
                last = written.take();
                inner.emit(Event::Flag { flag, by: r.actor.clone() })
            }
            Err(e) => {
                inner.emit(done(false, format!("stage {}/{n} could not be applied: {e}", i + 1)));
                return;
            }
        }
        inner.emit(Event::FlagRollout { key: r.key.clone(), finished: false, ok: true, message: action });
        let Some(hold) = stage.hold.filter(|_| stage.percent < 100) else { continue };
        if let Err(why) = judge_stage(&r, metrics.as_ref(), hold).await {
            let why = format!("progressive rollout failed at {}% (stage {}/{n}): {why}", stage.percent, i + 1);
            let action = format!("{why}; turned back to its state before the rollout");
            let reverted = change::apply(flags.as_ref(), &inner.store, &r.actor, &r.key, &action, |s| {
                unchanged_since(s, &r.key, &last)?;
                s.restore_flag(&r.key, before.clone())
            })
            .await;
            match reverted {
                Ok(flag) => {
                    inner.emit(Event::Flag { flag, by: r.actor.clone() });
                    inner.emit(done(false, action));
                }
                Err(e) => inner.emit(done(false, format!("{why}; turning it back FAILED: {e}"))),
            }
            return;
        }
    }
    inner.emit(done(true, format!("progressive rollout of {} complete: 100% on", r.key)));
}

/// Refuses when the flag is no longer what the rollout last wrote.
pub(crate) fn unchanged_since(
    s: &crate::flags::FlagSet,
    key: &str,
    last: &Option<serde_json::Value>,
) -> Result<(), crate::flags::FlagError> {
    if s.flag(key) == last.as_ref() {
        Ok(())
    } else {
        Err(crate::flags::FlagError::Refused(format!(
            "`{key}` was changed by someone else during the rollout; the rollout stops and leaves it as it is"
        )))
    }
}

/// How much longer than its hold a stage may run while the judge cannot yet tell.
const MAX_EXTENSION: u32 = 3;

/// Holds one stage, measuring `on` against `off` every interval; Err says why it must stop.
/// When the hold is over and the judge cannot yet tell (too little traffic so far), the stage
/// keeps measuring, up to three times its hold, rather than advance on no evidence.
async fn judge_stage(r: &Rollout, metrics: &dyn crate::analysis::FlagMetrics, hold: Duration) -> Result<(), String> {
    let t = &r.template;
    let min = t.min_requests.unwrap_or(10);
    let mut judge = judges::by_name(&t.judge, 1, min).ok_or_else(|| format!("no judge is named `{}`", t.judge))?;
    let interval = t.interval.0.max(Duration::from_secs(1)).min(hold);
    let limit = hold * MAX_EXTENSION;
    let (mut held, mut errors, mut passed) = (Duration::ZERO, 0, false);
    loop {
        tokio::time::sleep(interval).await;
        held += interval;
        match metrics.variant_metrics(&r.target, &r.key, interval).await {
            Ok(by_variant) => {
                errors = 0;
                let get = |v: &str| by_variant.get(v).cloned().unwrap_or_default();
                match judge.observe(&get("on").sample(), &get("off").sample()) {
                    Decision::Fail { message, .. } => return Err(format!("`on` is worse than `off`: {message}")),
                    Decision::Pass { .. } => passed = true,
                    Decision::Continue | Decision::Inconclusive { .. } => {}
                }
            }
            Err(e) => {
                errors += 1;
                if errors > t.consecutive_error_limit {
                    return Err(format!("{errors} measurement errors in a row, last: {e}"));
                }
            }
        }
        if held < hold {
            continue;
        }
        if passed {
            return Ok(());
        }
        match judge.finish() {
            Decision::Pass { .. } => return Ok(()),
            Decision::Fail { message, .. } => return Err(format!("`on` is worse than `off`: {message}")),
            Decision::Inconclusive { message, .. } if held >= limit => {
                return Err(format!("the criteria could not be judged in {}: {message}", HumanDuration(held)));
            }
            Decision::Inconclusive { .. } | Decision::Continue => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_with_holds_and_mistakes_say_how_to_write_them() {
        let s = parse_stages("10:30s, 25:1m,100").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[1], Stage { percent: 25, hold: Some(Duration::from_secs(60)) });
        assert_eq!(s[2], Stage { percent: 100, hold: None });
        assert!(parse_stages("10:30s,5:30s,100").unwrap_err().contains("rise"));
        assert!(parse_stages("10,100").unwrap_err().contains("how long to hold"));
        assert!(parse_stages("150").unwrap_err().contains("1-100"));
        assert!(parse_stages("10:soon,100").unwrap_err().contains("not a duration"));
        assert_eq!(default_stages().iter().map(|s| s.percent).collect::<Vec<_>>(), [10, 25, 50, 100]);
    }
}
