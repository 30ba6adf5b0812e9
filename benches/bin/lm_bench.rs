//! The Rust side of `benches/compare_lm.py`: times GPT-2 and char-LSTM training steps and
//! KV-cache generation with lexforge directly (no Python) and prints JSON.
//!
//! ```sh
//! lm-bench gpt2-train   N_LAYER N_HEAD N_EMBD CONTEXT BATCH VOCAB STEPS
//! lm-bench lstm-train   D_EMBED D_HIDDEN N_LAYERS CONTEXT BATCH VOCAB STEPS
//! lm-bench gpt2-generate N_LAYER N_HEAD N_EMBD CONTEXT VOCAB PROMPT_LEN NEW_TOKENS REPEAT
//! lm-bench ops                  # diagnostics: single-op timings at the quickstart's shapes
//! lm-bench loss ROWS VOCAB      # cross-entropy forms, forward/backward time and gradient check
//! lm-bench matmul M K N         # GFLOP/s of one [M,K]x[K,N] product
//! ```
//! A training step is what the engine does: forward, cross-entropy, backward, global-norm
//! clipping, AdamW. The first step (warm-up) is not timed; the JSON has the median step time,
//! tokens/s, and a breakdown of one extra step into forward / backward / optimizer.

use std::process::ExitCode;
use std::time::Instant;

use lexforge::Device;
use lexforge::data::lm::LmBatch;
use lexforge::lm::model::{CharLstmLm, Gpt2Lm};
use lexforge::nn::char_lstm::{CharLstm, CharLstmConfig};
use lexforge::nn::generate::{GenerateConfig, generate};
use lexforge::nn::gpt2::{Gpt2, Gpt2Config};
use lexforge::train::{OptimizerConfig, TrainModel, clip_global_norm};

type BoxError = Box<dyn std::error::Error>;

