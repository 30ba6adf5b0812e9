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

    /// A model's LoRA adapters are not what the operation needs (adapters applied twice, a
    /// config the adapters were not built with).
    #[error("LoRA adapter of {param}: {problem}")]
    Adapter {
        /// The adapted weight (module path, `h.{i}.attn.c_attn.weight`).
        param: String,
        /// What is wrong with it.
        problem: AdapterProblem,
    },

    /// An `adapter_config.json` with a value that cannot build adapters.
    #[error("adapter config {path}: {field} = {value}: {reason}")]
    InvalidAdapterConfig {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: String,
    },

    /// Adapters built for a base model of other dimensions.
    #[error(
        "adapters {path} were built for a base with {field} = {adapters}; this model has {model}"
    )]
    AdapterBaseMismatch {
        /// The adapter config file.
        path: PathBuf,
        /// The base dimension that differs (`n_layer`, `n_embd`, ...).
        field: &'static str,
        /// Its value in the adapter config.
        adapters: usize,
        /// Its value in the model.
        model: usize,
    },

    /// A tensor a file holds that its config does not declare (a foreign or mismatched file).
    #[error("{path} holds tensor {name}, which its config does not declare")]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },

    /// A model computed a value that is not finite (NaN or ±inf) for an input: its weights
    /// hold non-finite values, or overflow on this input. Nothing built on the output is kept.
    #[error(
        "{model}: the output for input {index} is not finite (NaN or inf); the weights may be damaged"
    )]
    NonFiniteOutput {
        /// The model directory.
        model: PathBuf,
        /// The input (text index) whose output is not finite.
        index: usize,
    },

    /// An input the model cannot take (too long, token id outside the vocabulary).
    #[error("invalid model input: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },

    /// No model directory was given and the default model is not installed.
    #[error("no {role} given and {model} is not installed ({hint})")]
    ModelNotInstalled {
        /// What the model is for (`"base model"`, `"embedding model"`, `"encoder"`).
        role: &'static str,
        /// The default model's name.
        model: &'static str,
        /// How to install it or point at a copy.
        hint: &'static str,
    },
}

impl NnError {
    /// The error family.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NnError::Core(e) => e.kind(),
            NnError::InvalidConfig { .. }
            | NnError::InvalidInput { .. }
            | NnError::Adapter { .. } => ErrorKind::InvalidInput,
            NnError::Weights { .. }
            | NnError::Tokenizer { .. }
            | NnError::MissingTensor { .. }
            | NnError::ShapeMismatch { .. }
            | NnError::InvalidAdapterConfig { .. }
            | NnError::AdapterBaseMismatch { .. }
            | NnError::UnexpectedTensor { .. }
            | NnError::NonFiniteOutput { .. } => ErrorKind::Artifact,
            NnError::ModelNotInstalled { .. } => ErrorKind::NotFound,
        }
    }
}

/// What is wrong with one weight's LoRA adapter (see [`NnError::Adapter`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AdapterProblem {
    /// The weight already carries an adapter; adapters do not nest (merge them first).
    AlreadyAdapted,
    /// The config targets the weight, but it has no adapter.
    Missing,
    /// The weight has an adapter, but the config does not target it.
    NotTargeted,
    /// The adapter's rank is not the config's.
    Rank {
        /// The config's rank.
        expected: usize,
        /// The adapter's rank.
        got: usize,
    },
    /// The adapter's scale is not the config's `alpha / rank`.
    Scale {
        /// The config's `alpha / rank`.
        expected: f64,
        /// The adapter's scale.
        got: f64,
    },
}

impl std::fmt::Display for AdapterProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdapterProblem::AlreadyAdapted => {
                f.write_str("the weight already has an adapter (merge it first)")
            }
            AdapterProblem::Missing => f.write_str("the config targets the weight, it has none"),
            AdapterProblem::NotTargeted => f.write_str("the config does not target the weight"),
            AdapterProblem::Rank { expected, got } => {
                write!(f, "rank {got}, the config says {expected}")
            }
            AdapterProblem::Scale { expected, got } => {
                write!(f, "scale {got}, the config says alpha / rank = {expected}")
            }
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = NnError> = std::result::Result<T, E>;
