//! Errors of the training engine.

use lexforge_core::ErrorKind;

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// I/O, run directories, manifests, events.
    #[error(transparent)]
    Core(#[from] lexforge_core::Error),

    /// The loss became NaN or infinite.
    #[error(
        "the training loss became {value} at step {step}; lower the learning rate or check the data"
    )]
    NonFiniteLoss {
        /// Optimizer step at which it happened.
        step: u64,
        /// The loss (`NaN`, `inf` or `-inf`).
        value: f64,
    },

    /// A checkpoint that cannot be used: missing files, a checksum mismatch, an unreadable
    /// optimizer record or weights that do not fit the model.
    #[error("checkpoint {path} cannot be used: {reason}")]
    Checkpoint {
        /// The checkpoint directory.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A checkpoint file could not be written (a full disk, a read-only directory). The
    /// checkpoints written before are intact: a checkpoint appears only once complete.
    #[error("cannot write checkpoint file {path}: {reason}")]
    CheckpointWrite {
        /// The file, at its final place in the checkpoint directory.
        path: std::path::PathBuf,
        /// The cause, as the operating system gave it.
        reason: String,
    },

    /// The model or the data failed during a step (an error of the crate that owns them).
    #[error("{op} failed at step {step}: {source}")]
    Step {
        /// What was running (`"loss"`, `"batch"`, `"evaluate"`).
        op: &'static str,
        /// Optimizer step.
        step: u64,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The data cannot fill one batch (fewer items than the batch size).
    #[error("the {split} data has {items} items, fewer than one batch of {batch_size}")]
    NotEnoughData {
        /// `"train"` or `"validation"`.
        split: &'static str,
        /// Items available.
        items: usize,
        /// Items one batch needs.
        batch_size: usize,
    },

    /// A configuration value that cannot work.
    #[error("invalid training parameter {parameter}: {reason}")]
    InvalidParameter {
        /// Its name.
        parameter: &'static str,
        /// Why.
        reason: String,
    },
}

impl TrainError {
    /// The error family.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TrainError::Core(e) => e.kind(),
            TrainError::Step { source, .. } => {
                match source.downcast_ref::<lexforge_core::Error>() {
                    Some(e) => e.kind(),
                    None => ErrorKind::InvalidInput,
                }
            }
            TrainError::Checkpoint { .. } => ErrorKind::Artifact,
            TrainError::CheckpointWrite { .. } => ErrorKind::Io,
            TrainError::NonFiniteLoss { .. }
            | TrainError::InvalidParameter { .. }
            | TrainError::NotEnoughData { .. } => ErrorKind::InvalidInput,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Fails with [`TrainError::NonFiniteLoss`] when `loss` is NaN or infinite.
pub fn check_loss(step: u64, loss: f64) -> Result<f64> {
    if loss.is_finite() {
        Ok(loss)
    } else {
        Err(TrainError::NonFiniteLoss { step, value: loss })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_losses_name_the_step() {
        assert_eq!(check_loss(3, 1.5).unwrap(), 1.5);
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = check_loss(42, v).unwrap_err();
            assert!(matches!(e, TrainError::NonFiniteLoss { step: 42, .. }));
            assert!(e.to_string().contains("step 42"), "{e}");
        }
    }
}
