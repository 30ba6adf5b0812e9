//! lexforge data: corpora to token files and language-model windows, and the book
//! data-preparation pipeline of the matcher: providers, standardization, sentences,
//! chunks, dedup, neighbour mining, topics, splits and pairs, as plain Rust items until a burn
//! `Batcher` makes tensors of them.
//!
//! The [`lexforge_core::CorpusProvider`] contract lives in `lexforge-core` (the tokenizer trainer
//! below this crate reads corpora too); this crate adds the book providers ([`books`]) and
//! consumes it. The sentence encoder used for mining comes from `lexforge-nn` (one layer down).

pub mod books;
pub mod chunk;
pub mod dedup;
mod error;
pub mod lm;
pub mod mining;
pub mod pairs;
pub mod prepare;
pub mod sentences;
pub mod standardize;
pub mod topics;

pub use books::{BookDirectory, Decoding, JsonlCorpus, SingleFile};
pub use chunk::{Chunk, ChunkConfig, ChunkReport, chunk_book};
pub use dedup::{DedupConfig, DedupReport, dedup};
pub use error::{DataError, Result};
pub use mining::MiningConfig;
pub use pairs::{Pair, PairConfig, Split, SplitConfig};
pub use prepare::{
    ChunkedCorpus, DATASET_FORMAT, DATASET_KIND, PrepareConfig, PrepareSummary, build_dataset,
    chunk_corpus, merge_shards, prepare, read_jsonl, read_shard, write_shard,
};
pub use sentences::{Span, sentence_spans, split_sentences};
pub use standardize::{Normalization, StandardizeConfig, standardize};
pub use topics::TopicConfig;
