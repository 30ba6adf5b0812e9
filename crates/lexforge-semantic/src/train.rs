//! Training a semantic encoder on a corpus set: embeddings, augmented views, losses, the
//! engine loop, and the evaluation written beside the model.
//!
//! Losses (each averaged over the batch, weights in [`SemanticLossConfig`]):
//! - **reconstruction**: `1 − cos(decoder(z_q), x)` against the full corpus vector;
//! - **commitment** (residual VQ): squared distance of each stage's input to its code;
//! - **entropy**: per component, mean per-row entropy of a soft assignment to the codes minus
//!   the entropy of the batch's mean assignment (confident rows, spread usage);
//! - **diversity**: mean squared cosine between the latents of different corpora;
//! - **supervised**: cross-entropy of the heads predicting style, complexity and era from their
//!   components' quantized vectors;
//! - **InfoNCE** (optional): two word-subset views of a corpus as positives, other corpora as
//!   negatives.
//!
//! Each training item is one *view* of a corpus: the L2-normalized mean of a seeded random
//! subset of its word vectors (view 0 is the whole corpus), so a few dozen corpora give
//! hundreds of distinct inputs. Held-out corpora (the last variation of every label
//! combination that has two or more) are the validation set: early stopping watches their loss,
//! and the report gives the heads' accuracy on them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_core::{CancelToken, Event, EventSink, JsonlSink, RunDir, RunStatus, Seed, StageMode};
use lexforge_nn::encoder::SentenceEncoder;
use lexforge_train::{
    BatchSource, BoxError, CheckpointDir, EarlyStoppingConfig, LossOutput, Resume, StepInfo,
    StopReason, TrainConfig, TrainContext, TrainModel, train,
};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::corpus::{COMPONENTS, CorpusSet};
use crate::error::{Result, SemanticError};
use crate::model::{CONFIG_FORMAT, HeadSpec, SemanticConfig, SemanticModel, l2_normalize, matrix};
use crate::quantize::{AnyQuantizer, Quantizer, QuantizerConfig, host};

/// Manifest `kind` of a semantic-encoder directory.
pub const SEMANTIC_KIND: &str = "semantic_encoder";
/// Weights file.
pub const WEIGHTS_FILE: &str = "semantic_encoder.safetensors";
/// Config file.
pub const CONFIG_FILE: &str = "config.json";
/// Corpus id → ID file.
pub const IDS_FILE: &str = "semantic_ids.json";
/// The corpora the encoder was trained on.
pub const CORPORA_FILE: &str = "corpora.json";
/// Evaluation report.
pub const METRICS_FILE: &str = "eval/metrics.json";

/// Loss weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SemanticLossConfig {
    /// Reconstruction (`1 − cos`).
    pub reconstruction: f64,
    /// Commitment (residual VQ).
    pub commitment: f64,
    /// Entropy regularizer.
    pub entropy: f64,
    /// Temperature of the soft assignment (squared distance units of the code space).
    pub entropy_temperature: f64,
    /// Diversity between corpora.
    pub diversity: f64,
    /// Supervised heads (0: no heads).
    pub supervised: f64,
    /// InfoNCE between two views of a corpus (0: off).
    pub info_nce: f64,
    /// InfoNCE temperature.
    pub temperature: f64,
}

impl Default for SemanticLossConfig {
    fn default() -> Self {
        SemanticLossConfig {
            reconstruction: 1.0,
            commitment: 0.25,
            entropy: 0.3,
            entropy_temperature: 0.1,
            diversity: 1.0,
            supervised: 1.0,
            info_nce: 0.5,
            temperature: 0.1,
        }
    }
}

/// Everything a semantic-encoder training run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SemanticTrainConfig {
    /// Hidden width of the encoder and decoder MLPs.
    pub hidden_dim: usize,
    /// The quantizer.
    pub quantizer: QuantizerConfig,
    /// Loss weights.
    pub loss: SemanticLossConfig,
    /// Views per training corpus (view 0: all words; others: seeded random subsets).
    pub views: usize,
    /// Smallest share of a corpus's words a view keeps (uniform between this and 1).
    pub keep_fraction: f64,
    /// Warmup as a share of `train.max_steps` (overrides `train.warmup_steps` when set).
    pub warmup_fraction: Option<f64>,
    /// Batch size of the embedding model.
    pub embed_batch_size: usize,
    /// The optimizer loop (gradient clipping in `train.optimizer.grad_clip_norm`).
    pub train: TrainConfig,
}

