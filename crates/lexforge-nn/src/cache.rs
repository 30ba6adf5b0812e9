//! A content-addressed on-disk cache of sentence vectors, and [`CachedEncoder`], which puts it
//! in front of any [`SentenceEncoder`].
//!
//! # Layout and guarantees
//! One file per vector at `DIR/ab/<64 hex>.vec`, named by SHA-256 of (model id, text); the
//! model id already encodes pooling, truncation, normalization and sequence length (see
//! [`SentenceEncoder::model_id`]). A file is `LXE1`, the width (u32 LE), the f32 LE values and
//! the first 8 bytes of SHA-256 over key and values. Files are written to a temporary name,
//! synced and renamed, so a reader sees a whole vector or none, whatever the number of
//! concurrent readers and writers; a writer killed mid-write leaves only a temporary file that
//! is never read. A file that fails its check (a flipped bit, a foreign file) counts as a miss
//! and is rewritten.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::encoder::{Embeddings, SentenceEncoder};
use crate::error::Result;

const MAGIC: &[u8; 4] = b"LXE1";

/// Hits and misses since the cache was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Vectors served from disk.
    pub hits: u64,
    /// Vectors that had to be computed.
    pub misses: u64,
}

/// The on-disk vector store.
#[derive(Debug)]
pub struct EmbeddingCache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
}

fn key(model_id: &str, text: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((model_id.len() as u64).to_le_bytes());
    h.update(model_id.as_bytes());
    h.update(text.as_bytes());
    h.finalize().into()
}

fn checksum(key: &[u8; 32], values: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(key);
    h.update(values);
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

impl EmbeddingCache {
    /// Opens (creating) the cache directory.
    ///
    /// # Errors
    /// [`lexforge_core::Error::Io`] when the directory cannot be created.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| lexforge_core::Error::io("create embedding cache", &dir, e))?;
        Ok(EmbeddingCache {
            dir,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &[u8; 32]) -> PathBuf {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(&hex[..2]).join(format!("{hex}.vec"))
    }

    /// The vector of `text` under `model_id`, if stored intact with width `dim`. Counts a hit
    /// or a miss.
    pub fn get(&self, model_id: &str, text: &str, dim: usize) -> Option<Vec<f32>> {
        let k = key(model_id, text);
        let found = std::fs::read(self.path(&k)).ok().and_then(|bytes| {
            let body_len = 8 + 4 * dim;
            if bytes.len() != body_len + 8 || &bytes[..4] != MAGIC {
                return None;
            }
            let width = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
            let values = &bytes[8..body_len];
            (width == dim && bytes[body_len..] == checksum(&k, values)).then(|| {
                values
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            })
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `vector` for `text` under `model_id` (atomically; replaces a damaged entry).
    ///
    /// # Errors
    /// [`lexforge_core::Error::Io`] (a full disk included); nothing partial is left readable.
    pub fn put(&self, model_id: &str, text: &str, vector: &[f32]) -> Result<()> {
        let k = key(model_id, text);
        let path = self.path(&k);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| lexforge_core::Error::io("create embedding cache", parent, e))?;
        }
        let values: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut bytes = Vec::with_capacity(16 + values.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(vector.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&values);
        bytes.extend_from_slice(&checksum(&k, &values));
        lexforge_core::atomic_write(&path, &bytes)?;
        Ok(())
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// Any [`SentenceEncoder`] with an [`EmbeddingCache`] in front: stored texts are read from
/// disk, the rest are encoded (in one call, so batching still applies) and stored.
#[derive(Debug)]
pub struct CachedEncoder<E> {
    inner: E,
    cache: EmbeddingCache,
}

impl<E: SentenceEncoder> CachedEncoder<E> {
    /// Wraps `inner`.
    pub fn new(inner: E, cache: EmbeddingCache) -> Self {
        CachedEncoder { inner, cache }
    }

    /// The wrapped encoder.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The cache.
    pub fn cache(&self) -> &EmbeddingCache {
        &self.cache
    }
}

impl<E: SentenceEncoder> SentenceEncoder for CachedEncoder<E> {
    fn encode(&self, texts: &[&str], batch_size: usize) -> Result<Embeddings> {
        let dim = self.inner.dim();
        let id = self.inner.model_id();
        let mut out = vec![0.0f32; texts.len() * dim];
        let mut missing: Vec<usize> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            match self.cache.get(id, text, dim) {
                Some(v) => out[i * dim..(i + 1) * dim].copy_from_slice(&v),
                None => missing.push(i),
            }
        }
        if !missing.is_empty() {
            let todo: Vec<&str> = missing.iter().map(|&i| texts[i]).collect();
            let fresh = self.inner.encode(&todo, batch_size)?;
            for (k, &i) in missing.iter().enumerate() {
                let row = fresh.row(k);
                out[i * dim..(i + 1) * dim].copy_from_slice(row);
                self.cache.put(id, texts[i], row)?;
            }
        }
        Embeddings::new(out, texts.len(), dim)
    }

    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NnError;
    use std::sync::atomic::AtomicUsize;

    /// A deterministic stand-in encoder that counts the texts it is asked for.
    struct Counting {
        calls: AtomicUsize,
    }

    impl SentenceEncoder for Counting {
        fn encode(&self, texts: &[&str], _batch_size: usize) -> Result<Embeddings> {
            self.calls.fetch_add(texts.len(), Ordering::Relaxed);
            if texts.iter().any(|t| t.is_empty()) {
                return Err(NnError::InvalidInput {
                    reason: "empty".into(),
                });
            }
            let data = texts
                .iter()
                .flat_map(|t| [t.len() as f32, t.bytes().map(f32::from).sum::<f32>(), 1.0])
                .collect();
            Embeddings::new(data, texts.len(), 3)
        }
        fn dim(&self) -> usize {
            3
        }
        fn model_id(&self) -> &str {
            "counting"
        }
    }

    #[test]
    fn second_pass_is_served_from_disk_and_damage_is_a_miss() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let enc = CachedEncoder::new(
            Counting {
                calls: AtomicUsize::new(0),
            },
            EmbeddingCache::open(dir.path()).unwrap_or_else(|e| panic!("{e}")),
        );
        let texts = ["alpha", "beta", "alpha", "gamma"];
        let first = enc.encode(&texts, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(enc.inner().calls.load(Ordering::Relaxed), 4);
        let second = enc.encode(&texts, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, second);
        assert_eq!(
            enc.inner().calls.load(Ordering::Relaxed),
            4,
            "nothing recomputed"
        );
        assert_eq!(enc.cache().stats(), CacheStats { hits: 4, misses: 4 });

        // Flip a byte in one entry: it is recomputed, not trusted.
        let path = enc.cache().path(&key("counting", "beta"));
        let mut bytes = std::fs::read(&path).unwrap_or_default();
        bytes[10] ^= 0x40;
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
        let third = enc.encode(&texts, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(third, first);
        assert_eq!(enc.inner().calls.load(Ordering::Relaxed), 5);

        // A different model id never sees these vectors.
        assert!(enc.cache().get("other-model", "alpha", 3).is_none());
    }

    #[test]
    fn concurrent_writers_and_readers_see_whole_vectors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = EmbeddingCache::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let v: Vec<f32> = (0..384).map(|i| i as f32 * 0.5).collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        cache
                            .put("m", "same text", &v)
                            .unwrap_or_else(|e| panic!("{e}"));
                        if let Some(got) = cache.get("m", "same text", 384) {
                            assert_eq!(got, v);
                        }
                    }
                });
            }
        });
        assert_eq!(cache.get("m", "same text", 384), Some(v));
    }
}
