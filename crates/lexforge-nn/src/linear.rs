//! Linear layers (`y = x W + b`) as one operation on flex's buffers.
//!
//! burn's `Linear` on flex runs the product through flex's matmul (a batched product for a
//! `[batch, t, d]` input), then adds the bias as a second operation; its backward pass is three
//! more operations. On the flex device with f32 tensors, [`linear`] is instead one backend
//! extension: the output starts as the bias rows and the product accumulates onto it (one
//! `gemm` call on the rayon pool, no separate add), and one backward node computes `dx = dy
//! Wᵀ`, `dW = xᵀ dy` and `db = Σ dy` directly on the buffers. The parameters are the layer's
//! own, so checkpoints and every other device (which run `Linear::forward`) are unchanged.
//!
//! # Shapes
//! `x` `[..., d_in]`, `W` `[d_in, d_out]` (burn's layout), `b` `[d_out]` → `[..., d_out]`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::Linear;
use burn::tensor::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::host_gemm::{Mat, Threads, matmul_into, with_mat};
use lexforge_core::host::{flex_tensor, host};

/// `x W + b` and `x W` for a 2-D `x` `[rows, d_in]` as backend operations (flex, and flex
/// under autodiff).
#[backend_extension(Flex, Autodiff)]
pub trait HostLinearBackend: Backend {
    /// `x W + b`; see the module documentation.
    fn host_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `x W` (a layer without bias).
    fn host_linear_no_bias(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// `layer.forward(x)`, as one operation on flex's buffers when `x` is an f32 flex tensor (see
/// the module documentation); burn's own `Linear::forward` elsewhere.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    if !on_host(&x, &layer.weight.val()) {
        return layer.forward(x);
    }
    matmul_bias(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
}

fn on_host<const D: usize>(x: &Tensor<D>, w: &Tensor<2>) -> bool {
    D >= 2 && x.dtype() == DType::F32 && w.dtype() == DType::F32 && x.device() == Device::flex()
}

/// `x W (+ b)` over the last dimension of `x`: the operation of [`linear`] for weights that
/// are not a `Linear` layer's (a transposed embedding table as a tied output layer, the
/// stacked gates of an LSTM). `w` may be a transposed view: it is read in place.
///
/// # Shapes
/// `x` `[..., d_in]`, `w` `[d_in, d_out]`, `b` `[d_out]` → `[..., d_out]`.
pub fn matmul_bias<const D: usize>(x: Tensor<D>, w: Tensor<2>, b: Option<Tensor<1>>) -> Tensor<D> {
    let dims = x.dims();
    let [d_in, d_out] = w.dims();
    if !on_host(&x, &w) {
        let y = x.matmul(w.unsqueeze::<D>());
        return match b {
            Some(b) => y + b.unsqueeze::<D>(),
            None => y,
        };
    }
    let rows = dims[..D - 1].iter().product::<usize>();
    let x = x.reshape([rows, d_in]);
    let y = Tensor::<2>::from_dispatch(match b {
        Some(b) => <Dispatch as HostLinearBackend>::host_linear(
            x.into_dispatch(),
            w.into_dispatch(),
            b.into_dispatch(),
        ),
        None => <Dispatch as HostLinearBackend>::host_linear_no_bias(
            x.into_dispatch(),
            w.into_dispatch(),
        ),
    });
    let mut out = dims;
    out[D - 1] = d_out;
    y.reshape(out)
}

/// `[rows, d_in]`, `[d_in, d_out]` of a product's operands.
fn dims_of(x: &FlexTensor, w: &FlexTensor) -> (usize, usize, usize) {
    let (xs, ws) = (x.layout().shape(), w.layout().shape());
    (xs[0], xs[1], ws[1])
}

/// The forward pass on host values: the bias rows (or zeros), then `+= x W`.
fn forward_host(x: &FlexTensor, w: &FlexTensor, b: Option<&FlexTensor>) -> FlexTensor {
    let (rows, d_in, d_out) = dims_of(x, w);
    let mut out = match b {
        Some(b) => {
            let b = host(b);
            let mut out = Vec::with_capacity(rows * d_out);
            for _ in 0..rows {
                out.extend_from_slice(&b);
            }
            out
        }
        None => vec![0.0f32; rows * d_out],
    };
    with_mat(w, |w| {
        matmul_into(
            &mut out,
            Mat::rows(&host(x), rows, d_in),
            w,
            b.is_some(),
            Threads::Pool,
        )
    });
    flex_tensor(out, &[rows, d_out])
}

impl HostLinearBackend for Flex {
    fn host_linear(x: FlexTensor, w: FlexTensor, b: FlexTensor) -> FlexTensor {
        forward_host(&x, &w, Some(&b))
    }

