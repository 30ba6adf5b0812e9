//! The Rust side of `benches/compare_data.py`. Prints one JSON object per run.
//!
//! ```sh
//! data-bench minhash TEXTS.txt NUM_PERM SHINGLE THRESHOLD   # one text per line
//! data-bench topk VECTORS.f32 DIM K BLOCK                    # raw f32 LE, row-major
//! data-bench topk-general VECTORS.f32 DIM K BLOCK            # without the symmetry
//! data-bench prepare BOOKS_DIR OUT_DIR MODEL_DIR [MAX_CHUNKS_PER_BOOK]
//! data-bench synth-shards OUT_DIR BOOKS CHUNKS_PER_BOOK SHARDS WORDS SEED
//! data-bench merge OUT_DIR SEED SHARD_DIR...
//! ```
//! `minhash`: signatures of every text (word shingles), then LSH insert + query of each text
//! against the texts before it (what dedup does); seconds and texts/s, candidate pairs above
//! the threshold. `topk`: each vector's K nearest others by inner product (the blocked
//! self-search of mining, `top_k_self`, on the flex device), seconds and queries/s, and the
//! neighbour ids (for agreement); `topk-general` runs the general query-vs-key search instead.
//! `prepare`: the whole pipeline on a book directory; books per minute and stage timings.
//! `synth-shards`: a synthetic library written as stage-A shards without an encoder (through
//! `write_shard_with_vectors`): BOOKS books, three per author, each with CHUNKS_PER_BOOK chunks
//! of WORDS random words (1 % exact and 1 % near copies of other books' chunks) and 384-wide
//! vectors scattered around a random book direction; real fingerprints, MinHash signatures and
//! centroids. `merge`: stage B over shard directories with the default parameters and SEED;
//! seconds, the process's peak resident memory (VmHWM; mimalloc with its default purge delay,
//! so freed buffers do not count) and the dataset's counts.

use std::process::ExitCode;
use std::time::Instant;

use lexforge::data::{
    BookDirectory, BookRecord, Chunk, ChunkReport, ChunkedCorpus, MinHashLsh, MinHasher,
    PrepareConfig, ShardPart, Vectors, jaccard, merge_shards, optimal_lsh_params, prepare,
    top_k_inner_product, top_k_self, write_shard_with_vectors,
};
use lexforge::nn::encoder::{BertSentenceEncoder, EncoderOptions};
use lexforge::{CancelToken, Device, NoopSink, Seed};
use rayon::prelude::*;

#[path = "../../crates/lexforge-cli/src/alloc.rs"]
mod alloc;

type BoxError = Box<dyn std::error::Error>;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> Result<T, BoxError> {
    args.get(i)
        .ok_or_else(|| format!("missing {name}"))?
        .parse::<T>()
        .map_err(|_| format!("bad {name}: {:?}", args[i]).into())
}

fn minhash(args: &[String]) -> Result<serde_json::Value, BoxError> {
    let text = std::fs::read_to_string(&args[2])?;
    let texts: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let num_perm: usize = arg(args, 3, "NUM_PERM")?;
    let shingle: usize = arg(args, 4, "SHINGLE")?;
    let threshold: f64 = arg(args, 5, "THRESHOLD")?;
    let t0 = Instant::now();
    let hasher = MinHasher::new(num_perm, shingle, Seed(1));
    let sigs: Vec<Vec<u32>> = texts.par_iter().map(|t| hasher.signature(t)).collect();
    let t_sig = t0.elapsed().as_secs_f64();
    let (b, r) = optimal_lsh_params(threshold, num_perm);
    let mut lsh = MinHashLsh::new(b, r);
    let mut near = 0u64;
    for (i, s) in sigs.iter().enumerate() {
        for j in lsh.query(s) {
            if jaccard(s, &sigs[j]) >= threshold {
                near += 1;
            }
        }
        lsh.insert(i, s);
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "texts": texts.len(),
        "seconds": secs,
        "signature_seconds": t_sig,
        "texts_per_s": texts.len() as f64 / secs,
        "bands": b, "rows": r,
        "near_pairs": near,
    }))
}

