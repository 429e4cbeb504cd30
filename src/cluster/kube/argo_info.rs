//! What `kubectl argo rollouts get rollout` shows of a Rollout, derived the way the plugin
//! derives it (its `info/rollout_info.go`, `utils/replicaset` and `utils/rollout`): the step
//! `index/total`, the set weight (the last `setWeight` at or before the current step; 0 when
//! aborted, 100 past the last step), the actual weight (the canary ReplicaSet's share of the
//! available pods without traffic routing, else the controller's `status.canary.weights`), the
//! phase and message (the controller's, unless the spec or an unpause is not observed yet), the
//! stable and canary ReplicaSets (by `rollouts-pod-template-hash`) and the analysis runs the
//! rollout's status names. Pure functions over the JSON the API server returns.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The label Argo Rollouts puts on each ReplicaSet (and its pods) it makes.
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";
/// The annotation that numbers a Rollout's ReplicaSets.
pub const REVISION_ANNOTATION: &str = "rollout.argoproj.io/revision";

/// One Rollout as the console and `shipdeck argo list` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgoRollout {
    pub name: String,
    /// `canary` or `blueGreen` (absent for a spec with neither).
    pub strategy: Option<String>,
    /// Healthy, Progressing, Paused or Degraded.
    pub phase: String,
    pub message: String,
    /// The current canary step, when the rollout has steps and the controller set an index.
    pub step: Option<Step>,
    /// Canary only: the weight the current step asks for.
    pub set_weight: Option<u32>,
    /// Canary only: the weight that is real now.
    pub actual_weight: Option<u32>,
    pub stable: Option<Revision>,
    /// The ReplicaSet of the rollout's current template when it is not the stable one (for
    /// blue-green: the preview side).
    pub canary: Option<Revision>,
    pub analysis: Vec<Analysis>,
    pub aborted: bool,
    pub paused: bool,
    pub replicas: Replicas,
}

