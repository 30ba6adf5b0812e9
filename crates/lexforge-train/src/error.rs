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
            TrainError::NonFiniteLoss { .. } | TrainError::InvalidParameter { .. } => {
                ErrorKind::InvalidInput
            }
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
