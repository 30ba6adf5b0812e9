//! lexforge language-model trainer: the [`ModelBackend`] contract (GPT-2 and char-LSTM
//! implement it), run directories that train, checkpoint and resume ([`train`], [`resume`]),
//! evaluation in nats, bits per token and bits per character ([`evaluate`]), and
//! [`LanguageModel`] for generation and scoring of text.
//!
//! Every item has one path: the modules are private and this root re-exports what callers use.

mod config;
mod error;
mod model;
mod run;
mod session;

pub use config::{
    CharLstmSpec, CorpusConfig, Gpt2Spec, LmRunConfig, ModelConfig, SampleConfig, TokenizerSource,
    TokenizerSpec,
};
pub use error::{LmError, Result};
pub use model::{
    CONFIG_FILE, CharLstmBackend, CharLstmLm, Gpt2Backend, Gpt2Lm, LmModel, LmTrainJob,
    ModelBackend, Trained, WEIGHTS_FILE, backend_for, backends, eos_token_id, model_type,
};
pub use run::{Sample, TOKENIZER_DIR, TrainReport, evaluate, resume, train, unigram_entropy};
pub use session::{LanguageModel, ScoredToken, TextEvaluation, TextScore};
