//! The contracts: [`TokenizerBackend`] trains and loads, [`TextTokenizer`] encodes and decodes.

use std::fmt;

use rayon::prelude::*;

use crate::config::TokenizerConfig;
use crate::error::Result;
use crate::method::TokenizerMethod;

/// Token ids with the byte span of the input each one came from.
///
/// Invariant: `ids.len() == offsets.len()`; offsets are `(start, end)` byte offsets into the
/// text given to `encode` (special tokens added by a post-processor have `(0, 0)`; several
/// byte-fallback pieces of one character share its span).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Byte span of each token in the input.
    pub offsets: Vec<(usize, usize)>,
}

/// What a vocabulary entry is, for statistics and decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenClass {
    /// An ordinary piece of text.
    Normal,
    /// A special token (`<|endoftext|>`, `[CLS]`, ...), other than the unknown token.
    Special,
    /// The unknown token (`[UNK]`, `<unk>`).
    Unknown,
    /// A byte-fallback piece `<0xNN>`.
    ByteFallback,
}

/// A trained tokenizer: text ↔ ids.
///
/// # Design
/// Implemented by the HF-engine tokenizer (BPE, WordPiece, Unigram, and any `tokenizer.json`)
/// and by the char tokenizer; produced by a [`TokenizerBackend`]; used through
/// [`crate::Tokenizer`], by dataset builders and by models. Implementations are immutable after
/// construction and `Send + Sync`: encode from any number of threads. Batch methods run on the
/// current rayon pool (install one to bound the threads). Ids are `0..vocab_size()`;
/// [`TextTokenizer::decode`] refuses ids outside it.
pub trait TextTokenizer: Send + Sync + fmt::Debug {
    /// Encodes `text`, with byte offsets. `add_special_tokens` runs the post-processor (e.g.
    /// BERT's `[CLS] … [SEP]`) when the tokenizer has one.
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Encoding>;

    /// Decodes ids to text; `skip_special_tokens` drops special tokens.
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String>;

    /// Vocabulary size, special tokens included.
    fn vocab_size(&self) -> usize;

    /// The id of a token string.
    fn token_to_id(&self, token: &str) -> Option<u32>;

    /// The token string of an id.
    fn id_to_token(&self, id: u32) -> Option<String>;

    /// What kind of entry `id` is ([`TokenClass::Normal`] for ids out of range).
    fn token_class(&self, id: u32) -> TokenClass;

    /// The method, when the tokenizer is one of ours or recognisably one of the four.
    fn method(&self) -> Option<TokenizerMethod>;

    /// The `tokenizer.json` text.
    fn to_json(&self) -> Result<String>;

    /// Encodes to ids only (no offsets; implementations skip the offset bookkeeping).
    fn encode_ids(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self.encode(text, add_special_tokens)?.ids)
    }

    /// Encodes many texts in parallel to ids.
    fn encode_batch_ids(&self, texts: &[&str], add_special_tokens: bool) -> Result<Vec<Vec<u32>>> {
        texts
            .par_iter()
            .map(|t| self.encode_ids(t, add_special_tokens))
            .collect()
    }

    /// Encodes many texts in parallel, with offsets.
    fn encode_batch(&self, texts: &[&str], add_special_tokens: bool) -> Result<Vec<Encoding>> {
        texts
            .par_iter()
            .map(|t| self.encode(t, add_special_tokens))
            .collect()
    }

    /// Decodes many id sequences in parallel.
    fn decode_batch(&self, ids: &[&[u32]], skip_special_tokens: bool) -> Result<Vec<String>> {
        ids.par_iter()
            .map(|s| self.decode(s, skip_special_tokens))
            .collect()
    }
}

/// One pass over training lines, each with its line ending.
pub type LinePass<'a> = Box<dyn Iterator<Item = String> + Send + 'a>;

/// Training lines handed to a backend: the training side of the holdout split, each line with
/// its line ending. The lines are streamed from the corpus, one document at a time, so memory
/// does not grow with the corpus; [`TrainingText::lines`] starts a pass (a backend that needs
/// the text twice asks twice).
#[derive(Clone, Copy)]
pub struct TrainingText<'a> {
    source: &'a (dyn Fn() -> LinePass<'a> + Sync),
    /// Let the engine draw progress bars.
    pub show_progress: bool,
}

impl<'a> TrainingText<'a> {
    /// Training text whose passes `source` starts.
    pub fn new(source: &'a (dyn Fn() -> LinePass<'a> + Sync), show_progress: bool) -> Self {
        TrainingText {
            source,
            show_progress,
        }
    }

    /// A pass over the lines, in a stable order.
    pub fn lines(&self) -> LinePass<'a> {
        (self.source)()
    }
}

impl std::fmt::Debug for TrainingText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainingText")
            .field("show_progress", &self.show_progress)
            .finish_non_exhaustive()
    }
}

/// A family of tokenizer implementations.
///
/// # Design
/// Two backends exist: [`crate::HfBackend`] (BPE, WordPiece, Unigram on the HF `tokenizers`
/// engine; loads any `tokenizer.json`) and [`crate::CharBackend`] (our char tokenizer).
/// [`crate::Tokenizer`] picks the backend for a method with [`crate::backend_for`] and, on
/// load, asks each backend in turn whether it recognises the file. `train` is called with a
/// validated config on the current rayon pool; it must return a tokenizer whose vocabulary is
/// at most `config.vocab_size`, or a [`crate::TokenizerError::VocabTooSmall`].
pub trait TokenizerBackend: Send + Sync {
    /// A short name (`"hf-tokenizers"`, `"char"`).
    fn name(&self) -> &'static str;

    /// The methods it trains.
    fn supported_methods(&self) -> &'static [TokenizerMethod];

    /// Trains a tokenizer on `text`.
    fn train(
        &self,
        config: &TokenizerConfig,
        text: TrainingText<'_>,
    ) -> Result<Box<dyn TextTokenizer>>;

    /// Loads a tokenizer from `tokenizer.json` text. `Ok(None)` means "not mine, ask the next
    /// backend"; an error means "mine, but damaged".
    fn load_json(&self, json: &str) -> Result<Option<Box<dyn TextTokenizer>>>;
}
