//! Integration tests of lexforge-semantic: corpora from the shared books with wordfreq, the
//! real all-MiniLM-L6-v2 embeddings, FSQ and residual-VQ training, artifacts, reload and bad
//! input.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod guided;
mod pipeline;
mod words;

/// The flex device (its RNG and its thread pool) is process-wide: tests that train take this
/// lock, so "same seed, same IDs" is not disturbed by another test's draws or by another
/// test's matmuls changing how reductions are split.
pub(crate) static DEVICE: std::sync::Mutex<()> = std::sync::Mutex::new(());
