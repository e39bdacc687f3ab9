//! `kind: file`: weights in a local YAML file, replaced atomically (write to a
//! temp file, fsync, rename) so a reader (the simulator) never sees half a file.

use super::policy::WeightMap;
use super::target::{push_mark, read_marks, ShiftMark, Snapshot, TargetError, TrafficTarget};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use tokio::sync::Mutex;

#[derive(Debug, Clone, Deserialize, Serialize)]
struct Candidate {
    name: String,
    weight: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
struct WeightsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    experiment: Option<String>,
    default: String,
    candidates: Vec<Candidate>,
    /// The newest mark (the only one files written before `shifts` have).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_shift: Option<ShiftMark>,
    /// The last [`MARKS_KEPT`](super::target::MARKS_KEPT) marks, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shifts: Vec<ShiftMark>,
}

/// A weights file.
pub struct FileWeights {
    path: PathBuf,
    /// Serialises read-compare-write within this process.
    lock: Mutex<()>,
}

impl FileWeights {
    /// The file at `path` (read on every use, never cached).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }

    fn load(&self) -> Result<WeightsFile, TargetError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            TargetError::Permanent(format!(
                "cannot read weights file {}: {e}",
                self.path.display()
            ))
        })?;
        serde_yaml::from_str(&text).map_err(|e| {
            TargetError::Permanent(format!(
                "weights file {} is invalid: {e}",
                self.path.display()
            ))
        })
    }

    fn snapshot(f: &WeightsFile) -> Snapshot {
        Snapshot {
            weights: f
                .candidates
                .iter()
                .map(|c| (c.name.clone(), c.weight))
                .collect(),
            default: Some(f.default.clone()),
            shifts: read_marks(f.last_shift.clone(), f.shifts.clone()),
            object: None,
        }
    }
}

#[async_trait]
impl TrafficTarget for FileWeights {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    async fn read(&self) -> Result<Snapshot, TargetError> {
        Ok(Self::snapshot(&self.load()?))
    }

    async fn write(
        &self,
        expected: &Snapshot,
        after: &WeightMap,
        mark: &ShiftMark,
    ) -> Result<(), TargetError> {
        let _guard = self.lock.lock().await;
        let mut file = self.load()?;
        let now = Self::snapshot(&file);
        if now.weights != expected.weights {
            return Err(TargetError::Conflict(format!(
                "{} now holds {:?}, expected {:?}",
                self.path.display(),
                now.weights,
                expected.weights
            )));
        }
        for c in &mut file.candidates {
            if let Some(w) = after.get(&c.name) {
                c.weight = *w;
            }
        }
        file.shifts = push_mark(&now.shifts, mark);
        file.last_shift = Some(mark.clone());
        let text = serde_yaml::to_string(&file)
            .map_err(|e| TargetError::Permanent(format!("cannot serialise weights: {e}")))?;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("weights")
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            TargetError::Transient(format!("cannot write {}: {e}", self.path.display()))
        })
    }

    fn preview(&self, expected: &Snapshot, after: &WeightMap, mark: &ShiftMark) -> Value {
        json!({
            "file": self.path.display().to_string(),
            "expect": expected.weights,
            "write": {"candidates": after, "last_shift": mark, "shifts": push_mark(&expected.shifts, mark)},
        })
    }
}
