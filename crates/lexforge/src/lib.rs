//! # lexforge
//!
//! Train and serve text models on [burn](https://burn.dev): tokenizers, GPT-2 and char-LSTM
//! language models, a book-text matcher and semantic IDs, on any burn device.
//!
//! This crate only re-exports. The backends compiled in are chosen with cargo features:
//! `flex` (pure-Rust CPU, on by default), `ndarray` (CPU, for comparison), `wgpu`, `cuda`.
//! Pick a device at run time with [`DeviceSpec`]:
//!
//! ```
//! let device = lexforge::DeviceSpec::Cpu.resolve()?;
//! let report = lexforge::backend_reports();
//! assert!(report.iter().any(|b| b.name == "flex" && b.usable));
//! # let _ = device;
//! # Ok::<(), lexforge::Error>(())
//! ```

pub use lexforge_core::*;

/// The core layer: errors, devices, seeds, run directories, events, cancellation.
pub use lexforge_core as core;
/// Data preparation: books, cleaning, chunking, dedup, pairs and hard negatives.
pub use lexforge_data as data;
/// The language-model pipeline: train, resume, evaluate, generate and score.
pub use lexforge_lm as lm;
/// The book-text matcher: bi-encoder training, calibration, scoring and search.
pub use lexforge_matcher as matcher;
/// Models: GPT-2, char-LSTM, BERT-family encoders, generation.
pub use lexforge_nn as nn;
/// Semantic IDs: word corpora, FSQ / residual-VQ encoders, word generation.
pub use lexforge_semantic as semantic;
/// Tokenizers: BPE, WordPiece, Unigram (HF tokenizers) and char.
pub use lexforge_tokenizers as tokenizers;
/// The training engine: loop, optimizer, schedules, checkpoints, early stopping.
pub use lexforge_train as train;