fn topk(args: &[String]) -> Result<serde_json::Value, BoxError> {
    let bytes = std::fs::read(&args[2])?;
    let data: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let dim: usize = arg(args, 3, "DIM")?;
    let k: usize = arg(args, 4, "K")?;
    let block: usize = arg(args, 5, "BLOCK")?;
    let v = Vectors { data: &data, dim };
    let device = Device::flex();
    // Warm-up on a slice.
    let head = Vectors {
        data: &data[..dim * v.rows().min(256)],
        dim,
    };
    let general = args[1] == "topk-general";
    let search = |v: Vectors<'_>| {
        if general {
            top_k_inner_product(v, v, k, block, &device, &|q, c| q == c)
        } else {
            top_k_self(v, k, block, &device, &|q, c| q == c)
        }
    };
    search(head)?;
    let t0 = Instant::now();
    let found = search(v)?;
    let secs = t0.elapsed().as_secs_f64();
    let ids: Vec<Vec<usize>> = found
        .iter()
        .map(|r| r.iter().map(|n| n.index).collect())
        .collect();
    Ok(serde_json::json!({
        "vectors": v.rows(),
        "seconds": secs,
        "queries_per_s": v.rows() as f64 / secs,
        "ids": ids,
    }))
}

fn prepare_books(args: &[String]) -> Result<serde_json::Value, BoxError> {
    let books = BookDirectory::new(&args[2]);
    let out = std::path::PathBuf::from(&args[3]);
    let device = Device::flex();
    let encoder = BertSentenceEncoder::load(&args[4], &device, &EncoderOptions::default())?;
    let mut config = PrepareConfig::default();
    if let Some(m) = args.get(5) {
        config.chunk.max_chunks_per_book = Some(m.parse()?);
    }
    let n = books.files()?.len();
    let t0 = Instant::now();
    let s = prepare(
        &books,
        &encoder,
        &device,
        &config,
        &out,
        &NoopSink,
        &CancelToken::new(),
    )?;
    let secs = t0.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "books": n,
        "chunks": s.chunks,
        "seconds": secs,
        "books_per_minute": n as f64 * 60.0 / secs,
        "timings": s.timings,
    }))
}

