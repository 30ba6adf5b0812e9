//! The HF `tokenizers` engine: BPE, WordPiece and Unigram training, and any `tokenizer.json`.
//!
//! One file per method builds that method's pipeline (normalizer, pre-tokenizer, model,
//! decoder, post-processor) and trainer; this file wraps the resulting
//! `tokenizers::Tokenizer` as a [`TextTokenizer`].

mod bpe;
mod unigram;
mod wordpiece;

use std::str::FromStr;

use serde_json::Value;
use tokenizers::normalizers::{Lowercase, NFC, NFKC, NormalizerWrapper, Sequence};

use crate::backend::{Encoding, TextTokenizer, TokenClass, TokenizerBackend, TrainingText};
use crate::config::{Normalization, TokenizerConfig};
use crate::error::{Result, TokenizerError};
use crate::method::TokenizerMethod;

/// The HF `tokenizers` backend (crate version 0.23, the engine of the Python `tokenizers`
/// package).
#[derive(Debug, Clone, Copy, Default)]
pub struct HfBackend;

impl TokenizerBackend for HfBackend {
    fn name(&self) -> &'static str {
        "hf-tokenizers"
    }

    fn supported_methods(&self) -> &'static [TokenizerMethod] {
        &[
            TokenizerMethod::Bpe,
            TokenizerMethod::WordPiece,
            TokenizerMethod::Unigram,
        ]
    }

    fn train(
        &self,
        config: &TokenizerConfig,
        text: TrainingText<'_>,
    ) -> Result<Box<dyn TextTokenizer>> {
        let tokenizer = match config.method {
            TokenizerMethod::Bpe => bpe::train(config, text)?,
            TokenizerMethod::WordPiece => wordpiece::train(config, text)?,
            TokenizerMethod::Unigram => unigram::train(config, text)?,
            TokenizerMethod::Char => {
                return Err(TokenizerError::invalid(
                    "method",
                    "the hf-tokenizers backend does not train char tokenizers",
                ));
            }
        };
        let tok = HfTokenizer::new(tokenizer, Some(config.method))?;
        if tok.vocab_size() > config.vocab_size {
            return Err(TokenizerError::VocabTooSmall {
                method: config.method,
                vocab_size: config.vocab_size,
                required: tok.vocab_size(),
                detail: "the trainer had to keep every character of the training text and \
                         the special tokens"
                    .to_owned(),
            });
        }
        Ok(Box::new(tok))
    }

    fn load_json(&self, json: &str) -> Result<Option<Box<dyn TextTokenizer>>> {
        let tokenizer = tokenizers::Tokenizer::from_str(json)
            .map_err(TokenizerError::engine("parse tokenizer.json"))?;
        Ok(Some(Box::new(HfTokenizer::new(tokenizer, None)?)))
    }
}

/// The normalizer a config asks for (`None` when the text is used as is).
pub(crate) fn normalizer(config: &TokenizerConfig) -> Option<NormalizerWrapper> {
    let mut parts: Vec<NormalizerWrapper> = Vec::new();
    match config.normalization {
        Normalization::None => {}
        Normalization::Nfc => parts.push(NFC.into()),
        Normalization::Nfkc => parts.push(NFKC.into()),
    }
    if config.lowercase {
        parts.push(Lowercase.into());
    }
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Sequence::new(parts).into()),
    }
}

/// The config's special tokens as HF added tokens (special: never split, skippable on decode).
pub(crate) fn added_specials(config: &TokenizerConfig) -> Vec<tokenizers::AddedToken> {
    config
        .effective_special_tokens()
        .into_iter()
        .map(|s| tokenizers::AddedToken::from(s, true))
        .collect()
}

/// A `tokenizers::Tokenizer` as a [`TextTokenizer`].
#[derive(Debug, Clone)]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    classes: Vec<TokenClass>,
    method: Option<TokenizerMethod>,
}

