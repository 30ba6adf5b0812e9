//! Fused CPU kernels for the exp-heavy operations of a transformer: `gelu_new`, the scaled
//! and causally masked softmax of attention, and the cross-entropy of a language-model head.
//!
//! # Why
//! On burn's CPU backend (flex) `exp`, `tanh` and `sigmoid` are scalar libm calls on one core,
//! and autodiff records every step of a decomposed formula. These three operations ran at
//! ~140 M elements/s and took a third of a GPT-2 training step. Here each one is a single pass
//! over host memory with a vectorizable `exp`, split across the rayon pool, with its gradient
//! written in closed form.
//!
//! # How they run
//! Each is a burn backend extension on flex (and flex under autodiff, with a hand-written
//! backward node), working on the tensors' own buffers: an input that no other tensor shares
//! is overwritten with the result (else it is copied once, in parallel), and the backward pass
//! overwrites the incoming gradient the same way. The autodiff node keeps only what the
//! closed-form gradient needs: the derivative of GELU, the softmax weights, the
//! cross-entropy's `(softmax - onehot) / rows`.
//!
//! # When
//! On the flex device with f32 tensors. On any other device or precision the functions run
//! the plain burn formula they replace, so results agree everywhere up to float rounding
//! (tests compare values and gradients of both paths).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use rayon::prelude::*;

use crate::{NnError, Result};
use lexforge_core::host::{flex_tensor, host, par_scale, values_mut, writable};

/// Rows per rayon task below which the work stays on one thread (a task costs a few µs).
const MIN_TASK_ELEMENTS: usize = 1 << 14;

/// Whether the host kernels apply to `x`: flex (autodiff or not), f32.
pub(crate) fn on_host<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && x.device() == Device::flex()
}

/// `e^x` for `x <= 0` (the only arguments the kernels need), within 2 ulp of the exact value
/// for results >= `f32::MIN_POSITIVE`; smaller results flush to 0; NaN stays NaN.
///
/// Branch-free so loops over it vectorize: `x = n ln2 + r` with `|r| <= ln2 / 2`, `e^r` by a
/// degree-7 Taylor polynomial (truncation < 6e-9 relative), `2^n` built in the exponent bits
/// (`n + 1.5 * 2^23` holds `n` in its low mantissa bits, so no float-to-int conversion).
#[inline(always)]
pub(crate) fn exp_neg(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4; // ln 2 with a short mantissa: n * LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let xc = x.max(-87.0); // keeps 2^n a normal number (NaN becomes -87: restored below)
    let shifted = xc * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    let scale = f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    if x < -87.0 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        p * scale
    }
}

/// The logistic function, stable on both sides (`exp` only of non-positive arguments).
#[inline(always)]
pub(crate) fn sigmoid(z: f32) -> f32 {
    let e = exp_neg(-z.abs());
    let r = 1.0 / (1.0 + e);
    if z >= 0.0 { r } else { e * r }
}

/// Lanes of the reductions: independent accumulators so the loops vectorize (a single float
/// accumulator is a serial dependency chain). The order is fixed, so results are
/// deterministic.
const LANES: usize = 8;

/// Largest element of a non-empty row and whether the row holds a NaN.
#[inline(always)]
fn row_max(r: &[f32]) -> (f32, bool) {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut nan = [false; LANES];
    let chunks = r.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..LANES {
            acc[k] = if c[k] > acc[k] { c[k] } else { acc[k] };
            nan[k] |= c[k].is_nan();
        }
    }
    let mut m = f32::NEG_INFINITY;
    let mut any_nan = nan.iter().any(|&n| n);
    for &v in acc.iter().chain(tail) {
        m = if v > m { v } else { m };
        any_nan |= v.is_nan();
    }
    (m, any_nan)
}

