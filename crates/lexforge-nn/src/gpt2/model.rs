//! The GPT-2 language model.

use crate::linear::linear;
use crate::norm::layer_norm;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::{Device, Int, Tensor};

use super::attention::{Gpt2Attention, LayerCache};
use super::config::Gpt2Config;
use crate::error::{NnError, Result};

/// The MLP of a block (HF `mlp.c_fc`, `mlp.c_proj`).
#[derive(Module, Debug)]
pub struct Gpt2Mlp {
    /// `[n_embd, n_inner]`.
    pub c_fc: Linear,
    /// `[n_inner, n_embd]`.
    pub c_proj: Linear,
    dropout: Dropout,
}

/// One transformer block: pre-norm attention and MLP with residuals.
#[derive(Module, Debug)]
pub struct Gpt2Block {
    /// HF `ln_1`.
    pub ln_1: LayerNorm,
    /// HF `attn`.
    pub attn: Gpt2Attention,
    /// HF `ln_2`.
    pub ln_2: LayerNorm,
    /// HF `mlp`.
    pub mlp: Gpt2Mlp,
    /// The layer norms' epsilon (`layer_norm_epsilon`).
    eps: f64,
}

impl Gpt2Block {
    fn forward(&self, x: Tensor<3>, cache: Option<&mut LayerCache>) -> Tensor<3> {
        let x = x.clone()
            + self
                .attn
                .forward(layer_norm(&self.ln_1, x, self.eps), cache);
        let h = linear(&self.mlp.c_fc, layer_norm(&self.ln_2, x.clone(), self.eps));
        x + self
            .mlp
            .dropout
            .forward(linear(&self.mlp.c_proj, crate::fused::gelu_new(h)))
    }
}

/// The KV cache of a whole model (one [`LayerCache`] per block).
#[derive(Debug, Clone, Default)]
pub struct Gpt2Cache {
    layers: Vec<LayerCache>,
}

impl Gpt2Cache {
    /// Positions already processed.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    /// Whether nothing was processed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// GPT-2 with its LM head (HF `GPT2LMHeadModel`).
#[derive(Module, Debug)]
pub struct Gpt2 {
    /// Token embeddings `[vocab_size, n_embd]` (HF `transformer.wte`); also the LM head when
    /// tied.
    pub wte: Embedding,
    /// Position embeddings `[n_positions, n_embd]` (HF `transformer.wpe`).
    pub wpe: Embedding,
    drop: Dropout,
    /// The blocks (HF `transformer.h`).
    pub h: Vec<Gpt2Block>,
    /// Final norm (HF `transformer.ln_f`).
    pub ln_f: LayerNorm,
    /// Untied LM head `[n_embd, vocab_size]`, when `tie_word_embeddings` is false.
    pub lm_head: Option<Linear>,
    n_positions: usize,
    /// The layer norms' epsilon (`layer_norm_epsilon`).
    eps: f64,
}

impl Gpt2 {
    /// A randomly initialized model (validates the config first), initialized as HF does:
    /// weights and embeddings from N(0, 0.02), biases zero, layer norms (1, 0).
    pub fn new(config: &Gpt2Config, device: &Device) -> Result<Self> {
        config.validate()?;
        let d = config.n_embd;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let linear = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_initializer(normal.clone())
                .init(device)
        };
        let zero_bias = |mut l: Linear| {
            if let Some(b) = l.bias.take() {
                l.bias = Some(Param::from_tensor(b.val().zeros_like()));
            }
            l
        };
        let ln = || {
            LayerNormConfig::new(d)
                .with_epsilon(config.layer_norm_epsilon)
                .init(device)
        };
        let h = (0..config.n_layer)
            .map(|_| Gpt2Block {
                ln_1: ln(),
                attn: {
                    let mut a = Gpt2Attention::new(
                        d,
                        config.n_head,
                        config.attn_pdrop,
                        config.resid_pdrop,
                        device,
                    );
                    a.c_attn = zero_bias(linear(d, 3 * d));
                    a.c_proj = zero_bias(linear(d, d));
                    a
                },
                ln_2: ln(),
                mlp: Gpt2Mlp {
                    c_fc: zero_bias(linear(d, config.inner())),
                    c_proj: zero_bias(linear(config.inner(), d)),
                    dropout: DropoutConfig::new(config.resid_pdrop).init(),
                },
                eps: config.layer_norm_epsilon,
            })
            .collect();
        Ok(Gpt2 {
            wte: EmbeddingConfig::new(config.vocab_size, d)
                .with_initializer(normal.clone())
                .init(device),
            wpe: EmbeddingConfig::new(config.n_positions, d)
                .with_initializer(normal.clone())
                .init(device),
            drop: DropoutConfig::new(config.embd_pdrop).init(),
            h,
            ln_f: ln(),
            lm_head: (!config.tie_word_embeddings).then(|| {
                LinearConfig::new(d, config.vocab_size)
                    .with_bias(false)
                    .init(device)
            }),
            n_positions: config.n_positions,
            eps: config.layer_norm_epsilon,
        })
    }