impl Default for SemanticTrainConfig {
    fn default() -> Self {
        SemanticTrainConfig {
            hidden_dim: 256,
            quantizer: QuantizerConfig::fsq_default(),
            loss: SemanticLossConfig::default(),
            views: 16,
            keep_fraction: 0.5,
            warmup_fraction: Some(0.1),
            embed_batch_size: 128,
            train: TrainConfig {
                max_steps: 400,
                batch_size: 64,
                lr: 3e-3,
                min_lr: 3e-4,
                warmup_steps: 40,
                eval_every: 25,
                eval_batches: None,
                checkpoint_every: 100,
                early_stopping: Some(EarlyStoppingConfig {
                    patience: 6,
                    min_delta: 1e-4,
                }),
                log_every: 10,
                ..TrainConfig::default()
            },
        }
    }
}

impl SemanticTrainConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] naming the field; the engine's own checks.
    pub fn validate(&self) -> Result<()> {
        self.quantizer.validate()?;
        if self.hidden_dim == 0 {
            return Err(SemanticError::param("hidden_dim", "must be at least 1"));
        }
        if self.views == 0 {
            return Err(SemanticError::param("views", "must be at least 1"));
        }
        if !(self.keep_fraction > 0.0 && self.keep_fraction <= 1.0) {
            return Err(SemanticError::param("keep_fraction", "must be in (0, 1]"));
        }
        if let Some(w) = self.warmup_fraction
            && !(0.0..1.0).contains(&w)
        {
            return Err(SemanticError::param("warmup_fraction", "must be in [0, 1)"));
        }
        if self.embed_batch_size == 0 {
            return Err(SemanticError::param(
                "embed_batch_size",
                "must be at least 1",
            ));
        }
        let l = &self.loss;
        for (name, v) in [
            ("loss.reconstruction", l.reconstruction),
            ("loss.commitment", l.commitment),
            ("loss.entropy", l.entropy),
            ("loss.diversity", l.diversity),
            ("loss.supervised", l.supervised),
            ("loss.info_nce", l.info_nce),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(SemanticError::param(
                    "loss",
                    format!("{name} = {v} must be finite and >= 0"),
                ));
            }
        }
        if !(l.entropy_temperature > 0.0 && l.temperature > 0.0) {
            return Err(SemanticError::param(
                "loss",
                "temperatures must be positive",
            ));
        }
        self.engine_config().validate()?;
        Ok(())
    }

    /// The engine config with the warmup fraction applied.
    pub fn engine_config(&self) -> TrainConfig {
        let mut t = self.train.clone();
        if let Some(w) = self.warmup_fraction {
            t.warmup_steps = (t.max_steps as f64 * w).round() as u64;
        }
        t
    }
}

/// Word and corpus vectors of a corpus set from one embedding model.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusEmbeddings {
    /// The embedding model's id.
    pub model_id: String,
    /// Its dimension.
    pub dim: usize,
    /// Per corpus, its word vectors (row-major `[words, dim]`).
    pub words: Vec<Vec<f32>>,
    /// Per corpus, the L2-normalized mean of its word vectors `[dim]`.
    pub vectors: Vec<Vec<f32>>,
}

/// L2-normalized mean of `rows` (row-major, width `dim`).
pub fn mean_vector(rows: &[f32], dim: usize) -> Vec<f32> {
    let mut mean = vec![0f32; dim];
    for row in rows.chunks(dim) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    mean.iter().map(|v| v / norm).collect()
}

/// Embeds every distinct word of `set` once with `encoder` and builds the corpus vectors.
///
/// # Errors
/// Encoder errors; [`SemanticError::EmptyCorpus`] via [`CorpusSet::validate`].
pub fn embed_corpora(
    set: &CorpusSet,
    encoder: &dyn SentenceEncoder,
    batch_size: usize,
) -> Result<CorpusEmbeddings> {
    set.validate()?;
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &set.corpora {
        for w in &c.words {
            let next = index.len();
            index.entry(w.as_str()).or_insert(next);
        }
    }
    let mut unique: Vec<&str> = vec![""; index.len()];
    for (w, &i) in &index {
        unique[i] = w;
    }
    let emb = encoder.encode(&unique, batch_size)?;
    let dim = emb.dim();
    let mut words = Vec::with_capacity(set.corpora.len());
    let mut vectors = Vec::with_capacity(set.corpora.len());
    for c in &set.corpora {
        let rows: Vec<f32> = c
            .words
            .iter()
            .flat_map(|w| emb.row(index[w.as_str()]).to_vec())
            .collect();
        vectors.push(mean_vector(&rows, dim));
        words.push(rows);
    }
    Ok(CorpusEmbeddings {
        model_id: encoder.model_id().to_owned(),
        dim,
        words,
        vectors,
    })
}

