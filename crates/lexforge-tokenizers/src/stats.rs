//! [`TokenizerStats`]: how well a tokenizer covers held-out text.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::{TextTokenizer, TokenClass};
use crate::error::Result;
use crate::split::{Split, SplitUnit};

/// Sizes of the two sides of the holdout split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusSizes {
    /// What the split divided.
    pub split_unit: SplitUnit,
    /// Documents trained on.
    pub train_documents: usize,
    /// Documents held out (0 for a line split).
    pub holdout_documents: usize,
    /// Lines trained on.
    pub train_lines: usize,
    /// Lines held out.
    pub holdout_lines: usize,
    /// UTF-8 bytes trained on.
    pub train_bytes: u64,
    /// UTF-8 bytes held out.
    pub holdout_bytes: u64,
    /// Characters trained on.
    pub train_chars: u64,
    /// Characters held out.
    pub holdout_chars: u64,
    /// Share of non-blank held-out lines that also occur verbatim in the training text
    /// (chapter headings, licence boilerplate shared between books). 0 for a line split, where
    /// identical lines always fall on the same side.
    pub holdout_line_overlap: f64,
}

impl CorpusSizes {
    /// Measures a split.
    pub fn of(split: &Split<'_>) -> Self {
        let bytes = |lines: &[&str]| lines.iter().map(|l| l.len() as u64).sum();
        let chars = |lines: &[&str]| {
            lines
                .par_iter()
                .map(|l| l.chars().count() as u64)
                .sum::<u64>()
        };
        let train_set: HashSet<&str> = split.train.iter().map(|l| l.trim_end()).collect();
        let non_blank: Vec<&str> = split
            .holdout
            .iter()
            .map(|l| l.trim_end())
            .filter(|l| !l.trim().is_empty())
            .collect();
        let seen = non_blank.iter().filter(|l| train_set.contains(*l)).count();
        CorpusSizes {
            split_unit: split.unit,
            train_documents: split.train_documents,
            holdout_documents: split.holdout_documents,
            train_lines: split.train.len(),
            holdout_lines: split.holdout.len(),
            train_bytes: bytes(&split.train),
            holdout_bytes: bytes(&split.holdout),
            train_chars: chars(&split.train),
            holdout_chars: chars(&split.holdout),
            holdout_line_overlap: ratio(seen as u64, non_blank.len() as u64),
        }
    }
}

/// Coverage and compression of a tokenizer on some text (the holdout, or any text given to
/// [`crate::Tokenizer::evaluate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Characters of the text.
    pub chars: u64,
    /// Whitespace-separated words of the text.
    pub words: u64,
    /// Tokens produced (no post-processor specials).
    pub tokens: u64,
    /// Share of characters represented by a vocabulary entry, i.e. not by the unknown token or
    /// byte-fallback pieces.
    pub char_coverage: f64,
    /// Share of tokens that are the unknown token (OOV rate).
    pub unk_rate: f64,
    /// Share of tokens that are byte-fallback pieces (Unigram with byte fallback).
    pub byte_fallback_rate: f64,
    /// Tokens per character.
    pub tokens_per_char: f64,
    /// Tokens per whitespace-separated word.
    pub tokens_per_word: f64,
    /// Share of the vocabulary that occurs at least once.
    pub vocab_used: f64,
}

/// What training reports: split sizes plus coverage on the holdout (absent when the holdout
/// is empty). Stored in the artifact's `manifest.json` (`config.stats`, and flattened into
/// `metrics` as `holdout.char_coverage`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerStats {
    /// Split sizes.
    pub corpus: CorpusSizes,
    /// Coverage on the held-out text.
    pub holdout: Option<Coverage>,
}

