//! What to train ([`TokenizerConfig`]) and on what ([`TokenizerTrainRequest`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use lexforge_core::{CorpusProvider, InMemoryCorpus, TextFiles};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TokenizerError};
use crate::method::TokenizerMethod;

impl FromStr for TokenizerMethod {
    type Err = TokenizerError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "bpe" => Ok(TokenizerMethod::Bpe),
            "wordpiece" | "word-piece" | "word_piece" => Ok(TokenizerMethod::WordPiece),
            "unigram" => Ok(TokenizerMethod::Unigram),
            "char" | "character" => Ok(TokenizerMethod::Char),
            _ => Err(TokenizerError::invalid(
                "method",
                format!("{s:?} is not one of bpe, wordpiece, unigram, char"),
            )),
        }
    }
}

/// Unicode normalization applied before tokenization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// The text as is.
    #[default]
    None,
    /// Canonical composition (`e` + combining acute → `é`).
    Nfc,
    /// Compatibility composition (also folds ligatures, full-width forms, `½` → `1⁄2`).
    Nfkc,
}

impl FromStr for Normalization {
    type Err = TokenizerError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Normalization::None),
            "nfc" => Ok(Normalization::Nfc),
            "nfkc" => Ok(Normalization::Nfkc),
            _ => Err(TokenizerError::invalid(
                "normalization",
                format!("{s:?} is not one of none, nfc, nfkc"),
            )),
        }
    }
}

impl fmt::Display for Normalization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Normalization::None => "none",
            Normalization::Nfc => "nfc",
            Normalization::Nfkc => "nfkc",
        })
    }
}

/// What tokenizer to train. Serializes to the `config` of the artifact's manifest.
///
/// Build it with [`TokenizerConfig::new`], which fills method-specific defaults, then adjust
/// fields. [`TokenizerConfig::validate`] runs before any training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerConfig {
    /// The method.
    pub method: TokenizerMethod,
    /// Target vocabulary size, special tokens included. BPE, WordPiece and Unigram reach it
    /// when the corpus allows; for char it is an upper bound (the vocabulary is the characters
    /// seen at least `min_frequency` times, plus special tokens).
    pub vocab_size: usize,
    /// Minimum count of a pair to be merged (BPE, WordPiece) or of a character to enter the
    /// vocabulary (char). Unigram training has no such threshold: it must be 0 or 1.
    pub min_frequency: u64,
    /// Unicode normalization.
    pub normalization: Normalization,
    /// Lowercase the text (after normalization).
    pub lowercase: bool,
    /// Special tokens, in id order from 0. The method's unknown token is inserted first when
    /// missing. Special tokens in input text are recognised whole and never split.
    pub special_tokens: Vec<String>,
    /// Unigram only: add the 256 byte pieces `<0x00>`..`<0xFF>` so that characters outside
    /// the vocabulary are spelled as UTF-8 bytes instead of `<unk>` (SentencePiece's
    /// `byte_fallback`). They count towards `vocab_size`.
    pub byte_fallback: bool,
}