    fn host_linear_no_bias(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        forward_host(&x, &w, None)
    }
}

/// What the backward node keeps: the operands (each only when the other's gradient needs it).
#[derive(Debug, Clone)]
struct LinearState {
    x: Option<FlexTensor>,
    w: Option<FlexTensor>,
    rows: usize,
    d_in: usize,
    d_out: usize,
}

/// The gradients for `dy` `[rows, d_out]`: `dx = dy Wᵀ`, `dW = xᵀ dy`, `db = Σ_rows dy`, each
/// only when asked.
fn backward_host(s: &LinearState, dy: &FlexTensor, want: [bool; 3]) -> [Option<FlexTensor>; 3] {
    let dy = host(dy);
    let (rows, d_in, d_out) = (s.rows, s.d_in, s.d_out);
    let dx = s.w.as_ref().filter(|_| want[0]).map(|w| {
        let mut dx = vec![0.0f32; rows * d_in];
        with_mat(w, |w| {
            matmul_into(
                &mut dx,
                Mat::rows(&dy, rows, d_out),
                w.t(),
                false,
                Threads::Pool,
            )
        });
        flex_tensor(dx, &[rows, d_in])
    });
    let dw = s.x.as_ref().filter(|_| want[1]).map(|x| {
        let mut dw = vec![0.0f32; d_in * d_out];
        matmul_into(
            &mut dw,
            Mat::transposed(&host(x), d_in, rows),
            Mat::rows(&dy, rows, d_out),
            false,
            Threads::Pool,
        );
        flex_tensor(dw, &[d_in, d_out])
    });
    let db = want[2].then(|| {
        let chunk = rows.div_ceil(rayon::current_num_threads().max(1)).max(1);
        let db = dy
            .par_chunks(chunk * d_out)
            .map(|block| {
                let mut acc = vec![0.0f32; d_out];
                for row in block.chunks_exact(d_out) {
                    acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                }
                acc
            })
            .reduce(
                || vec![0.0f32; d_out],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, v)| *a += v);
                    a
                },
            );
        flex_tensor(db, &[d_out])
    });
    [dx, dw, db]
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nx, nw, nb] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let want = [nx.is_some(), nw.is_some(), nb.is_some()];
        let [dx, dw, db] = backward_host(&ops.state, &dy, want);
        for (node, grad) in [(nx, dx), (nw, dw), (nb, db)] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

impl Backward<Flex, 2> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nx, nw] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let want = [nx.is_some(), nw.is_some(), false];
        let [dx, dw, _] = backward_host(&ops.state, &dy, want);
        for (node, grad) in [(nx, dx), (nw, dw)] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// The backward node's state for operands `x`, `w` (each kept only when the other is tracked).
fn state_of(x: &FlexTensor, w: &FlexTensor, x_tracked: bool, w_tracked: bool) -> LinearState {
    let (rows, d_in, d_out) = dims_of(x, w);
    LinearState {
        x: w_tracked.then(|| x.clone()),
        w: x_tracked.then(|| w.clone()),
        rows,
        d_in,
        d_out,
    }
}

