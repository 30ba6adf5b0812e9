//! Multi-head self-attention over packed queries, keys and values as one operation.
//!
//! burn's route for `softmax(q kᵀ / √d) v` on flex is a chain of operations: the heads are split
//! out of the projection (copies into `[batch, heads, t, head_dim]`), two batched products, the
//! softmax, and a copy that merges the heads again, each with its own backward node; the copies
//! and the merge run on one thread. On the flex device with f32 tensors, [`self_attention`] is
//! instead one backend extension: every `(batch row, head)` pair is one task on the rayon pool
//! that reads its queries, keys and values in place from the packed projection, computes its
//! scores, softmax and output with single-threaded `gemm` calls, and writes its part of the
//! merged output; the backward node does the same for the four gradient products. The softmax
//! weights are kept for the backward pass (as burn's route keeps them for its product).
//!
//! Every other device (and a model that applies dropout to the attention weights while
//! training) runs the plain formulas ([`self_attention_reference`]), so results agree up to
//! float rounding (tests compare values and gradients).
//!
//! # Shapes
//! `qkv` `[batch, t, 3 d]` (queries, keys, values side by side, as GPT-2's `c_attn` makes them)
//! → `[batch, t, d]`, heads merged (`d = heads * head_dim`). Scores are scaled by
//! `1 / √head_dim`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::fused::{
    AttentionMask, OwnedMask, attention_softmax, on_host, softmax_backward_rows_here,
    softmax_rows_here,
};
use crate::host_gemm::{Mat, Threads, matmul_into};
use lexforge_core::host::{flex_tensor, host, par_zeros};

/// Self-attention over a packed `[batch, t, 3 d]` projection as a backend operation (flex,
/// and flex under autodiff).
#[backend_extension(Flex, Autodiff)]
pub trait SelfAttentionBackend: Backend {
    /// See the module documentation; `mask` is [`OwnedMask::None`], causal without cached
    /// positions, or padding.
    fn self_attention(qkv: FloatTensor<Self>, heads: usize, mask: OwnedMask) -> FloatTensor<Self>;
}

/// Multi-head self-attention; see the module documentation.
///
/// # Panics
/// When `heads` does not divide `d`, or `mask` is causal with cached positions (the keys here
/// are the queries' own positions). Both are caller bugs: the models check their configs.
pub fn self_attention(qkv: Tensor<3>, heads: usize, mask: AttentionMask<'_>) -> Tensor<3> {
    let [_, _, d3] = qkv.dims();
    assert!(
        heads > 0 && d3 % (3 * heads) == 0,
        "[batch, t, 3 d] with d a multiple of the heads"
    );
    assert!(
        !matches!(mask, AttentionMask::Causal { past } if past > 0),
        "self-attention has no cached positions"
    );
    if !on_host(&qkv) {
        return self_attention_reference(qkv, heads, mask);
    }
    Tensor::from_dispatch(<Dispatch as SelfAttentionBackend>::self_attention(
        qkv.into_dispatch(),
        heads,
        OwnedMask::of(mask),
    ))
}

/// The plain formulas of [`self_attention`] (every device): split heads, `q kᵀ`, the
/// attention softmax, `· v`, merge heads.
pub fn self_attention_reference(
    qkv: Tensor<3>,
    heads: usize,
    mask: AttentionMask<'_>,
) -> Tensor<3> {
    let [b, t, d3] = qkv.dims();
    let d = d3 / 3;
    let hd = d / heads;
    let split = |i: usize| {
        qkv.clone()
            .narrow(2, i * d, d)
            .reshape([b, t, heads, hd])
            .swap_dims(1, 2)
    };
    let (q, k, v) = (split(0), split(1), split(2));
    let weights = attention_softmax(q.matmul(k.swap_dims(2, 3)), scale_of(hd), mask);
    weights.matmul(v).swap_dims(1, 2).reshape([b, t, d])
}

fn scale_of(head_dim: usize) -> f64 {
    1.0 / (head_dim as f64).sqrt()
}

/// Sizes of one call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    d: usize,
    heads: usize,
}

impl Dims {
    fn of(qkv: &FlexTensor, heads: usize) -> Self {
        let s = qkv.layout().shape();
        Dims {
            b: s[0],
            t: s[1],
            d: s[2] / 3,
            heads,
        }
    }

