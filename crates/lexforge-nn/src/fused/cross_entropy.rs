//! The cross-entropy of a language-model head: the mean of `logsumexp(row) - row[target]`
//! and its gradient `(softmax - onehot) / rows` in one pass over the logits, and the backward
//! node.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::{Dispatch, Flex};
use burn::tensor::{Int, Tensor};
use lexforge_core::host::{flex_tensor, host, par_scale, values_mut, writable};
use rayon::prelude::*;

use super::{FusedBackend, MIN_TASK_ELEMENTS, exp_shifted, on_host, row_max, row_sum, simd};
use crate::{NnError, Result};

/// Host cross-entropy: mean over rows of `logsumexp(row) - row[target]`, and (when asked) its
/// gradient `(softmax(row) - onehot(target)) / rows` in place of `logits`.
fn cross_entropy_host(logits: &mut [f32], vocab: usize, targets: &[usize], want_grad: bool) -> f32 {
    let rows = targets.len();
    let inv_rows = 1.0 / rows as f32;
    // Row losses are written through an index-aligned buffer so the sum keeps row order
    // (a deterministic result whatever the thread count).
    let row_loss: Vec<f32> = {
        let mut out = vec![0.0f32; rows];
        let chunk_rows = MIN_TASK_ELEMENTS.div_ceil(vocab.max(1)).max(1);
        logits
            .par_chunks_mut(chunk_rows * vocab)
            .zip(out.par_chunks_mut(chunk_rows))
            .enumerate()
            .for_each(|(task, (block, out))| {
                simd(|| {
                    for (k, (r, o)) in block.chunks_mut(vocab).zip(out.iter_mut()).enumerate() {
                        let target = targets[task * chunk_rows + k];
                        let (m, nan) = row_max(r);
                        if nan || !m.is_finite() {
                            *o = f32::NAN;
                            if want_grad {
                                r.fill(f32::NAN);
                            }
                            continue;
                        }
                        let picked = r[target];
                        exp_shifted(r, m, 1.0);
                        let sum = row_sum(r);
                        if want_grad {
                            let scale = inv_rows / sum;
                            r.iter_mut().for_each(|v| *v *= scale);
                            r[target] -= inv_rows;
                        }
                        *o = m + sum.ln() - picked;
                    }
                })
            });
        out
    };
    row_loss.iter().map(|v| f64::from(*v)).sum::<f64>() as f32 * inv_rows
}

/// The plain burn formula of [`cross_entropy`].
fn cross_entropy_reference(logits: Tensor<2>, targets: Tensor<2, Int>) -> Tensor<1> {
    let max = logits.clone().detach().max_dim(1);
    let lse = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
    (lse - logits.gather(1, targets)).mean().reshape([1])
}

/// Mean cross-entropy of `logits` against `targets`: `mean_i(logsumexp(l_i) - l_i[t_i])`.
///
/// # Shapes
/// `logits`: `[rows, vocab]`, `targets`: `[rows, 1]` with ids `< vocab` → `[1]`.
///
/// # Errors
/// [`NnError::InvalidInput`] when a target id is outside `0..vocab` (checked on the host path;
/// other devices follow burn's `gather`).
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<2, Int>) -> Result<Tensor<1>> {
    if !on_host(&logits) {
        return Ok(cross_entropy_reference(logits, targets));
    }
    let [rows, vocab] = logits.dims();
    let ids = targets
        .into_data()
        .try_to_vec_as::<i64>()
        .map_err(|e| NnError::InvalidInput {
            reason: format!("cannot read targets: {e:?}"),
        })?;
    if ids.len() != rows {
        return Err(NnError::InvalidInput {
            reason: format!("{} targets for {rows} rows of logits", ids.len()),
        });
    }
    let ids: Vec<usize> = ids
        .iter()
        .map(|&t| {
            usize::try_from(t)
                .ok()
                .filter(|&t| t < vocab)
                .ok_or_else(|| NnError::InvalidInput {
                    reason: format!("target id {t} is outside the vocabulary (size {vocab})"),
                })
        })
        .collect::<Result<_>>()?;
    Ok(Tensor::from_dispatch(
        <Dispatch as FusedBackend>::fused_cross_entropy(logits.into_dispatch(), ids),
    ))
}

