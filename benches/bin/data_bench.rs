//! The Rust side of `benches/compare_data.py`. Prints one JSON object per run.
//!
//! ```sh
//! data-bench minhash TEXTS.txt NUM_PERM SHINGLE THRESHOLD   # one text per line
//! data-bench topk VECTORS.f32 DIM K BLOCK                    # raw f32 LE, row-major
//! data-bench topk-general VECTORS.f32 DIM K BLOCK            # without the symmetry
//! data-bench prepare BOOKS_DIR OUT_DIR MODEL_DIR [MAX_CHUNKS_PER_BOOK]
//! ```
//! `minhash`: signatures of every text (word shingles), then LSH insert + query of each text
//! against the texts before it (what dedup does); seconds and texts/s, candidate pairs above
//! the threshold. `topk`: each vector's K nearest others by inner product (the blocked
//! self-search of mining, `top_k_self`, on the flex device), seconds and queries/s, and the
//! neighbour ids (for agreement); `topk-general` runs the general query-vs-key search instead.
//! `prepare`: the whole pipeline on a book directory; books per minute and stage timings.

use std::process::ExitCode;
use std::time::Instant;

use lexforge::data::{
    BookDirectory, MinHashLsh, MinHasher, PrepareConfig, Vectors, jaccard, optimal_lsh_params,
    prepare, top_k_inner_product, top_k_self,
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

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("minhash") if args.len() == 6 => minhash(&args),
        Some("topk" | "topk-general") if args.len() == 6 => topk(&args),
        Some("topk-profile") if args.len() == 5 => topk_profile(&args),
        Some("prepare") if args.len() >= 5 => prepare_books(&args),
        _ => Err(
            "usage: data-bench minhash TEXTS NUM_PERM SHINGLE THRESHOLD | topk VECTORS.f32 \
                  DIM K BLOCK | prepare BOOKS_DIR OUT_DIR MODEL_DIR [MAX_CHUNKS]"
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
