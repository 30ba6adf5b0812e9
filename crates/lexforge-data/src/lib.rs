//! lexforge data: corpora to token files and language-model windows (issue #4), as plain Rust
//! items until a burn `Batcher` makes tensors of them. Standardization, chunking, dedup, pairs
//! and negative mining follow with the matcher issue.
//!
//! The [`lexforge_core::CorpusProvider`] contract lives in `lexforge-core` (the tokenizer trainer
//! below this crate reads corpora too); this crate consumes it.

mod error;
pub mod lm;

pub use error::{DataError, Result};
