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

/// Book-text matcher pipeline (issue #7).
pub use lexforge_contrastive as contrastive;
/// The core layer: errors, devices, seeds, run directories, events, cancellation.
pub use lexforge_core as core;
/// Data preparation (issues #4, #6).
pub use lexforge_data as data;
/// Language-model pipeline (issue #4).
pub use lexforge_lm as lm;
/// Models (issues #4, #5).
pub use lexforge_nn as nn;
/// Semantic-ID pipeline (issue #8).
pub use lexforge_semantic as semantic;
/// Tokenizers (issue #3).
pub use lexforge_tokenizers as tokenizers;
/// Training engine (issue #4).
pub use lexforge_train as train;
