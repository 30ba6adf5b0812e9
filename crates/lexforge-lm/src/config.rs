//! The configuration of a language-model run (what `lexforge lm train CONFIG.toml` reads).

use std::path::PathBuf;

use lexforge_core::{Device, DeviceSpec, Precision};
use lexforge_tokenizers::{TokenizerConfig, TokenizerMethod, TokenizerOptions};
use lexforge_train::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::error::{LmError, Result};

/// A whole run: corpus → tokenizer → model → training → evaluation. Where the run goes and
/// which device it computes on (with its precision) are arguments of [`crate::train`], as for
/// every pipeline, not part of the config.
///
/// ```toml
/// seed = 0
/// context = 128
/// [corpus]
/// paths = ["books/"]
/// [tokenizer.train]
/// method = "bpe"
/// vocab_size = 4000
/// [model]
/// type = "gpt2"
/// n_layer = 2
/// [train]
/// max_steps = 300
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmRunConfig {
    /// Seed of everything random (split, init, data order, dropout, samples).
    #[serde(default)]
    pub seed: u64,
    /// More devices for data-parallel training (`["ndarray"]`, `["cuda:1", "cuda:2"]`), in the
    /// main device's precision: each
    /// computes the gradients of its own micro-batches on a copy of the model, and each
    /// optimizer step takes `train.grad_accum_steps × (1 + replicas)` micro-batches. The same
    /// update as one device accumulating them (see `docs/scaling.md`).
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Tokens per training window: the model's context.
    #[serde(default = "default_context")]
    pub context: usize,
    /// The text.
    pub corpus: CorpusConfig,
    /// Where the tokenizer comes from.
    pub tokenizer: TokenizerSource,
    /// The network.
    pub model: ModelConfig,
    /// The optimizer loop. Its `seed` is replaced by the run's `seed`.
    #[serde(default)]
    pub train: TrainConfig,
    /// Samples written to `eval/samples.jsonl` at the end.
    #[serde(default)]
    pub samples: SampleConfig,
}

fn default_context() -> usize {
    128
}
fn default_validation_fraction() -> f64 {
    0.1
}

/// Which text to train on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusConfig {
    /// `.txt` files and directories of them (each file is a document).
    pub paths: Vec<PathBuf>,
    /// Share of documents held out for validation, in (0, 0.5]; split by a seeded hash of
    /// each document, so the tokenizer never sees validation text either.
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
    /// Distance between the starts of training windows (default: the context, no overlap).
    #[serde(default)]
    pub stride: Option<usize>,
}

/// An existing tokenizer, or one to train on the training documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSource {
    /// A tokenizer artifact directory or `tokenizer.json`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Train one with these settings.
    #[serde(default)]
    pub train: Option<TokenizerSpec>,
}

/// A tokenizer to train: the method, its size and optional overrides of the method defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSpec {
    /// `bpe`, `wordpiece`, `unigram` or `char`.
    pub method: TokenizerMethod,
    /// Vocabulary size, special tokens included.
    pub vocab_size: usize,
    /// Overrides of the method defaults.
    #[serde(flatten)]
    pub options: TokenizerOptions,
}

impl TokenizerSpec {
    /// The full tokenizer configuration.
    pub fn config(&self) -> TokenizerConfig {
        TokenizerConfig::new(self.method, self.vocab_size).with_options(&self.options)
    }
}

/// The network and its size; the vocabulary comes from the tokenizer and the context from
/// [`LmRunConfig::context`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModelConfig {
    /// GPT-2 (HF `GPT2LMHeadModel`).
    Gpt2(Gpt2Spec),
    /// Embedding → stacked LSTM → projection.
    CharLstm(CharLstmSpec),
}

impl ModelConfig {
    /// The backend name (`gpt2`, `char_lstm`).
    pub fn backend(&self) -> &'static str {
        match self {
            ModelConfig::Gpt2(_) => "gpt2",
            ModelConfig::CharLstm(_) => "char_lstm",
        }
    }
}

/// GPT-2 size and regularization (HF field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gpt2Spec {
    /// Blocks.
    pub n_layer: usize,
    /// Attention heads; must divide `n_embd`.
    pub n_head: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Dropout on embeddings, attention and residuals.
    pub dropout: f64,
    /// Share the LM head with the token embeddings.
    pub tie_word_embeddings: bool,
}

impl Default for Gpt2Spec {
    fn default() -> Self {
        Gpt2Spec {
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            dropout: 0.1,
            tie_word_embeddings: true,
        }
    }
}

/// Char-LSTM size and regularization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CharLstmSpec {
    /// Embedding size.
    pub d_embed: usize,
    /// LSTM hidden size.
    pub d_hidden: usize,
    /// Stacked LSTM layers.
    pub n_layers: usize,
    /// Dropout between layers.
    pub dropout: f64,
}

impl Default for CharLstmSpec {
    fn default() -> Self {
        CharLstmSpec {
            d_embed: 64,
            d_hidden: 256,
            n_layers: 2,
            dropout: 0.1,
        }
    }
}

