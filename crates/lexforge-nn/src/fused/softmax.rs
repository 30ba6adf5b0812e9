//! The attention softmax: `softmax(scale * scores)` over the keys under a causal or padding
//! mask (hidden keys exactly 0), the row kernels the fused attention runs on its own threads,
//! and the backward node.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::{Dispatch, Flex};
use burn::tensor::{Device, Tensor, TensorData};
use lexforge_core::host::{host, values_mut, writable};
use rayon::prelude::*;

use super::{
    FusedBackend, MIN_TASK_ELEMENTS, RowKernel, exp_shifted, for_rows, on_host, row_dot, row_max,
    row_sum, simd,
};

/// Which keys a query row may attend to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMask<'a> {
    /// Every key.
    None,
    /// Causal with `past` cached positions before the queries: query `i` sees keys `0..=past+i`.
    Causal {
        /// Positions before the first query.
        past: usize,
    },
    /// Right-padded batches: every query of batch row `b` sees keys `0..lengths[b]`
    /// (`lengths.len()` is the batch size; each length is in `1..=keys`).
    Padding {
        /// Real (unpadded) length of each batch row.
        lengths: &'a [usize],
    },
}

/// Host softmax of `scale * s` over rows of `keys`; row `r` is query `r % queries` of batch
/// row `r / (heads * queries)`.
pub(super) fn softmax_host(
    s: &mut [f32],
    [heads, queries, keys]: [usize; 3],
    scale: f32,
    mask: AttentionMask<'_>,
) {
    let rows = SoftmaxRows {
        heads,
        queries,
        keys,
        scale,
        mask,
    };
    for_rows(s, keys, &rows);
}

/// The row kernel of [`softmax_host`].
struct SoftmaxRows<'a> {
    heads: usize,
    queries: usize,
    keys: usize,
    scale: f32,
    mask: AttentionMask<'a>,
}

impl RowKernel for SoftmaxRows<'_> {
    #[inline(always)]
    fn row(&self, row: usize, r: &mut [f32]) {
        let SoftmaxRows {
            heads,
            queries,
            keys,
            scale,
            mask,
        } = *self;
        let visible = match mask {
            AttentionMask::None => keys,
            AttentionMask::Causal { past } => (past + row % queries + 1).min(keys),
            AttentionMask::Padding { lengths } => lengths
                .get(row / (heads * queries))
                .map_or(keys, |&l| l.clamp(1, keys)),
        };
        let (vis, hidden) = r.split_at_mut(visible);
        hidden.fill(0.0);
        // NaN anywhere makes the row NaN, as in the reference.
        let (m, nan) = row_max(vis);
        if nan || m == f32::INFINITY {
            vis.fill(f32::NAN);
            return;
        }
        exp_shifted(vis, m, scale);
        let inv = 1.0 / row_sum(vis);
        vis.iter_mut().for_each(|v| *v *= inv);
    }
}

/// The plain burn formula of [`attention_softmax`].
fn attention_softmax_reference(s: Tensor<4>, scale: f64, mask: AttentionMask<'_>) -> Tensor<4> {
    let [b, _, t, total] = s.dims();
    let s = s * scale;
    let s = match mask {
        AttentionMask::None => s,
        AttentionMask::Padding { lengths } => {
            let hidden = padding_mask(lengths, b, total, &s.device());
            s.mask_fill(hidden, f32::NEG_INFINITY)
        }
        AttentionMask::Causal { past } => {
            let keep =
                Tensor::<2, burn::tensor::Bool>::tril_mask([t, total], past as i64, &s.device())
                    .reshape([1, 1, t, total]);
            s.mask_fill(keep, f32::NEG_INFINITY)
        }
    };
    burn::tensor::activation::softmax(s, 3)
}

/// `[batch, 1, 1, keys]`, true at the padded keys of each row (burn's attention-mask
/// convention: true = masked out).
pub fn padding_mask(
    lengths: &[usize],
    batch: usize,
    keys: usize,
    device: &Device,
) -> Tensor<4, burn::tensor::Bool> {
    let hidden: Vec<bool> = (0..batch)
        .flat_map(|b| {
            let len = lengths.get(b).copied().unwrap_or(keys);
            (0..keys).map(move |k| k >= len)
        })
        .collect();
    Tensor::<4, burn::tensor::Bool>::from_data(TensorData::new(hidden, [batch, 1, 1, keys]), device)
}

