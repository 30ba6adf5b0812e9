//! The properties each fuzz target checks, shared by the targets (`fuzz_targets/`). Every
//! function takes arbitrary bytes and panics only when lexforge breaks a promise: a panic
//! inside lexforge, or an output that violates its documented invariants. Errors are fine:
//! bad input must be refused, not crash.

use std::sync::Arc;

use lexforge::data::{ChunkConfig, StandardizeConfig, chunk_book, sentence_spans, standardize};
use lexforge::tokenizers::{
    Tokenizer, TokenizerConfig, TokenizerMethod, TokenizerTrainRequest,
};
use lexforge::{InMemoryCorpus, NoopSink, Seed};

/// Trains a small tokenizer of the method picked by the first byte on the rest (as text,
/// lossily decoded, split into documents at NUL), then encodes and decodes it.
pub fn tokenizer(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let docs: Vec<String> = text.split('\0').map(str::to_owned).collect();
    let method = match pick % 4 {
        0 => TokenizerMethod::Bpe,
        1 => TokenizerMethod::WordPiece,
        2 => TokenizerMethod::Unigram,
        _ => TokenizerMethod::Char,
    };
    let config = TokenizerConfig::new(method, 300 + usize::from(pick >> 2));
    let mut request = TokenizerTrainRequest::new(InMemoryCorpus::from_texts(docs.clone()));
    request.threads = Some(1);
    request.holdout = f64::from(pick & 3) * 0.1;
    let Ok(tok) = Tokenizer::train(&config, &request, &NoopSink) else {
        return;
    };
    for doc in &docs {
        if let Ok(ids) = tok.encode(doc) {
            assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
            let _ = tok.decode(&ids, true);
        }
    }
    let _ = Arc::new(tok);
}

/// Standardizes the text (both normalizations) and splits it into sentences: spans in order,
/// inside the text, on char boundaries, non-empty.
pub fn text(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for strip in [false, true] {
        let config = StandardizeConfig {
            strip_boilerplate: strip,
            ..StandardizeConfig::default()
        };
        let out = standardize(raw, &config);
        let mut end = 0;
        for s in sentence_spans(&out.text) {
            assert!(end <= s.start && s.start < s.end && s.end <= out.text.len());
            assert!(out.text.is_char_boundary(s.start) && out.text.is_char_boundary(s.end));
            end = s.end;
        }
    }
}

/// Chunks the text with parameters from the first bytes: every chunk's text is non-empty and
/// the chunks come in order.
pub fn chunk(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let Ok(text) = std::str::from_utf8(&data[3..]) else {
        return;
    };
    let config = ChunkConfig {
        chunk_size: usize::from(data[0] % 8),
        overlap: usize::from(data[1] % 4),
        min_chars: usize::from(data[2]),
        english_filter: data[2] & 1 == 1,
        max_chunks_per_book: (data[0] & 0x80 != 0).then_some(usize::from(data[1])),
    };
    if let Ok((chunks, _)) = chunk_book("book", text, &config, Seed(u64::from(data[0]))) {
        for c in &chunks {
            assert!(!c.text.is_empty());
        }
    }
}

/// Parses the bytes as every config lexforge reads (TOML and JSON) and as a run manifest, and
/// validates what parses.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = toml::from_str::<lexforge::lm::LmRunConfig>(text) {
        let _ = c.validate();
    }
    if let Ok(c) = serde_json::from_str::<lexforge::lm::LmRunConfig>(text) {
        let _ = c.validate();
    }
    if let Ok(c) = toml::from_str::<lexforge::data::PrepareConfig>(text) {
        let _ = c.validate();
    }
    if let Ok(c) = toml::from_str::<lexforge::matcher::MatcherTrainConfig>(text) {
        let _ = c.validate();
    }
    if let Ok(c) = toml::from_str::<lexforge::semantic::SemanticTrainConfig>(text) {
        let _ = c.validate();
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("manifest.json"), data).expect("write");
    if let Ok(m) = lexforge::Manifest::load(dir.path()) {
        let _ = m.verify(dir.path());
    }
}

/// Loads the bytes as the `model.safetensors` of an HF GPT-2 directory whose `config.json`
/// describes a tiny model (`vocab 16, positions 8, width 8, 1 layer`): a damaged, foreign or
/// mis-shaped file must be an error.
pub fn safetensors(data: &[u8]) {
    let config = lexforge::nn::gpt2::Gpt2Config::new(16, 8, 8, 1, 2);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = serde_json::to_vec(&config).expect("a config serializes");
    std::fs::write(dir.path().join("config.json"), json).expect("write");
    std::fs::write(dir.path().join("model.safetensors"), data).expect("write");
    let device = "cpu"
        .parse::<lexforge::DeviceSpec>()
        .and_then(|s| s.resolve())
        .expect("the CPU device");
    let _ = lexforge::nn::gpt2::load_hf_dir(dir.path(), &device);
}
