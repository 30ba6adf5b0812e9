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
//!
//! # Layout
//! One file per operation family — `gelu.rs` (both GELU forms), `softmax.rs` (the attention
//! softmax and its row kernels), `cross_entropy.rs` — each with its host kernel, the burn
//! formula it replaces, its public function and its backward node; `backend.rs` registers them
//! as the [`FusedBackend`] extension of flex and flex under autodiff. This file holds what they
//! share: the vectorizable `exp`, the fixed-order reductions, the instruction-set dispatch and
//! the parallel row and element loops.

mod backend;
mod cross_entropy;
mod gelu;
mod softmax;

pub use backend::FusedBackend;
pub use cross_entropy::cross_entropy;
pub use gelu::{gelu, gelu_new};
pub use softmax::{AttentionMask, OwnedMask, attention_softmax, padding_mask};
pub(crate) use softmax::{softmax_backward_rows_here, softmax_rows_here};

use burn::tensor::{DType, Device, Tensor};
use rayon::prelude::*;

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

/// `a *= b` elementwise, in parallel.
fn mul_in_place(a: &mut [f32], b: &[f32]) {
    a.par_chunks_mut(MIN_TASK_ELEMENTS)
        .zip(b.par_chunks(MIN_TASK_ELEMENTS))
        .for_each(|(a, b)| simd(|| a.iter_mut().zip(b).for_each(|(a, b)| *a *= b)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Int};

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

    pub(super) fn max_rel_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let a = a.into_data().try_into_vec_as::<f32>().unwrap_or_default();
        let b = b.into_data().try_into_vec_as::<f32>().unwrap_or_default();
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0.0, f32::max)
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
}
