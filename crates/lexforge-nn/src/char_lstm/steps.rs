//! One LSTM layer over a sequence held as one tensor per time step.
//!
//! burn's `Lstm::forward` writes each step's output into the `[batch, t, d_hidden]` output
//! tensor with `slice_assign`; in a training step the backward pass of each of those writes
//! handles a whole-sequence gradient. [`lstm_steps`] takes and gives one `[batch, ·]` tensor per
//! step (the caller stacks once, where it needs a sequence), with the gates computed exactly
//! as burn computes them, on the layer's own parameters (checkpoints are unchanged):
//!
//! ```text
//! i = σ(x W_ii + b_ii + h W_hi + b_hi)    f = σ(… forget …)    o = σ(… output …)
//! g = tanh(x W_ig + b_ig + h W_hg + b_hg)  c' = f ⊙ c + i ⊙ g    h' = o ⊙ tanh(c')
//! ```
//!
//! Measured (`lm-bench lstm-train 128 512 2 128 16 100`, 2 threads): 13% faster training
//! steps than `Lstm::forward`. Fusing the four gates into one `[d_in + d_hidden, 4·d_hidden]`
//! matmul and slicing its output was slower on flex (the gate slices are strided views), so
//! the gates stay four `GateController` products.
//!
//! It implements the layer's defaults (sigmoid gates, tanh cell and hidden activations, no
//! clipping, forward direction, batch-first), which is how [`super::CharLstm`] builds its
//! layers; autodiff differentiates it like any burn code, on every device.

use burn::nn::{Lstm, LstmState};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Device, Tensor};

/// The layer over a sequence given as one `[batch, d_in]` tensor per time step, from `state`.
/// Without a forget gate (burn's coupled mode) the forget gate is `1 − i`, as in burn.
///
/// # Shapes
/// `xs`: `t × [batch, d_in]`, `state`: `[batch, d_hidden]` →
/// `(t × [batch, d_hidden], state after the last step)`.
pub fn lstm_steps(
    layer: &Lstm,
    xs: Vec<Tensor<2>>,
    state: LstmState<2>,
) -> (Vec<Tensor<2>>, LstmState<2>) {
    let (mut c, mut h) = state.unpack();
    let mut outputs = Vec::with_capacity(xs.len());
    for x in xs {
        let i = sigmoid(layer.input_gate.gate_product(x.clone(), h.clone()));
        let f = match &layer.forget_gate {
            Some(gate) => sigmoid(gate.gate_product(x.clone(), h.clone())),
            None => i.clone().neg().add_scalar(1.0),
        };
        let o = sigmoid(layer.output_gate.gate_product(x.clone(), h.clone()));
        let g = tanh(layer.cell_gate.gate_product(x, h.clone()));
        c = f * c + i * g;
        h = o * tanh(c.clone());
        outputs.push(h.clone());
    }
    (outputs, LstmState::new(c, h))
}

/// Zero cell and hidden states `[batch, d_hidden]` for `layer`.
pub fn zero_state(layer: &Lstm, batch: usize, device: &Device) -> LstmState<2> {
    LstmState::new(
        Tensor::zeros([batch, layer.d_hidden], device),
        Tensor::zeros([batch, layer.d_hidden], device),
    )
}

/// The layer's forward pass over `x` from `state` (zeros when `None`): [`lstm_steps`] over
/// the time steps of `x`, stacked.
///
/// # Shapes
/// `x`: `[batch, t, d_in]` → `([batch, t, d_hidden], state of [batch, d_hidden])`.
pub fn lstm_forward(
    layer: &Lstm,
    x: Tensor<3>,
    state: Option<LstmState<2>>,
) -> (Tensor<3>, LstmState<2>) {
    let [b, t, d_in] = x.dims();
    let state = state.unwrap_or_else(|| zero_state(layer, b, &x.device()));
    if t == 0 {
        return (Tensor::empty([b, 0, layer.d_hidden], &x.device()), state);
    }
    let xs = (0..t)
        .map(|s| x.clone().narrow(1, s, 1).reshape([b, d_in]))
        .collect();
    let (ys, state) = lstm_steps(layer, xs, state);
    (Tensor::stack(ys, 1), state)
}

#[cfg(test)]
mod tests {
    use burn::nn::LstmConfig;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

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

    #[test]
    fn an_empty_sequence_gives_no_outputs_and_keeps_the_state() {
        let device = Device::flex();
        let m =
            super::super::CharLstm::new(&super::super::CharLstmConfig::new(30, 4, 6, 2), &device)
                .unwrap();
        let ids = Tensor::<2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(Vec::<i64>::new(), [2, 0]),
            &device,
        );
        let (logits, state) = m.forward(ids, None);
        assert_eq!(logits.dims(), [2, 0, 30]);
        assert_eq!(state.len(), 2);
        assert_eq!(state[0].hidden.dims(), [2, 6]);
    }
}
