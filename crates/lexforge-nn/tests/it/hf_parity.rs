//! Parity with HF transformers on the checked-in fixture `tests/fixtures/gpt2_tiny` (made by its
//! `make_fixture.py` with torch; CI needs no torch): logits within 1e-4 of
//! `GPT2LMHeadModel`'s, and KV-cache greedy decoding equal to `model.generate`'s.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_nn::generate::{GenerateConfig, generate};
use lexforge_nn::gpt2::load_hf_dir;

use crate::{max_abs_diff, values};

fn fixture(variant: &str) -> (PathBuf, serde_json::Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/gpt2_tiny")
        .join(variant);
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    (dir, serde_json::from_str(&text).unwrap())
}

fn check(variant: &str) {
    let device = Device::flex();
    let (dir, expected) = fixture(variant);
    let (config, model) = load_hf_dir(&dir, &device).unwrap();
    assert_eq!(config.tie_word_embeddings, variant == "tied");
    let rows: Vec<Vec<i64>> = serde_json::from_value(expected["input_ids"].clone()).unwrap();
    let (b, t) = (rows.len(), rows[0].len());
    let flat: Vec<i64> = rows.concat();
    let x = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, t]), &device);
    let ours = values(model.forward(x).unwrap());
    let theirs: Vec<Vec<Vec<f32>>> = serde_json::from_value(expected["logits"].clone()).unwrap();
    let theirs: Vec<f32> = theirs.into_iter().flatten().flatten().collect();
    let max_logit = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        max_logit > 0.5,
        "the fixture's logits are of order 1 ({max_logit})"
    );
    let diff = max_abs_diff(&ours, &theirs);
    eprintln!("{variant}: max |logit difference| {diff:e} (max |logit| {max_logit})");
    assert!(diff < 1e-4, "{variant}: max |logit difference| {diff}");

    let prompt: Vec<u32> = serde_json::from_value(expected["prompt"].clone()).unwrap();
    let greedy: Vec<u32> = serde_json::from_value(expected["greedy_10"].clone()).unwrap();
    let config = GenerateConfig {
        max_new_tokens: 10,
        temperature: 0.0,
        stop_on_eos: false,
        ..GenerateConfig::default()
    };
    let out = generate(&model, &prompt, &config, &|_| String::new()).unwrap();
    assert_eq!(out[0].token_ids, greedy, "{variant}: KV-cache greedy ids");
}

#[test]
fn tied_gpt2_matches_transformers() {
    check("tied");
}

#[test]
fn untied_gpt2_matches_transformers() {
    check("untied");
}