/// Sum of a row (fixed lane order).
#[inline(always)]
pub(crate) fn row_sum(r: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = r.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..LANES {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// `Σ a_k b_k` (fixed lane order).
#[inline(always)]
pub(crate) fn row_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `r[i] = exp(r[i] - m)` for a row whose maximum is `m` (scaled by `scale` first).
#[inline(always)]
fn exp_shifted(r: &mut [f32], m: f32, scale: f32) {
    r.iter_mut().for_each(|v| *v = exp_neg(scale * (*v - m)));
}

/// Runs `f` compiled for the widest instruction set this CPU has (AVX-512, AVX2 + FMA, else
/// the baseline), chosen at run time: the loops inside vectorize to that width.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// A computation on one row, compiled into the vectorized loop of [`for_rows`]. (A trait
/// with an `#[inline(always)]` method, not a closure: a closure called through `Fn` is not
/// inlined into the instruction-set-specific code and runs at baseline speed.)
trait RowKernel: Sync {
    fn row(&self, index: usize, row: &mut [f32]);
}

/// Runs `k.row(i, row)` over the `row_len`-long rows of `data`, in parallel when large.
fn for_rows<K: RowKernel>(data: &mut [f32], row_len: usize, k: &K) {
    if row_len == 0 {
        return;
    }
    if data.len() < 2 * MIN_TASK_ELEMENTS {
        simd(|| {
            for (i, r) in data.chunks_mut(row_len).enumerate() {
                k.row(i, r);
            }
        });
    } else {
        let rows_per_task = MIN_TASK_ELEMENTS.div_ceil(row_len).max(1);
        data.par_chunks_mut(rows_per_task * row_len)
            .enumerate()
            .for_each(|(task, block)| {
                simd(|| {
                    for (i, r) in block.chunks_mut(row_len).enumerate() {
                        k.row(task * rows_per_task + i, r);
                    }
                });
            });
    }
}

/// An elementwise function and its derivative, for [`map_host`] (a trait for the same reason
/// as [`RowKernel`]).
trait Elementwise: Sync {
    /// `(f(x), f'(x))`.
    fn apply(x: f32) -> (f32, f32);
}

/// Applies `K` to every element in place (`x` becomes `f(x)`), in parallel and vectorized;
/// returns the derivatives when `want_grad` (else empty, and the derivative code is dropped by
/// the compiler).
fn map_host<K: Elementwise>(x: &mut [f32], want_grad: bool) -> Vec<f32> {
    if !want_grad {
        x.par_chunks_mut(MIN_TASK_ELEMENTS).for_each(|y| {
            simd(|| y.iter_mut().for_each(|v| *v = K::apply(*v).0));
        });
        return Vec::new();
    }
    let mut g = vec![0.0f32; x.len()];
    x.par_chunks_mut(MIN_TASK_ELEMENTS)
        .zip(g.par_chunks_mut(MIN_TASK_ELEMENTS))
        .for_each(|(y, g)| {
            simd(|| {
                y.iter_mut().zip(g.iter_mut()).for_each(|(y, g)| {
                    (*y, *g) = K::apply(*y);
                });
            });
        });
    g
}

// --- GELU -----------------------------------------------------------------------------------

const GELU_C: f32 = 0.797_884_6; // sqrt(2 / pi)
const GELU_A: f32 = 0.044_715;

/// `gelu_new` and its derivative: `0.5 x (1 + tanh(u))` = `x sigmoid(2u)`,
/// `u = c (x + a x^3)`.
struct GeluTanh;

impl Elementwise for GeluTanh {
    #[inline(always)]
    fn apply(x: f32) -> (f32, f32) {
        const K: f32 = 2.0 * GELU_C;
        let s = sigmoid(K * (x + GELU_A * x * x * x));
        (
            x * s,
            s + x * s * (1.0 - s) * K * (1.0 + 3.0 * GELU_A * x * x),
        )
    }
}

/// Host GELU in place: `x` becomes `y`; returns `dy/dx` when asked (else empty).
fn gelu_host(x: &mut [f32], want_grad: bool) -> Vec<f32> {
    map_host::<GeluTanh>(x, want_grad)
}

/// The plain burn formula of `gelu_new` (other devices and precisions).
fn gelu_reference<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let c2 = 2.0 * (2.0 / std::f64::consts::PI).sqrt();
    let cube = x.clone() * x.clone() * x.clone();
    let u2 = (x.clone() + cube * f64::from(GELU_A)) * c2;
    x * burn::tensor::activation::sigmoid(u2)
}

/// `gelu_new`, the tanh approximation of GELU GPT-2 was trained with:
/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, elementwise, any shape.
pub fn gelu_new<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_host(&x) {
        return gelu_reference(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedBackend>::fused_gelu(
        x.into_dispatch(),
        false,
    ))
}

/// `erf(x)` (Abramowitz & Stegun 7.1.26: absolute error <= 1.5e-7), odd, NaN stays NaN.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_72 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp_neg(-a * a);
    if x < 0.0 { -y } else { y }
}

/// Exact GELU and its derivative: `x Φ(x)`, `Φ(x) + x φ(x)`.
struct GeluErf;

impl Elementwise for GeluErf {
    #[inline(always)]
    fn apply(x: f32) -> (f32, f32) {
        const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
        (x * cdf, cdf + x * INV_SQRT_2PI * exp_neg(-0.5 * x * x))
    }
}

/// Host exact GELU in place: `x` becomes `x Φ(x)`; returns `Φ(x) + x φ(x)` when asked.
fn gelu_erf_host(x: &mut [f32], want_grad: bool) -> Vec<f32> {
    map_host::<GeluErf>(x, want_grad)
}

