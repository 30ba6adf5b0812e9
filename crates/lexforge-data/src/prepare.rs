//! The book data-preparation pipeline: raw books → standardized text → chunks (stage A, may
//! run in shards) → dedup → embeddings → topics, splits, neighbours → pairs → a dataset
//! directory (stage B).
//!
//! # Output
//! A staged run directory (nothing appears until it is complete) with:
//! - `train.jsonl`, `validation.jsonl`, `test.jsonl`: one [`Pair`](crate::Pair) per line
//!   (columns `text1, text2, label, book1, book2, pair_type, neg_type, topic1, topic2,
//!   same_topic, chunk1, chunk2`). Read them with `datasets.load_dataset("json",
//!   data_files=...)`, `pandas.read_json(path, lines=True)` or `polars.read_ndjson(path)`.
//! - `chunks.jsonl`: every kept chunk with its book, index, character offsets, split and topic.
//! - `books.jsonl`: every used book with its author, split, chunk count, metadata and its
//!   neighbour books (id and cosine), best first.
//! - `report.json`: chunking, dedup (with examples), skipped books, pair counts, topics,
//!   timings.
//! - `manifest.json`: the full configuration, the encoder's model id, counts and timings as
//!   metrics, and a checksum of every file.
//!
//! The data files are byte-identical for the same books, configuration, seed and encoder, and
//! identical whether stage A ran in one process or in shards
//! ([`write_shard`](crate::write_shard) / [`read_shard`](crate::read_shard) /
//! [`merge_shards`](crate::merge_shards), in `shard.rs`). `report.json` and `manifest.json`
//! also hold timings and times, which differ between runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use lexforge_core::{
    CancelToken, CorpusProvider, Document, Error as CoreError, Event, EventSink, RunDir, RunStatus,
    Seed, StageMode,
};
use lexforge_nn::encoder::SentenceEncoder;

use crate::chunk::{Chunk, ChunkReport, chunk_book};
use crate::config::PrepareConfig;
use crate::dedup::{DedupReport, dedup};
use crate::error::Result;
use crate::mining::{Vectors, centroid, top_k_self};
use crate::pair_parquet::encode_pairs;
use crate::pairs::{PairBook, PairCounts, Split, make_pairs, split_books};
use crate::shard::{
    BookRecord, ChunkedCorpus, DATASET_FORMAT, DATASET_KIND, Skipped, jsonl, sort_corpus, split_dir,
};
use crate::standardize::standardize;
use crate::topics::kmeans;

/// Books standardized and chunked in parallel per batch of this many documents.
const READ_BATCH: usize = 8;