/// Attention weights: `softmax(scale * scores)` over the last axis, hidden keys exactly 0.
///
/// # Shapes
/// `scores`: `[batch, heads, queries, keys]` → the same. With [`AttentionMask::Causal`],
/// `keys` is `past + queries`.
pub fn attention_softmax(scores: Tensor<4>, scale: f64, mask: AttentionMask<'_>) -> Tensor<4> {
    if !on_host(&scores) {
        return attention_softmax_reference(scores, scale, mask);
    }
    Tensor::from_dispatch(<Dispatch as FusedBackend>::fused_softmax(
        scores.into_dispatch(),
        scale as f32,
        OwnedMask::of(mask),
    ))
}

/// An [`AttentionMask`] that owns its lengths (it crosses the backend boundary).
#[derive(Debug, Clone)]
pub enum OwnedMask {
    /// [`AttentionMask::None`].
    None,
    /// [`AttentionMask::Causal`] with `past` positions.
    Causal(usize),
    /// [`AttentionMask::Padding`] with the lengths of the batch rows.
    Padding(Vec<usize>),
}

impl OwnedMask {
    pub(crate) fn of(mask: AttentionMask<'_>) -> Self {
        match mask {
            AttentionMask::None => OwnedMask::None,
            AttentionMask::Causal { past } => OwnedMask::Causal(past),
            AttentionMask::Padding { lengths } => OwnedMask::Padding(lengths.to_vec()),
        }
    }

    pub(crate) fn borrowed(&self) -> AttentionMask<'_> {
        match self {
            OwnedMask::None => AttentionMask::None,
            OwnedMask::Causal(past) => AttentionMask::Causal { past: *past },
            OwnedMask::Padding(lengths) => AttentionMask::Padding { lengths },
        }
    }
}

/// `[heads, queries, keys]` of a `[batch, heads, queries, keys]` tensor.
pub(super) fn softmax_dims(s: &FlexTensor) -> [usize; 3] {
    let shape = s.layout().shape();
    [shape[1], shape[2], shape[3]]
}

/// `d = scale * y ⊙ (d - Σ_k d_k y_k)` for one row: the softmax gradient in place of the
/// incoming one (`y` the row's weights).
#[inline(always)]
pub(crate) fn softmax_backward_row(d: &mut [f32], y: &[f32], scale: f32) {
    let dot = row_dot(d, y);
    d.iter_mut()
        .zip(y)
        .for_each(|(d, y)| *d = scale * y * (*d - dot));
}

/// [`softmax_backward_row`] over every row of `keys`, in place of `dy`, in parallel.
fn softmax_backward_in_place(dy: &mut [f32], y: &[f32], keys: usize, scale: f32) {
    if keys == 0 {
        return;
    }
    let rows_per_task = MIN_TASK_ELEMENTS.div_ceil(keys).max(1);
    dy.par_chunks_mut(rows_per_task * keys)
        .zip(y.par_chunks(rows_per_task * keys))
        .for_each(|(d, y)| softmax_backward_rows_here(d, y, keys, scale));
}

/// The attention softmax of consecutive rows on the calling thread: `rows` holds rows
/// `first_row..` of a `[batch, heads, queries, keys]` score tensor (see [`softmax_host`]).
pub(crate) fn softmax_rows_here(
    rows: &mut [f32],
    first_row: usize,
    [heads, queries, keys]: [usize; 3],
    scale: f32,
    mask: AttentionMask<'_>,
) {
    let k = SoftmaxRows {
        heads,
        queries,
        keys,
        scale,
        mask,
    };
    if keys == 0 {
        return;
    }
    simd(|| {
        for (i, r) in rows.chunks_mut(keys).enumerate() {
            k.row(first_row + i, r);
        }
    });
}

