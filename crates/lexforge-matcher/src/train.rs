//! Training the bi-encoder on a prepared dataset with the lexforge training engine, then
//! saving, calibrating and evaluating it.
//!
//! The loss of a batch of `n` labelled pairs (`2n` texts, embeddings `u` and `v`) is a
//! weighted sum of:
//! - **pairwise**: logistic loss of the pair score `scale · cos(u, v) + bias` against the label;
//! - **SupCon**: supervised contrastive loss over the `2n` embeddings with books as classes
//!   (hard negatives from the data-prep neighbour lists are in the batch as pairs of
//!   neighbouring books);
//! - **InfoNCE**: multiple-negatives ranking over the positive pairs of the batch (other
//!   positives of the same book are not counted as negatives);
//! - **adversary**: topic cross-entropy through gradient reversal (when the head has one);
//! - **distillation**: against a teacher's pair logits, as a soft-label KL (binary
//!   cross-entropy to the teacher's probabilities) or margin-MSE on positive/negative pairs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_core::{CancelToken, Event, EventSink, JsonlSink, RunDir, RunStatus, StageMode};
use lexforge_data::Split;
use lexforge_nn::bert::{BertConfig, BertModel};
use lexforge_train::{
    BoxError, CheckpointDir, LossOutput, Resume, StopReason, TrainConfig, TrainContext, TrainModel,
    train,
};
use serde::{Deserialize, Serialize};

use crate::calibration::ThresholdMetric;
use crate::cross::{Teacher, TeacherConfig, TeacherReport, train_teacher};
use crate::dataset::{
    PairBatch, PairItems, PreparedDataset, ViewItems, ViewsConfig, rechunk_split,
};
use crate::error::{MatcherError, Result};
use crate::losses::{bce_with_logits, grad_reverse, info_nce_loss, supcon_loss};
use crate::matcher::{EvalReport, MATCHER_FORMAT, Matcher, TEACHER_DIR, write_json};
use crate::model::{BiEncoder, HeadConfig};
use crate::probe::fit_logistic;

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
/// gradient through the gradient-reversal layer ([`crate::losses::grad_reverse`]).
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

/// The bi-encoder with its loss, as the training engine sees it.
#[derive(Module, Debug)]
pub struct MatcherModel {
    /// The bi-encoder.
    pub encoder: BiEncoder,
    #[module(skip)]
    loss: LossConfig,
}

impl MatcherModel {
    /// Wraps `encoder` with `loss`.
    pub fn new(encoder: BiEncoder, loss: LossConfig) -> Self {
        MatcherModel { encoder, loss }
    }

    /// The loss of `batch`, with each term's value (for tests and logs).
    ///
    /// # Errors
    /// Errors of the encoder and the loss functions.
    pub fn losses(&self, batch: &PairBatch) -> Result<(Tensor<1>, BTreeMap<&'static str, f64>)> {
        self.compute(batch, true)
    }

