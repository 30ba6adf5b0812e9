//! The BERT-family encoder: embeddings, post-norm transformer layers with bidirectional
//! attention over right-padded batches.

use crate::linear::linear;
use crate::norm::layer_norm;
use burn::module::{Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::{Activation, BertConfig, BertFamily};
use crate::attention::self_attention;
use crate::error::{NnError, Result};
use crate::fused::{self, AttentionMask, padding_mask};

/// Token, position and token-type embeddings, summed and normalized (HF `embeddings`).
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `[vocab, d]` (HF `word_embeddings`).
    pub word: Embedding,
    /// `[max_position_embeddings, d]` (HF `position_embeddings`).
    pub position: Embedding,
    /// `[type_vocab_size, d]` (HF `token_type_embeddings`).
    pub token_type: Embedding,
    /// HF `LayerNorm`.
    pub norm: LayerNorm,
    dropout: Dropout,
    /// The norm's epsilon (`layer_norm_eps`).
    eps: f64,
}

/// Multi-head self-attention (HF `attention.self` + `attention.output`).
#[derive(Module, Debug)]
pub struct BertAttention {
    /// `[d, d]` (HF `self.query`).
    pub query: Linear,
    /// `[d, d]` (HF `self.key`).
    pub key: Linear,
    /// `[d, d]` (HF `self.value`).
    pub value: Linear,
    /// `[d, d]` (HF `output.dense`).
    pub output: Linear,
    /// HF `output.LayerNorm`.
    pub norm: LayerNorm,
    attn_dropout: Dropout,
    dropout: Dropout,
    heads: usize,
    /// The norm's epsilon (`layer_norm_eps`).
    eps: f64,
}

/// One encoder layer: attention, then the feed-forward block, each with residual + layer norm.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// HF `attention`.
    pub attention: BertAttention,
    /// `[d, inner]` (HF `intermediate.dense`).
    pub intermediate: Linear,
    /// `[inner, d]` (HF `output.dense`).
    pub output: Linear,
    /// HF `output.LayerNorm`.
    pub norm: LayerNorm,
    dropout: Dropout,
    activation: usize,
    /// The norm's epsilon (`layer_norm_eps`).
    eps: f64,
}

/// A BERT, RoBERTa or XLM-RoBERTa encoder body (no pooler, no heads).
#[derive(Module, Debug)]
pub struct BertModel {
    /// HF `embeddings`.
    pub embeddings: BertEmbeddings,
    /// HF `encoder.layer`.
    pub layers: Vec<BertLayer>,
    family_roberta: bool,
    position_offset: usize,
    pad_token_id: usize,
    max_tokens: usize,
}

fn act_code(a: Activation) -> usize {
    match a {
        Activation::Gelu => 0,
        Activation::GeluTanh => 1,
        Activation::Relu => 2,
    }
}

impl BertAttention {
    /// # Shapes
    /// `x`: `[b, t, d]`, `lengths`: `b` real lengths → `[b, t, d]`.
    fn forward(&self, x: Tensor<3>, lengths: &[usize]) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let h = self.heads;
        let hd = d / h;
        let dropout_active = self.attn_dropout.prob > 0.0 && x.device().is_autodiff();
        if !dropout_active {
            // One product for queries, keys and values, then one operation for the heads,
            // scores, softmax and output (on flex the fused kernel of `crate::attention`).
            let layers = [&self.query, &self.key, &self.value];
            let w = Tensor::cat(layers.map(|l| l.weight.val()).to_vec(), 1);
            let bias = layers
                .iter()
                .map(|l| l.bias.as_ref().map(|b| b.val()))
                .collect::<Option<Vec<_>>>()
                .map(|b| Tensor::cat(b, 0));
            let qkv = crate::linear::matmul_bias(x.clone(), w, bias);
            let all_full = lengths.iter().all(|&l| l >= t);
            let mask = if all_full {
                AttentionMask::None
            } else {
                AttentionMask::Padding { lengths }
            };
            let context = self_attention(qkv, h, mask);
            let y = self.dropout.forward(linear(&self.output, context)) + x;
            return layer_norm(&self.norm, y, self.eps);
        }
        let split = |y: Tensor<3>| y.reshape([b, t, h, hd]).swap_dims(1, 2);
        let q = split(linear(&self.query, x.clone()));
        let k = split(linear(&self.key, x.clone()));
        let v = split(linear(&self.value, x.clone()));
        let context = if q.device().is_autodiff() {
            let weights = fused::attention_softmax(
                q.matmul(k.swap_dims(2, 3)),
                1.0 / (hd as f64).sqrt(),
                AttentionMask::Padding { lengths },
            );
            self.attn_dropout.forward(weights).matmul(v)
        } else {
            let all_full = lengths.iter().all(|&l| l >= t);
            let mask = (!all_full).then(|| padding_mask(lengths, b, t, &q.device()));
            attention(q, k, v, mask, None, AttentionModuleOptions::default())
        };
        let context = context.swap_dims(1, 2).reshape([b, t, d]);
        let y = self.dropout.forward(linear(&self.output, context)) + x;
        layer_norm(&self.norm, y, self.eps)
    }
}

