//! Stage A's result ([`ChunkedCorpus`]) and the shard directory that carries it to the merge
//! ([`write_shard`], [`read_shard`]): chunks with their vectors, MinHash signatures and
//! fingerprints, and book centroids, so the merge never runs the encoder; JSON Lines rows
//! ([`read_jsonl`]) and the dataset directory's format ([`DATASET_KIND`], [`DATASET_FORMAT`]).
//!
//! Everything in a shard is computed per book, so the data files do not depend on how stage A
//! was split (see [`merge_shards`](crate::merge_shards)). Vectors made elsewhere go in with
//! [`write_shard_with_vectors`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use safetensors::Dtype;
use serde::{Deserialize, Serialize};
use serde_json::json;

use lexforge_core::{
    CancelToken, Error as CoreError, Event, EventSink, RunDir, RunStatus, Seed, StageMode,
    verify_run_dir,
};
use lexforge_nn::encoder::SentenceEncoder;

use crate::arrays::{self, Array, ArrayFile, f32_bytes, u32_bytes};
use crate::chunk::{Chunk, ChunkReport};
use crate::config::PrepareConfig;
use crate::dedup::{MinHasher, fingerprint};
use crate::error::{DataError, Result};
use crate::mining::{Vectors, centroid};
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
/// Version of the shard layout, in the manifest's `config.format`; the merge refuses others.
pub const SHARD_FORMAT: u32 = 2;
/// Manifest `kind` of a prepared dataset directory.
pub const DATASET_KIND: &str = "dataset";
/// Version of the dataset layout, in the manifest's `config.format`; readers refuse others.
pub const DATASET_FORMAT: u32 = 1;
/// The shard's numeric arrays.
pub(crate) const ARRAYS_FILE: &str = "arrays.safetensors";

/// Which part of the book files a shard holds: the files at positions `index`,
/// `index + count`, ... of the sorted list (see
/// [`BookDirectory::with_shard`](crate::BookDirectory::with_shard)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPart {
    /// Which part, 0-based.
    pub index: usize,
    /// How many parts.
    pub count: usize,
}

impl ShardPart {
    /// The one part of an unsharded run.
    pub const WHOLE: ShardPart = ShardPart { index: 0, count: 1 };

    fn check(self) -> Result<()> {
        if self.count == 0 || self.index >= self.count {
            return Err(DataError::InvalidParameter {
                parameter: "part",
                reason: format!("part {} of {} does not exist", self.index, self.count),
            });
        }
        Ok(())
    }
}

/// What [`write_shard`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// The shard directory.
    pub path: PathBuf,
    /// Its part.
    pub part: ShardPart,
    /// Books with chunks.
    pub books: u64,
    /// Chunks (each with a vector and a MinHash signature).
    pub chunks: u64,
    /// Books left out.
    pub skipped: u64,
    /// The sentence encoder's model id.
    pub model_id: String,
    /// Seconds per step (`embed`, `sketch`, `write`).
    pub timings: BTreeMap<String, f64>,
}

/// Texts per encoder call (progress and cancellation granularity).
const EMBED_SLICE: usize = 256;

