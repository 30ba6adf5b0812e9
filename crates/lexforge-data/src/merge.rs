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
use crate::config::PrepareConfig;
use crate::dedup::{DedupReport, Removal};
use crate::error::{DataError, Result};
use crate::mining::{Vectors, top_k_self};
use crate::pair_parquet::encode_pairs;
use crate::pairs::{PairBook, PairCounts, PairRef, Split, pair, plan_pairs, split_books};
use crate::shard::{DATASET_FORMAT, DATASET_KIND, Skipped, jsonl, split_dir};
use crate::shard_set::{ShardSet, StreamedChunk};
use crate::spill_dedup::{DedupOutcome, PART_RECORDS, dedup_table};
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

/// A scratch directory beside the output, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(parent: &Path, name: &str) -> Result<Self> {
        let path = parent.join(format!(".{name}.merge-{}", std::process::id()));
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

/// Chunk number of the `pos`-th kept chunk of a book whose chunks are `range`.
fn kept_chunk(dedup: &DedupOutcome, range: std::ops::Range<u64>, pos: usize) -> u64 {
    let lo = dedup.removed.partition_point(|r| r.g < range.start);
    let hi = dedup.removed.partition_point(|r| r.g < range.end);
    let mut g = range.start + pos as u64;
    for r in &dedup.removed[lo..hi] {
        if r.g <= g {
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
    let dedup = {
        let scratch = Scratch::new(&parent, &name)?;
        dedup_table(&set, &config.dedup, &scratch.0, PART_RECORDS)?
    };
    lap("dedup", &mut timings);
    let kept: Vec<u64> = (0..set.books())
        .map(|b| {
            let range = set.chunk_range(b);
            let lo = dedup.removed.partition_point(|r| r.g < range.start);
            let hi = dedup.removed.partition_point(|r| r.g < range.end);
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
        let g = kept_chunk(&dedup, set.chunk_range(used[u]), (rank - base) as usize);
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

    // The chunks the pairs and the report name.
    let mut needed: Vec<u64> = Vec::new();
    for (_, members, refs) in &plans {
        for r in refs {
            for (q, pos) in [r.first, r.second] {
                let b = members[q];
                needed.push(kept_chunk(&dedup, set.chunk_range(b), pos));
            }
        }
    }
    let examples: Vec<_> = dedup.removed.iter().take(MAX_EXAMPLES).collect();
    needed.extend(examples.iter().flat_map(|r| [r.g, r.of]));
    needed.sort_unstable();
    needed.dedup();
    // (book, text, index, topic) of each needed chunk, in the order of `needed`.
    let mut found: Vec<(usize, String, u32, u32)> = Vec::with_capacity(needed.len());

    // One pass: chunks.jsonl, and the needed chunks picked up on the way.
    cancel.check()?;
    events.send(Event::Started {
        run_id: name.clone(),
        kind: "prepare/merge".to_owned(),
        total: Some(n_used),
    })?;
    let mut run = RunDir::create(&parent, &name, DATASET_KIND, StageMode::Staged)?;
    let mut stream = set.stream()?;
    let mut failure: Option<DataError> = None;
    let mut vector = vec![0f32; dim];
    let mut written = 0u64;
    run.write_artifact_with("chunks.jsonl", |file| {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
        let mut step = || -> Result<bool> {
            let Some(StreamedChunk {
                g,
                book: b,
                chunk,
                vector: bytes,
            }) = stream.next_chunk()?
            else {
                return Ok(false);
            };
            let removed = dedup.is_removed(g);
            let topic = if removed || book_split[b].is_none() {
                u32::MAX
            } else {
                decode_f32(bytes, &mut vector);
                nearest(&vector, &clustering.centroids, dim).0
            };
            if let Some(split) = book_split[b].filter(|_| !removed) {
                let row = ChunkRow {
                    book: &chunk.book,
                    index: chunk.index,
                    start: chunk.start,
                    end: chunk.end,
                    split,
                    topic,
                    text: &chunk.text,
                };
                serde_json::to_writer(&mut w, &row).map_err(|source| CoreError::Serialize {
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
            if needed.get(found.len()) == Some(&g) {
                found.push((b, chunk.text, chunk.index, topic));
            }
            Ok(true)
        };
        loop {
            match step() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    failure = Some(e);
                    return Err(std::io::Error::other("merge failed"));
                }
            }
        }
        w.flush()
    })
    .map_err(|e| failure.take().unwrap_or_else(|| e.into()))?;
    drop(stream);
    lap("write_chunks", &mut timings);
    if found.len() != needed.len() {
        return Err(DataError::Shard {
            path: shards.first().cloned().unwrap_or_default(),
            reason: format!(
                "the shards gave {} of the {} chunks the pairs need",
                found.len(),
                needed.len()
            ),
        });
    }
    // Every chunk asked for is in `needed`, so the position is its entry.
    let chunk_at = |g: u64| &found[needed.partition_point(|&x| x < g)];

    // Pair files.
    for (split, members, refs) in &plans {
        cancel.check()?;
        let view = |(q, pos): (usize, usize)| {
            let b = members[q];
            let (_, text, index, topic) = chunk_at(kept_chunk(&dedup, set.chunk_range(b), pos));
            (set.record(b).id.as_str(), text.as_str(), *index, *topic)
        };
        let pairs: Vec<_> = refs
            .iter()
            .map(|r| pair(view(r.first), view(r.second), r.neg))
            .collect();
        if let Some(c) = summary_pairs.get_mut(split.name()) {
            c.same_topic = pairs.iter().filter(|p| p.same_topic).count() as u64;
        }
        let file = config.format.split_path(Path::new(""), *split);
        let bytes = encode_pairs(config.format, &pairs, &parent.join(&name).join(&file))?;
        run.write_artifact(&file.to_string_lossy(), &bytes)?;
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

    let mut report_dedup = dedup.report.clone();
    report_dedup.examples = examples
        .iter()
        .map(|r| {
            let (gb, _, gi, _) = chunk_at(r.g);
            let (ob, _, oi, _) = chunk_at(r.of);
            Removal {
                kind: r.kind.name().to_owned(),
                book: set.record(*gb).id.clone(),
                index: *gi,
                of_book: set.record(*ob).id.clone(),
                of_index: *oi,
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
