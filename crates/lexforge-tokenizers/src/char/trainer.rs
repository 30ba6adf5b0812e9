//! Char tokenizer training: count characters, keep those seen `min_frequency` times.

use std::collections::HashMap;

use rayon::prelude::*;
use tokenizers::{NormalizedString, Normalizer};

use super::model::CharTokenizer;
use crate::backend::TrainingText;
use crate::config::TokenizerConfig;
use crate::error::{Result, TokenizerError};

/// Trains a char tokenizer: vocabulary = special tokens, then characters seen at least
/// `min_frequency` times (most frequent first, ties by code point). Special tokens written in
/// the text are not counted as characters.
pub(crate) fn train(config: &TokenizerConfig, text: TrainingText<'_>) -> Result<CharTokenizer> {
    let specials = config.effective_special_tokens();
    let unk = config.method.unk_token().unwrap_or("<unk>");
    let normalizer = crate::hf::normalizer(config);
    // A tokenizer with no characters: used only to cut special tokens out of the text.
    let cutter = CharTokenizer::new(specials.clone(), unk, Vec::new(), None)?;
    let counts = text
        .lines()
        .par_bridge()
        .try_fold(HashMap::<char, u64>::new, |mut acc, line| {
            cutter.for_each_text_piece(&line, |piece| {
                match &normalizer {
                    None => piece.chars().for_each(|c| *acc.entry(c).or_default() += 1),
                    Some(n) => {
                        let mut ns = NormalizedString::from(piece);
                        n.normalize(&mut ns)
                            .map_err(TokenizerError::engine("normalize"))?;
                        ns.get()
                            .chars()
                            .for_each(|c| *acc.entry(c).or_default() += 1);
                    }
                }
                Ok(())
            })?;
            Ok::<_, TokenizerError>(acc)
        })
        .try_reduce(HashMap::new, |mut a, b| {
            for (c, n) in b {
                *a.entry(c).or_default() += n;
            }
            Ok(a)
        })?;
    let min = config.min_frequency.max(1);
    let mut chars: Vec<(char, u64)> = counts.into_iter().filter(|&(_, n)| n >= min).collect();
    chars.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let required = specials.len() + chars.len();
    if required > config.vocab_size {
        return Err(TokenizerError::VocabTooSmall {
            method: config.method,
            vocab_size: config.vocab_size,
            required,
            detail: format!(
                "{} distinct characters seen at least {min} times and {} special tokens; raise \
                 vocab_size or min_frequency",
                chars.len(),
                specials.len()
            ),
        });
    }
    CharTokenizer::new(
        specials,
        unk,
        chars.into_iter().map(|(c, _)| c).collect(),
        normalizer,
    )
}
