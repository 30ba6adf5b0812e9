//! Deduplication for the merge, in memory bounded by a partition, not by the chunk count.
//!
//! The chunks are numbered `0..n` in the pipeline's order (book id, then index) and read
//! through [`ChunkTable`] (the merge's shards, or a table in memory). Exact repeats: every
//! chunk's fingerprint goes to one of `P` spill files by hash; each file is sorted on its own
//! and its groups decided as [`dedup`](crate::dedup) decides them. Near duplicates: every
//! surviving chunk's LSH band keys go to spill files the same way; each bucket gives candidate
//! edges `later → earlier` between chunks of different books (at most
//! [`CANDIDATES_PER_BUCKET`] earlier chunks per chunk and bucket), candidates are checked
//! against the Jaccard threshold, and a chunk is removed when a verified earlier chunk was
//! kept: the greedy, in-order rule of [`dedup`](crate::dedup), which gives the same result
//! whenever no bucket holds more than that many chunks of other books.
//!
//! Memory: one spill partition (`part_records` records of 16 or 24 bytes, up to 512 files)
//! plus the removed chunks and candidate edges, which grow with the duplicates, not with the
//! corpus.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use lexforge_core::Error as CoreError;

use crate::dedup::{DedupConfig, DedupReport, band_key, jaccard, optimal_lsh_params};
use crate::error::Result;

/// Most earlier chunks (of other books) one chunk is checked against per LSH bucket.
pub(crate) const CANDIDATES_PER_BUCKET: usize = 16;

/// Spill records per partition (the merge's working set for dedup).
pub(crate) const PART_RECORDS: usize = 1 << 18;

/// The chunks as dedup reads them, numbered `0..chunks()` in pipeline order.
pub(crate) trait ChunkTable {
    /// Number of chunks.
    fn chunks(&self) -> u64;
    /// The book (an ordinal) of chunk `g`.
    fn book_of(&self, g: u64) -> u32;
    /// Calls `f(g, fingerprint)` for every chunk, in any order.
    fn visit_fingerprints(&self, f: &mut dyn FnMut(u64, &[u8; 16]) -> Result<()>) -> Result<()>;
    /// Calls `f(g, signature)` for every chunk, in any order.
    fn visit_signatures(&self, f: &mut dyn FnMut(u64, &[u32]) -> Result<()>) -> Result<()>;
    /// Chunk `g`'s MinHash signature into `out`.
    fn signature(&self, g: u64, out: &mut [u32]) -> Result<()>;
}

/// Why a chunk was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemovalKind {
    Exact,
    ExactInBook,
    Near,
}

impl RemovalKind {
    pub fn name(self) -> &'static str {
        match self {
            RemovalKind::Exact => "exact",
            RemovalKind::ExactInBook => "exact_in_book",
            RemovalKind::Near => "near",
        }
    }
}

/// A removed chunk and the chunk it repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Removed {
    pub g: u64,
    pub kind: RemovalKind,
    pub of: u64,
    pub jaccard: Option<f64>,
}

/// Removed chunks (sorted by number) and the counts (`examples` left empty).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DedupOutcome {
    pub removed: Vec<Removed>,
    pub report: DedupReport,
}

impl DedupOutcome {
    /// Whether chunk `g` was removed.
    #[cfg(test)]
    pub fn is_removed(&self, g: u64) -> bool {
        self.removed.binary_search_by_key(&g, |r| r.g).is_ok()
    }
}

/// Fixed-size records spread over `parts` files in `dir` by a key.
struct Spill<const N: usize> {
    paths: Vec<PathBuf>,
    writers: Vec<BufWriter<File>>,
}

impl<const N: usize> Spill<N> {
    fn new(dir: &Path, stem: &str, parts: usize) -> Result<Self> {
        let mut paths = Vec::with_capacity(parts);
        let mut writers = Vec::with_capacity(parts);
        for p in 0..parts {
            let path = dir.join(format!("{stem}-{p}.bin"));
            let f = File::create(&path).map_err(|e| CoreError::io("create", &path, e))?;
            writers.push(BufWriter::with_capacity(8 << 10, f));
            paths.push(path);
        }
        Ok(Spill { paths, writers })
    }

    fn push(&mut self, key: u64, record: &[u8; N]) -> Result<()> {
        let p = (key % self.writers.len() as u64) as usize;
        self.writers[p]
            .write_all(record)
            .map_err(|e| CoreError::io("write", &self.paths[p], e).into())
    }

    /// Each partition's records, sorted, handed to `f` in turn (files removed after).
    fn drain(self, mut f: impl FnMut(&mut [[u8; N]]) -> Result<()>) -> Result<()> {
        let mut buf: Vec<[u8; N]> = Vec::new();
        for (w, path) in self.writers.into_iter().zip(&self.paths) {
            let file = w
                .into_inner()
                .map_err(|e| CoreError::io("write", path, e.into_error()))?;
            drop(file);
            let mut r = BufReader::with_capacity(
                8 << 10,
                File::open(path).map_err(|e| CoreError::io("open", path, e))?,
            );
            buf.clear();
            let mut rec = [0u8; N];
            loop {
                match r.read_exact(&mut rec) {
                    Ok(()) => buf.push(rec),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(CoreError::io("read", path, e).into()),
                }
            }
            std::fs::remove_file(path).map_err(|e| CoreError::io("remove", path, e))?;
            buf.sort_unstable();
            f(&mut buf)?;
        }
        Ok(())
    }
}