impl<C: CheckpointStrategy> HostLinearBackend for Autodiff<Flex, C> {
    fn host_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (x_tracked, w_tracked) = (x.is_tracked(), w.is_tracked());
        let prep = <LinearBackward as Backward<Flex, 3>>::prepare::<C>(
            LinearBackward,
            [x.node(), w.node(), b.node()],
        )
        .compute_bound()
        .stateful();
        let (x, w, b) = (x.into_primitive(), w.into_primitive(), b.into_primitive());
        let y = forward_host(&x, &w, Some(&b));
        match prep {
            OpsKind::Tracked(prep) => prep.finish(state_of(&x, &w, x_tracked, w_tracked), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn host_linear_no_bias(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x_tracked, w_tracked) = (x.is_tracked(), w.is_tracked());
        let prep = <LinearBackward as Backward<Flex, 2>>::prepare::<C>(
            LinearBackward,
            [x.node(), w.node()],
        )
        .compute_bound()
        .stateful();
        let (x, w) = (x.into_primitive(), w.into_primitive());
        let y = forward_host(&x, &w, None);
        match prep {
            OpsKind::Tracked(prep) => prep.finish(state_of(&x, &w, x_tracked, w_tracked), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    #[test]
    fn values_and_gradients_equal_burns_linear_with_and_without_bias() {
        let device = Device::flex().autodiff();
        lexforge_core::Seed(4).apply_to(&device);
        for bias in [true, false] {
            let layer = LinearConfig::new(6, 5).with_bias(bias).init(&device);
            let x = Tensor::<3>::random([2, 3, 6], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let v = Tensor::<3>::random([2, 3, 5], Distribution::Normal(0.0, 1.0), &device);
            let ours = linear(&layer, x.clone());
            let theirs = layer.forward(x.clone());
            let tol = Tolerance::<f32>::absolute(1e-5);
            ours.to_data().assert_approx_eq(&theirs.to_data(), tol);
            let ga = (ours * v.clone()).sum().backward();
            let gb = (theirs * v).sum().backward();
            let data = |t: Option<Tensor<3>>| t.expect("a gradient").into_data();
            data(x.grad(&ga)).assert_approx_eq(&data(x.grad(&gb)), tol);
            let w = &layer.weight;
            let data = |t: Option<Tensor<2>>| t.expect("a gradient").into_data();
            data(w.grad(&ga)).assert_approx_eq(&data(w.grad(&gb)), tol);
            if let Some(b) = &layer.bias {
                let (a, c) = (b.grad(&ga).expect("bias"), b.grad(&gb).expect("bias"));
                a.to_data().assert_approx_eq(&c.to_data(), tol);
            }
        }
    }

    #[test]
    fn a_strided_input_without_autodiff_gives_burns_values() {
        let device = Device::flex();
        let layer = LinearConfig::new(4, 3).init(&device);
        let x =
            Tensor::<3>::random([3, 4, 2], Distribution::Normal(0.0, 1.0), &device).swap_dims(1, 2);
        let ours = linear(&layer, x.clone());
        let theirs = layer.forward(x);
        ours.to_data()
            .assert_approx_eq::<f32>(&theirs.to_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn a_transposed_weight_is_read_in_place_with_the_plain_products_values_and_gradients() {
        let device = Device::flex().autodiff();
        lexforge_core::Seed(8).apply_to(&device);
        let table =
            Tensor::<2>::random([7, 4], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let x =
            Tensor::<3>::random([2, 3, 4], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let v = Tensor::<3>::random([2, 3, 7], Distribution::Normal(0.0, 1.0), &device);
        let ours = matmul_bias(x.clone(), table.clone().transpose(), None);
        let plain = x.clone().matmul(table.clone().transpose().unsqueeze::<3>());
        let tol = Tolerance::<f32>::absolute(1e-5);
        ours.to_data().assert_approx_eq(&plain.to_data(), tol);
        let ga = (ours * v.clone()).sum().backward();
        let gb = (plain * v).sum().backward();
        let g3 = |t: Option<Tensor<3>>| t.expect("a gradient").into_data();
        g3(x.grad(&ga)).assert_approx_eq(&g3(x.grad(&gb)), tol);
        let g2 = |t: Option<Tensor<2>>| t.expect("a gradient").into_data();
        g2(table.grad(&ga)).assert_approx_eq(&g2(table.grad(&gb)), tol);
    }
}