    /// The total loss, and each term read back to the host when `record` (training does not:
    /// a read per term per step would synchronize for nothing).
    fn compute(
        &self,
        batch: &PairBatch,
        record: bool,
    ) -> Result<(Tensor<1>, BTreeMap<&'static str, f64>)> {
        let device = self.encoder.score_affine.val().device();
        let n = batch.labels.len();
        let rows = batch.texts.len();
        let e = self.encoder.embed(&batch.texts)?;
        let dim = e.dims()[1];
        let side = |pick: fn(&(usize, usize)) -> usize| {
            let idx: Vec<i64> = batch.pairs.iter().map(|p| pick(p) as i64).collect();
            e.clone().select(
                0,
                Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device),
            )
        };
        let u = side(|p| p.0);
        let v = side(|p| p.1);
        let logits = self.encoder.pair_logits(u.clone(), v.clone());
        let mut parts = BTreeMap::new();
        let targets: Vec<f32> = batch
            .labels
            .iter()
            .map(|&l| f32::from(u8::from(l)))
            .collect();
        let mut total = bce_with_logits(
            logits.clone(),
            Tensor::from_data(TensorData::new(targets, [n, 1]), &device),
        ) * self.loss.pairwise;
        let mut note = |name, t: &Tensor<1>| {
            if !record {
                return;
            }
            if let Ok(v) = t
                .clone()
                .into_data()
                .convert::<f32>()
                .try_into_vec_as::<f32>()
            {
                parts.insert(name, f64::from(v[0]));
            }
        };
        note("pairwise", &total);
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for b in &batch.books {
            *counts.entry(*b).or_default() += 1;
        }
        if self.loss.supcon > 0.0 && counts.values().any(|&c| c >= 2) {
            let l = supcon_loss(e.clone(), &batch.books, self.loss.temperature)? * self.loss.supcon;
            note("supcon", &l);
            total = total + l;
        }
        let positives: Vec<i64> = (0..n as i64)
            .filter(|&i| batch.labels[i as usize])
            .collect();
        if self.loss.info_nce > 0.0 && positives.len() >= 2 {
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(positives.clone(), [positives.len()]),
                &device,
            );
            let groups: Vec<u32> = positives
                .iter()
                .map(|&i| batch.books[batch.pairs[i as usize].0])
                .collect();
            let l = info_nce_loss(
                u.clone().select(0, idx.clone()),
                v.clone().select(0, idx),
                self.loss.temperature,
                true,
                Some(&groups),
            )? * self.loss.info_nce;
            note("info_nce", &l);
            total = total + l;
        }
        if self.loss.adversary > 0.0
            && let Some(k) = self.encoder.config().topics
        {
            let targets = Tensor::<2, Int>::from_data(
                TensorData::new(
                    batch
                        .topics
                        .iter()
                        .map(|&t| i64::from(t))
                        .collect::<Vec<_>>(),
                    [rows, 1],
                ),
                &device,
            );
            let logits = match self.loss.adversary_mode {
                AdversaryMode::Learned => self.encoder.topic_logits(e.clone(), 1.0),
                AdversaryMode::Refit => {
                    let x = e
                        .clone()
                        .detach()
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec_as::<f32>()
                        .map_err(|err| MatcherError::InvalidInput {
                            reason: format!("cannot read embeddings back: {err:?}"),
                        })?;
                    if let Some(&bad) = batch.topics.iter().find(|&&t| t as usize >= k) {
                        return Err(MatcherError::InvalidInput {
                            reason: format!("topic {bad} outside the adversary's {k} classes"),
                        });
                    }
                    let fit = fit_logistic(&x, &batch.topics, dim, k, 100, 1e-2);
                    // W: k × dim row-major → [dim, k].
                    let mut w = vec![0.0f32; dim * k];
                    for c in 0..k {
                        for j in 0..dim {
                            w[j * k + c] = fit.weight[c * dim + j] as f32;
                        }
                    }
                    let w = Tensor::<2>::from_data(TensorData::new(w, [dim, k]), &device);
                    let b = Tensor::<2>::from_data(
                        TensorData::new(
                            fit.bias.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                            [1, k],
                        ),
                        &device,
                    );
                    Some(grad_reverse(e.clone(), 1.0).matmul(w) + b.expand([rows, k]))
                }
            };
            if let Some(logits) = logits {
                let l = lexforge_nn::fused::cross_entropy(logits, targets)? * self.loss.adversary;
                note("adversary", &l);
                total = total + l;
            }
        }
        if self.loss.distill > 0.0
            && let Some(teacher) = &batch.teacher
        {
            let l = match self.loss.distill_mode {
                DistillMode::Kl => {
                    let soft: Vec<f32> =
                        teacher.iter().map(|&t| 1.0 / (1.0 + (-t).exp())).collect();
                    Some(bce_with_logits(
                        logits.clone(),
                        Tensor::from_data(TensorData::new(soft, [n, 1]), &device),
                    ))
                }
                DistillMode::MarginMse => {
                    let pos: Vec<usize> = (0..n).filter(|&i| batch.labels[i]).collect();
                    let neg: Vec<usize> = (0..n).filter(|&i| !batch.labels[i]).collect();
                    let m = pos.len().min(neg.len());
                    (m > 0).then(|| {
                        let pick = |ids: &[usize]| {
                            Tensor::<1, Int>::from_data(
                                TensorData::new(
                                    ids[..m].iter().map(|&i| i as i64).collect::<Vec<_>>(),
                                    [m],
                                ),
                                &device,
                            )
                        };
                        let student = logits.clone().select(0, pick(&pos))
                            - logits.clone().select(0, pick(&neg));
                        let margins: Vec<f32> =
                            (0..m).map(|k| teacher[pos[k]] - teacher[neg[k]]).collect();
                        let diff = student
                            - Tensor::<2>::from_data(TensorData::new(margins, [m, 1]), &device);
                        (diff.clone() * diff).mean()
                    })
                }
            };
            if let Some(l) = l {
                let l = l * self.loss.distill;
                note("distill", &l);
                total = total + l;
            }
        }
        Ok((total, parts))
    }
}