/// The big-endian u64 of the first 8 bytes of `g`.
fn be(g: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&g[..8]);
    u64::from_be_bytes(a)
}

/// Most spill files open at once (well under the usual limit of 1,024 descriptors); past
/// `MAX_PARTS × part_records` records the partitions grow instead.
const MAX_PARTS: u64 = 512;

fn parts_for(records: u64, part_records: usize) -> usize {
    records
        .div_ceil(part_records.max(1) as u64)
        .clamp(1, MAX_PARTS) as usize
}

/// Removes exact and near duplicates of `table` (see the module docs), spilling to `scratch`.
pub(crate) fn dedup_table(
    table: &dyn ChunkTable,
    config: &DedupConfig,
    scratch: &Path,
    part_records: usize,
) -> Result<DedupOutcome> {
    config.validate()?;
    let n = table.chunks();
    let mut report = DedupReport {
        input: n,
        ..DedupReport::default()
    };
    let mut exact: Vec<Removed> = Vec::new();
    if config.exact {
        let mut spill = Spill::<24>::new(scratch, "exact", parts_for(n, part_records))?;
        table.visit_fingerprints(&mut |g, fp| {
            let mut rec = [0u8; 24];
            rec[..16].copy_from_slice(fp);
            rec[16..].copy_from_slice(&g.to_be_bytes());
            spill.push(be(&fp[..8]), &rec)
        })?;
        let mut books: Vec<u32> = Vec::new();
        spill.drain(|recs| {
            for group in recs.chunk_by(|a, b| a[..16] == b[..16]) {
                if group.len() < 2 {
                    continue;
                }
                let first = be(&group[0][16..]);
                books.clear();
                books.extend(group.iter().map(|r| table.book_of(be(&r[16..]))));
                books.sort_unstable();
                books.dedup();
                if books.len() >= config.exact_min_books {
                    report.exact_groups += 1;
                    for r in group {
                        exact.push(Removed {
                            g: be(&r[16..]),
                            kind: RemovalKind::Exact,
                            of: first,
                            jaccard: None,
                        });
                    }
                } else {
                    for r in &group[1..] {
                        exact.push(Removed {
                            g: be(&r[16..]),
                            kind: RemovalKind::ExactInBook,
                            of: first,
                            jaccard: None,
                        });
                    }
                }
            }
            Ok(())
        })?;
        exact.sort_unstable_by_key(|r| r.g);
        report.exact_removed = exact
            .iter()
            .filter(|r| r.kind == RemovalKind::Exact)
            .count() as u64;
        report.exact_in_book_removed = exact.len() as u64 - report.exact_removed;
    }
    let exact_gone = |g: u64| exact.binary_search_by_key(&g, |r| r.g).is_ok();

    let mut near: Vec<Removed> = Vec::new();
    if config.near {
        let (bands, rows) = optimal_lsh_params(config.jaccard_threshold, config.num_perm);
        report.lsh_bands = bands;
        report.lsh_rows = rows;
        let alive = n - exact.len() as u64;
        let mut spill = Spill::<16>::new(
            scratch,
            "lsh",
            parts_for(alive * bands as u64, part_records),
        )?;
        table.visit_signatures(&mut |g, sig| {
            if exact_gone(g) {
                return Ok(());
            }
            for b in 0..bands {
                let key =
                    band_key(sig, rows, b) ^ (b as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut rec = [0u8; 16];
                rec[..8].copy_from_slice(&key.to_be_bytes());
                rec[8..].copy_from_slice(&g.to_be_bytes());
                spill.push(key, &rec)?;
            }
            Ok(())
        })?;
        let mut edges: Vec<(u64, u64)> = Vec::new();
        spill.drain(|recs| {
            for group in recs.chunk_by(|a, b| a[..8] == b[..8]) {
                for (k, rj) in group.iter().enumerate().skip(1) {
                    let j = be(&rj[8..]);
                    let bj = table.book_of(j);
                    let mut taken = 0;
                    for ri in &group[..k] {
                        let i = be(&ri[8..]);
                        if table.book_of(i) != bj {
                            edges.push((j, i));
                            taken += 1;
                            if taken == CANDIDATES_PER_BUCKET {
                                break;
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
        edges.sort_unstable();
        edges.dedup();
        let mut sig_j = vec![0u32; config.num_perm];
        let mut sig_i = vec![0u32; config.num_perm];
        let mut loaded = None;
        for by_j in edges.chunk_by(|a, b| a.0 == b.0) {
            let j = by_j[0].0;
            for &(_, i) in by_j {
                if exact_gone(i) || near.binary_search_by_key(&i, |r| r.g).is_ok() {
                    continue;
                }
                if loaded != Some(j) {
                    table.signature(j, &mut sig_j)?;
                    loaded = Some(j);
                }
                table.signature(i, &mut sig_i)?;
                let jac = jaccard(&sig_j, &sig_i);
                if jac >= config.jaccard_threshold {
                    near.push(Removed {
                        g: j,
                        kind: RemovalKind::Near,
                        of: i,
                        jaccard: Some(jac),
                    });
                    break;
                }
            }
        }
        report.near_removed = near.len() as u64;
    }
    let mut removed = exact;
    removed.extend(near);
    removed.sort_unstable_by_key(|r| r.g);
    report.output = n - removed.len() as u64;
    Ok(DedupOutcome { removed, report })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Chunk;
    use crate::dedup::{MinHasher, dedup, fingerprint};
    use lexforge_core::Seed;

    struct Mem {
        chunks: Vec<Chunk>,
        books: Vec<u32>,
        sigs: Vec<Vec<u32>>,
    }

    impl Mem {
        fn new(chunks: Vec<Chunk>, config: &DedupConfig, seed: Seed) -> Self {
            let hasher = MinHasher::new(config.num_perm, config.shingle_words, seed);
            let mut ids: Vec<&str> = chunks.iter().map(|c| c.book.as_str()).collect();
            ids.dedup();
            let books = chunks
                .iter()
                .map(|c| ids.iter().position(|b| *b == c.book).unwrap() as u32)
                .collect();
            let sigs = chunks.iter().map(|c| hasher.signature(&c.text)).collect();
            Mem {
                chunks,
                books,
                sigs,
            }
        }
    }

    impl ChunkTable for Mem {
        fn chunks(&self) -> u64 {
            self.chunks.len() as u64
        }
        fn book_of(&self, g: u64) -> u32 {
            self.books[g as usize]
        }
        fn visit_fingerprints(
            &self,
            f: &mut dyn FnMut(u64, &[u8; 16]) -> Result<()>,
        ) -> Result<()> {
            // Backwards: the order of visits must not matter.
            for (g, c) in self.chunks.iter().enumerate().rev() {
                f(g as u64, &fingerprint(&c.text))?;
            }
            Ok(())
        }
        fn visit_signatures(&self, f: &mut dyn FnMut(u64, &[u32]) -> Result<()>) -> Result<()> {
            for (g, s) in self.sigs.iter().enumerate().rev() {
                f(g as u64, s)?;
            }
            Ok(())
        }
        fn signature(&self, g: u64, out: &mut [u32]) -> Result<()> {
            out.copy_from_slice(&self.sigs[g as usize]);
            Ok(())
        }
    }

    fn chunk(book: &str, index: u32, text: String) -> Chunk {
        Chunk {
            book: book.to_owned(),
            index,
            start: 0,
            end: text.chars().count(),
            text,
        }
    }

    /// Books of varied sentences with planted exact repeats (across and inside books) and near
    /// copies (one word changed).
    fn library() -> Vec<Chunk> {
        let words = [
            "harbour", "lantern", "quietly", "meadow", "crimson", "letters", "winter", "bridge",
            "silver", "market", "captain", "orchard", "thunder", "garden", "candle", "voyage",
        ];
        let text = |s: usize| -> String {
            (0..24u64)
                .map(|w| {
                    let mut x = (s as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (w + 1);
                    x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    words[((x ^ (x >> 32)) % words.len() as u64) as usize]
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut out = Vec::new();
        for b in 0..6 {
            let book = format!("author{}/book{b}", b % 3);
            for i in 0..30u32 {
                let s = b * 1000 + i as usize;
                let t = match (b, i) {
                    // Exact repeats of book 0's chunk 7, an in-book repeat, near copies (one
                    // word added) of book 0's chunk 12 and of book 3's chunk 2.
                    (1, 3) | (4, 9) => text(7),
                    (2, 5) => text(2001),
                    (3, 4) => text(12) + " indeed",
                    (5, 8) => text(3002) + " indeed",
                    _ => text(s),
                };
                out.push(chunk(&book, i, t));
            }
        }
        out
    }

    #[test]
    fn spilled_dedup_equals_in_memory_dedup_for_any_partition_count() {
        let config = DedupConfig {
            jaccard_threshold: 0.7,
            ..DedupConfig::default()
        };
        let seed = Seed(3);
        let chunks = library();
        let (kept, report) = dedup(chunks.clone(), &config, seed).unwrap();
        assert!(report.exact_removed >= 3 && report.exact_in_book_removed >= 1);
        assert!(report.near_removed >= 1, "{report:?}");
        let table = Mem::new(chunks.clone(), &config, seed);
        let dir = tempfile::tempdir().unwrap();
        for part in [16, 100, 1 << 18] {
            let out = dedup_table(&table, &config, dir.path(), part).unwrap();
            let left: Vec<&Chunk> = (0..chunks.len())
                .filter(|&g| !out.is_removed(g as u64))
                .map(|g| &chunks[g])
                .collect();
            assert_eq!(left.len(), kept.len(), "{part} records per partition");
            assert!(left.iter().zip(&kept).all(|(a, b)| *a == b));
            let mut expect = report.clone();
            expect.examples.clear();
            assert_eq!(out.report, expect);
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }
}