/// A 64-bit mix (splitmix64's finalizer).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The text of synthetic chunk `c` of book `b`: `words` words from a 50,000-word vocabulary.
fn synth_text(b: u64, c: u64, words: u64, seed: u64) -> String {
    (0..words)
        .map(|w| {
            format!(
                "w{}",
                mix(seed ^ mix(b << 20 ^ c) ^ w.wrapping_mul(0x9e37)) % 50_000
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn synth_shards(args: &[String]) -> Result<serde_json::Value, BoxError> {
    let out = std::path::PathBuf::from(&args[2]);
    let books: u64 = arg(args, 3, "BOOKS")?;
    let per_book: u64 = arg(args, 4, "CHUNKS_PER_BOOK")?;
    let shards: u64 = arg(args, 5, "SHARDS")?;
    let words: u64 = arg(args, 6, "WORDS")?;
    let seed: u64 = arg(args, 7, "SEED")?;
    let config = PrepareConfig {
        seed,
        ..PrepareConfig::default()
    };
    let dim = 384;
    let t0 = Instant::now();
    std::fs::create_dir_all(&out)?;
    for s in 0..shards {
        let ids: Vec<u64> = (s..books).step_by(shards as usize).collect();
        let made: Vec<(BookRecord, Vec<Chunk>, Vec<f32>)> = ids
            .par_iter()
            .map(|&b| {
                let id = format!("author{:05}/book{b:06}", b / 3);
                let chunks: Vec<Chunk> = (0..per_book)
                    .map(|c| {
                        let r = mix(seed ^ mix(b.wrapping_mul(1_000_003) + c)) % 100;
                        let other = (b + 1 + r * 7) % books;
                        let text = match r {
                            0 => synth_text(other, c, words, seed),
                            1 => synth_text(other, c, words, seed) + " indeed",
                            _ => synth_text(b, c, words, seed),
                        };
                        Chunk {
                            book: id.clone(),
                            index: c as u32,
                            start: 0,
                            end: text.len(),
                            text,
                        }
                    })
                    .collect();
                let unit = |k: u64| (mix(seed ^ k) >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0;
                let dir: Vec<f32> = (0..dim as u64).map(|d| unit(b << 32 ^ d)).collect();
                let mut vectors = Vec::with_capacity(per_book as usize * dim);
                for c in 0..per_book {
                    let row: Vec<f32> = dir
                        .iter()
                        .enumerate()
                        .map(|(d, x)| x + 0.5 * unit(mix(b << 40 ^ c << 16 ^ d as u64)))
                        .collect();
                    let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                    vectors.extend(row.iter().map(|v| v / norm));
                }
                let record = BookRecord {
                    id: id.clone(),
                    author: Some(format!("author{:05}", b / 3)),
                    metadata: [("title".to_owned(), format!("Book {b}"))].into(),
                    chunks: ChunkReport {
                        kept: per_book,
                        windows: per_book,
                        ..ChunkReport::default()
                    },
                    boilerplate: Default::default(),
                };
                (record, chunks, vectors)
            })
            .collect();
        let mut corpus = ChunkedCorpus::default();
        let mut vectors = Vec::with_capacity(made.len() * per_book as usize * dim);
        let mut made = made;
        made.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        for (record, chunks, v) in made {
            corpus.books.push(record);
            corpus.chunks.extend(chunks);
            vectors.extend(v);
        }
        write_shard_with_vectors(
            &corpus,
            Vectors {
                data: &vectors,
                dim,
            },
            "synthetic-384",
            &config,
            ShardPart {
                index: s as usize,
                count: shards as usize,
            },
            &out.join(format!("shard-{s:04}")),
            &CancelToken::new(),
        )?;
    }
    Ok(serde_json::json!({
        "books": books,
        "chunks": books * per_book,
        "shards": shards,
        "seconds": t0.elapsed().as_secs_f64(),
    }))
}

/// The process's peak resident set (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn merge(args: &[String]) -> Result<serde_json::Value, BoxError> {
    let out = std::path::PathBuf::from(&args[2]);
    let seed: u64 = arg(args, 3, "SEED")?;
    let shards: Vec<std::path::PathBuf> = args[4..].iter().map(Into::into).collect();
    let config = PrepareConfig {
        seed,
        ..PrepareConfig::default()
    };
    let t0 = Instant::now();
    let s = merge_shards(
        &shards,
        &Device::flex(),
        &config,
        &out,
        &NoopSink,
        &CancelToken::new(),
    )?;
    let secs = t0.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "shards": shards.len(),
        "books": s.books.values().sum::<u64>(),
        "chunks_used": s.chunks,
        "pairs": s.pairs.values().map(|p| p.positive + p.hard + p.random).sum::<u64>(),
        "dedup": {
            "input": s.dedup.input,
            "exact_removed": s.dedup.exact_removed,
            "near_removed": s.dedup.near_removed,
        },
        "seconds": secs,
        "peak_rss_mib": peak_rss_mib(),
        "threads": rayon::current_num_threads(),
        "timings": s.timings,
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // `merge` reports its peak resident memory: with mimalloc's default purge delay (10 ms)
    // that is the live peak, not freed buffers kept for reuse (`keep_freed_memory` keeps them
    // 10 s, which would make the peak depend on how fast the stages ran).
    if !matches!(args.get(1).map(String::as_str), Some("merge")) {
        alloc::keep_freed_memory();
    }
    let result = match args.get(1).map(String::as_str) {
        Some("minhash") if args.len() == 6 => minhash(&args),
        Some("topk" | "topk-general") if args.len() == 6 => topk(&args),
        Some("topk-profile") if args.len() == 5 => topk_profile(&args),
        Some("prepare") if args.len() >= 5 => prepare_books(&args),
        Some("synth-shards") if args.len() == 8 => synth_shards(&args),
        Some("merge") if args.len() >= 5 => merge(&args),
        _ => Err(
            "usage: data-bench minhash TEXTS NUM_PERM SHINGLE THRESHOLD | topk VECTORS.f32 \
                  DIM K BLOCK | prepare BOOKS_DIR OUT_DIR MODEL_DIR [MAX_CHUNKS] | synth-shards \
                  OUT BOOKS CHUNKS_PER_BOOK SHARDS WORDS SEED | merge OUT SEED SHARD..."
                .into(),
        ),
    };
    lexforge_benches::report(result)
}

/// `data-bench topk-profile N DIM BLOCK`: seconds of the score blocks alone (device matmul and
/// read-back) for an N x N self-search, to split the search's time between matmul and top-K
/// selection.
fn topk_profile(args: &[String]) -> Result<serde_json::Value, BoxError> {
    use burn::tensor::{Distribution, Tensor};
    let n: usize = arg(args, 2, "N")?;
    let dim: usize = arg(args, 3, "DIM")?;
    let block: usize = arg(args, 4, "BLOCK")?;
    let d = Device::flex();
    let q = Tensor::<2>::random([block, dim], Distribution::Default, &d);
    let k = Tensor::<2>::random([block, dim], Distribution::Default, &d);
    let kt_contig = Tensor::<2>::random([dim, block], Distribution::Default, &d);
    let blocks = n.div_ceil(block).pow(2);
    let mut out = serde_json::Map::new();
    let view = || q.clone().matmul(k.clone().transpose());
    let contiguous = || q.clone().matmul(kt_contig.clone());
    let cases: [(&str, &dyn Fn() -> Tensor<2>); 2] = [
        ("matmul_transposed_view", &view),
        ("matmul_contiguous", &contiguous),
    ];
    for (name, f) in cases {
        let _ = f().into_data();
        let t0 = Instant::now();
        for _ in 0..blocks {
            let _ = f().into_data();
        }
        out.insert(name.into(), t0.elapsed().as_secs_f64().into());
    }
    Ok(serde_json::Value::Object(out))
}
