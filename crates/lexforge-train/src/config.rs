//! The loop's hyper-parameters: [`TrainConfig`] (steps, batches, learning rate, evaluation,
//! checkpoints, early stopping) and dynamic loss scaling ([`LossScaling`]), with their checks.

use burn::tensor::{Device, FloatDType};
use serde::{Deserialize, Serialize};

use crate::early_stop::EarlyStoppingConfig;
use crate::error::{Result, TrainError};
use crate::optimizer::OptimizerConfig;
use crate::schedule::LrSchedule;

/// Hyper-parameters of the loop. Defaults are those of a small nanoGPT-style run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps to run.
    pub max_steps: u64,
    /// Items per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed (averaged) into one optimizer step.
    pub grad_accum_steps: u32,
    /// Peak learning rate.
    pub lr: f64,
    /// Learning rate reached at `max_steps` by the cosine decay.
    pub min_lr: f64,
    /// Linear warmup length in optimizer steps.
    pub warmup_steps: u64,
    /// AdamW and clipping.
    pub optimizer: OptimizerConfig,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Evaluate on at most this many validation batches (`None`: all of them).
    pub eval_batches: Option<usize>,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Periodic checkpoints to keep (the best one is kept separately).
    pub keep_checkpoints: usize,
    /// Stop when the validation loss stops improving.
    pub early_stopping: Option<EarlyStoppingConfig>,
    /// Emit a progress event every this many steps.
    pub log_every: u64,
    /// Seed of the data order and of the backend RNG (dropout).
    pub seed: u64,
    /// Loss scaling for reduced-precision gradients (see [`LossScaling`]).
    pub loss_scaling: LossScaling,
}

/// Dynamic loss scaling (PyTorch's `GradScaler`): the loss is multiplied by a scale before
/// `backward` so that small f16 gradients do not flush to zero, the gradients are divided by it
/// again before clipping and the optimizer step, and a step whose gradients overflowed
/// (non-finite norm) is skipped and the scale halved. After `growth_interval` good steps in a
/// row the scale doubles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossScaling {
    /// `auto`: on when the training device computes in f16, off otherwise (f32 and bf16 have
    /// f32's exponent range); `on`; `off`.
    pub mode: LossScalingMode,
    /// The first scale. f16's largest value is 65504 and the scaled loss is an f16 too, so the
    /// default (1024) leaves room for losses up to ~64.
    pub init_scale: f64,
    /// Good steps in a row before the scale doubles.
    pub growth_interval: u64,
}

/// When [`LossScaling`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossScalingMode {
    /// On for f16 training devices only.
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

impl Default for LossScaling {
    fn default() -> Self {
        LossScaling {
            mode: LossScalingMode::Auto,
            init_scale: 1024.0,
            growth_interval: 1000,
        }
    }
}

impl LossScaling {
    /// Whether scaling applies on `device`.
    pub fn active_on(&self, device: &Device) -> bool {
        match self.mode {
            LossScalingMode::On => true,
            LossScalingMode::Off => false,
            LossScalingMode::Auto => device.settings().float_dtype == FloatDType::F16,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            max_steps: 1000,
            batch_size: 8,
            grad_accum_steps: 1,
            lr: 3e-4,
            min_lr: 3e-5,
            warmup_steps: 100,
            optimizer: OptimizerConfig::default(),
            eval_every: 100,
            eval_batches: None,
            checkpoint_every: 100,
            keep_checkpoints: 2,
            early_stopping: None,
            log_every: 10,
            seed: 0,
            loss_scaling: LossScaling::default(),
        }
    }
}

impl TrainConfig {
    /// The learning-rate schedule of this configuration.
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            peak: self.lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.max_steps,
        }
    }

    /// Checks every value; names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |parameter, reason: String| Err(TrainError::InvalidParameter { parameter, reason });
        if self.max_steps == 0 {
            return bad("max_steps", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.grad_accum_steps == 0 {
            return bad("grad_accum_steps", "must be at least 1".into());
        }
        if self.log_every == 0 {
            return bad("log_every", "must be at least 1".into());
        }
        if self.eval_batches == Some(0) {
            return bad("eval_batches", "must be at least 1 when given".into());
        }
        let ls = &self.loss_scaling;
        if !(ls.init_scale >= 1.0 && ls.init_scale.is_finite()) {
            return bad(
                "loss_scaling.init_scale",
                format!("{} must be a finite number >= 1", ls.init_scale),
            );
        }
        if ls.growth_interval == 0 {
            return bad("loss_scaling.growth_interval", "must be at least 1".into());
        }
        self.schedule().validate()?;
        self.optimizer.validate()
    }
}
