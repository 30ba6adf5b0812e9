//! [`BertConfig`]: HF `BertConfig` / `RobertaConfig` / `XLMRobertaConfig` field names, so a
//! model directory's `config.json` is read as is (unknown fields are ignored).

use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

fn d_vocab() -> usize {
    30522
}
fn d_hidden() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_inter() -> usize {
    3072
}
fn d_act() -> String {
    "gelu".to_owned()
}
fn d_drop() -> f64 {
    0.1
}
fn d_positions() -> usize {
    512
}
fn d_types() -> usize {
    2
}
fn d_eps() -> f64 {
    1e-12
}
fn d_position_type() -> String {
    "absolute".to_owned()
}

/// The architectures this encoder implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BertFamily {
    /// BERT, MiniLM and other BERT-shaped models (`model_type = "bert"`): positions `0..t`.
    Bert,
    /// RoBERTa and XLM-RoBERTa (`"roberta"`, `"xlm-roberta"`): positions start after the
    /// padding id (`pad_token_id + 1 + i`).
    Roberta,
}

/// The feed-forward activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `"gelu"`: exact, erf-based.
    Gelu,
    /// `"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`: the tanh approximation.
    GeluTanh,
    /// `"relu"`.
    Relu,
}

/// Hyper-parameters of a BERT-family encoder, with HF names and `BertConfig` defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// `"bert"`, `"roberta"` or `"xlm-roberta"`.
    pub model_type: String,
    /// Vocabulary size.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Hidden size `d`.
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    /// Number of layers.
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads; must divide `hidden_size`.
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    /// Feed-forward inner size.
    #[serde(default = "d_inter")]
    pub intermediate_size: usize,
    /// Feed-forward activation: `gelu`, `gelu_new` (and its aliases) or `relu`.
    #[serde(default = "d_act")]
    pub hidden_act: String,
    /// Dropout on embeddings and residual branches (training only).
    #[serde(default = "d_drop")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention weights (training only).
    #[serde(default = "d_drop")]
    pub attention_probs_dropout_prob: f64,
    /// Rows of the position-embedding table (RoBERTa reserves `pad_token_id + 1` of them).
    #[serde(default = "d_positions")]
    pub max_position_embeddings: usize,
    /// Rows of the token-type table (2 for BERT, 1 for RoBERTa).
    #[serde(default = "d_types")]
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id (0 for BERT, 1 for RoBERTa).
    #[serde(default)]
    pub pad_token_id: usize,
    /// Only `"absolute"` is supported.
    #[serde(default = "d_position_type")]
    pub position_embedding_type: String,
}

impl BertConfig {
    /// A BERT config with HF defaults except the sizes given (for tests and new models).
    pub fn bert(vocab_size: usize, hidden: usize, layers: usize, heads: usize) -> Self {
        BertConfig {
            model_type: "bert".to_owned(),
            vocab_size,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: 4 * hidden,
            hidden_act: d_act(),
            hidden_dropout_prob: d_drop(),
            attention_probs_dropout_prob: d_drop(),
            max_position_embeddings: d_positions(),
            type_vocab_size: d_types(),
            layer_norm_eps: d_eps(),
            pad_token_id: 0,
            position_embedding_type: d_position_type(),
        }
    }

    /// The architecture family of `model_type`.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] for another model type.
    pub fn family(&self) -> Result<BertFamily> {
        match self.model_type.as_str() {
            "bert" => Ok(BertFamily::Bert),
            "roberta" | "xlm-roberta" | "camembert" => Ok(BertFamily::Roberta),
            other => Err(NnError::InvalidConfig {
                field: "model_type",
                value: other.to_owned(),
                reason: "supported: bert, roberta, xlm-roberta (camembert)".to_owned(),
            }),
        }
    }

    /// The activation named by `hidden_act`.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] for an unsupported activation.
    pub fn activation(&self) -> Result<Activation> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(NnError::InvalidConfig {
                field: "hidden_act",
                value: other.to_owned(),
                reason: "supported: gelu, gelu_new (gelu_pytorch_tanh, gelu_fast), relu".to_owned(),
            }),
        }
    }

    /// First position id of a sequence: 0 for BERT, `pad_token_id + 1` for RoBERTa.
    pub fn position_offset(&self) -> usize {
        match self.family() {
            Ok(BertFamily::Roberta) => self.pad_token_id + 1,
            _ => 0,
        }
    }

    /// Longest sequence (special tokens included) the position table allows.
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.position_offset())
    }

    /// Checks the config can build a model.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        self.family()?;
        self.activation()?;
        let bad = |field: &'static str, value: String, reason: &str| {
            Err(NnError::InvalidConfig {
                field,
                value,
                reason: reason.to_owned(),
            })
        };
        if self.position_embedding_type != "absolute" {
            return bad(
                "position_embedding_type",
                self.position_embedding_type.clone(),
                "only absolute position embeddings are supported",
            );
        }
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return bad(field, "0".to_owned(), "must be positive");
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(
                "hidden_size",
                self.hidden_size.to_string(),
                &format!(
                    "must be divisible by num_attention_heads = {}",
                    self.num_attention_heads
                ),
            );
        }
        if self.max_tokens() < 2 {
            return bad(
                "max_position_embeddings",
                self.max_position_embeddings.to_string(),
                "leaves fewer than 2 positions",
            );
        }
        if self.pad_token_id >= self.vocab_size {
            return bad(
                "pad_token_id",
                self.pad_token_id.to_string(),
                "is outside the vocabulary",
            );
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(field, p.to_string(), "must be in [0, 1)");
            }
        }
        Ok(())
    }
}
