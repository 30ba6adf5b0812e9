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

    /// A shard that cannot be read: missing, damaged (a checksum, a truncated array), or not
    /// a shard of this format.
    #[error("data shard {shard} cannot be merged: {source}")]
    ShardUnreadable {
        /// The shard directory.
        shard: PathBuf,
        /// Why.
        #[source]
        source: Box<DataError>,
    },

    /// A shard made with other stage-A parameters than the merge's.
    #[error(
        "data shard {shard} was made with other stage-A parameters: {theirs} (the merge's: {ours})"
    )]
    ShardParameters {
        /// The shard directory.
        shard: PathBuf,
        /// Its parameters, as JSON.
        theirs: String,
        /// The merge's, as JSON.
        ours: String,
    },

    /// Two shards that do not belong to one run (another encoder, another shard count).
    #[error("data shard {shard} does not match {other}: its {what} is {theirs}, not {ours}")]
    ShardMismatch {
        /// The shard directory.
        shard: PathBuf,
        /// The shard it was compared with (the first one given).
        other: PathBuf,
        /// `"encoder"` or `"shard count"`.
        what: &'static str,
        /// The shard's value.
        theirs: String,
        /// The other's value.
        ours: String,
    },

    /// One part of the book files written into two shards.
    #[error(
        "data shards {shard} and {other} are both part {index} of {count}: one shard written \
         twice; merge one of them"
    )]
    ShardTwice {
        /// The later shard directory.
        shard: PathBuf,
        /// The earlier one.
        other: PathBuf,
        /// The part.
        index: usize,
        /// Parts in all.
        count: usize,
    },

    /// A book held by two shards.
    #[error("data shards {shard} and {other} both hold book {book}: shard the files disjointly")]
    ShardOverlap {
        /// The later shard directory.
        shard: PathBuf,
        /// The earlier one.
        other: PathBuf,
        /// The book.
        book: String,
    },

    /// Parts missing from a set of shards.
    #[error("the shards are {count} parts but parts {missing:?} are not among them")]
    ShardMissing {
        /// Parts in all.
        count: usize,
        /// The parts not given.
        missing: Vec<usize>,
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
            DataError::Shard { .. }
            | DataError::ShardUnreadable { .. }
            | DataError::ShardParameters { .. }
            | DataError::ShardMismatch { .. }
            | DataError::ShardTwice { .. }
            | DataError::ShardOverlap { .. }
            | DataError::ShardMissing { .. } => ErrorKind::Artifact,
            DataError::EmptySplit { .. } | DataError::InvalidParameter { .. } => {
                ErrorKind::InvalidInput
            }
            DataError::TokenFile { .. } | DataError::PairFile { .. } => ErrorKind::Artifact,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
