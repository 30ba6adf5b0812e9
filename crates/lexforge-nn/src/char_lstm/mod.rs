//! Char-LSTM: embedding → stacked LSTM → projection, stateful across chunks. The layers are
//! burn's `Lstm` modules (their parameters, their checkpoints), each run as one whole-sequence
//! operation ([`sequence::lstm_sequence`]).

mod kernel;
pub mod sequence;

use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig, Lstm, LstmConfig,
    LstmState,
};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};
use crate::generate::CausalLm;

/// Char-LSTM hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CharLstmConfig {
    /// Vocabulary size (characters + special tokens).
    pub vocab_size: usize,
    /// Embedding size.
    pub d_embed: usize,
    /// Hidden size of every LSTM layer.
    pub d_hidden: usize,
    /// Stacked LSTM layers.
    pub n_layers: usize,
    /// Dropout between layers and before the projection.
    pub dropout: f64,
}

impl CharLstmConfig {
    /// A config (2 layers of 512 is the classic char-rnn size).
    pub fn new(vocab_size: usize, d_embed: usize, d_hidden: usize, n_layers: usize) -> Self {
        CharLstmConfig {
            vocab_size,
            d_embed,
            d_hidden,
            n_layers,
            dropout: 0.0,
        }
    }

    /// Checks the sizes and dropout.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("d_embed", self.d_embed),
            ("d_hidden", self.d_hidden),
            ("n_layers", self.n_layers),
        ] {
            if v == 0 {
                return Err(NnError::InvalidConfig {
                    field,
                    value: "0".to_owned(),
                    reason: "must be at least 1".to_owned(),
                });
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(NnError::InvalidConfig {
                field: "dropout",
                value: self.dropout.to_string(),
                reason: "must be in [0, 1)".to_owned(),
            });
        }
        Ok(())
    }
}

/// The recurrent state of every layer (`[batch, d_hidden]` cell and hidden tensors).
pub type CharLstmState = Vec<LstmState<2>>;

/// The char-LSTM language model.
#[derive(Module, Debug)]
pub struct CharLstm {
    /// Token embeddings `[vocab, d_embed]`.
    pub embedding: Embedding,
    /// The stacked layers (batch-first).
    pub layers: Vec<Lstm>,
    dropout: Dropout,
    /// Projection to logits `[d_hidden, vocab]`.
    pub proj: Linear,
    vocab_size: usize,
}

impl CharLstm {
    /// A randomly initialized model.
    pub fn new(config: &CharLstmConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let layers = (0..config.n_layers)
            .map(|i| {
                let d_in = if i == 0 {
                    config.d_embed
                } else {
                    config.d_hidden
                };
                LstmConfig::new(d_in, config.d_hidden, true).init(device)
            })
            .collect();
        Ok(CharLstm {
            embedding: EmbeddingConfig::new(config.vocab_size, config.d_embed).init(device),
            layers,
            dropout: DropoutConfig::new(config.dropout).init(),
            proj: LinearConfig::new(config.d_hidden, config.vocab_size).init(device),
            vocab_size: config.vocab_size,
        })
    }

