//! What a traffic-shift run decided, as types: the [`Decision`] and the
//! [`TrafficResult`] recorded with the run. The action writes them; the chat
//! renderer, the Grafana annotation, the API (a run's `result`) and
//! `traffic_shifts_total{outcome}` read them. The JSON is the run's stored
//! `result`, so its spelling is the API's: change it only with the API.

use super::policy::WeightMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every outcome of a traffic-shift run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Weight moved away from the alerting variant.
    Shifted,
    /// On resolve, the weights from before the shift put back.
    Restored,
    /// Not shifted: the guard is false, or the destination is itself alerting.
    Blocked,
    /// Not shifted: the target changed within `cooldown`.
    Cooldown,
    /// Not shifted: `max_shifts_per_hour` reached.
    RateLimited,
    /// Nothing to do (already done for this episode, nothing to move, …).
    Noop,
    /// Cannot decide now (guard not evaluable, target unreachable): retried.
    Deferred,
    /// Cannot succeed (unknown experiment or variant, forbidden).
    Failed,
    /// Decided, changed nothing (`dry_run: true`, or a plan).
    DryRun,
    /// On resolve with `on_resolve: hold`: the weights stay.
    Held,
}

impl Decision {
    /// Every decision (the `traffic_shifts_total{outcome}` series declared at 0).
    pub const ALL: [Decision; 10] = [
        Decision::Shifted,
        Decision::Restored,
        Decision::Blocked,
        Decision::Cooldown,
        Decision::RateLimited,
        Decision::Noop,
        Decision::Deferred,
        Decision::Failed,
        Decision::DryRun,
        Decision::Held,
    ];

    /// The wire spelling (JSON, audit trail, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Shifted => "shifted",
            Decision::Restored => "restored",
            Decision::Blocked => "blocked",
            Decision::Cooldown => "cooldown",
            Decision::RateLimited => "rate_limited",
            Decision::Noop => "noop",
            Decision::Deferred => "deferred",
            Decision::Failed => "failed",
            Decision::DryRun => "dry_run",
            Decision::Held => "held",
        }
    }

    /// True for the decisions that changed the weights.
    pub fn changed_weights(self) -> bool {
        matches!(self, Decision::Shifted | Decision::Restored)
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One traffic-shift run's result, as recorded with the run and answered by
/// the API.
///
/// Build it with [`TrafficResult::new`] and the `with_*` methods, and read
/// it by field: a new optional block (e.g. the statistical evidence behind a
/// decision) is one more field with `#[serde(default, skip_serializing_if =
/// "Option::is_none")]`, set by the action, read by the consumers that want
/// it, and no other consumer changes. Every field but `decision` has a
/// default, so results recorded before a field existed still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficResult {
    pub decision: Decision,
    /// The experiment (`traffic_targets` key); empty when the alert names none.
    #[serde(default)]
    pub target: String,
    /// action/experiment/fingerprint/startsAt.
    #[serde(default)]
    pub episode: String,
    /// Weights read before deciding (normalised to percent).
    #[serde(default)]
    pub before: Option<WeightMap>,
    /// Weights written (or that would be, in a dry run).
    #[serde(default)]
    pub after: Option<WeightMap>,
    /// Why, in words.
    #[serde(default)]
    pub reason: String,
    /// The exact change a dry run or a plan would make on the target.
    #[serde(default)]
    pub change: Option<Value>,
}

impl TrafficResult {
    /// A decision about `target`, with its reason.
    pub fn new(decision: Decision, target: &str, reason: impl Into<String>) -> Self {
        Self {
            decision,
            target: target.to_owned(),
            episode: String::new(),
            before: None,
            after: None,
            reason: reason.into(),
            change: None,
        }
    }

    /// With the weights read before deciding.
    pub fn with_before(mut self, weights: WeightMap) -> Self {
        self.before = Some(weights);
        self
    }

    /// With the weights written (or that would be).
    pub fn with_after(mut self, weights: WeightMap) -> Self {
        self.after = Some(weights);
        self
    }

    /// A run's recorded `result`, when it is a traffic-shift result.
    pub fn from_value(v: &Value) -> Option<Self> {
        if !v.is_object() {
            return None;
        }
        Self::deserialize(v).ok()
    }

    /// As JSON (a run's `result`).
    pub fn to_value(&self) -> Value {
        // A struct of strings, maps of numbers and JSON: cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_json_is_the_one_runs_recorded_before_the_types() {
        let mut r = TrafficResult::new(Decision::RateLimited, "exp", "3 changes")
            .with_before([("a".to_owned(), 70), ("b".to_owned(), 30)].into());
        r.episode = "rollback/exp/f/t".into();
        let want = json!({
            "decision": "rate_limited", "target": "exp", "episode": "rollback/exp/f/t",
            "before": {"a": 70, "b": 30}, "after": null, "reason": "3 changes", "change": null,
        });
        assert_eq!(r.to_value(), want);
        assert_eq!(TrafficResult::from_value(&want), Some(r));
        for d in Decision::ALL {
            assert_eq!(json!(d), json!(d.as_str()));
        }
        // A result without the optional fields still reads.
        let short = json!({"decision": "held", "reason": "kept"});
        assert_eq!(
            TrafficResult::from_value(&short).map(|r| r.decision),
            Some(Decision::Held)
        );
        assert_eq!(
            TrafficResult::from_value(&json!({"decision": "nope"})),
            None
        );
    }
}
