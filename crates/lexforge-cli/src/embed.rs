//! `lexforge embed`: sentence vectors of a file of lines, written as a `.npy` array.

use std::error::Error;
use std::path::{Path, PathBuf};

use clap::Args;
use lexforge::Error as CoreError;
use lexforge::nn::cache::{CachedEncoder, EmbeddingCache};
use lexforge::nn::encoder::{BertSentenceEncoder, Embeddings, EncoderOptions, SentenceEncoder};
use lexforge::nn::pooling::Pooling;

/// Arguments of `lexforge embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// A BERT-family model directory (HF or sentence-transformers layout).
    model_dir: PathBuf,
    /// UTF-8 text file, one text per line (empty lines are refused).
    #[arg(long)]
    input: PathBuf,
    /// Output `.npy` file: float32 `[lines, dim]`, written atomically.
    #[arg(long)]
    out: PathBuf,
    /// Texts per forward pass.
    #[arg(long, default_value_t = lexforge::nn::encoder::BATCH_SIZE)]
    batch_size: usize,
    /// Pooling: mean, cls, max or mean_sqrt_len (default: the model directory's).
    #[arg(long)]
    pooling: Option<Pooling>,
    /// Keep the first N dimensions, then re-normalize.
    #[arg(long)]
    truncate_dim: Option<usize>,
    /// Do not L2-normalize.
    #[arg(long)]
    no_normalize: bool,
    /// Token limit (default: the model directory's).
    #[arg(long)]
    max_seq_length: Option<usize>,
    /// Keep vectors in this content-addressed cache directory.
    #[arg(long)]
    cache: Option<PathBuf>,
}

/// `.npy` (format 1.0) bytes of a little-endian float32 `[rows, dim]` array.
fn npy_bytes(e: &Embeddings) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        e.rows(),
        e.dim()
    );
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * e.as_slice().len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in e.as_slice() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The lines of a text file, read as every corpus is (a binary file, NUL bytes, or a
/// non-UTF-8 one is refused with the offset; a BOM is dropped).
fn read_lines(path: &Path) -> Result<Vec<String>, CoreError> {
    let text = lexforge::read_text_file(path)?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// Runs `lexforge embed`.
pub fn run(args: EmbedArgs) -> Result<(), Box<dyn Error>> {
    let lines = read_lines(&args.input)?;
    if let Some(i) = lines.iter().position(|l| l.trim().is_empty()) {
        return Err(format!(
            "{}: line {} is empty; every line must hold a text",
            args.input.display(),
            i + 1
        )
        .into());
    }
    let device = crate::common::device()?;
    let options = EncoderOptions {
        pooling: args.pooling,
        truncate_dim: args.truncate_dim,
        normalize: Some(!args.no_normalize),
        max_seq_length: args.max_seq_length,
    };
    let encoder = BertSentenceEncoder::load(&args.model_dir, &device, &options)?;
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let t0 = std::time::Instant::now();
    let (embeddings, stats) = match &args.cache {
        Some(dir) => {
            let cached = CachedEncoder::new(encoder, EmbeddingCache::open(dir)?);
            let e = cached.encode(&refs, args.batch_size)?;
            (e, Some(cached.cache().stats()))
        }
        None => (encoder.encode(&refs, args.batch_size)?, None),
    };
    let seconds = t0.elapsed().as_secs_f64();
    lexforge::atomic_write(&args.out, &npy_bytes(&embeddings))?;
    if crate::common::json() {
        let summary = serde_json::json!({
            "out": args.out.display().to_string(),
            "rows": embeddings.rows(),
            "dim": embeddings.dim(),
            "seconds": seconds,
            "cache": stats.map(|s| serde_json::json!({"hits": s.hits, "misses": s.misses})),
        });
        println!("{summary}");
    } else {
        println!(
            "wrote {} x {} float32 to {} ({:.1} texts/s){}",
            embeddings.rows(),
            embeddings.dim(),
            args.out.display(),
            embeddings.rows() as f64 / seconds.max(1e-9),
            stats
                .map(|s| format!(", cache {} hits / {} misses", s.hits, s.misses))
                .unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_numpy_shaped() {
        let e = Embeddings::new(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3)
            .unwrap_or_else(|e| panic!("{e}"));
        let b = npy_bytes(&e);
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hl]).unwrap_or_default();
        assert!(header.contains("'shape': (2, 3)"), "{header}");
        assert_eq!(b.len(), 10 + hl + 24);
        assert_eq!(&b[10 + hl..10 + hl + 4], &1.0f32.to_le_bytes());
    }
}