/// Exact GELU, `x Φ(x) = 0.5 x (1 + erf(x / sqrt 2))` (HF `hidden_act = "gelu"`, BERT),
/// elementwise, any shape.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_host(&x) {
        return burn::tensor::activation::gelu(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedBackend>::fused_gelu(
        x.into_dispatch(),
        true,
    ))
}

// --- attention softmax ----------------------------------------------------------------------

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
fn softmax_host(
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

// --- cross-entropy --------------------------------------------------------------------------

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

// --- the operations on flex's buffers -------------------------------------------------------

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

/// The fused kernels as backend operations (flex, and flex under autodiff). Inputs are f32.
#[backend_extension(Flex, Autodiff)]
pub trait FusedBackend: Backend {
    /// GELU of every element: exact (`x Φ(x)`) or the tanh form (`gelu_new`).
    fn fused_gelu(x: FloatTensor<Self>, exact: bool) -> FloatTensor<Self>;

    /// `softmax(scale * scores)` over the last axis of `[batch, heads, queries, keys]`, hidden
    /// keys exactly 0.
    fn fused_softmax(scores: FloatTensor<Self>, scale: f32, mask: OwnedMask) -> FloatTensor<Self>;

    /// Mean cross-entropy `[1]` of `logits` `[rows, vocab]` against `targets` (one valid id
    /// per row, checked by the caller).
    fn fused_cross_entropy(logits: FloatTensor<Self>, targets: Vec<usize>) -> FloatTensor<Self>;
}

/// GELU in place; returns the derivative when `want_grad` (else empty).
fn gelu_in_place(x: &mut [f32], exact: bool, want_grad: bool) -> Vec<f32> {
    if exact {
        gelu_erf_host(x, want_grad)
    } else {
        gelu_host(x, want_grad)
    }
}

/// `[heads, queries, keys]` of a `[batch, heads, queries, keys]` tensor.
fn softmax_dims(s: &FlexTensor) -> [usize; 3] {
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

/// `a *= b` elementwise, in parallel.
fn mul_in_place(a: &mut [f32], b: &[f32]) {
    a.par_chunks_mut(MIN_TASK_ELEMENTS)
        .zip(b.par_chunks(MIN_TASK_ELEMENTS))
        .for_each(|(a, b)| simd(|| a.iter_mut().zip(b).for_each(|(a, b)| *a *= b)));
}

/// The cross-entropy of `logits` (overwritten: with `(softmax - onehot) / rows` when
/// `want_grad`) as a `[1]` tensor.
fn cross_entropy_in_place(
    logits: &mut FlexTensor,
    targets: &[usize],
    want_grad: bool,
) -> FlexTensor {
    let vocab = logits.layout().shape()[1];
    let loss = cross_entropy_host(values_mut(logits), vocab, targets, want_grad);
    flex_tensor(vec![loss], &[1])
}

impl FusedBackend for Flex {
    fn fused_gelu(x: FlexTensor, exact: bool) -> FlexTensor {
        let mut y = writable(x);
        gelu_in_place(values_mut(&mut y), exact, false);
        y
    }

    fn fused_softmax(scores: FlexTensor, scale: f32, mask: OwnedMask) -> FlexTensor {
        let dims = softmax_dims(&scores);
        let mut y = writable(scores);
        softmax_host(values_mut(&mut y), dims, scale, mask.borrowed());
        y
    }

    fn fused_cross_entropy(logits: FlexTensor, targets: Vec<usize>) -> FlexTensor {
        cross_entropy_in_place(&mut writable(logits), &targets, false)
    }
}

/// Backward of GELU: `dx = dy ⊙ g`, `g` the derivative saved by the forward pass.
#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let mut dx = writable(grads.consume::<Flex>(&ops.node));
        if let Some(node) = node {
            mul_in_place(values_mut(&mut dx), &host(&ops.state));
            grads.register::<Flex>(node.id, dx);
        }
    }
}

/// Backward of the attention softmax from its weights `y` and scale.
#[derive(Debug)]
struct SoftmaxBackward;

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

/// Backward of the cross-entropy: `dlogits = dloss * (softmax - onehot) / rows`, the matrix
/// saved by the forward pass.
#[derive(Debug)]
struct CrossEntropyBackward;

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