impl TrainModel for MatcherModel {
    type Batch = PairBatch;

    fn loss(&self, batch: &PairBatch) -> std::result::Result<LossOutput, BoxError> {
        let (loss, _) = self.compute(batch, false)?;
        Ok(LossOutput {
            loss,
            targets: batch.labels.len(),
        })
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

/// What [`train_matcher`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The matcher directory.
    pub dir: PathBuf,
    /// Why training stopped.
    pub stop: StopReason,
    /// Optimizer steps run.
    pub steps: u64,
    /// Pairs per split.
    pub pairs: BTreeMap<String, usize>,
    /// Books per split.
    pub books: BTreeMap<String, usize>,
    /// The untrained base encoder on the test split (plain cosine; no calibration).
    pub baseline: Option<EvalReport>,
    /// The trained, calibrated matcher on the test split.
    pub test: Option<EvalReport>,
    /// The trained matcher on validation after calibration (its ECE before/after).
    pub validation: Option<EvalReport>,
    /// Why calibration failed, when it did (the matcher is then saved uncalibrated).
    pub calibration_error: Option<String>,
    /// The teacher trained for distillation in this run, if one was.
    pub teacher: Option<TeacherReport>,
    /// Topic recoverable from the trained embeddings: a linear probe fitted on train chunks,
    /// scored on test chunks (lower means less topic shortcut).
    pub topic_probe: Option<crate::probe::ProbeReport>,
    /// The same probe on the untrained base encoder's embeddings.
    pub topic_probe_baseline: Option<crate::probe::ProbeReport>,
    /// With distillation: the teacher against the bi-encoder on validation, and what the
    /// teacher was used for.
    #[serde(default)]
    pub teacher_gate: Option<TeacherGate>,
}

/// Whether the cross-encoder teacher earned its cost: it is used for distillation only when
/// its validation ROC-AUC beats the bi-encoder's as training starts, and kept for reranked
/// search only when it beats the trained bi-encoder's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherGate {
    /// The teacher's validation ROC-AUC.
    pub teacher_validation_roc_auc: Option<f64>,
    /// The bi-encoder's validation ROC-AUC before training.
    pub untrained_validation_roc_auc: Option<f64>,
    /// The trained bi-encoder's validation ROC-AUC.
    pub trained_validation_roc_auc: Option<f64>,
    /// Whether the student was distilled from the teacher.
    pub distilled: bool,
    /// Whether the teacher was kept (in `teacher/`) for reranked search.
    pub rerank: bool,
}

/// Whether `a` is a strictly higher ROC-AUC than `b` (unknown values are not better).
fn better(a: Option<f64>, b: Option<f64>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a > b)
}

