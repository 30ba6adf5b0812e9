//! lexforge data: corpora, standardization, sentences, chunks, dedup, LM windows, pairs, neighbour mining, splits (issues #4, #6).
//!
//! This crate is a placeholder in the layer order of `docs/architecture.md`; it holds no
//! functionality yet. Its issue fills it.
