//! Errors of the data crate.

use std::path::PathBuf;

use lexforge_core::ErrorKind;

/// Everything that can go wrong preparing data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// Corpus reading, atomic writes, run directories.
    #[error(transparent)]
    Core(#[from] lexforge_core::Error),

    /// Tokenizing.
    #[error(transparent)]
    Tokenizer(#[from] lexforge_tokenizers::TokenizerError),

    /// Embedding (the sentence encoder).
    #[error(transparent)]
    Nn(#[from] lexforge_nn::NnError),

    /// A shard directory that cannot be merged.
    #[error("data shard {path}: {reason}")]
    Shard {
        /// The shard (or, for a book in two shards, the book id).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A split came out empty.
    #[error("the {split} split is empty: {reason}")]
    EmptySplit {
        /// `"train"` or `"validation"`.
        split: &'static str,
        /// Why, and what to change.
        reason: String,
    },

    /// A parameter that cannot work.
    #[error("invalid data parameter {parameter}: {reason}")]
    InvalidParameter {
        /// Its name.
        parameter: &'static str,
        /// Why.
        reason: String,
    },

    /// A Parquet pair file that cannot be written or read as pairs.
    #[error("pair file {path}: {reason}")]
    PairFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A token file that is not a whole number of u32 ids.
    #[error("token file {path} is damaged: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl DataError {
    /// The error family.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DataError::Core(e) => e.kind(),
            DataError::Tokenizer(e) => e.kind(),
            DataError::Nn(e) => e.kind(),
            DataError::Shard { .. } => ErrorKind::Artifact,
            DataError::EmptySplit { .. } | DataError::InvalidParameter { .. } => {
                ErrorKind::InvalidInput
            }
            DataError::TokenFile { .. } | DataError::PairFile { .. } => ErrorKind::Artifact,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
