//! Stage B: shards → a dataset directory, without the encoder and in memory that grows with
//! the books, not with the chunks.
//!
//! 1. Open and check the shards ([`ShardSet`]).
//! 2. Dedup over their fingerprints and signatures, spilled to disk ([`dedup_table`]).
//! 3. Split the books that kept two chunks.
//! 4. Topics: k-means on at most `topics.fit_sample` chunk vectors (a seeded sample, read a
//!    row at a time); every chunk goes to its nearest cluster.
//! 5. Neighbours: blocked top-K over the books' centroids, per split.
//! 6. Pairs planned as `(book, chunk)` positions, then one front-to-back pass over the shards
//!    writes `chunks.jsonl` and picks up the texts the pairs need.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::json;

use lexforge_core::{
    CancelToken, Error as CoreError, Event, EventSink, RunDir, RunStatus, Seed, StageMode,
};

use crate::arrays::decode_f32;
use crate::chunk::ChunkReport;
use crate::config::{PairFormat, PrepareConfig};
use crate::dedup::{DedupReport, Removal};
use crate::error::{DataError, Result};
use crate::mining::{Vectors, top_k_self};
use crate::pair_parquet::encode_pairs;
use crate::pairs::{Pair, PairBook, PairCounts, PairRef, Split, pair, plan_pairs, split_books};
use crate::shard::{DATASET_FORMAT, DATASET_KIND, Skipped, jsonl, split_dir};
use crate::shard_set::ShardSet;
use crate::spill_dedup::{ChunkTable, PART_RECORDS, Removed, dedup_table};
use crate::topics::{kmeans, nearest};

/// Counts of a finished dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareSummary {
    /// The dataset directory.
    pub path: PathBuf,
    /// Books used, per split.
    pub books: BTreeMap<String, u64>,
    /// Pairs per split and kind.
    pub pairs: BTreeMap<String, PairCounts>,
    /// Chunks used.
    pub chunks: u64,
    /// What dedup removed.
    pub dedup: DedupReport,
    /// Books left out.
    pub skipped: Vec<Skipped>,
    /// Seconds per stage.
    pub timings: BTreeMap<String, f64>,
}

/// Removals listed in the report.
const MAX_EXAMPLES: usize = 50;

/// Chunks between progress events of the writing pass.
const PROGRESS_EVERY: u64 = 4096;

#[derive(Serialize)]
struct ChunkRow<'a> {
    book: &'a str,
    index: u32,
    start: usize,
    end: usize,
    split: Split,
    topic: u32,
    text: &'a str,
}

#[derive(Serialize)]
struct NeighbourRow<'a> {
    book: &'a str,
    score: f32,
}

#[derive(Serialize)]
struct BookRow<'a> {
    id: &'a str,
    author: Option<&'a str>,
    split: Split,
    chunks: usize,
    metadata: &'a BTreeMap<String, String>,
    neighbours: Vec<NeighbourRow<'a>>,
}

