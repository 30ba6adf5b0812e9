//! Run directories: where every lexforge job writes its artifacts and `manifest.json`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::fsutil::{atomic_write_with, fsync_dir, sha256_file};
use crate::manifest::{ArtifactEntry, Manifest, RunStatus, now_rfc3339};
use crate::names::{RelPath, RunId};

static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How a [`RunDir`] appears on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageMode {
    /// The directory is created at its final place at once, with a `running` manifest, and
    /// updated in place. For long jobs (training) that must be resumable after a kill.
    InPlace,
    /// The directory is built under a hidden temporary name beside its final place and renamed
    /// into place by [`RunDir::finish`]. If the job fails or the `RunDir` is dropped unfinished,
    /// the temporary directory is removed: no partial artifact directory is ever left where a
    /// user looks. For short jobs (tokenizer training, exports).
    Staged,
}

/// A run directory under construction or being resumed.
///
/// # Design
/// Owned by whichever pipeline runs the job; single-threaded (wrap it in a mutex to share).
/// Every artifact goes through [`RunDir::write_artifact`] (atomic write + checksum) or is
/// written by a library to [`RunDir::artifact_path`] and then registered with
/// [`RunDir::record_artifact`]. The manifest is rewritten atomically on every
/// [`RunDir::save_manifest`] and [`RunDir::finish`], so at any moment the directory holds a
/// complete, verifiable manifest.
#[derive(Debug)]
pub struct RunDir {
    final_path: PathBuf,
    work_path: PathBuf,
    mode: StageMode,
    finished: bool,
    manifest: Manifest,
}

