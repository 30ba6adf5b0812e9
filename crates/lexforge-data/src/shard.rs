//! Stage A's result ([`ChunkedCorpus`]) and the files of the pipeline: shard directories
//! ([`write_shard`], [`read_shard`], [`merge_shards`]), JSON Lines rows ([`read_jsonl`]) and the
//! dataset directory's format ([`DATASET_KIND`], [`DATASET_FORMAT`]).
//!
//! A shard holds stage A's result for a subset of the books; merged shards give the same corpus
//! as one process would, so the data files do not depend on how stage A was split.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use lexforge_core::{Error as CoreError, RunDir, RunStatus, StageMode, verify_run_dir};

use crate::chunk::{Chunk, ChunkReport};
use crate::config::PrepareConfig;
use crate::error::{DataError, Result};
use crate::standardize::BoilerplateReport;

/// A book after stage A.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookRecord {
    /// Its id.
    pub id: String,
    /// Its author (metadata `author`), when known.
    pub author: Option<String>,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
    /// What chunking did.
    pub chunks: ChunkReport,
    /// What standardization removed.
    pub boilerplate: BoilerplateReport,
}

/// A book left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The book id, or the file when the book could not be read.
    pub book: String,
    /// Why.
    pub reason: String,
}

/// The result of stage A: chunks of a set of books.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkedCorpus {
    /// Books that gave at least one chunk, by id.
    pub books: Vec<BookRecord>,
    /// Their chunks, by book id then index.
    pub chunks: Vec<Chunk>,
    /// Books left out.
    pub skipped: Vec<Skipped>,
}

/// Sorts books by id, chunks by book then index, skipped books by name.
pub(crate) fn sort_corpus(c: &mut ChunkedCorpus) {
    c.books.sort_by(|a, b| a.id.cmp(&b.id));
    c.chunks
        .sort_by(|a, b| a.book.cmp(&b.book).then(a.index.cmp(&b.index)));
    c.skipped.sort_by(|a, b| a.book.cmp(&b.book));
}

const SHARD_KIND: &str = "data-shard";
const SHARD_FORMAT: u32 = 1;
/// Manifest `kind` of a prepared dataset directory.
pub const DATASET_KIND: &str = "dataset";
/// Version of the dataset layout, in the manifest's `config.format`; readers refuse others.
pub const DATASET_FORMAT: u32 = 1;

/// Writes stage A's result as a shard directory `dir` (staged: it appears complete or not at
/// all): `chunks.jsonl`, `books.jsonl`, `skipped.jsonl` and a manifest with the stage-A
/// parameters and checksums.
///
/// # Errors
/// [`DataError::Core`] when `dir` exists or cannot be written.
pub fn write_shard(corpus: &ChunkedCorpus, config: &PrepareConfig, dir: &Path) -> Result<PathBuf> {
    let (parent, name) = split_dir(dir)?;
    let mut run = RunDir::create(&parent, &name, SHARD_KIND, StageMode::Staged)?;
    run.write_artifact("chunks.jsonl", &jsonl(&corpus.chunks)?)?;
    run.write_artifact("books.jsonl", &jsonl(&corpus.books)?)?;
    run.write_artifact("skipped.jsonl", &jsonl(&corpus.skipped)?)?;
    let m = run.manifest_mut();
    m.config = json!({ "format": SHARD_FORMAT, "stage_a": config.stage_a() });
    m.seed = Some(config.seed);
    m.metrics = BTreeMap::from([
        ("books".to_owned(), corpus.books.len() as f64),
        ("chunks".to_owned(), corpus.chunks.len() as f64),
        ("skipped".to_owned(), corpus.skipped.len() as f64),
    ]);
    Ok(run.finish(RunStatus::Completed)?)
}

/// Reads a shard written by [`write_shard`], verifying its manifest (every checksum) and that
/// it was made with the same stage-A parameters as `config`.
///
/// # Errors
/// [`DataError::Core`] for a missing or damaged shard; [`DataError::Shard`] for a directory
/// that is not a shard or was made with other parameters.
pub fn read_shard(dir: &Path, config: &PrepareConfig) -> Result<ChunkedCorpus> {
    let manifest = verify_run_dir(dir)?;
    let shard_err = |reason: String| DataError::Shard {
        path: dir.to_path_buf(),
        reason,
    };
    if manifest.kind != SHARD_KIND {
        return Err(shard_err(format!(
            "a {:?} directory, not a data shard",
            manifest.kind
        )));
    }
    if manifest.config.get("format") != Some(&json!(SHARD_FORMAT)) {
        return Err(shard_err(format!(
            "shard format {:?}, this build reads {SHARD_FORMAT}",
            manifest.config.get("format")
        )));
    }
    let theirs = manifest.config.get("stage_a").cloned().unwrap_or_default();
    if theirs != config.stage_a() {
        return Err(shard_err(format!(
            "made with other stage-A parameters: {theirs} (these: {})",
            config.stage_a()
        )));
    }
    Ok(ChunkedCorpus {
        chunks: read_jsonl(&dir.join("chunks.jsonl"))?,
        books: read_jsonl(&dir.join("books.jsonl"))?,
        skipped: read_jsonl(&dir.join("skipped.jsonl"))?,
    })
}

/// Merges shards into one corpus, in book-id order.
///
/// # Errors
/// [`DataError::Shard`] when a book appears in two shards.
pub fn merge_shards(shards: Vec<ChunkedCorpus>) -> Result<ChunkedCorpus> {
    let mut out = ChunkedCorpus::default();
    for s in shards {
        out.books.extend(s.books);
        out.chunks.extend(s.chunks);
        out.skipped.extend(s.skipped);
    }
    sort_corpus(&mut out);
    if let Some(w) = out.books.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(DataError::Shard {
            path: PathBuf::from(&w[0].id),
            reason: "this book is in two shards; shard the files disjointly".to_owned(),
        });
    }
    Ok(out)
}

/// The parent directory of `dir` (`.` when it has none) and its name.
pub(crate) fn split_dir(dir: &Path) -> Result<(PathBuf, String)> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| DataError::InvalidParameter {
            parameter: "out",
            reason: format!("{} has no usable directory name", dir.display()),
        })?
        .to_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// `rows` as JSON Lines.
pub(crate) fn jsonl<T: Serialize>(rows: &[T]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut out, r).map_err(|source| CoreError::Serialize {
            what: "dataset row",
            source,
        })?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Reads a JSONL file of `T` rows (blank lines skipped).
///
/// # Errors
/// I/O errors naming the file; [`CoreError::CorpusRecord`] naming the file and line of the
/// first row that does not parse as `T`.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::io("read", path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                DataError::Core(CoreError::CorpusRecord {
                    path: path.to_path_buf(),
                    line: i as u64 + 1,
                    reason: e.to_string(),
                })
            })
        })
        .collect()
}
