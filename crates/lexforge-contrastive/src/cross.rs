//! The cross-encoder teacher: both passages in one sequence through a BERT-family body, mean
//! pooled, then a linear classifier → a same-book logit. Slower than the bi-encoder (one
//! forward pass per pair) and usually more accurate; the bi-encoder distills from it and
//! search can rerank with it.

use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_core::{CancelToken, EventSink, Seed};
use lexforge_data::Split;
use lexforge_nn::bert::{BertConfig, BertModel};
use lexforge_nn::encoder::{BertSentenceEncoder, EncoderOptions};
use lexforge_nn::hf::{self, HfReader, HfWriter, WeightLayout};
use lexforge_nn::pooling::{Pooling, pool};
use lexforge_train::{
    BoxError, CheckpointDir, LossOutput, Resume, StopReason, TrainConfig, TrainContext, TrainModel,
    train,
};
use serde::{Deserialize, Serialize};

use crate::dataset::{PairBatch, PairItems, PreparedDataset};
use crate::error::{MatcherError, Result};
use crate::losses::bce_with_logits;
use crate::matcher::save_encoder_dir;

/// Layout version of a teacher directory.
pub const TEACHER_FORMAT: u32 = 1;

/// Joins two token sequences (each with its special tokens, as the tokenizer returns them)
/// into one of at most `max_len` tokens: all of `a`, then `b` without its first (class) token;
/// when too long, each side is cut to its share but keeps its last (separator) token.
///
/// # Panics
/// Never; empty sides give what is left.
pub fn join_pair(a: &[u32], b: &[u32], max_len: usize) -> Vec<u32> {
    let b = if b.len() > 1 { &b[1..] } else { b };
    let cut = |s: &[u32], budget: usize| -> Vec<u32> {
        if s.len() <= budget {
            s.to_vec()
        } else if budget == 0 {
            Vec::new()
        } else {
            let mut v = s[..budget - 1].to_vec();
            v.extend(s.last());
            v
        }
    };
    if a.len() + b.len() <= max_len {
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        return v;
    }
    let half = max_len / 2;
    let a_budget = if b.len() < half {
        max_len - b.len()
    } else {
        half.max(max_len - b.len().min(max_len))
    };
    let mut v = cut(a, a_budget.min(a.len()));
    let rest = max_len - v.len();
    v.extend(cut(b, rest));
    v
}

/// The cross-encoder module.
#[derive(Module, Debug)]
pub struct CrossEncoder {
    /// The body.
    pub bert: BertModel,
    /// `hidden → 1`.
    pub classifier: Linear,
    #[module(skip)]
    frozen: usize,
    #[module(skip)]
    max_len: usize,
}

impl CrossEncoder {
    /// A cross-encoder on `bert` with a zero-initialized classifier (logit 0 = p 0.5 at the
    /// start) reading at most `max_len` tokens per pair.
    pub fn new(bert: BertModel, max_len: usize, device: &Device) -> Self {
        let hidden = bert.hidden_size();
        let mut classifier = LinearConfig::new(hidden, 1).init(device);
        classifier.weight = Param::from_tensor(Tensor::zeros([hidden, 1], device));
        classifier.bias = Some(Param::from_tensor(Tensor::zeros([1], device)));
        let max_len = max_len.min(bert.max_tokens());
        CrossEncoder {
            bert,
            classifier,
            frozen: 0,
            max_len,
        }
    }

    /// Keeps the bottom `frozen` stages out of the gradient.
    pub fn with_frozen(mut self, frozen: usize) -> Self {
        self.frozen = frozen;
        self
    }

    /// Longest joined sequence.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Same-book logits of token-sequence pairs.
    ///
    /// # Shapes
    /// `a`, `b`: `n` sequences each → `[n, 1]`.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for mismatched or empty inputs; body errors.
    pub fn logits(&self, a: &[Vec<u32>], b: &[Vec<u32>], device: &Device) -> Result<Tensor<2>> {
        if a.len() != b.len() || a.is_empty() {
            return Err(MatcherError::InvalidInput {
                reason: format!(
                    "{} and {} sequences; need equal, non-zero counts",
                    a.len(),
                    b.len()
                ),
            });
        }
        let joined: Vec<Vec<u32>> = a
            .iter()
            .zip(b)
            .map(|(x, y)| join_pair(x, y, self.max_len))
            .collect();
        let lengths: Vec<usize> = joined.iter().map(Vec::len).collect();
        if lengths.contains(&0) {
            return Err(MatcherError::InvalidInput {
                reason: "an empty token sequence".into(),
            });
        }
        let t = lengths.iter().copied().max().unwrap_or(1);
        let pad = self.bert.pad_token_id() as i64;
        let flat: Vec<i64> = joined
            .iter()
            .flat_map(|row| {
                row.iter()
                    .map(|&i| i64::from(i))
                    .chain(std::iter::repeat_n(pad, t - row.len()))
            })
            .collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(flat, [joined.len(), t]), device);
        let hidden = self.bert.forward_frozen(input, &lengths, self.frozen)?;
        Ok(self
            .classifier
            .forward(pool(hidden, &lengths, Pooling::Mean)))
    }
}

