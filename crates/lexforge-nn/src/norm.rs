//! Layer normalization as one operation with a hand-written backward pass.
//!
//! Under autodiff, burn runs `LayerNorm` as its decomposed formula (a mean, a centring, a
//! variance, a square root, a division, the scale and the shift, each an operation with its own
//! backward node, on one thread). On the flex device with f32 tensors, [`layer_norm`] is one
//! backend extension instead: one parallel pass over the rows normalizes and keeps the
//! normalized rows and each row's `1 / σ`; one backward pass gives `dx` per row and the
//! parameters' gradients as per-task partial sums. Without autodiff it is burn's own fused
//! `layer_norm` (already one parallel pass). Every other device runs `LayerNorm::forward`.
//!
//! # Shapes
//! `x` `[..., d]`, `gamma`, `beta` `[d]` → `[..., d]`:
//! `y = (x - mean) / sqrt(var + eps) * gamma + beta` over the last axis (biased variance, as
//! PyTorch and burn).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::LayerNorm;
use burn::tensor::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::fused::{row_dot, row_sum, simd};
use lexforge_core::host::{flex_tensor, host, par_copy, par_zeros, values_mut, writable};

/// Rows per rayon task (a task of 64 rows of 384 is ~25 k elements).
const ROWS_PER_TASK: usize = 64;

/// Layer normalization of a 2-D `x` `[rows, d]` as a backend operation (flex, and flex under
/// autodiff).
#[backend_extension(Flex, Autodiff)]
pub trait LayerNormBackend: Backend {
    /// See the module documentation.
    fn host_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
}

/// `norm.forward(x)` for a norm built with epsilon `eps`, as one operation on flex's buffers
/// when `x` is an f32 flex tensor under autodiff (see the module documentation). burn's
/// `LayerNorm` does not expose its epsilon, so the caller passes the one it was built with.
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>, eps: f64) -> Tensor<D> {
    let gamma = norm.gamma.val();
    let on_host = D >= 1
        && x.dtype() == DType::F32
        && gamma.dtype() == DType::F32
        && x.device() == Device::flex()
        && x.device().is_autodiff();
    if !on_host {
        return norm.forward(x);
    }
    let dims = x.dims();
    let d = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let beta = match &norm.beta {
        Some(b) => b.val(),
        None => Tensor::zeros([d], &x.device()),
    };
    let y = Tensor::<2>::from_dispatch(<Dispatch as LayerNormBackend>::host_layer_norm(
        x.reshape([rows, d]).into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps,
    ));
    y.reshape(dims)
}

/// Normalizes `x` `[rows, d]` row by row: `x` becomes `(x - mean) / σ` and `rstd[r]` holds
/// `1 / σ` (`σ = sqrt(var + eps)`).
fn normalize_in_place(x: &mut [f32], rstd: &mut [f32], d: usize, eps: f64) {
    x.par_chunks_mut(ROWS_PER_TASK * d)
        .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
        .for_each(|(x, rstd)| {
            simd(|| {
                for (row, r) in x.chunks_mut(d).zip(rstd.iter_mut()) {
                    let mean = row_sum(row) / d as f32;
                    row.iter_mut().for_each(|v| *v -= mean);
                    let var = row_dot(row, row) / d as f32;
                    let inv = (1.0 / (f64::from(var) + eps).sqrt()) as f32;
                    row.iter_mut().for_each(|v| *v *= inv);
                    *r = inv;
                }
            })
        });
}

/// `y = xhat * gamma + beta` row by row, into a new buffer.
fn affine(xhat: &[f32], gamma: &[f32], beta: &[f32], d: usize) -> Vec<f32> {
    let mut y = par_copy(xhat);
    y.par_chunks_mut(ROWS_PER_TASK * d).for_each(|y| {
        simd(|| {
            for row in y.chunks_mut(d) {
                row.iter_mut()
                    .zip(gamma.iter().zip(beta))
                    .for_each(|(v, (g, b))| *v = *v * g + b);
            }
        })
    });
    y
}

/// The forward pass: the output and (for the backward pass) the normalized rows and `1 / σ`.
fn forward_host(
    x: FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f64,
) -> (FlexTensor, FlexTensor, Vec<f32>) {
    let shape = x.layout().shape().clone();
    let (rows, d) = (shape[0], shape[1]);
    let mut xhat = writable(x);
    let mut rstd = par_zeros(rows);
    if d > 0 {
        normalize_in_place(values_mut(&mut xhat), &mut rstd, d, eps);
    }
    let y = affine(&host(&xhat), &host(gamma), &host(beta), d.max(1));
    (flex_tensor(y, &[rows, d]), xhat, rstd)
}

impl LayerNormBackend for Flex {
    fn host_layer_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, eps: f64) -> FlexTensor {
        forward_host(x, &gamma, &beta, eps).0
    }
}

/// What the backward node keeps.
#[derive(Debug, Clone)]
struct Saved {
    xhat: FlexTensor,
    rstd: std::sync::Arc<Vec<f32>>,
    gamma: FlexTensor,
}

