//! Errors of the matcher.

use std::path::PathBuf;

use lexforge_core::ErrorKind;

/// Everything that can go wrong training, calibrating, evaluating or using the matcher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MatcherError {
    /// Run directories, atomic writes, I/O.
    #[error(transparent)]
    Core(#[from] lexforge_core::Error),

    /// The encoder and its weights.
    #[error(transparent)]
    Nn(#[from] lexforge_nn::NnError),

    /// The prepared dataset.
    #[error(transparent)]
    Data(#[from] lexforge_data::DataError),

    /// The training engine.
    #[error(transparent)]
    Train(#[from] lexforge_train::TrainError),

    /// A prepared dataset directory this build cannot read.
    #[error("dataset {path} cannot be used: {reason}")]
    Dataset {
        /// The dataset directory or file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },

    /// A matcher directory that is incomplete or inconsistent.
    #[error("matcher {path} cannot be loaded: {reason}")]
    Artifact {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// Input that cannot be scored, fitted or evaluated.
    #[error("invalid matcher input: {reason}")]
    InvalidInput {
        /// What is wrong and what to do.
        reason: String,
    },

    /// A library embedded by another model than the matcher searching it: its centroids live
    /// in another space, and the ranking would be silently wrong.
    #[error(
        "this library was embedded by model {library}, not by this matcher ({matcher}); build \
         the library again with this matcher"
    )]
    LibraryMismatch {
        /// The model id the library records.
        library: String,
        /// This matcher's model id.
        matcher: String,
    },

    /// A parameter that cannot work.
    #[error("invalid matcher parameter {parameter}: {reason}")]
    InvalidParameter {
        /// Its name.
        parameter: &'static str,
        /// Why.
        reason: String,
    },

    /// A damaged or foreign `calibration.json` / `style_calibration.json`.
    #[error("calibration file {path} is not usable: {reason}")]
    Calibration {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl MatcherError {
    /// The error family.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MatcherError::Core(e) => e.kind(),
            MatcherError::Nn(e) => e.kind(),
            MatcherError::Data(e) => e.kind(),
            MatcherError::Train(e) => e.kind(),
            MatcherError::Dataset { .. } | MatcherError::Artifact { .. } => ErrorKind::Artifact,
            MatcherError::InvalidInput { .. }
            | MatcherError::InvalidParameter { .. }
            | MatcherError::LibraryMismatch { .. } => ErrorKind::InvalidInput,
            MatcherError::Calibration { .. } => ErrorKind::Artifact,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = MatcherError> = std::result::Result<T, E>;