/// Trains a matcher on the dataset at `dataset_dir` into `out` (created; resumed from its
/// last checkpoint when `out/checkpoints` has one), then saves it, calibrates it on
/// validation and evaluates it on test (`eval/metrics.json`).
///
/// `device` is the plain device; training runs on its autodiff form.
///
/// # Errors
/// Bad configuration ([`MatcherError::InvalidParameter`]), an unusable dataset
/// ([`MatcherError::Dataset`]), training failures ([`MatcherError::Train`]), I/O.
pub fn train_matcher(
    config: &MatcherTrainConfig,
    dataset_dir: &Path,
    out: &Path,
    device: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    config.validate()?;
    let dataset = PreparedDataset::open(dataset_dir)?;
    let mut head = config.head.clone();
    if head.topics == Some(0) {
        head.topics = Some(dataset.topics());
    }
    let plain = device.clone().without_autodiff();
    let base = Matcher::from_base(
        &config.base_model,
        &head,
        Some(config.max_seq_length),
        &plain,
    )?;
    let mut base = base;
    // The style channel's IDF comes from the training books' chunks.
    if let Some(channel) = base.model_mut().style_channel.as_mut() {
        let texts: Vec<&str> = dataset
            .chunks(Split::Train)
            .map(|c| c.text.as_str())
            .collect();
        let mut hasher = channel.hasher().clone();
        hasher.fit_idf(&texts);
        channel.set_idf(hasher.idf().to_vec())?;
    }
    let body_frozen =
        config.random_init.is_none() && config.frozen_layers > base.model().bert.layers.len();
    let bs = config.eval_batch_size;
    let featurize = |texts: &[&str]| base.featurize(texts, body_frozen, bs);
    let mut book_index = BTreeMap::new();
    let train_items: Box<dyn TrainItems> = match &config.views {
        Some(v) => Box::new(ViewItems::new(
            &dataset,
            &match &v.books {
                Some(books) => {
                    rechunk_split(&dataset, Split::Train, books, v.chunks_per_book, cancel)?
                }
                None => dataset.chunks(Split::Train).cloned().collect(),
            },
            v,
            config.train.seed,
            &featurize,
            &mut book_index,
        )?),
        None => Box::new(PairItems::new(
            dataset.pairs(Split::Train),
            &featurize,
            &mut book_index,
        )?),
    };
    let valid_items = PairItems::new(
        dataset.pairs(Split::Validation),
        &featurize,
        &mut book_index,
    )?;
    let ad = if config.gradient_checkpointing {
        plain.clone().autodiff().gradient_checkpointing()
    } else {
        plain.clone().autodiff()
    };
    // Parameter init (random body, heads) from the run's seed.
    lexforge_core::Seed(config.train.seed).apply_to(&ad);
    let body = match &config.random_init {
        Some(c) => BertModel::new(c, &ad)?,
        None => base.model().bert.clone().fork(&ad),
    };
    let encoder =
        BiEncoder::new(body, base.model().pooling(), &head, &ad)?.with_frozen(config.frozen_layers);

    let mut run = if out.join(lexforge_core::MANIFEST_FILE).is_file() {
        RunDir::open(out)?
    } else {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
        let name = out.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            MatcherError::InvalidParameter {
                parameter: "out",
                reason: format!("{} has no usable directory name", out.display()),
            }
        })?;
        RunDir::create(
            parent.unwrap_or(Path::new(".")),
            name,
            MATCHER_KIND,
            StageMode::InPlace,
        )?
    };
    {
        let m = run.manifest_mut();
        // The outputs are rewritten in place at the end: until all of them are written again,
        // the manifest must not vouch for the old ones (a failure half-way, such as a full
        // disk, would leave files that disagree with it, and the directory could neither load
        // nor resume), and the run is not finished.
        m.artifacts.clear();
        m.status = RunStatus::Running;
        m.config = serde_json::json!({
            "format": MATCHER_FORMAT,
            "train": config,
            "dataset": dataset_dir,
            "dataset_encoder": dataset.encoder_id,
        });
        m.seed = Some(config.train.seed);
        m.device = Some(format!("{device:?}"));
        m.precision = Some(lexforge_core::Precision::of(device).to_string());
    }
    run.save_manifest()?;
    let log = JsonlSink::open(&out.join("events.jsonl"))?;
    let fan = lexforge_core::Tee(&log, events);

    // Distillation: the teacher's logits for every training pair (training it first when the
    // matcher directory has none yet).
    let mut teacher_report = None;
    let mut gate = None;
    let mut loss = config.loss.clone();
    let train_items = if config.loss.distill > 0.0 {
        let teacher_dir = out.join(TEACHER_DIR);
        if !teacher_dir.join("head").join("config.json").is_file() {
            let r = train_teacher(
                &config.teacher,
                &config.base_model,
                &dataset,
                &teacher_dir,
                device,
                &fan,
                cancel,
            )?;
            if r.stop == StopReason::Cancelled {
                return Err(MatcherError::Core(lexforge_core::Error::Cancelled));
            }
            teacher_report = Some(r);
        }
        let teacher = Teacher::load(&teacher_dir, &plain)?;
        // The teacher must beat the bi-encoder on validation before distillation uses it:
        // here the bi-encoder as training starts; after training, the trained one (reranking).
        let valid: Vec<(&str, &str)> = dataset
            .pairs(Split::Validation)
            .iter()
            .map(|p| (p.text1.as_str(), p.text2.as_str()))
            .collect();
        let labels: Vec<bool> = dataset
            .pairs(Split::Validation)
            .iter()
            .map(|p| p.label == 1)
            .collect();
        let teacher_auc =
            crate::metrics::roc_auc(&teacher.logits(&valid, config.eval_batch_size)?, &labels);
        let (start_logits, _) = base.raw_scores(&valid, config.eval_batch_size)?;
        let start_auc = crate::metrics::roc_auc(&start_logits, &labels);
        let distill = better(teacher_auc, start_auc);
        gate = Some(TeacherGate {
            teacher_validation_roc_auc: teacher_auc,
            untrained_validation_roc_auc: start_auc,
            trained_validation_roc_auc: None,
            distilled: distill,
            rerank: false,
        });
        if distill {
            let pairs: Vec<(&str, &str)> = dataset
                .pairs(Split::Train)
                .iter()
                .map(|p| (p.text1.as_str(), p.text2.as_str()))
                .collect();
            let logits = teacher.logits(&pairs, config.eval_batch_size)?;
            let pairs = PairItems::new(dataset.pairs(Split::Train), &featurize, &mut book_index)?;
            Box::new(pairs.with_teacher(logits.into_iter().map(|l| l as f32).collect())?)
        } else {
            tracing::warn!(
                teacher = ?teacher_auc,
                bi_encoder = ?start_auc,
                "the teacher does not beat the bi-encoder on validation; training without distillation"
            );
            loss.distill = 0.0;
            train_items
        }
    } else {
        train_items
    };
    let model = MatcherModel::new(encoder, loss);
    let checkpoints = CheckpointDir::new(out.join("checkpoints"), config.train.keep_checkpoints)?;
    let run_id = out.file_name().map_or_else(
        || "matcher".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let ctx = TrainContext {
        run_id: &run_id,
        kind: "matcher",
        device: &ad,
        replicas: &[],
        train: train_items.as_source(),
        valid: &valid_items,
        checkpoints: &checkpoints,
        events: &fan,
        cancel,
    };
    let outcome = train(&config.train, &ctx, model, Resume::Latest)?;
    let mut report = TrainReport {
        dir: out.to_path_buf(),
        stop: outcome.stop,
        steps: outcome.state.step,
        pairs: Split::ALL
            .iter()
            .map(|&s| (s.name().to_owned(), dataset.pairs(s).len()))
            .collect(),
        books: Split::ALL
            .iter()
            .map(|&s| {
                (
                    s.name().to_owned(),
                    dataset.books.iter().filter(|b| b.split == s).count(),
                )
            })
            .collect(),
        baseline: None,
        test: None,
        validation: None,
        calibration_error: None,
        teacher: teacher_report,
        topic_probe: None,
        topic_probe_baseline: None,
        teacher_gate: None,
    };
    if outcome.stop == StopReason::Cancelled {
        return Ok(report);
    }
    let trained = if checkpoints.dir("best").exists() {
        checkpoints.load_weights("best", outcome.model)?
    } else {
        outcome.model
    };
    let trained = trained.valid().encoder.with_frozen(0);
    let bert_config = config
        .random_init
        .clone()
        .unwrap_or_else(|| base.bert_config().clone());
    let matcher = base.with_model(trained, bert_config);
    matcher.save(out)?;
    let mut matcher = Matcher::load_unfinished(out, &plain)?;
    let bs = config.eval_batch_size;
    if let Err(e) = matcher.calibrate(&dataset, Split::Validation, config.threshold_metric, bs) {
        // An unusable model (scores ranking pairs backwards) is still saved and evaluated; the
        // report says why it has no calibration.
        tracing::warn!(error = %e, "calibration failed; the matcher is saved uncalibrated");
        report.calibration_error = Some(e.to_string());
    }
    report.validation = Some(matcher.evaluate(&dataset, Split::Validation, bs)?);
    if let Some(g) = gate.as_mut() {
        g.trained_validation_roc_auc = report.validation.as_ref().and_then(|v| v.roc_auc);
        g.rerank = better(g.teacher_validation_roc_auc, g.trained_validation_roc_auc);
        if !g.rerank {
            // A teacher that does not beat the trained bi-encoder would make reranked search
            // worse: the matcher is saved without it.
            tracing::warn!(
                teacher = ?g.teacher_validation_roc_auc,
                bi_encoder = ?g.trained_validation_roc_auc,
                "the teacher does not beat the trained bi-encoder on validation; not kept for reranking"
            );
            let dir = out.join(TEACHER_DIR);
            std::fs::remove_dir_all(&dir)
                .map_err(|e| lexforge_core::Error::io("remove teacher directory", &dir, e))?;
            matcher = Matcher::load_unfinished(out, &plain)?;
        }
    }
    report.teacher_gate = gate;
    if !dataset.pairs(Split::Test).is_empty() {
        let test = matcher.evaluate(&dataset, Split::Test, bs)?;
        let untrained = Matcher::from_base(
            &config.base_model,
            &HeadConfig {
                projection_dim: None,
                style_features: false,
                pair_features: false,
                topics: None,
                ..HeadConfig::default()
            },
            Some(config.max_seq_length),
            &plain,
        )?;
        report.baseline = Some(untrained.evaluate(&dataset, Split::Test, bs)?);
        report.test = Some(test);
        if dataset.topics() >= 2 {
            report.topic_probe =
                Some(matcher.topic_probe(&dataset, Split::Train, Split::Test, PROBE_ROWS, bs)?);
            report.topic_probe_baseline =
                Some(untrained.topic_probe(&dataset, Split::Train, Split::Test, PROBE_ROWS, bs)?);
        }
    }
    write_json(&out.join("eval").join("metrics.json"), &report)?;
    for rel in matcher_files(out)? {
        run.record_artifact(&rel)?;
    }
    let mut metrics = BTreeMap::new();
    metrics.insert("steps".to_owned(), report.steps as f64);
    for (name, r) in [
        ("baseline_test", &report.baseline),
        ("test", &report.test),
        ("validation", &report.validation),
    ] {
        if let Some(r) = r {
            if let Some(auc) = r.roc_auc {
                metrics.insert(format!("{name}.roc_auc"), auc);
            }
            metrics.insert(format!("{name}.accuracy"), r.classification.accuracy);
            metrics.insert(format!("{name}.ece_before"), r.ece_before);
            if let Some(e) = r.ece_after {
                metrics.insert(format!("{name}.ece_after"), e);
            }
            if let Some(m) = &r.retrieval {
                metrics.insert(format!("{name}.recall_at_1"), m.recall_at_1);
                metrics.insert(format!("{name}.mrr"), m.mrr);
            }
        }
    }
    if let (Some(p), Some(b)) = (&report.topic_probe, &report.topic_probe_baseline) {
        metrics.insert("test.topic_probe_accuracy".to_owned(), p.accuracy);
        metrics.insert("baseline_test.topic_probe_accuracy".to_owned(), b.accuracy);
        metrics.insert("test.topic_majority".to_owned(), p.majority);
    }
    run.manifest_mut().metrics = metrics.clone();
    run.finish(RunStatus::Completed)?;
    fan.send(Event::Completed { metrics })?;
    Ok(report)
}

