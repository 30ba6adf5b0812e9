//! Char-LSTM: embedding → stacked LSTM → projection, stateful across chunks. The layers are
//! burn's `Lstm` modules (their parameters, their checkpoints), run by [`steps::lstm_steps`]
//! on one tensor per time step.

pub mod steps;

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
        // One tensor per time step through the whole stack (see [`steps`]): the embedding of
        // each step's ids, each layer's per-step outputs, stacked once before the projection.
        let [b, t] = input_ids.dims();
        if t == 0 {
            return self.forward_empty(b, state);
        }
        let mut states = state.map(|s| s.into_iter().map(Some).collect::<Vec<_>>());
        let mut take_state = |i: usize, layer: &Lstm| {
            states
                .as_mut()
                .and_then(|v| v.get_mut(i))
                .and_then(Option::take)
                .unwrap_or_else(|| steps::zero_state(layer, b, &self.device()))
        };
        let mut out_states = Vec::with_capacity(self.layers.len());
        let mut xs: Vec<Tensor<2>> = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let s = take_state(i, layer);
            let (ys, s) = if i == 0 {
                // The first layer's input side of every gate, for the whole vocabulary at
                // once (`E W_x + b`, `[vocab, d_hidden]`), looked up per step.
                let tables = steps::InputSide::of(layer).apply(self.embedding.weight.val());
                let projected = (0..t)
                    .map(|s| {
                        let ids = input_ids.clone().narrow(1, s, 1).reshape([b]);
                        tables
                            .each_ref()
                            .map(|tb| tb.as_ref().map(|tb| tb.clone().select(0, ids.clone())))
                    })
                    .collect();
                steps::lstm_steps_projected(layer, projected, s)
            } else {
                steps::lstm_steps(layer, std::mem::take(&mut xs), s)
            };
            out_states.push(s);
            xs = ys.into_iter().map(|y| self.dropout.forward(y)).collect();
        }
        (self.proj.forward(Tensor::stack(xs, 1)), out_states)
    }

    /// No time steps: no logits, the state unchanged (zeros when `None`).
    fn forward_empty(&self, b: usize, state: Option<CharLstmState>) -> (Tensor<3>, CharLstmState) {
        let device = self.device();
        let state = state.unwrap_or_else(|| {
            self.layers
                .iter()
                .map(|l| steps::zero_state(l, b, &device))
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