/// Which corpora are held out: the last variation of every (style, complexity, era) with two
/// or more variations; when that leaves none, a seeded fifth of the corpora (at least one).
pub fn holdout(set: &CorpusSet, seed: Seed) -> Vec<bool> {
    let mut max_var: BTreeMap<(String, String, String), (u32, usize)> = BTreeMap::new();
    for c in &set.corpora {
        let l = &c.labels;
        let e = max_var
            .entry((l.style.clone(), l.complexity.clone(), l.era.clone()))
            .or_insert((0, 0));
        e.0 = e.0.max(l.variation);
        e.1 += 1;
    }
    let held: Vec<bool> = set
        .corpora
        .iter()
        .map(|c| {
            let l = &c.labels;
            let (v, count) = max_var[&(l.style.clone(), l.complexity.clone(), l.era.clone())];
            count >= 2 && l.variation == v
        })
        .collect();
    if held.iter().any(|&h| h) || set.corpora.len() < 2 {
        return held;
    }
    let mut order: Vec<usize> = (0..set.corpora.len()).collect();
    order.shuffle(&mut seed.rng("semantic-holdout"));
    let k = (set.corpora.len() / 5).max(1);
    let mut held = vec![false; set.corpora.len()];
    for &i in &order[..k] {
        held[i] = true;
    }
    held
}

/// One batch: views of corpora with their targets and labels.
#[derive(Debug, Clone)]
pub struct SemanticBatch {
    /// Inputs `[n, dim]` (one view per row).
    pub input: Tensor<2>,
    /// Second views `[n, dim]` for InfoNCE.
    pub input_b: Option<Tensor<2>>,
    /// Full corpus vectors `[n, dim]`.
    pub target: Tensor<2>,
    /// Corpus index of each row.
    pub corpus: Vec<usize>,
    /// Class of each row, per head.
    pub labels: Vec<Vec<u32>>,
}

/// Views of a subset of the corpora, batched by index.
struct Views<'a> {
    emb: &'a CorpusEmbeddings,
    corpora: Vec<usize>,
    views: usize,
    keep: f64,
    seed: Seed,
    pair: bool,
    /// Per head, the class of every corpus of the set.
    labels: &'a [Vec<u32>],
    /// Every item's view vectors (and second views when `pair`), computed once.
    cache: Vec<f32>,
    cache_b: Vec<f32>,
}

impl<'a> Views<'a> {
    fn new(
        emb: &'a CorpusEmbeddings,
        corpora: Vec<usize>,
        (views, keep): (usize, f64),
        seed: Seed,
        pair: bool,
        labels: &'a [Vec<u32>],
    ) -> Self {
        let mut v = Views {
            emb,
            corpora,
            views,
            keep,
            seed,
            pair,
            labels,
            cache: Vec::new(),
            cache_b: Vec::new(),
        };
        let n = v.corpora.len() * v.views;
        let mut cache = Vec::with_capacity(n * emb.dim);
        let mut cache_b = Vec::new();
        for i in 0..n {
            let c = v.corpora[i / v.views];
            cache.extend(v.view(c, i % v.views, "a"));
            if pair {
                cache_b.extend(v.view(c, i % v.views, "b"));
            }
        }
        v.cache = cache;
        v.cache_b = cache_b;
        v
    }

    fn view(&self, c: usize, v: usize, tag: &str) -> Vec<f32> {
        let dim = self.emb.dim;
        if v == 0 && tag == "a" {
            return self.emb.vectors[c].clone();
        }
        let rows = &self.emb.words[c];
        let n = rows.len() / dim;
        let mut rng = self
            .seed
            .derive(&format!("view/{c}/{v}/{tag}"))
            .rng("words");
        let frac = self.keep + (1.0 - self.keep) * rng.random::<f64>();
        let m = ((frac * n as f64).round() as usize).clamp(1, n);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let picked: Vec<f32> = order[..m]
            .iter()
            .flat_map(|&i| rows[i * dim..(i + 1) * dim].to_vec())
            .collect();
        mean_vector(&picked, dim)
    }
}

impl BatchSource<SemanticBatch> for Views<'_> {
    fn len(&self) -> usize {
        self.corpora.len() * self.views
    }

    fn batch(
        &self,
        indices: &[usize],
        device: &Device,
    ) -> std::result::Result<SemanticBatch, BoxError> {
        let dim = self.emb.dim;
        let n = indices.len();
        let mut input = Vec::with_capacity(n * dim);
        let mut input_b = Vec::new();
        let mut target = Vec::with_capacity(n * dim);
        let mut corpus = Vec::with_capacity(n);
        for &i in indices {
            let c = self.corpora[i / self.views];
            input.extend_from_slice(&self.cache[i * dim..(i + 1) * dim]);
            if self.pair {
                input_b.extend_from_slice(&self.cache_b[i * dim..(i + 1) * dim]);
            }
            target.extend_from_slice(&self.emb.vectors[c]);
            corpus.push(c);
        }
        let labels = self
            .labels
            .iter()
            .map(|per| corpus.iter().map(|&c| per[c]).collect())
            .collect();
        Ok(SemanticBatch {
            input: matrix(input, n, dim, device),
            input_b: self.pair.then(|| matrix(input_b, n, dim, device)),
            target: matrix(target, n, dim, device),
            corpus,
            labels,
        })
    }
}