impl BertLayer {
    fn forward(&self, x: Tensor<3>, lengths: &[usize]) -> Tensor<3> {
        let x = self.attention.forward(x, lengths);
        let inner = linear(&self.intermediate, x.clone());
        let inner = match self.activation {
            0 => fused::gelu(inner),
            1 => fused::gelu_new(inner),
            _ => burn::tensor::activation::relu(inner),
        };
        let y = self.dropout.forward(linear(&self.output, inner)) + x;
        layer_norm(&self.norm, y, self.eps)
    }
}

impl BertModel {
    /// A randomly initialized encoder (HF's init: N(0, 0.02) weights, zero biases, unit norms).
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] from [`BertConfig::validate`].
    pub fn new(config: &BertConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let d = config.hidden_size;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let linear = |i: usize, o: usize| {
            let mut l = LinearConfig::new(i, o)
                .with_initializer(normal.clone())
                .init(device);
            if let Some(b) = l.bias.take() {
                l.bias = Some(Param::from_tensor(b.val().zeros_like()));
            }
            l
        };
        let ln = || {
            LayerNormConfig::new(d)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, d)
                .with_initializer(normal.clone())
                .init(device)
        };
        let drop = || DropoutConfig::new(config.hidden_dropout_prob).init();
        let activation = act_code(config.activation()?);
        let layers = (0..config.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    query: linear(d, d),
                    key: linear(d, d),
                    value: linear(d, d),
                    output: linear(d, d),
                    norm: ln(),
                    attn_dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
                    dropout: drop(),
                    heads: config.num_attention_heads,
                    eps: config.layer_norm_eps,
                },
                intermediate: linear(d, config.intermediate_size),
                output: linear(config.intermediate_size, d),
                norm: ln(),
                dropout: drop(),
                activation,
                eps: config.layer_norm_eps,
            })
            .collect();
        Ok(BertModel {
            embeddings: BertEmbeddings {
                word: embedding(config.vocab_size),
                position: embedding(config.max_position_embeddings),
                token_type: embedding(config.type_vocab_size),
                norm: ln(),
                dropout: drop(),
                eps: config.layer_norm_eps,
            },
            layers,
            family_roberta: config.family()? == BertFamily::Roberta,
            position_offset: config.position_offset(),
            pad_token_id: config.pad_token_id,
            max_tokens: config.max_tokens(),
        })
    }

    /// Longest sequence the position table allows (special tokens included).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Hidden size `d`.
    pub fn hidden_size(&self) -> usize {
        self.embeddings.word.weight.val().dims()[1]
    }

    /// The padding id the model was trained with.
    pub fn pad_token_id(&self) -> usize {
        self.pad_token_id
    }

    /// Last hidden states of right-padded sequences (token type 0 everywhere).
    ///
    /// # Shapes
    /// `input_ids`: `[b, t]`, padded with anything after each row's length; `lengths`: `b`
    /// values in `1..=t` → `[b, t, d]`. Rows past their length hold values that callers must
    /// ignore (pooling does).
    ///
    /// # Errors
    /// [`NnError::InvalidInput`] when `t` exceeds [`BertModel::max_tokens`], a length is out of
    /// range, or an id is outside the vocabulary.
    pub fn forward(&self, input_ids: Tensor<2, Int>, lengths: &[usize]) -> Result<Tensor<3>> {
        self.forward_frozen(input_ids, lengths, 0)
    }

    /// [`BertModel::forward_frozen`] on token sequences of any lengths, right-padded here with
    /// the model's padding id, on the model's device. Returns the states and the lengths.
    ///
    /// # Shapes
    /// `ids`: `b` sequences → (`[b, t, d]` with `t` the longest length, `b` lengths).
    ///
    /// # Errors
    /// [`NnError::InvalidInput`] for no sequences or an empty one; as [`BertModel::forward`].
    pub fn forward_ids(&self, ids: &[Vec<u32>], frozen: usize) -> Result<(Tensor<3>, Vec<usize>)> {
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        if lengths.is_empty() || lengths.contains(&0) {
            return Err(NnError::InvalidInput {
                reason: "an empty batch or an empty token sequence".to_owned(),
            });
        }
        let t = lengths.iter().copied().max().unwrap_or(1);
        let pad = self.pad_token_id as i64;
        let flat: Vec<i64> = ids
            .iter()
            .flat_map(|row| {
                row.iter()
                    .map(|&i| i64::from(i))
                    .chain(std::iter::repeat_n(pad, t - row.len()))
            })
            .collect();
        let device = self.embeddings.word.weight.val().device();
        let input = Tensor::<2, Int>::from_data(TensorData::new(flat, [ids.len(), t]), &device);
        let hidden = self.forward_frozen(input, &lengths, frozen)?;
        Ok((hidden, lengths))
    }

    /// [`BertModel::forward`] with the bottom `frozen` stages outside the gradient: stage 0 is
    /// the embeddings, stage `i` is layer `i − 1`. Their output is detached, so backward
    /// stops there (fine-tuning only the top layers costs less than half the backward of a
    /// full model). `frozen = 0` trains everything; values above the number of layers + 1 are
    /// clamped.
    ///
    /// # Errors
    /// As [`BertModel::forward`].
    pub fn forward_frozen(
        &self,
        input_ids: Tensor<2, Int>,
        lengths: &[usize],
        frozen: usize,
    ) -> Result<Tensor<3>> {
        let [b, t] = input_ids.dims();
        if t > self.max_tokens {
            return Err(NnError::InvalidInput {
                reason: format!(
                    "{t} tokens exceed the model's {} positions",
                    self.max_tokens
                ),
            });
        }
        if lengths.len() != b || lengths.iter().any(|&l| l == 0 || l > t) {
            return Err(NnError::InvalidInput {
                reason: format!("lengths {lengths:?} do not fit a batch of {b} x {t} tokens"),
            });
        }
        let vocab = self.embeddings.word.weight.val().dims()[0];
        let ids = input_ids
            .clone()
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| NnError::InvalidInput {
                reason: format!("cannot read token ids: {e:?}"),
            })?;
        if let Some(bad) = ids.iter().find(|&&i| i < 0 || i as usize >= vocab) {
            return Err(NnError::InvalidInput {
                reason: format!("token id {bad} is outside the vocabulary (size {vocab})"),
            });
        }
        let device = input_ids.device();
        // BERT: 0..t. RoBERTa: pad + 1 + i for real tokens, pad for padding (HF
        // `create_position_ids_from_input_ids`).
        let positions: Vec<i64> = lengths
            .iter()
            .flat_map(|&len| {
                (0..t).map(move |i| {
                    if !self.family_roberta {
                        i as i64
                    } else if i < len {
                        (self.position_offset + i) as i64
                    } else {
                        self.pad_token_id as i64
                    }
                })
            })
            .collect();
        let positions = Tensor::<2, Int>::from_data(TensorData::new(positions, [b, t]), &device);
        let d = self.hidden_size();
        let token_type = self
            .embeddings
            .token_type
            .weight
            .val()
            .slice([0..1, 0..d])
            .reshape([1, 1, d]);
        let x = self.embeddings.word.forward(input_ids)
            + self.embeddings.position.forward(positions)
            + token_type;
        let mut x = self.embeddings.dropout.forward(layer_norm(
            &self.embeddings.norm,
            x,
            self.embeddings.eps,
        ));
        if frozen >= 1 {
            x = x.detach();
        }
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, lengths);
            if frozen >= i + 2 {
                x = x.detach();
            }
        }
        Ok(x)
    }
}
