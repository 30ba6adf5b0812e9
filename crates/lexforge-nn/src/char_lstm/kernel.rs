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

use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::fused::{sigmoid, simd};
use crate::host_gemm::{Mat, PackedRows, Threads, matmul_into};
use lexforge_core::host::par_zeros;

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

/// Multiply-adds of one step's product below which a run stays on one thread.
const SPLIT_WORK: usize = 1 << 20;

/// Multiply-adds of a whole run's recurrent products below which it stays on one thread.
const RUN_WORK: usize = 1 << 24;

/// The hidden units split into contiguous ranges, one per thread.
///
/// Each part owns its units for the whole run: its gate rows (`[4n, B]` per step: input,
/// forget, output and cell rows of its `n` units, unit-major), cells and hidden states. A step
/// of a part needs every part's hidden states of the previous step; each part publishes its
/// own once per step (write-once slots) and the others wait for exactly those, so parts
/// synchronize without a global barrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parts {
    bounds: Vec<usize>,
}

impl Parts {
    /// One part per thread of the rayon pool (the configured thread count) when a step's
    /// product is large enough to split (at least 8 units each) and the whole run pays for
    /// starting the threads (tens of µs: one generated token is not worth it), else one.
    pub(crate) fn auto(d: Dims) -> Self {
        let step = 4 * d.h * d.h * d.b;
        let n = if step >= SPLIT_WORK && step * d.t >= RUN_WORK {
            rayon::current_num_threads().min(d.h / 8).max(1)
        } else {
            1
        };
        Parts::split(d.h, n)
    }

    /// `h` units in `n` near-equal contiguous parts (`1 <= n <= h`).
    pub(crate) fn split(h: usize, n: usize) -> Self {
        let n = n.clamp(1, h.max(1));
        Parts {
            bounds: (0..=n).map(|i| i * h / n).collect(),
        }
    }

    fn count(&self) -> usize {
        self.bounds.len() - 1
    }

    fn units(&self, p: usize) -> Range<usize> {
        self.bounds[p]..self.bounds[p + 1]
    }
}

