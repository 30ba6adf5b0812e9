//! Errors of the model crate.

use std::path::PathBuf;

use lexforge_core::ErrorKind;

/// Everything that can go wrong building, loading or saving a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// An error of the foundation layer (I/O, manifests, atomic writes).
    #[error(transparent)]
    Core(#[from] lexforge_core::Error),

    /// A configuration that cannot build a model.
    #[error("invalid model config: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The field (HF name).
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: String,
    },

    /// A weight file that cannot be read (truncated, not safetensors, foreign dtype).
    #[error("cannot read weights {path}: {reason}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A tensor the model needs is missing from the weight file.
    #[error("weights {path} lack tensor {name}")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name (HF naming).
        name: String,
    },

    /// A tensor has another shape than the config implies.
    #[error("tensor {name} in {path} has shape {got:?}, the config implies {expected:?}")]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// Shape implied by the config.
        expected: Vec<usize>,
        /// Shape in the file.
        got: Vec<usize>,
    },

    /// A `tokenizer.json` the tokenizer engine cannot load or run.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An input the model cannot take (too long, token id outside the vocabulary).
    #[error("invalid model input: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },
}

impl NnError {
    /// The error family.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NnError::Core(e) => e.kind(),
            NnError::InvalidConfig { .. } | NnError::InvalidInput { .. } => ErrorKind::InvalidInput,
            NnError::Weights { .. }
            | NnError::Tokenizer { .. }
            | NnError::MissingTensor { .. }
            | NnError::ShapeMismatch { .. } => ErrorKind::Artifact,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = NnError> = std::result::Result<T, E>;