impl TokenizerConfig {
    /// A config with the method's defaults:
    ///
    /// | method | min_frequency | normalization | lowercase | special tokens |
    /// | --- | --- | --- | --- | --- |
    /// | bpe | 2 | none | no | `<\|endoftext\|>` |
    /// | wordpiece | 2 | nfc | yes | `[PAD] [UNK] [CLS] [SEP] [MASK]` |
    /// | unigram | 1 | nfkc | no | `<unk> <s> </s>` (byte fallback on) |
    /// | char | 1 | none | no | `<unk>` |
    pub fn new(method: TokenizerMethod, vocab_size: usize) -> Self {
        let (min_frequency, normalization, lowercase, specials): (u64, _, _, &[&str]) = match method
        {
            TokenizerMethod::Bpe => (2, Normalization::None, false, &["<|endoftext|>"]),
            TokenizerMethod::WordPiece => (
                2,
                Normalization::Nfc,
                true,
                &["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
            ),
            TokenizerMethod::Unigram => (1, Normalization::Nfkc, false, &["<unk>", "<s>", "</s>"]),
            TokenizerMethod::Char => (1, Normalization::None, false, &["<unk>"]),
        };
        TokenizerConfig {
            method,
            vocab_size,
            min_frequency,
            normalization,
            lowercase,
            special_tokens: specials.iter().map(|s| (*s).to_owned()).collect(),
            byte_fallback: method == TokenizerMethod::Unigram,
        }
    }

    /// Applies the fields of `options` that are set (what the CLI flags and Python keyword
    /// arguments map to), leaving the method defaults for the rest.
    pub fn with_options(mut self, options: &TokenizerOptions) -> Self {
        if let Some(v) = options.min_frequency {
            self.min_frequency = v;
        }
        if let Some(v) = options.normalization {
            self.normalization = v;
        }
        if let Some(v) = options.lowercase {
            self.lowercase = v;
        }
        if let Some(v) = &options.special_tokens {
            self.special_tokens = v.clone();
        }
        if let Some(v) = options.byte_fallback {
            self.byte_fallback = v;
        }
        self
    }

    /// The special tokens in id order, with the method's unknown token first if it was missing.
    pub fn effective_special_tokens(&self) -> Vec<String> {
        let mut out = self.special_tokens.clone();
        if let Some(unk) = self.method.unk_token()
            && !out.iter().any(|s| s == unk)
        {
            out.insert(0, unk.to_owned());
        }
        out
    }

    /// Checks the values that can be checked without a corpus.
    pub fn validate(&self) -> Result<()> {
        if self.vocab_size == 0 || self.vocab_size > i32::MAX as usize {
            return Err(TokenizerError::invalid(
                "vocab_size",
                format!("{} is not in 1..=2147483647", self.vocab_size),
            ));
        }
        let specials = self.effective_special_tokens();
        for (i, s) in specials.iter().enumerate() {
            if s.is_empty() {
                return Err(TokenizerError::invalid(
                    "special_tokens",
                    "a special token is the empty string",
                ));
            }
            if specials[..i].contains(s) {
                return Err(TokenizerError::invalid(
                    "special_tokens",
                    format!("{s:?} is listed twice"),
                ));
            }
        }
        if specials.len() >= self.vocab_size {
            return Err(TokenizerError::VocabTooSmall {
                method: self.method,
                vocab_size: self.vocab_size,
                required: specials.len() + 1,
                detail: format!("{} special tokens and at least one other", specials.len()),
            });
        }
        if self.byte_fallback && self.method != TokenizerMethod::Unigram {
            return Err(TokenizerError::invalid(
                "byte_fallback",
                format!(
                    "only unigram uses byte fallback ({} {})",
                    self.method,
                    if self.method == TokenizerMethod::Bpe {
                        "is byte-level already"
                    } else {
                        "maps unknown text to its unknown token"
                    }
                ),
            ));
        }
        if self.method == TokenizerMethod::Unigram && self.min_frequency > 1 {
            return Err(TokenizerError::invalid(
                "min_frequency",
                format!(
                    "unigram training has no minimum frequency (got {}); use 0 or 1, or \
                     choose bpe/wordpiece",
                    self.min_frequency
                ),
            ));
        }
        Ok(())
    }
}

/// Optional overrides of the method defaults of [`TokenizerConfig::new`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenizerOptions {
    /// Overrides [`TokenizerConfig::min_frequency`].
    pub min_frequency: Option<u64>,
    /// Overrides [`TokenizerConfig::normalization`].
    pub normalization: Option<Normalization>,
    /// Overrides [`TokenizerConfig::lowercase`].
    pub lowercase: Option<bool>,
    /// Overrides [`TokenizerConfig::special_tokens`].
    pub special_tokens: Option<Vec<String>>,
    /// Overrides [`TokenizerConfig::byte_fallback`].
    pub byte_fallback: Option<bool>,
}