/// The model with its losses, as the engine trains it.
#[derive(Module, Debug)]
pub struct SemanticTrainer {
    /// The semantic encoder.
    pub model: SemanticModel,
    #[module(skip)]
    loss: SemanticLossConfig,
    #[module(skip)]
    seed: u64,
}

/// Mean over rows of the entropy of `softmax(logits)` minus the entropy of the mean softmax.
fn entropy_term(logits: Tensor<2>) -> Tensor<1> {
    let p = softmax(logits.clone(), 1);
    let logp = log_softmax(logits, 1);
    let per_row = -(p.clone() * logp).sum_dim(1).mean();
    let avg = p.mean_dim(0);
    let marginal = -(avg.clone() * avg.clamp_min(1e-12).log()).sum();
    per_row - marginal
}

/// Mean squared cosine between latents of rows from different corpora (0 when there is no
/// such pair).
fn diversity_term(latent: Tensor<2>, corpus: &[usize]) -> Tensor<1> {
    let n = corpus.len();
    let z = l2_normalize(latent);
    let sim = z.clone().matmul(z.transpose());
    let mut mask = vec![0f32; n * n];
    let mut count = 0f32;
    for i in 0..n {
        for j in 0..n {
            if corpus[i] != corpus[j] {
                mask[i * n + j] = 1.0;
                count += 1.0;
            }
        }
    }
    let mask = matrix(mask, n, n, &sim.device());
    (sim.square() * mask).sum() / count.max(1.0)
}

/// InfoNCE between two views; rows of the same corpus other than the diagonal are masked.
fn info_nce_term(
    a: Tensor<2>,
    b: Tensor<2>,
    corpus: &[usize],
    temperature: f64,
) -> std::result::Result<Tensor<1>, BoxError> {
    let n = corpus.len();
    let device = a.device();
    let logits = l2_normalize(a).matmul(l2_normalize(b).transpose()) / temperature;
    let mut mask = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            if i != j && corpus[i] == corpus[j] {
                mask[i * n + j] = -1e9;
            }
        }
    }
    let logits = logits + matrix(mask, n, n, &device);
    let targets = Tensor::<2, Int>::from_data(
        TensorData::new((0..n as i64).collect::<Vec<_>>(), [n, 1]),
        &device,
    );
    Ok(lexforge_nn::fused::cross_entropy(logits, targets)?)
}

impl TrainModel for SemanticTrainer {
    type Batch = SemanticBatch;

    fn loss(&self, batch: &SemanticBatch) -> std::result::Result<LossOutput, BoxError> {
        let l = &self.loss;
        let fwd = self
            .model
            // Soft assignments only feed the entropy term: temperature 0 skips them.
            .forward(
                batch.input.clone(),
                if l.entropy > 0.0 {
                    l.entropy_temperature
                } else {
                    0.0
                },
            )?;
        let n = batch.corpus.len();
        let cos = (l2_normalize(fwd.reconstruction) * batch.target.clone())
            .sum_dim(1)
            .mean();
        let mut loss = (-cos + 1.0) * l.reconstruction;
        if let Some(c) = fwd.quantized.commitment.clone()
            && l.commitment > 0.0
        {
            loss = loss + c * l.commitment;
        }
        if l.entropy > 0.0 {
            let k = fwd.quantized.assignment_logits.len() as f64;
            for logits in fwd.quantized.assignment_logits.clone() {
                loss = loss + entropy_term(logits) * (l.entropy / k);
            }
        }
        if l.diversity > 0.0 {
            loss = loss + diversity_term(fwd.latent.clone(), &batch.corpus) * l.diversity;
        }
        if l.supervised > 0.0 && !fwd.head_logits.is_empty() {
            let h = fwd.head_logits.len() as f64;
            for (logits, labels) in fwd.head_logits.iter().zip(&batch.labels) {
                let targets = Tensor::<2, Int>::from_data(
                    TensorData::new(labels.iter().map(|&c| i64::from(c)).collect(), [n, 1]),
                    &logits.device(),
                );
                let ce = lexforge_nn::fused::cross_entropy(logits.clone(), targets)?;
                loss = loss + ce * (l.supervised / h);
            }
        }
        if l.info_nce > 0.0
            && let Some(b) = &batch.input_b
        {
            let zb = self.model.encode_latent(b.clone());
            loss = loss
                + info_nce_term(fwd.latent.clone(), zb, &batch.corpus, l.temperature)? * l.info_nce;
        }
        Ok(LossOutput { loss, targets: n })
    }

