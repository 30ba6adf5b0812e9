//! The training objective: [`SemanticTrainer`], the model with its losses as the engine
//! trains it, and the codebook upkeep after each step (EMA updates, usage statistics).
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

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor, TensorData};
use lexforge_core::Seed;
use lexforge_train::{BoxError, LossOutput, StepInfo, TrainModel};
use serde::{Deserialize, Serialize};

use crate::model::{SemanticModel, l2_normalize, matrix};
use crate::quantize::{AnyQuantizer, Quantizer, host};
use crate::report::LevelStats;
use crate::views::SemanticBatch;

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

/// The model with its losses, as the engine trains it.
#[derive(Module, Debug)]
pub(crate) struct SemanticTrainer {
    /// The semantic encoder.
    pub(crate) model: SemanticModel,
    /// Loss weights.
    #[module(skip)]
    pub(crate) loss: SemanticLossConfig,
    /// Seed of the EMA updates' dead-code replacement.
    #[module(skip)]
    pub(crate) seed: u64,
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
