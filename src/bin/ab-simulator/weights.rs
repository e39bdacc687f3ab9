//! The traffic weights: the router's `file` traffic target, and a watcher that
//! re-reads it when it changes.
//!
//! ```yaml
//! experiment: financial-ab-test-experiment   # optional
//! default: baseline-predictor                # optional; must be a candidate
//! candidates:
//!   - {name: baseline-predictor, weight: 70}
//!   - {name: enhanced-predictor, weight: 30}
//! ```
//!
//! Weights are relative (they need not sum to 100). Unknown keys are ignored,
//! so the router may add its own bookkeeping to the file. JSON is accepted too
//! (it is YAML).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

/// What is wrong with a weights file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: String,
        // Not `source`: the message already includes it (no doubled chain).
        error: std::io::Error,
    },
    #[error("{path}: not a weights file: {error}")]
    Parse {
        path: String,
        error: serde_yaml::Error,
    },
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
}

#[derive(Debug, Deserialize)]
struct WeightsFile {
    #[serde(default)]
    experiment: Option<String>,
    #[serde(default)]
    default: Option<String>,
    candidates: Vec<CandidateFile>,
}

#[derive(Debug, Deserialize)]
struct CandidateFile {
    name: String,
    weight: f64,
}

/// A valid set of weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    /// The file's `experiment:` key, if any.
    pub experiment: Option<String>,
    /// `(variant, relative weight)`, in file order; weights >= 0, sum > 0,
    /// names unique.
    pub candidates: Vec<(String, f64)>,
}