/// Stage A's heavy half: embeds every chunk of `corpus` with `encoder`, computes its
/// fingerprint and MinHash signature and each book's centroid (the L2-normalized mean of a
/// seeded sample of `mining.num_chunks_for_embed` of its chunks), and writes the shard
/// directory `dir` (staged: it appears complete or not at all):
/// - `chunks.jsonl`, `books.jsonl`, `skipped.jsonl`: the chunks (book id, then index), books
///   (by id) and skipped books;
/// - `arrays.safetensors`: `vectors` f32 `[chunks, dim]`, `signatures` u32
///   `[chunks, num_perm]`, `fingerprints` u8 `[chunks, 16]`, `centroids` f32 `[books, dim]`,
///   rows in the order of the two JSONL files;
/// - `manifest.json`: the stage-A parameters, the encoder's model id and width, `part`, and a
///   checksum of every file.
///
/// # Errors
/// [`DataError::Core`] when `dir` exists, cannot be written, or the run is cancelled;
/// [`DataError::Nn`] from the encoder.
pub fn write_shard(
    corpus: &ChunkedCorpus,
    encoder: &dyn SentenceEncoder,
    config: &PrepareConfig,
    part: ShardPart,
    dir: &Path,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<ShardSummary> {
    config.validate()?;
    part.check()?;
    let mut corpus_sorted;
    let corpus = if is_sorted(corpus) {
        corpus
    } else {
        corpus_sorted = corpus.clone();
        sort_corpus(&mut corpus_sorted);
        &corpus_sorted
    };
    let (_, name) = split_dir(dir)?;
    RunDir::check_new(dir)?;
    let clock = Instant::now();
    let chunks = &corpus.chunks;

    // Vectors.
    events.send(Event::Started {
        run_id: name.clone(),
        kind: "prepare/embed".to_owned(),
        total: Some(chunks.len() as u64),
    })?;
    let dim = encoder.dim();
    let mut vectors = Vec::with_capacity(chunks.len() * dim);
    for (s, slice) in chunks.chunks(EMBED_SLICE).enumerate() {
        cancel.check()?;
        let texts: Vec<&str> = slice.iter().map(|c| c.text.as_str()).collect();
        let e = encoder.encode(&texts, config.encode_batch_size)?;
        for k in 0..slice.len() {
            vectors.extend_from_slice(e.row(k));
        }
        events.send(Event::Progress {
            step: (s * EMBED_SLICE + slice.len()) as u64,
            total: Some(chunks.len() as u64),
            metrics: BTreeMap::new(),
        })?;
    }
    let embed_s = clock.elapsed().as_secs_f64();
    let mut summary = write_shard_with_vectors(
        corpus,
        Vectors {
            data: &vectors,
            dim,
        },
        encoder.model_id(),
        config,
        part,
        dir,
        cancel,
    )?;
    summary.timings.insert("embed".to_owned(), embed_s);
    Ok(summary)
}

/// [`write_shard`] with the chunk vectors computed elsewhere (your own embedding job, on any
/// hardware): `vectors` holds one row per chunk of `corpus` in its order (book id, then
/// index), and `model_id` names the model that made them (the merge refuses shards of
/// different models). Computes the fingerprints, signatures and centroids and writes the
/// shard directory.
///
/// # Errors
/// [`DataError::InvalidParameter`] when the rows do not match the chunks; as [`write_shard`].
pub fn write_shard_with_vectors(
    corpus: &ChunkedCorpus,
    vectors: Vectors<'_>,
    model_id: &str,
    config: &PrepareConfig,
    part: ShardPart,
    dir: &Path,
    cancel: &CancelToken,
) -> Result<ShardSummary> {
    config.validate()?;
    part.check()?;
    let dim = vectors.dim;
    if dim == 0
        || vectors.rows() * dim != vectors.data.len()
        || vectors.rows() != corpus.chunks.len()
    {
        return Err(DataError::InvalidParameter {
            parameter: "vectors",
            reason: format!(
                "{} values of width {dim} for {} chunks",
                vectors.data.len(),
                corpus.chunks.len()
            ),
        });
    }
    if !is_sorted(corpus) {
        return Err(DataError::InvalidParameter {
            parameter: "corpus",
            reason: "books and chunks must be sorted by book id, then index (as chunk_corpus \
                     returns them), the rows of `vectors` in that order"
                .to_owned(),
        });
    }
    let (parent, name) = split_dir(dir)?;
    RunDir::check_new(dir)?;
    let seed = Seed(config.seed);
    let mut timings = BTreeMap::new();
    let mut clock = Instant::now();
    let chunks = &corpus.chunks;
    let vectors = vectors.data;

    // Fingerprints, signatures, centroids.
    cancel.check()?;
    let hasher = MinHasher::new(
        config.dedup.num_perm,
        config.dedup.shingle_words,
        seed.derive("dedup"),
    );
    let sketches: Vec<([u8; 16], Vec<u32>)> = chunks
        .par_iter()
        .map(|c| (fingerprint(&c.text), hasher.signature(&c.text)))
        .collect();
    let mut fingerprints = Vec::with_capacity(chunks.len() * 16);
    let mut signatures = Vec::with_capacity(chunks.len() * config.dedup.num_perm);
    for (f, s) in &sketches {
        fingerprints.extend_from_slice(f);
        signatures.extend_from_slice(s);
    }
    drop(sketches);
    let mut centroids = Vec::with_capacity(corpus.books.len() * dim);
    let mut first = 0;
    for book in &corpus.books {
        let n = chunks[first..]
            .iter()
            .take_while(|c| c.book == book.id)
            .count();
        if n == 0 {
            return Err(DataError::InvalidParameter {
                parameter: "corpus",
                reason: format!("book {} has no chunk", book.id),
            });
        }
        let take = config.mining.num_chunks_for_embed.min(n);
        let mut rng = seed.derive("centroid").rng(&book.id);
        let picked: Vec<usize> = rand::seq::index::sample(&mut rng, n, take)
            .into_iter()
            .map(|j| first + j)
            .collect();
        centroids.extend(centroid(Vectors { data: vectors, dim }, &picked));
        first += n;
    }
    if first != chunks.len() {
        return Err(DataError::InvalidParameter {
            parameter: "corpus",
            reason: format!(
                "{} chunks belong to no book of the corpus",
                chunks.len() - first
            ),
        });
    }
    timings.insert("sketch".to_owned(), clock.elapsed().as_secs_f64());
    clock = Instant::now();

    // Write.
    cancel.check()?;
    let mut run = RunDir::create(&parent, &name, SHARD_KIND, StageMode::Staged)?;
    run.write_artifact("chunks.jsonl", &jsonl(chunks)?)?;
    run.write_artifact("books.jsonl", &jsonl(&corpus.books)?)?;
    run.write_artifact("skipped.jsonl", &jsonl(&corpus.skipped)?)?;
    let n = chunks.len();
    let arrays = arrays::encode(
        &[
            Array {
                name: "vectors",
                dtype: Dtype::F32,
                rows: n,
                width: dim,
                bytes: &f32_bytes(vectors),
            },
            Array {
                name: "signatures",
                dtype: Dtype::U32,
                rows: n,
                width: config.dedup.num_perm,
                bytes: &u32_bytes(&signatures),
            },
            Array {
                name: "fingerprints",
                dtype: Dtype::U8,
                rows: n,
                width: 16,
                bytes: &fingerprints,
            },
            Array {
                name: "centroids",
                dtype: Dtype::F32,
                rows: corpus.books.len(),
                width: dim,
                bytes: &f32_bytes(&centroids),
            },
        ],
        dir,
    )?;
    run.write_artifact(ARRAYS_FILE, &arrays)?;
    timings.insert("write".to_owned(), clock.elapsed().as_secs_f64());
    let m = run.manifest_mut();
    m.config = json!({
        "format": SHARD_FORMAT,
        "stage_a": config.stage_a(),
        "encoder": { "model_id": model_id, "dim": dim },
        "part": part,
    });
    m.seed = Some(config.seed);
    m.metrics = BTreeMap::from([
        ("books".to_owned(), corpus.books.len() as f64),
        ("chunks".to_owned(), n as f64),
        ("skipped".to_owned(), corpus.skipped.len() as f64),
    ]);
    for (k, v) in &timings {
        m.metrics.insert(format!("timing.{k}_s"), *v);
    }
    let path = run.finish(RunStatus::Completed)?;
    Ok(ShardSummary {
        path,
        part,
        books: corpus.books.len() as u64,
        chunks: n as u64,
        skipped: corpus.skipped.len() as u64,
        model_id: model_id.to_owned(),
        timings,
    })
}

fn is_sorted(c: &ChunkedCorpus) -> bool {
    c.books.is_sorted_by(|a, b| a.id < b.id)
        && c.chunks
            .is_sorted_by(|a, b| (a.book.as_str(), a.index) < (b.book.as_str(), b.index))
}

/// A shard as the merge reads it: verified, its books and skipped books in memory (a row
/// each), its arrays read a row at a time.
#[derive(Debug)]
pub(crate) struct OpenShard {
    /// The shard directory.
    pub path: PathBuf,
    /// Its part.
    pub part: ShardPart,
    /// The encoder's model id and width.
    pub model_id: String,
    pub dim: usize,
    /// Books, by id.
    pub books: Vec<BookRecord>,
    /// Row of each book's first chunk.
    pub first_row: Vec<u64>,
    /// Skipped books.
    pub skipped: Vec<Skipped>,
    /// Chunk rows.
    pub chunks: u64,
    /// The arrays.
    pub arrays: ArrayFile,
    /// `chunks.jsonl`, for positioned reads.
    chunks_file: File,
}

impl OpenShard {
    /// Verifies shard `dir` (every checksum, kind, format, the stage-A parameters of `config`)
    /// and opens it.
    ///
    /// # Errors
    /// [`DataError::ShardUnreadable`] for a missing, damaged or foreign directory;
    /// [`DataError::ShardParameters`] for other stage-A parameters.
    pub fn open(dir: &Path, config: &PrepareConfig) -> Result<Self> {
        let unreadable = |source: DataError| DataError::ShardUnreadable {
            shard: dir.to_path_buf(),
            source: Box::new(source),
        };
        let not_shard = |reason: String| {
            unreadable(DataError::Shard {
                path: dir.to_path_buf(),
                reason,
            })
        };
        let manifest = verify_run_dir(dir).map_err(|e| unreadable(e.into()))?;
        if manifest.kind != SHARD_KIND {
            return Err(not_shard(format!(
                "a {:?} directory, not a data shard",
                manifest.kind
            )));
        }
        if manifest.status != RunStatus::Completed {
            return Err(not_shard(format!("status {:?}", manifest.status)));
        }
        let c = &manifest.config;
        if c.get("format") != Some(&json!(SHARD_FORMAT)) {
            return Err(not_shard(format!(
                "shard format {}, this build reads {SHARD_FORMAT}: run stage A (prepare shard) \
                 again with this build",
                c.get("format").cloned().unwrap_or_default()
            )));
        }
        let theirs = c.get("stage_a").cloned().unwrap_or_default();
        if theirs != config.stage_a() {
            return Err(DataError::ShardParameters {
                shard: dir.to_path_buf(),
                theirs: theirs.to_string(),
                ours: config.stage_a().to_string(),
            });
        }
        let model_id = c["encoder"]["model_id"].as_str();
        let dim = c["encoder"]["dim"].as_u64();
        let part: Option<ShardPart> = serde_json::from_value(c["part"].clone()).ok();
        let (Some(model_id), Some(dim), Some(part)) = (model_id, dim, part) else {
            return Err(not_shard(
                "the manifest names no encoder or part".to_owned(),
            ));
        };
        let books: Vec<BookRecord> = read_jsonl(&dir.join("books.jsonl")).map_err(unreadable)?;
        let skipped: Vec<Skipped> = read_jsonl(&dir.join("skipped.jsonl")).map_err(unreadable)?;
        if !books.is_sorted_by(|a, b| a.id < b.id) {
            return Err(not_shard("books.jsonl is not sorted by id".to_owned()));
        }
        let mut first_row = Vec::with_capacity(books.len());
        let mut rows = 0u64;
        for b in &books {
            first_row.push(rows);
            rows += b.chunks.kept;
        }
        let chunks_path = dir.join("chunks.jsonl");
        let chunks_file = File::open(&chunks_path)
            .map_err(|e| unreadable(CoreError::io("open", &chunks_path, e).into()))?;
        let num_perm = config.dedup.num_perm as u64;
        let arrays = ArrayFile::open(
            &dir.join(ARRAYS_FILE),
            &[
                ("vectors", Dtype::F32, rows, dim),
                ("signatures", Dtype::U32, rows, num_perm),
                ("fingerprints", Dtype::U8, rows, 16),
                ("centroids", Dtype::F32, books.len() as u64, dim),
            ],
        )
        .map_err(unreadable)?;
        Ok(OpenShard {
            path: dir.to_path_buf(),
            part,
            model_id: model_id.to_owned(),
            dim: dim as usize,
            books,
            first_row,
            skipped,
            chunks: rows,
            arrays,
            chunks_file,
        })
    }

    /// A front-to-back reader of the chunk rows (`chunks.jsonl`).
    pub fn chunk_rows(&self) -> Result<ChunkLines> {
        let path = self.path.join("chunks.jsonl");
        let f = File::open(&path).map_err(|e| CoreError::io("open", &path, e))?;
        Ok(ChunkLines {
            path,
            inner: BufReader::with_capacity(1 << 16, f),
            line: String::new(),
            number: 0,
            offset: 0,
        })
    }

    /// The chunk whose `chunks.jsonl` line starts at byte `offset` and is `len` bytes long
    /// (a positioned read).
    pub fn chunk_at(&self, offset: u64, len: u32) -> Result<Chunk> {
        let mut buf = vec![0u8; len as usize];
        self.chunks_file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| CoreError::io("read", self.path.join("chunks.jsonl"), e))?;
        serde_json::from_slice(&buf).map_err(|e| {
            DataError::Core(CoreError::CorpusRecord {
                path: self.path.join("chunks.jsonl"),
                line: 0,
                reason: format!("the chunk at byte {offset}: {e}"),
            })
        })
    }
}

