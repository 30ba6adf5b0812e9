//! The error type of `lexforge-core`.

use std::path::PathBuf;

/// Result alias used throughout `lexforge-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure `lexforge-core` reports, with the structured fields a caller needs to act on
/// it (which path, which parameter, what was expected, what was found).
///
/// Variants are grouped into families by [`Error::kind`]; the Python binding maps each family
/// onto one exception class under `lexforge.LexforgeError`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- io -------------------------------------------------------------------------------
    /// An operating-system error on a path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing (`"read"`, `"write"`, `"rename"`, ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    // ---- names and paths --------------------------------------------------------------------
    /// A run id or artifact path that could escape its directory or is otherwise unusable.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// `"run id"` or `"artifact path"`.
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A run directory already exists where a new one was to be created.
    #[error("run directory {path} already exists (resume it, or choose another directory)")]
    RunExists {
        /// The existing directory.
        path: PathBuf,
    },
    /// A model that is neither a directory nor a hub id in the local Hugging Face cache.
    #[error(
        "model {name} is neither a directory nor a model in the Hugging Face cache (lexforge never \
         downloads); looked in: {}",
        looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    ModelNotFound {
        /// The path or hub id given.
        name: String,
        /// Every place looked, in order.
        looked: Vec<PathBuf>,
    },
    /// A run directory of another kind than the operation expects (resuming a matcher as a
    /// language model).
    #[error("{path} is a {found} run, not a {expected} run")]
    WrongRunKind {
        /// The run directory.
        path: PathBuf,
        /// The kind the operation takes (`"lm"`, `"matcher"`, `"semantic"`).
        expected: &'static str,
        /// The kind its manifest records.
        found: String,
    },
    /// A run's manifest holds a config that does not parse as its pipeline's config.
    #[error("the config in {path}/manifest.json does not parse: {reason}")]
    RunConfig {
        /// The run directory.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },

    // ---- devices and precision --------------------------------------------------------------
    /// A device string that does not parse.
    #[error("unknown device {spec:?}: expected one of {expected}")]
    UnknownDevice {
        /// What the user wrote.
        spec: String,
        /// The accepted forms.
        expected: &'static str,
    },
    /// A backend that exists in burn but was not compiled into this build.
    #[error(
        "backend {backend:?} is not compiled into this build of lexforge (enable the cargo feature `{feature}`)"
    )]
    BackendNotCompiled {
        /// The backend asked for.
        backend: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// A compiled backend that has no usable device on this machine.
    #[error("backend {backend:?} has no usable device here: {reason}")]
    NoDevice {
        /// The backend asked for.
        backend: &'static str,
        /// What the probe found.
        reason: String,
    },
    /// A precision string that does not parse.
    #[error("unknown precision {spec:?}: expected one of auto, f32, f16, bf16")]
    UnknownPrecision {
        /// What the user wrote.
        spec: String,
    },
    /// A precision the chosen device cannot compute in.
    #[error("precision {precision} is not supported on device {device}; supported: {supported}")]
    UnsupportedPrecision {
        /// The precision asked for.
        precision: String,
        /// The device (as its spec).
        device: String,
        /// The precisions that device supports, comma-separated.
        supported: String,
    },
    /// The device's defaults were already fixed (a tensor was created on it before the
    /// precision was applied).
    #[error("cannot set precision {precision} on device {device}: {reason}")]
    DeviceConfig {
        /// The precision asked for.
        precision: String,
        /// The device.
        device: String,
        /// burn's explanation.
        reason: String,
    },

    // ---- manifests and artifacts ------------------------------------------------------------
    /// A JSON file (manifest, config) that does not parse or does not have the expected shape.
    #[error("cannot parse {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A value that could not be serialized (a NaN metric in strict JSON, for instance).
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        /// What was being serialized.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest written by a newer (or unknown) schema.
    #[error(
        "{path}: manifest schema version {found} is not supported (this build reads {supported})"
    )]
    SchemaVersion {
        /// The manifest.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A file listed in a manifest that is not there.
    #[error("artifact {path} listed in the manifest is missing")]
    ArtifactMissing {
        /// The missing file.
        path: PathBuf,
    },
    /// A listed file whose size differs from the manifest (typically truncated).
    #[error(
        "artifact {path} has {got} bytes, the manifest says {expected} (truncated or replaced)"
    )]
    ArtifactSize {
        /// The file.
        path: PathBuf,
        /// Size recorded in the manifest.
        expected: u64,
        /// Size on disk.
        got: u64,
    },
    /// A listed file whose content differs from the manifest.
    #[error("artifact {path} fails its checksum: sha256 {got}, the manifest says {expected}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Digest recorded in the manifest.
        expected: String,
        /// Digest of the file on disk.
        got: String,
    },
    /// A run directory whose run has not finished (status `running`, `failed` or
    /// `cancelled`): its files may be half rewritten, so it is not loaded as a model.
    #[error("{path}: its training run has not finished (status {status:?}); {rerun}")]
    RunNotFinished {
        /// The manifest.
        path: PathBuf,
        /// The status it records.
        status: crate::RunStatus,
        /// How to finish it (e.g. the command to rerun).
        rerun: String,
    },
    /// A listed artifact that is a symbolic link or otherwise resolves outside its run directory.
    #[error("artifact {path} is not a regular file inside its run directory")]
    ArtifactOutsideRun {
        /// The offending path.
        path: PathBuf,
    },

    // ---- control ----------------------------------------------------------------------------
    /// Work stopped because its [`CancelToken`](crate::CancelToken) was cancelled.
    #[error("cancelled")]
    Cancelled,

    // ---- corpora ----
    /// A corpus with no text at all (no documents, or only empty / whitespace documents).
    #[error("corpus {source_name} has no text: every document is empty or blank")]
    CorpusEmpty {
        /// What was read (paths or a description of the provider).
        source_name: String,
    },
    /// A directory given as a corpus holds no `.txt` file (searched recursively).
    #[error("corpus directory {dir} holds no .txt files (searched recursively)")]
    NoTextFiles {
        /// The directory.
        dir: PathBuf,
    },
    /// A corpus file that is not valid UTF-8.
    #[error("corpus file {path} is not UTF-8 text: invalid byte sequence at byte offset {offset}")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A record of a structured corpus file (a JSONL line, a CSV row) that cannot be used.
    #[error("corpus file {path}, line {line}: {reason}")]
    CorpusRecord {
        /// The file.
        path: PathBuf,
        /// 1-based line (JSONL) or record (CSV) number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A corpus file that looks binary (it contains NUL bytes).
    #[error("corpus file {path} looks binary, not text: NUL byte at byte offset {offset}")]
    BinaryFile {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first NUL byte.
        offset: usize,
    },
}