/// `index` of `total`: index `total` means every step is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub index: u32,
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub pod_template_hash: String,
    /// From the ReplicaSet's `rollout.argoproj.io/revision` (absent when the ReplicaSet was not seen).
    pub revision: Option<u64>,
    pub images: Vec<String>,
    pub replicas: u32,
    pub available: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// step, background, prePromotion or postPromotion.
    pub kind: String,
    /// The AnalysisRun's name.
    pub name: String,
    /// Pending, Running, Successful, Failed, Error or Inconclusive.
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicas {
    pub desired: u32,
    pub current: u32,
    pub updated: u32,
    pub ready: u32,
    pub available: u32,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn u32_at(v: &Value, pointer: &str) -> u32 {
    v.pointer(pointer).and_then(Value::as_u64).map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn canary_steps(ro: &Value) -> &[Value] {
    ro.pointer("/spec/strategy/canary/steps").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

pub fn is_canary(ro: &Value) -> bool {
    ro.pointer("/spec/strategy/canary").is_some_and(|c| !c.is_null())
}

fn is_blue_green(ro: &Value) -> bool {
    ro.pointer("/spec/strategy/blueGreen").is_some_and(|c| !c.is_null())
}

/// The plugin's `GetCurrentCanaryStep`: the index is absent without canary steps, else
/// `status.currentStepIndex` (0 when unset); the step itself is absent past the last one.
pub fn current_step(ro: &Value) -> (Option<&Value>, Option<u32>) {
    let steps = canary_steps(ro);
    if !is_canary(ro) || steps.is_empty() {
        return (None, None);
    }
    let index = u32_at(ro, "/status/currentStepIndex");
    (steps.get(index as usize), Some(index))
}

/// The plugin's `GetCurrentSetWeight`.
pub fn set_weight(ro: &Value) -> u32 {
    if ro.pointer("/status/abort").and_then(Value::as_bool) == Some(true) {
        return 0;
    }
    let (step, index) = current_step(ro);
    let (Some(_), Some(index)) = (step, index) else { return 100 };
    canary_steps(ro)[..=index as usize]
        .iter()
        .rev()
        .find_map(|s| s.get("setWeight").and_then(Value::as_u64))
        .map_or(0, |w| u32::try_from(w).unwrap_or(100))
}

fn pod_template_hash(rs: &Value) -> &str {
    str_at(rs, &format!("/metadata/labels/{}", POD_TEMPLATE_HASH_LABEL.replace('/', "~1")))
}

pub fn revision_of(rs: &Value) -> Option<u64> {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

/// A ReplicaSet controlled by the object with this uid.
pub fn controlled_by(rs: &Value, uid: &str) -> bool {
    rs.pointer("/metadata/ownerReferences").and_then(Value::as_array).is_some_and(|refs| {
        refs.iter().any(|r| r.get("controller").and_then(Value::as_bool) == Some(true) && str_at(r, "/uid") == uid)
    })
}

fn images(template_spec: Option<&Value>) -> Vec<String> {
    template_spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c.get("image").and_then(Value::as_str)).map(String::from).collect())
        .unwrap_or_default()
}

fn revision(hash: &str, rs: Option<&Value>, fallback_images: Vec<String>) -> Revision {
    match rs {
        Some(rs) => Revision {
            pod_template_hash: hash.to_string(),
            revision: revision_of(rs),
            images: images(rs.pointer("/spec/template/spec")),
            replicas: u32_at(rs, "/status/replicas"),
            available: u32_at(rs, "/status/availableReplicas"),
        },
        None => Revision {
            pod_template_hash: hash.to_string(),
            revision: None,
            images: fallback_images,
            replicas: 0,
            available: 0,
        },
    }
}

/// What the plugin shows of `ro`, given the namespace's ReplicaSets (any; those the rollout
/// does not control are ignored).
pub fn describe_rollout(ro: &Value, replica_sets: &[Value]) -> ArgoRollout {
    let replica_sets: Vec<&Value> = replica_sets.iter().collect();
    describe_rollout_among(ro, &replica_sets)
}

/// [`describe_rollout`], the ReplicaSets borrowed from wherever they are kept.
pub fn describe_rollout_among(ro: &Value, replica_sets: &[&Value]) -> ArgoRollout {
    let uid = str_at(ro, "/metadata/uid");
    let owned: Vec<&Value> =
        replica_sets.iter().copied().filter(|rs| !uid.is_empty() && controlled_by(rs, uid)).collect();
    let by_hash = |h: &str| owned.iter().copied().find(|rs| !h.is_empty() && pod_template_hash(rs) == h);
    let stable_hash = str_at(ro, "/status/stableRS");
    let current_hash = str_at(ro, "/status/currentPodHash");
    let stable = (!stable_hash.is_empty()).then(|| revision(stable_hash, by_hash(stable_hash), Vec::new()));
    let canary = (!current_hash.is_empty() && current_hash != stable_hash)
        .then(|| revision(current_hash, by_hash(current_hash), images(ro.pointer("/spec/template/spec"))));
    let replicas = Replicas {
        desired: ro.pointer("/spec/replicas").and_then(Value::as_u64).map_or(1, |n| u32::try_from(n).unwrap_or(0)),
        current: u32_at(ro, "/status/replicas"),
        updated: u32_at(ro, "/status/updatedReplicas"),
        ready: u32_at(ro, "/status/readyReplicas"),
        available: u32_at(ro, "/status/availableReplicas"),
    };
    let (mut strategy, mut step, mut set, mut actual) = (None, None, None, None);
    if is_canary(ro) {
        strategy = Some("canary".to_string());
        let total = u32::try_from(canary_steps(ro).len()).unwrap_or(u32::MAX);
        if let Some(index) = ro.pointer("/status/currentStepIndex").and_then(Value::as_u64)
            && total > 0
        {
            step = Some(Step { index: u32::try_from(index).unwrap_or(u32::MAX), total });
        }
        let weight = set_weight(ro);
        set = Some(weight);
        actual = Some(actual_weight(ro, weight, canary.as_ref(), replicas.available));
    } else if is_blue_green(ro) {
        strategy = Some("blueGreen".to_string());
    }
    let (phase, message) = phase(ro, &replicas);
    ArgoRollout {
        name: str_at(ro, "/metadata/name").to_string(),
        strategy,
        phase,
        message,
        step,
        set_weight: set,
        actual_weight: actual,
        stable,
        canary,
        analysis: analysis(ro),
        aborted: ro.pointer("/status/abort").and_then(Value::as_bool) == Some(true),
        paused: ro.pointer("/spec/paused").and_then(Value::as_bool) == Some(true)
            || ro.pointer("/status/pauseConditions").and_then(Value::as_array).is_some_and(|p| !p.is_empty()),
        replicas,
    }
}

/// The plugin's actual weight: 100 once past the steps; else, with pods available, the canary
/// ReplicaSet's share of them (no traffic routing) or the controller's recorded weight.
fn actual_weight(ro: &Value, set_weight: u32, canary: Option<&Revision>, available: u32) -> u32 {
    if current_step(ro).0.is_none() {
        return 100;
    }
    if available == 0 {
        return 0;
    }
    let routed = ro.pointer("/spec/strategy/canary/trafficRouting").is_some_and(|t| !t.is_null());
    if !routed {
        return canary.map_or(0, |c| c.available.saturating_mul(100) / available);
    }
    match ro.pointer("/status/canary/weights/canary/weight") {
        Some(w) => w.as_u64().map_or(0, |w| u32::try_from(w).unwrap_or(100)),
        None if ro.pointer("/status/canary/weights").is_some_and(|w| !w.is_null()) => 0,
        None => set_weight,
    }
}

fn analysis(ro: &Value) -> Vec<Analysis> {
    [
        ("step", "/status/canary/currentStepAnalysisRunStatus"),
        ("background", "/status/canary/currentBackgroundAnalysisRunStatus"),
        ("prePromotion", "/status/blueGreen/prePromotionAnalysisRunStatus"),
        ("postPromotion", "/status/blueGreen/postPromotionAnalysisRunStatus"),
    ]
    .into_iter()
    .filter_map(|(kind, pointer)| {
        let a = ro.pointer(pointer)?;
        let name = a.get("name").and_then(Value::as_str)?;
        Some(Analysis {
            kind: kind.to_string(),
            name: name.to_string(),
            phase: str_at(a, "/status").to_string(),
            message: str_at(a, "/message").to_string(),
        })
    })
    .collect()
}

/// The plugin's `GetRolloutPhase`: the controller's phase and message once it has observed the
/// spec (and any unpause); for controllers before v1.0, which set no phase, computed here.
fn phase(ro: &Value, replicas: &Replicas) -> (String, String) {
    let progressing = |m: &str| ("Progressing".to_string(), m.to_string());
    let generation = ro.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    if let Ok(observed) = str_at(ro, "/status/observedGeneration").parse::<i64>()
        && observed < generation
    {
        return progressing("waiting for rollout spec update to be observed");
    }
    let pause_conditions = ro.pointer("/status/pauseConditions").and_then(Value::as_array);
    let controller_pause = ro.pointer("/status/controllerPause").and_then(Value::as_bool) == Some(true);
    if controller_pause && pause_conditions.is_none_or(|p| p.is_empty()) {
        return progressing("waiting for rollout to unpause");
    }
    let phase = str_at(ro, "/status/phase");
    if !phase.is_empty() {
        return (phase.to_string(), str_at(ro, "/status/message").to_string());
    }
    // Before v1.0 the controller left the phase to its clients.
    for c in ro.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten() {
        let (kind, reason, message) = (str_at(c, "/type"), str_at(c, "/reason"), str_at(c, "/message"));
        if kind == "InvalidSpec" {
            return ("Degraded".into(), format!("InvalidSpec: {message}"));
        }
        if matches!(reason, "RolloutAborted" | "ProgressDeadlineExceeded") {
            return ("Degraded".into(), format!("{reason}: {message}"));
        }
    }
    if ro.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return ("Paused".into(), "manually paused".into());
    }
    if let Some(first) = pause_conditions.and_then(|p| p.first()) {
        return ("Paused".into(), str_at(first, "/reason").to_string());
    }
    if replicas.updated < replicas.desired {
        return progressing("more replicas need to be updated");
    }
    if replicas.available < replicas.updated {
        return progressing("updated replicas are still becoming available");
    }
    let (stable, current) = (str_at(ro, "/status/stableRS"), str_at(ro, "/status/currentPodHash"));
    let promoted = !stable.is_empty() && stable == current;
    if is_blue_green(ro) {
        let active = str_at(ro, "/status/blueGreen/activeSelector");
        if active.is_empty() || active != current {
            return progressing("active service cutover pending");
        }
        if !promoted {
            return progressing("waiting for post-promotion verification to complete");
        }
    } else if is_canary(ro) {
        let routed = ro.pointer("/spec/strategy/canary/trafficRouting").is_some_and(|t| !t.is_null());
        if !routed && replicas.current > replicas.updated {
            return progressing("old replicas are pending termination");
        }
        if !promoted {
            return progressing("waiting for all steps to complete");
        }
    }
    ("Healthy".into(), String::new())
}