/// `[heads, queries, keys]`-shaped backward of [`softmax_rows_here`] on the calling thread:
/// [`softmax_backward_row`] for each row of `d` against `y`.
pub(crate) fn softmax_backward_rows_here(d: &mut [f32], y: &[f32], keys: usize, scale: f32) {
    if keys == 0 {
        return;
    }
    simd(|| {
        for (d, y) in d.chunks_mut(keys).zip(y.chunks(keys)) {
            softmax_backward_row(d, y, scale);
        }
    });
}

/// Backward of the attention softmax from its weights `y` and scale.
#[derive(Debug)]
pub(super) struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    type State = (FlexTensor, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let mut ds = writable(grads.consume::<Flex>(&ops.node));
        if let Some(node) = node {
            let (y, scale) = &ops.state;
            let [_, _, keys] = softmax_dims(y);
            softmax_backward_in_place(values_mut(&mut ds), &host(y), keys, *scale);
            grads.register::<Flex>(node.id, ds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::tests::max_rel_diff;
    use burn::tensor::Distribution;

    #[test]
    fn padding_mask_softmax_matches_the_formula() {
        let d = Device::flex().autodiff();
        let lengths = [7, 3, 1];
        let s =
            Tensor::<4>::random([3, 2, 7, 7], Distribution::Normal(0.0, 4.0), &d).require_grad();
        let w = Tensor::<4>::random([3, 2, 7, 7], Distribution::Default, &d);
        let mask = AttentionMask::Padding { lengths: &lengths };
        let fused = attention_softmax(s.clone(), 0.25, mask);
        let reference = attention_softmax_reference(s.clone(), 0.25, mask);
        assert!(max_rel_diff(fused.clone().detach(), reference.clone().detach()) < 1e-6);
        let g1 = s.grad(&(fused * w.clone()).sum().backward());
        let g2 = s.grad(&(reference * w).sum().backward());
        let (Some(g1), Some(g2)) = (g1, g2) else {
            panic!("no gradient")
        };
        assert!(max_rel_diff(g1, g2) < 1e-5);
    }

    #[test]
    fn attention_softmax_matches_the_formula_with_and_without_cache() {
        let d = Device::flex().autodiff();
        for (t, past) in [(37, 0), (5, 11), (1, 40)] {
            let total = past + t;
            let s = Tensor::<4>::random([2, 3, t, total], Distribution::Normal(0.0, 4.0), &d)
                .require_grad();
            let w = Tensor::<4>::random([2, 3, t, total], Distribution::Default, &d);
            let mask = AttentionMask::Causal { past };
            let fused = attention_softmax(s.clone(), 0.125, mask);
            let reference = attention_softmax_reference(s.clone(), 0.125, mask);
            assert!(max_rel_diff(fused.clone().detach(), reference.clone().detach()) < 1e-6);
            let g1 = s.grad(&(fused * w.clone()).sum().backward());
            let g2 = s.grad(&(reference * w).sum().backward());
            let (Some(g1), Some(g2)) = (g1, g2) else {
                panic!("no gradient")
            };
            assert!(max_rel_diff(g1, g2) < 1e-5);
        }
    }

    #[test]
    fn hidden_keys_get_exactly_zero_weight_and_nan_spreads_over_its_row() {
        let d = Device::flex();
        let s = Tensor::<4>::random([1, 1, 4, 4], Distribution::Default, &d);
        let y = attention_softmax(s, 1.0, AttentionMask::Causal { past: 0 });
        let y = y.into_data().try_into_vec_as::<f32>().unwrap_or_default();
        assert_eq!(&y[1..4], &[0.0, 0.0, 0.0]);
        assert_eq!(y[0], 1.0);
        let mut v = vec![0.5f32; 8];
        v[5] = f32::NAN;
        let s = Tensor::<4>::from_data(TensorData::new(v, [1, 1, 2, 4]), &d);
        let y = attention_softmax(s, 1.0, AttentionMask::None);
        let y = y.into_data().try_into_vec_as::<f32>().unwrap_or_default();
        assert!(y[..4].iter().all(|v| (*v - 0.25).abs() < 1e-7));
        assert!(y[4..].iter().all(|v| v.is_nan()));
    }
}