impl<C: CheckpointStrategy> FusedBackend for Autodiff<Flex, C> {
    fn fused_gelu(x: FloatTensor<Self>, exact: bool) -> FloatTensor<Self> {
        let prep = GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.into_primitive();
        match prep {
            OpsKind::Tracked(prep) => {
                let mut y = writable(x);
                let g = gelu_in_place(values_mut(&mut y), exact, true);
                let g = flex_tensor(g, y.layout().shape());
                prep.finish(g, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(<Flex as FusedBackend>::fused_gelu(x, exact)),
        }
    }

    fn fused_softmax(scores: FloatTensor<Self>, scale: f32, mask: OwnedMask) -> FloatTensor<Self> {
        let prep = SoftmaxBackward
            .prepare::<C>([scores.node()])
            .compute_bound()
            .stateful();
        let y = <Flex as FusedBackend>::fused_softmax(scores.into_primitive(), scale, mask);
        match prep {
            OpsKind::Tracked(prep) => prep.finish((y.clone(), scale), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_cross_entropy(logits: FloatTensor<Self>, targets: Vec<usize>) -> FloatTensor<Self> {
        let prep = CrossEntropyBackward
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful();
        let logits = logits.into_primitive();
        match prep {
            OpsKind::Tracked(prep) => {
                let mut g = writable(logits);
                let loss = cross_entropy_in_place(&mut g, &targets, true);
                prep.finish(g, loss)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(<Flex as FusedBackend>::fused_cross_entropy(logits, targets))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let exact = f64::from(x).exp();
            let got = f64::from(exp_neg(x));
            worst = worst.max(((got - exact) / exact).abs());
            x += 0.000_71;
        }
        // 2 ulp of f32 is 2^-22 relative.
        assert!(worst < 2.4e-7, "max relative error {worst}");
        assert_eq!(exp_neg(0.0), 1.0);
        assert_eq!(exp_neg(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_neg(-100.0), 0.0);
        assert!(exp_neg(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_is_stable_at_both_ends() {
        assert_eq!(sigmoid(100.0), 1.0);
        assert_eq!(sigmoid(-100.0), 0.0);
        assert!((sigmoid(0.3) - 1.0 / (1.0 + (-0.3f32).exp())).abs() < 1e-7);
        assert!(sigmoid(f32::NAN).is_nan());
    }

    fn max_rel_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let a = a.into_data().try_into_vec_as::<f32>().unwrap_or_default();
        let b = b.into_data().try_into_vec_as::<f32>().unwrap_or_default();
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0.0, f32::max)
    }

    #[test]
    fn gelu_matches_the_formula_in_value_and_gradient() {
        let d = Device::flex().autodiff();
        let x =
            Tensor::<3>::random([2, 33, 700], Distribution::Normal(0.0, 3.0), &d).require_grad();
        let w = Tensor::<3>::random([2, 33, 700], Distribution::Default, &d);
        let fused = gelu_new(x.clone());
        let reference = gelu_reference(x.clone());
        assert!(max_rel_diff(fused.clone().detach(), reference.clone().detach()) < 1e-6);
        let g1 = x.grad(&(fused * w.clone()).sum().backward());
        let g2 = x.grad(&(reference * w).sum().backward());
        let (Some(g1), Some(g2)) = (g1, g2) else {
            panic!("no gradient")
        };
        assert!(max_rel_diff(g1, g2) < 1e-5);
    }

    #[test]
    fn exact_gelu_matches_burn_in_value_and_gradient() {
        let d = Device::flex().autodiff();
        let x = Tensor::<2>::random([70, 300], Distribution::Normal(0.0, 3.0), &d).require_grad();
        let w = Tensor::<2>::random([70, 300], Distribution::Default, &d);
        let fused = gelu(x.clone());
        let reference = burn::tensor::activation::gelu(x.clone());
        assert!(max_rel_diff(fused.clone().detach(), reference.clone().detach()) < 1e-6);
        let g1 = x.grad(&(fused * w.clone()).sum().backward());
        let g2 = x.grad(&(reference * w).sum().backward());
        let (Some(g1), Some(g2)) = (g1, g2) else {
            panic!("no gradient")
        };
        assert!(max_rel_diff(g1, g2) < 1e-5);
    }

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
    fn inputs_other_tensors_share_are_left_unchanged() {
        for d in [Device::flex(), Device::flex().autodiff()] {
            let x = Tensor::<4>::random([2, 3, 5, 5], Distribution::Normal(0.0, 2.0), &d);
            let before = x.to_data();
            let _ = gelu_new(x.clone());
            let _ = gelu(x.clone());
            let _ = attention_softmax(x.clone(), 0.5, AttentionMask::Causal { past: 0 });
            let targets = Tensor::<2, Int>::zeros([150, 1], &d);
            let _ = cross_entropy(x.clone().reshape([150, 1]), targets);
            x.to_data().assert_eq(&before, true);
        }
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
