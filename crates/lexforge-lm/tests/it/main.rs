//! End-to-end tests of the language-model pipeline on real books from
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! `../shared/corpora/gutenberg`: tiny models, a few dozen steps.

mod bad_input;
mod pipeline;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use lexforge_lm::LmRunConfig;

/// Serializes the tests that train: weight init and dropout draw from the backend's
/// process-wide RNG, so two trainings at once in this process would perturb each other's
/// numbers (separate processes, as in the CLI campaigns, do not).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The shared book corpus.
pub fn books() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/gutenberg/books")
}

/// Three short books (poems, a play, an essay): different styles, ~450 KB.
pub fn small_books() -> Vec<PathBuf> {
    [
        "william_blake/poems_of_william_blake.txt",
        "william_shakespeare/julius_caesar.txt",
        "thomas_paine/common_sense.txt",
        "lewis_carroll/alices_adventures_in_wonderland.txt",
    ]
    .iter()
    .map(|p| books().join(p))
    .collect()
}

/// Trains `config` into the new directory `dir` on the CPU, reporting to `sink`.
pub fn train_in(
    config: &LmRunConfig,
    dir: &std::path::Path,
    sink: &dyn lexforge_core::EventSink,
) -> lexforge_lm::Result<lexforge_lm::TrainReport> {
    lexforge_lm::train(
        config,
        dir,
        &cpu(),
        sink,
        &lexforge_core::CancelToken::new(),
    )
}

/// The CPU device the tests train on.
pub fn cpu() -> lexforge_core::Device {
    lexforge_core::DeviceSpec::Cpu.resolve().unwrap()
}

/// A tiny GPT-2 run over the small books (BPE 600, 2 layers of 64, context 32).
pub fn gpt2_config() -> LmRunConfig {
    serde_json::from_value(serde_json::json!({
        "seed": 3,
        "context": 32,
        "corpus": {"paths": small_books(), "validation_fraction": 0.25},
        "tokenizer": {"train": {"method": "bpe", "vocab_size": 600}},
        "model": {"type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64, "dropout": 0.1},
        "train": {"max_steps": 200, "batch_size": 8, "lr": 3e-3, "min_lr": 3e-4,
                  "warmup_steps": 5, "eval_every": 50, "eval_batches": 4,
                  "checkpoint_every": 50, "log_every": 5},
        "samples": {"prompts": ["The ", "Caesar"], "max_new_tokens": 12},
    }))
    .unwrap()
}
