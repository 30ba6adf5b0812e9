//! Checkpoints: model weights, optimizer state and trainer state, written so that a run killed
//! at any moment resumes from its last complete checkpoint.
//!
//! # Layout
//! ```text
//! checkpoints/
//!   latest.json              {"name": "step-000120", "step": 120}   (atomic)
//!   step-000100/ step-000120/ (the last `keep` periodic checkpoints)
//!   best/                     (lowest validation loss so far)
//!     model.safetensors       burn-store SafeTensors of the module
//!     optimizer.bpk           burn's optimizer record (burnpack)
//!     state.json              TrainerState + sha256 of the two files
//! ```
//! A checkpoint is built in a hidden `.tmp-*` directory, every file is fsynced, then the
//! directory is renamed into place and `latest.json` is replaced atomically. A crash leaves at
//! most a `.tmp-*` directory, which the next save removes; `latest.json` only ever names a
//! complete checkpoint.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use lexforge_core::{atomic_write, fsync_dir, sha256_file};
use serde::{Deserialize, Serialize};

use crate::early_stop::EarlyStopping;
use crate::error::{Result, TrainError};
use crate::optimizer::AdamW;

const MODEL_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";
const LATEST_FILE: &str = "latest.json";

/// The best validation result so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestEval {
    /// Optimizer step of the evaluation.
    pub step: u64,
    /// Its validation loss.
    pub val_loss: f64,
}

/// Everything besides weights and optimizer moments that the loop needs to continue exactly.
///
/// The learning rate is a pure function of `step` ([`crate::LrSchedule`]), the data order a
/// pure function of the seed and the epoch, and the backend RNG (dropout) is reseeded from
/// (seed, step, micro-batch) before every forward pass, so `step` and `micro_batches` are the
/// whole position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: u64,
    /// Micro-batches consumed (the data position; `step * grad_accum_steps` at a checkpoint).
    pub micro_batches: u64,
    /// Target tokens trained on.
    pub tokens: u64,
    /// Early-stopping bookkeeping, when enabled.
    pub early_stopping: Option<EarlyStopping>,
    /// Best validation loss so far.
    pub best: Option<BestEval>,
    /// Loss of the last evaluation.
    pub last_val_loss: Option<f64>,
    /// Training wall time so far, across restarts.
    pub elapsed_secs: f64,
    /// The run's seed.
    pub seed: u64,
    /// The loss scaler's state when loss scaling is on (see [`crate::LossScaling`]).
    #[serde(default)]
    pub loss_scale: Option<LossScaleState>,
}

/// Where dynamic loss scaling is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaleState {
    /// The current scale.
    pub scale: f64,
    /// Good steps since the last change of the scale.
    pub good_steps: u64,
    /// Steps skipped so far because their gradients overflowed.
    pub skipped_steps: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    state: TrainerState,
    model_sha256: String,
    optimizer_sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Latest {
    name: String,
    step: u64,
}

/// The `checkpoints/` directory of a run.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    root: PathBuf,
    keep: usize,
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn fsync_file(path: &Path) -> Result<()> {
    let f = fs::File::open(path).map_err(|e| lexforge_core::Error::io("open", path, e))?;
    f.sync_all()
        .map_err(|e| lexforge_core::Error::io("fsync", path, e))?;
    Ok(())
}

/// Name of the periodic checkpoint of `step`.
pub fn step_name(step: u64) -> String {
    format!("step-{step:06}")
}

