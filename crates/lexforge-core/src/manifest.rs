//! `manifest.json`: what a run directory holds and how to check it.
//!
//! The format is documented in `docs/artifacts.md`. Readers refuse a manifest whose
//! `schema_version` is newer than [`MANIFEST_SCHEMA_VERSION`]; writers always write the current
//! version.

use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{atomic_write, sha256_file};
use crate::names::{RelPath, RunId};

/// File name of the manifest inside a run directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest schema this build writes and the newest it reads.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// The life cycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started, not finished (or killed before it could say otherwise).
    Running,
    /// Finished normally.
    Completed,
    /// Stopped by an error.
    Failed,
    /// Stopped by a cancel request.
    Cancelled,
}

/// Versions of the software that produced a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// lexforge's version.
    pub lexforge: String,
    /// burn's version.
    pub burn: String,
    /// Anything else worth recording (`tokenizers`, `python`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

impl Default for Versions {
    fn default() -> Self {
        Versions {
            lexforge: crate::VERSION.to_owned(),
            burn: crate::BURN_VERSION.to_owned(),
            extra: BTreeMap::new(),
        }
    }
}

/// One file of a run directory, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The content of `manifest.json`.
///
/// # Invariants
/// - Every key of [`artifacts`](Self::artifacts) is a [`RelPath`]: it cannot point outside the
///   run directory.
/// - A verified manifest ([`Manifest::verify`]) guarantees each listed file has exactly the
///   recorded size and sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version, [`MANIFEST_SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// The run's id (the directory's name).
    pub run_id: RunId,
    /// What produced the run: `"tokenizer"`, `"lm"`, `"matcher"`, `"semantic"`, ...
    pub kind: String,
    /// Where the run is in its life cycle.
    pub status: RunStatus,
    /// The full configuration of the run, as the user gave it after defaults were applied.
    #[serde(default)]
    pub config: serde_json::Value,
    /// The seed everything random in the run derives from.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Software versions.
    pub versions: Versions,
    /// The device the run used, as a [`DeviceSpec`](crate::DeviceSpec) string.
    #[serde(default)]
    pub device: Option<String>,
    /// The float precision the run used.
    #[serde(default)]
    pub precision: Option<String>,
    /// RFC 3339 UTC time the run started.
    pub started_at: String,
    /// RFC 3339 UTC time the run ended (any final status).
    #[serde(default)]
    pub ended_at: Option<String>,
    /// Headline metrics (final validation loss, perplexity, ...). Must be finite.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Every artifact file, keyed by its path relative to the run directory.
    #[serde(default)]
    pub artifacts: BTreeMap<RelPath, ArtifactEntry>,
}

/// The current UTC time in RFC 3339 with seconds.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Manifest {
    /// A new manifest for a run that starts now.
    pub fn new(run_id: RunId, kind: impl Into<String>) -> Self {
        Manifest {
            schema_version: MANIFEST_SCHEMA_VERSION,
            run_id,
            kind: kind.into(),
            status: RunStatus::Running,
            config: serde_json::Value::Null,
            seed: None,
            versions: Versions::default(),
            device: None,
            precision: None,
            started_at: now_rfc3339(),
            ended_at: None,
            metrics: BTreeMap::new(),
            artifacts: BTreeMap::new(),
        }
    }

    /// Reads `dir/manifest.json` and checks its schema version. Does not verify artifacts;
    /// see [`Manifest::verify`] or [`crate::verify_run_dir`].
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        // Read the version first so a future manifest gets a version error, not a shape error.
        #[derive(Deserialize)]
        struct Probe {
            schema_version: u32,
        }
        let probe: Probe = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        if probe.schema_version == 0 || probe.schema_version > MANIFEST_SCHEMA_VERSION {
            return Err(Error::SchemaVersion {
                path,
                found: probe.schema_version,
                supported: MANIFEST_SCHEMA_VERSION,
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| Error::Json { path, source })
    }

    /// Writes `dir/manifest.json` atomically. Non-finite metrics are refused (JSON has no
    /// NaN), so a NaN never silently turns into `null`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        if let Some((name, value)) = self.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Serialize {
                what: "manifest metrics",
                source: serde::ser::Error::custom(format!(
                    "metric {name:?} is {value}, which JSON cannot represent"
                )),
            });
        }
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|source| Error::Serialize {
            what: "manifest",
            source,
        })?;
        bytes.push(b'\n');
        atomic_write(&dir.join(MANIFEST_FILE), &bytes)
    }

    /// Checks every listed artifact under `dir`: present, a regular file (not a symlink),
    /// the recorded size, the recorded sha256. The first failure in artifact order is
    /// returned. Presence and sizes are checked first (cheap); the files are then hashed in
    /// parallel on the rayon pool.
    pub fn verify(&self, dir: &Path) -> Result<()> {
        let mut paths = Vec::with_capacity(self.artifacts.len());
        for (rel, entry) in &self.artifacts {
            let path = rel.under(dir);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::ArtifactMissing { path });
                }
                Err(e) => return Err(Error::io("stat", &path, e)),
            };
            if !meta.file_type().is_file() {
                return Err(Error::ArtifactOutsideRun { path });
            }
            if meta.len() != entry.bytes {
                return Err(Error::ArtifactSize {
                    path,
                    expected: entry.bytes,
                    got: meta.len(),
                });
            }
            paths.push((path, entry));
        }
        let checked: Vec<Result<()>> = paths
            .into_par_iter()
            .map(|(path, entry)| {
                let (got, _) = sha256_file(&path)?;
                if got == entry.sha256 {
                    Ok(())
                } else {
                    Err(Error::Checksum {
                        path,
                        expected: entry.sha256.clone(),
                        got,
                    })
                }
            })
            .collect();
        checked.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::new("r1".parse().unwrap(), "test")
    }

    #[test]
    fn round_trips_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = manifest();
        m.metrics.insert("val_loss".into(), 1.25);
        m.config = serde_json::json!({"vocab_size": 8000});
        m.save(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), m);
    }

    #[test]
    fn nan_metric_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = manifest();
        m.metrics.insert("loss".into(), f64::NAN);
        let err = m.save(dir.path()).unwrap_err();
        assert!(err.to_string().contains("loss"), "{err}");
        assert!(!dir.path().join(MANIFEST_FILE).exists());
    }

    #[test]
    fn future_schema_is_a_version_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(manifest()).unwrap();
        v["schema_version"] = 99.into();
        v["some_future_field"] = serde_json::json!({"x": 1});
        fs::write(dir.path().join(MANIFEST_FILE), v.to_string()).unwrap();
        match Manifest::load(dir.path()).unwrap_err() {
            Error::SchemaVersion { found, .. } => assert_eq!(found, 99),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn garbage_manifest_is_a_json_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(MANIFEST_FILE), b"\x00\xffnot json").unwrap();
        let err = Manifest::load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err}");
        assert!(err.to_string().contains(MANIFEST_FILE));
    }

    #[test]
    fn manifest_with_escaping_artifact_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(manifest()).unwrap();
        v["artifacts"] = serde_json::json!({"../../etc/passwd": {"sha256": "00", "bytes": 1}});
        fs::write(dir.path().join(MANIFEST_FILE), v.to_string()).unwrap();
        let err = Manifest::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains(".."), "{err}");
    }
}
