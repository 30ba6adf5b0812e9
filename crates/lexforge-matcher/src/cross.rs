//! The cross-encoder teacher: both passages in one sequence through a BERT-family body; the
//! states of each passage's tokens are mean-pooled separately (they have attended to each
//! other), and the logit is `scale · cos(a, b) + bias + w · [|a − b|, a ∘ b]`. Slower than the bi-encoder (one
//! forward pass per pair) and usually more accurate; the bi-encoder distills from it and
//! search can rerank with it.

use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use lexforge_core::{CancelToken, EventSink, Seed};
use lexforge_data::Split;
use lexforge_nn::bert::{BertConfig, BertModel};
use lexforge_nn::encoder::{BertSentenceEncoder, EncoderOptions};
use lexforge_nn::hf::{self, HfReader, HfWriter, WeightLayout};
use lexforge_train::{
    BoxError, CheckpointDir, LossOutput, Resume, StopReason, TrainConfig, TrainContext, TrainModel,
    train,
};
use serde::{Deserialize, Serialize};

use crate::artifacts::{save_encoder_dir, write_json};
use crate::dataset::{PairBatch, PairItems, PreparedDataset};
use crate::error::{MatcherError, Result};
use crate::losses::bce_with_logits;

/// Layout version of a teacher directory.
pub(crate) const TEACHER_FORMAT: u32 = 2;

/// Joins two token sequences (each with its special tokens, as the tokenizer returns them)
/// into one of at most `max_len` tokens: all of `a`, then `b` without its first (class) token;
/// when too long, each side is cut to its share but keeps its last (separator) token. Returns
/// the joined tokens and the number of leading tokens that come from `a`.
///
/// # Panics
/// Never; empty sides give what is left.
pub(crate) fn join_pair_split(a: &[u32], b: &[u32], max_len: usize) -> (Vec<u32>, usize) {
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
        return (v, a.len());
    }
    let half = max_len / 2;
    let a_budget = if b.len() < half {
        max_len - b.len()
    } else {
        half.max(max_len - b.len().min(max_len))
    };
    let mut v = cut(a, a_budget.min(a.len()));
    let split = v.len();
    let rest = max_len - v.len();
    v.extend(cut(b, rest));
    (v, split)
}

/// The cross-encoder module.
#[derive(Module, Debug)]
pub struct CrossEncoder {
    /// The body.
    pub bert: BertModel,
    /// `[2 · hidden] → 1` on `[|a − b|, a ∘ b]`, zero-initialized.
    pub classifier: Linear,
    /// `[scale, bias]` of the cosine term (the bias is set from data before training).
    pub score_affine: Param<Tensor<1>>,
    #[module(skip)]
    frozen: usize,
    #[module(skip)]
    max_len: usize,
}

impl CrossEncoder {
    /// A cross-encoder on `bert` reading at most `max_len` tokens per pair: logit
    /// `20 · cos(a, b)` (bias 0, classifier zero) until [`CrossEncoder::with_bias`] or training.
    pub fn new(bert: BertModel, max_len: usize, device: &Device) -> Self {
        let hidden = bert.hidden_size();
        let mut classifier = LinearConfig::new(2 * hidden, 1).init(device);
        classifier.weight = Param::from_tensor(Tensor::zeros([2 * hidden, 1], device));
        classifier.bias = Some(Param::from_tensor(Tensor::zeros([1], device)));
        let max_len = max_len.min(bert.max_tokens());
        CrossEncoder {
            bert,
            classifier,
            score_affine: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![20.0f32, 0.0], [2]),
                device,
            )),
            frozen: 0,
            max_len,
        }
    }

    /// Sets the bias of the cosine term (so the untrained logit is centred on the data).
    pub fn with_bias(mut self, bias: f32) -> Self {
        let device = self.score_affine.val().device();
        let scale = self
            .score_affine
            .val()
            .into_data()
            .convert::<f32>()
            .try_into_vec_as::<f32>()
            .map_or(20.0, |v| v[0]);
        self.score_affine = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![scale, bias], [2]),
            &device,
        ));
        self
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
        let (joined, splits): (Vec<Vec<u32>>, Vec<usize>) = a
            .iter()
            .zip(b)
            .map(|(x, y)| join_pair_split(x, y, self.max_len))
            .unzip();
        let (hidden, lengths) = self.bert.forward_ids(&joined, self.frozen)?;
        let t = hidden.dims()[1];
        let n = joined.len();
        let d = hidden.dims()[2];
        // Per-row segment masks [n, t, 1] and inverse counts [n, 1].
        let mut ma = vec![0.0f32; n * t];
        let mut mb = vec![0.0f32; n * t];
        let mut ca = vec![0.0f32; n];
        let mut cb = vec![0.0f32; n];
        for i in 0..n {
            let split = splits[i].clamp(1, lengths[i]);
            for j in 0..lengths[i] {
                if j < split {
                    ma[i * t + j] = 1.0;
                } else {
                    mb[i * t + j] = 1.0;
                }
            }
            ca[i] = 1.0 / split as f32;
            cb[i] = 1.0 / (lengths[i] - split).max(1) as f32;
        }
        let mask = |m: Vec<f32>| Tensor::<3>::from_data(TensorData::new(m, [n, t, 1]), device);
        let count = |c: Vec<f32>| Tensor::<2>::from_data(TensorData::new(c, [n, 1]), device);
        let seg_a = (hidden.clone() * mask(ma)).sum_dim(1).reshape([n, d]) * count(ca);
        let seg_b = (hidden * mask(mb)).sum_dim(1).reshape([n, d]) * count(cb);
        let norm = |x: Tensor<2>| (x.clone() * x).sum_dim(1).sqrt().clamp_min(1e-12);
        let cos = (seg_a.clone() * seg_b.clone()).sum_dim(1)
            / (norm(seg_a.clone()) * norm(seg_b.clone()));
        let affine = self.score_affine.val();
        let scale = affine.clone().slice(0..1).reshape([1, 1]).expand([n, 1]);
        let bias = affine.slice(1..2).reshape([1, 1]).expand([n, 1]);
        let features = Tensor::cat(
            vec![(seg_a.clone() - seg_b.clone()).abs(), seg_a * seg_b],
            1,
        );
        Ok(cos * scale + bias + self.classifier.forward(features))
    }
}

