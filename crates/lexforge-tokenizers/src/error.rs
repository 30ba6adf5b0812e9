//! Errors of the tokenizer crate.

use std::path::PathBuf;

use lexforge_core::ErrorKind;

use crate::method::TokenizerMethod;

/// Everything that can go wrong training, loading, saving or using a tokenizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// An error of the foundation layer: corpus reading (missing path, non-UTF-8, binary,
    /// empty), run directories, manifests.
    #[error(transparent)]
    Core(#[from] lexforge_core::Error),

    /// A configuration value that cannot work.
    #[error("invalid tokenizer parameter {parameter}: {reason}")]
    InvalidParameter {
        /// The parameter's name as in [`crate::TokenizerConfig`] / the train request.
        parameter: &'static str,
        /// Why it is refused.
        reason: String,
    },

    /// `vocab_size` cannot hold the alphabet the method must keep (plus special tokens).
    #[error(
        "vocab_size {vocab_size} is smaller than the {method} alphabet: it needs at least \
         {required} entries ({detail})"
    )]
    VocabTooSmall {
        /// The method being trained.
        method: TokenizerMethod,
        /// The requested size.
        vocab_size: usize,
        /// The smallest size that holds the alphabet and special tokens.
        required: usize,
        /// What the alphabet consists of.
        detail: String,
    },

    /// The holdout split left no text to train on.
    #[error("nothing left to train on: {reason}")]
    NoTrainingText {
        /// Why (e.g. every document is identical and went to the holdout).
        reason: String,
    },

    /// A `tokenizer.json` that cannot be loaded.
    #[error("cannot load tokenizer {path}: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A token id outside the vocabulary.
    #[error("token id {id} is out of range for a vocabulary of {vocab_size}")]
    UnknownId {
        /// The id.
        id: u32,
        /// The vocabulary size (ids are `0..vocab_size`).
        vocab_size: usize,
    },

    /// The HF `tokenizers` engine failed.
    #[error("tokenizers engine failed to {op}: {source}")]
    Engine {
        /// What we asked of it.
        op: &'static str,
        /// Its error.
        #[source]
        source: tokenizers::Error,
    },
}

impl TokenizerError {
    /// The error family (what the Python binding maps to an exception class).
    pub fn kind(&self) -> ErrorKind {
        match self {
            TokenizerError::Core(e) => e.kind(),
            TokenizerError::InvalidParameter { .. }
            | TokenizerError::VocabTooSmall { .. }
            | TokenizerError::NoTrainingText { .. }
            | TokenizerError::UnknownId { .. }
            | TokenizerError::Engine { .. } => ErrorKind::InvalidInput,
            TokenizerError::Load { .. } => ErrorKind::Artifact,
        }
    }

    pub(crate) fn engine(op: &'static str) -> impl FnOnce(tokenizers::Error) -> Self {
        move |source| TokenizerError::Engine { op, source }
    }

    pub(crate) fn invalid(parameter: &'static str, reason: impl Into<String>) -> Self {
        TokenizerError::InvalidParameter {
            parameter,
            reason: reason.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;