/// The gradients for `dy` `[rows, d]`: `dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`
/// with `g = dy * gamma` (in place of `dy`), `dgamma = Σ dy * xhat`, `dbeta = Σ dy`.
fn backward_host(s: &Saved, dy: FlexTensor) -> [FlexTensor; 3] {
    let (xhat, gamma) = (host(&s.xhat), host(&s.gamma));
    let d = gamma.len();
    let mut dx = writable(dy);
    let values = values_mut(&mut dx);
    let (dgamma, dbeta) = if d == 0 {
        (Vec::new(), Vec::new())
    } else {
        values
            .par_chunks_mut(ROWS_PER_TASK * d)
            .zip(xhat.par_chunks(ROWS_PER_TASK * d))
            .zip(s.rstd.par_chunks(ROWS_PER_TASK))
            .map(|((g, xh), rstd)| {
                let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
                simd(|| {
                    for ((g, xh), &r) in g.chunks_mut(d).zip(xh.chunks(d)).zip(rstd) {
                        for k in 0..d {
                            dgamma[k] += g[k] * xh[k];
                            dbeta[k] += g[k];
                            g[k] *= gamma[k];
                        }
                        let (sum_g, sum_gx) = (row_sum(g), row_dot(g, xh));
                        let (mg, mgx) = (sum_g / d as f32, sum_gx / d as f32);
                        g.iter_mut()
                            .zip(xh)
                            .for_each(|(g, x)| *g = r * (*g - mg - x * mgx));
                    }
                });
                (dgamma, dbeta)
            })
            .reduce(
                || (vec![0.0f32; d], vec![0.0f32; d]),
                |(mut a, mut b), (c, e)| {
                    a.iter_mut().zip(&c).for_each(|(a, c)| *a += c);
                    b.iter_mut().zip(&e).for_each(|(b, e)| *b += e);
                    (a, b)
                },
            )
    };
    [dx, flex_tensor(dgamma, &[d]), flex_tensor(dbeta, &[d])]
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nx, ngamma, nbeta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let [dx, dgamma, dbeta] = backward_host(&ops.state, dy);
        for (node, grad) in [(nx, dx), (ngamma, dgamma), (nbeta, dbeta)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

impl<C: CheckpointStrategy> LayerNormBackend for Autodiff<Flex, C> {
    fn host_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let prep = LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, gamma, beta) = (
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
        );
        let (y, xhat, rstd) = forward_host(x, &gamma, &beta, eps);
        match prep {
            OpsKind::Tracked(prep) => prep.finish(
                Saved {
                    xhat,
                    rstd: std::sync::Arc::new(rstd),
                    gamma,
                },
                y,
            ),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    #[test]
    fn values_and_gradients_equal_burns_layer_norm() {
        let device = Device::flex().autodiff();
        lexforge_core::Seed(5).apply_to(&device);
        for (bias, eps) in [(true, 1e-5), (false, 1e-12)] {
            let mut norm = LayerNormConfig::new(70)
                .with_epsilon(eps)
                .with_bias(bias)
                .init(&device);
            // Parameters away from their ones/zeros start, so a wrong use of either shows.
            norm.gamma = burn::module::Param::from_tensor(Tensor::random(
                [70],
                Distribution::Normal(1.0, 0.5),
                &device,
            ));
            let x = Tensor::<3>::random([3, 90, 70], Distribution::Normal(1.0, 2.0), &device)
                .require_grad();
            let w = Tensor::<3>::random([3, 90, 70], Distribution::Normal(0.0, 1.0), &device);
            let ours = layer_norm(&norm, x.clone(), eps);
            let theirs = norm.forward(x.clone());
            let tol = Tolerance::<f32>::absolute(2e-5);
            ours.to_data().assert_approx_eq(&theirs.to_data(), tol);
            let ga = (ours * w.clone()).sum().backward();
            let gb = (theirs * w).sum().backward();
            let (Some(a), Some(b)) = (x.grad(&ga), x.grad(&gb)) else {
                panic!("no input gradient")
            };
            a.to_data().assert_approx_eq(&b.to_data(), tol);
            let (Some(a), Some(b)) = (norm.gamma.grad(&ga), norm.gamma.grad(&gb)) else {
                panic!("no gamma gradient")
            };
            a.to_data()
                .assert_approx_eq(&b.to_data(), Tolerance::<f32>::absolute(1e-3));
            if let Some(beta) = &norm.beta {
                let (Some(a), Some(b)) = (beta.grad(&ga), beta.grad(&gb)) else {
                    panic!("no beta gradient")
                };
                a.to_data()
                    .assert_approx_eq(&b.to_data(), Tolerance::<f32>::absolute(1e-3));
            }
        }
    }

    #[test]
    fn the_input_is_left_unchanged_when_shared() {
        let device = Device::flex().autodiff();
        let norm = LayerNormConfig::new(8).init(&device);
        let x = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device);
        let before = x.to_data();
        let _ = layer_norm(&norm, x.clone(), 1e-5);
        x.to_data().assert_eq(&before, true);
    }
}
