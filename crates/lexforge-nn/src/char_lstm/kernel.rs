//! The host arithmetic of one LSTM layer over a whole sequence: forward with the state the
//! backward pass needs, and the analytic backward pass. Pure slices, time-major, no burn.
//!
//! # Layout
//! `T` steps, `B` sequences, `H` hidden units, `G = 4H`. Gate pre-activations are rows of `G`
//! values in the order input, forget, output, cell (`[i | f | o | g]`, `H` each).
//!
//! - `zx` `[T, B, G]`: the input side of every gate with both biases, `x_t W_x + b`;
//! - `w` `[H, G]`: the hidden side of the four gates side by side;
//! - `h0`, `c0` `[B, H]`: the state before the first step;
//! - `y` `[T + 1, B, H]`: `y[t] = h_{t+1}` for `t < T`, and `y[T] = c_T` (the final cell, so the
//!   whole result is one tensor with one gradient).
//!
//! Per step `z = zx[t] + h_t w` (one matrix product for all four gates), then in one pass
//! `i, f, o = σ(z_i, z_f, z_o)`, `g = tanh(z_g)`, `c' = f c + i g`, `h' = o tanh(c')`.

use crate::fused::{sigmoid, simd};
use crate::host_gemm::{Mat, matmul_into};

/// The sizes of one run: `t` steps of `b` sequences through `h` hidden units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    pub t: usize,
    pub b: usize,
    pub h: usize,
}

impl Dims {
    fn bh(&self) -> usize {
        self.b * self.h
    }
    fn bg(&self) -> usize {
        self.b * 4 * self.h
    }
}

/// What the backward pass needs from the forward pass (besides its inputs and `y`).
#[derive(Debug)]
pub(crate) struct Saved {
    /// The activated gates `[T, B, G]` (`i, f, o` after σ, `g` after tanh).
    acts: Vec<f32>,
    /// The cells `c_1 … c_T`, `[T, B, H]`.
    cells: Vec<f32>,
}

