//! Models by Hugging Face hub id (`sentence-transformers/all-MiniLM-L6-v2`, `gpt2`), from the
//! local hub cache only: never the network. Everywhere a model directory is accepted, a hub id
//! that a `huggingface_hub` download (or `transformers` / `sentence-transformers`) left in the
//! cache works too.
//!
//! The cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
//! else `~/.cache/huggingface/hub` (the order `huggingface_hub` uses). A model lives in
//! `models--{org}--{name}/snapshots/{revision}`, where `refs/main` names the revision.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The hub cache folder this process would use (it need not exist).
pub fn hub_cache_dir() -> Option<PathBuf> {
    env_path("HF_HUB_CACHE")
        .or_else(|| env_path("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| env_path("XDG_CACHE_HOME").map(|c| c.join("huggingface").join("hub")))
        .or_else(|| env_path("HOME").map(|h| h.join(".cache").join("huggingface").join("hub")))
}

/// The path in the environment variable `name`, when it is set and not empty.
pub(crate) fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Whether `name` can be a hub id: one or two path components of letters, digits, `-`, `_`
/// and `.`, not starting with `.` or `/`.
fn is_hub_id(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    !name.is_empty()
        && parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

/// The snapshot directory of the hub model `id` in the cache `cache`: the revision
/// `refs/main` names, else the only snapshot there is.
fn snapshot(cache: &Path, id: &str) -> Option<PathBuf> {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if dir.is_dir() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    (dirs.len() == 1).then(|| dirs.remove(0))
}

/// `name` as a model directory: itself when it is a directory, else the cached snapshot of
/// the hub id `name`.
///
/// # Errors
/// [`Error::ModelNotFound`] naming `name` and every place looked (the path, and the cache
/// folder of the id when `name` can be one).
pub fn resolve_model_dir(name: &Path) -> Result<PathBuf> {
    if name.is_dir() {
        return Ok(name.to_path_buf());
    }
    let mut looked = vec![name.to_path_buf()];
    if let Some(id) = name.to_str().filter(|s| is_hub_id(s)) {
        match hub_cache_dir() {
            Some(cache) => {
                if let Some(dir) = snapshot(&cache, id) {
                    return Ok(dir);
                }
                looked.push(cache.join(format!("models--{}", id.replace('/', "--"))));
            }
            None => looked.push(PathBuf::from("(no HF_HUB_CACHE, HF_HOME or HOME set)")),
        }
    }
    Err(Error::ModelNotFound {
        name: name.display().to_string(),
        looked,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    /// A hub cache with one model at two revisions, `refs/main` naming the second.
    fn cache_with_model(root: &Path) -> PathBuf {
        let repo = root.join("models--org--tiny-model");
        for rev in ["aaa111", "bbb222"] {
            let dir = repo.join("snapshots").join(rev);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("config.json"), rev).unwrap();
        }
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "bbb222\n").unwrap();
        repo.join("snapshots").join("bbb222")
    }

    #[test]
    fn hub_ids_resolve_to_the_snapshot_refs_main_names_and_misses_name_the_places() {
        let root = tempfile::tempdir().unwrap();
        let expected = cache_with_model(root.path());
        assert_eq!(snapshot(root.path(), "org/tiny-model"), Some(expected));
        assert_eq!(snapshot(root.path(), "org/other"), None);
        // A directory is itself, whatever the cache holds.
        assert_eq!(resolve_model_dir(root.path()).unwrap(), root.path());
        assert!(is_hub_id("gpt2") && is_hub_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(!is_hub_id("../x") && !is_hub_id("/abs/model") && !is_hub_id("a/b/c"));
    }

    #[test]
    fn without_refs_main_the_only_snapshot_is_taken() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("models--gpt2/snapshots/ccc333");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(snapshot(root.path(), "gpt2"), Some(dir));
        std::fs::create_dir_all(root.path().join("models--gpt2/snapshots/ddd444")).unwrap();
        assert_eq!(
            snapshot(root.path(), "gpt2"),
            None,
            "two snapshots, no ref: ambiguous"
        );
    }
}