    fn after_step(
        self,
        batch: &SemanticBatch,
        info: &StepInfo,
    ) -> std::result::Result<(Self, BTreeMap<String, f64>), BoxError> {
        let SemanticTrainer {
            mut model,
            loss,
            seed,
        } = self;
        let latent = model.encode_latent(batch.input.clone()).detach();
        let mut replaced = vec![0usize; model.quantizer.codebook_sizes().len()];
        if let AnyQuantizer::ResidualVq(q) = model.quantizer {
            let (q, report) = q.ema_update(
                &host(latent.clone())?,
                Seed(seed).derive(&format!("ema/{}", info.step)),
            )?;
            replaced = report.replaced;
            model.quantizer = AnyQuantizer::ResidualVq(q);
        }
        // Usage counts of this epoch (codes of the step's batch under the updated model).
        let codes = model.quantizer.quantize(latent, 0.0)?.codes;
        let sizes = model.quantizer.codebook_sizes();
        let comps = sizes.len();
        let width = sizes.iter().copied().max().unwrap_or(1) + 1;
        let mut usage = host(model.usage.val())?;
        for row in codes.chunks(comps) {
            for (k, &c) in row.iter().enumerate() {
                usage[k * width + c as usize] += 1.0;
            }
        }
        for (k, r) in replaced.iter().enumerate() {
            usage[k * width + width - 1] += *r as f32;
        }
        let mut metrics = BTreeMap::new();
        if info.epoch_end {
            for (k, &size) in sizes.iter().enumerate() {
                let stats = LevelStats::from_counts(&usage[k * width..k * width + size]);
                metrics.insert(format!("level{k}.usage"), stats.usage);
                metrics.insert(format!("level{k}.perplexity"), stats.perplexity);
                metrics.insert(format!("level{k}.dead_codes"), stats.dead as f64);
                metrics.insert(
                    format!("level{k}.replaced"),
                    f64::from(usage[k * width + width - 1]),
                );
            }
            metrics.insert("epoch".into(), info.epoch as f64 + 1.0);
            usage.iter_mut().for_each(|u| *u = 0.0);
        }
        let device = model.usage.val().device();
        model.usage = Param::initialized(model.usage.id, matrix(usage, comps, width, &device))
            .set_require_grad(false);
        Ok((SemanticTrainer { model, loss, seed }, metrics))
    }
}

/// Codebook statistics of one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelStats {
    /// Codes in the codebook.
    pub codebook_size: usize,
    /// Codes used at least once.
    pub used: usize,
    /// `used / codebook_size`.
    pub usage: f64,
    /// `exp` of the entropy of the code distribution (1: one code; `used` when uniform).
    pub perplexity: f64,
    /// Codes never used.
    pub dead: usize,
}

impl LevelStats {
    /// Statistics of per-code counts.
    pub fn from_counts(counts: &[f32]) -> Self {
        let total: f64 = counts.iter().map(|&c| f64::from(c)).sum();
        let used = counts.iter().filter(|&&c| c > 0.0).count();
        let entropy: f64 = counts
            .iter()
            .filter(|&&c| c > 0.0)
            .map(|&c| {
                let p = f64::from(c) / total;
                -p * p.ln()
            })
            .sum();
        LevelStats {
            codebook_size: counts.len(),
            used,
            usage: used as f64 / counts.len().max(1) as f64,
            perplexity: if total > 0.0 { entropy.exp() } else { 0.0 },
            dead: counts.len() - used,
        }
    }
}

/// Exact collisions and prefix occupancy of a set of IDs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollisionReport {
    /// IDs compared.
    pub ids: usize,
    /// Distinct IDs.
    pub unique: usize,
    /// Groups of corpus ids sharing one ID (only groups of two or more).
    pub collisions: Vec<Vec<String>>,
    /// Distinct prefixes of length 1, 2, ... (length = components).
    pub prefix_occupancy: Vec<usize>,
}

