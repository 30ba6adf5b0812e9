//! Unigram LM, SentencePiece style.
//!
//! Pipeline: normalizer (NFKC by default) → `Metaspace` pre-tokenizer (spaces become `▁`, a
//! `▁` is prepended, split before each `▁`) → Unigram with `<unk>` → (byte fallback) →
//! Metaspace decoder. With byte fallback the 256 pieces `<0x00>`..`<0xFF>` are appended after
//! training with scores below every learned piece, so they are used only for characters the
//! vocabulary lacks; the `ByteFallback` decoder turns them back into text.

use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::unigram::{Unigram, UnigramTrainer, UnigramTrainerError};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{NormalizedString, Normalizer};

use crate::backend::TrainingText;
use crate::config::TokenizerConfig;
use crate::error::{Result, TokenizerError};

/// Trains a Unigram tokenizer on `text`.
pub(super) fn train(
    config: &TokenizerConfig,
    text: TrainingText<'_>,
) -> Result<tokenizers::Tokenizer> {
    let specials = super::added_specials(config);
    let bytes = if config.byte_fallback { 256 } else { 0 };
    let required = bytes + specials.len() + 1;
    if config.vocab_size < required {
        return Err(TokenizerError::VocabTooSmall {
            method: config.method,
            vocab_size: config.vocab_size,
            required,
            detail: format!(
                "{bytes} byte-fallback pieces, {} special tokens and at least one piece",
                specials.len()
            ),
        });
    }
    let unk = config.method.unk_token().unwrap_or("<unk>");
    let mut tokenizer = tokenizers::Tokenizer::new(Unigram::default());
    tokenizer
        .with_normalizer(super::normalizer(config))
        .map_err(TokenizerError::engine("set the normalizer"))?;
    let metaspace = Metaspace::new('▁', PrependScheme::Always, true);
    tokenizer.with_pre_tokenizer(Some(metaspace.clone()));
    let trainer = UnigramTrainer::builder()
        .vocab_size((config.vocab_size - bytes) as u32)
        .special_tokens(specials)
        .unk_token(Some(unk.to_owned()))
        .show_progress(text.show_progress)
        .build()
        .map_err(|e| TokenizerError::Engine {
            op: "configure the Unigram trainer",
            source: Box::new(e),
        })?;
    let mut trainer = TrainerWrapper::UnigramTrainer(trainer);
    tokenizer.train(&mut trainer, text.lines()).map_err(|e| {
        if e.downcast_ref::<UnigramTrainerError>().is_some() {
            let chars = alphabet_size(config, text.lines());
            TokenizerError::VocabTooSmall {
                method: config.method,
                vocab_size: config.vocab_size,
                required: (chars + required).max(config.vocab_size + 1),
                detail: format!(
                    "about {chars} distinct characters after normalization, {bytes} \
                         byte-fallback pieces and the special tokens; the trainer reports: {e}"
                ),
            }
        } else {
            TokenizerError::Engine {
                op: "train Unigram",
                source: e,
            }
        }
    })?;
    if config.byte_fallback {
        let tokenizers::models::ModelWrapper::Unigram(model) = tokenizer.get_model() else {
            return Err(TokenizerError::invalid(
                "method",
                "unigram training returned another model",
            ));
        };
        let mut vocab: Vec<(String, f64)> = model.iter().cloned().collect();
        let floor = vocab.iter().map(|(_, s)| *s).fold(0.0_f64, f64::min) - 10.0;
        for b in 0..=255u8 {
            let piece = format!("<0x{b:02X}>");
            if !vocab.iter().any(|(p, _)| *p == piece) {
                vocab.push((piece, floor));
            }
        }
        let unk_id = vocab.iter().position(|(p, _)| p == unk);
        let model = Unigram::from(vocab, unk_id, true)
            .map_err(TokenizerError::engine("add byte-fallback pieces"))?;
        tokenizer.with_model(model);
        let decoder = DecoderSequence::new(vec![
            DecoderWrapper::ByteFallback(ByteFallback::new()),
            DecoderWrapper::Metaspace(metaspace),
        ]);
        tokenizer.with_decoder(Some(decoder));
    } else {
        tokenizer.with_decoder(Some(metaspace));
    }
    Ok(tokenizer)
}

/// Distinct characters of `lines` after the config's normalization, spaces counted as `▁`
/// (only computed to explain a refused vocabulary size).
fn alphabet_size(config: &TokenizerConfig, lines: impl Iterator<Item = String>) -> usize {
    let normalizer = super::normalizer(config);
    let mut seen = std::collections::HashSet::new();
    for line in lines {
        let mut ns = NormalizedString::from(line.as_str());
        if let Some(n) = &normalizer
            && n.normalize(&mut ns).is_err()
        {
            continue;
        }
        seen.extend(ns.get().chars().map(|c| if c == ' ' { '▁' } else { c }));
    }
    seen.len()
}