/// Seeded samples from fixed prompts, written at the end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleConfig {
    /// The prompts.
    pub prompts: Vec<String>,
    /// Tokens per sample.
    pub max_new_tokens: usize,
    /// Sampling temperature (0: greedy).
    pub temperature: f32,
    /// Keep the k most likely tokens.
    pub top_k: Option<usize>,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            prompts: vec!["The ".into(), "It was".into(), "\"I ".into()],
            max_new_tokens: 48,
            temperature: 0.8,
            top_k: Some(40),
        }
    }
}

impl LmRunConfig {
    /// The [`LmRunConfig::replicas`] devices, computing in the precision of `main` (the run's
    /// device).
    ///
    /// # Errors
    /// An unknown or unavailable device, or one that does not compute in that precision (the
    /// error lists the ones it does).
    pub fn replica_devices(&self, main: &Device) -> Result<Vec<Device>> {
        let precision = Precision::of(main);
        self.replicas
            .iter()
            .map(|spec| {
                let mut device = spec.parse::<DeviceSpec>()?.resolve()?;
                precision.apply(&mut device)?;
                Ok(device)
            })
            .collect()
    }

    /// Checks everything that can be checked without reading the corpus; names the field.
    pub fn validate(&self) -> Result<()> {
        for spec in &self.replicas {
            spec.parse::<DeviceSpec>()?;
        }
        if self.corpus.paths.is_empty() {
            return Err(LmError::config(
                "corpus.paths",
                "give at least one file or directory",
            ));
        }
        let f = self.corpus.validation_fraction;
        if !(f > 0.0 && f <= 0.5) {
            return Err(LmError::config(
                "corpus.validation_fraction",
                format!("{f} is not in (0, 0.5]"),
            ));
        }
        if self.context < 2 {
            return Err(LmError::config("context", "must be at least 2"));
        }
        if self.corpus.stride == Some(0) {
            return Err(LmError::config("corpus.stride", "must be at least 1"));
        }
        match (&self.tokenizer.path, &self.tokenizer.train) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(LmError::config(
                    "tokenizer",
                    "give exactly one of tokenizer.path and [tokenizer.train]",
                ));
            }
        }
        if let Some(spec) = &self.tokenizer.train {
            spec.config().validate()?;
        }
        self.samples_config(None).validate()?;
        self.train.validate()?;
        match &self.model {
            ModelConfig::Gpt2(g) => {
                for (field, v) in [
                    ("model.n_layer", g.n_layer),
                    ("model.n_head", g.n_head),
                    ("model.n_embd", g.n_embd),
                ] {
                    if v == 0 {
                        return Err(LmError::config(field, "must be at least 1"));
                    }
                }
                if !g.n_embd.is_multiple_of(g.n_head) {
                    return Err(LmError::config(
                        "model.n_embd",
                        format!(
                            "{} is not divisible by model.n_head = {}",
                            g.n_embd, g.n_head
                        ),
                    ));
                }
                check_dropout(g.dropout)?;
            }
            ModelConfig::CharLstm(c) => {
                for (field, v) in [
                    ("model.d_embed", c.d_embed),
                    ("model.d_hidden", c.d_hidden),
                    ("model.n_layers", c.n_layers),
                ] {
                    if v == 0 {
                        return Err(LmError::config(field, "must be at least 1"));
                    }
                }
                check_dropout(c.dropout)?;
            }
        }
        Ok(())
    }

    /// The generation settings of the samples (seeded by the run seed).
    pub fn samples_config(&self, eos: Option<u32>) -> lexforge_nn::generate::GenerateConfig {
        lexforge_nn::generate::GenerateConfig {
            max_new_tokens: self.samples.max_new_tokens,
            temperature: self.samples.temperature,
            top_k: self.samples.top_k,
            eos_token_id: eos,
            stop_on_eos: eos.is_some(),
            seed: self.seed,
            ..Default::default()
        }
    }

    /// The training config with the run's seed.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            seed: self.seed,
            ..self.train.clone()
        }
    }
}

fn check_dropout(p: f64) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(LmError::config(
            "model.dropout",
            format!("{p} is not in [0, 1)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> LmRunConfig {
        serde_json::from_value(serde_json::json!({
            "corpus": {"paths": ["x"]},
            "tokenizer": {"train": {"method": "bpe", "vocab_size": 500}},
            "model": {"type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 8},
        }))
        .unwrap()
    }

    #[test]
    fn defaults_fill_in_and_bad_values_name_their_field() {
        let c = base();
        c.validate().unwrap();
        assert_eq!(c.context, 128);
        let field = |c: LmRunConfig| match c.validate().unwrap_err() {
            LmError::InvalidConfig { field, .. } => field,
            e => panic!("{e}"),
        };
        let mut c = base();
        c.model = ModelConfig::Gpt2(Gpt2Spec {
            n_embd: 10,
            n_head: 3,
            ..Gpt2Spec::default()
        });
        assert_eq!(field(c), "model.n_embd");
        let mut c = base();
        c.tokenizer.path = Some("t".into());
        assert_eq!(field(c), "tokenizer");
        let mut c = base();
        c.corpus.validation_fraction = 0.0;
        assert_eq!(field(c), "corpus.validation_fraction");
        let unknown = serde_json::from_value::<LmRunConfig>(serde_json::json!({
            "corpus": {"paths": ["x"]}, "tokenizer": {"path": "t"},
            "model": {"type": "gpt2", "n_layers": 2},
        }));
        assert!(unknown.is_err(), "typos are refused");
    }
}