impl CollisionReport {
    /// The report of `ids` (corpus id → ID).
    pub fn of(ids: &BTreeMap<String, Vec<u32>>) -> Self {
        let mut groups: BTreeMap<&[u32], Vec<String>> = BTreeMap::new();
        for (name, id) in ids {
            groups.entry(id.as_slice()).or_default().push(name.clone());
        }
        let comps = ids.values().map(Vec::len).max().unwrap_or(0);
        let prefix_occupancy = (1..=comps)
            .map(|len| {
                let set: std::collections::BTreeSet<&[u32]> =
                    ids.values().map(|id| &id[..len.min(id.len())]).collect();
                set.len()
            })
            .collect();
        CollisionReport {
            ids: ids.len(),
            unique: groups.len(),
            collisions: groups.into_values().filter(|g| g.len() > 1).collect(),
            prefix_occupancy,
        }
    }
}

/// Accuracy of one supervised head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadAccuracy {
    /// On held-out corpora, from their IDs alone.
    pub heldout: Option<f64>,
    /// On training corpora.
    pub train: f64,
    /// The majority class's share of the held-out corpora (the trivial baseline).
    pub heldout_majority: Option<f64>,
    /// Classes.
    pub classes: usize,
}

/// What a training run reports (`eval/metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SemanticReport {
    /// The encoder directory.
    pub dir: PathBuf,
    /// Why training stopped.
    pub stop: StopReason,
    /// Optimizer steps.
    pub steps: u64,
    /// The quantizer's name.
    pub quantizer: String,
    /// Training and held-out corpora.
    pub corpora: BTreeMap<String, usize>,
    /// Per component, codebook statistics over all corpora's IDs.
    pub levels: Vec<LevelStats>,
    /// Collisions among all corpora's IDs.
    pub collisions: CollisionReport,
    /// Per labelled component, the head's accuracy.
    pub heads: BTreeMap<String, HeadAccuracy>,
    /// Mean cosine of `decode(encode(x))` to `x`, on training and held-out corpora.
    pub reconstruction_cosine: BTreeMap<String, f64>,
    /// Wall time of the training loop, seconds.
    pub train_seconds: f64,
}

