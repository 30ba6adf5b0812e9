//! lexforge data: corpora to token files and language-model windows, and the book
//! data-preparation pipeline of the matcher: providers, standardization, sentences,
//! chunks, dedup, neighbour mining, topics, splits and pairs, as plain Rust items until a burn
//! `Batcher` makes tensors of them.
//!
//! Every public item is re-exported here, at the crate root; the modules are private.
//!
//! The [`lexforge_core::CorpusProvider`] contract lives in `lexforge-core` (the tokenizer trainer
//! below this crate reads corpora too); this crate adds the book providers ([`BookDirectory`],
//! [`SingleFile`], [`JsonlCorpus`]) and consumes it. The sentence encoder used for mining comes
//! from `lexforge-nn` (one layer down).

mod arrays;
mod books;
mod chunk;
mod config;
mod dedup;
mod error;
mod lm;
mod merge;
mod mining;
mod pair_parquet;
mod pairs;
mod prepare;
mod sentences;
mod shard;
mod shard_set;
mod spill_dedup;
mod standardize;
mod topics;

pub use books::{BookDirectory, Decoding, JsonlCorpus, SingleFile};
pub use chunk::{Chunk, ChunkConfig, ChunkReport, chunk_book};
pub use config::{PairFormat, PrepareConfig};
pub use dedup::{
    DedupConfig, DedupReport, MinHashLsh, MinHasher, Removal, dedup, jaccard, optimal_lsh_params,
};
pub use error::{DataError, Result};
pub use lm::{
    LmBatch, LmBatcher, LmItem, LmWindows, SplitPlan, TRAIN_TOKENS, TokenFile, TokenizeOptions,
    TokenizedCorpus, TrainDocuments, VALIDATION_TOKENS, tokenize_corpus,
};
pub use merge::{PrepareSummary, merge_shards};
pub use mining::{MiningConfig, Neighbour, Vectors, top_k_inner_product, top_k_self};
pub use pair_parquet::{encode_pairs, pairs_to_parquet, read_pairs, read_pairs_parquet};
pub use pairs::{NegType, Pair, PairConfig, PairCounts, PairType, Split, SplitConfig};
pub use prepare::{chunk_corpus, prepare, prepare_shard};
pub use sentences::{Span, sentence_spans, split_sentences};
pub use shard::{
    BookRecord, ChunkedCorpus, DATASET_FORMAT, DATASET_KIND, SHARD_FORMAT, ShardInfo, ShardPart,
    ShardSummary, Skipped, read_jsonl, read_shard, write_shard, write_shard_with_vectors,
};
pub use standardize::{
    BoilerplateReport, Normalization, StandardizeConfig, Standardized, standardize,
};
pub use topics::{Clustering, TopicConfig, kmeans};
