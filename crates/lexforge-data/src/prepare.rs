//! The book data-preparation pipeline: raw books → standardized text → chunks, each embedded
//! and sketched (MinHash, fingerprint), with book centroids (stage A, [`prepare_shard`]; may
//! run in shards on any pool of workers) → dedup, topics, splits, neighbours, pairs → a
//! dataset directory (stage B, [`merge_shards`](crate::merge_shards), which never runs the
//! encoder).
//!
//! # Output
//! A staged run directory (nothing appears until it is complete) with:
//! - `train.jsonl`, `validation.jsonl`, `test.jsonl` (or `.parquet`): one
//!   [`Pair`](crate::Pair) per row (columns `text1, text2, label, book1, book2, pair_type,
//!   neg_type, topic1, topic2, same_topic, chunk1, chunk2`).
//! - `chunks.jsonl`: every kept chunk with its book, index, character offsets, split and topic.
//! - `books.jsonl`: every used book with its author, split, chunk count, metadata and its
//!   neighbour books (id and cosine), best first.
//! - `report.json`: chunking, dedup (with examples), skipped books, pair counts, topics,
//!   timings.
//! - `manifest.json`: the full configuration, the encoder's model id, counts and timings as
//!   metrics, and a checksum of every file.
//!
//! The data files are byte-identical for the same books, configuration, seed and encoder,
//! whether stage A ran in one process or in shards: everything stage A computes is per book
//! (a book's centroid is the mean of a seeded sample of its chunks, before the cross-book
//! dedup), and the merge orders everything by book id. `report.json` and `manifest.json`
//! also hold timings and times, which differ between runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use rayon::prelude::*;

use lexforge_core::{
    CancelToken, CorpusProvider, Document, Error as CoreError, Event, EventSink, RunDir, Seed,
};
use lexforge_nn::encoder::SentenceEncoder;

use crate::chunk::{Chunk, chunk_book};
use crate::config::PrepareConfig;
use crate::error::Result;
use crate::merge::{PrepareSummary, Scratch, merge_shards};
use crate::shard::{
    BookRecord, ChunkedCorpus, ShardPart, ShardSummary, Skipped, sort_corpus, split_dir,
    write_shard,
};
use crate::standardize::standardize;

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

/// Stage A for one part of the books: [`chunk_corpus`] then [`write_shard`] (vectors,
/// signatures, centroids) into the shard directory `out`.
///
/// # Errors
/// As those two.
pub fn prepare_shard(
    provider: &dyn CorpusProvider,
    encoder: &dyn SentenceEncoder,
    config: &PrepareConfig,
    part: ShardPart,
    out: &Path,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<ShardSummary> {
    RunDir::check_new(out)?;
    let t = Instant::now();
    let corpus = chunk_corpus(provider, config, events, cancel)?;
    let chunk_s = t.elapsed().as_secs_f64();
    let mut summary = write_shard(&corpus, encoder, config, part, out, events, cancel)?;
    summary.timings.insert("chunk".to_owned(), chunk_s);
    Ok(summary)
}

/// Both stages in one process: stage A as one shard in a scratch directory beside `out`
/// (removed afterwards), then [`merge_shards`]. The data files are the same as those of any
/// sharded run over the same books.
///
/// # Errors
/// As [`prepare_shard`] and [`merge_shards`].
pub fn prepare(
    provider: &dyn CorpusProvider,
    encoder: &dyn SentenceEncoder,
    device: &Device,
    config: &PrepareConfig,
    out: &Path,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<PrepareSummary> {
    config.validate()?;
    RunDir::check_new(out)?;
    let (parent, name) = split_dir(out)?;
    let scratch = Scratch::new(&parent, &name, "stage-a")?;
    let shard = scratch.0.join("shard");
    let a = prepare_shard(
        provider,
        encoder,
        config,
        ShardPart::WHOLE,
        &shard,
        events,
        cancel,
    )?;
    let mut summary = merge_shards(&[shard], device, config, out, events, cancel)?;
    for (k, v) in a.timings {
        summary.timings.insert(k, v);
    }
    Ok(summary)
}
