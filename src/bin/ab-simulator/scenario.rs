//! The scenario: each variant's accuracy, p95 latency and error rate, and how
//! they change over time.
//!
//! ```yaml
//! variants:
//!   baseline-predictor: {accuracy: 72, latency: 80ms, error_rate: 0.01}
//!   enhanced-predictor: {accuracy: 78, latency: 60ms, error_rate: 0.005}
//! steps:
//!   - after: 20s                                  # since the simulator started
//!     set: {enhanced-predictor: {accuracy: 50}}   # only the named fields change
//! ```
//!
//! `accuracy` is a percentage (0-100), `latency` the 95th percentile of the
//! response time (humantime: `80ms`, `1.5s`), `error_rate` the fraction of
//! requests that fail (0-1). Unknown keys are errors (typos would silently do
//! nothing otherwise).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A humantime duration in YAML (`80ms`, `20s`, `1m 30s`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 80ms or 20s")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(s)
                    .map(HumanDuration)
                    .map_err(|e| E::custom(format!("{s:?}: {e}")))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    variants: BTreeMap<String, ParamsFile>,
    #[serde(default)]
    steps: Vec<StepFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamsFile {
    accuracy: f64,
    latency: HumanDuration,
    error_rate: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    after: HumanDuration,
    set: BTreeMap<String, PatchFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchFile {
    accuracy: Option<f64>,
    latency: Option<HumanDuration>,
    error_rate: Option<f64>,
}

/// One variant's behaviour at a point in time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Percent, 0-100.
    pub accuracy: f64,
    /// 95th percentile of the response time.
    pub latency: Duration,
    /// Fraction of failed requests, 0-1.
    pub error_rate: f64,
}

/// A change to some fields of one variant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Patch {
    pub accuracy: Option<f64>,
    pub latency: Option<Duration>,
    pub error_rate: Option<f64>,
}

impl Patch {
    fn apply(&self, p: &mut Params) {
        if let Some(a) = self.accuracy {
            p.accuracy = a;
        }
        if let Some(l) = self.latency {
            p.latency = l;
        }
        if let Some(e) = self.error_rate {
            p.error_rate = e;
        }
    }
}

/// A step: at `after` since the start, apply the patches.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub after: Duration,
    pub set: BTreeMap<String, Patch>,
}

impl fmt::Display for Step {
    /// `enhanced-predictor: accuracy=50 latency=300ms; baseline-predictor: error_rate=0.1`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, p)) in self.set.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{name}:")?;
            if let Some(a) = p.accuracy {
                write!(f, " accuracy={a}")?;
            }
            if let Some(l) = p.latency {
                write!(f, " latency={}", humantime::format_duration(l))?;
            }
            if let Some(e) = p.error_rate {
                write!(f, " error_rate={e}")?;
            }
        }
        Ok(())
    }
}

/// What is wrong with a scenario file.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: String,
        // Not `source`: the message already includes it (no doubled chain).
        error: std::io::Error,
    },
    #[error("{path}: not a scenario: {error}")]
    Parse {
        path: String,
        error: serde_yaml::Error,
    },
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
}

/// A validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Variants by name, with their parameters at the start.
    pub variants: BTreeMap<String, Params>,
    /// Steps in time order (steps with the same `after` keep file order).
    pub steps: Vec<Step>,
}

fn check_accuracy(a: f64) -> Result<(), String> {
    if (0.0..=100.0).contains(&a) {
        Ok(())
    } else {
        Err(format!("accuracy: {a} is not a percentage 0-100"))
    }
}

fn check_error_rate(e: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&e) {
        Ok(())
    } else {
        Err(format!("error_rate: {e} is not a fraction 0-1"))
    }
}

fn check_latency(l: Duration) -> Result<(), String> {
    if l > Duration::ZERO && l <= Duration::from_secs(60) {
        Ok(())
    } else {
        Err(format!(
            "latency: {} is not in (0, 60s]",
            humantime::format_duration(l)
        ))
    }
}

impl Scenario {
    /// Parses and validates a scenario (`path` is for messages).
    pub fn parse(text: &str, path: &str) -> Result<Self, ScenarioError> {
        let file: ScenarioFile =
            serde_yaml::from_str(text).map_err(|error| ScenarioError::Parse {
                path: path.to_owned(),
                error,
            })?;
        let invalid = |msg: String| ScenarioError::Invalid {
            path: path.to_owned(),
            msg,
        };
        if file.variants.is_empty() {
            return Err(invalid("variants: empty".into()));
        }
        let mut variants = BTreeMap::new();
        for (name, p) in file.variants {
            let params = Params {
                accuracy: p.accuracy,
                latency: p.latency.0,
                error_rate: p.error_rate,
            };
            check_accuracy(params.accuracy)
                .and_then(|()| check_latency(params.latency))
                .and_then(|()| check_error_rate(params.error_rate))
                .map_err(|m| invalid(format!("variants.{name}.{m}")))?;
            variants.insert(name, params);
        }
        let mut steps = Vec::with_capacity(file.steps.len());
        for (i, s) in file.steps.into_iter().enumerate() {
            let mut set = BTreeMap::new();
            for (name, p) in s.set {
                if !variants.contains_key(&name) {
                    return Err(invalid(format!(
                        "steps[{i}].set.{name}: not one of the variants"
                    )));
                }
                let patch = Patch {
                    accuracy: p.accuracy,
                    latency: p.latency.map(|l| l.0),
                    error_rate: p.error_rate,
                };
                let checked = patch
                    .accuracy
                    .map_or(Ok(()), check_accuracy)
                    .and_then(|()| patch.latency.map_or(Ok(()), check_latency))
                    .and_then(|()| patch.error_rate.map_or(Ok(()), check_error_rate));
                checked.map_err(|m| invalid(format!("steps[{i}].set.{name}.{m}")))?;
                set.insert(name, patch);
            }
            steps.push(Step {
                after: s.after.0,
                set,
            });
        }
        // Stable: steps at the same time apply in file order.
        steps.sort_by_key(|s| s.after);
        Ok(Self { variants, steps })
    }

    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Read {
            path: shown.clone(),
            error,
        })?;
        Self::parse(&text, &shown)
    }
}