/// The family an [`Error`] belongs to: what a caller (or the Python binding) branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A path that does not exist.
    NotFound,
    /// Any other operating-system error.
    Io,
    /// A parameter, name or string the caller passed that is not acceptable.
    InvalidInput,
    /// A device or precision that cannot be used here.
    Device,
    /// An artifact or manifest that is damaged, foreign or from an unsupported version.
    Artifact,
    /// The work was cancelled.
    Cancelled,
}

impl Error {
    /// Which family this error belongs to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } => ErrorKind::Io,
            Error::InvalidName { .. }
            | Error::RunExists { .. }
            | Error::UnknownDevice { .. }
            | Error::UnknownPrecision { .. }
            | Error::Serialize { .. }
            | Error::CorpusEmpty { .. }
            | Error::NoTextFiles { .. }
            | Error::NotUtf8 { .. }
            | Error::CorpusRecord { .. }
            | Error::BinaryFile { .. } => ErrorKind::InvalidInput,
            Error::WrongRunKind { .. } | Error::RunConfig { .. } => ErrorKind::Artifact,
            Error::ModelNotFound { .. } => ErrorKind::NotFound,
            Error::BackendNotCompiled { .. }
            | Error::NoDevice { .. }
            | Error::UnsupportedPrecision { .. }
            | Error::DeviceConfig { .. } => ErrorKind::Device,
            Error::Json { .. }
            | Error::SchemaVersion { .. }
            | Error::ArtifactMissing { .. }
            | Error::RunNotFinished { .. }
            | Error::ArtifactSize { .. }
            | Error::Checksum { .. }
            | Error::ArtifactOutsideRun { .. } => ErrorKind::Artifact,
            Error::Cancelled => ErrorKind::Cancelled,
        }
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_its_own_family() {
        let e = Error::io(
            "read",
            "/nope",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = Error::io(
            "read",
            "/nope",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn messages_name_the_path() {
        let e = Error::ArtifactSize {
            path: "run/model.safetensors".into(),
            expected: 10,
            got: 4,
        };
        let msg = e.to_string();
        assert!(msg.contains("run/model.safetensors"), "{msg}");
        assert!(msg.contains("truncated"), "{msg}");
    }
}
