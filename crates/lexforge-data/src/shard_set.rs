//! The shards of one merge, checked to belong together, with one table of their books in
//! pipeline order (by id) and chunk numbers `0..n` over it (book after book, each book's
//! chunks by index): what dedup ([`ChunkTable`]) and the merge's streaming pass read.
//!
//! Memory: a row per book (its record, shard and first chunk number); chunk data stays on
//! disk and is read a row at a time or front to back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::arrays::{RowReader, decode_u32};
use crate::chunk::Chunk;
use crate::config::PrepareConfig;
use crate::error::{DataError, Result};
use crate::shard::{BookRecord, ChunkLines, OpenShard};
use crate::spill_dedup::ChunkTable;

/// A book of the merge: its shard and position there.
#[derive(Debug, Clone, Copy)]
struct BookRef {
    shard: u32,
    local: u32,
}

/// Verified shards and their books in pipeline order.
#[derive(Debug)]
pub(crate) struct ShardSet {
    pub shards: Vec<OpenShard>,
    books: Vec<BookRef>,
    /// First chunk number of each book; one more entry holding the total.
    first: Vec<u64>,
    /// Per shard, the book number of each of its books.
    global: Vec<Vec<u32>>,
}

impl ShardSet {
    /// Opens and checks `paths` (see [`merge_shards`](crate::merge_shards) for the checks).
    pub fn open(paths: &[PathBuf], config: &PrepareConfig) -> Result<Self> {
        if paths.is_empty() {
            return Err(DataError::InvalidParameter {
                parameter: "shards",
                reason: "give at least one shard directory".to_owned(),
            });
        }
        let shards = paths
            .iter()
            .map(|p| OpenShard::open(p, config))
            .collect::<Result<Vec<_>>>()?;
        let head = &shards[0];
        let mut parts: BTreeMap<usize, &Path> = BTreeMap::new();
        for s in &shards {
            if (s.model_id.as_str(), s.dim) != (head.model_id.as_str(), head.dim) {
                return Err(DataError::ShardMismatch {
                    shard: s.path.clone(),
                    other: head.path.clone(),
                    what: "encoder",
                    theirs: format!("{} ({} dims)", s.model_id, s.dim),
                    ours: format!("{} ({} dims)", head.model_id, head.dim),
                });
            }
            if s.part.count != head.part.count {
                return Err(DataError::ShardMismatch {
                    shard: s.path.clone(),
                    other: head.path.clone(),
                    what: "shard count",
                    theirs: s.part.count.to_string(),
                    ours: head.part.count.to_string(),
                });
            }
            if let Some(other) = parts.insert(s.part.index, &s.path) {
                return Err(DataError::ShardTwice {
                    shard: s.path.clone(),
                    other: other.to_path_buf(),
                    index: s.part.index,
                    count: s.part.count,
                });
            }
        }
        let missing: Vec<usize> = (0..head.part.count)
            .filter(|i| !parts.contains_key(i))
            .collect();
        if !missing.is_empty() {
            return Err(DataError::ShardMissing {
                count: head.part.count,
                missing,
            });
        }
        let mut books: Vec<BookRef> = shards
            .iter()
            .enumerate()
            .flat_map(|(s, sh)| {
                (0..sh.books.len()).map(move |l| BookRef {
                    shard: s as u32,
                    local: l as u32,
                })
            })
            .collect();
        let id = |b: &BookRef| shards[b.shard as usize].books[b.local as usize].id.as_str();
        books.sort_by(|a, b| id(a).cmp(id(b)).then(a.shard.cmp(&b.shard)));
        if let Some(w) = books.windows(2).find(|w| id(&w[0]) == id(&w[1])) {
            return Err(DataError::ShardOverlap {
                shard: shards[w[1].shard as usize].path.clone(),
                other: shards[w[0].shard as usize].path.clone(),
                book: id(&w[0]).to_owned(),
            });
        }
        let mut first = Vec::with_capacity(books.len() + 1);
        let mut global: Vec<Vec<u32>> = shards.iter().map(|s| vec![0; s.books.len()]).collect();
        let mut total = 0u64;
        for (g, b) in books.iter().enumerate() {
            first.push(total);
            total += shards[b.shard as usize].books[b.local as usize].chunks.kept;
            global[b.shard as usize][b.local as usize] = g as u32;
        }
        first.push(total);
        Ok(ShardSet {
            shards,
            books,
            first,
            global,
        })
    }

    /// Number of books.
    pub fn books(&self) -> usize {
        self.books.len()
    }

    /// Book `b`'s record.
    pub fn record(&self, b: usize) -> &BookRecord {
        let r = self.books[b];
        &self.shards[r.shard as usize].books[r.local as usize]
    }

    /// Book `b`'s chunk numbers.
    pub fn chunk_range(&self, b: usize) -> std::ops::Range<u64> {
        self.first[b]..self.first[b + 1]
    }

    /// The encoder's width.
    pub fn dim(&self) -> usize {
        self.shards[0].dim
    }

    /// The encoder's model id.
    pub fn model_id(&self) -> &str {
        &self.shards[0].model_id
    }

