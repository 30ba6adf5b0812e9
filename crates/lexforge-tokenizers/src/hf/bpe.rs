//! Byte-level BPE, GPT-2 style.
//!
//! Pipeline: optional normalizer → `ByteLevel` pre-tokenizer (GPT-2 regex, no prefix space) →
//! BPE over the 256 byte symbols (no unknown token: every input is representable) →
//! `ByteLevel` decoder. The trainer starts from the full byte alphabet, so
//! `decode(encode(x)) == normalize(x)` for every UTF-8 string.

use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

use crate::backend::TrainingText;
use crate::config::TokenizerConfig;
use crate::error::{Result, TokenizerError};

/// Trains a byte-level BPE tokenizer on `text`.
pub(super) fn train(
    config: &TokenizerConfig,
    text: TrainingText<'_>,
) -> Result<tokenizers::Tokenizer> {
    let specials = super::added_specials(config);
    let required = 256 + specials.len();
    if config.vocab_size < required {
        return Err(TokenizerError::VocabTooSmall {
            method: config.method,
            vocab_size: config.vocab_size,
            required,
            detail: format!("256 byte symbols and {} special tokens", specials.len()),
        });
    }
    let mut tokenizer = tokenizers::Tokenizer::new(BPE::default());
    tokenizer
        .with_normalizer(super::normalizer(config))
        .map_err(TokenizerError::engine("set the normalizer"))?;
    let byte_level = ByteLevel::new(false, true, true);
    tokenizer.with_pre_tokenizer(Some(byte_level));
    tokenizer.with_decoder(Some(byte_level));
    tokenizer.with_post_processor(Some(byte_level));
    let trainer = BpeTrainer::builder()
        .vocab_size(config.vocab_size)
        .min_frequency(config.min_frequency)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(text.show_progress)
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tokenizer
        .train(&mut trainer, text.lines())
        .map_err(TokenizerError::engine("train BPE"))?;
    Ok(tokenizer)
}
