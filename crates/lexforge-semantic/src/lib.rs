//! lexforge semantic-ID pipeline (issue #8).
//!
//! This crate is a placeholder in the layer order of `docs/architecture.md`; it holds no
//! functionality yet. Its issue fills it.