/// A hidden scratch directory `parent/.{name}.{purpose}-{pid}`, created empty and removed
/// (with everything in it) when dropped, whether the job finished or failed.
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(parent: &Path, name: &str, purpose: &str) -> Result<Self> {
        let path = parent.join(format!(".{name}.{purpose}-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| CoreError::io("remove", &path, e))?;
        }
        std::fs::create_dir_all(&path).map_err(|e| CoreError::io("create directory", &path, e))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A chunk a pair (or the report) shows, and where its line is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    g: u64,
    book: usize,
    shard: u32,
    line: (u64, u32),
    index: u32,
    topic: u32,
}

impl Slot {
    fn new(g: u64, book: usize) -> Self {
        Slot {
            g,
            book,
            shard: 0,
            line: (0, 0),
            index: 0,
            topic: 0,
        }
    }
}

/// Writes artifact `rel` through `fill`, streaming; an error of `fill` comes back as is.
fn write_streamed(
    run: &mut RunDir,
    rel: &str,
    fill: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mut failure: Option<DataError> = None;
    run.write_artifact_with(rel, |file| {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
        if let Err(e) = fill(&mut w) {
            failure = Some(e);
            return Err(std::io::Error::other("the rows could not be made"));
        }
        w.flush()
    })
    .map_err(|e| failure.take().unwrap_or_else(|| e.into()))?;
    Ok(())
}

/// Chunk number of the `pos`-th kept chunk of a book whose chunks are `range`, given the
/// sorted numbers of the removed chunks.
fn kept_chunk(removed: &[u64], range: std::ops::Range<u64>, pos: usize) -> u64 {
    let lo = removed.partition_point(|&r| r < range.start);
    let hi = removed.partition_point(|&r| r < range.end);
    let mut g = range.start + pos as u64;
    for &r in &removed[lo..hi] {
        if r <= g {
            g += 1;
        } else {
            break;
        }
    }
    g
}

/// Stage B: merges shard directories written by [`write_shard`](crate::write_shard) into the
/// dataset directory `out` (the layout of [`prepare`](crate::prepare)). The encoder is never
/// loaded: the shards carry the vectors. `device` runs the neighbour search.
///
/// The shards must be the complete set of one stage A: every one verified (checksums, layout),
/// made with `config`'s stage-A parameters and the same encoder, parts `0..count` each once,
/// and no book in two shards. The data files are byte-identical to a one-process
/// [`prepare`](crate::prepare) with the same books, configuration and encoder, however the
/// books were sharded.
///
/// # Errors
/// Before anything is written: [`DataError::ShardUnreadable`] (missing, damaged, foreign),
/// [`DataError::ShardParameters`], [`DataError::ShardMismatch`] (another encoder or shard
/// count), [`DataError::ShardTwice`], [`DataError::ShardMissing`], [`DataError::ShardOverlap`],
/// each naming the shard; [`DataError::Core`] for an existing `out`. Later:
/// [`DataError::EmptySplit`] when too few books are left, I/O errors, cancellation.
pub fn merge_shards(
    shards: &[PathBuf],
    device: &Device,
    config: &PrepareConfig,
    out: &Path,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<PrepareSummary> {
    config.validate()?;
    let seed = Seed(config.seed);
    let (parent, name) = split_dir(out)?;
    RunDir::check_new(out)?;
    let mut timings = BTreeMap::new();
    let mut clock = Instant::now();
    let mut lap = |stage: &str, timings: &mut BTreeMap<String, f64>| {
        timings.insert(stage.to_owned(), clock.elapsed().as_secs_f64());
        clock = Instant::now();
    };
    let set = ShardSet::open(shards, config)?;
    let dim = set.dim();
    lap("verify", &mut timings);

    // Dedup, then the books that can still give a positive pair.
    cancel.check()?;
    let (removed, examples, dedup_counts) = {
        let scratch = Scratch::new(&parent, &name, "merge")?;
        let out = dedup_table(&set, &config.dedup, &scratch.0, PART_RECORDS)?;
        // From here on, 8 bytes per removed chunk.
        let examples: Vec<Removed> = out.removed.iter().take(MAX_EXAMPLES).copied().collect();
        let mut removed: Vec<u64> = out.removed.iter().map(|r| r.g).collect();
        removed.shrink_to_fit();
        (removed, examples, out.report)
    };
    lap("dedup", &mut timings);
    let kept: Vec<u64> = (0..set.books())
        .map(|b| {
            let range = set.chunk_range(b);
            let lo = removed.partition_point(|&r| r < range.start);
            let hi = removed.partition_point(|&r| r < range.end);
            range.end - range.start - (hi - lo) as u64
        })
        .collect();
    let mut skipped: Vec<Skipped> = set
        .shards
        .iter()
        .flat_map(|s| s.skipped.iter().cloned())
        .collect();
    let mut used: Vec<usize> = Vec::new();
    for (b, &n) in kept.iter().enumerate() {
        if n >= 2 {
            used.push(b);
        } else {
            skipped.push(Skipped {
                book: set.record(b).id.clone(),
                reason: format!("{n} chunk(s) left after dedup; pairs need 2"),
            });
        }
    }
    skipped.sort_by(|a, b| a.book.cmp(&b.book));
    let ids: Vec<String> = used.iter().map(|&b| set.record(b).id.clone()).collect();
    let split_of = split_books(&ids, &config.splits, seed)?;
    let mut book_split: Vec<Option<Split>> = vec![None; set.books()];
    let used_split: Vec<Split> = used
        .iter()
        .map(|&b| {
            let s = split_of[&set.record(b).id];
            book_split[b] = Some(s);
            s
        })
        .collect();

    // Topics: fitted on a seeded sample of the used chunks' vectors.
    cancel.check()?;
    let n_used: u64 = used.iter().map(|&b| kept[b]).sum();
    let take = (config.topics.fit_sample as u64).min(n_used) as usize;
    let mut ranks: Vec<u64> = if take as u64 == n_used {
        (0..n_used).collect()
    } else {
        let mut rng = seed.derive("topics").rng("sample");
        rand::seq::index::sample(&mut rng, n_used as usize, take)
            .into_iter()
            .map(|r| r as u64)
            .collect()
    };
    ranks.sort_unstable();
    let mut sample = vec![0f32; take * dim];
    let (mut base, mut u) = (0u64, 0usize);
    for (k, &rank) in ranks.iter().enumerate() {
        while rank >= base + kept[used[u]] {
            base += kept[used[u]];
            u += 1;
        }
        let g = kept_chunk(&removed, set.chunk_range(used[u]), (rank - base) as usize);
        set.vector(g, &mut sample[k * dim..(k + 1) * dim])?;
    }
    let clustering = kmeans(
        Vectors { data: &sample, dim },
        &config.topics,
        seed.derive("topics"),
    )?;
    drop(sample);
    lap("topics", &mut timings);

    // Neighbours over the centroids, and pair plans, per split.
    let mut neighbours: BTreeMap<usize, Vec<(usize, f32)>> = BTreeMap::new();
    let mut plans: Vec<(Split, Vec<usize>, Vec<PairRef>)> = Vec::new();
    let mut summary_books = BTreeMap::new();
    let mut summary_pairs = BTreeMap::new();
    for split in Split::ALL {
        cancel.check()?;
        let members: Vec<usize> = used
            .iter()
            .copied()
            .filter(|&b| book_split[b] == Some(split))
            .collect();
        summary_books.insert(split.name().to_owned(), members.len() as u64);
        let mut flat = vec![0f32; members.len() * dim];
        for (q, &b) in members.iter().enumerate() {
            set.centroid(b, &mut flat[q * dim..(q + 1) * dim])?;
        }
        let author = |q: usize| set.record(members[q]).author.as_deref();
        let exclude = |q: usize, k: usize| {
            q == k
                || (config.mining.exclude_same_author
                    && author(q).is_some()
                    && author(q) == author(k))
        };
        let found = if members.is_empty() {
            Vec::new()
        } else {
            top_k_self(
                Vectors { data: &flat, dim },
                config.mining.top_k,
                config.mining.block_size,
                device,
                &exclude,
            )?
        };
        drop(flat);
        let pair_books: Vec<PairBook<'_>> = members
            .iter()
            .enumerate()
            .map(|(q, &b)| PairBook {
                id: &set.record(b).id,
                chunks: kept[b] as usize,
                neighbours: found[q].iter().map(|n| n.index).collect(),
            })
            .collect();
        for (q, &b) in members.iter().enumerate() {
            neighbours.insert(
                b,
                found[q]
                    .iter()
                    .map(|n| (members[n.index], n.score))
                    .collect(),
            );
        }
        let (refs, counts) = plan_pairs(&pair_books, &config.pairs, seed.derive(split.name()))?;
        summary_pairs.insert(split.name().to_owned(), counts);
        plans.push((split, members, refs));
    }
    lap("mine_and_plan", &mut timings);

    // The chunks the pairs and the report name: two slots per pair, then two per example,
    // each filled with where its chunk's line is by one pass (memory per pair, not per chunk).
    let mut slots: Vec<Slot> = Vec::new();
    for (_, members, refs) in &plans {
        for r in refs {
            for (q, pos) in [r.first, r.second] {
                let b = members[q];
                slots.push(Slot::new(kept_chunk(&removed, set.chunk_range(b), pos), b));
            }
        }
    }
    let example_base = slots.len();
    for r in &examples {
        slots.push(Slot::new(r.g, set.book_of(r.g) as usize));
        slots.push(Slot::new(r.of, set.book_of(r.of) as usize));
    }
    let mut order: Vec<u32> = (0..slots.len() as u32).collect();
    order.sort_unstable_by_key(|&i| slots[i as usize].g);

    // One pass: chunks.jsonl, and the slots filled on the way.
    cancel.check()?;
    events.send(Event::Started {
        run_id: name.clone(),
        kind: "prepare/merge".to_owned(),
        total: Some(n_used),
    })?;
    let mut run = RunDir::create(&parent, &name, DATASET_KIND, StageMode::Staged)?;
    let mut stream = set.stream()?;
    let mut vector = vec![0f32; dim];
    let mut written = 0u64;
    let mut next_slot = 0usize;
    let mut next_removed = 0usize;
    write_streamed(&mut run, "chunks.jsonl", &mut |w| {
        while let Some(c) = stream.next_chunk()? {
            while removed.get(next_removed).is_some_and(|&r| r < c.g) {
                next_removed += 1;
            }
            let is_removed = removed.get(next_removed) == Some(&c.g);
            let split = book_split[c.book].filter(|_| !is_removed);
            let topic = if split.is_some() {
                decode_f32(c.vector, &mut vector);
                nearest(&vector, &clustering.centroids, dim).0
            } else {
                u32::MAX
            };
            if let Some(split) = split {
                let row = ChunkRow {
                    book: &c.chunk.book,
                    index: c.chunk.index,
                    start: c.chunk.start,
                    end: c.chunk.end,
                    split,
                    topic,
                    text: &c.chunk.text,
                };
                serde_json::to_writer(&mut *w, &row).map_err(|source| CoreError::Serialize {
                    what: "dataset chunk",
                    source,
                })?;
                w.write_all(b"\n")
                    .map_err(|e| CoreError::io("write", Path::new("chunks.jsonl"), e))?;
                written += 1;
                if written.is_multiple_of(PROGRESS_EVERY) {
                    cancel.check()?;
                    events.send(Event::Progress {
                        step: written,
                        total: Some(n_used),
                        metrics: BTreeMap::new(),
                    })?;
                }
            }
            while let Some(&i) = order.get(next_slot) {
                let slot = &mut slots[i as usize];
                if slot.g != c.g {
                    break;
                }
                slot.shard = c.shard;
                slot.line = c.line;
                slot.index = c.chunk.index;
                slot.topic = topic;
                next_slot += 1;
            }
        }
        Ok(())
    })?;
    drop(stream);
    drop(order);
    if next_slot != slots.len() {
        return Err(DataError::Shard {
            path: shards.first().cloned().unwrap_or_default(),
            reason: format!(
                "the shards gave {next_slot} of the {} chunks the pairs need",
                slots.len()
            ),
        });
    }
    lap("write_chunks", &mut timings);

    // Pair files, a pair at a time (JSON Lines) or a split at a time (Parquet).
    let text_of = |s: &Slot| set.chunk_at(s.shard, s.line).map(|c| c.text);
    let mut base = 0usize;
    for (split, members, refs) in &plans {
        cancel.check()?;
        let make = |k: usize, r: &PairRef| -> Result<Pair> {
            let (a, b) = (&slots[base + 2 * k], &slots[base + 2 * k + 1]);
            let (ta, tb) = (text_of(a)?, text_of(b)?);
            let id = |q: usize| set.record(members[q]).id.as_str();
            Ok(pair(
                (id(r.first.0), &ta, a.index, a.topic),
                (id(r.second.0), &tb, b.index, b.topic),
                r.neg,
            ))
        };
        let same_topic = refs
            .iter()
            .enumerate()
            .filter(|(k, _)| slots[base + 2 * k].topic == slots[base + 2 * k + 1].topic)
            .count() as u64;
        if let Some(c) = summary_pairs.get_mut(split.name()) {
            c.same_topic = same_topic;
        }
        let file = config.format.split_path(Path::new(""), *split);
        let rel = file.to_string_lossy().into_owned();
        match config.format {
            PairFormat::Jsonl => write_streamed(&mut run, &rel, &mut |w| {
                for (k, r) in refs.iter().enumerate() {
                    serde_json::to_writer(&mut *w, &make(k, r)?).map_err(|source| {
                        CoreError::Serialize {
                            what: "dataset pair",
                            source,
                        }
                    })?;
                    w.write_all(b"\n")
                        .map_err(|e| CoreError::io("write", Path::new(&rel), e))?;
                }
                Ok(())
            })?,
            PairFormat::Parquet => {
                let pairs = refs
                    .iter()
                    .enumerate()
                    .map(|(k, r)| make(k, r))
                    .collect::<Result<Vec<_>>>()?;
                let bytes = encode_pairs(config.format, &pairs, &parent.join(&name).join(&file))?;
                run.write_artifact(&rel, &bytes)?;
            }
        }
        base += 2 * refs.len();
    }
    let book_rows: Vec<BookRow<'_>> = used
        .iter()
        .zip(&used_split)
        .map(|(&b, &split)| {
            let r = set.record(b);
            BookRow {
                id: &r.id,
                author: r.author.as_deref(),
                split,
                chunks: kept[b] as usize,
                metadata: &r.metadata,
                neighbours: neighbours[&b]
                    .iter()
                    .map(|&(n, score)| NeighbourRow {
                        book: &set.record(n).id,
                        score,
                    })
                    .collect(),
            }
        })
        .collect();
    run.write_artifact("books.jsonl", &jsonl(&book_rows)?)?;
    lap("write", &mut timings);

    let mut report_dedup = dedup_counts;
    report_dedup.examples = examples
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let (gone, of) = (
                &slots[example_base + 2 * k],
                &slots[example_base + 2 * k + 1],
            );
            Removal {
                kind: r.kind.name().to_owned(),
                book: set.record(gone.book).id.clone(),
                index: gone.index,
                of_book: set.record(of.book).id.clone(),
                of_index: of.index,
                jaccard: r.jaccard,
            }
        })
        .collect();
    let mut chunk_total = ChunkReport::default();
    for b in 0..set.books() {
        chunk_total.add(&set.record(b).chunks);
    }
    let encoder = json!({ "model_id": set.model_id(), "dim": dim });
    let report = json!({
        "chunking": chunk_total,
        "dedup": report_dedup,
        "skipped": skipped,
        "books": summary_books,
        "pairs": summary_pairs,
        "topics": {
            "k": clustering.k,
            "iterations": clustering.iterations,
            "inertia": clustering.inertia,
            "fitted_on": take,
        },
        "encoder": encoder,
        "shards": set.shards.len(),
        "timings_s": timings,
    });
    run.write_artifact(
        "report.json",
        &serde_json::to_vec_pretty(&report).map_err(|source| CoreError::Serialize {
            what: "dataset report",
            source,
        })?,
    )?;
    let mut metrics = BTreeMap::new();
    for (split, n) in &summary_books {
        metrics.insert(format!("books.{split}"), *n as f64);
    }
    for (split, c) in &summary_pairs {
        metrics.insert(format!("pairs.{split}.positive"), c.positive as f64);
        metrics.insert(format!("pairs.{split}.hard"), c.hard as f64);
        metrics.insert(format!("pairs.{split}.random"), c.random as f64);
        metrics.insert(
            format!("pairs.{split}.total"),
            (c.positive + c.hard + c.random) as f64,
        );
    }
    metrics.insert("chunks.used".to_owned(), n_used as f64);
    metrics.insert("books.skipped".to_owned(), skipped.len() as f64);
    metrics.insert(
        "dedup.exact_removed".to_owned(),
        report_dedup.exact_removed as f64,
    );
    metrics.insert(
        "dedup.exact_in_book_removed".to_owned(),
        report_dedup.exact_in_book_removed as f64,
    );
    metrics.insert(
        "dedup.near_removed".to_owned(),
        report_dedup.near_removed as f64,
    );
    for (stage, s) in &timings {
        metrics.insert(format!("timing.{stage}_s"), *s);
    }
    let m = run.manifest_mut();
    m.config = json!({
        "format": DATASET_FORMAT,
        "prepare": config,
        "encoder": encoder,
    });
    m.seed = Some(config.seed);
    m.device = Some(format!("{device:?}"));
    m.precision = Some(lexforge_core::Precision::of(device).to_string());
    m.metrics = metrics.clone();
    let path = run.finish(RunStatus::Completed)?;
    events.send(Event::Completed { metrics })?;
    Ok(PrepareSummary {
        path,
        books: summary_books,
        pairs: summary_pairs,
        chunks: n_used,
        dedup: report_dedup,
        skipped,
        timings,
    })
}
