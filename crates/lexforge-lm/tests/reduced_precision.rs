//! Training in reduced precision end to end. Its own test binary: a device's float precision
//! is fixed once per process, and the other tests train in f32.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::PathBuf;

use lexforge_core::{CancelToken, DeviceSpec, NoopSink, Precision, RunStatus, verify_run_dir};
use lexforge_lm::{LmRunConfig, resume, train};

fn books() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/gutenberg/books")
}

/// The dtype of every tensor in a safetensors file (from its JSON header).
fn dtypes(path: &std::path::Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| v["dtype"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn gpt2_trains_in_f16_with_loss_scaling_f32_master_weights_and_resumes() {
    let out = tempfile::tempdir().unwrap();
    let config: LmRunConfig = serde_json::from_value(serde_json::json!({
        "seed": 5,
        "context": 32,
        "corpus": {"paths": [
            books().join("william_shakespeare/julius_caesar.txt"),
            books().join("lewis_carroll/alices_adventures_in_wonderland.txt"),
        ], "validation_fraction": 0.25},
        "tokenizer": {"train": {"method": "bpe", "vocab_size": 400}},
        "model": {"type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64, "dropout": 0.1},
        "train": {"max_steps": 40, "batch_size": 8, "lr": 3e-3, "min_lr": 3e-4,
                  "warmup_steps": 5, "eval_every": 20, "eval_batches": 4,
                  "checkpoint_every": 20, "log_every": 5,
                  "loss_scaling": {"growth_interval": 10}},
        "samples": {"prompts": ["The "], "max_new_tokens": 8},
    }))
    .unwrap();
    let mut device = DeviceSpec::Cpu.resolve().unwrap();
    Precision::F16.apply(&mut device).unwrap();
    let dir = out.path().join("f16");
    let first = train(&config, &dir, &device, &NoopSink, &CancelToken::new()).unwrap();
    assert_eq!((first.status, first.steps), (RunStatus::Completed, 40));
    assert_eq!(
        verify_run_dir(&dir).unwrap().precision.as_deref(),
        Some("f16")
    );
    // Resuming picks up the checkpoint, its optimizer state and its loss scale.
    let resumed = resume(&dir, &device, Some(60), &NoopSink, &CancelToken::new()).unwrap();
    assert_eq!((resumed.status, resumed.steps), (RunStatus::Completed, 60));
    let m = &resumed.metrics;
    assert!(m["val_loss"].is_finite(), "{m:?}");
    assert!(m["val_loss"] < (400f64).ln() - 0.5, "it learned: {m:?}");
    // The loss scale grew from 1024 (growth every 10 good steps) and is checkpointed.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("checkpoints/step-000060/state.json")).unwrap(),
    )
    .unwrap();
    let scale = state["state"]["loss_scale"]["scale"].as_f64().unwrap();
    assert!(scale > 1024.0, "{state}");
    // The optimizer stepped f32 master weights; that is what the run saves.
    let kinds = dtypes(&dir.join("model.safetensors"));
    assert!(
        !kinds.is_empty() && kinds.iter().all(|d| d == "F32"),
        "{kinds:?}"
    );
}
