//! One LSTM layer over a whole time-major sequence as a single operation.
//!
//! On the flex device with f32 tensors, [`lstm_sequence`] is one burn backend extension:
//! the forward pass runs the host kernel (`kernel.rs`) on the tensors' own buffers (one matrix product for
//! the four gates per step, the cell update in one vectorized pass) and, when autodiff tracks
//! an input, one backward node computes the gradients of all four inputs analytically. burn's
//! decomposed formula records ~15 operations per step instead, each with its own allocation
//! and backward node.
//!
//! On any other device or precision the same function runs those plain formulas, so results
//! agree everywhere up to float rounding (tests compare values and gradients of both).
//!
//! # Shapes
//! `zx` `[T, B, 4H]` (the input side `x W_x + b` of the gates input, forget, output, cell),
//! `w` `[H, 4H]` (their hidden side), `h0`, `c0` `[B, H]` → `[T + 1, B, H]`: rows `0..T` are
//! the hidden states `h_1 … h_T`, row `T` is the final cell `c_T`.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::activation::Activation;
use burn::nn::{GateController, Lstm, LstmState};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{DType, Device, Tensor};

use super::kernel::{self, Dims, Parts};
use lexforge_core::host::{flex_tensor, host};

/// The whole-sequence LSTM layer as a backend operation (flex, and flex under autodiff).
#[backend_extension(Flex, Autodiff)]
pub trait LstmSequenceBackend: Backend {
    /// See the module documentation for shapes.
    fn lstm_sequence(
        zx: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The layer over a sequence: see the module documentation. `T` must be at least 1.
///
/// # Panics
/// When the shapes disagree (a caller bug: [`super::CharLstm`] builds them).
pub fn lstm_sequence(zx: Tensor<3>, w: Tensor<2>, h0: Tensor<2>, c0: Tensor<2>) -> Tensor<3> {
    let [t, b, g] = zx.dims();
    let [h, g2] = w.dims();
    assert!(t >= 1, "an LSTM sequence needs at least one step");
    assert_eq!(g, 4 * h, "zx is not [T, B, 4H]");
    assert_eq!(g2, g, "w is not [H, 4H]");
    assert_eq!(h0.dims(), [b, h], "h0 is not [B, H]");
    assert_eq!(c0.dims(), [b, h], "c0 is not [B, H]");
    let on_host = [zx.dtype(), w.dtype(), h0.dtype(), c0.dtype()]
        .iter()
        .all(|d| *d == DType::F32)
        && zx.device() == Device::flex();
    if on_host {
        Tensor::from_dispatch(<Dispatch as LstmSequenceBackend>::lstm_sequence(
            zx.into_dispatch(),
            w.into_dispatch(),
            h0.into_dispatch(),
            c0.into_dispatch(),
        ))
    } else {
        lstm_sequence_reference(zx, w, h0, c0)
    }
}

/// A burn `Lstm` layer's four gates side by side, in the order input, forget, output, cell:
/// `wx` `[d_in, 4H]`, `bias` `[1, 4H]` (input and hidden biases summed), `wh` `[H, 4H]`. Built
/// from the layer's own parameters on every call, so gradients reach them (and checkpoints
/// are burn's).
pub struct FusedGates {
    /// Input weights `[d_in, 4H]`.
    pub wx: Tensor<2>,
    /// Summed biases `[1, 4H]`.
    pub bias: Tensor<2>,
    /// Hidden weights `[H, 4H]`.
    pub wh: Tensor<2>,
}

impl FusedGates {
    /// The gates of `layer`, or `None` when the layer is not the plain LSTM [`lstm_sequence`]
    /// computes: burn's coupled mode (no forget gate), cell clipping, reversed direction or
    /// activations other than sigmoid gates and tanh cell and hidden.
    pub fn of(layer: &Lstm) -> Option<Self> {
        let plain = matches!(layer.gate_activation, Activation::Sigmoid(_))
            && matches!(layer.cell_activation, Activation::Tanh(_))
            && matches!(layer.hidden_activation, Activation::Tanh(_))
            && layer.clip.is_none()
            && !layer.reverse;
        let forget = layer.forget_gate.as_ref().filter(|_| plain)?;
        let gates = [
            &layer.input_gate,
            forget,
            &layer.output_gate,
            &layer.cell_gate,
        ];
        let bias = |g: &GateController| {
            let d = layer.d_hidden;
            let part = |b: &Option<burn::module::Param<Tensor<1>>>| b.as_ref().map(|b| b.val());
            match (
                part(&g.input_transform.bias),
                part(&g.hidden_transform.bias),
            ) {
                (Some(a), Some(b)) => a + b,
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => Tensor::zeros([d], &g.input_transform.weight.device()),
            }
            .reshape([1, d])
        };
        Some(FusedGates {
            wx: Tensor::cat(gates.map(|g| g.input_transform.weight.val()).to_vec(), 1),
            bias: Tensor::cat(gates.map(bias).to_vec(), 1),
            wh: Tensor::cat(gates.map(|g| g.hidden_transform.weight.val()).to_vec(), 1),
        })
    }

    /// The input side `x wx + bias` of a time-major input `[T, B, d_in]` → `[T, B, 4H]`.
    pub fn input_side(&self, x: Tensor<3>) -> Tensor<3> {
        let [t, b, d] = x.dims();
        let [_, g] = self.wx.dims();
        let bias = self.bias.clone().reshape([g]);
        crate::linear::matmul_bias(x.reshape([t * b, d]), self.wx.clone(), Some(bias))
            .reshape([t, b, g])
    }

    /// The layer over a time-major sequence from its input side `zx` `[T, B, 4H]` (`T >= 1`)
    /// and `state`: the hidden states `[T, B, H]` and the state after the last step.
    pub fn run(&self, zx: Tensor<3>, state: LstmState<2>) -> (Tensor<3>, LstmState<2>) {
        let [t, b, _] = zx.dims();
        let [h, _] = self.wh.dims();
        let (c0, h0) = state.unpack();
        let y = lstm_sequence(zx, self.wh.clone(), h0, c0);
        let cell = y.clone().narrow(0, t, 1).reshape([b, h]);
        let hidden = y.clone().narrow(0, t - 1, 1).reshape([b, h]);
        (y.narrow(0, 0, t), LstmState::new(cell, hidden))
    }
}

/// Zero cell and hidden states `[batch, d_hidden]` for `layer`.
pub fn zero_state(layer: &Lstm, batch: usize, device: &Device) -> LstmState<2> {
    LstmState::new(
        Tensor::zeros([batch, layer.d_hidden], device),
        Tensor::zeros([batch, layer.d_hidden], device),
    )
}

/// A burn `Lstm` layer's forward pass over a batch-first `x` from `state` (zeros when
/// `None`), through [`lstm_sequence`]; layers it does not cover (see [`FusedGates::of`]) run
/// burn's own `forward`.
///
/// # Shapes
/// `x`: `[batch, t, d_in]` → `([batch, t, d_hidden], state of [batch, d_hidden])`.
pub fn lstm_forward(
    layer: &Lstm,
    x: Tensor<3>,
    state: Option<LstmState<2>>,
) -> (Tensor<3>, LstmState<2>) {
    let [b, t, _] = x.dims();
    let gates = FusedGates::of(layer).filter(|_| layer.batch_first && t > 0);
    let Some(gates) = gates else {
        return layer.forward(x, state);
    };
    let state = state.unwrap_or_else(|| zero_state(layer, b, &x.device()));
    let (hs, state) = gates.run(gates.input_side(x.swap_dims(0, 1)), state);
    (hs.swap_dims(0, 1), state)
}

/// The plain burn formulas of [`lstm_sequence`], one step at a time (every device).
pub(crate) fn lstm_sequence_reference(
    zx: Tensor<3>,
    w: Tensor<2>,
    h0: Tensor<2>,
    c0: Tensor<2>,
) -> Tensor<3> {
    let [t, b, g] = zx.dims();
    let hd = g / 4;
    let (mut h, mut c) = (h0, c0);
    let mut rows = Vec::with_capacity(t + 1);
    for s in 0..t {
        let z = zx.clone().narrow(0, s, 1).reshape([b, g]) + h.matmul(w.clone());
        let gate = |k: usize| z.clone().narrow(1, k * hd, hd);
        let (i, f, o) = (sigmoid(gate(0)), sigmoid(gate(1)), sigmoid(gate(2)));
        c = f * c + i * tanh(gate(3));
        h = o * tanh(c.clone());
        rows.push(h.clone());
    }
    rows.push(c);
    Tensor::stack(rows, 0)
}

fn dims_of(zx: &FlexTensor, w: &FlexTensor) -> Dims {
    let zs = zx.layout().shape();
    Dims {
        t: zs[0],
        b: zs[1],
        h: w.layout().shape()[0],
    }
}

impl LstmSequenceBackend for Flex {
    fn lstm_sequence(zx: FlexTensor, w: FlexTensor, h0: FlexTensor, c0: FlexTensor) -> FlexTensor {
        let d = dims_of(&zx, &w);
        let (y, _) = kernel::forward(
            d,
            &Parts::auto(d),
            &host(&zx),
            &host(&w),
            &host(&h0),
            &host(&c0),
            false,
        );
        flex_tensor(y, &[d.t + 1, d.b, d.h])
    }
}

/// What the backward node keeps: the inputs it needs, the output and the saved gates.
#[derive(Debug)]
struct SavedRun {
    d: Dims,
    w: FlexTensor,
    h0: FlexTensor,
    c0: FlexTensor,
    y: FlexTensor,
    saved: kernel::Saved,
}

#[derive(Debug)]
struct LstmSequenceBackward;

impl Backward<Flex, 4> for LstmSequenceBackward {
    type State = Arc<SavedRun>;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [n_zx, n_w, n_h0, n_c0] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let run = ops.state;
        let d = run.d;
        let g = kernel::backward(
            d,
            &host(&dy),
            &host(&run.w),
            &host(&run.h0),
            &host(&run.c0),
            &host(&run.y),
            &run.saved,
        );
        if let Some(n) = n_zx {
            grads.register::<Flex>(n.id, flex_tensor(g.zx, &[d.t, d.b, 4 * d.h]));
        }
        if let Some(n) = n_w {
            grads.register::<Flex>(n.id, flex_tensor(g.w, &[d.h, 4 * d.h]));
        }
        if let Some(n) = n_h0 {
            grads.register::<Flex>(n.id, flex_tensor(g.h0, &[d.b, d.h]));
        }
        if let Some(n) = n_c0 {
            grads.register::<Flex>(n.id, flex_tensor(g.c0, &[d.b, d.h]));
        }
    }
}

impl<C: CheckpointStrategy> LstmSequenceBackend for Autodiff<Flex, C> {
    fn lstm_sequence(
        zx: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let prep = LstmSequenceBackward
            .prepare::<C>([zx.node(), w.node(), h0.node(), c0.node()])
            .compute_bound()
            .stateful();
        let (zx, w, h0, c0) = (
            zx.into_primitive(),
            w.into_primitive(),
            h0.into_primitive(),
            c0.into_primitive(),
        );
        let d = dims_of(&zx, &w);
        match prep {
            OpsKind::Tracked(prep) => {
                let (y, saved) = kernel::forward(
                    d,
                    &Parts::auto(d),
                    &host(&zx),
                    &host(&w),
                    &host(&h0),
                    &host(&c0),
                    true,
                );
                let y = flex_tensor(y, &[d.t + 1, d.b, d.h]);
                let Some(saved) = saved else {
                    unreachable!("the forward pass saves its state when asked")
                };
                let state = Arc::new(SavedRun {
                    d,
                    w,
                    h0,
                    c0,
                    y: y.clone(),
                    saved,
                });
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(<Flex as LstmSequenceBackend>::lstm_sequence(zx, w, h0, c0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LstmConfig;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    use super::*;

    struct Inputs {
        zx: Tensor<3>,
        w: Tensor<2>,
        h0: Tensor<2>,
        c0: Tensor<2>,
    }

    /// Random inputs; those named in `tracked` require gradients.
    fn inputs(device: &Device, [t, b, h]: [usize; 3], tracked: &[&str]) -> Inputs {
        let n = |n: usize, s: f64| Tensor::<1>::random([n], Distribution::Normal(0.0, s), device);
        let track2 = |name: &str, x: Tensor<2>| {
            if tracked.contains(&name) {
                x.require_grad()
            } else {
                x
            }
        };
        let zx = n(t * b * 4 * h, 1.0).reshape([t, b, 4 * h]);
        Inputs {
            zx: if tracked.contains(&"zx") {
                zx.require_grad()
            } else {
                zx
            },
            w: track2("w", n(h * 4 * h, 0.4).reshape([h, 4 * h])),
            h0: track2("h0", n(b * h, 0.5).reshape([b, h])),
            c0: track2("c0", n(b * h, 0.5).reshape([b, h])),
        }
    }

    #[test]
    fn the_host_operation_gives_the_plain_formulas_values_and_gradients() {
        let device = Device::flex().autodiff();
        lexforge_core::Seed(11).apply_to(&device);
        let (t, b, h) = (5, 3, 4);
        let x = inputs(&device, [t, b, h], &["zx", "w", "h0", "c0"]);
        let v = Tensor::<3>::random([t + 1, b, h], Distribution::Normal(0.0, 1.0), &device);
        let run = |f: fn(Tensor<3>, Tensor<2>, Tensor<2>, Tensor<2>) -> Tensor<3>| {
            let y = f(x.zx.clone(), x.w.clone(), x.h0.clone(), x.c0.clone());
            let grads = (y.clone() * v.clone()).sum().backward();
            let g = |p: &dyn Fn(&burn::tensor::Gradients) -> Option<TensorData>| {
                p(&grads).expect("every input has a gradient")
            };
            (
                y.into_data(),
                [
                    g(&|gr| x.zx.grad(gr).map(|t| t.into_data())),
                    g(&|gr| x.w.grad(gr).map(|t| t.into_data())),
                    g(&|gr| x.h0.grad(gr).map(|t| t.into_data())),
                    g(&|gr| x.c0.grad(gr).map(|t| t.into_data())),
                ],
            )
        };
        let (y_host, g_host) = run(lstm_sequence);
        let (y_ref, g_ref) = run(lstm_sequence_reference);
        y_host.assert_approx_eq::<f32>(&y_ref, Tolerance::absolute(1e-5));
        for (a, b) in g_host.iter().zip(&g_ref) {
            a.assert_approx_eq::<f32>(b, Tolerance::absolute(1e-4));
        }
    }

    #[test]
    fn without_autodiff_the_values_are_the_plain_formulas() {
        let device = Device::flex();
        lexforge_core::Seed(12).apply_to(&device);
        let x = inputs(&device, [4, 2, 6], &[]);
        let a = lstm_sequence(x.zx.clone(), x.w.clone(), x.h0.clone(), x.c0.clone());
        let b = lstm_sequence_reference(x.zx, x.w, x.h0, x.c0);
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn only_tracked_inputs_get_gradients() {
        let device = Device::flex().autodiff();
        let x = inputs(&device, [3, 2, 3], &["zx", "c0"]);
        let y = lstm_sequence(x.zx.clone(), x.w.clone(), x.h0.clone(), x.c0.clone());
        let grads = y.sum().backward();
        assert!(x.zx.grad(&grads).is_some());
        assert!(x.c0.grad(&grads).is_some());
        assert!(x.w.grad(&grads).is_none());
        assert!(x.h0.grad(&grads).is_none());
    }

    #[test]
    fn same_outputs_state_and_gradients_as_burns_lstm() {
        let device = Device::flex().autodiff();
        lexforge_core::Seed(3).apply_to(&device);
        let layer = LstmConfig::new(5, 7, true).init(&device);
        let x =
            Tensor::<3>::random([3, 6, 5], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let h0 = Tensor::<2>::random([3, 7], Distribution::Normal(0.0, 0.5), &device);
        let c0 = Tensor::<2>::random([3, 7], Distribution::Normal(0.0, 0.5), &device);
        let (ya, sa) = layer.forward(x.clone(), Some(LstmState::new(c0.clone(), h0.clone())));
        let (yb, sb) = lstm_forward(&layer, x.clone(), Some(LstmState::new(c0, h0)));
        let tol = Tolerance::<f32>::absolute(1e-5);
        ya.to_data().assert_approx_eq(&yb.to_data(), tol);
        sa.cell.to_data().assert_approx_eq(&sb.cell.to_data(), tol);
        sa.hidden
            .to_data()
            .assert_approx_eq(&sb.hidden.to_data(), tol);
        // Gradients of a weighted sum of outputs and final state, w.r.t. the input and the
        // weights of every gate.
        let w = Tensor::<3>::random([3, 6, 7], Distribution::Normal(0.0, 1.0), &device);
        let loss = |y: Tensor<3>, s: LstmState<2>| (y * w.clone()).sum() + s.cell.sum() * 0.5;
        let ga = loss(ya, sa).backward();
        let gb = loss(yb, sb).backward();
        let tol = Tolerance::<f32>::absolute(1e-4);
        x.grad(&ga)
            .unwrap()
            .to_data()
            .assert_approx_eq(&x.grad(&gb).unwrap().to_data(), tol);
        let forget = layer.forget_gate.as_ref().unwrap();
        for g in [
            &layer.input_gate,
            forget,
            &layer.output_gate,
            &layer.cell_gate,
        ] {
            for l in [&g.input_transform, &g.hidden_transform] {
                let (a, b) = (l.weight.grad(&ga).unwrap(), l.weight.grad(&gb).unwrap());
                a.to_data().assert_approx_eq(&b.to_data(), tol);
                let (a, b) = (
                    l.bias.as_ref().unwrap().grad(&ga).unwrap(),
                    l.bias.as_ref().unwrap().grad(&gb).unwrap(),
                );
                a.to_data().assert_approx_eq(&b.to_data(), tol);
            }
        }
    }

    #[test]
    fn zero_state_is_the_default_and_chunks_continue() {
        let device = Device::flex();
        let layer = LstmConfig::new(4, 6, true).init(&device);
        let x = Tensor::<3>::random([2, 8, 4], Distribution::Normal(0.0, 1.0), &device);
        let (whole, _) = lstm_forward(&layer, x.clone(), None);
        let (first, s) = lstm_forward(&layer, x.clone().narrow(1, 0, 5), None);
        let (second, _) = lstm_forward(&layer, x.narrow(1, 5, 3), Some(s));
        let tol = Tolerance::<f32>::absolute(1e-5);
        whole
            .clone()
            .narrow(1, 0, 5)
            .to_data()
            .assert_approx_eq(&first.to_data(), tol);
        whole
            .narrow(1, 5, 3)
            .to_data()
            .assert_approx_eq(&second.to_data(), tol);
    }
}