/// The gradients of a run with respect to its four inputs.
pub(crate) struct Grads {
    /// `[T, B, G]`.
    pub zx: Vec<f32>,
    /// `[H, G]`.
    pub w: Vec<f32>,
    /// `[B, H]`.
    pub h0: Vec<f32>,
    /// `[B, H]`.
    pub c0: Vec<f32>,
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// The forward pass; also returns what [`backward`] needs when `save`.
///
/// # Panics
/// When a slice's length disagrees with `d` (a caller bug).
pub(crate) fn forward(
    d: Dims,
    zx: &[f32],
    w: &[f32],
    h0: &[f32],
    c0: &[f32],
    save: bool,
) -> (Vec<f32>, Option<Saved>) {
    let (bh, bg, g) = (d.bh(), d.bg(), 4 * d.h);
    assert_eq!(zx.len(), d.t * bg, "zx is not [T, B, 4H]");
    assert_eq!(w.len(), d.h * g, "w is not [H, 4H]");
    assert_eq!(h0.len(), bh, "h0 is not [B, H]");
    assert_eq!(c0.len(), bh, "c0 is not [B, H]");
    let mut y = vec![0.0f32; (d.t + 1) * bh];
    // With `save`, the gates of every step are kept (they become the activations); without,
    // one step's worth of scratch.
    let mut acts = vec![0.0f32; if save { d.t * bg } else { bg }];
    let mut cells = vec![0.0f32; if save { d.t * bh } else { 0 }];
    let mut c = c0.to_vec();
    for s in 0..d.t {
        let z = if save {
            &mut acts[s * bg..(s + 1) * bg]
        } else {
            &mut acts[..]
        };
        z.copy_from_slice(&zx[s * bg..(s + 1) * bg]);
        let (done, rest) = y.split_at_mut(s * bh);
        let h_prev = if s == 0 { h0 } else { &done[(s - 1) * bh..] };
        matmul_into(z, Mat::rows(h_prev, d.b, d.h), Mat::rows(w, d.h, g), true);
        let h_out = &mut rest[..bh];
        simd(|| {
            for ((z, c), h_out) in z
                .chunks_exact_mut(g)
                .zip(c.chunks_exact_mut(d.h))
                .zip(h_out.chunks_exact_mut(d.h))
            {
                cell_forward(z, c, h_out);
            }
        });
        if save {
            cells[s * bh..(s + 1) * bh].copy_from_slice(&c);
        }
    }
    y[d.t * bh..].copy_from_slice(&c);
    (y, save.then_some(Saved { acts, cells }))
}

/// One sequence's step: the gate pre-activations `z` `[G]` become activations, the cell `c`
/// `[H]` is updated and the hidden state written to `h_out` `[H]`.
#[inline(always)]
fn cell_forward(z: &mut [f32], c: &mut [f32], h_out: &mut [f32]) {
    let hd = c.len();
    let (zi, rest) = z.split_at_mut(hd);
    let (zf, rest) = rest.split_at_mut(hd);
    let (zo, zg) = rest.split_at_mut(hd);
    for j in 0..hd {
        let i = sigmoid(zi[j]);
        let f = sigmoid(zf[j]);
        let o = sigmoid(zo[j]);
        let gg = tanh(zg[j]);
        let cn = f * c[j] + i * gg;
        (zi[j], zf[j], zo[j], zg[j]) = (i, f, o, gg);
        c[j] = cn;
        h_out[j] = o * tanh(cn);
    }
}

/// The backward pass of [`forward`] for the output gradient `dy` `[T + 1, B, H]` (its last
/// row is the final cell's gradient), from the forward pass's inputs, output `y` and saved
/// state.
///
/// # Panics
/// When a slice's length disagrees with `d` (a caller bug).
pub(crate) fn backward(
    d: Dims,
    dy: &[f32],
    w: &[f32],
    h0: &[f32],
    c0: &[f32],
    y: &[f32],
    saved: &Saved,
) -> Grads {
    let (bh, bg, g) = (d.bh(), d.bg(), 4 * d.h);
    assert_eq!(dy.len(), (d.t + 1) * bh, "dy is not [T + 1, B, H]");
    assert_eq!(y.len(), (d.t + 1) * bh, "y is not [T + 1, B, H]");
    assert_eq!(saved.acts.len(), d.t * bg, "saved gates do not match");
    let mut dzx = vec![0.0f32; d.t * bg];
    let mut dh_next = vec![0.0f32; bh];
    let mut dc = dy[d.t * bh..].to_vec();
    for s in (0..d.t).rev() {
        let acts = &saved.acts[s * bg..(s + 1) * bg];
        let cell = &saved.cells[s * bh..(s + 1) * bh];
        let cell_prev = if s == 0 {
            c0
        } else {
            &saved.cells[(s - 1) * bh..s * bh]
        };
        let dz = &mut dzx[s * bg..(s + 1) * bg];
        let dy_s = &dy[s * bh..(s + 1) * bh];
        simd(|| {
            for r in 0..d.b {
                let row = r * d.h..(r + 1) * d.h;
                cell_backward(
                    &acts[r * g..(r + 1) * g],
                    &cell[row.clone()],
                    &cell_prev[row.clone()],
                    &dy_s[row.clone()],
                    &dh_next[row.clone()],
                    &mut dc[row],
                    &mut dz[r * g..(r + 1) * g],
                );
            }
        });
        // The gradient reaching h_t through this step's hidden side.
        matmul_into(
            &mut dh_next,
            Mat::rows(dz, d.b, g),
            Mat::transposed(w, g, d.h),
            false,
        );
    }
    // dW = Σ_t h_tᵀ dz_t: h_0 for the first step, the outputs y[0..T-1] for the others.
    let mut dw = vec![0.0f32; d.h * g];
    matmul_into(
        &mut dw,
        Mat::transposed(h0, d.h, d.b),
        Mat::rows(&dzx[..bg], d.b, g),
        false,
    );
    if d.t > 1 {
        let rows = (d.t - 1) * d.b;
        matmul_into(
            &mut dw,
            Mat::transposed(&y[..rows * d.h], d.h, rows),
            Mat::rows(&dzx[bg..], rows, g),
            true,
        );
    }
    Grads {
        zx: dzx,
        w: dw,
        h0: dh_next,
        c0: dc,
    }
}

/// One sequence's step backwards: from the gradients reaching `h_{t+1}` (`dy + dh_next`) and
/// `c_{t+1}` (`dc`), the gate gradients `dz` `[G]`; `dc` becomes the gradient of `c_t`.
#[inline(always)]
fn cell_backward(
    acts: &[f32],
    cell: &[f32],
    cell_prev: &[f32],
    dy: &[f32],
    dh_next: &[f32],
    dc: &mut [f32],
    dz: &mut [f32],
) {
    let hd = cell.len();
    let (ai, rest) = acts.split_at(hd);
    let (af, rest) = rest.split_at(hd);
    let (ao, ag) = rest.split_at(hd);
    let (di, rest) = dz.split_at_mut(hd);
    let (df, rest) = rest.split_at_mut(hd);
    let (d_o, dg) = rest.split_at_mut(hd);
    for j in 0..hd {
        let (i, f, o, gg) = (ai[j], af[j], ao[j], ag[j]);
        let tc = tanh(cell[j]);
        let dh = dy[j] + dh_next[j];
        let dcc = dc[j] + dh * o * (1.0 - tc * tc);
        d_o[j] = dh * tc * o * (1.0 - o);
        di[j] = dcc * gg * i * (1.0 - i);
        df[j] = dcc * cell_prev[j] * f * (1.0 - f);
        dg[j] = dcc * i * (1.0 - gg * gg);
        dc[j] = dcc * f;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.7311).sin()).collect()
    }

    /// The loss `Σ y ⊙ v` of a run, in f64-free plain f32 (for finite differences).
    fn loss(d: Dims, zx: &[f32], w: &[f32], h0: &[f32], c0: &[f32], v: &[f32]) -> f64 {
        let (y, _) = forward(d, zx, w, h0, c0, false);
        y.iter().zip(v).map(|(a, b)| f64::from(a * b)).sum()
    }

    #[test]
    fn the_analytic_gradient_matches_finite_differences_for_every_input() {
        let d = Dims { t: 3, b: 2, h: 3 };
        let g = 4 * d.h;
        let zx = values(d.t * d.b * g, 1.0);
        let w: Vec<f32> = values(d.h * g, 2.0).iter().map(|x| x * 0.5).collect();
        let h0 = values(d.b * d.h, 3.0);
        let c0 = values(d.b * d.h, 4.0);
        let v = values((d.t + 1) * d.b * d.h, 5.0);
        let (y, saved) = forward(d, &zx, &w, &h0, &c0, true);
        let saved = saved.expect("saved when asked");
        let grads = backward(d, &v, &w, &h0, &c0, &y, &saved);
        let eps = 1e-2f32;
        let check = |name: &str, base: &[f32], analytic: &[f32], f: &dyn Fn(&[f32]) -> f64| {
            for k in 0..base.len() {
                let (mut up, mut down) = (base.to_vec(), base.to_vec());
                up[k] += eps;
                down[k] -= eps;
                let numeric = (f(&up) - f(&down)) / (2.0 * f64::from(eps));
                let a = f64::from(analytic[k]);
                assert!(
                    (numeric - a).abs() < 2e-3 * (1.0 + a.abs()),
                    "{name}[{k}]: analytic {a}, numeric {numeric}"
                );
            }
        };
        check("zx", &zx, &grads.zx, &|x| loss(d, x, &w, &h0, &c0, &v));
        check("w", &w, &grads.w, &|x| loss(d, &zx, x, &h0, &c0, &v));
        check("h0", &h0, &grads.h0, &|x| loss(d, &zx, &w, x, &c0, &v));
        check("c0", &c0, &grads.c0, &|x| loss(d, &zx, &w, &h0, x, &v));
    }

    #[test]
    fn saving_does_not_change_the_output() {
        let d = Dims { t: 4, b: 3, h: 5 };
        let zx = values(d.t * d.b * 4 * d.h, 0.5);
        let w = values(d.h * 4 * d.h, 1.5);
        let h0 = values(d.b * d.h, 2.5);
        let c0 = values(d.b * d.h, 3.5);
        let (a, _) = forward(d, &zx, &w, &h0, &c0, true);
        let (b, none) = forward(d, &zx, &w, &h0, &c0, false);
        assert_eq!(a, b);
        assert!(none.is_none());
    }
}
