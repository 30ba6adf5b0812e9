//! Char-LSTM: stateful chunks, generation, scoring.

use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_nn::char_lstm::{CharLstm, CharLstmConfig};
use lexforge_nn::generate::{CausalLm, GenerateConfig, generate};
use lexforge_nn::score::score;

fn ids(v: &[i64], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(v.to_vec(), [1, v.len()]), device)
}

fn host(t: Tensor<3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn feeding_chunks_with_state_equals_one_pass() {
    let device = Device::flex();
    let m = CharLstm::new(&CharLstmConfig::new(30, 8, 16, 2), &device).unwrap();
    let seq = [1i64, 5, 9, 2, 7, 7, 3, 0, 12];
    let (full, _) = m.forward(ids(&seq, &device), None);
    let (a, state) = m.forward(ids(&seq[..4], &device), None);
    let (b, _) = m.forward(ids(&seq[4..], &device), Some(state));
    let mut chunked = host(a);
    chunked.extend(host(b));
    let full = host(full);
    let diff = full
        .iter()
        .zip(&chunked)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn generates_and_scores_without_a_context_limit() {
    let device = Device::flex();
    let m = CharLstm::new(&CharLstmConfig::new(30, 8, 16, 2), &device).unwrap();
    assert_eq!(m.max_positions(), None);
    let config = GenerateConfig {
        max_new_tokens: 40,
        temperature: 0.8,
        seed: 1,
        num_return_sequences: 2,
        ..GenerateConfig::default()
    };
    let decode = |ids: &[u32]| {
        ids.iter()
            .map(|&i| char::from(b'a' + (i % 26) as u8))
            .collect::<String>()
    };
    let a = generate(&m, &[1, 2, 3], &config, &decode).unwrap();
    assert_eq!(a, generate(&m, &[1, 2, 3], &config, &decode).unwrap());
    assert!(a.iter().all(|g| g.tokens_generated == 40));
    let seq: Vec<u32> = (0..100).map(|i| (i * 11 % 30) as u32).collect();
    let s = score(&m, &seq, 3).unwrap();
    assert_eq!(s.predicted, 99);
    assert!(s.perplexity.is_finite() && s.perplexity > 1.0);
    assert!(
        generate(&m, &[31], &config, &decode).is_err(),
        "id outside the vocabulary"
    );
    assert!(CharLstm::new(&CharLstmConfig::new(30, 8, 0, 2), &device).is_err());
}