    /// Logits for every position, continuing from `state` (none: zeros); returns the state
    /// after the last position, so a long text can be fed in chunks.
    ///
    /// # Shapes
    /// `input_ids`: `[batch, t]` → `[batch, t, vocab_size]`.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        state: Option<CharLstmState>,
    ) -> (Tensor<3>, CharLstmState) {
        // Time-major through the whole stack: each layer is one whole-sequence operation
        // ([`sequence::lstm_sequence`]) on `[t, batch, ·]` tensors, whose steps are contiguous.
        let [b, t] = input_ids.dims();
        if t == 0 {
            return self.forward_empty(b, state);
        }
        let device = self.device();
        let mut states = state.map(|s| s.into_iter().map(Some).collect::<Vec<_>>());
        let mut take_state = |i: usize, layer: &Lstm| {
            states
                .as_mut()
                .and_then(|v| v.get_mut(i))
                .and_then(Option::take)
                .unwrap_or_else(|| sequence::zero_state(layer, b, &device))
        };
        let ids = input_ids.swap_dims(0, 1).reshape([t * b]);
        let mut out_states = Vec::with_capacity(self.layers.len());
        let mut x: Option<Tensor<3>> = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let s = take_state(i, layer);
            let (hs, s) = match (sequence::FusedGates::of(layer), x.take()) {
                // The first layer's input side for the whole vocabulary at once
                // (`E W_x + b`, `[vocab, 4H]`), looked up per position.
                (Some(gates), None) => {
                    let table =
                        self.embedding.weight.val().matmul(gates.wx.clone()) + gates.bias.clone();
                    let [_, g] = table.dims();
                    gates.run(table.select(0, ids.clone()).reshape([t, b, g]), s)
                }
                (Some(gates), Some(x)) => gates.run(gates.input_side(x), s),
                // A layer the fused operation does not cover runs burn's own forward.
                (None, x) => {
                    let x = x.unwrap_or_else(|| {
                        let [_, d] = self.embedding.weight.dims();
                        self.embedding
                            .weight
                            .val()
                            .select(0, ids.clone())
                            .reshape([t, b, d])
                    });
                    let (y, s) = layer.forward(x.swap_dims(0, 1), Some(s));
                    (y.swap_dims(0, 1), s)
                }
            };
            out_states.push(s);
            x = Some(self.dropout.forward(hs));
        }
        let hs = x.unwrap_or_else(|| unreachable!("a validated config has at least one layer"));
        (
            crate::linear::linear(&self.proj, hs).swap_dims(0, 1),
            out_states,
        )
    }

    /// No time steps: no logits, the state unchanged (zeros when `None`).
    fn forward_empty(&self, b: usize, state: Option<CharLstmState>) -> (Tensor<3>, CharLstmState) {
        let device = self.device();
        let state = state.unwrap_or_else(|| {
            self.layers
                .iter()
                .map(|l| sequence::zero_state(l, b, &device))
                .collect()
        });
        (Tensor::empty([b, 0, self.vocab_size], &device), state)
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&i| i as usize >= self.vocab_size) {
            Some(id) => Err(NnError::InvalidInput {
                reason: format!(
                    "token id {id} is outside the vocabulary of {}",
                    self.vocab_size
                ),
            }),
            None => Ok(()),
        }
    }

    fn device(&self) -> Device {
        self.proj.weight.val().device()
    }
}

fn host_rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, v] = t.dims();
    let flat = t
        .into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .map_err(|e| NnError::InvalidInput {
            reason: format!("cannot read logits: {e:?}"),
        })?;
    Ok(flat.chunks(v).map(<[f32]>::to_vec).collect())
}

impl CausalLm for CharLstm {
    type State = CharLstmState;

    fn max_positions(&self) -> Option<usize> {
        None
    }

    fn prefill(&self, prompt: &[u32], batch: usize) -> Result<(Self::State, Vec<Vec<f32>>)> {
        self.check_ids(prompt)?;
        let ids: Vec<i64> = (0..batch)
            .flat_map(|_| prompt.iter().map(|&t| i64::from(t)))
            .collect();
        let x = Tensor::from_data(TensorData::new(ids, [batch, prompt.len()]), &self.device());
        let (logits, state) = self.forward(x, None);
        let [b, t, v] = logits.dims();
        Ok((
            state,
            host_rows(logits.narrow(1, t - 1, 1).reshape([b, v]))?,
        ))
    }

    fn step(&self, state: &mut Self::State, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        self.check_ids(tokens)?;
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let x = Tensor::from_data(TensorData::new(ids, [tokens.len(), 1]), &self.device());
        let (logits, next) = self.forward(x, Some(std::mem::take(state)));
        *state = next;
        let [b, _, v] = logits.dims();
        host_rows(logits.reshape([b, v]))
    }

    fn log_probs(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        self.check_ids(ids)?;
        let x = Tensor::from_data(
            TensorData::new(
                ids.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(),
                [1, ids.len()],
            ),
            &self.device(),
        );
        let (logits, _) = self.forward(x, None);
        let [_, t, v] = logits.dims();
        host_rows(log_softmax(logits, 2).reshape([t, v]))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    #[test]
    fn an_empty_sequence_gives_no_outputs_and_keeps_the_state() {
        let device = Device::flex();
        let m = CharLstm::new(&CharLstmConfig::new(30, 4, 6, 2), &device).unwrap();
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
        let m = CharLstm::new(&CharLstmConfig::new(20, 6, 8, 2), &device).unwrap();
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
