//! GPT-2: KV cache consistency, HF-format save/load, typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod char_lstm;
mod encoder;
mod generate;
mod hf_parity;
mod score;
mod train_smoke;

use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_nn::NnError;
use lexforge_nn::gpt2::{Gpt2, Gpt2Cache, Gpt2Config, load_hf_dir, save_hf_dir};

pub(crate) fn tiny() -> Gpt2Config {
    let mut c = Gpt2Config::new(50, 16, 32, 2, 4);
    c.resid_pdrop = 0.0;
    c.embd_pdrop = 0.0;
    c.attn_pdrop = 0.0;
    c
}

fn ids(v: &[i64], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(v.to_vec(), [1, v.len()]), device)
}

fn values(t: Tensor<3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn cached_decoding_matches_the_full_forward() {
    let device = Device::flex();
    let model = Gpt2::new(&tiny(), &device).unwrap();
    let seq = [3i64, 17, 42, 8, 1, 29, 11];
    let full = values(model.forward(ids(&seq, &device)).unwrap());
    let mut cache = Gpt2Cache::default();
    let mut stepped = values(
        model
            .forward_cached(ids(&seq[..3], &device), &mut cache)
            .unwrap(),
    );
    for &tok in &seq[3..] {
        stepped.extend(values(
            model
                .forward_cached(ids(&[tok], &device), &mut cache)
                .unwrap(),
        ));
    }
    assert_eq!(cache.len(), seq.len());
    assert!(
        max_abs_diff(&full, &stepped) < 1e-4,
        "{}",
        max_abs_diff(&full, &stepped)
    );
}

#[test]
fn hf_directory_round_trips_exactly() {
    let device = Device::flex();
    let config = tiny();
    let model = Gpt2::new(&config, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_hf_dir(&model, &config, dir.path()).unwrap();
    let (loaded_config, loaded) = load_hf_dir(dir.path(), &device).unwrap();
    assert_eq!(loaded_config, config);
    let x = ids(&[1, 2, 3, 4, 5], &device);
    let a = values(model.forward(x.clone()).unwrap());
    let b = values(loaded.forward(x).unwrap());
    assert_eq!(a, b, "bitwise equal after a save/load round trip");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(json["model_type"], "gpt2");
    assert_eq!(json["n_embd"], 32);
}

#[test]
fn bad_configs_inputs_and_files_are_typed_errors() {
    let device = Device::flex();
    let mut c = tiny();
    c.n_head = 5;
    let e = Gpt2::new(&c, &device).unwrap_err();
    assert!(
        matches!(
            e,
            NnError::InvalidConfig {
                field: "n_embd",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("n_head"), "{e}");

    let model = Gpt2::new(&tiny(), &device).unwrap();
    let too_long: Vec<i64> = (0..17).collect();
    let e = model.forward(ids(&too_long, &device)).unwrap_err();
    assert!(matches!(e, NnError::InvalidInput { .. }), "{e}");

    let dir = tempfile::tempdir().unwrap();
    save_hf_dir(&model, &tiny(), dir.path()).unwrap();
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_hf_dir(dir.path(), &device).unwrap_err();
    assert!(matches!(e, NnError::Weights { .. }), "{e}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");

    // A config that does not match the weights: a shape error naming the tensor.
    std::fs::write(&weights, &bytes).unwrap();
    let mut other = tiny();
    other.vocab_size = 60;
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&other).unwrap(),
    )
    .unwrap();
    let e = load_hf_dir(dir.path(), &device).unwrap_err();
    assert!(
        matches!(e, NnError::ShapeMismatch { ref name, .. } if name == "transformer.wte.weight"),
        "{e}"
    );
}

/// Training (autodiff device: attention from matmuls, softmax and a mask) and inference (plain
/// device: the backend's fused attention) compute the same function.
#[test]
fn training_and_inference_attention_agree() {
    use burn::module::Module;
    let device = Device::flex().autodiff();
    device.seed(3);
    let model = Gpt2::new(&tiny(), &device).unwrap();
    let x = ids(&[3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3], &device);
    let train_logits = values(model.forward(x).unwrap());
    let plain = model.valid();
    let x = ids(&[3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3], &Device::flex());
    let infer_logits = values(plain.forward(x).unwrap());
    let diff = max_abs_diff(&train_logits, &infer_logits);
    assert!(diff < 1e-5, "{diff}");
}