/// Trains a semantic encoder on `set` (embedded with `encoder`) into `out` (created; resumed
/// from its last checkpoint when `out/checkpoints` has one), then writes the artifacts:
/// `semantic_encoder.safetensors`, `config.json`, `semantic_ids.json`, `corpora.json`,
/// `eval/metrics.json`, `events.jsonl`, `manifest.json`.
///
/// `device` is the plain device; training runs on its autodiff form. `embedding_model_path`
/// is recorded as a loading hint.
///
/// # Errors
/// Bad configuration, an invalid corpus set, embedding and training failures, I/O.
#[allow(
    clippy::too_many_arguments,
    reason = "the inputs of one run, as train_matcher takes them"
)]
pub fn train_semantic(
    config: &SemanticTrainConfig,
    set: &CorpusSet,
    encoder: &dyn SentenceEncoder,
    embedding_model_path: Option<&Path>,
    out: &Path,
    device: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<SemanticReport> {
    config.validate()?;
    set.validate()?;
    let dtype = device.settings().float_dtype;
    if dtype != burn::tensor::FloatDType::F32 {
        // EMA codebook updates and k-means run on the host in f32 against the master weights.
        return Err(lexforge_core::Error::UnsupportedPrecision {
            precision: format!("{dtype:?}").to_ascii_lowercase(),
            device: format!("{device:?} (semantic training)"),
            supported: "f32 (encoding with a trained semantic encoder takes any)".into(),
        }
        .into());
    }
    let engine = config.engine_config();
    let seed = Seed(engine.seed);
    let emb = embed_corpora(set, encoder, config.embed_batch_size)?;
    let held = holdout(set, seed);
    let heads: Vec<HeadSpec> = if config.loss.supervised > 0.0 {
        (0..3)
            .map(|k| HeadSpec {
                component: k,
                classes: set.label_values(k),
            })
            .filter(|h| {
                h.classes.len() >= 2 && h.component < config.quantizer.codebook_sizes().len()
            })
            .collect()
    } else {
        Vec::new()
    };
    let labels: Vec<Vec<u32>> = heads
        .iter()
        .map(|h| {
            set.corpora
                .iter()
                .map(|c| {
                    let v = c.labels.component(h.component);
                    h.classes.iter().position(|x| *x == v).unwrap_or(0) as u32
                })
                .collect()
        })
        .collect();
    let semantic_config = SemanticConfig {
        format: CONFIG_FORMAT,
        encoder_type: "mlp".into(),
        input_dim: emb.dim,
        embedding_model: emb.model_id.clone(),
        embedding_model_path: embedding_model_path.map(Path::to_path_buf),
        hidden_dim: config.hidden_dim,
        quantizer: config.quantizer.clone(),
        heads: heads.clone(),
    };
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    seed.apply_to(&ad);
    let mut model = SemanticModel::new(&semantic_config, &ad)?;
    let train_idx: Vec<usize> = (0..set.corpora.len()).filter(|&i| !held[i]).collect();
    let held_idx: Vec<usize> = (0..set.corpora.len()).filter(|&i| held[i]).collect();
    if train_idx.is_empty() || held_idx.is_empty() {
        return Err(SemanticError::NoCorpora {
            reason: format!(
                "{} corpora cannot be split into training and held-out sets",
                set.corpora.len()
            ),
        });
    }
    // Residual-VQ codebooks start at the k-means of the initial latents of every training
    // view.
    if let QuantizerConfig::ResidualVq {
        kmeans_init: true, ..
    } = config.quantizer
    {
        let views = Views::new(
            &emb,
            train_idx.clone(),
            (config.views, config.keep_fraction),
            seed,
            false,
            &labels,
        );
        let all: Vec<usize> = (0..views.len()).collect();
        let b = views
            .batch(&all, &ad)
            .map_err(|e| SemanticError::input(e.to_string()))?;
        let latents = host(model.encode_latent(b.input).detach())?;
        if let AnyQuantizer::ResidualVq(q) = model.quantizer {
            model.quantizer = AnyQuantizer::ResidualVq(q.init_kmeans(&latents, seed)?);
        }
    }
    let trainer = SemanticTrainer {
        model,
        loss: config.loss.clone(),
        seed: engine.seed,
    };
    let pair = config.loss.info_nce > 0.0;
    let train_views = Views::new(
        &emb,
        train_idx.clone(),
        (config.views, config.keep_fraction),
        seed,
        pair,
        &labels,
    );
    let valid_views = Views::new(
        &emb,
        held_idx.clone(),
        (1, config.keep_fraction),
        seed,
        pair,
        &labels,
    );
    if train_views.len() < engine.batch_size {
        return Err(SemanticError::param(
            "batch_size",
            format!(
                "{} training views ({} corpora × {} views) cannot fill a batch of {}",
                train_views.len(),
                train_idx.len(),
                config.views,
                engine.batch_size
            ),
        ));
    }

    let mut run = if out.join(lexforge_core::MANIFEST_FILE).is_file() {
        RunDir::open(out)?
    } else {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
        let name = out.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            SemanticError::param(
                "out",
                format!("{} has no usable directory name", out.display()),
            )
        })?;
        RunDir::create(
            parent.unwrap_or(Path::new(".")),
            name,
            SEMANTIC_KIND,
            StageMode::InPlace,
        )?
    };
    {
        let m = run.manifest_mut();
        // The outputs are rewritten in place at the end: until all of them are written again,
        // the manifest must not vouch for the old ones (a failure half-way, such as a full
        // disk, would leave files that disagree with it), and the run is not finished.
        m.artifacts.clear();
        m.status = RunStatus::Running;
        m.config = serde_json::json!({ "train": config, "model": semantic_config });
        m.seed = Some(engine.seed);
        m.device = Some(format!("{device:?}"));
        m.precision = Some(lexforge_core::Precision::of(device).to_string());
    }
    run.save_manifest()?;
    let log = JsonlSink::open(&out.join("events.jsonl"))?;
    let fan = lexforge_core::Tee(&log, events);
    let checkpoints = CheckpointDir::new(out.join("checkpoints"), engine.keep_checkpoints)?;
    let run_id = out.file_name().map_or_else(
        || "semantic".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let ctx = TrainContext {
        run_id: &run_id,
        kind: "semantic",
        device: &ad,
        replicas: &[],
        train: &train_views,
        valid: &valid_views,
        checkpoints: &checkpoints,
        events: &fan,
        cancel,
    };
    let clock = std::time::Instant::now();
    let outcome = train(&engine, &ctx, trainer, Resume::Latest)?;
    let train_seconds = clock.elapsed().as_secs_f64();
    let mut corpora = BTreeMap::new();
    corpora.insert("train".to_owned(), train_idx.len());
    corpora.insert("heldout".to_owned(), held_idx.len());
    if outcome.stop == StopReason::Cancelled {
        return Ok(SemanticReport {
            dir: out.to_path_buf(),
            stop: outcome.stop,
            steps: outcome.state.step,
            quantizer: config.quantizer_name(),
            corpora,
            levels: Vec::new(),
            collisions: CollisionReport::of(&BTreeMap::new()),
            heads: BTreeMap::new(),
            reconstruction_cosine: BTreeMap::new(),
            train_seconds,
        });
    }
    let trained = if checkpoints.dir("best").exists() {
        checkpoints.load_weights("best", outcome.model)?
    } else {
        outcome.model
    };
    let model = trained.valid().model;
    // IDs of every corpus, from its full vector.
    let all_vectors: Vec<f32> = emb.vectors.iter().flatten().copied().collect();
    let x = matrix(all_vectors.clone(), set.corpora.len(), emb.dim, &plain);
    let codes = model.codes(x)?;
    let comps = model.quantizer.codebook_sizes().len();
    let ids: BTreeMap<String, Vec<u32>> = set
        .corpora
        .iter()
        .zip(codes.chunks(comps))
        .map(|(c, id)| (c.id.clone(), id.to_vec()))
        .collect();
    let decoded = host(model.decode_codes(&codes, &plain)?)?;
    let mut cos_sum: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (i, &h) in held.iter().enumerate() {
        let d = emb.dim;
        let cos: f32 = decoded[i * d..(i + 1) * d]
            .iter()
            .zip(&emb.vectors[i])
            .map(|(a, b)| a * b)
            .sum();
        let e = cos_sum
            .entry(if h { "heldout" } else { "train" }.to_owned())
            .or_insert((0.0, 0));
        e.0 += f64::from(cos);
        e.1 += 1;
    }
    let reconstruction_cosine = cos_sum
        .into_iter()
        .map(|(k, (s, n))| (k, s / n.max(1) as f64))
        .collect();
    let sizes = model.quantizer.codebook_sizes();
    let levels = (0..comps)
        .map(|k| {
            let mut counts = vec![0f32; sizes[k]];
            for row in codes.chunks(comps) {
                counts[row[k] as usize] += 1.0;
            }
            LevelStats::from_counts(&counts)
        })
        .collect();
    let predictions = model.predict_labels(&codes, &plain)?;
    let mut head_report = BTreeMap::new();
    for ((spec, pred), truth) in heads.iter().zip(&predictions).zip(&labels) {
        let acc = |idx: &[usize]| -> Option<f64> {
            (!idx.is_empty()).then(|| {
                idx.iter().filter(|&&i| pred[i] as u32 == truth[i]).count() as f64
                    / idx.len() as f64
            })
        };
        let majority = (!held_idx.is_empty()).then(|| {
            let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
            for &i in &held_idx {
                *counts.entry(truth[i]).or_default() += 1;
            }
            counts.values().copied().max().unwrap_or(0) as f64 / held_idx.len() as f64
        });
        head_report.insert(
            COMPONENTS[spec.component].to_owned(),
            HeadAccuracy {
                heldout: acc(&held_idx),
                train: acc(&train_idx).unwrap_or(0.0),
                heldout_majority: majority,
                classes: spec.classes.len(),
            },
        );
    }
    let report = SemanticReport {
        dir: out.to_path_buf(),
        stop: outcome.stop,
        steps: outcome.state.step,
        quantizer: config.quantizer_name(),
        corpora,
        levels,
        collisions: CollisionReport::of(&ids),
        heads: head_report,
        reconstruction_cosine,
        train_seconds,
    };
    crate::encoder::save_model(&model, &ids, set, out)?;
    crate::encoder::write_json(&out.join(METRICS_FILE), &report)?;
    for rel in [
        WEIGHTS_FILE,
        CONFIG_FILE,
        IDS_FILE,
        CORPORA_FILE,
        METRICS_FILE,
    ] {
        run.record_artifact(rel)?;
    }
    let mut metrics = BTreeMap::new();
    metrics.insert("steps".to_owned(), report.steps as f64);
    metrics.insert(
        "collisions".to_owned(),
        report
            .collisions
            .collisions
            .iter()
            .map(Vec::len)
            .sum::<usize>() as f64,
    );
    for (k, s) in report.levels.iter().enumerate() {
        metrics.insert(format!("level{k}.usage"), s.usage);
        metrics.insert(format!("level{k}.perplexity"), s.perplexity);
    }
    for (name, h) in &report.heads {
        if let Some(a) = h.heldout {
            metrics.insert(format!("heldout.{name}_accuracy"), a);
        }
    }
    for (split, c) in &report.reconstruction_cosine {
        metrics.insert(format!("{split}.reconstruction_cosine"), *c);
    }
    run.manifest_mut().metrics = metrics.clone();
    run.finish(RunStatus::Completed)?;
    fan.send(Event::Completed { metrics })?;
    Ok(report)
}

impl SemanticTrainConfig {
    fn quantizer_name(&self) -> String {
        match self.quantizer {
            QuantizerConfig::Fsq { .. } => "fsq",
            QuantizerConfig::ResidualFsq { .. } => "residual_fsq",
            QuantizerConfig::ResidualVq { .. } => "residual_vq",
        }
        .to_owned()
    }
}
