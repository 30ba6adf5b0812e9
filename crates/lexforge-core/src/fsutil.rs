//! Atomic file writes and checksums.
//!
//! An atomic write goes to a temporary file in the destination's directory, is flushed to
//! disk with `fsync`, and is renamed over the destination; the directory is then synced so the
//! rename itself is durable. A crash, a kill or a full disk at any point leaves either the old
//! file or the new one, never a mix, and never a truncated destination.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Name of the temporary file for `dest`: hidden, in the same directory, unique per process and
/// call (`.manifest.json.tmp-<pid>-<n>`).
fn temp_path(dest: &Path) -> Result<PathBuf> {
    let name = dest.file_name().ok_or_else(|| Error::InvalidName {
        what: "artifact path",
        name: dest.display().to_string(),
        reason: "has no file name",
    })?;
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id());
    Ok(dest.with_file_name(tmp))
}

/// Syncs a directory so a rename inside it survives a power loss. Filesystems that cannot
/// sync directories (some network mounts) are tolerated.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    match File::open(dir) {
        Ok(f) => match f.sync_all() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
            Err(e) => Err(Error::io("fsync", dir, e)),
        },
        Err(e) => Err(Error::io("open", dir, e)),
    }
}

/// Writes `bytes` to `dest` atomically (temp file + fsync + rename + directory fsync).
/// The parent directory must exist.
pub fn atomic_write(dest: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(dest, |f| f.write_all(bytes), |_| Ok(()))
}

/// The general form of [`atomic_write`]: `fill` writes the content into the temporary file;
/// `before_rename` runs after the data is synced and before the rename, with the temporary
/// path. If either fails, the temporary file is removed and `dest` is untouched.
///
/// `before_rename` exists so tests can simulate a crash at the one moment that matters.
pub fn atomic_write_with(
    dest: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    before_rename: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let tmp = temp_path(dest)?;
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        fill(&mut f).map_err(|e| Error::io("write", &tmp, e))?;
        f.flush().map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(f);
        before_rename(&tmp)?;
        fs::rename(&tmp, dest).map_err(|e| Error::io("rename", dest, e))?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) => {
            // Best effort: the original error is what the caller needs to see.
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The sha256 (lowercase hex) and size of a file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// The sha256 (lowercase hex) of a byte slice (for bytes already in memory: no second read).
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_vector() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        atomic_write(&p, b"abc").unwrap();
        let (digest, size) = sha256_file(&p).unwrap();
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(size, 3);
        assert_eq!(sha256_bytes(b"abc"), digest);
    }

    #[test]
    fn failure_before_rename_keeps_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        atomic_write(&p, b"old").unwrap();
        let err = atomic_write_with(
            &p,
            |f| f.write_all(b"new content"),
            |_| Err(Error::Cancelled),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Cancelled));
        assert_eq!(fs::read(&p).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
    }

    #[test]
    fn failure_while_writing_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        atomic_write(&p, b"old").unwrap();
        let err = atomic_write_with(
            &p,
            |f| {
                f.write_all(b"partial")?;
                Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device",
                ))
            },
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no space"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"old");
    }

    #[test]
    fn missing_parent_is_a_typed_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = atomic_write(&dir.path().join("no/such/dir/f"), b"x").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound);
    }
}