/// The chunks of a shard's `chunks.jsonl`, in order.
#[derive(Debug)]
pub(crate) struct ChunkLines {
    path: PathBuf,
    inner: BufReader<File>,
    line: String,
    number: u64,
    /// Byte offset of the next line.
    offset: u64,
}

impl ChunkLines {
    /// The next chunk, with the byte offset and length of its line (for
    /// [`OpenShard::chunk_at`]).
    ///
    /// # Errors
    /// I/O errors; [`CoreError::CorpusRecord`] for a line that is not a chunk or a file that
    /// ends early.
    pub fn next_chunk(&mut self) -> Result<(Chunk, u64, u32)> {
        self.line.clear();
        self.number += 1;
        let n = self
            .inner
            .read_line(&mut self.line)
            .map_err(|e| CoreError::io("read", &self.path, e))?;
        let record = |reason: String| {
            DataError::Core(CoreError::CorpusRecord {
                path: self.path.clone(),
                line: self.number,
                reason,
            })
        };
        if n == 0 {
            return Err(record("the file ends before its last chunk".to_owned()));
        }
        let at = self.offset;
        self.offset += n as u64;
        let chunk = serde_json::from_str(&self.line).map_err(|e| record(e.to_string()))?;
        Ok((chunk, at, self.line.trim_end().len() as u32))
    }
}

/// What a shard directory holds, verified ([`read_shard`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// The shard directory.
    pub path: PathBuf,
    /// Its part.
    pub part: ShardPart,
    /// The encoder's model id.
    pub model_id: String,
    /// The vectors' width.
    pub dim: usize,
    /// Books with chunks.
    pub books: u64,
    /// Chunks.
    pub chunks: u64,
    /// Books left out.
    pub skipped: u64,
}

/// Verifies shard `dir` as the merge would (every checksum, the layout, the stage-A
/// parameters of `config`) and says what it holds.
///
/// # Errors
/// As the merge: [`DataError::ShardUnreadable`], [`DataError::ShardParameters`].
pub fn read_shard(dir: &Path, config: &PrepareConfig) -> Result<ShardInfo> {
    let s = OpenShard::open(dir, config)?;
    Ok(ShardInfo {
        path: s.path,
        part: s.part,
        model_id: s.model_id,
        dim: s.dim,
        books: s.books.len() as u64,
        chunks: s.chunks,
        skipped: s.skipped.len() as u64,
    })
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