    /// Logits for every position.
    ///
    /// # Shapes
    /// `input_ids`: `[batch, t]` with `t <= n_positions` → `[batch, t, vocab_size]`.
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        self.forward_inner(input_ids, None)
    }

    /// Logits for the new positions `input_ids`, attending to those in `cache`, which is
    /// extended. Feeding a prompt then one token at a time gives the same logits as
    /// [`Gpt2::forward`] on the whole sequence.
    ///
    /// # Shapes
    /// `input_ids`: `[batch, t]`, `cache.len() + t <= n_positions` → `[batch, t, vocab_size]`.
    pub fn forward_cached(
        &self,
        input_ids: Tensor<2, Int>,
        cache: &mut Gpt2Cache,
    ) -> Result<Tensor<3>> {
        self.forward_inner(input_ids, Some(cache))
    }

    fn forward_inner(
        &self,
        input_ids: Tensor<2, Int>,
        cache: Option<&mut Gpt2Cache>,
    ) -> Result<Tensor<3>> {
        let [b, t] = input_ids.dims();
        let past = cache.as_ref().map_or(0, |c| c.len());
        if past + t > self.n_positions {
            return Err(NnError::InvalidInput {
                reason: format!(
                    "{} positions ({past} cached + {t} new) exceed the context of {}",
                    past + t,
                    self.n_positions
                ),
            });
        }
        let vocab = self.wte.weight.val().dims()[0];
        let range = Tensor::cat(
            vec![
                input_ids.clone().min().reshape([1]),
                input_ids.clone().max().reshape([1]),
            ],
            0,
        )
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| NnError::InvalidInput {
            reason: format!("cannot read token ids: {e:?}"),
        })?;
        if let [lo, hi] = range[..]
            && (lo < 0 || hi >= vocab as i64)
        {
            return Err(NnError::InvalidInput {
                reason: format!(
                    "token id {} is outside the vocabulary of {vocab}",
                    if lo < 0 { lo } else { hi }
                ),
            });
        }
        let device = input_ids.device();
        let positions = Tensor::<1, Int>::arange(past as i64..(past + t) as i64, &device)
            .reshape([1, t])
            .expand([b, t]);
        let mut x = self
            .drop
            .forward(self.wte.forward(input_ids) + self.wpe.forward(positions));
        match cache {
            Some(cache) => {
                if cache.layers.len() != self.h.len() {
                    cache.layers = vec![LayerCache::default(); self.h.len()];
                }
                for (block, layer) in self.h.iter().zip(cache.layers.iter_mut()) {
                    x = block.forward(x, Some(layer));
                }
            }
            None => {
                for block in &self.h {
                    x = block.forward(x, None);
                }
            }
        }
        let x = layer_norm(&self.ln_f, x, self.eps);
        Ok(match &self.lm_head {
            Some(head) => linear(head, x),
            // Tied: the embedding table `[vocab, d]`, read transposed in place.
            None => crate::linear::matmul_bias(x, self.wte.weight.val().transpose(), None),
        })
    }

    /// The context length.
    pub fn n_positions(&self) -> usize {
        self.n_positions
    }
}
