//! Gradients flow through GPT-2 and the char-LSTM on burn's runtime autodiff device: a few
//! AdamW steps on one fixed batch lower the loss.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_nn::char_lstm::{CharLstm, CharLstmConfig};
use lexforge_nn::gpt2::Gpt2;

use crate::tiny;

fn batch(device: &Device) -> (Tensor<2, Int>, Tensor<1, Int>) {
    let seq: Vec<i64> = (0..33).map(|i| (i * 7 % 50) as i64).collect();
    let input = Tensor::from_data(TensorData::new(seq[..16].to_vec(), [1, 16]), device);
    let target = Tensor::from_data(TensorData::new(seq[1..17].to_vec(), [16]), device);
    (input, target)
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()[0]
}

#[test]
fn gpt2_overfits_one_batch() {
    let device = Device::flex().autodiff();
    let mut model = Gpt2::new(&tiny(), &device).unwrap();
    let mut optim = AdamWConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let (x, y) = batch(&device);
    let mut losses = Vec::new();
    for _ in 0..20 {
        let logits = model.forward(x.clone()).unwrap().reshape([16, 50]);
        let loss = loss_fn.forward(logits, y.clone());
        losses.push(scalar(loss.clone()));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    assert!(losses[19] < losses[0] * 0.5, "{losses:?}");
}

#[test]
fn char_lstm_overfits_one_batch() {
    let device = Device::flex().autodiff();
    let mut model = CharLstm::new(&CharLstmConfig::new(50, 16, 32, 1), &device).unwrap();
    let mut optim = AdamWConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let (x, y) = batch(&device);
    let mut losses = Vec::new();
    for _ in 0..30 {
        let (logits, _) = model.forward(x.clone(), None);
        let loss = loss_fn.forward(logits.reshape([16, 50]), y.clone());
        losses.push(scalar(loss.clone()));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-2, model, grads);
    }
    assert!(losses[29] < losses[0] * 0.7, "{losses:?}");
}