/// The cross-encoder with its loss, for the training engine.
#[derive(Module, Debug)]
pub struct TeacherModel {
    /// The cross-encoder.
    pub cross: CrossEncoder,
}

impl TrainModel for TeacherModel {
    type Batch = PairBatch;

    fn loss(&self, batch: &PairBatch) -> std::result::Result<LossOutput, BoxError> {
        let n = batch.labels.len();
        let device = self.cross.classifier.weight.val().device();
        let (a, b) = batch.texts.ids.split_at(n);
        let logits = self.cross.logits(a, b, &device)?;
        let targets: Vec<f32> = batch
            .labels
            .iter()
            .map(|&l| f32::from(u8::from(l)))
            .collect();
        let loss = bce_with_logits(
            logits,
            Tensor::from_data(TensorData::new(targets, [n, 1]), &device),
        );
        Ok(LossOutput { loss, targets: n })
    }
}

/// How the teacher is trained (`teacher` table of the matcher configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeacherConfig {
    /// Base encoder directory (default: the matcher's `base_model`).
    pub base_model: Option<PathBuf>,
    /// Tokens per joined pair.
    pub max_seq_length: usize,
    /// Bottom stages of the body kept frozen.
    pub frozen_layers: usize,
    /// Recompute memory-bound activations in backward (large encoders).
    pub gradient_checkpointing: bool,
    /// The optimizer loop.
    pub train: TrainConfig,
}

impl Default for TeacherConfig {
    fn default() -> Self {
        TeacherConfig {
            base_model: None,
            max_seq_length: 256,
            frozen_layers: 0,
            gradient_checkpointing: false,
            train: TrainConfig {
                max_steps: 100,
                batch_size: 8,
                lr: 3e-5,
                min_lr: 3e-6,
                warmup_steps: 10,
                eval_every: 50,
                eval_batches: Some(8),
                checkpoint_every: 50,
                ..TrainConfig::default()
            },
        }
    }
}

/// `teacher/head/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeacherFile {
    format: u32,
    max_seq_length: usize,
    base_model_id: String,
}

/// A trained cross-encoder, loaded for inference.
pub struct Teacher {
    tokenizer: BertSentenceEncoder,
    model: CrossEncoder,
    device: Device,
}

impl std::fmt::Debug for Teacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teacher")
            .field("max_len", &self.model.max_len)
            .field("device", &self.device)
            .finish()
    }
}

impl Teacher {
    /// Loads a teacher directory (`encoder/` + `head/`).
    ///
    /// # Errors
    /// [`MatcherError::Artifact`] for a missing or foreign head; encoder errors naming files.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let head_path = dir.join("head").join(hf::CONFIG_FILE);
        if !head_path.is_file() {
            return Err(MatcherError::Artifact {
                path: head_path,
                reason: "missing; not a teacher directory".into(),
            });
        }
        let file: TeacherFile = hf::read_json(&head_path, "read teacher config")?;
        if file.format != TEACHER_FORMAT {
            return Err(MatcherError::Artifact {
                path: head_path,
                reason: format!(
                    "teacher format {}, this build reads {TEACHER_FORMAT}",
                    file.format
                ),
            });
        }
        let tokenizer = BertSentenceEncoder::load(
            dir.join("encoder"),
            device,
            &EncoderOptions {
                max_seq_length: Some(file.max_seq_length),
                ..EncoderOptions::default()
            },
        )?;
        let mut model = CrossEncoder::new(tokenizer.model().clone(), file.max_seq_length, device);
        let weights = dir.join("head").join(hf::WEIGHTS_FILE);
        let bytes = std::fs::read(&weights)
            .map_err(|e| lexforge_core::Error::io("read teacher head", &weights, e))?;
        let st = hf::parse(&weights, &bytes)?;
        let hidden = model.bert.hidden_size();
        HfReader::new(&weights, &st, "", device).linear(
            &mut model.classifier,
            "classifier",
            WeightLayout::InOut,
            hidden,
            1,
        )?;
        Ok(Teacher {
            tokenizer,
            model,
            device: device.clone(),
        })
    }

    /// Same-book logits of text pairs, `batch_size` pairs per forward pass.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for an empty text or `batch_size == 0`.
    pub fn logits(&self, pairs: &[(&str, &str)], batch_size: usize) -> Result<Vec<f64>> {
        if batch_size == 0 {
            return Err(MatcherError::InvalidParameter {
                parameter: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        let a: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        let b: Vec<&str> = pairs.iter().map(|p| p.1).collect();
        let ta = self.tokenizer.tokenize(&a)?;
        let tb = self.tokenizer.tokenize(&b)?;
        let mut out = Vec::with_capacity(pairs.len());
        for start in (0..pairs.len()).step_by(batch_size) {
            let end = (start + batch_size).min(pairs.len());
            let l = self
                .model
                .logits(&ta[start..end], &tb[start..end], &self.device)?;
            let v = l
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| MatcherError::InvalidInput {
                    reason: format!("cannot read logits back: {e:?}"),
                })?;
            out.extend(v.into_iter().map(f64::from));
        }
        Ok(out)
    }
}

/// What [`train_teacher`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeacherReport {
    /// Why training stopped.
    pub stop: StopReason,
    /// Optimizer steps.
    pub steps: u64,
    /// ROC-AUC of the teacher on the validation pairs.
    pub validation_roc_auc: Option<f64>,
}

