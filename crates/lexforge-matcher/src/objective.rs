//! The training objective of the bi-encoder: [`MatcherModel`], the bi-encoder with its loss as
//! the training engine sees it.
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

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_train::{BoxError, LossOutput, TrainModel};

use crate::config::{AdversaryMode, DistillMode, LossConfig};
use crate::dataset::PairBatch;
use crate::error::{MatcherError, Result};
use crate::losses::{bce_with_logits, grad_reverse, info_nce_loss, supcon_loss};
use crate::model::BiEncoder;
use crate::probe::fit_logistic;

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
        let e = self.encoder.embed(&batch.texts)?;
        let u = pair_side(&e, batch, |p| p.0, &device);
        let v = pair_side(&e, batch, |p| p.1, &device);
        let logits = self.encoder.pair_logits(u.clone(), v.clone());
        let mut parts = BTreeMap::new();
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
        let mut total = self.pairwise_term(&logits, batch, &device);
        note("pairwise", &total);
        if let Some(l) = self.supcon_term(&e, batch)? {
            note("supcon", &l);
            total = total + l;
        }
        if let Some(l) = self.info_nce_term(&u, &v, batch, &device)? {
            note("info_nce", &l);
            total = total + l;
        }
        if let Some(l) = self.adversary_term(&e, batch, &device)? {
            note("adversary", &l);
            total = total + l;
        }
        if let Some(l) = self.distill_term(&logits, batch, &device) {
            note("distill", &l);
            total = total + l;
        }
        Ok((total, parts))
    }

    /// Weighted logistic loss of the pair logits against the labels (always computed).
    fn pairwise_term(&self, logits: &Tensor<2>, batch: &PairBatch, device: &Device) -> Tensor<1> {
        let n = batch.labels.len();
        let targets: Vec<f32> = batch
            .labels
            .iter()
            .map(|&l| f32::from(u8::from(l)))
            .collect();
        bce_with_logits(
            logits.clone(),
            Tensor::from_data(TensorData::new(targets, [n, 1]), device),
        ) * self.loss.pairwise
    }

    /// Weighted SupCon over all embeddings of the batch, books as classes: when the term is on
    /// and some book has two texts in the batch.
    fn supcon_term(&self, e: &Tensor<2>, batch: &PairBatch) -> Result<Option<Tensor<1>>> {
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for b in &batch.books {
            *counts.entry(*b).or_default() += 1;
        }
        if self.loss.supcon > 0.0 && counts.values().any(|&c| c >= 2) {
            let l = supcon_loss(e.clone(), &batch.books, self.loss.temperature)? * self.loss.supcon;
            return Ok(Some(l));
        }
        Ok(None)
    }

    /// Weighted InfoNCE over the positive pairs of the batch (positives of the same book are
    /// not negatives): when the term is on and there are at least two positives.
    fn info_nce_term(
        &self,
        u: &Tensor<2>,
        v: &Tensor<2>,
        batch: &PairBatch,
        device: &Device,
    ) -> Result<Option<Tensor<1>>> {
        let n = batch.labels.len();
        let positives: Vec<i64> = (0..n as i64)
            .filter(|&i| batch.labels[i as usize])
            .collect();
        let on = self.loss.info_nce > 0.0;
        if !on || positives.len() < 2 {
            return Ok(None);
        }
        let idx = Tensor::<1, Int>::from_data(
            TensorData::new(positives.clone(), [positives.len()]),
            device,
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
        Ok(Some(l))
    }

    /// Weighted topic cross-entropy through gradient reversal, with the learned topic head or
    /// a classifier refitted to this batch ([`AdversaryMode`]): when the term is on and the
    /// head has topic classes.
    fn adversary_term(
        &self,
        e: &Tensor<2>,
        batch: &PairBatch,
        device: &Device,
    ) -> Result<Option<Tensor<1>>> {
        let on = self.loss.adversary > 0.0;
        let Some(k) = self.encoder.config().topics.filter(|_| on) else {
            return Ok(None);
        };
        let rows = batch.texts.len();
        let targets = Tensor::<2, Int>::from_data(
            TensorData::new(
                batch
                    .topics
                    .iter()
                    .map(|&t| i64::from(t))
                    .collect::<Vec<_>>(),
                [rows, 1],
            ),
            device,
        );
        let logits = match self.loss.adversary_mode {
            AdversaryMode::Learned => self.encoder.topic_logits(e.clone(), 1.0),
            AdversaryMode::Refit => Some(refit_topic_logits(e, &batch.topics, k, device)?),
        };
        match logits {
            Some(logits) => Ok(Some(
                lexforge_nn::fused::cross_entropy(logits, targets)? * self.loss.adversary,
            )),
            None => Ok(None),
        }
    }

    /// Weighted distillation against the teacher's logits of the batch ([`DistillMode`]):
    /// when the term is on, the batch has teacher logits and (margin-MSE) both classes.
    fn distill_term(
        &self,
        logits: &Tensor<2>,
        batch: &PairBatch,
        device: &Device,
    ) -> Option<Tensor<1>> {
        let on = self.loss.distill > 0.0;
        let teacher = batch.teacher.as_ref().filter(|_| on)?;
        let n = batch.labels.len();
        let l = match self.loss.distill_mode {
            DistillMode::Kl => {
                let soft: Vec<f32> = teacher.iter().map(|&t| 1.0 / (1.0 + (-t).exp())).collect();
                Some(bce_with_logits(
                    logits.clone(),
                    Tensor::from_data(TensorData::new(soft, [n, 1]), device),
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
                            device,
                        )
                    };
                    let student =
                        logits.clone().select(0, pick(&pos)) - logits.clone().select(0, pick(&neg));
                    let margins: Vec<f32> =
                        (0..m).map(|k| teacher[pos[k]] - teacher[neg[k]]).collect();
                    let diff =
                        student - Tensor::<2>::from_data(TensorData::new(margins, [m, 1]), device);
                    (diff.clone() * diff).mean()
                })
            }
        };
        l.map(|l| l * self.loss.distill)
    }
}