/// A source of training batches: prepared pairs or book-balanced views.
trait TrainItems {
    fn as_source(&self) -> &dyn lexforge_train::BatchSource<PairBatch>;
}

impl<T: lexforge_train::BatchSource<PairBatch>> TrainItems for T {
    fn as_source(&self) -> &dyn lexforge_train::BatchSource<PairBatch> {
        self
    }
}

/// Train chunks the topic probe is fitted on (evenly spaced).
const PROBE_ROWS: usize = 400;

/// Manifest `kind` of a matcher directory.
pub const MATCHER_KIND: &str = "matcher";

/// The files of a saved matcher under `dir` (relative, `/`-separated): the encoder and head
/// directories, calibrations and the evaluation report; not checkpoints, events or the
/// manifest.
pub(crate) fn matcher_files(dir: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| lexforge_core::Error::io("read directory", dir, e))?;
        let mut names: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if path.is_dir() {
                walk(&path, &rel, out)?;
            } else if !name.starts_with('.') {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for sub in ["encoder", "head", "eval", "teacher/encoder", "teacher/head"] {
        let d = dir.join(sub);
        if d.is_dir() {
            walk(&d, sub, &mut out)?;
        }
    }
    for f in [
        crate::matcher::CALIBRATION_FILE,
        crate::matcher::STYLE_CALIBRATION_FILE,
    ] {
        if dir.join(f).is_file() {
            out.push(f.to_owned());
        }
    }
    Ok(out)
}