/// A scenario being played: the current parameters of every variant.
#[derive(Clone, Debug)]
pub struct ScenarioState {
    scenario: Scenario,
    current: BTreeMap<String, Params>,
    next_step: usize,
}

impl ScenarioState {
    pub fn new(scenario: Scenario) -> Self {
        Self {
            current: scenario.variants.clone(),
            scenario,
            next_step: 0,
        }
    }

    /// Applies every step due at `elapsed` (time since the start) that was not
    /// applied yet; returns the steps applied now, in order.
    pub fn advance(&mut self, elapsed: Duration) -> &[Step] {
        let from = self.next_step;
        while let Some(step) = self.scenario.steps.get(self.next_step) {
            if step.after > elapsed {
                break;
            }
            for (name, patch) in &step.set {
                if let Some(p) = self.current.get_mut(name) {
                    patch.apply(p);
                }
            }
            self.next_step += 1;
        }
        &self.scenario.steps[from..self.next_step]
    }

    /// The current parameters of every variant, by name.
    pub fn current(&self) -> &BTreeMap<String, Params> {
        &self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "
variants:
  baseline-predictor: {accuracy: 72, latency: 80ms, error_rate: 0.01}
  enhanced-predictor: {accuracy: 78, latency: 60ms, error_rate: 0.005}
steps:
  - after: 40s
    set: {enhanced-predictor: {error_rate: 0.2}, baseline-predictor: {latency: 300ms}}
  - after: 20s
    set: {enhanced-predictor: {accuracy: 50}}
";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn steps_apply_at_their_time_and_change_only_named_fields() {
        let scenario = Scenario::parse(EXAMPLE, "s.yaml").expect("valid");
        assert_eq!(scenario.steps[0].after, Duration::from_secs(20), "sorted");
        let mut s = ScenarioState::new(scenario);
        let enhanced = |s: &ScenarioState| s.current()["enhanced-predictor"];
        let baseline = |s: &ScenarioState| s.current()["baseline-predictor"];

        assert!(s.advance(Duration::ZERO).is_empty());
        assert!(s.advance(ms(19_999)).is_empty());
        assert_eq!(enhanced(&s).accuracy, 78.0);

        let applied = s.advance(ms(20_000));
        assert_eq!(applied.len(), 1, "due exactly at `after`");
        assert_eq!(applied[0].to_string(), "enhanced-predictor: accuracy=50");
        let e = enhanced(&s);
        assert_eq!(
            (e.accuracy, e.latency, e.error_rate),
            (50.0, ms(60), 0.005),
            "only accuracy changed"
        );
        assert_eq!(baseline(&s).latency, ms(80));
        assert!(s.advance(ms(20_100)).is_empty(), "applied once");

        // A late tick applies everything due at once.
        assert_eq!(s.advance(ms(60_000)).len(), 1);
        assert_eq!(enhanced(&s).error_rate, 0.2);
        assert_eq!(enhanced(&s).accuracy, 50.0, "earlier step kept");
        assert_eq!(baseline(&s).latency, ms(300));
        assert_eq!(baseline(&s).accuracy, 72.0);
    }

    #[test]
    fn two_steps_due_in_one_tick_apply_in_order() {
        let text = "
variants: {a: {accuracy: 70, latency: 50ms, error_rate: 0}}
steps:
  - {after: 1s, set: {a: {accuracy: 60}}}
  - {after: 1s, set: {a: {accuracy: 40}}}
  - {after: 2s, set: {a: {accuracy: 90}}}
";
        let mut s = ScenarioState::new(Scenario::parse(text, "s.yaml").expect("valid"));
        assert_eq!(s.advance(ms(1500)).len(), 2);
        assert_eq!(s.current()["a"].accuracy, 40.0);
        assert_eq!(s.advance(ms(2000)).len(), 1);
        assert_eq!(s.current()["a"].accuracy, 90.0);
    }

    #[test]
    fn rejects_invalid_scenarios() {
        for (text, want) in [
            ("variants: {}", "variants: empty"),
            (
                "variants: {a: {accuracy: 170, latency: 5ms, error_rate: 0}}",
                "accuracy",
            ),
            (
                "variants: {a: {accuracy: 70, latency: 0s, error_rate: 0}}",
                "latency",
            ),
            (
                "variants: {a: {accuracy: 70, latency: 5ms, error_rate: 2}}",
                "error_rate",
            ),
            (
                "variants: {a: {accuracy: 70, latency: fast, error_rate: 0}}",
                "not a scenario",
            ),
            (
                "variants: {a: {accuracy: 70, latency: 5ms}}",
                "not a scenario",
            ),
            (
                "variants: {a: {accuracy: 70, latency: 5ms, error_rate: 0, colour: red}}",
                "not a scenario",
            ),
            (
                "variants: {a: {accuracy: 70, latency: 5ms, error_rate: 0}}\nsteps: [{after: 1s, set: {b: {accuracy: 1}}}]",
                "not one of the variants",
            ),
            (
                "variants: {a: {accuracy: 70, latency: 5ms, error_rate: 0}}\nsteps: [{after: 1s, set: {a: {error_rate: -1}}}]",
                "steps[0].set.a.error_rate",
            ),
        ] {
            let err = Scenario::parse(text, "s.yaml").expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
