//! lexforge tokenizers: the TokenizerBackend contract with BPE, WordPiece, Unigram and char tokenizers (issue #3).
//!
//! This crate is a placeholder in the layer order of `docs/architecture.md`; it holds no
//! functionality yet. Its issue fills it.
