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
//! Each gate's two biases are summed once per call, and a first layer fed by an embedding
//! computes its input side for the whole vocabulary once (`E W_x + b`, looked up per step,
//! [`lstm_steps_projected`]).
//!
//! Measured (`lm-bench lstm-train 128 512 2 128 16 100`, 2 threads, binaries alternating):
//! per-step tensors +16% training tokens/s over `Lstm::forward`; the summed biases and the
//! vocabulary table another +6%. Slower on flex and not used: one `[d_in + d_hidden,
//! 4·d_hidden]` matmul for all gates with its output sliced (strided gate views), and one
//! `[x, h]` matmul per gate (a `cat` per step).
//!
//! It implements the layer's defaults (sigmoid gates, tanh cell and hidden activations, no
//! clipping, forward direction, batch-first), which is how [`super::CharLstm`] builds its
//! layers; autodiff differentiates it like any burn code, on every device.

use burn::nn::{GateController, Lstm, LstmState};
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
    let side = InputSide::of(layer);
    let projected = xs.into_iter().map(|x| side.apply(x)).collect();
    lstm_steps_projected(layer, projected, state)
}

/// [`lstm_steps`] with each step's input side already applied: `projected[s][k]` is
/// `x_s W_x + b_x + b_h` of gate `k` (input, forget, output, cell; `None` for an absent forget
/// gate), `[batch, d_hidden]`. A first layer can compute these for a whole vocabulary at once
/// and look them up per step ([`super::CharLstm::forward`]).
pub fn lstm_steps_projected(
    layer: &Lstm,
    projected: Vec<[Option<Tensor<2>>; 4]>,
    state: LstmState<2>,
) -> (Vec<Tensor<2>>, LstmState<2>) {
    let (mut c, mut h) = state.unpack();
    let gates = gates(layer);
    let w: Vec<Tensor<2>> = gates
        .iter()
        .map(|g| g.hidden_transform.weight.val())
        .collect();
    let mut outputs = Vec::with_capacity(projected.len());
    for [pi, pf, po, pg] in projected {
        let z = |p: Option<Tensor<2>>, k: usize| {
            let hz = h.clone().matmul(w[k].clone());
            match p {
                Some(p) => p + hz,
                None => hz,
            }
        };
        let i = sigmoid(z(pi, 0));
        let f = match &layer.forget_gate {
            Some(_) => sigmoid(z(pf, 1)),
            None => i.clone().neg().add_scalar(1.0),
        };
        let o = sigmoid(z(po, 2));
        let g = tanh(z(pg, 3));
        c = f * c + i * g;
        h = o * tanh(c.clone());
        outputs.push(h.clone());
    }
    (outputs, LstmState::new(c, h))
}

/// The layer's gates in the order input, forget, output, cell (the forget gate stands in for
/// itself when absent: its slot is then unused).
fn gates(layer: &Lstm) -> [&GateController; 4] {
    [
        &layer.input_gate,
        layer.forget_gate.as_ref().unwrap_or(&layer.input_gate),
        &layer.output_gate,
        &layer.cell_gate,
    ]
}

/// The input side of a layer's gates, `x W_x + b_x + b_h` for each gate (input, forget,
/// output, cell; no forget slot in burn's coupled mode), with the two biases summed once.
pub(crate) struct InputSide {
    gates: [Option<(Tensor<2>, Option<Tensor<2>>)>; 4],
}

impl InputSide {
    /// The weights `W_x` and summed biases of `layer`'s gates.
    pub(crate) fn of(layer: &Lstm) -> Self {
        let side = |g: &GateController| {
            let (x, h) = (&g.input_transform.bias, &g.hidden_transform.bias);
            let bias = match (x, h) {
                (Some(a), Some(b)) => Some(a.val() + b.val()),
                (Some(a), None) | (None, Some(a)) => Some(a.val()),
                (None, None) => None,
            }
            .map(|b| {
                let [d] = b.dims();
                b.reshape([1, d])
            });
            (g.input_transform.weight.val(), bias)
        };
        InputSide {
            gates: [
                Some(side(&layer.input_gate)),
                layer.forget_gate.as_ref().map(side),
                Some(side(&layer.output_gate)),
                Some(side(&layer.cell_gate)),
            ],
        }
    }

    /// `x W_x + b` per gate for `x` `[rows, d_in]` → `[rows, d_hidden]` each.
    pub(crate) fn apply(&self, x: Tensor<2>) -> [Option<Tensor<2>>; 4] {
        self.gates.each_ref().map(|g| {
            g.as_ref().map(|(w, b)| {
                let z = x.clone().matmul(w.clone());
                match b {
                    Some(b) => z + b.clone(),
                    None => z,
                }
            })
        })
    }
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

    #[test]
    fn the_char_lstm_equals_embedding_then_burns_lstm_layers_then_projection() {
        // The first layer's folded input side (a per-vocabulary table looked up per step) and
        // the later layers' per-step path, against the plain composition, values and
        // gradients of the embedding table and the first layer's input weights.
        let device = Device::flex().autodiff();
        lexforge_core::Seed(5).apply_to(&device);
        let m =
            super::super::CharLstm::new(&super::super::CharLstmConfig::new(20, 6, 8, 2), &device)
                .unwrap();
        let ids: Vec<i64> = (0..3 * 7).map(|i| (i * 7 + 3) % 20).collect();
        let ids = Tensor::<2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(ids, [3, 7]),
            &device,
        );
        let (ours, _) = m.forward(ids.clone(), None);
        let mut x = m.embedding.forward(ids);
        for layer in &m.layers {
            x = layer.forward(x, None).0;
        }
        let plain = m.proj.forward(x);
        let tol = Tolerance::<f32>::absolute(1e-5);
        ours.to_data().assert_approx_eq(&plain.to_data(), tol);
        let w = Tensor::<3>::random([3, 7, 20], Distribution::Normal(0.0, 1.0), &device);
        let ga = (ours * w.clone()).sum().backward();
        let gb = (plain * w).sum().backward();
        let tol = Tolerance::<f32>::absolute(1e-4);
        let e = &m.embedding.weight;
        e.grad(&ga)
            .unwrap()
            .to_data()
            .assert_approx_eq(&e.grad(&gb).unwrap().to_data(), tol);
        let wx = &m.layers[0].cell_gate.input_transform.weight;
        wx.grad(&ga)
            .unwrap()
            .to_data()
            .assert_approx_eq(&wx.grad(&gb).unwrap().to_data(), tol);
        let bh = m.layers[0]
            .forget_gate
            .as_ref()
            .unwrap()
            .hidden_transform
            .bias
            .as_ref()
            .unwrap();
        bh.grad(&ga)
            .unwrap()
            .to_data()
            .assert_approx_eq(&bh.grad(&gb).unwrap().to_data(), tol);
    }
}
