//! lexforge language-model trainer pipeline (issue #4).
//!
//! This crate is a placeholder in the layer order of `docs/architecture.md`; it holds no
//! functionality yet. Its issue fills it.