/// Runs `f(part)` for every part, each on its own thread (scoped; the caller's thread takes
/// part 0), and returns the results in part order. A panic in one part is raised again here.
fn run_parts<R: Send>(parts: &Parts, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    if parts.count() == 1 {
        return vec![f(0)];
    }
    std::thread::scope(|scope| {
        let f = &f;
        let others: Vec<_> = (1..parts.count())
            .map(|p| scope.spawn(move || f(p)))
            .collect();
        let mut out = vec![f(0)];
        for h in others {
            out.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

/// Sets the flag when dropped during a panic, so that parts waiting for this one stop.
struct FailOnPanic<'a>(&'a AtomicBool);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

/// The value of a write-once slot, waiting (spinning, then yielding) until another part
/// publishes it.
///
/// # Panics
/// When another part panicked (`failed`) instead of publishing.
fn wait_for<'a>(slot: &'a OnceLock<Vec<f32>>, failed: &AtomicBool) -> &'a [f32] {
    let mut spins = 0u32;
    loop {
        if let Some(v) = slot.get() {
            return v;
        }
        assert!(
            !failed.load(Ordering::Acquire),
            "another part of the LSTM kernel panicked"
        );
        if spins < 1 << 12 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// `dst[c * dst_stride + r] = src[r * src_stride + c]` for a `[rows, cols]` block: a
/// transpose in 16 × 16 tiles, so that both sides stay in a few cache lines (rows of the
/// kernel's buffers are 8 KB apart, which a plain loop would evict on every access).
fn transpose_block(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    rows: usize,
    cols: usize,
) {
    const TILE: usize = 16;
    let mut tile = [[0.0f32; TILE]; TILE];
    for r0 in (0..rows).step_by(TILE) {
        let rh = TILE.min(rows - r0);
        for c0 in (0..cols).step_by(TILE) {
            let cw = TILE.min(cols - c0);
            for (i, t) in tile.iter_mut().take(rh).enumerate() {
                let at = (r0 + i) * src_stride + c0;
                t[..cw].copy_from_slice(&src[at..at + cw]);
            }
            for j in 0..cw {
                let at = (c0 + j) * dst_stride + r0;
                for (o, t) in dst[at..at + rh].iter_mut().zip(&tile) {
                    *o = t[j];
                }
            }
        }
    }
}

/// Write-once slots `[part][step]`.
fn slots(parts: &Parts, steps: usize) -> Vec<Vec<OnceLock<Vec<f32>>>> {
    (0..parts.count())
        .map(|_| (0..steps).map(|_| OnceLock::new()).collect())
        .collect()
}

/// `buf`'s values `[B, H]` of units `units` as unit-major rows `[n, B]`.
fn unit_rows(buf: &[f32], units: Range<usize>, d: Dims) -> Vec<f32> {
    let mut out = vec![0.0f32; units.len() * d.b];
    transpose_block(&buf[units.start..], d.h, &mut out, d.b, d.b, units.len());
    out
}

/// What the backward pass needs from the forward pass (besides its inputs and `y`).
#[derive(Debug)]
pub(crate) struct Saved {
    parts: Parts,
    /// Per part, the activated gates of every step `[T, 4n, B]` (`i, f, o` after σ, `g` after
    /// tanh).
    acts: Vec<Vec<f32>>,
    /// Per part, the cells `c_1 … c_T`, `[T, n, B]`.
    cells: Vec<Vec<f32>>,
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

/// The forward pass over `parts`; also returns what [`backward`] needs when `save`.
///
/// # Panics
/// When a slice's length disagrees with `d` (a caller bug).
pub(crate) fn forward(
    d: Dims,
    parts: &Parts,
    zx: &[f32],
    w: &[f32],
    h0: &[f32],
    c0: &[f32],
    save: bool,
) -> (Vec<f32>, Option<Saved>) {
    let (bh, bg, g, b, h) = (d.bh(), d.bg(), 4 * d.h, d.b, d.h);
    assert_eq!(zx.len(), d.t * bg, "zx is not [T, B, 4H]");
    assert_eq!(w.len(), h * g, "w is not [H, 4H]");
    assert_eq!(h0.len(), bh, "h0 is not [B, H]");
    assert_eq!(c0.len(), bh, "c0 is not [B, H]");
    // hs[q][s]: part q's hidden states after s steps, `[n_q, B]`.
    let hs = slots(parts, d.t + 1);
    for (q, part) in hs.iter().enumerate() {
        let _ = part[0].set(unit_rows(h0, parts.units(q), d));
    }
    let failed = AtomicBool::new(false);
    let results = run_parts(parts, |p| {
        let _flag = FailOnPanic(&failed);
        let units = parts.units(p);
        let n = units.len();
        // The part's rows of the hidden side, transposed: `[4n, H]`.
        let mut wt = vec![0.0f32; 4 * n * h];
        for (gate, out) in wt.chunks_exact_mut(n * h).enumerate() {
            transpose_block(&w[gate * h + units.start..], g, out, h, h, n);
        }
        let wt = PackedRows::pack(Mat::rows(&wt, 4 * n, h));
        // The input side of the part's gates for every step, `[T, 4n, B]`: each step's
        // product accumulates onto it, and it ends as the activations.
        let mut acts = vec![0.0f32; d.t * 4 * n * b];
        for (out, zx_s) in acts.chunks_exact_mut(4 * n * b).zip(zx.chunks_exact(bg)) {
            for (gate, out) in out.chunks_exact_mut(n * b).enumerate() {
                let src = &zx_s[gate * h + units.start..];
                transpose_block(src, g, out, b, b, n);
            }
        }
        let mut cell = unit_rows(c0, units.clone(), d);
        let mut cells = vec![0.0f32; if save { d.t * n * b } else { 0 }];
        for s in 0..d.t {
            let z = &mut acts[s * 4 * n * b..(s + 1) * 4 * n * b];
            for (q, part) in hs.iter().enumerate() {
                let from = parts.units(q);
                wt.matmul_into(z, from, wait_for(&part[s], &failed), b, true);
            }
            let mut h_out = vec![0.0f32; n * b];
            simd(|| step_forward(z, &mut cell, &mut h_out));
            if save {
                cells[s * n * b..(s + 1) * n * b].copy_from_slice(&cell);
            }
            let _ = hs[p][s + 1].set(h_out);
        }
        (acts, cells, cell)
    });
    // y: the hidden states back to `[B, H]` per step, then the final cell.
    let mut y = par_zeros((d.t + 1) * bh);
    let (steps, last) = y.split_at_mut(d.t * bh);
    steps.par_chunks_mut(bh).enumerate().for_each(|(s, out)| {
        for (q, part) in hs.iter().enumerate() {
            let rows = part[s + 1].get().map(Vec::as_slice).unwrap_or_default();
            scatter_units(out, rows, parts.units(q), d);
        }
    });
    for (q, (_, _, cell)) in results.iter().enumerate() {
        scatter_units(last, cell, parts.units(q), d);
    }
    let saved = save.then(|| {
        let (acts, cells) = results.into_iter().map(|(a, c, _)| (a, c)).unzip();
        Saved {
            parts: parts.clone(),
            acts,
            cells,
        }
    });
    (y, saved)
}

/// Writes unit-major rows `[n, B]` of `units` into `out` `[B, H]`.
fn scatter_units(out: &mut [f32], rows: &[f32], units: Range<usize>, d: Dims) {
    transpose_block(rows, d.b, &mut out[units.start..], d.h, units.len(), d.b);
}

/// One step of one part: its gate rows `z` `[4n, B]` (pre-activations) become activations;
/// its cells `c` `[n, B]` are updated and its hidden states written to `h_out` `[n, B]`.
#[inline(always)]
fn step_forward(z: &mut [f32], c: &mut [f32], h_out: &mut [f32]) {
    let m = c.len();
    let (zi, rest) = z.split_at_mut(m);
    let (zf, rest) = rest.split_at_mut(m);
    let (zo, zg) = rest.split_at_mut(m);
    for k in 0..m {
        let i = sigmoid(zi[k]);
        let f = sigmoid(zf[k]);
        let o = sigmoid(zo[k]);
        let gg = tanh(zg[k]);
        let cn = f * c[k] + i * gg;
        (zi[k], zf[k], zo[k], zg[k]) = (i, f, o, gg);
        c[k] = cn;
        h_out[k] = o * tanh(cn);
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
    let (bh, bg, g, b, h) = (d.bh(), d.bg(), 4 * d.h, d.b, d.h);
    assert_eq!(dy.len(), (d.t + 1) * bh, "dy is not [T + 1, B, H]");
    assert_eq!(y.len(), (d.t + 1) * bh, "y is not [T + 1, B, H]");
    let parts = &saved.parts;
    // dz[q][s]: part q's gate gradients at step s, `[4n_q, B]`.
    let dz = slots(parts, d.t);
    let failed = AtomicBool::new(false);
    let results = run_parts(parts, |p| {
        let _flag = FailOnPanic(&failed);
        let units = parts.units(p);
        let n = units.len();
        let (acts, cells) = (&saved.acts[p], &saved.cells[p]);
        assert_eq!(acts.len(), d.t * 4 * n * b, "saved gates do not match");
        // The part's rows of the hidden side with all gate columns in part-major order:
        // `[n, 4H]`.
        let mut wp = Vec::with_capacity(n * g);
        for row in w.chunks_exact(g).skip(units.start).take(n) {
            for q in 0..parts.count() {
                for gate in 0..4 {
                    let from = parts.units(q);
                    wp.extend_from_slice(&row[gate * h + from.start..gate * h + from.end]);
                }
            }
        }
        let wp = PackedRows::pack(Mat::rows(&wp, n, g));
        // dh += the gradient reaching h through step `s`'s hidden side, `Σ_q W_q dz_q[s]`.
        let through = |dh: &mut [f32], s: usize| {
            for (q, part) in dz.iter().enumerate() {
                let from = parts.units(q);
                wp.matmul_into(
                    dh,
                    4 * from.start..4 * from.end,
                    wait_for(&part[s], &failed),
                    b,
                    q > 0,
                );
            }
        };
        let c0_rows = unit_rows(c0, units.clone(), d);
        let mut dh = vec![0.0f32; n * b];
        let mut dc = unit_rows(&dy[d.t * bh..], units.clone(), d);
        for s in (0..d.t).rev() {
            if s + 1 < d.t {
                through(&mut dh, s + 1);
            }
            let cell_prev = if s == 0 {
                &c0_rows[..]
            } else {
                &cells[(s - 1) * n * b..s * n * b]
            };
            let mut dz_s = vec![0.0f32; 4 * n * b];
            simd(|| {
                step_backward(
                    &acts[s * 4 * n * b..(s + 1) * 4 * n * b],
                    &cells[s * n * b..(s + 1) * n * b],
                    cell_prev,
                    &dy[s * bh..(s + 1) * bh],
                    &dh,
                    &mut dc,
                    &mut dz_s,
                    units.start,
                    d,
                )
            });
            let _ = dz[p][s].set(dz_s);
        }
        through(&mut dh, 0);
        (dh, dc)
    });
    // dzx `[T, B, 4H]` from the parts' rows.
    let mut dzx = par_zeros(d.t * bg);
    dzx.par_chunks_mut(bg).enumerate().for_each(|(s, out)| {
        for (q, part) in dz.iter().enumerate() {
            let units = parts.units(q);
            let n = units.len();
            let rows = part[s].get().map(Vec::as_slice).unwrap_or_default();
            for (gate, rows) in rows.chunks_exact(n * b).enumerate() {
                transpose_block(rows, b, &mut out[gate * h + units.start..], g, n, b);
            }
        }
    });
    // dW = Σ_t h_{t-1}ᵀ dz_t = Hᵀ dZ with H = [h_0; y_0 … y_{T-2}] `[T·B, H]` and dZ = dzx:
    // one product over every step. Hᵀ is written out first (blocks of hidden units in
    // parallel): the `gemm` crate packs a transposed view column by column, which cost ~50%
    // more than the copy on a cold cache.
    let rows = d.t * b;
    let mut h_t = par_zeros(h * rows);
    const UNITS_PER_TASK: usize = 32;
    h_t.par_chunks_mut(UNITS_PER_TASK * rows)
        .enumerate()
        .for_each(|(task, out)| {
            let u0 = task * UNITS_PER_TASK;
            let units = out.len() / rows;
            transpose_block(&h0[u0..], h, out, rows, b, units);
            if d.t > 1 {
                transpose_block(&y[u0..], h, &mut out[b..], rows, rows - b, units);
            }
        });
    let mut dw = par_zeros(h * g);
    matmul_into(
        &mut dw,
        Mat::rows(&h_t, h, rows),
        Mat::rows(&dzx, rows, g),
        false,
        Threads::Pool,
    );
    let (mut dh0, mut dc0) = (vec![0.0f32; bh], vec![0.0f32; bh]);
    for (q, (dh, dc)) in results.iter().enumerate() {
        scatter_units(&mut dh0, dh, parts.units(q), d);
        scatter_units(&mut dc0, dc, parts.units(q), d);
    }
    Grads {
        zx: dzx,
        w: dw,
        h0: dh0,
        c0: dc0,
    }
}

/// One step of one part backwards (unit-major `[n, B]` rows, `[4n, B]` for gates): from the
/// gradients reaching `h_{s+1}` (`dy_s` `[B, H]` plus `dh`) and `c_{s+1}` (`dc`), its gate
/// gradients `dz`; `dc` becomes the gradient of `c_s`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn step_backward(
    acts: &[f32],
    cell: &[f32],
    cell_prev: &[f32],
    dy_s: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dz: &mut [f32],
    j0: usize,
    d: Dims,
) {
    let (b, h) = (d.b, d.h);
    let n = cell.len() / b;
    let (ai, rest) = acts.split_at(n * b);
    let (af, rest) = rest.split_at(n * b);
    let (ao, ag) = rest.split_at(n * b);
    let (di, rest) = dz.split_at_mut(n * b);
    let (df, rest) = rest.split_at_mut(n * b);
    let (d_o, dg) = rest.split_at_mut(n * b);
    for jj in 0..n {
        for bb in 0..b {
            let k = jj * b + bb;
            let (i, f, o, gg) = (ai[k], af[k], ao[k], ag[k]);
            let tc = tanh(cell[k]);
            let dhv = dy_s[bb * h + j0 + jj] + dh[k];
            let dcc = dc[k] + dhv * o * (1.0 - tc * tc);
            d_o[k] = dhv * tc * o * (1.0 - o);
            di[k] = dcc * gg * i * (1.0 - i);
            df[k] = dcc * cell_prev[k] * f * (1.0 - f);
            dg[k] = dcc * i * (1.0 - gg * gg);
            dc[k] = dcc * f;
        }
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
        let (y, _) = forward(d, &Parts::split(d.h, 1), zx, w, h0, c0, false);
        y.iter().zip(v).map(|(a, b)| f64::from(a * b)).sum()
    }

    #[test]
    fn the_analytic_gradient_matches_finite_differences_for_every_input() {
        for parts in [1, 2, 3] {
            gradient_check(Dims { t: 3, b: 2, h: 5 }, parts);
        }
    }

    fn gradient_check(d: Dims, parts: usize) {
        let g = 4 * d.h;
        let zx = values(d.t * d.b * g, 1.0);
        let w: Vec<f32> = values(d.h * g, 2.0).iter().map(|x| x * 0.5).collect();
        let h0 = values(d.b * d.h, 3.0);
        let c0 = values(d.b * d.h, 4.0);
        let v = values((d.t + 1) * d.b * d.h, 5.0);
        let (y, saved) = forward(d, &Parts::split(d.h, parts), &zx, &w, &h0, &c0, true);
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
                    "{parts} parts, {name}[{k}]: analytic {a}, numeric {numeric}"
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
        let (a, _) = forward(d, &Parts::split(d.h, 1), &zx, &w, &h0, &c0, true);
        let (b, none) = forward(d, &Parts::split(d.h, 1), &zx, &w, &h0, &c0, false);
        assert_eq!(a, b);
        assert!(none.is_none());
        // Split over parts, each unit's arithmetic is the same.
        for n in [2, 3, 5] {
            let (c, _) = forward(d, &Parts::split(d.h, n), &zx, &w, &h0, &c0, false);
            for (x, y) in a.iter().zip(&c) {
                assert!((x - y).abs() < 1e-6, "{n} parts: {x} vs {y}");
            }
        }
    }

    #[test]
    fn short_or_small_runs_stay_on_one_thread() {
        // One generated token of a 512-unit layer, and a 16-unit layer however long.
        assert_eq!(Parts::auto(Dims { t: 1, b: 1, h: 512 }).count(), 1);
        assert_eq!(
            Parts::auto(Dims {
                t: 1000,
                b: 16,
                h: 16
            })
            .count(),
            1
        );
        let long = Parts::auto(Dims {
            t: 128,
            b: 16,
            h: 512,
        });
        assert_eq!(long.count(), rayon::current_num_threads().min(64));
    }
}