/// The cross-entropy of `logits` (overwritten: with `(softmax - onehot) / rows` when
/// `want_grad`) as a `[1]` tensor.
pub(super) fn cross_entropy_in_place(
    logits: &mut FlexTensor,
    targets: &[usize],
    want_grad: bool,
) -> FlexTensor {
    let vocab = logits.layout().shape()[1];
    let loss = cross_entropy_host(values_mut(logits), vocab, targets, want_grad);
    flex_tensor(vec![loss], &[1])
}

/// Backward of the cross-entropy: `dlogits = dloss * (softmax - onehot) / rows`, the matrix
/// saved by the forward pass.
#[derive(Debug)]
pub(super) struct CrossEntropyBackward;

impl Backward<Flex, 1> for CrossEntropyBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let dloss = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node {
            let scale = host(&dloss).first().copied().unwrap_or(f32::NAN);
            let mut g = ops.state;
            if scale != 1.0 {
                g = writable(g);
                par_scale(values_mut(&mut g), scale);
            }
            grads.register::<Flex>(node.id, g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::tests::max_rel_diff;
    use burn::tensor::{Device, Distribution, TensorData};

    #[test]
    fn cross_entropy_matches_the_formula_in_value_and_gradient() {
        let d = Device::flex().autodiff();
        let logits =
            Tensor::<2>::random([300, 517], Distribution::Normal(0.0, 5.0), &d).require_grad();
        let ids: Vec<i64> = (0..300).map(|i| (i * 37 % 517) as i64).collect();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(ids, [300, 1]), &d);
        let fused =
            cross_entropy(logits.clone(), targets.clone()).unwrap_or_else(|e| panic!("{e}"));
        let reference = cross_entropy_reference(logits.clone(), targets);
        let (a, b) = (
            fused.clone().into_scalar::<f32>(),
            reference.clone().into_scalar::<f32>(),
        );
        assert!((a - b).abs() < 1e-5 * b.abs(), "{a} vs {b}");
        let g1 = logits.grad(&fused.backward());
        let g2 = logits.grad(&reference.backward());
        let (Some(g1), Some(g2)) = (g1, g2) else {
            panic!("no gradient")
        };
        assert!(max_rel_diff(g1, g2) < 1e-6);
    }

    #[test]
    fn a_scaled_cross_entropy_scales_its_gradient() {
        let d = Device::flex().autodiff();
        let logits =
            Tensor::<2>::random([40, 33], Distribution::Normal(0.0, 2.0), &d).require_grad();
        let ids: Vec<i64> = (0..40).map(|i| (i * 7 % 33) as i64).collect();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(ids, [40, 1]), &d);
        let fused =
            cross_entropy(logits.clone(), targets.clone()).unwrap_or_else(|e| panic!("{e}"));
        let reference = cross_entropy_reference(logits.clone(), targets);
        let g1 = logits.grad(&(fused * 2.5).backward());
        let g2 = logits.grad(&(reference * 2.5).backward());
        let (Some(g1), Some(g2)) = (g1, g2) else {
            panic!("no gradient")
        };
        assert!(max_rel_diff(g1, g2) < 1e-6);
    }

    #[test]
    fn cross_entropy_refuses_targets_outside_the_vocabulary() {
        let d = Device::flex();
        let logits = Tensor::<2>::zeros([2, 5], &d);
        let targets = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5], [2, 1]), &d);
        let err = cross_entropy(logits, targets).err();
        assert!(matches!(err, Some(NnError::InvalidInput { .. })), "{err:?}");
    }

    #[test]
    fn cross_entropy_of_a_nan_row_is_nan() {
        let d = Device::flex();
        let mut v = vec![0.0f32; 10];
        v[7] = f32::NAN;
        let logits = Tensor::<2>::from_data(TensorData::new(v, [2, 5]), &d);
        let targets = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 0], [2, 1]), &d);
        let loss = cross_entropy(logits, targets).map(|l| l.into_scalar::<f32>());
        assert!(matches!(loss, Ok(v) if v.is_nan()));
    }
}
