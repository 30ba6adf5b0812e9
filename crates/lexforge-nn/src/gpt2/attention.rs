//! Causal self-attention with a key/value cache.

use crate::linear::linear;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor};

use crate::attention::self_attention;
use crate::fused::{AttentionMask, attention_softmax};

/// Keys and values of the positions seen so far, per layer.
///
/// Shapes: `[batch, n_head, past, head_dim]`.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    kv: Option<(Tensor<4>, Tensor<4>)>,
}

impl LayerCache {
    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// GPT-2 attention: fused `c_attn` (q, k, v), causal softmax, `c_proj`.
#[derive(Module, Debug)]
pub struct Gpt2Attention {
    /// `[n_embd, 3 * n_embd]` projection to queries, keys and values (HF `attn.c_attn`).
    pub c_attn: Linear,
    /// `[n_embd, n_embd]` output projection (HF `attn.c_proj`).
    pub c_proj: Linear,
    attn_dropout: Dropout,
    resid_dropout: Dropout,
    n_head: usize,
}

impl Gpt2Attention {
    /// A freshly initialized attention layer.
    pub fn new(
        n_embd: usize,
        n_head: usize,
        attn_pdrop: f64,
        resid_pdrop: f64,
        device: &Device,
    ) -> Self {
        Gpt2Attention {
            c_attn: LinearConfig::new(n_embd, 3 * n_embd).init(device),
            c_proj: LinearConfig::new(n_embd, n_embd).init(device),
            attn_dropout: DropoutConfig::new(attn_pdrop).init(),
            resid_dropout: DropoutConfig::new(resid_pdrop).init(),
            n_head,
        }
    }

    /// # Shapes
    /// `x`: `[batch, t, n_embd]` → `[batch, t, n_embd]`. With a cache, `x` holds only the new
    /// positions; they attend to the cached ones, which the cache then extends.
    pub fn forward(&self, x: Tensor<3>, cache: Option<&mut LayerCache>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let h = self.n_head;
        let hd = d / h;
        let qkv = linear(&self.c_attn, x);
        let dropout_active = self.attn_dropout.prob > 0.0 && qkv.device().is_autodiff();
        if cache.is_none() && !dropout_active {
            // One operation for heads, scores, causal softmax and output (every device; on
            // flex the fused kernel of `crate::attention`).
            let out = self_attention(qkv, h, AttentionMask::Causal { past: 0 });
            return self.resid_dropout.forward(linear(&self.c_proj, out));
        }
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * d, d)
                .reshape([b, t, h, hd])
                .swap_dims(1, 2)
        };
        let (q, mut k, mut v) = (split(0), split(1), split(2));
        let mut past = 0;
        if let Some(cache) = cache {
            if let Some((pk, pv)) = cache.kv.take() {
                past = pk.dims()[2];
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            cache.kv = Some((k.clone(), v.clone()));
        }
        if !q.device().is_autodiff() {
            // Inference (evaluation, generation): the backend's fused attention, causal with the
            // cached positions visible (offset `past`); no dropout applies here.
            let out = attention(
                q,
                k,
                v,
                None,
                None,
                AttentionModuleOptions {
                    is_causal: true,
                    ..AttentionModuleOptions::default()
                },
            );
            return linear(&self.c_proj, out.swap_dims(1, 2).reshape([b, t, d]));
        }
        let weights = attention_softmax(
            q.matmul(k.swap_dims(2, 3)),
            1.0 / (hd as f64).sqrt(),
            AttentionMask::Causal { past },
        );
        let weights = self.attn_dropout.forward(weights);
        let out = weights.matmul(v).swap_dims(1, 2).reshape([b, t, d]);
        self.resid_dropout.forward(linear(&self.c_proj, out))
    }
}
