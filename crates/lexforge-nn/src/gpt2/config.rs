//! [`Gpt2Config`]: HF `GPT2Config` field names, so `config.json` files are shared with
//! `transformers`.

use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

fn d_vocab() -> usize {
    50257
}
fn d_positions() -> usize {
    1024
}
fn d_embd() -> usize {
    768
}
fn d_layer() -> usize {
    12
}
fn d_head() -> usize {
    12
}
fn d_pdrop() -> f64 {
    0.1
}
fn d_eps() -> f64 {
    1e-5
}
fn d_true() -> bool {
    true
}
fn d_act() -> String {
    "gelu_new".to_owned()
}
fn d_model_type() -> String {
    "gpt2".to_owned()
}
fn d_architectures() -> Vec<String> {
    vec!["GPT2LMHeadModel".to_owned()]
}

/// GPT-2 hyper-parameters with the field names and defaults of HF `GPT2Config` (unknown
/// fields of an HF `config.json` are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    /// Vocabulary size.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Context length (position embeddings).
    #[serde(default = "d_positions")]
    pub n_positions: usize,
    /// Hidden size.
    #[serde(default = "d_embd")]
    pub n_embd: usize,
    /// Number of blocks.
    #[serde(default = "d_layer")]
    pub n_layer: usize,
    /// Attention heads; must divide `n_embd`.
    #[serde(default = "d_head")]
    pub n_head: usize,
    /// MLP inner size; `None` means `4 * n_embd`.
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// Only `gelu_new` (the tanh approximation GPT-2 uses) is supported.
    #[serde(default = "d_act")]
    pub activation_function: String,
    /// Dropout after the residual projections.
    #[serde(default = "d_pdrop")]
    pub resid_pdrop: f64,
    /// Dropout on the embeddings.
    #[serde(default = "d_pdrop")]
    pub embd_pdrop: f64,
    /// Dropout on the attention weights.
    #[serde(default = "d_pdrop")]
    pub attn_pdrop: f64,
    /// Layer-norm epsilon.
    #[serde(default = "d_eps")]
    pub layer_norm_epsilon: f64,
    /// The LM head shares the token-embedding matrix.
    #[serde(default = "d_true")]
    pub tie_word_embeddings: bool,
    /// Beginning-of-text id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-text id (generation stops on it).
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// Always `"gpt2"`.
    #[serde(default = "d_model_type")]
    pub model_type: String,
    /// Always `["GPT2LMHeadModel"]`.
    #[serde(default = "d_architectures")]
    pub architectures: Vec<String>,
}

impl Default for Gpt2Config {
    fn default() -> Self {
        Gpt2Config::new(d_vocab(), d_positions(), d_embd(), d_layer(), d_head())
    }
}

impl Gpt2Config {
    /// A config with HF defaults for everything else.
    pub fn new(
        vocab_size: usize,
        n_positions: usize,
        n_embd: usize,
        n_layer: usize,
        n_head: usize,
    ) -> Self {
        Gpt2Config {
            vocab_size,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            n_inner: None,
            activation_function: d_act(),
            resid_pdrop: d_pdrop(),
            embd_pdrop: d_pdrop(),
            attn_pdrop: d_pdrop(),
            layer_norm_epsilon: d_eps(),
            tie_word_embeddings: true,
            bos_token_id: None,
            eos_token_id: None,
            model_type: d_model_type(),
            architectures: d_architectures(),
        }
    }

    /// The MLP inner size.
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Checks every field that can make the model impossible.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, value: String, reason: &str| NnError::InvalidConfig {
            field,
            value,
            reason: reason.to_owned(),
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
        ] {
            if v == 0 {
                return Err(bad(field, v.to_string(), "must be at least 1"));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(bad(
                "n_embd",
                self.n_embd.to_string(),
                &format!("must be divisible by n_head = {}", self.n_head),
            ));
        }
        if self.activation_function != "gelu_new" {
            return Err(bad(
                "activation_function",
                self.activation_function.clone(),
                "only gelu_new is supported",
            ));
        }
        for (field, p) in [
            ("resid_pdrop", self.resid_pdrop),
            ("embd_pdrop", self.embd_pdrop),
            ("attn_pdrop", self.attn_pdrop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(bad(field, p.to_string(), "must be in [0, 1)"));
            }
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err(bad(
                "layer_norm_epsilon",
                self.layer_norm_epsilon.to_string(),
                "must be positive",
            ));
        }
        Ok(())
    }
}
