//! lexforge semantic IDs: labelled word corpora → sentence embeddings → a semantic encoder with
//! an FSQ or residual-VQ quantizer → 4-tuple IDs `(style, complexity, era, variation)`, decoded
//! back to the embedding space, compared, and turned into words (guided by `decode(id)` over a real-word vocabulary, or by an
//! ID-conditioned GPT-2).
//!
//! Every public item is re-exported here, at the crate root; the modules are private.
//!
//! - Corpora: [`CorpusSet`] of [`WordCorpus`] with [`CorpusLabels`], the [`CorpusGenerator`]
//!   contract and [`build_corpora`]; [`BookWords`] (characteristic words of book groups by
//!   log-odds); [`WordFrequencies`] (Zipf word frequencies from wordfreq's tables or corpus
//!   counts).
//! - Quantizers: the [`Quantizer`] contract; [`Fsq`], [`ResidualFsq`], [`ResidualVq`], held by
//!   [`AnyQuantizer`].
//! - The model: [`SemanticModel`], the encoder/decoder module, built from a [`SemanticConfig`].
//! - Training: [`embed_corpora`], [`train`] and [`resume`] and their [`TrainReport`].
//! - Inference: [`SemanticEncoder`] over a trained directory.
//! - Words from an ID: [`GuidedWords`] (from a real-word vocabulary, guided by `decode(id)` and
//!   the ID's complexity; the default) or [`LoraWordGenerator`] (GPT-2 + LoRA adapters), either
//!   loaded as a [`WordGenerator`] from an encoder's [`GENERATOR_DIR`].

mod artifacts;
mod book_words;
mod corpus;
mod embeddings;
mod encoder;
mod error;
mod frequency;
mod generator;
mod guided;
mod model;
mod objective;
mod quantize;
mod report;
mod train;
mod views;
mod words;

pub use artifacts::GENERATOR_DIR;
pub use book_words::{BookWords, BookWordsConfig};
pub use corpus::{
    COMPONENTS, CORPORA_FORMAT, CorpusGenerator, CorpusLabels, CorpusSet, WordCorpus, build_corpora,
};
pub use embeddings::{CorpusEmbeddings, embed_corpora, mean_vector};
pub use encoder::{SemanticEncoder, SimilarCorpus};
pub use error::{Result, SemanticError};
pub use frequency::{WordFrequencies, find_wordfreq};
pub use generator::{WordGenerator, WordGeneratorKind};
pub use guided::{
    GuidedConfig, GuidedFile, GuidedReport, GuidedWords, VOCABULARY_FILE, build_guided_generator,
};
pub use model::{CONFIG_FORMAT, Forward, HeadSpec, SemanticConfig, SemanticModel};
pub use objective::SemanticLossConfig;
pub use quantize::{
    AnyQuantizer, EmaReport, Fsq, Quantized, Quantizer, QuantizerConfig, ResidualFsq, ResidualVq,
};
pub use report::{CollisionReport, HeadAccuracy, LevelStats, TrainReport};
pub use train::{SemanticTrainConfig, resume, train};
pub use words::{
    GeneratorFile, LoraWordGenerator, Sequences, WordBatch, WordGeneratorConfig,
    WordGeneratorReport, WordLm, train_word_generator,
};