impl TokenizerStats {
    /// The numbers as flat `name → value` metrics for the manifest.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        let c = &self.corpus;
        for (k, v) in [
            ("corpus.train_documents", c.train_documents as f64),
            ("corpus.holdout_documents", c.holdout_documents as f64),
            ("corpus.train_lines", c.train_lines as f64),
            ("corpus.holdout_lines", c.holdout_lines as f64),
            ("corpus.train_bytes", c.train_bytes as f64),
            ("corpus.holdout_bytes", c.holdout_bytes as f64),
            ("corpus.train_chars", c.train_chars as f64),
            ("corpus.holdout_chars", c.holdout_chars as f64),
            ("corpus.holdout_line_overlap", c.holdout_line_overlap),
        ] {
            m.insert(k.to_owned(), v);
        }
        if let Some(h) = &self.holdout {
            for (k, v) in [
                ("holdout.vocab_size", h.vocab_size as f64),
                ("holdout.chars", h.chars as f64),
                ("holdout.words", h.words as f64),
                ("holdout.tokens", h.tokens as f64),
                ("holdout.char_coverage", h.char_coverage),
                ("holdout.unk_rate", h.unk_rate),
                ("holdout.byte_fallback_rate", h.byte_fallback_rate),
                ("holdout.tokens_per_char", h.tokens_per_char),
                ("holdout.tokens_per_word", h.tokens_per_word),
                ("holdout.vocab_used", h.vocab_used),
            ] {
                m.insert(k.to_owned(), v);
            }
        }
        m
    }
}

pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[derive(Default)]
struct Acc {
    chars: u64,
    words: u64,
    tokens: u64,
    uncovered_chars: u64,
    unk: u64,
    fallback: u64,
    used: Vec<bool>,
}

impl Acc {
    fn merge(mut self, other: Acc) -> Acc {
        self.chars += other.chars;
        self.words += other.words;
        self.tokens += other.tokens;
        self.uncovered_chars += other.uncovered_chars;
        self.unk += other.unk;
        self.fallback += other.fallback;
        if self.used.len() < other.used.len() {
            self.used.resize(other.used.len(), false);
        }
        for (a, b) in self.used.iter_mut().zip(other.used) {
            *a |= b;
        }
        self
    }
}

/// Measures `tok` on `lines` (in parallel on the current rayon pool).
pub fn measure(tok: &dyn TextTokenizer, lines: &[&str]) -> Result<Coverage> {
    let vocab_size = tok.vocab_size();
    let acc = lines
        .par_chunks(256)
        .map(|chunk| -> Result<Acc> {
            let mut acc = Acc {
                used: vec![false; vocab_size],
                ..Acc::default()
            };
            for enc in tok.encode_batch(chunk, false)?.iter().zip(chunk) {
                let (enc, line) = enc;
                acc.chars += line.chars().count() as u64;
                acc.words += line.split_whitespace().count() as u64;
                acc.tokens += enc.ids.len() as u64;
                // Spans of unknown / byte-fallback tokens, merged (several byte pieces share
                // one character's span).
                let mut covered_to = 0usize;
                for (&id, &(start, end)) in enc.ids.iter().zip(&enc.offsets) {
                    if let Some(u) = acc.used.get_mut(id as usize) {
                        *u = true;
                    }
                    let class = tok.token_class(id);
                    match class {
                        TokenClass::Unknown => acc.unk += 1,
                        TokenClass::ByteFallback => acc.fallback += 1,
                        _ => continue,
                    }
                    let start = start.max(covered_to);
                    if end > start
                        && let Some(s) = line.get(start..end)
                    {
                        acc.uncovered_chars += s.chars().count() as u64;
                    }
                    covered_to = covered_to.max(end);
                }
            }
            Ok(acc)
        })
        .try_reduce(Acc::default, |a, b| Ok(a.merge(b)))?;
    let used = acc.used.iter().filter(|&&u| u).count() as u64;
    Ok(Coverage {
        vocab_size,
        chars: acc.chars,
        words: acc.words,
        tokens: acc.tokens,
        char_coverage: if acc.chars == 0 {
            1.0
        } else {
            1.0 - ratio(acc.uncovered_chars, acc.chars)
        },
        unk_rate: ratio(acc.unk, acc.tokens),
        byte_fallback_rate: ratio(acc.fallback, acc.tokens),
        tokens_per_char: ratio(acc.tokens, acc.chars),
        tokens_per_word: ratio(acc.tokens, acc.words),
        vocab_used: ratio(used, vocab_size as u64),
    })
}
