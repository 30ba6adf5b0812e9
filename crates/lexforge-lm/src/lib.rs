//! lexforge language-model trainer: the [`ModelBackend`] contract (GPT-2 and char-LSTM
//! implement it), run directories that train, checkpoint and resume ([`train_run`],
//! [`resume_run`]), evaluation in nats, bits per token and bits per character, and
//! [`LanguageModel`] for generation and scoring of text.

pub mod config;
mod error;
pub mod model;
pub mod run;
mod session;

pub use config::{CharLstmSpec, Gpt2Spec, LmRunConfig, ModelConfig, SampleConfig, TokenizerSpec};
pub use error::{LmError, Result};
pub use model::{LmModel, ModelBackend, backend_for, backends};
pub use run::{LmRunReport, Sample, evaluate_run, resume_run, train_run, unigram_entropy};
pub use session::{EvalReport, LanguageModel, ScoredToken, TextScore};
