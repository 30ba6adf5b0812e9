//! # lexforge
//!
//! Train and serve text models on [burn](https://burn.dev): tokenizers, GPT-2 and char-LSTM
//! language models, a book-text matcher and semantic IDs, on any burn device.
//!
//! This crate re-exports the others, one module per layer, and holds the one composition that
//! needs two pipelines: the semantic pipeline, whose LoRA word generator trains its base GPT-2
//! with the language-model pipeline ([`semantic::pipeline`]). The backends compiled in are
//! chosen with cargo features:
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
mod defaults;
mod semantic_pipeline;

pub use defaults::{DEVICE, api_defaults};

/// Semantic IDs: word corpora, FSQ / residual-VQ encoders, word generation, and the whole
/// pipeline from books ([`semantic::pipeline`]).
pub mod semantic {
    pub use crate::semantic_pipeline::{
        BASE_LM_DIR, BaseLmConfig, CORPORA_FILE, ENCODER_DIR, GeneratorChoice, GeneratorStage,
        PipelineConfig, PipelineError, PipelineReport, pipeline,
    };
    pub use lexforge_semantic::*;
}
/// Tokenizers: BPE, WordPiece, Unigram (HF tokenizers) and char.
pub use lexforge_tokenizers as tokenizers;
/// The training engine: loop, optimizer, schedules, checkpoints, early stopping.
pub use lexforge_train as train;