impl RunDir {
    /// Creates the run `root/run_id` for a job of `kind`. `root` is created if needed; an
    /// existing `root/run_id` is an [`Error::RunExists`]; a `run_id` that is not a single safe
    /// path component is an [`Error::InvalidName`].
    pub fn create(root: &Path, run_id: &str, kind: &str, mode: StageMode) -> Result<Self> {
        let id: RunId = run_id.parse()?;
        fs::create_dir_all(root).map_err(|e| Error::io("create directory", root, e))?;
        let final_path = root.join(id.as_str());
        if final_path.exists() {
            return Err(Error::RunExists { path: final_path });
        }
        let work_path = match mode {
            StageMode::InPlace => final_path.clone(),
            StageMode::Staged => root.join(format!(
                ".{}.partial-{}-{}",
                id,
                std::process::id(),
                STAGE_COUNTER.fetch_add(1, Ordering::Relaxed)
            )),
        };
        fs::create_dir(&work_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::RunExists {
                path: work_path.clone(),
            },
            _ => Error::io("create directory", &work_path, e),
        })?;
        let run = RunDir {
            final_path,
            work_path,
            mode,
            finished: false,
            manifest: Manifest::new(id, kind),
        };
        run.save_manifest()?;
        tracing::debug!(path = %run.final_path.display(), ?mode, "created run directory");
        Ok(run)
    }

    /// Refuses a `path` that exists ([`Error::RunExists`]): how a pipeline's `train` checks,
    /// before any costly preparation, that it will be able to create its run.
    pub fn check_new(path: &Path) -> Result<()> {
        if path.exists() {
            return Err(Error::RunExists {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    /// Creates the run directory `path` itself (its parent is the root, its last component the
    /// run id); errors as [`RunDir::create`]. The form every pipeline's `train` takes: the run
    /// directory is an argument, never derived from a config.
    pub fn create_at(path: &Path, kind: &str, mode: StageMode) -> Result<Self> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::InvalidName {
                what: "run directory",
                name: path.display().to_string(),
                reason: "a run directory needs a last path component in UTF-8",
            })?;
        let root = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Self::create(root, name, kind, mode)
    }

    /// Opens an existing (typically interrupted) in-place run to continue it. The manifest must
    /// load and every artifact it lists must verify.
    pub fn open(path: &Path) -> Result<Self> {
        let manifest = verify_run_dir(path)?;
        Ok(RunDir {
            final_path: path.to_path_buf(),
            work_path: path.to_path_buf(),
            mode: StageMode::InPlace,
            finished: false,
            manifest,
        })
    }

    /// Opens the training run `path` of `kind` to resume it: verified as [`RunDir::open`] does,
    /// its manifest's kind checked ([`Error::WrongRunKind`]) and the manifest's `config` parsed
    /// as `T` ([`Error::RunConfig`]). The one way every pipeline's `resume` opens its run.
    pub fn resume<T: serde::de::DeserializeOwned>(
        path: &Path,
        kind: &'static str,
    ) -> Result<(Self, T)> {
        let run = Self::open(path)?;
        if run.manifest.kind != kind {
            return Err(Error::WrongRunKind {
                path: path.to_path_buf(),
                expected: kind,
                found: run.manifest.kind.clone(),
            });
        }
        let config =
            serde_json::from_value(run.manifest.config.clone()).map_err(|e| Error::RunConfig {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok((run, config))
    }

    /// Marks a training run as running with `config`, `seed`, `device` and its precision
    /// recorded, and saves the manifest. No artifact stays listed: the outputs are rewritten
    /// at the end, and until all of them are written again the manifest must not vouch for old
    /// ones (a failure half-way, such as a full disk, would leave files that disagree with it).
    pub fn begin_training(
        &mut self,
        config: serde_json::Value,
        seed: Option<u64>,
        device: &crate::Device,
    ) -> Result<()> {
        let m = &mut self.manifest;
        m.artifacts.clear();
        m.status = RunStatus::Running;
        m.config = config;
        m.seed = seed;
        m.device = Some(format!("{device:?}"));
        m.precision = Some(crate::Precision::of(device).to_string());
        self.save_manifest()
    }

    /// Where files are being written now (the staging directory until a staged run finishes).
    pub fn path(&self) -> &Path {
        &self.work_path
    }

    /// Where the run will be (or is) once finished.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// The manifest as it stands.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest, to fill in config, seed, device or metrics. Call
    /// [`RunDir::save_manifest`] to persist changes before [`RunDir::finish`].
    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }

    /// The absolute path of artifact `rel` (validated; parent directories created) for a
    /// library that writes the file itself. Register it afterwards with
    /// [`RunDir::record_artifact`].
    pub fn artifact_path(&self, rel: &str) -> Result<PathBuf> {
        let rel: RelPath = rel.parse()?;
        let path = rel.under(&self.work_path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))?;
        }
        Ok(path)
    }

    /// Writes artifact `rel` atomically, records its size and checksum, and saves the manifest.
    pub fn write_artifact(&mut self, rel: &str, bytes: &[u8]) -> Result<ArtifactEntry> {
        self.write_artifact_with(rel, |f| std::io::Write::write_all(f, bytes))
    }

    /// Like [`RunDir::write_artifact`], streaming the content through `fill`.
    pub fn write_artifact_with(
        &mut self,
        rel: &str,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<ArtifactEntry> {
        let path = self.artifact_path(rel)?;
        atomic_write_with(&path, fill, |_| Ok(()))?;
        self.record_artifact(rel)
    }

    /// Hashes the file at artifact `rel` (written by someone else into
    /// [`RunDir::artifact_path`]), records it, and saves the manifest.
    pub fn record_artifact(&mut self, rel: &str) -> Result<ArtifactEntry> {
        let key: RelPath = rel.parse()?;
        let path = key.under(&self.work_path);
        let meta = fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        if !meta.file_type().is_file() {
            return Err(Error::ArtifactOutsideRun { path });
        }
        let (sha256, bytes) = sha256_file(&path)?;
        let entry = ArtifactEntry { sha256, bytes };
        self.manifest.artifacts.insert(key, entry.clone());
        self.save_manifest()?;
        Ok(entry)
    }

    /// Removes artifact `rel` from disk and from the manifest (e.g. an old checkpoint).
    pub fn remove_artifact(&mut self, rel: &str) -> Result<()> {
        let key: RelPath = rel.parse()?;
        self.manifest.artifacts.remove(&key);
        // Manifest first: a crash in between leaves an unlisted file, never a listed missing one.
        self.save_manifest()?;
        let path = key.under(&self.work_path);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &path, e)),
        }
    }

    /// Writes the manifest atomically.
    pub fn save_manifest(&self) -> Result<()> {
        self.manifest.save(&self.work_path)
    }

    /// Sets the final status and end time, saves the manifest and, for a staged run, renames
    /// the directory into its final place. Returns the final path.
    pub fn finish(mut self, status: RunStatus) -> Result<PathBuf> {
        self.manifest.status = status;
        self.manifest.ended_at = Some(now_rfc3339());
        self.save_manifest()?;
        if self.mode == StageMode::Staged {
            if self.final_path.exists() {
                return Err(Error::RunExists {
                    path: self.final_path.clone(),
                });
            }
            fs::rename(&self.work_path, &self.final_path)
                .map_err(|e| Error::io("rename", &self.final_path, e))?;
            if let Some(root) = self.final_path.parent() {
                fsync_dir(root)?;
            }
        }
        self.finished = true;
        tracing::info!(path = %self.final_path.display(), ?status, "run finished");
        Ok(self.final_path.clone())
    }
}