/// Trains a cross-encoder on the dataset's train pairs into `dir` (resuming from
/// `dir/checkpoints`), saves it as `dir/encoder` + `dir/head`.
///
/// # Errors
/// Configuration, dataset, training and I/O errors.
pub fn train_teacher(
    config: &TeacherConfig,
    base_model: &Path,
    dataset: &PreparedDataset,
    dir: &Path,
    device: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<TeacherReport> {
    config.train.validate()?;
    let plain = device.clone().without_autodiff();
    let base = config.base_model.as_deref().unwrap_or(base_model);
    let tokenizer = BertSentenceEncoder::load(
        base,
        &plain,
        &EncoderOptions {
            max_seq_length: Some(config.max_seq_length),
            ..EncoderOptions::default()
        },
    )?;
    let tokenize = |texts: &[&str]| Ok(tokenizer.tokenize(texts)?);
    let mut index = std::collections::BTreeMap::new();
    let train_items = PairItems::new(dataset.pairs(Split::Train), &tokenize, false, &mut index)?;
    let valid_items = PairItems::new(
        dataset.pairs(Split::Validation),
        &tokenize,
        false,
        &mut index,
    )?;
    let ad = if config.gradient_checkpointing {
        plain.clone().autodiff().gradient_checkpointing()
    } else {
        plain.clone().autodiff()
    };
    Seed(config.train.seed).apply_to(&ad);
    let cross = CrossEncoder::new(
        tokenizer.model().clone().fork(&ad),
        config.max_seq_length,
        &ad,
    )
    .with_frozen(config.frozen_layers);
    std::fs::create_dir_all(dir)
        .map_err(|e| lexforge_core::Error::io("create directory", dir, e))?;
    let checkpoints = CheckpointDir::new(dir.join("checkpoints"), config.train.keep_checkpoints)?;
    let ctx = TrainContext {
        run_id: "teacher",
        kind: "teacher",
        device: &ad,
        train: &train_items,
        valid: &valid_items,
        checkpoints: &checkpoints,
        events,
        cancel,
    };
    let outcome = train(&config.train, &ctx, TeacherModel { cross }, Resume::Latest)?;
    let mut report = TeacherReport {
        stop: outcome.stop,
        steps: outcome.state.step,
        validation_roc_auc: None,
    };
    if outcome.stop == StopReason::Cancelled {
        return Ok(report);
    }
    let best = if checkpoints.dir("best").exists() {
        checkpoints.load_weights("best", outcome.model)?
    } else {
        outcome.model
    };
    let cross = best.valid().cross.with_frozen(0);
    let bert_config: BertConfig = tokenizer.config().clone();
    save_encoder_dir(&cross.bert, &bert_config, base, &dir.join("encoder"))?;
    let mut w = HfWriter::new();
    w.linear("classifier", &cross.classifier, WeightLayout::InOut)?;
    w.write(
        &dir.join("head"),
        &TeacherFile {
            format: TEACHER_FORMAT,
            max_seq_length: config.max_seq_length,
            base_model_id: lexforge_nn::encoder::SentenceEncoder::model_id(&tokenizer).to_owned(),
        },
    )?;
    let teacher = Teacher::load(dir, &plain)?;
    let pairs = dataset.pairs(Split::Validation);
    let texts: Vec<(&str, &str)> = pairs
        .iter()
        .map(|p| (p.text1.as_str(), p.text2.as_str()))
        .collect();
    let labels: Vec<bool> = pairs.iter().map(|p| p.label == 1).collect();
    let logits = teacher.logits(&texts, 16)?;
    report.validation_roc_auc = crate::metrics::roc_auc(&logits, &labels);
    crate::matcher::write_json(&dir.join("report.json"), &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_pairs_keep_both_separators_and_fit() {
        // [CLS]=1 a.. [SEP]=2 ; [CLS] b.. [SEP]
        let a = vec![1, 10, 11, 12, 2];
        let b = vec![1, 20, 21, 2];
        assert_eq!(join_pair(&a, &b, 64), vec![1, 10, 11, 12, 2, 20, 21, 2]);
        let long_a: Vec<u32> = std::iter::once(1)
            .chain(100..200)
            .chain(std::iter::once(2))
            .collect();
        let long_b: Vec<u32> = std::iter::once(1)
            .chain(300..400)
            .chain(std::iter::once(2))
            .collect();
        let j = join_pair(&long_a, &long_b, 32);
        assert_eq!(j.len(), 32);
        assert_eq!(j[0], 1);
        assert_eq!(j.iter().filter(|&&t| t == 2).count(), 2, "{j:?}");
        assert_eq!(*j.last().unwrap(), 2);
        // A short second side leaves the rest of the budget to the first.
        let j = join_pair(&long_a, &b, 32);
        assert_eq!(j.len(), 32);
        assert_eq!(&j[29..], &[20, 21, 2]);
    }
}
