//! What a matcher training run reads: the loss terms and their weights ([`LossConfig`],
//! [`DistillMode`], [`AdversaryMode`]) and every other setting ([`MatcherTrainConfig`]),
//! with their defaults and checks.

use std::path::PathBuf;

use lexforge_nn::bert::BertConfig;
use lexforge_train::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::calibration::ThresholdMetric;
use crate::cross::TeacherConfig;
use crate::dataset::ViewsConfig;
use crate::error::{MatcherError, Result};
use crate::model::HeadConfig;

/// How the student learns from a teacher's pair scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistillMode {
    /// Binary cross-entropy against the teacher's probabilities (KL up to a constant).
    #[default]
    Kl,
    /// Mean squared error between student and teacher score margins of positive/negative
    /// pairs of the batch.
    MarginMse,
}

/// How the topic adversary is trained. In both modes the encoder receives the adversary's
/// gradient through the gradient-reversal layer ([`crate::grad_reverse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdversaryMode {
    /// A linear topic classifier refitted to each batch's (detached) embeddings — multinomial
    /// logistic regression, 100 full-batch steps — then applied through the reversal layer.
    /// The encoder always faces the best linear adversary for its current embeddings, so it
    /// cannot escape by moving away from a slowly learning head; stateless, so resume stays
    /// exact. Measured to lower a fresh probe's topic accuracy where `learned` does not.
    #[default]
    Refit,
    /// DANN: the `topic_head` parameters are learned by the optimizer alongside the encoder,
    /// which maximizes their cross-entropy through the reversal layer.
    Learned,
}

/// Weights and temperature of the loss terms (a weight of 0 turns a term off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Pairwise logistic loss on labelled pairs.
    pub pairwise: f64,
    /// Supervised contrastive loss, books as classes.
    pub supcon: f64,
    /// InfoNCE over the batch's positive pairs (in-batch negatives).
    pub info_nce: f64,
    /// Temperature of SupCon and InfoNCE.
    pub temperature: f64,
    /// Topic adversary weight (needs `head.topics`).
    pub adversary: f64,
    /// How the adversary acts on the encoder.
    pub adversary_mode: AdversaryMode,
    /// Distillation weight (needs a teacher).
    pub distill: f64,
    /// Distillation loss.
    pub distill_mode: DistillMode,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            pairwise: 1.0,
            supcon: 0.5,
            info_nce: 0.5,
            temperature: 0.05,
            adversary: 0.0,
            adversary_mode: AdversaryMode::Refit,
            distill: 0.0,
            distill_mode: DistillMode::Kl,
        }
    }
}

impl LossConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`MatcherError::InvalidParameter`] naming the field.
    pub fn validate(&self) -> Result<()> {
        for (name, w) in [
            ("loss.pairwise", self.pairwise),
            ("loss.supcon", self.supcon),
            ("loss.info_nce", self.info_nce),
            ("loss.adversary", self.adversary),
            ("loss.distill", self.distill),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(MatcherError::InvalidParameter {
                    parameter: name,
                    reason: format!("{w} must be finite and non-negative"),
                });
            }
        }
        if self.pairwise + self.supcon + self.info_nce + self.distill == 0.0 {
            return Err(MatcherError::InvalidParameter {
                parameter: "loss",
                reason: "every matching term has weight 0".into(),
            });
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(MatcherError::InvalidParameter {
                parameter: "loss.temperature",
                reason: format!("{} must be positive", self.temperature),
            });
        }
        Ok(())
    }
}

/// Everything `lexforge matcher train` reads (`matcher.toml` / JSON / Python keywords).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatcherTrainConfig {
    /// Base encoder directory (HF / sentence-transformers layout with `tokenizer.json`).
    pub base_model: PathBuf,
    /// Replace the base weights by a randomly initialized body of this shape (the base
    /// directory still gives the tokenizer and pooling): for tests and from-scratch runs.
    pub random_init: Option<BertConfig>,
    /// Head, pair features, topic adversary.
    pub head: HeadConfig,
    /// Loss terms.
    pub loss: LossConfig,
    /// Optimizer loop (steps, batch size in pairs, learning rate, checkpoints, early stop).
    pub train: TrainConfig,
    /// Tokens per text during training and inference (longer texts are truncated).
    pub max_seq_length: usize,
    /// Bottom stages of the body kept frozen (0: embeddings and all layers train).
    pub frozen_layers: usize,
    /// Recompute memory-bound activations in backward (for large encoders).
    pub gradient_checkpointing: bool,
    /// Metric the decision threshold is chosen for on validation.
    pub threshold_metric: ThresholdMetric,
    /// The cross-encoder teacher, trained first when `loss.distill > 0` and the matcher
    /// directory has no `teacher/` yet.
    pub teacher: TeacherConfig,
    /// Texts per forward pass during calibration and evaluation.
    pub eval_batch_size: usize,
    /// Train on book-balanced batches drawn from every chunk of the training books
    /// (`batch_size` books per batch) instead of the prepared training pairs; `None`: the
    /// pairs. Validation always uses the prepared validation pairs. Not with distillation
    /// (the teacher scores the prepared pairs).
    pub views: Option<ViewsConfig>,
}

impl Default for MatcherTrainConfig {
    fn default() -> Self {
        MatcherTrainConfig {
            base_model: PathBuf::new(),
            random_init: None,
            head: HeadConfig {
                projection_dim: None,
                ..HeadConfig::default()
            },
            loss: LossConfig::default(),
            train: TrainConfig {
                max_steps: 200,
                batch_size: 16,
                lr: 2e-5,
                min_lr: 2e-6,
                warmup_steps: 20,
                eval_every: 50,
                eval_batches: Some(8),
                checkpoint_every: 50,
                ..TrainConfig::default()
            },
            max_seq_length: 128,
            frozen_layers: 0,
            gradient_checkpointing: false,
            threshold_metric: ThresholdMetric::Accuracy,
            teacher: TeacherConfig::default(),
            eval_batch_size: 32,
            views: None,
        }
    }
}

impl MatcherTrainConfig {
    /// Checks every value.
    ///
    /// # Errors
    /// [`MatcherError::InvalidParameter`] naming the field, training-engine errors.
    pub fn validate(&self) -> Result<()> {
        self.head.validate()?;
        self.loss.validate()?;
        self.train.validate()?;
        if self.max_seq_length < 8 {
            return Err(MatcherError::InvalidParameter {
                parameter: "max_seq_length",
                reason: "must be at least 8".into(),
            });
        }
        if self.eval_batch_size == 0 {
            return Err(MatcherError::InvalidParameter {
                parameter: "eval_batch_size",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(v) = &self.views {
            v.validate()?;
            if self.loss.distill > 0.0 {
                return Err(MatcherError::InvalidParameter {
                    parameter: "views",
                    reason: "distillation scores the prepared pairs; train on pairs (no \
                             `views`) to distill"
                        .into(),
                });
            }
        }
        if self.loss.adversary > 0.0 && self.head.topics.is_none() {
            return Err(MatcherError::InvalidParameter {
                parameter: "loss.adversary",
                reason: "needs head.topics (the number of topic classes)".into(),
            });
        }
        Ok(())
    }
}