/// Where a training run goes: a new directory, or a run opened with [`RunDir::resume`].
#[derive(Debug)]
pub enum RunTarget<'a> {
    /// Create this directory (in place); it must not exist.
    Create(&'a Path),
    /// Continue this run.
    Resume(Box<RunDir>),
}

impl RunTarget<'_> {
    /// The run directory, created as a `kind` run or the one resumed, marked running with
    /// `config`, `seed` and `device` ([`RunDir::begin_training`]).
    ///
    /// # Errors
    /// As [`RunDir::create_at`] and [`RunDir::begin_training`].
    pub fn begin(
        self,
        kind: &str,
        config: serde_json::Value,
        seed: Option<u64>,
        device: &crate::Device,
    ) -> Result<RunDir> {
        let mut run = match self {
            RunTarget::Create(path) => RunDir::create_at(path, kind, StageMode::InPlace)?,
            RunTarget::Resume(run) => *run,
        };
        run.begin_training(config, seed, device)?;
        Ok(run)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.mode == StageMode::Staged && !self.finished {
            // A staged run that did not finish leaves nothing behind.
            let _ = fs::remove_dir_all(&self.work_path);
        }
    }
}

/// Loads `dir/manifest.json` and verifies every artifact it lists (presence, regular file,
/// size, sha256). This is what every loader calls before trusting a run directory.
pub fn verify_run_dir(dir: &Path) -> Result<Manifest> {
    let manifest = Manifest::load(dir)?;
    manifest.verify(dir)?;
    Ok(manifest)
}

