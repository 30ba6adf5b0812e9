//! Errors of the language-model pipeline.

use std::path::PathBuf;

use lexforge_core::ErrorKind;

/// Everything that can go wrong training, loading, evaluating or using a language model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LmError {
    /// I/O, run directories, manifests, devices.
    #[error(transparent)]
    Core(#[from] lexforge_core::Error),
    /// The tokenizer failed or could not be loaded.
    #[error(transparent)]
    Tokenizer(#[from] lexforge_tokenizers::TokenizerError),
    /// Tokenizing the corpus or reading token files failed.
    #[error(transparent)]
    Data(#[from] lexforge_data::DataError),
    /// The network refused its config, weights or input.
    #[error(transparent)]
    Nn(#[from] lexforge_nn::NnError),
    /// The training loop failed (NaN loss, damaged checkpoint, ...).
    #[error(transparent)]
    Train(#[from] lexforge_train::TrainError),

    /// The tokenizer's vocabulary does not match the model's embedding table.
    #[error(
        "the tokenizer has {tokenizer_vocab} tokens but the model was built for {model_vocab}; use the tokenizer the model was trained with"
    )]
    VocabMismatch {
        /// Tokens in the tokenizer.
        tokenizer_vocab: usize,
        /// Rows of the model's embedding table.
        model_vocab: usize,
    },

    /// The model type cannot use this kind of tokenizer.
    #[error("model {model} does not support {method} tokenizers (it supports: {supported})")]
    UnsupportedTokenizer {
        /// Model backend name.
        model: &'static str,
        /// The tokenizer's method.
        method: String,
        /// What it supports.
        supported: String,
    },

    /// A configuration value that cannot work.
    #[error("invalid language-model config {field}: {reason}")]
    InvalidConfig {
        /// The field (dotted path, e.g. `model.n_head`).
        field: String,
        /// Why.
        reason: String,
    },

    /// The validation split has no complete window (too little text or too long a context).
    #[error(
        "the validation split has {tokens} tokens, not enough for one window of {context} + 1; add documents, raise corpus.validation_fraction or lower the context"
    )]
    EmptyValidation {
        /// Validation tokens.
        tokens: usize,
        /// Model context.
        context: usize,
    },

    /// A directory that is not a language-model run or model directory.
    #[error("{path} is not a language-model directory: {reason}")]
    NotAModel {
        /// The path.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
}

impl LmError {
    /// The error family (what the CLI and Python branch on).
    pub fn kind(&self) -> ErrorKind {
        match self {
            LmError::Core(e) => e.kind(),
            LmError::Tokenizer(e) => e.kind(),
            LmError::Data(e) => e.kind(),
            LmError::Nn(e) => e.kind(),
            LmError::Train(e) => e.kind(),
            LmError::NotAModel { .. } => ErrorKind::Artifact,
            LmError::VocabMismatch { .. }
            | LmError::UnsupportedTokenizer { .. }
            | LmError::InvalidConfig { .. }
            | LmError::EmptyValidation { .. } => ErrorKind::InvalidInput,
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        LmError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = LmError> = std::result::Result<T, E>;
