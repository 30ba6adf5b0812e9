//! lexforge training engine: optimizer, schedule, clipping, early stopping, checkpoints, exact resume, metrics and events (issue #4).
//!
//! This crate is a placeholder in the layer order of `docs/architecture.md`; it holds no
//! functionality yet. Its issue fills it.