fn batch(b: usize, t: usize, vocab: usize, step: usize, device: &Device) -> LmBatch {
    use burn::tensor::{Int, Tensor, TensorData};
    let ids: Vec<i64> = (0..b * (t + 1))
        .map(|i| ((i * 7919 + step * 104_729) % vocab) as i64)
        .collect();
    let mut inputs = Vec::with_capacity(b * t);
    let mut targets = Vec::with_capacity(b * t);
    for r in 0..b {
        let row = &ids[r * (t + 1)..(r + 1) * (t + 1)];
        inputs.extend_from_slice(&row[..t]);
        targets.extend_from_slice(&row[1..]);
    }
    LmBatch {
        inputs: Tensor::<2, Int>::from_data(TensorData::new(inputs, [b, t]), device),
        targets: Tensor::<2, Int>::from_data(TensorData::new(targets, [b, t]), device),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn train_bench<M: TrainModel<Batch = LmBatch>>(
    mut model: M,
    device: &Device,
    b: usize,
    t: usize,
    vocab: usize,
    steps: usize,
) -> Result<serde_json::Value, BoxError> {
    let mut optim = OptimizerConfig::default().build()?;
    let mut times = Vec::new();
    let mut parts = (0.0, 0.0, 0.0);
    for step in 0..=steps + 1 {
        let x = batch(b, t, vocab, step, device);
        let t0 = Instant::now();
        let out = model.loss(&x).map_err(|e| e.to_string())?;
        let loss = out.loss;
        let _ = loss.clone().into_scalar::<f32>();
        let t1 = Instant::now();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        let (grads, _) = clip_global_norm(&model, grads, Some(1.0));
        let t2 = Instant::now();
        model = optim.step(1e-3, model, grads);
        device.sync().map_err(|e| format!("{e:?}"))?;
        let t3 = Instant::now();
        match step {
            0 => {}
            s if s == steps + 1 => {
                parts = (
                    (t1 - t0).as_secs_f64(),
                    (t2 - t1).as_secs_f64(),
                    (t3 - t2).as_secs_f64(),
                )
            }
            _ => times.push((t3 - t0).as_secs_f64()),
        }
    }
    let step_s = median(times);
    Ok(serde_json::json!({
        "step_seconds": step_s,
        "tokens_per_s": (b * t) as f64 / step_s,
        "forward_loss_s": parts.0,
        "backward_clip_s": parts.1,
        "optimizer_s": parts.2,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    }))
}

fn run(args: &[String]) -> Result<serde_json::Value, BoxError> {
    let n = |i: usize| -> Result<usize, BoxError> { Ok(args[i].parse()?) };
    let device = Device::flex().autodiff();
    device.seed(0);
    match args.first().map(String::as_str) {
        Some("gpt2-train") if args.len() == 8 => {
            let config = gpt2_config(n(1)?, n(2)?, n(3)?, n(4)?, n(6)?);
            let model = Gpt2Lm {
                net: Gpt2::new(&config, &device)?,
            };
            train_bench(model, &device, n(5)?, n(4)?, n(6)?, n(7)?)
        }
        Some("lstm-train") if args.len() == 8 => {
            let config = CharLstmConfig::new(n(6)?, n(1)?, n(2)?, n(3)?);
            let model = CharLstmLm {
                net: CharLstm::new(&config, &device)?,
            };
            train_bench(model, &device, n(5)?, n(4)?, n(6)?, n(7)?)
        }
        Some("gpt2-generate") if args.len() == 9 => {
            let plain = Device::flex();
            let config = gpt2_config(n(1)?, n(2)?, n(3)?, n(4)?, n(5)?);
            let model = Gpt2::new(&config, &plain)?;
            let vocab = n(5)?;
            let prompt: Vec<u32> = (0..n(6)?).map(|i| (i * 31 % vocab) as u32).collect();
            let gen_config = GenerateConfig {
                max_new_tokens: n(7)?,
                temperature: 0.0,
                stop_on_eos: false,
                ..GenerateConfig::default()
            };
            let decode = |_: &[u32]| String::new();
            let mut times = Vec::new();
            for _ in 0..=n(8)? {
                let t0 = Instant::now();
                let out = generate(&model, &prompt, &gen_config, &decode)?;
                times.push((t0.elapsed().as_secs_f64(), out[0].tokens_generated));
            }
            times.remove(0);
            let secs = median(times.iter().map(|t| t.0).collect());
            Ok(serde_json::json!({
                "seconds": secs,
                "tokens_per_s": times[0].1 as f64 / secs,
            }))
        }
        Some("ops") => {
            use burn::tensor::activation::{log_softmax, softmax};
            use burn::tensor::{Bool, Distribution, Int, Tensor};
            let d = Device::flex();
            let time = |name: &str, f: &dyn Fn() -> f32| {
                let _ = f();
                let t0 = Instant::now();
                for _ in 0..5 {
                    let _ = f();
                }
                println!("{name:<28} {:>8.2} ms", t0.elapsed().as_secs_f64() * 200.0);
            };
            let x3 = Tensor::<3>::random([16, 128, 128], Distribution::Default, &d);
            let w = Tensor::<2>::random([128, 384], Distribution::Default, &d);
            time("matmul3d x[16,128,128]@w", &|| {
                x3.clone().matmul(w.clone().unsqueeze()).sum().into_scalar()
            });
            let x2 = Tensor::<2>::random([2048, 128], Distribution::Default, &d);
            time("matmul2d [2048,128]@w", &|| {
                x2.clone().matmul(w.clone()).sum().into_scalar()
            });
            let lin = burn::nn::LinearConfig::new(128, 384).init(&d);
            time("Linear fwd [16,128,128]", &|| {
                lin.forward(x3.clone()).sum().into_scalar()
            });
            let q = Tensor::<4>::random([16, 4, 128, 32], Distribution::Default, &d);
            time("bmm q@k^T [16,4,128,32]", &|| {
                q.clone()
                    .matmul(q.clone().swap_dims(2, 3))
                    .sum()
                    .into_scalar()
            });
            let s4 = Tensor::<4>::random([16, 4, 128, 128], Distribution::Default, &d);
            time("softmax [16,4,128,128]", &|| {
                softmax(s4.clone(), 3).sum().into_scalar()
            });
            time("mask_fill tril", &|| {
                let m = Tensor::<2, Bool>::tril_mask([128, 128], 0, &d).reshape([1, 1, 128, 128]);
                s4.clone()
                    .mask_fill(m, f32::NEG_INFINITY)
                    .sum()
                    .into_scalar()
            });
            time("swap_dims+reshape", &|| {
                q.clone()
                    .swap_dims(1, 2)
                    .reshape([16, 128, 128])
                    .sum()
                    .into_scalar()
            });
            let g = Tensor::<3>::random([16, 128, 512], Distribution::Default, &d);
            time("powf3 [16,128,512]", &|| {
                g.clone().powf_scalar(3.0).sum().into_scalar()
            });
            time("x*x*x [16,128,512]", &|| {
                (g.clone() * g.clone() * g.clone()).sum().into_scalar()
            });
            time("tanh [16,128,512]", &|| {
                g.clone().tanh().sum().into_scalar()
            });
            let ln = burn::nn::LayerNormConfig::new(128).init(&d);
            time("layernorm [16,128,128]", &|| {
                ln.forward(x3.clone()).sum().into_scalar()
            });
            let logits = Tensor::<2>::random([2048, 4000], Distribution::Default, &d);
            time("log_softmax [2048,4000]", &|| {
                log_softmax(logits.clone(), 1).sum().into_scalar()
            });
            let tgt = Tensor::<2, Int>::zeros([2048, 1], &d);
            time("gather [2048,4000]", &|| {
                logits.clone().gather(1, tgt.clone()).sum().into_scalar()
            });
            let emb = burn::nn::EmbeddingConfig::new(4000, 128).init(&d);
            let ids = Tensor::<2, Int>::zeros([16, 128], &d);
            time("embedding [16,128]", &|| {
                emb.forward(ids.clone()).sum().into_scalar()
            });
            time("x3 sum only", &|| x3.clone().sum().into_scalar());
            Ok(serde_json::json!({}))
        }
        Some("loss") if args.len() == 3 => {
            use burn::tensor::activation::log_softmax;
            use burn::tensor::{Distribution, Int, Tensor, TensorData};
            let d = Device::flex().autodiff();
            let (rows, v) = (n(1)?, n(2)?);
            let logits = Tensor::<2>::random([rows, v], Distribution::Default, &d).require_grad();
            let ids: Vec<i64> = (0..rows).map(|i| (i * 31 % v) as i64).collect();
            let tgt = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, 1]), &d);
            let time = |name: &str, f: &dyn Fn() -> Tensor<1>| {
                let mut fwd = 0.0;
                let mut bwd = 0.0;
                for _ in 0..3 {
                    let t0 = Instant::now();
                    let l = f();
                    let _ = l.clone().into_scalar::<f32>();
                    let t1 = Instant::now();
                    let _ = l.backward();
                    fwd += (t1 - t0).as_secs_f64() / 3.0;
                    bwd += t1.elapsed().as_secs_f64() / 3.0;
                }
                println!(
                    "{name:<14} fwd {:>7.1} ms  bwd {:>7.1} ms",
                    fwd * 1e3,
                    bwd * 1e3
                );
            };
            time("log_softmax", &|| {
                log_softmax(logits.clone(), 1)
                    .gather(1, tgt.clone())
                    .mean()
                    .neg()
                    .reshape([1])
            });
            time("logsumexp", &|| {
                let m = logits.clone().detach().max_dim(1);
                let lse = (logits.clone() - m.clone()).exp().sum_dim(1).log() + m;
                (lse - logits.clone().gather(1, tgt.clone()))
                    .mean()
                    .reshape([1])
            });
            let a = log_softmax(logits.clone(), 1)
                .gather(1, tgt.clone())
                .mean()
                .neg();
            let ga = logits.grad(&a.backward()).ok_or("no grad a")?;
            let m = logits.clone().detach().max_dim(1);
            let lse = (logits.clone() - m.clone()).exp().sum_dim(1).log() + m;
            let b = (lse - logits.clone().gather(1, tgt.clone())).mean();
            let gb = logits.grad(&b.backward()).ok_or("no grad b")?;
            let diff = (ga - gb.clone()).abs().max().into_scalar::<f32>();
            let norm = gb.clone().abs().sum().into_scalar::<f32>();
            println!("max |grad diff| = {diff}, sum |grad| = {norm}");
            Ok(serde_json::json!({}))
        }
        Some("matmul") if args.len() == 4 => {
            use burn::tensor::{Distribution, Tensor};
            let plain = Device::flex();
            let a = Tensor::<2>::random([n(1)?, n(2)?], Distribution::Default, &plain);
            let b = Tensor::<2>::random([n(2)?, n(3)?], Distribution::Default, &plain);
            let mut times = Vec::new();
            for _ in 0..5 {
                let t0 = Instant::now();
                let c = a.clone().matmul(b.clone());
                let _ = c.sum().into_scalar::<f32>();
                times.push(t0.elapsed().as_secs_f64());
            }
            let secs = median(times);
            let flops = 2.0 * (n(1)? * n(2)? * n(3)?) as f64;
            Ok(serde_json::json!({"seconds": secs, "gflops": flops / secs / 1e9}))
        }
        _ => Err("usage: see the module documentation of benches/bin/lm_bench.rs".into()),
    }
}

fn gpt2_config(layers: usize, heads: usize, embd: usize, ctx: usize, vocab: usize) -> Gpt2Config {
    let mut c = Gpt2Config::new(vocab, ctx, embd, layers, heads);
    // Dropout off in both implementations: it measures the arithmetic, not the RNG.
    c.resid_pdrop = 0.0;
    c.embd_pdrop = 0.0;
    c.attn_pdrop = 0.0;
    c
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    lexforge_benches::report(run(&args))
}