    /// The shard and row of chunk `g`.
    fn locate(&self, g: u64) -> (&OpenShard, u64) {
        let b = self.book_of(g) as usize;
        let r = self.books[b];
        let s = &self.shards[r.shard as usize];
        (s, s.first_row[r.local as usize] + (g - self.first[b]))
    }

    /// Chunk `g`'s vector into `out`.
    pub fn vector(&self, g: u64, out: &mut [f32]) -> Result<()> {
        let (s, row) = self.locate(g);
        s.arrays.read_f32("vectors", row, out)
    }

    /// Book `b`'s centroid into `out`.
    pub fn centroid(&self, b: usize, out: &mut [f32]) -> Result<()> {
        let r = self.books[b];
        self.shards[r.shard as usize]
            .arrays
            .read_f32("centroids", u64::from(r.local), out)
    }

    /// Calls `f(g, row bytes)` for every chunk of array `name`, shard by shard.
    fn visit(&self, name: &str, f: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        for (s, shard) in self.shards.iter().enumerate() {
            let mut rows = shard.arrays.rows(name)?;
            for &b in &self.global[s] {
                for g in self.chunk_range(b as usize) {
                    let bytes = rows.next_row()?.ok_or_else(|| truncated(&shard.path))?;
                    f(g, bytes)?;
                }
            }
        }
        Ok(())
    }

    /// The chunk on line `(offset, len)` of shard `shard`'s `chunks.jsonl`.
    pub fn chunk_at(&self, shard: u32, line: (u64, u32)) -> Result<Chunk> {
        self.shards[shard as usize].chunk_at(line.0, line.1)
    }

    /// A reader of every chunk in pipeline order, with its vector.
    pub fn stream(&self) -> Result<ChunkStream<'_>> {
        let cursors = self
            .shards
            .iter()
            .map(|s| Ok((s.chunk_rows()?, s.arrays.rows("vectors")?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(ChunkStream {
            set: self,
            cursors,
            book: 0,
            next: 0,
        })
    }
}

fn truncated(path: &Path) -> DataError {
    DataError::Shard {
        path: path.to_path_buf(),
        reason: "its arrays end before its last chunk".to_owned(),
    }
}

impl ChunkTable for ShardSet {
    fn chunks(&self) -> u64 {
        self.first[self.books.len()]
    }

    fn book_of(&self, g: u64) -> u32 {
        (self.first.partition_point(|&f| f <= g) - 1) as u32
    }

    fn visit_fingerprints(&self, f: &mut dyn FnMut(u64, &[u8; 16]) -> Result<()>) -> Result<()> {
        let mut fp = [0u8; 16];
        self.visit("fingerprints", &mut |g, b| {
            fp.copy_from_slice(b);
            f(g, &fp)
        })
    }

    fn visit_signatures(&self, f: &mut dyn FnMut(u64, &[u32]) -> Result<()>) -> Result<()> {
        let mut sig = Vec::new();
        self.visit("signatures", &mut |g, b| {
            sig.resize(b.len() / 4, 0);
            decode_u32(b, &mut sig);
            f(g, &sig)
        })
    }

    fn signature(&self, g: u64, out: &mut [u32]) -> Result<()> {
        let (s, row) = self.locate(g);
        s.arrays.read_u32("signatures", row, out)
    }
}

/// One chunk of [`ChunkStream`].
#[derive(Debug)]
pub(crate) struct StreamedChunk<'a> {
    /// Its number.
    pub g: u64,
    /// Its book's number.
    pub book: usize,
    /// The chunk.
    pub chunk: Chunk,
    /// Its shard, and its line there (byte offset, length): see [`ShardSet::chunk_at`].
    pub shard: u32,
    pub line: (u64, u32),
    /// Its vector, little-endian f32 bytes.
    pub vector: &'a [u8],
}

/// Every chunk in pipeline order: each shard is read front to back, once.
#[derive(Debug)]
pub(crate) struct ChunkStream<'a> {
    set: &'a ShardSet,
    cursors: Vec<(ChunkLines, RowReader)>,
    book: usize,
    next: u64,
}

impl ChunkStream<'_> {
    /// The next chunk, or `None` after the last.
    ///
    /// # Errors
    /// I/O errors; [`DataError::Shard`] when a shard's rows do not match its books.
    pub fn next_chunk(&mut self) -> Result<Option<StreamedChunk<'_>>> {
        let set = self.set;
        while self.book < set.books.len() && self.next == set.first[self.book + 1] {
            self.book += 1;
        }
        if self.book == set.books.len() {
            return Ok(None);
        }
        let g = self.next;
        self.next += 1;
        let r = set.books[self.book];
        let shard = &set.shards[r.shard as usize];
        let (lines, vectors) = &mut self.cursors[r.shard as usize];
        let (chunk, offset, len) = lines.next_chunk()?;
        let id = &shard.books[r.local as usize].id;
        if &chunk.book != id {
            return Err(DataError::Shard {
                path: shard.path.clone(),
                reason: format!(
                    "chunks.jsonl has a chunk of {:?} where {id:?}'s chunks belong",
                    chunk.book
                ),
            });
        }
        let v = vectors.next_row()?.ok_or_else(|| truncated(&shard.path))?;
        Ok(Some(StreamedChunk {
            g,
            book: self.book,
            chunk,
            shard: r.shard,
            line: (offset, len),
            vector: v,
        }))
    }
}
