//! lexforge semantic IDs: labelled word corpora → sentence embeddings → a semantic encoder with
//! an FSQ or residual-VQ quantizer → 4-tuple IDs `(style, complexity, era, variation)`, decoded
//! back to the embedding space, compared, and turned into words (guided by `decode(id)` over a real-word vocabulary, or by an
//! ID-conditioned GPT-2).
//!
//! - [`corpus`]: [`CorpusSet`], the [`CorpusGenerator`] contract, [`build_corpora`].
//! - [`book_words`]: [`BookWords`] (characteristic words of book groups by log-odds).
//! - [`frequency`]: Zipf word frequencies from wordfreq's tables or corpus counts.
//! - [`quantize`]: the [`Quantizer`] contract; [`Fsq`], [`ResidualFsq`], [`ResidualVq`].
//! - [`model`]: the encoder/decoder module.
//! - [`train`]: embeddings, views, losses, [`train_semantic`] and its report.
//! - [`guided`]: words for an ID from a real-word vocabulary, guided by `decode(id)` and the
//!   ID's complexity (the default word generator).
//! - [`words`]: ID-conditioned word generation (GPT-2 + LoRA adapters).
//! - [`generator`]: [`WordGenerator`], either kind loaded from an encoder's `generator/`.
//! - [`encoder`]: [`SemanticEncoder`], inference over a trained directory.

pub mod book_words;
pub mod corpus;
pub mod encoder;
mod error;
pub mod frequency;
pub mod generator;
pub mod guided;
pub mod model;
pub mod quantize;
pub mod train;
pub mod words;

pub use book_words::{BookWords, BookWordsConfig};
pub use corpus::{COMPONENTS, CorpusGenerator, CorpusLabels, CorpusSet, WordCorpus, build_corpora};
pub use encoder::{SemanticEncoder, SimilarCorpus};
pub use error::{Result, SemanticError};
pub use frequency::{WordFrequencies, find_wordfreq};
pub use generator::{WordGenerator, WordGeneratorKind};
pub use guided::{GuidedConfig, GuidedReport, GuidedWords, build_guided_generator};
pub use model::{HeadSpec, SemanticConfig, SemanticModel};
pub use quantize::{
    AnyQuantizer, Fsq, Quantized, Quantizer, QuantizerConfig, ResidualFsq, ResidualVq,
};
pub use train::{
    CollisionReport, CorpusEmbeddings, LevelStats, SemanticLossConfig, SemanticReport,
    SemanticTrainConfig, embed_corpora, train_semantic,
};
pub use words::{
    LoraWordGenerator, Sequences, WordGeneratorConfig, WordGeneratorReport, WordLm,
    train_word_generator,
};