impl CheckpointDir {
    /// The checkpoints under `root` (created if missing); periodic checkpoints beyond the newest
    /// `keep` (at least 1) are deleted after each save.
    pub fn new(root: impl Into<PathBuf>, keep: usize) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)
            .map_err(|e| lexforge_core::Error::io("create directory", &root, e))?;
        Ok(CheckpointDir {
            root,
            keep: keep.max(1),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The directory of checkpoint `name`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The newest complete periodic checkpoint, from `latest.json`.
    pub fn latest(&self) -> Result<Option<String>> {
        let path = self.root.join(LATEST_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let latest: Latest = serde_json::from_slice(&bytes)
                    .map_err(|e| bad(&path, format!("latest.json is not valid: {e}")))?;
                Ok(Some(latest.name))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(lexforge_core::Error::io("read", &path, e).into()),
        }
    }

    /// Writes checkpoint `name` (replacing one of that name) and, when `periodic`, points
    /// `latest.json` at it and prunes old periodic checkpoints.
    pub fn save<M: Module>(
        &self,
        name: &str,
        model: &M,
        optimizer: &AdamW,
        state: &TrainerState,
        periodic: bool,
    ) -> Result<PathBuf> {
        self.remove_temporaries();
        let tmp = self
            .root
            .join(format!(".tmp-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(|e| lexforge_core::Error::io("create directory", &tmp, e))?;
        let result = self.fill(&tmp, &self.dir(name), model, optimizer, state);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let dest = self.dir(name);
        let old = self
            .root
            .join(format!(".old-{name}-{}", std::process::id()));
        if dest.exists() {
            fs::rename(&dest, &old).map_err(|e| lexforge_core::Error::io("rename", &dest, e))?;
        }
        fs::rename(&tmp, &dest).map_err(|e| lexforge_core::Error::io("rename", &tmp, e))?;
        fsync_dir(&self.root)?;
        let _ = fs::remove_dir_all(&old);
        if periodic {
            let latest = serde_json::to_vec(&Latest {
                name: name.to_owned(),
                step: state.step,
            })
            .map_err(|e| bad(&dest, e))?;
            atomic_write(&self.root.join(LATEST_FILE), &latest)?;
            self.prune(name)?;
        }
        tracing::debug!(path = %dest.display(), step = state.step, "checkpoint written");
        Ok(dest)
    }

    /// Writes the checkpoint's files into `tmp`; errors name each file at its final place
    /// under `dest`.
    fn fill<M: Module>(
        &self,
        tmp: &Path,
        dest: &Path,
        model: &M,
        optimizer: &AdamW,
        state: &TrainerState,
    ) -> Result<()> {
        let failed = |file: &str, reason: String| TrainError::CheckpointWrite {
            path: dest.join(file),
            reason,
        };
        let model_path = tmp.join(MODEL_FILE);
        model
            .save_into(&mut SafetensorsStore::from_file(&model_path).clear_metadata())
            .map_err(|e| failed(MODEL_FILE, e.to_string()))?;
        let optim_path = tmp.join(OPTIMIZER_FILE);
        let bytes = optimizer.to_bytes(&optim_path)?;
        fs::write(&optim_path, bytes).map_err(|e| failed(OPTIMIZER_FILE, e.to_string()))?;
        fsync_file(&model_path)?;
        fsync_file(&optim_path)?;
        let file = StateFile {
            state: state.clone(),
            model_sha256: sha256_file(&model_path)?.0,
            optimizer_sha256: sha256_file(&optim_path)?.0,
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| bad(tmp, e))?;
        atomic_write(&tmp.join(STATE_FILE), &json)?;
        Ok(())
    }

    /// Loads checkpoint `name` into `model` (same architecture) and `optimizer` (same
    /// configuration). Fails with [`TrainError::Checkpoint`] when a file is missing, altered
    /// (checksum), or does not fit the model.
    /// The optimizer state goes onto `device`.
    pub fn load<M: Module>(
        &self,
        name: &str,
        model: M,
        optimizer: AdamW,
        device: &Device,
    ) -> Result<(M, AdamW, TrainerState)> {
        let (dir, file) = self.verified(name)?;
        let model = Self::apply_weights(&dir, model)?;
        let path = dir.join(OPTIMIZER_FILE);
        let bytes = fs::read(&path)
            .map_err(|e| bad(&dir, format!("cannot read the optimizer state: {e}")))?;
        let optimizer = optimizer.load_bytes(&bytes, &path, device)?;
        Ok((model, optimizer, file.state))
    }

    /// Loads only the weights of checkpoint `name` into `model` (checksums verified).
    pub fn load_weights<M: Module>(&self, name: &str, model: M) -> Result<M> {
        let (dir, _) = self.verified(name)?;
        Self::apply_weights(&dir, model)
    }

    fn verified(&self, name: &str) -> Result<(PathBuf, StateFile)> {
        let dir = self.dir(name);
        let state_path = dir.join(STATE_FILE);
        let bytes =
            fs::read(&state_path).map_err(|e| bad(&dir, format!("cannot read state.json: {e}")))?;
        let file: StateFile = serde_json::from_slice(&bytes)
            .map_err(|e| bad(&dir, format!("state.json is not valid: {e}")))?;
        for (rel, expected) in [
            (MODEL_FILE, &file.model_sha256),
            (OPTIMIZER_FILE, &file.optimizer_sha256),
        ] {
            let path = dir.join(rel);
            let got = sha256_file(&path)
                .map_err(|e| bad(&dir, format!("{rel}: {e}")))?
                .0;
            if &got != expected {
                return Err(bad(
                    &dir,
                    format!(
                        "{rel} has sha256 {got}, state.json recorded {expected} (damaged or replaced)"
                    ),
                ));
            }
        }
        Ok((dir, file))
    }

    fn apply_weights<M: Module>(dir: &Path, mut model: M) -> Result<M> {
        let applied = model
            .load_from(&mut SafetensorsStore::from_file(dir.join(MODEL_FILE)))
            .map_err(|e| bad(dir, format!("weights do not fit the model: {e}")))?;
        if !applied.errors.is_empty() || !applied.missing.is_empty() {
            return Err(bad(
                dir,
                format!(
                    "weights do not fit the model: {} missing, {} errors",
                    applied.missing.len(),
                    applied.errors.len()
                ),
            ));
        }
        Ok(model)
    }

    /// Removes what an interrupted save left: `.tmp-*` directories, and `.old-NAME-PID`
    /// copies of replaced checkpoints. An `.old-` copy whose checkpoint is missing (a kill
    /// between the two renames of a replacement) is complete, so it is put back instead.
    pub(crate) fn remove_temporaries(&self) {
        if let Ok(entries) = fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if let Some(old) = name.strip_prefix(".old-") {
                    let replaced = old.rsplit_once('-').map(|(n, _pid)| self.dir(n));
                    match replaced {
                        Some(dest) if !dest.exists() => {
                            tracing::warn!(path = %dest.display(), "restoring a checkpoint an interrupted save had moved aside");
                            let _ = fs::rename(entry.path(), dest);
                        }
                        _ => {
                            let _ = fs::remove_dir_all(entry.path());
                        }
                    }
                } else if name.starts_with(".tmp-") {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    fn prune(&self, newest: &str) -> Result<()> {
        let mut steps: Vec<String> = fs::read_dir(&self.root)
            .map_err(|e| lexforge_core::Error::io("read directory", &self.root, e))?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("step-"))
            .collect();
        steps.sort();
        let excess = steps.len().saturating_sub(self.keep);
        for name in steps.into_iter().take(excess) {
            if name != newest {
                let _ = fs::remove_dir_all(self.dir(&name));
            }
        }
        Ok(())
    }
}
