//! The Rust side of `benches/compare_encoder.py`: encodes a file of sentences with lexforge's
//! sentence encoder and prints JSON.
//!
//! ```sh
//! encoder-bench MODEL_DIR SENTENCES.txt BATCH_SIZE REPEAT [OUT.f32]
//! ```
//! Loads the model once, encodes all lines once as a warm-up, then `REPEAT` times; prints the
//! median seconds (of the warm-up when `REPEAT` is 0), sentences/s and the load time. With `OUT.f32`, writes the vectors (raw f32
//! LE, row-major) for the agreement check.

use std::process::ExitCode;
use std::time::Instant;

use lexforge::Device;
use lexforge::nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder};

#[path = "../../crates/lexforge-cli/src/alloc.rs"]
mod alloc;

type BoxError = Box<dyn std::error::Error>;

fn run(args: &[String]) -> Result<serde_json::Value, BoxError> {
    let [model, sentences, batch, repeat, rest @ ..] = args else {
        return Err(
            "usage: encoder-bench MODEL_DIR SENTENCES.txt BATCH_SIZE REPEAT [OUT.f32]".into(),
        );
    };
    let batch: usize = batch.parse()?;
    let repeat: usize = repeat.parse()?;
    let text = std::fs::read_to_string(sentences)?;
    let lines: Vec<&str> = text.lines().collect();
    let t0 = Instant::now();
    let enc = BertSentenceEncoder::load(model, &Device::flex(), &EncoderOptions::default())?;
    let load_s = t0.elapsed().as_secs_f64();
    let t_first = Instant::now();
    let first = enc.encode(&lines, batch)?;
    let mut times = vec![t_first.elapsed().as_secs_f64()];
    if repeat > 0 {
        times.clear();
    }
    for _ in 0..repeat {
        let t = Instant::now();
        let _ = enc.encode(&lines, batch)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    if let Some(out) = rest.first() {
        let bytes: Vec<u8> = first
            .as_slice()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(out, bytes)?;
    }
    Ok(serde_json::json!({
        "sentences": lines.len(),
        "seconds": median,
        "sentences_per_s": lines.len() as f64 / median,
        "load_s": load_s,
        "threads": rayon_threads(),
    }))
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    lexforge_benches::report(run(&args))
}
