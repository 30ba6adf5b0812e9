//! Integration tests of lexforge-semantic: corpora from the shared books with wordfreq, the
//! real all-MiniLM-L6-v2 embeddings, FSQ and residual-VQ training, artifacts, reload and bad
//! input.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod pipeline;
mod words;