/// The rows of `e` on one side of each pair of the batch (`pick` chooses the side).
///
/// # Shapes
/// `e`: `[2n', dim]` → `[n, dim]` for `n` pairs.
fn pair_side(
    e: &Tensor<2>,
    batch: &PairBatch,
    pick: fn(&(usize, usize)) -> usize,
    device: &Device,
) -> Tensor<2> {
    let n = batch.labels.len();
    let idx: Vec<i64> = batch.pairs.iter().map(|p| pick(p) as i64).collect();
    e.clone().select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), device),
    )
}

/// Topic logits of the refit adversary: a multinomial logistic regression (100 full-batch
/// steps) fitted to the detached embeddings `e`, applied to `e` through the gradient-reversal
/// layer, so the encoder always faces the best linear adversary for its current embeddings.
///
/// # Shapes
/// `e`: `[rows, dim]`, `topics`: `rows` classes below `k` → `[rows, k]`.
///
/// # Errors
/// [`MatcherError::InvalidInput`] when the embeddings cannot be read back or a topic is not
/// below `k`.
fn refit_topic_logits(
    e: &Tensor<2>,
    topics: &[u32],
    k: usize,
    device: &Device,
) -> Result<Tensor<2>> {
    let [rows, dim] = e.dims();
    let x = e
        .clone()
        .detach()
        .into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .map_err(|err| MatcherError::InvalidInput {
            reason: format!("cannot read embeddings back: {err:?}"),
        })?;
    if let Some(&bad) = topics.iter().find(|&&t| t as usize >= k) {
        return Err(MatcherError::InvalidInput {
            reason: format!("topic {bad} outside the adversary's {k} classes"),
        });
    }
    let fit = fit_logistic(&x, topics, dim, k, 100, 1e-2);
    // W: k × dim row-major → [dim, k].
    let mut w = vec![0.0f32; dim * k];
    for c in 0..k {
        for j in 0..dim {
            w[j * k + c] = fit.weight[c * dim + j] as f32;
        }
    }
    let w = Tensor::<2>::from_data(TensorData::new(w, [dim, k]), device);
    let b = Tensor::<2>::from_data(
        TensorData::new(
            fit.bias.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            [1, k],
        ),
        device,
    );
    Ok(grad_reverse(e.clone(), 1.0).matmul(w) + b.expand([rows, k]))
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