    fn hd(&self) -> usize {
        self.d / self.heads
    }

    /// Queries, keys or values (`part` 0, 1, 2) of `(batch row, head)` `bh` as a `[t, hd]`
    /// view of the packed, contiguous `qkv`.
    fn view<'a>(&self, qkv: &'a [f32], bh: usize, part: usize) -> Mat<'a> {
        let (b, h) = (bh / self.heads, bh % self.heads);
        let start = b * self.t * 3 * self.d + part * self.d + h * self.hd();
        Mat::strided(&qkv[start..], self.t, self.hd(), 3 * self.d)
    }
}

/// Copies head-major parts `[batch, heads, t, hd]` into their columns of row-major rows
/// `[batch, t, width]`: part `p` of `parts` goes to columns `p * d ..` (`width = parts.len() *
/// d`), in parallel over rows.
fn merge_heads(parts: &[&[f32]], dims: Dims) -> Vec<f32> {
    let Dims { t, d, heads, .. } = dims;
    let hd = dims.hd();
    let width = parts.len() * d;
    let mut out = par_zeros(dims.b * t * width);
    out.par_chunks_mut(width)
        .enumerate()
        .for_each(|(row, dst)| {
            let (b, i) = (row / t, row % t);
            for (p, src) in parts.iter().enumerate() {
                for h in 0..heads {
                    let from = ((b * heads + h) * t + i) * hd;
                    let to = p * d + h * hd;
                    dst[to..to + hd].copy_from_slice(&src[from..from + hd]);
                }
            }
        });
    out
}

/// The forward pass: the merged output `[b, t, d]` and the softmax weights `[b, heads, t, t]`.
fn forward_host(qkv: &FlexTensor, dims: Dims, mask: &OwnedMask) -> (FlexTensor, FlexTensor) {
    let Dims { b, t, d, heads } = dims;
    let hd = dims.hd();
    let qkv = host(qkv);
    let scale = scale_of(hd) as f32;
    let mask = mask.borrowed();
    let mut probs = par_zeros(b * heads * t * t);
    let mut heads_out = par_zeros(b * heads * t * hd);
    probs
        .par_chunks_mut((t * t).max(1))
        .zip(heads_out.par_chunks_mut((t * hd).max(1)))
        .enumerate()
        .for_each(|(bh, (p, o))| {
            let (q, k, v) = (
                dims.view(&qkv, bh, 0),
                dims.view(&qkv, bh, 1),
                dims.view(&qkv, bh, 2),
            );
            matmul_into(p, q, k.t(), false, Threads::One);
            softmax_rows_here(p, bh * t, [heads, t, t], scale, mask);
            matmul_into(o, Mat::rows(p, t, t), v, false, Threads::One);
        });
    let out = merge_heads(&[&heads_out], dims);
    (
        flex_tensor(out, &[b, t, d]),
        flex_tensor(probs, &[b, heads, t, t]),
    )
}

/// The gradient of the packed projection `[b, t, 3 d]` for the output gradient `dy`
/// `[b, t, d]`: per `(batch row, head)`, `dv = pᵀ dy`, `dp = dy vᵀ`, the softmax backward
/// `ds`, `dq = ds k`, `dk = dsᵀ q` (the scale is inside `ds`).
fn backward_host(qkv: &FlexTensor, probs: &FlexTensor, dy: &FlexTensor, dims: Dims) -> FlexTensor {
    let Dims { b, t, d, heads } = dims;
    let hd = dims.hd();
    let (qkv, probs, dy) = (host(qkv), host(probs), host(dy));
    let scale = scale_of(hd) as f32;
    let size = (t * hd).max(1);
    let (mut dq, mut dk, mut dv) = (
        par_zeros(b * heads * t * hd),
        par_zeros(b * heads * t * hd),
        par_zeros(b * heads * t * hd),
    );
    dq.par_chunks_mut(size)
        .zip(dk.par_chunks_mut(size))
        .zip(dv.par_chunks_mut(size))
        .zip(probs.par_chunks((t * t).max(1)))
        .enumerate()
        .for_each(|(bh, (((dq, dk), dv), p))| {
            let (q, k, v) = (
                dims.view(&qkv, bh, 0),
                dims.view(&qkv, bh, 1),
                dims.view(&qkv, bh, 2),
            );
            let (bi, h) = (bh / heads, bh % heads);
            let g = Mat::strided(&dy[bi * t * d + h * hd..], t, hd, d);
            let pm = Mat::rows(p, t, t);
            matmul_into(dv, pm.t(), g, false, Threads::One);
            let mut ds = vec![0.0f32; t * t];
            matmul_into(&mut ds, g, v.t(), false, Threads::One);
            softmax_backward_rows_here(&mut ds, p, t, scale);
            let dsm = Mat::rows(&ds, t, t);
            matmul_into(dq, dsm, k, false, Threads::One);
            matmul_into(dk, dsm.t(), q, false, Threads::One);
        });
    flex_tensor(merge_heads(&[&dq, &dk, &dv], dims), &[b, t, 3 * d])
}

