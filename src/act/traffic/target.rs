//! Traffic targets: where A/B weights live. A closed config enum
//! ([`TargetConfig`]) builds runtime targets behind one trait.

use super::policy::WeightMap;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

/// `traffic_targets.<experiment>`: keyed by the value of the alert's experiment label.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetConfig {
    /// A Seldon Core v2 `Experiment` (`mlops.seldon.io/v1alpha1`).
    SeldonExperiment { namespace: String, name: String },
    /// An Istio `VirtualService`: the destinations of one named http route; a
    /// variant is a destination's `subset` (one Service, DestinationRule
    /// subsets) or, for a destination without one, its `host` (one Service per
    /// variant, the split of Istio's traffic-shifting docs).
    IstioVirtualService {
        namespace: String,
        name: String,
        /// The `http[].name` whose destinations are the variants.
        route: String,
        /// The baseline variant (a VirtualService has no default of its own).
        default: String,
        /// `networking.istio.io/v1` (Istio >= 1.22, the default) or
        /// `networking.istio.io/v1beta1` (older Istio).
        #[serde(default)]
        api_version: IstioApiVersion,
    },
    /// A local YAML file `{default, candidates: [{name, weight}]}`: the
    /// embedded default, and what `ab-simulator` reads.
    File { file: FileTarget },
}

/// The VirtualService API version the router reads and patches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum IstioApiVersion {
    /// Served from Istio 1.22 on.
    #[default]
    #[serde(rename = "networking.istio.io/v1")]
    V1,
    /// Served by every Istio release still in use.
    #[serde(rename = "networking.istio.io/v1beta1")]
    V1beta1,
}

impl IstioApiVersion {
    /// The version part of the apiVersion (`v1`, `v1beta1`).
    pub fn version(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V1beta1 => "v1beta1",
        }
    }
}

/// `file:` of a file target.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileTarget {
    pub path: PathBuf,
}

/// What a target holds right now.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Variant → weight as stored (relative for Seldon).
    pub weights: WeightMap,
    /// The default (baseline) variant.
    pub default: Option<String>,
    /// The last [`MARKS_KEPT`] changes the router applied, as recorded on the
    /// target itself, newest first: the target's own account of what was
    /// applied, whether or not the ledger heard of it.
    pub shifts: Vec<ShiftMark>,
    /// The object as read (Kubernetes targets), so that a dry-run preview is
    /// the patch against it, entries at their real positions.
    pub object: Option<Value>,
}

/// Recorded on the target with every change (annotation / file field), so a
/// retry after a crash between the change and the ledger write finds its own
/// episode and stops.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ShiftMark {
    pub episode: String,
    pub before: WeightMap,
    pub after: WeightMap,
    pub at: String,
}

/// Why a read or write failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// The weights changed since they were read: read again and decide again.
    #[error("weights changed concurrently: {0}")]
    Conflict(String),
    /// Worth retrying (network, 5xx).
    #[error("{0}")]
    Transient(String),
    /// Will not succeed (not found, forbidden, malformed object).
    #[error("{0}")]
    Permanent(String),
}

/// A place holding A/B weights.
#[async_trait]
pub trait TrafficTarget: Send + Sync {
    /// e.g. `seldon_experiment financial-inference/financial-ab-test-experiment`.
    fn describe(&self) -> String;
    /// Current weights, default and last mark.
    async fn read(&self) -> Result<Snapshot, TargetError>;
    /// Writes `after` only if the weights are still those of `expected`
    /// (a precondition, not a blind write), recording `mark`.
    async fn write(
        &self,
        expected: &Snapshot,
        after: &WeightMap,
        mark: &ShiftMark,
    ) -> Result<(), TargetError>;
    /// The exact change [`TrafficTarget::write`] would make, for the dry-run plan.
    fn preview(&self, expected: &Snapshot, after: &WeightMap, mark: &ShiftMark) -> Value;
}

/// The annotation holding the newest [`ShiftMark`] on Kubernetes objects (a
/// JSON object; read for objects annotated before [`MARKS_ANNOTATION`], and
/// still written for readers of the single mark).
pub const MARK_ANNOTATION: &str = "mlops-alert-router.io/last-shift";

/// The annotation holding the last [`MARKS_KEPT`] marks, newest first (a JSON array).
pub const MARKS_ANNOTATION: &str = "mlops-alert-router.io/shifts";

/// How many marks a target keeps: enough that a retry after a crash between
/// the change and the ledger finds its own change although other episodes
/// shifted the target since (a cooldown and `max_shifts_per_hour` allow few).
pub const MARKS_KEPT: usize = 16;

/// The marks a target holds, newest first: the list form, and the single
/// mark (older objects and files, or a writer that only knows the single
/// form) first if the list does not have it.
pub fn read_marks(single: Option<ShiftMark>, list: Vec<ShiftMark>) -> Vec<ShiftMark> {
    let mut marks = list;
    if let Some(m) = single {
        if !marks.contains(&m) {
            marks.insert(0, m);
        }
    }
    marks.truncate(MARKS_KEPT);
    marks
}

/// The marks to write with a change: `mark` first, then the newest of `held`.
pub fn push_mark(held: &[ShiftMark], mark: &ShiftMark) -> Vec<ShiftMark> {
    std::iter::once(mark.clone())
        .chain(held.iter().filter(|m| *m != mark).cloned())
        .take(MARKS_KEPT)
        .collect()
}

impl ShiftMark {
    /// When the change was decided, in Unix milliseconds (`None` if `at` is
    /// not RFC 3339, e.g. edited by hand).
    pub fn at_ms(&self) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(&self.at)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}
