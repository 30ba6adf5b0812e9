//! lexforge training engine: the optimizer loop ([`train`]) with AdamW ([`OptimizerConfig`]),
//! global gradient-norm clipping ([`clip_global_norm`]), linear warmup + cosine decay
//! ([`LrSchedule`]), gradient accumulation, evaluation every N steps ([`evaluate`]), early
//! stopping on validation loss ([`EarlyStopping`]), checkpoints every N steps plus the best
//! ([`CheckpointDir`]) and exact resume ([`Resume`]), reporting through `lexforge-core`'s
//! `EventSink`.
//!
//! A model plugs in by implementing [`TrainModel`] (its loss on a batch, and optionally
//! [`TrainModel::after_step`] for state gradients do not learn, such as EMA codebooks, with
//! metrics reported as events); data by implementing [`BatchSource`] (a batch from item
//! indices).

mod checkpoint;
mod config;
mod contract;
mod early_stop;
mod engine;
mod error;
mod host_ops;
mod micro_batch;
mod optimizer;
mod params;
mod schedule;

pub use checkpoint::{BestEval, CheckpointDir, LossScaleState, TrainerState, step_name};
pub use config::{LossScaling, LossScalingMode, TrainConfig};
pub use contract::{BatchSource, BoxError, LossOutput, StepInfo, TrainModel};
pub use early_stop::{EarlyStopping, EarlyStoppingConfig, Verdict};
pub use engine::{Resume, StopReason, TrainContext, TrainOutcome, evaluate, train};
pub use error::{Result, TrainError, check_loss};
pub use optimizer::{AdamW, OptimizerConfig};
pub use params::{cast_params, clip_global_norm, scale_grads, with_stable_param_ids};
pub use schedule::LrSchedule;

/// Tests that draw from burn's process-wide backend RNG (weight init, dropout, random
/// tensors) or reseed it run one at a time: one test's draws would otherwise shift another's.
#[cfg(test)]
pub(crate) fn serial_rng() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