/// The corpus, holdout and threading of one training run.
#[derive(Clone)]
pub struct TokenizerTrainRequest {
    /// Where the text comes from.
    pub corpus: Arc<dyn CorpusProvider>,
    /// Share of the corpus held out for [`crate::TokenizerStats`], in `[0, 0.5]`. The split is
    /// by document when the corpus has several documents, else by line; it depends only on the
    /// text and the seed.
    pub holdout: f64,
    /// Seed of the holdout split.
    pub seed: u64,
    /// Worker threads for training and batch encoding; `None` uses every core (or
    /// `RAYON_NUM_THREADS`).
    pub threads: Option<usize>,
    /// Let the HF engine draw its own progress bars on stderr.
    pub show_progress: bool,
}

impl fmt::Debug for TokenizerTrainRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenizerTrainRequest")
            .field("corpus", &self.corpus.describe())
            .field("holdout", &self.holdout)
            .field("seed", &self.seed)
            .field("threads", &self.threads)
            .finish()
    }
}

impl TokenizerTrainRequest {
    /// A request over `corpus` with a 5% holdout, seed 0, all cores, no progress bars.
    pub fn new(corpus: impl CorpusProvider + 'static) -> Self {
        TokenizerTrainRequest {
            corpus: Arc::new(corpus),
            holdout: 0.05,
            seed: 0,
            threads: None,
            show_progress: false,
        }
    }

    /// A request over text files and directories of `.txt` files.
    pub fn from_paths<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> Self {
        Self::new(TextFiles::new(paths))
    }

    /// A request over in-memory texts, one document each.
    pub fn from_texts<S: Into<String>>(texts: impl IntoIterator<Item = S>) -> Self {
        Self::new(InMemoryCorpus::from_texts(texts))
    }

    /// Sets the holdout share.
    pub fn with_holdout(mut self, holdout: f64) -> Self {
        self.holdout = holdout;
        self
    }

    /// Sets the split seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the thread count.
    pub fn with_threads(mut self, threads: Option<usize>) -> Self {
        self.threads = threads;
        self
    }

    /// Checks holdout and threads.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=0.5).contains(&self.holdout) {
            return Err(TokenizerError::invalid(
                "holdout",
                format!("{} is not in [0, 0.5]", self.holdout),
            ));
        }
        if self.threads == Some(0) {
            return Err(TokenizerError::invalid("threads", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_unk_is_inserted() {
        for m in TokenizerMethod::ALL {
            let c = TokenizerConfig::new(m, 1000);
            c.validate().unwrap();
            assert_eq!(m.as_str().parse::<TokenizerMethod>().unwrap(), m);
            if let Some(unk) = m.unk_token() {
                assert!(c.effective_special_tokens().iter().any(|s| s == unk));
            }
        }
        let mut c = TokenizerConfig::new(TokenizerMethod::WordPiece, 100);
        c.special_tokens = vec!["[CLS]".into()];
        assert_eq!(c.effective_special_tokens(), ["[UNK]", "[CLS]"]);
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let mut c = TokenizerConfig::new(TokenizerMethod::Bpe, 0);
        assert!(c.validate().unwrap_err().to_string().contains("vocab_size"));
        c.vocab_size = 100;
        c.byte_fallback = true;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("byte_fallback")
        );
        c.byte_fallback = false;
        c.special_tokens = vec!["a".into(), "a".into()];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("special_tokens")
        );
        let mut u = TokenizerConfig::new(TokenizerMethod::Unigram, 100);
        u.min_frequency = 5;
        assert!(
            u.validate()
                .unwrap_err()
                .to_string()
                .contains("min_frequency")
        );
        let r = TokenizerTrainRequest::from_texts(["x"]).with_holdout(0.9);
        assert!(r.validate().unwrap_err().to_string().contains("holdout"));
        assert!("bpf".parse::<TokenizerMethod>().is_err());
        assert!("nfd".parse::<Normalization>().is_err());
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = TokenizerConfig::new(TokenizerMethod::Unigram, 500);
        let j = serde_json::to_string(&c).unwrap();
        assert!(j.contains(r#""method":"unigram""#), "{j}");
        assert_eq!(serde_json::from_str::<TokenizerConfig>(&j).unwrap(), c);
    }
}