/// Stage A: standardizes and chunks every book of `provider`. Unreadable books (binary,
/// non-UTF-8 without a decoding option, a bad record) and books without a single chunk are
/// skipped and listed in [`ChunkedCorpus::skipped`]; an empty or missing corpus is an error.
///
/// # Errors
/// [`DataError::Core`](crate::DataError::Core) for a corpus that cannot be listed or is empty,
/// cancellation, or an I/O error other than a bad file;
/// [`DataError::InvalidParameter`](crate::DataError::InvalidParameter) for a bad config.
pub fn chunk_corpus(
    provider: &dyn CorpusProvider,
    config: &PrepareConfig,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<ChunkedCorpus> {
    config.validate()?;
    let seed = Seed(config.seed);
    let mut out = ChunkedCorpus::default();
    let mut batch: Vec<Document> = Vec::with_capacity(READ_BATCH);
    let mut done = 0u64;
    let mut seen_any = false;
    let mut flush = |batch: &mut Vec<Document>, out: &mut ChunkedCorpus| -> Result<()> {
        let results: Vec<Result<(BookRecord, Vec<Chunk>)>> = batch
            .par_iter()
            .map(|doc| process_book(doc, config, seed))
            .collect();
        for r in results {
            let (record, chunks) = r?;
            if chunks.is_empty() {
                out.skipped.push(Skipped {
                    book: record.id.clone(),
                    reason: format!(
                        "no chunk: {} sentences, {} windows, {} too short, {} not English",
                        record.chunks.sentences,
                        record.chunks.windows,
                        record.chunks.too_short,
                        record.chunks.not_english
                    ),
                });
                continue;
            }
            out.chunks.extend(chunks);
            out.books.push(record);
        }
        done += batch.len() as u64;
        batch.clear();
        events.send(Event::Progress {
            step: done,
            total: None,
            metrics: BTreeMap::from([("chunks".to_owned(), out.chunks.len() as f64)]),
        })?;
        Ok(())
    };
    for doc in provider.documents()? {
        cancel.check()?;
        seen_any = true;
        match doc {
            Ok(doc) => batch.push(doc),
            Err(
                e @ (CoreError::BinaryFile { .. }
                | CoreError::NotUtf8 { .. }
                | CoreError::CorpusRecord { .. }),
            ) => {
                tracing::warn!(error = %e, "skipping unreadable book");
                let book = match &e {
                    CoreError::BinaryFile { path, .. }
                    | CoreError::NotUtf8 { path, .. }
                    | CoreError::CorpusRecord { path, .. } => path.display().to_string(),
                    _ => String::new(),
                };
                out.skipped.push(Skipped {
                    book,
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        if batch.len() == READ_BATCH {
            flush(&mut batch, &mut out)?;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut out)?;
    }
    if !seen_any {
        return Err(CoreError::CorpusEmpty {
            source_name: provider.describe(),
        }
        .into());
    }
    sort_corpus(&mut out);
    Ok(out)
}

fn process_book(
    doc: &Document,
    config: &PrepareConfig,
    seed: Seed,
) -> Result<(BookRecord, Vec<Chunk>)> {
    let std = standardize(&doc.text, &config.standardize);
    let (chunks, report) = chunk_book(&doc.id, &std.text, &config.chunk, seed)?;
    let author = doc
        .metadata
        .get("author")
        .filter(|a| !a.trim().is_empty())
        .cloned();
    Ok((
        BookRecord {
            id: doc.id.clone(),
            author,
            metadata: doc.metadata.clone(),
            chunks: report,
            boilerplate: std.boilerplate,
        },
        chunks,
    ))
}

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

/// Texts per encoder call (progress and cancellation granularity).
const EMBED_SLICE: usize = 256;

/// Stage B: dedup, embed, cluster topics, split, mine neighbours, pair, and write the dataset
/// directory `out` (see the module docs). `device` runs the neighbour search; the encoder runs
/// on its own device.
///
/// # Errors
/// [`DataError::EmptySplit`](crate::DataError::EmptySplit) when too few books are left for the
/// splits; [`DataError::Nn`](crate::DataError::Nn) from the encoder;
/// [`DataError::Core`](crate::DataError::Core) for I/O, an existing `out`, or cancellation.
pub fn build_dataset(
    mut corpus: ChunkedCorpus,
    encoder: &dyn SentenceEncoder,
    device: &Device,
    config: &PrepareConfig,
    out: &Path,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<PrepareSummary> {
    config.validate()?;
    let seed = Seed(config.seed);
    let mut timings = BTreeMap::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, timings: &mut BTreeMap<String, f64>| {
        timings.insert(name.to_owned(), clock.elapsed().as_secs_f64());
        clock = Instant::now();
    };
    sort_corpus(&mut corpus);
    let (parent, name) = split_dir(out)?;
    if out.exists() {
        return Err(CoreError::RunExists {
            path: out.to_path_buf(),
        }
        .into());
    }

    // Dedup, then drop books that cannot give a positive pair.
    let (chunks, dedup_report) = dedup(corpus.chunks, &config.dedup, seed.derive("dedup"))?;
    lap("dedup", &mut timings);
    let mut by_book: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in chunks.iter().enumerate() {
        by_book.entry(c.book.as_str()).or_default().push(i);
    }
    let mut skipped = corpus.skipped.clone();
    let records: BTreeMap<&str, &BookRecord> =
        corpus.books.iter().map(|b| (b.id.as_str(), b)).collect();
    let mut used: Vec<&str> = Vec::new();
    for b in &corpus.books {
        let n = by_book.get(b.id.as_str()).map_or(0, Vec::len);
        if n >= 2 {
            used.push(b.id.as_str());
        } else {
            skipped.push(Skipped {
                book: b.id.clone(),
                reason: format!("{n} chunk(s) left after dedup; pairs need 2"),
            });
        }
    }
    skipped.sort_by(|a, b| a.book.cmp(&b.book));
    let ids: Vec<String> = used.iter().map(|s| (*s).to_owned()).collect();
    let splits = split_books(&ids, &config.splits, seed)?;
    let rows: Vec<usize> = used
        .iter()
        .flat_map(|b| by_book[b].iter().copied())
        .collect();

    // Embed every used chunk.
    cancel.check()?;
    events.send(Event::Started {
        run_id: name.clone(),
        kind: "prepare/embed".to_owned(),
        total: Some(rows.len() as u64),
    })?;
    let dim = encoder.dim();
    let mut emb = vec![0.0f32; chunks.len() * dim];
    for (s, slice) in rows.chunks(EMBED_SLICE).enumerate() {
        cancel.check()?;
        let texts: Vec<&str> = slice.iter().map(|&i| chunks[i].text.as_str()).collect();
        let e = encoder.encode(&texts, config.encode_batch_size)?;
        for (k, &i) in slice.iter().enumerate() {
            emb[i * dim..(i + 1) * dim].copy_from_slice(e.row(k));
        }
        events.send(Event::Progress {
            step: (s * EMBED_SLICE + slice.len()) as u64,
            total: Some(rows.len() as u64),
            metrics: BTreeMap::new(),
        })?;
    }
    lap("embed", &mut timings);

    // Topics over the used chunks.
    let used_emb: Vec<f32> = rows
        .iter()
        .flat_map(|&i| emb[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let clustering = kmeans(
        Vectors {
            data: &used_emb,
            dim,
        },
        &config.topics,
        seed.derive("topics"),
    )?;
    let mut topic = vec![0u32; chunks.len()];
    for (k, &i) in rows.iter().enumerate() {
        topic[i] = clustering.assignments[k];
    }
    lap("topics", &mut timings);

    // Centroids from a seeded sample of each book's chunks.
    let centroids: BTreeMap<&str, Vec<f32>> = used
        .iter()
        .map(|&b| {
            let all = &by_book[b];
            let take = config.mining.num_chunks_for_embed.min(all.len());
            let mut rng = seed.derive("centroid").rng(b);
            let picked: Vec<usize> = rand::seq::index::sample(&mut rng, all.len(), take)
                .into_iter()
                .map(|j| all[j])
                .collect();
            (b, centroid(Vectors { data: &emb, dim }, &picked))
        })
        .collect();

    // Neighbours and pairs, per split.
    let mut neighbours: BTreeMap<&str, Vec<(&str, f32)>> = BTreeMap::new();
    let mut split_pairs = Vec::new();
    let mut summary_books = BTreeMap::new();
    let mut summary_pairs = BTreeMap::new();
    for split in Split::ALL {
        let members: Vec<&str> = used
            .iter()
            .copied()
            .filter(|b| splits.get(*b) == Some(&split))
            .collect();
        summary_books.insert(split.name().to_owned(), members.len() as u64);
        let flat: Vec<f32> = members
            .iter()
            .flat_map(|b| centroids[b].iter().copied())
            .collect();
        let author = |b: &str| records.get(b).and_then(|r| r.author.as_deref());
        let exclude = |q: usize, k: usize| {
            q == k
                || (config.mining.exclude_same_author
                    && author(members[q]).is_some()
                    && author(members[q]) == author(members[k]))
        };
        let found = if members.is_empty() {
            Vec::new()
        } else {
            let v = Vectors { data: &flat, dim };
            top_k_self(
                v,
                config.mining.top_k,
                config.mining.block_size,
                device,
                &exclude,
            )?
        };
        let pair_books: Vec<PairBook<'_>> = members
            .iter()
            .enumerate()
            .map(|(q, &b)| PairBook {
                id: b,
                chunks: by_book[b]
                    .iter()
                    .map(|&i| (chunks[i].text.as_str(), chunks[i].index, topic[i]))
                    .collect(),
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
        let (pairs, counts) = make_pairs(&pair_books, &config.pairs, seed.derive(split.name()))?;
        summary_pairs.insert(split.name().to_owned(), counts);
        split_pairs.push((split, pairs));
    }
    lap("mine_and_pair", &mut timings);

    // Write.
    cancel.check()?;
    let mut run = RunDir::create(&parent, &name, DATASET_KIND, StageMode::Staged)?;
    for (split, pairs) in &split_pairs {
        let file = config.format.split_path(Path::new(""), *split);
        let bytes = encode_pairs(config.format, pairs, &parent.join(&name).join(&file))?;
        run.write_artifact(&file.to_string_lossy(), &bytes)?;
    }
    let chunk_rows: Vec<ChunkRow<'_>> = rows
        .iter()
        .map(|&i| {
            let c = &chunks[i];
            ChunkRow {
                book: &c.book,
                index: c.index,
                start: c.start,
                end: c.end,
                split: splits[&c.book],
                topic: topic[i],
                text: &c.text,
            }
        })
        .collect();
    run.write_artifact("chunks.jsonl", &jsonl(&chunk_rows)?)?;
    let book_rows: Vec<BookRow<'_>> = used
        .iter()
        .map(|&b| BookRow {
            id: b,
            author: records[b].author.as_deref(),
            split: splits[b],
            chunks: by_book[b].len(),
            metadata: &records[b].metadata,
            neighbours: neighbours[b]
                .iter()
                .map(|&(book, score)| NeighbourRow { book, score })
                .collect(),
        })
        .collect();
    run.write_artifact("books.jsonl", &jsonl(&book_rows)?)?;
    lap("write", &mut timings);

    let mut chunk_total = ChunkReport::default();
    for b in &corpus.books {
        chunk_total.add(&b.chunks);
    }
    let report = json!({
        "chunking": chunk_total,
        "dedup": dedup_report,
        "skipped": skipped,
        "books": summary_books,
        "pairs": summary_pairs,
        "topics": {
            "k": clustering.k,
            "iterations": clustering.iterations,
            "inertia": clustering.inertia,
        },
        "encoder": { "model_id": encoder.model_id(), "dim": dim },
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
    metrics.insert("chunks.used".to_owned(), rows.len() as f64);
    metrics.insert("books.skipped".to_owned(), skipped.len() as f64);
    metrics.insert(
        "dedup.exact_removed".to_owned(),
        dedup_report.exact_removed as f64,
    );
    metrics.insert(
        "dedup.exact_in_book_removed".to_owned(),
        dedup_report.exact_in_book_removed as f64,
    );
    metrics.insert(
        "dedup.near_removed".to_owned(),
        dedup_report.near_removed as f64,
    );
    for (stage, s) in &timings {
        metrics.insert(format!("timing.{stage}_s"), *s);
    }
    let m = run.manifest_mut();
    m.config = json!({
        "format": DATASET_FORMAT,
        "prepare": config,
        "encoder": { "model_id": encoder.model_id(), "dim": dim },
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
        chunks: rows.len() as u64,
        dedup: dedup_report,
        skipped,
        timings,
    })
}

/// Both stages in one process: [`chunk_corpus`] then [`build_dataset`].
///
/// # Errors
/// As those two.
pub fn prepare(
    provider: &dyn CorpusProvider,
    encoder: &dyn SentenceEncoder,
    device: &Device,
    config: &PrepareConfig,
    out: &Path,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<PrepareSummary> {
    let t = Instant::now();
    let corpus = chunk_corpus(provider, config, events, cancel)?;
    let chunk_s = t.elapsed().as_secs_f64();
    let mut summary = build_dataset(corpus, encoder, device, config, out, events, cancel)?;
    summary.timings.insert("chunk".to_owned(), chunk_s);
    Ok(summary)
}
