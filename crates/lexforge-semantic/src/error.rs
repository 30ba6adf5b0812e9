//! Errors of the semantic-ID pipeline.

use std::path::PathBuf;

use lexforge_core::ErrorKind;

/// Everything that can go wrong building corpora, training a semantic encoder or using one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SemanticError {
    /// Run directories, atomic writes, I/O, corpora.
    #[error(transparent)]
    Core(#[from] lexforge_core::Error),

    /// The sentence encoder, GPT-2 and weights.
    #[error(transparent)]
    Nn(#[from] lexforge_nn::NnError),

    /// Books and standardization.
    #[error(transparent)]
    Data(#[from] lexforge_data::DataError),

    /// The training engine.
    #[error(transparent)]
    Train(#[from] lexforge_train::TrainError),

    /// The word generator's tokenizer.
    #[error(transparent)]
    Tokenizer(#[from] lexforge_tokenizers::TokenizerError),

    /// A parameter that cannot work.
    #[error("invalid semantic-ID parameter {parameter}: {reason}")]
    InvalidParameter {
        /// Its name.
        parameter: &'static str,
        /// Why.
        reason: String,
    },

    /// Input that cannot be encoded, decoded or trained on.
    #[error("invalid semantic-ID input: {reason}")]
    InvalidInput {
        /// What is wrong and what to do.
        reason: String,
    },

    /// A corpus without words (after cleaning).
    #[error("corpus {id:?} has no words")]
    EmptyCorpus {
        /// The corpus id.
        id: String,
    },

    /// No corpora at all.
    #[error("no corpora: {reason}")]
    NoCorpora {
        /// Why there are none.
        reason: String,
    },

    /// Two corpora with one id.
    #[error("corpus id {id:?} occurs more than once")]
    DuplicateCorpusId {
        /// The id.
        id: String,
    },

    /// An ID component outside its codebook.
    #[error("ID component {component} ({name}) is {value}, outside 0..{size}")]
    IdOutOfRange {
        /// Its position in the tuple (0-based).
        component: usize,
        /// Its name (`style`, `complexity`, `era`, `variation`).
        name: &'static str,
        /// The value given.
        value: i64,
        /// The codebook size of that component.
        size: usize,
    },

    /// An ID with the wrong number of components.
    #[error("an ID has {expected} components, got {found}")]
    IdLength {
        /// Components of this encoder's IDs.
        expected: usize,
        /// Components given.
        found: usize,
    },

    /// Vectors from another embedding model than the one the encoder was trained on.
    #[error(
        "embedding model mismatch: the semantic encoder was trained on {expected:?} \
         ({expected_dim} dimensions), got {found:?} ({found_dim} dimensions)"
    )]
    EmbeddingMismatch {
        /// The model id in the encoder config.
        expected: String,
        /// Its dimension.
        expected_dim: usize,
        /// The model offered.
        found: String,
        /// Its dimension.
        found_dim: usize,
    },

    /// A semantic-encoder directory or corpora file that is incomplete or inconsistent.
    #[error("{path} cannot be loaded: {reason}")]
    Artifact {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A word-frequency file that cannot be read.
    #[error("word frequencies {path}: {reason}")]
    Frequencies {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A user-supplied corpus generator failed.
    #[error("corpus generator {generator:?} failed for {corpus:?}: {reason}")]
    Generator {
        /// Its name.
        generator: String,
        /// The corpus it was asked for.
        corpus: String,
        /// Its error.
        reason: String,
    },
}

impl SemanticError {
    /// The error family.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SemanticError::Core(e) => e.kind(),
            SemanticError::Nn(e) => e.kind(),
            SemanticError::Data(e) => e.kind(),
            SemanticError::Train(e) => e.kind(),
            SemanticError::Tokenizer(e) => e.kind(),
            SemanticError::Artifact { .. } | SemanticError::Frequencies { .. } => {
                ErrorKind::Artifact
            }
            SemanticError::InvalidParameter { .. }
            | SemanticError::InvalidInput { .. }
            | SemanticError::EmptyCorpus { .. }
            | SemanticError::NoCorpora { .. }
            | SemanticError::DuplicateCorpusId { .. }
            | SemanticError::IdOutOfRange { .. }
            | SemanticError::IdLength { .. }
            | SemanticError::EmbeddingMismatch { .. }
            | SemanticError::Generator { .. } => ErrorKind::InvalidInput,
        }
    }

    pub(crate) fn param(parameter: &'static str, reason: impl Into<String>) -> Self {
        SemanticError::InvalidParameter {
            parameter,
            reason: reason.into(),
        }
    }

    pub(crate) fn input(reason: impl Into<String>) -> Self {
        SemanticError::InvalidInput {
            reason: reason.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = SemanticError> = std::result::Result<T, E>;