/// The cross-encoder with its loss, for the training engine.
#[derive(Module, Debug)]
pub(crate) struct TeacherModel {
    /// The cross-encoder.
    pub(crate) cross: CrossEncoder,
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
        let r = HfReader::new(&weights, &st, "", device);
        r.linear(
            &mut model.classifier,
            "classifier",
            WeightLayout::InOut,
            2 * hidden,
            1,
        )?;
        model.score_affine = Param::from_tensor(r.get("score_affine", [2])?);
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
                .try_into_vec_as::<f32>()
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
    let train_items = PairItems::tokenized(dataset.pairs(Split::Train), &tokenize, &mut index)?;
    let valid_items =
        PairItems::tokenized(dataset.pairs(Split::Validation), &tokenize, &mut index)?;
    let ad = if config.gradient_checkpointing {
        plain.clone().autodiff().gradient_checkpointing()
    } else {
        plain.clone().autodiff()
    };
    Seed(config.train.seed).apply_to(&ad);
    // Centre the untrained logit on the data: bias = −scale · median cosine of (up to 128
    // evenly spaced) training pairs, computed without gradients.
    let probe = CrossEncoder::new(tokenizer.model().clone(), config.max_seq_length, &plain);
    let n = lexforge_train::BatchSource::len(&train_items);
    let sample: Vec<usize> = (0..n).step_by(n.div_ceil(128).max(1)).collect();
    let mut cosines = Vec::with_capacity(sample.len());
    for chunk in sample.chunks(16) {
        let batch = train_items.make_batch(chunk);
        let (a, b) = batch.texts.ids.split_at(chunk.len());
        let logits = probe.logits(a, b, &plain)?;
        let v = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec_as::<f32>()
            .map_err(|e| MatcherError::InvalidInput {
                reason: format!("cannot read logits back: {e:?}"),
            })?;
        cosines.extend(v.into_iter().map(|l| l / 20.0));
    }
    cosines.sort_by(f32::total_cmp);
    let median = cosines.get(cosines.len() / 2).copied().unwrap_or(0.5);
    let cross = CrossEncoder::new(
        tokenizer.model().clone().fork(&ad),
        config.max_seq_length,
        &ad,
    )
    .with_bias(-20.0 * median)
    .with_frozen(config.frozen_layers);
    std::fs::create_dir_all(dir)
        .map_err(|e| lexforge_core::Error::io("create directory", dir, e))?;
    let checkpoints = CheckpointDir::new(dir.join("checkpoints"), config.train.keep_checkpoints)?;
    let ctx = TrainContext {
        run_id: "teacher",
        kind: "teacher",
        device: &ad,
        replicas: &[],
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
    w.put("score_affine", cross.score_affine.val())?;
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
    write_json(&dir.join("report.json"), &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The joined tokens of [`join_pair_split`].
    fn join_pair(a: &[u32], b: &[u32], max_len: usize) -> Vec<u32> {
        join_pair_split(a, b, max_len).0
    }

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