impl Weights {
    /// Parses and validates the text of a weights file (`path` is for messages).
    pub fn parse(text: &str, path: &str) -> Result<Self, WeightsError> {
        let file: WeightsFile =
            serde_yaml::from_str(text).map_err(|error| WeightsError::Parse {
                path: path.to_owned(),
                error,
            })?;
        let invalid = |msg: String| WeightsError::Invalid {
            path: path.to_owned(),
            msg,
        };
        if file.candidates.is_empty() {
            return Err(invalid("candidates: empty".into()));
        }
        let mut candidates: Vec<(String, f64)> = Vec::with_capacity(file.candidates.len());
        for (i, c) in file.candidates.into_iter().enumerate() {
            if c.name.is_empty() {
                return Err(invalid(format!("candidates[{i}].name: empty")));
            }
            if !c.weight.is_finite() || c.weight < 0.0 {
                return Err(invalid(format!(
                    "candidates[{i}].weight: {} is not a number >= 0",
                    c.weight
                )));
            }
            if candidates.iter().any(|(n, _)| *n == c.name) {
                return Err(invalid(format!(
                    "candidates[{i}].name: {:?} appears twice",
                    c.name
                )));
            }
            candidates.push((c.name, c.weight));
        }
        if candidates.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
            return Err(invalid("candidates: the weights sum to 0".into()));
        }
        if let Some(d) = &file.default {
            if !candidates.iter().any(|(n, _)| n == d) {
                return Err(invalid(format!("default: {d:?} is not a candidate")));
            }
        }
        if let Some(e) = &file.experiment {
            if e.is_empty() {
                return Err(invalid("experiment: empty".into()));
            }
        }
        Ok(Self {
            experiment: file.experiment,
            candidates,
        })
    }

    /// Reads and validates a weights file.
    pub fn load(path: &Path) -> Result<Self, WeightsError> {
        let shown = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|error| WeightsError::Read {
            path: shown.clone(),
            error,
        })?;
        Self::parse(&text, &shown)
    }

    /// The weight of `variant` in percent of the total (0 if not a candidate).
    pub fn percent(&self, variant: &str) -> f64 {
        let total: f64 = self.candidates.iter().map(|(_, w)| w).sum();
        self.candidates
            .iter()
            .find(|(n, _)| n == variant)
            .map_or(0.0, |(_, w)| 100.0 * w / total)
    }

    /// `name=share%` list for logs.
    pub fn describe(&self) -> String {
        self.candidates
            .iter()
            .map(|(n, _)| format!("{n}={:.1}%", self.percent(n)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What identifies one version of the file: modification time, size and inode
/// (the router replaces the file by rename, which always changes the inode).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path)?;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

/// The outcome of one [`WeightsWatcher::poll`].
#[derive(Debug)]
pub enum Poll {
    /// The file did not change since the last poll (or keeps failing the same way).
    Unchanged,
    /// The file changed and holds valid weights.
    Changed(Weights),
    /// The file is missing or invalid; the caller keeps its last good weights.
    Failed(WeightsError),
}

/// Watches the weights file by polling its stamp (mtime, size, inode).
#[derive(Debug)]
pub struct WeightsWatcher {
    path: PathBuf,
    last: Option<Stamp>,
    /// The last error reported, so that a file that stays missing is reported once.
    last_error: Option<String>,
}

impl WeightsWatcher {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            last: None,
            last_error: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the file; reads and parses it only if its stamp changed.
    pub fn poll(&mut self) -> Poll {
        let now = match stamp(&self.path) {
            Ok(s) => s,
            Err(error) => {
                self.last = None;
                let err = WeightsError::Read {
                    path: self.path.display().to_string(),
                    error,
                };
                return self.report(err);
            }
        };
        if self.last.as_ref() == Some(&now) {
            return Poll::Unchanged;
        }
        self.last = Some(now);
        match Weights::load(&self.path) {
            Ok(w) => {
                self.last_error = None;
                Poll::Changed(w)
            }
            Err(e) => {
                // A new version of the file that is invalid is always reported.
                self.last_error = None;
                self.report(e)
            }
        }
    }

    fn report(&mut self, err: WeightsError) -> Poll {
        let msg = err.to_string();
        if self.last_error.as_deref() == Some(msg.as_str()) {
            return Poll::Unchanged;
        }
        self.last_error = Some(msg);
        Poll::Failed(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replaces `path` the way the router does: write a temporary file, rename.
    fn write_atomic(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, text).expect("write temp weights");
        fs::rename(&tmp, path).expect("rename weights");
    }

    const W70_30: &str = "default: baseline-predictor\ncandidates:\n  - {name: baseline-predictor, weight: 70}\n  - {name: enhanced-predictor, weight: 30}\n";

    #[test]
    fn parses_the_router_file_format() {
        let w = Weights::parse(W70_30, "w.yaml").expect("valid");
        assert_eq!(w.experiment, None);
        assert_eq!(
            w.candidates,
            vec![
                ("baseline-predictor".to_owned(), 70.0),
                ("enhanced-predictor".to_owned(), 30.0)
            ]
        );
        assert!((w.percent("enhanced-predictor") - 30.0).abs() < 1e-9);
        assert_eq!(w.percent("nope"), 0.0);

        // Relative weights, JSON, an experiment key and unknown keys.
        let w = Weights::parse(
            r#"{"experiment": "exp-1", "updated_by": "router", "candidates": [{"name": "a", "weight": 1}, {"name": "b", "weight": 3}]}"#,
            "w.json",
        )
        .expect("valid");
        assert_eq!(w.experiment.as_deref(), Some("exp-1"));
        assert!((w.percent("b") - 75.0).abs() < 1e-9);
    }

    #[test]
    fn rejects_invalid_files() {
        for (text, want) in [
            ("candidates: []", "empty"),
            ("candidates: [{name: a, weight: -1}]", ">= 0"),
            ("candidates: [{name: a, weight: 0}]", "sum to 0"),
            (
                "candidates: [{name: a, weight: 1}, {name: a, weight: 2}]",
                "twice",
            ),
            (
                "default: c\ncandidates: [{name: a, weight: 1}]",
                "not a candidate",
            ),
            ("candidates: [{name: a}]", "not a weights file"),
            ("- just a list", "not a weights file"),
        ] {
            let err = Weights::parse(text, "w.yaml").expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn watcher_reloads_on_change_and_keeps_quiet_otherwise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weights.yaml");
        write_atomic(&path, W70_30);
        let mut w = WeightsWatcher::new(&path);

        let Poll::Changed(first) = w.poll() else {
            panic!("first poll must load the file")
        };
        assert!((first.percent("baseline-predictor") - 70.0).abs() < 1e-9);
        assert!(matches!(w.poll(), Poll::Unchanged));

        // The router shifts traffic: same size, new content, replaced by rename.
        write_atomic(
            &path,
            "default: baseline-predictor\ncandidates:\n  - {name: baseline-predictor, weight: 80}\n  - {name: enhanced-predictor, weight: 20}\n",
        );
        let Poll::Changed(second) = w.poll() else {
            panic!("a replaced file must be reloaded")
        };
        assert!((second.percent("enhanced-predictor") - 20.0).abs() < 1e-9);
        assert!(matches!(w.poll(), Poll::Unchanged));

        // An invalid version is reported once; the caller keeps the last good weights.
        write_atomic(&path, "candidates: [{name: a, weight: nope}]\n");
        assert!(matches!(w.poll(), Poll::Failed(WeightsError::Parse { .. })));
        assert!(matches!(w.poll(), Poll::Unchanged));

        // A missing file is reported once, too.
        fs::remove_file(&path).expect("remove");
        assert!(matches!(w.poll(), Poll::Failed(WeightsError::Read { .. })));
        assert!(matches!(w.poll(), Poll::Unchanged));

        // When it comes back it is read again.
        write_atomic(&path, W70_30);
        assert!(matches!(w.poll(), Poll::Changed(ref x) if *x == first));
    }
}
