//! The Rust side of `benches/compare_tokenizers.py`: times lexforge's tokenizer API directly
//! (no Python), on inputs the script prepares, and prints JSON.
//!
//! ```sh
//! cargo run -p lexforge-benches --bin tokenizer-bench -- train BOOKS_DIR METHOD VOCAB REPEAT
//! cargo run -p lexforge-benches --bin tokenizer-bench -- encode TOKENIZER_DIR LINES.json REPEAT
//! ```

use std::process::ExitCode;
use std::time::Instant;

use lexforge::NoopSink;
use lexforge::tokenizers::{Tokenizer, TokenizerConfig, TokenizerMethod, TokenizerTrainRequest};

/// Runs `f` `repeat` times (at least once); returns the best time and the last result.
fn best_of<T>(repeat: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let start = Instant::now();
    let mut out = f();
    let mut best = start.elapsed().as_secs_f64();
    for _ in 1..repeat {
        let start = Instant::now();
        out = f();
        best = best.min(start.elapsed().as_secs_f64());
    }
    (best, out)
}

fn run(args: &[String]) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    match args {
        [cmd, books, method, vocab, repeat] if cmd == "train" => {
            let method: TokenizerMethod = method.parse()?;
            let config = TokenizerConfig::new(method, vocab.parse()?);
            let request = TokenizerTrainRequest::from_paths([books]).with_holdout(0.0);
            let (secs, tok) = best_of(repeat.parse()?, || {
                Tokenizer::train(&config, &request, &NoopSink)
            });
            let tok = tok?;
            Ok(serde_json::json!({"seconds": secs, "tokenizer_json": tok.to_json()?}))
        }
        [cmd, dir, lines, repeat] if cmd == "encode" => {
            let tok = Tokenizer::load(dir)?;
            let lines: Vec<String> = serde_json::from_str(&std::fs::read_to_string(lines)?)?;
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let bytes: usize = refs.iter().map(|l| l.len()).sum();
            let (secs, ids) = best_of(repeat.parse()?, || tok.encode_batch(&refs, false));
            let tokens: usize = ids?.iter().map(Vec::len).sum();
            Ok(serde_json::json!({
                "seconds": secs, "bytes": bytes, "tokens": tokens,
                "mb_per_s": bytes as f64 / 1e6 / secs,
            }))
        }
        _ => Err(
            "usage: tokenizer-bench train BOOKS METHOD VOCAB REPEAT | encode DIR LINES.json REPEAT"
                .into(),
        ),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    lexforge_benches::report(run(&args))
}
