//! SHA-256 digests of large files (model weights), computed once per file version and kept in
//! a small sidecar cache so that loading the same weights again does not hash them again.
//!
//! The sidecar lives in lexforge's cache folder (`$LEXFORGE_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/lexforge`, else `~/.cache/lexforge`), under `digests/`, one JSON file per
//! weight file (named by a hash of its canonical path). An entry is used only while the file's
//! length, modification time (ns) and inode are the ones recorded, the test git and Hugging
//! Face use for the same purpose; any change recomputes it. As in git, a file modified less
//! than [`RACY_SECS`] before it is hashed is not cached (a same-length rewrite within one
//! timestamp tick would keep its stamp). The cache is an optimization: a folder that cannot
//! be written (read-only home) only costs the hashing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::{sha256_bytes, sha256_file};
use crate::hub::env_path;

/// Files modified this recently are hashed every time, never cached.
pub const RACY_SECS: u64 = 2;

/// A file's identity as `stat` sees it: what must not have changed for a cached digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    inode: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(-1, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            len: meta.len(),
            mtime_ns,
            inode,
        }
    }
}

/// One cached digest.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    path: PathBuf,
    stamp: Stamp,
    sha256: String,
}

/// lexforge's cache folder: `$LEXFORGE_CACHE_DIR`, `$XDG_CACHE_HOME/lexforge` or
/// `~/.cache/lexforge`; `None` when none of those variables is set.
pub fn cache_dir() -> Option<PathBuf> {
    env_path("LEXFORGE_CACHE_DIR")
        .or_else(|| env_path("XDG_CACHE_HOME").map(|c| c.join("lexforge")))
        .or_else(|| env_path("HOME").map(|h| h.join(".cache").join("lexforge")))
}

/// The SHA-256 (hex) of `path`'s bytes, from the sidecar cache when the file is unchanged,
/// else computed (from `bytes` when the caller already holds the file's content) and
/// recorded.
///
/// # Errors
/// I/O errors naming the file (reading or `stat`ing it). Cache failures are not errors.
pub fn file_sha256(path: &Path, bytes: Option<&[u8]>) -> crate::Result<String> {
    file_sha256_in(cache_dir().as_deref(), path, bytes)
}

/// [`file_sha256`] with an explicit cache folder (`None`: no cache).
///
/// # Errors
/// As [`file_sha256`].
pub fn file_sha256_in(
    cache: Option<&Path>,
    path: &Path,
    bytes: Option<&[u8]>,
) -> crate::Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| crate::Error::io("stat", path, e))?;
    let stamp = Stamp::of(&meta);
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let sidecar = cache.map(|c| {
        let key = sha256_bytes(canonical.as_os_str().as_encoded_bytes());
        c.join("digests").join(format!("{}.json", &key[..32]))
    });
    if let Some(entry) = sidecar
        .as_deref()
        .and_then(|s| std::fs::read(s).ok())
        .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
        .filter(|e| e.path == canonical && e.stamp == stamp)
    {
        return Ok(entry.sha256);
    }
    let sha256 = match bytes {
        Some(b) if b.len() as u64 == stamp.len => sha256_bytes(b),
        _ => sha256_file(path)?.0,
    };
    let settled = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age.as_secs() >= RACY_SECS);
    if let Some(sidecar) = sidecar.filter(|_| settled) {
        let entry = Entry {
            path: canonical,
            stamp,
            sha256: sha256.clone(),
        };
        let written = sidecar
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| crate::Error::io("create directory", &sidecar, e))
            .and_then(|()| {
                let json =
                    serde_json::to_vec(&entry).map_err(|source| crate::Error::Serialize {
                        what: "digest cache entry",
                        source,
                    })?;
                crate::atomic_write(&sidecar, &json)
            });
        if let Err(e) = written {
            tracing::debug!(error = %e, "digest cache not written");
        }
    }
    Ok(sha256)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn the_digest_is_computed_once_per_file_version() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let file = dir.path().join("model.safetensors");
        std::fs::write(&file, b"weights v1").unwrap();
        let real = sha256_bytes(b"weights v1");
        // Just written: racy, so hashed but not cached.
        assert_eq!(file_sha256_in(Some(&cache), &file, None).unwrap(), real);
        assert!(!cache.join("digests").exists());
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(past)
            .unwrap();
        assert_eq!(file_sha256_in(Some(&cache), &file, None).unwrap(), real);
        assert_eq!(file_sha256_in(None, &file, None).unwrap(), real);

        // The second call reads the sidecar, not the file: a forged sidecar entry shows it.
        let sidecar = std::fs::read_dir(cache.join("digests"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let forged = std::fs::read_to_string(&sidecar)
            .unwrap()
            .replace(&real, "forged");
        std::fs::write(&sidecar, forged).unwrap();
        assert_eq!(file_sha256_in(Some(&cache), &file, None).unwrap(), "forged");

        // A new version of the file (other time, length and, here, inode) is hashed again.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, b"weights version 2").unwrap();
        let v2 = sha256_bytes(b"weights version 2");
        assert_eq!(file_sha256_in(Some(&cache), &file, None).unwrap(), v2);
        assert_eq!(
            file_sha256_in(Some(&cache), &file, Some(b"weights version 2")).unwrap(),
            v2
        );

        // An unwritable cache only costs the hashing.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"a file where the cache folder should be").unwrap();
        assert_eq!(file_sha256_in(Some(&blocked), &file, None).unwrap(), v2);
        assert!(file_sha256_in(Some(&cache), &dir.path().join("missing"), None).is_err());
    }
}
