//! lexforge book-text matcher pipeline (issue #7).
//!
//! This crate is a placeholder in the layer order of `docs/architecture.md`; it holds no
//! functionality yet. Its issue fills it.