impl HfTokenizer {
    /// Wraps `inner`; `method` is recognised from the pipeline when `None`.
    pub fn new(inner: tokenizers::Tokenizer, method: Option<TokenizerMethod>) -> Result<Self> {
        let json: Value = serde_json::from_str(
            &inner
                .to_string(false)
                .map_err(TokenizerError::engine("serialize tokenizer"))?,
        )
        .map_err(|e| TokenizerError::Engine {
            op: "read back tokenizer json",
            source: Box::new(e),
        })?;
        let model = &json["model"];
        let model_type = model["type"].as_str().unwrap_or_default();
        let method = method.or_else(|| match model_type {
            "BPE" if json["pre_tokenizer"]["type"] == "ByteLevel" => Some(TokenizerMethod::Bpe),
            "WordPiece" => Some(TokenizerMethod::WordPiece),
            "Unigram" => Some(TokenizerMethod::Unigram),
            _ => None,
        });
        let vocab_size = inner.get_vocab_size(true);
        let mut classes = vec![TokenClass::Normal; vocab_size];
        let unk_id = match model_type {
            "Unigram" => model["unk_id"].as_u64().map(|i| i as u32),
            _ => model["unk_token"]
                .as_str()
                .and_then(|t| inner.token_to_id(t)),
        };
        if model["byte_fallback"].as_bool() == Some(true) {
            for b in 0..=255u8 {
                if let Some(id) = inner.token_to_id(&format!("<0x{b:02X}>"))
                    && let Some(c) = classes.get_mut(id as usize)
                {
                    *c = TokenClass::ByteFallback;
                }
            }
        }
        for (id, tok) in inner.get_added_tokens_decoder() {
            if tok.special
                && let Some(c) = classes.get_mut(id as usize)
            {
                *c = TokenClass::Special;
            }
        }
        if let Some(c) = unk_id.and_then(|id| classes.get_mut(id as usize)) {
            *c = TokenClass::Unknown;
        }
        Ok(HfTokenizer {
            inner,
            classes,
            method,
        })
    }

    /// The wrapped HF tokenizer (for features lexforge does not wrap: truncation, padding,
    /// pairs).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let vocab_size = self.classes.len();
        match ids.iter().find(|&&id| id as usize >= vocab_size) {
            Some(&id) => Err(TokenizerError::UnknownId { id, vocab_size }),
            None => Ok(()),
        }
    }
}

impl TextTokenizer for HfTokenizer {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Encoding> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(TokenizerError::engine("encode"))?;
        Ok(Encoding {
            ids: enc.get_ids().to_vec(),
            offsets: enc.get_offsets().to_vec(),
        })
    }

    fn encode_ids(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(TokenizerError::engine("encode"))?;
        Ok(enc.get_ids().to_vec())
    }

    fn encode_batch_ids(&self, texts: &[&str], add_special_tokens: bool) -> Result<Vec<Vec<u32>>> {
        let encs = self
            .inner
            .encode_batch_fast(texts.to_vec(), add_special_tokens)
            .map_err(TokenizerError::engine("encode a batch"))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    fn encode_batch(&self, texts: &[&str], add_special_tokens: bool) -> Result<Vec<Encoding>> {
        let encs = self
            .inner
            .encode_batch(texts.to_vec(), add_special_tokens)
            .map_err(TokenizerError::engine("encode a batch"))?;
        Ok(encs
            .into_iter()
            .map(|e| Encoding {
                ids: e.get_ids().to_vec(),
                offsets: e.get_offsets().to_vec(),
            })
            .collect())
    }

    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.check_ids(ids)?;
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(TokenizerError::engine("decode"))
    }

    fn decode_batch(&self, ids: &[&[u32]], skip_special_tokens: bool) -> Result<Vec<String>> {
        for s in ids {
            self.check_ids(s)?;
        }
        self.inner
            .decode_batch(ids, skip_special_tokens)
            .map_err(TokenizerError::engine("decode a batch"))
    }

    fn vocab_size(&self) -> usize {
        self.classes.len()
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    fn token_class(&self, id: u32) -> TokenClass {
        self.classes
            .get(id as usize)
            .copied()
            .unwrap_or(TokenClass::Normal)
    }

    fn method(&self) -> Option<TokenizerMethod> {
        self.method
    }

    fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(TokenizerError::engine("serialize tokenizer"))
    }
}