/// [`verify_run_dir`] for a directory a loader is about to use as a finished model: when
/// `dir` has a manifest, it is verified and must say `completed`, else
/// [`Error::RunNotFinished`] naming it, with `rerun` telling how to finish the run. A
/// directory without a manifest (an outside model) passes; `None` then.
pub fn verify_completed_run(dir: &Path, rerun: &str) -> Result<Option<Manifest>> {
    let path = dir.join(crate::manifest::MANIFEST_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let m = verify_run_dir(dir)?;
    if m.status != RunStatus::Completed {
        return Err(Error::RunNotFinished {
            path,
            status: m.status,
            rerun: rerun.to_owned(),
        });
    }
    Ok(Some(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::atomic_write;
    use crate::manifest::MANIFEST_FILE;

    fn completed_run(root: &Path) -> PathBuf {
        let mut run = RunDir::create(root, "r1", "test", StageMode::InPlace).unwrap();
        run.write_artifact("model.safetensors", &[7u8; 1000])
            .unwrap();
        run.write_artifact("eval/metrics.json", br#"{"loss":1.0}"#)
            .unwrap();
        run.finish(RunStatus::Completed).unwrap()
    }

    #[test]
    fn only_a_completed_run_passes_as_finished() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = completed_run(tmp.path());
        assert!(verify_completed_run(&dir, "rerun").unwrap().is_some());
        assert!(verify_completed_run(tmp.path(), "rerun").unwrap().is_none());
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"completed\"", "\"running\"")).unwrap();
        let e = verify_completed_run(&dir, "rerun it").unwrap_err();
        assert!(
            matches!(e, Error::RunNotFinished { ref path, status: RunStatus::Running, .. } if path.ends_with(MANIFEST_FILE))
                && e.to_string().contains("has not finished")
                && e.to_string().contains("rerun it"),
            "{e}"
        );
    }

    #[test]
    fn a_finished_run_verifies() {
        let root = tempfile::tempdir().unwrap();
        let dir = completed_run(root.path());
        let m = verify_run_dir(&dir).unwrap();
        assert_eq!(m.status, RunStatus::Completed);
        assert_eq!(m.artifacts.len(), 2);
        assert!(m.ended_at.is_some());
    }

    #[test]
    fn truncated_artifact_fails_with_size_error() {
        let root = tempfile::tempdir().unwrap();
        let dir = completed_run(root.path());
        let f = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("model.safetensors"))
            .unwrap();
        f.set_len(500).unwrap();
        match verify_run_dir(&dir).unwrap_err() {
            Error::ArtifactSize {
                path,
                expected,
                got,
            } => {
                assert!(path.ends_with("model.safetensors"));
                assert_eq!((expected, got), (1000, 500));
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn altered_artifact_fails_with_checksum_error() {
        let root = tempfile::tempdir().unwrap();
        let dir = completed_run(root.path());
        let mut bytes = fs::read(dir.join("model.safetensors")).unwrap();
        bytes[10] ^= 0x01;
        fs::write(dir.join("model.safetensors"), bytes).unwrap();
        let err = verify_run_dir(&dir).unwrap_err();
        assert!(matches!(err, Error::Checksum { .. }), "{err}");
        assert_eq!(err.kind(), crate::ErrorKind::Artifact);
    }

    #[test]
    fn missing_artifact_fails() {
        let root = tempfile::tempdir().unwrap();
        let dir = completed_run(root.path());
        fs::remove_file(dir.join("eval/metrics.json")).unwrap();
        assert!(matches!(
            verify_run_dir(&dir).unwrap_err(),
            Error::ArtifactMissing { .. }
        ));
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_artifact_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = completed_run(root.path());
        let outside = root.path().join("outside");
        fs::write(&outside, br#"{"loss":1.0}"#).unwrap();
        fs::remove_file(dir.join("eval/metrics.json")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("eval/metrics.json")).unwrap();
        assert!(matches!(
            verify_run_dir(&dir).unwrap_err(),
            Error::ArtifactOutsideRun { .. }
        ));
    }

    #[test]
    fn crash_between_write_and_rename_keeps_previous_manifest() {
        let root = tempfile::tempdir().unwrap();
        let dir = completed_run(root.path());
        let before = fs::read(dir.join(MANIFEST_FILE)).unwrap();

        // A new manifest is fully written and synced to its temp file, then the process
        // "dies" before the rename.
        let mut m = Manifest::load(&dir).unwrap();
        m.metrics.insert("loss".into(), 0.5);
        let new_bytes = serde_json::to_vec_pretty(&m).unwrap();
        let err = atomic_write_with(
            &dir.join(MANIFEST_FILE),
            |f| std::io::Write::write_all(f, &new_bytes),
            |tmp| {
                assert!(tmp.exists(), "temp file written before rename");
                Err(Error::Cancelled)
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::Cancelled));
        assert_eq!(fs::read(dir.join(MANIFEST_FILE)).unwrap(), before);
        verify_run_dir(&dir).unwrap();

        // A temp file left by a real crash (no cleanup ran) does not disturb loading.
        atomic_write(&dir.join(".manifest.json.tmp-1-1"), b"{garbage").unwrap();
        let m2 = verify_run_dir(&dir).unwrap();
        assert!(!m2.metrics.contains_key("loss"));
    }

    #[test]
    fn staged_run_appears_only_when_finished_and_vanishes_on_drop() {
        let root = tempfile::tempdir().unwrap();
        {
            let mut run =
                RunDir::create(root.path(), "tok", "tokenizer", StageMode::Staged).unwrap();
            run.write_artifact("tokenizer.json", b"{}").unwrap();
            assert!(!root.path().join("tok").exists());
            // dropped without finish: an error path
        }
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);

        let mut run = RunDir::create(root.path(), "tok", "tokenizer", StageMode::Staged).unwrap();
        run.write_artifact("tokenizer.json", b"{}").unwrap();
        let dir = run.finish(RunStatus::Completed).unwrap();
        assert_eq!(dir, root.path().join("tok"));
        verify_run_dir(&dir).unwrap();
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn existing_run_and_bad_names_are_refused() {
        let root = tempfile::tempdir().unwrap();
        completed_run(root.path());
        assert!(matches!(
            RunDir::create(root.path(), "r1", "test", StageMode::InPlace).unwrap_err(),
            Error::RunExists { .. }
        ));
        for bad in ["../r2", "a/b", ".."] {
            assert!(matches!(
                RunDir::create(root.path(), bad, "test", StageMode::InPlace).unwrap_err(),
                Error::InvalidName { .. }
            ));
        }
        let mut run = RunDir::create(root.path(), "r2", "test", StageMode::InPlace).unwrap();
        for bad in ["../escape.txt", "/tmp/x", "eval/../../x"] {
            assert!(matches!(
                run.write_artifact(bad, b"x").unwrap_err(),
                Error::InvalidName { .. }
            ));
        }
        assert!(!root.path().join("escape.txt").exists());
    }

    #[test]
    fn reopened_run_continues_and_removes_artifacts() {
        let root = tempfile::tempdir().unwrap();
        let mut run = RunDir::create(root.path(), "r", "lm", StageMode::InPlace).unwrap();
        run.write_artifact("checkpoints/step-1.bin", b"1").unwrap();
        drop(run); // killed: status stays running
        let mut run = RunDir::open(&root.path().join("r")).unwrap();
        assert_eq!(run.manifest().status, RunStatus::Running);
        run.write_artifact("checkpoints/step-2.bin", b"2").unwrap();
        run.remove_artifact("checkpoints/step-1.bin").unwrap();
        let dir = run.finish(RunStatus::Completed).unwrap();
        let m = verify_run_dir(&dir).unwrap();
        let names: Vec<_> = m.artifacts.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(names, ["checkpoints/step-2.bin"]);
        assert!(!dir.join("checkpoints/step-1.bin").exists());
    }
}
