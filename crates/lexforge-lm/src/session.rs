//! [`LanguageModel`]: a trained model with its tokenizer, for generation, scoring and
//! evaluation on text.

use std::path::{Path, PathBuf};

use lexforge_core::{Device, verify_run_dir};
use lexforge_nn::generate::{GenerateConfig, Generation};
use lexforge_tokenizers::Tokenizer;
use serde::{Deserialize, Serialize};

use crate::error::{LmError, Result};
use crate::model::{LmModel, backend_for, eos_token_id, model_type};
use crate::run::TOKENIZER_DIR;

/// A model directory (a finished run, or an HF GPT-2 directory with a `tokenizer.json`) loaded
/// on a device.
pub struct LanguageModel {
    model: Box<dyn LmModel>,
    tokenizer: Tokenizer,
    dir: PathBuf,
    eos: Option<u32>,
}

impl std::fmt::Debug for LanguageModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanguageModel")
            .field("dir", &self.dir)
            .field("backend", &self.model.backend())
            .field("vocab_size", &self.model.vocab_size())
            .finish()
    }
}

/// One scored token of a text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredToken {
    /// The token's text as the tokenizer spells it.
    pub token: String,
    /// Its id.
    pub id: u32,
    /// Byte offsets `[start, end)` of the token in the scored text.
    pub start: usize,
    /// End byte offset.
    pub end: usize,
    /// `-log2 p(token | text before it)`.
    pub surprisal_bits: f64,
    /// The most likely next tokens at this position: `(token, id, probability)`.
    pub top_k: Vec<(String, u32, f32)>,
}

/// The score of a text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextScore {
    /// Mean cross-entropy (nats per scored token).
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Total surprisal divided by the characters of the text.
    pub bits_per_char: f64,
    /// Per token, in text order.
    pub tokens: Vec<ScoredToken>,
}

/// Loss over a set of texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextEvaluation {
    /// Mean cross-entropy (nats per scored token).
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Bits per scored token.
    pub bits_per_token: f64,
    /// Total surprisal in bits over total characters: comparable across tokenizers.
    pub bits_per_char: f64,
    /// Tokens scored.
    pub tokens: u64,
    /// Characters of the texts.
    pub chars: u64,
}

impl LanguageModel {
    /// Most likely tokens [`LanguageModel::score`] lists per position unless told otherwise.
    pub const SCORE_TOP_K: usize = 0;
}

impl LanguageModel {
    /// Loads a run directory or model directory on `device`. A run's manifest is verified
    /// first (a damaged or truncated file is an error, not a silent misload); the tokenizer
    /// must have exactly the model's vocabulary ([`LmError::VocabMismatch`] otherwise).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        // A run or model directory, or a hub id in the local Hugging Face cache (`gpt2`).
        let dir = &lexforge_core::resolve_model_dir(dir.as_ref())?;
        if dir.join(lexforge_core::MANIFEST_FILE).exists() {
            verify_run_dir(dir)?;
        }
        let tokenizer = if dir.join(TOKENIZER_DIR).is_dir() {
            Tokenizer::load(dir.join(TOKENIZER_DIR))?
        } else {
            Tokenizer::load(dir.join("tokenizer.json"))?
        };
        Self::load_with_tokenizer(dir, tokenizer, device)
    }

    /// Loads the model of `dir` with another tokenizer, which must match its vocabulary.
    pub fn load_with_tokenizer(
        dir: impl AsRef<Path>,
        tokenizer: Tokenizer,
        device: &Device,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let backend = backend_for(&model_type(dir)?)?;
        let model = backend.load(dir, device)?;
        if tokenizer.vocab_size() != model.vocab_size() {
            return Err(LmError::VocabMismatch {
                tokenizer_vocab: tokenizer.vocab_size(),
                model_vocab: model.vocab_size(),
            });
        }
        let eos = eos_token_id(&model.config_json());
        Ok(LanguageModel {
            model,
            tokenizer,
            dir: dir.to_path_buf(),
            eos,
        })
    }

    /// The network.
    pub fn model(&self) -> &dyn LmModel {
        self.model.as_ref()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Where it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The end-of-text id, when the tokenizer has one.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos
    }

    /// Continues `prompt`. `config.eos_token_id` defaults to the model's; an empty prompt
    /// starts from the end-of-text token when there is one. The returned texts are the
    /// continuations only.
    ///
    /// # Errors
    /// A prompt that fills the context, or a bad config, is an [`LmError::Nn`] with kind
    /// `InvalidInput`.
    pub fn generate(&self, prompt: &str, config: &GenerateConfig) -> Result<Vec<Generation>> {
        let mut config = config.clone();
        if config.eos_token_id.is_none() {
            config.eos_token_id = self.eos;
        }
        let mut ids = self.tokenizer.encode(prompt)?;
        if ids.is_empty() {
            ids.extend(self.eos);
        }
        let decode = |ids: &[u32]| self.tokenizer.decode(ids, true).unwrap_or_default();
        self.model.generate(&ids, &config, &decode)
    }

    /// Scores `text`: loss, perplexity, bits per character, and per token its surprisal, its
    /// byte offsets in `text` and the `top_k` predictions at its position. When the tokenizer
    /// has an end-of-text token it is prepended so that the first token is scored too (as HF
    /// does for GPT-2); otherwise the first token is not scored.
    pub fn score(&self, text: &str, top_k: usize) -> Result<TextScore> {
        let enc = self.tokenizer.encode_with_offsets(text, false)?;
        let mut ids = Vec::with_capacity(enc.ids.len() + 1);
        let shift = usize::from(self.eos.is_some());
        ids.extend(self.eos);
        ids.extend(&enc.ids);
        let scored = self.model.score(&ids, top_k)?;
        let name = |id: u32| self.tokenizer.id_to_token(id).unwrap_or_default();
        let tokens: Vec<ScoredToken> = scored
            .tokens
            .iter()
            .map(|t| {
                let (start, end) = enc.offsets[t.position - shift];
                ScoredToken {
                    token: name(t.id),
                    id: t.id,
                    start,
                    end,
                    surprisal_bits: t.surprisal_bits,
                    top_k: t.top_k.iter().map(|&(id, p)| (name(id), id, p)).collect(),
                }
            })
            .collect();
        let bits: f64 = tokens.iter().map(|t| t.surprisal_bits).sum();
        Ok(TextScore {
            loss: scored.loss,
            perplexity: scored.perplexity,
            bits_per_char: bits / text.chars().count().max(1) as f64,
            tokens,
        })
    }

    /// Loss over `texts` (each scored on its own, with a sliding window when longer than the
    /// context).
    pub fn evaluate(&self, texts: &[&str]) -> Result<TextEvaluation> {
        let mut bits = 0.0;
        let mut tokens = 0u64;
        let mut chars = 0u64;
        for text in texts {
            let s = self.score(text, 0)?;
            bits += s.tokens.iter().map(|t| t.surprisal_bits).sum::<f64>();
            tokens += s.tokens.len() as u64;
            chars += text.chars().count() as u64;
        }
        if tokens == 0 {
            return Err(LmError::config(
                "texts",
                "nothing to score (give non-empty texts)",
            ));
        }
        let bits_per_token = bits / tokens as f64;
        let loss = bits_per_token * std::f64::consts::LN_2;
        Ok(TextEvaluation {
            loss,
            perplexity: loss.exp(),
            bits_per_token,
            bits_per_char: bits / chars.max(1) as f64,
            tokens,
            chars,
        })
    }
}