impl SelfAttentionBackend for Flex {
    fn self_attention(qkv: FlexTensor, heads: usize, mask: OwnedMask) -> FlexTensor {
        forward_host(&qkv, Dims::of(&qkv, heads), &mask).0
    }
}

/// What the backward node keeps: the projection, the softmax weights and the sizes.
#[derive(Debug, Clone)]
struct Saved {
    qkv: FlexTensor,
    probs: FlexTensor,
    dims: Dims,
}

#[derive(Debug)]
struct SelfAttentionBackward;

impl Backward<Flex, 1> for SelfAttentionBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node {
            let s = &ops.state;
            grads.register::<Flex>(node.id, backward_host(&s.qkv, &s.probs, &dy, s.dims));
        }
    }
}

impl<C: CheckpointStrategy> SelfAttentionBackend for Autodiff<Flex, C> {
    fn self_attention(qkv: FloatTensor<Self>, heads: usize, mask: OwnedMask) -> FloatTensor<Self> {
        let prep = SelfAttentionBackward
            .prepare::<C>([qkv.node()])
            .compute_bound()
            .stateful();
        let qkv = qkv.into_primitive();
        let dims = Dims::of(&qkv, heads);
        let (y, probs) = forward_host(&qkv, dims, &mask);
        match prep {
            OpsKind::Tracked(prep) => prep.finish(Saved { qkv, probs, dims }, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tolerance};

    use super::*;

    fn check(b: usize, t: usize, d: usize, heads: usize, mask: AttentionMask<'_>) {
        let device = Device::flex().autodiff();
        lexforge_core::Seed(3).apply_to(&device);
        let qkv = Tensor::<3>::random([b, t, 3 * d], Distribution::Normal(0.0, 1.5), &device)
            .require_grad();
        let w = Tensor::<3>::random([b, t, d], Distribution::Normal(0.0, 1.0), &device);
        let ours = self_attention(qkv.clone(), heads, mask);
        let plain = self_attention_reference(qkv.clone(), heads, mask);
        let tol = Tolerance::<f32>::absolute(1e-5);
        ours.to_data().assert_approx_eq(&plain.to_data(), tol);
        let ga = (ours * w.clone()).sum().backward();
        let gb = (plain * w).sum().backward();
        let (Some(a), Some(c)) = (qkv.grad(&ga), qkv.grad(&gb)) else {
            panic!("no gradient")
        };
        a.to_data().assert_approx_eq(&c.to_data(), tol);
    }

    #[test]
    fn causal_attention_equals_the_plain_formulas_in_value_and_gradient() {
        check(2, 7, 12, 3, AttentionMask::Causal { past: 0 });
        check(1, 1, 8, 2, AttentionMask::Causal { past: 0 });
    }

    #[test]
    fn padded_and_unmasked_attention_equal_the_plain_formulas() {
        check(
            3,
            6,
            8,
            2,
            AttentionMask::Padding {
                lengths: &[6, 2, 1],
            },
        );
        check(2, 5, 8, 4, AttentionMask::None);
    }

    #[test]
    fn a_strided_projection_without_autodiff_gives_the_plain_values() {
        let device = Device::flex();
        let wide = Tensor::<3>::random([2, 5, 40], Distribution::Normal(0.0, 1.0), &device);
        let qkv = wide.narrow(2, 4, 24);
        let mask = AttentionMask::Causal { past: 0 };
        self_attention(qkv.clone(), 2, mask)
            .to_data()
            .assert_approx_eq::<f32>(
                &self_attention_reference(qkv, 2, mask).to_data(),
                Tolerance::absolute(1e-5),
            );
    }
}
