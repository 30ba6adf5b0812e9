#![doc = include_str!("../README.md")]

mod cancel;
mod corpus;
mod device;
mod digest;
mod error;
mod events;
mod fsutil;
pub mod host;
mod hub;
mod manifest;
mod names;
mod run;
mod seed;
mod venv;

pub use cancel::CancelToken;
pub use corpus::{CorpusProvider, Document, InMemoryCorpus, TextFiles, read_text_file};
pub use device::{BackendReport, DeviceSpec, Precision, backend_reports, is_software_adapter};
pub use digest::{cache_dir, file_sha256, file_sha256_in};
pub use error::{Error, ErrorKind, Result};
pub use events::{
    ChannelSink, Event, EventRecord, EventSink, JsonlSink, MultiSink, NoopSink, ProgressBarSink,
    Tee,
};
pub use fsutil::{atomic_write, atomic_write_with, fsync_dir, sha256_bytes, sha256_file};
pub use hub::{hub_cache_dir, resolve_model_dir};
pub use manifest::{
    ArtifactEntry, MANIFEST_FILE, MANIFEST_SCHEMA_VERSION, Manifest, RunStatus, Versions,
};
pub use names::{RelPath, RunId};
pub use run::{RunDir, RunTarget, StageMode, verify_completed_run, verify_run_dir};
pub use seed::Seed;
pub use venv::venv_package_file;

/// The burn version this build of lexforge is compiled against (pinned in the workspace).
pub const BURN_VERSION: &str = "0.22.1";

/// This crate family's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Re-exported so downstream crates name the same `Device` type without depending on burn's
/// module layout.
pub use burn::tensor::Device;
